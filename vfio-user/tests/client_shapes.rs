//! Clients other than QEMU: libvfio-user's client library sends DEVICE_GET_REGION_INFO with its
//! whole `argsz` buffer as payload and takes no fds with its first, short query. Both shapes
//! against the same server: the reply, and exactly when the region's fd travels.

mod common;

use common::*;
use vfio_user::wire::{Command, REGION_INFO_SIZE};
use vfio_user::{pci_region, Client, ClientOptions, Errno, REGION_FLAG_CAPS, REGION_FLAG_MMAP};

/// BAR2 of the test device: two sparse areas, so the complete reply is 32 + 16 + 2 * 16.
const BAR2_NEEDED: u32 = (REGION_INFO_SIZE + 16 + 2 * 16) as u32;

fn client(srv: &vfio_user::ServerHandle, whole_buffer: bool) -> Client {
    let opts = ClientOptions {
        whole_buffer_requests: whole_buffer,
        ..Default::default()
    };
    Client::connect_with(srv.path(), opts).unwrap()
}

#[test]
fn qemu_shaped_region_info_gets_the_fd_only_with_the_complete_reply() {
    let (_dev, srv) = start();
    let c = client(&srv, false);
    let (short, fds) = c.region_info_query(pci_region::BAR2, REGION_INFO_SIZE as u32).unwrap();
    assert_eq!(
        short.argsz, BAR2_NEEDED,
        "the short reply says what a complete one needs"
    );
    assert_eq!(short.flags & REGION_FLAG_CAPS, 0);
    assert_ne!(short.flags & REGION_FLAG_MMAP, 0);
    assert!(fds.is_empty(), "an fd came with a reply that cannot hold its areas");
    let (full, fds) = c.region_info_query(pci_region::BAR2, BAR2_NEEDED).unwrap();
    assert_ne!(full.flags & REGION_FLAG_CAPS, 0);
    assert_eq!((full.sparse.len(), fds.len()), (2, 1));
    // What QEMU does end to end: ask short, ask again, keep the second fd.
    let (info, fd) = c.region_info(pci_region::BAR2).unwrap();
    assert_eq!((info.sparse.len(), fd.is_some()), (2, true));
}

#[test]
fn libvfio_user_shaped_region_info_with_its_whole_buffer_is_accepted() {
    let (_dev, srv) = start();
    let c = client(&srv, true);
    // The case: a 64-byte buffer sent whole, still too small for BAR2's areas.
    let (short, fds) = c.region_info_query(pci_region::BAR2, 64).unwrap();
    assert_eq!((short.argsz, short.flags & REGION_FLAG_CAPS), (BAR2_NEEDED, 0));
    assert!(fds.is_empty(), "an fd came with a reply that cannot hold its areas");
    let (full, fds) = c.region_info_query(pci_region::BAR2, BAR2_NEEDED).unwrap();
    assert_eq!((full.sparse.len(), fds.len()), (2, 1));
    // A buffer larger than needed: the reply says the size it used.
    let (big, fds) = c.region_info_query(pci_region::BAR2, 4096).unwrap();
    assert_eq!((big.argsz, big.sparse.len(), fds.len()), (BAR2_NEEDED, 2, 1));
    // Regions without areas never carry an fd, whatever the buffer.
    let (bar0, fds) = c.region_info_query(pci_region::BAR0, 4096).unwrap();
    assert_eq!((bar0.flags & REGION_FLAG_MMAP, fds.len()), (0, 0));
    let (info, fd) = c.region_info(pci_region::BAR2).unwrap();
    assert_eq!((info.sparse.len(), fd.is_some()), (2, true));
}

#[test]
fn info_requests_with_trailing_bytes_are_accepted_and_the_bytes_ignored() {
    let (_dev, srv) = start();
    let c = client(&srv, false);
    let mut dev_info = vec![0xAAu8; 64];
    dev_info[0..4].copy_from_slice(&16u32.to_le_bytes());
    let r = c.call(Command::DeviceGetInfo, &dev_info, &[]).unwrap();
    assert_eq!(r.payload.len(), 16);
    let mut irq_info = vec![0u8; 40];
    irq_info[0..4].copy_from_slice(&16u32.to_le_bytes());
    irq_info[8..12].copy_from_slice(&vfio_user::pci_irq::MSIX.to_le_bytes());
    let r = c.call(Command::DeviceGetIrqInfo, &irq_info, &[]).unwrap();
    assert_eq!(u32::from_le_bytes(r.payload[12..16].try_into().unwrap()), MSIX_VECTORS);
}

#[test]
fn region_info_payload_past_max_argsz_or_below_its_fixed_part_gets_einval() {
    let (_dev, srv) = start();
    let c = client(&srv, false);
    let errno = |p: &[u8]| match c.call(Command::DeviceGetRegionInfo, p, &[]) {
        Err(vfio_user::ClientError::Refused { errno, .. }) => errno,
        other => panic!("accepted: {other:?}"),
    };
    let mut p = vec![0u8; 64 * 1024 + 1];
    p[0..4].copy_from_slice(&4096u32.to_le_bytes());
    assert_eq!(errno(&p), Errno::EINVAL);
    assert_eq!(errno(&p[..31]), Errno::EINVAL);
    // The session goes on.
    assert!(c.region_info(pci_region::BAR2).is_ok());
}

#[test]
fn dma_unmap_with_a_reply_buffer_larger_than_the_entry_is_accepted() {
    use std::os::fd::AsFd;
    let (dev, srv) = start();
    let c = client(&srv, false);
    let ram = vfio_user::memfd("guest-ram", 0x1000).unwrap();
    c.dma_map(0x1000, 0x1000, ram.as_fd(), 0, true, true).unwrap();
    // argsz is the largest reply the client takes (the spec): 24 or more.
    let mut p = vfio_user::wire::DmaUnmap {
        flags: 0,
        iova: 0x1000,
        size: 0x1000,
    }
    .encode();
    p[0..4].copy_from_slice(&4096u32.to_le_bytes());
    let r = c.call(Command::DmaUnmap, &p, &[]).unwrap();
    assert_eq!(r.payload.len(), 24);
    assert!(dev.client().dma.is_empty());
    p[0..4].copy_from_slice(&16u32.to_le_bytes());
    assert!(matches!(
        c.call(Command::DmaUnmap, &p, &[]),
        Err(vfio_user::ClientError::Refused {
            errno: Errno::EINVAL,
            ..
        })
    ));
}
