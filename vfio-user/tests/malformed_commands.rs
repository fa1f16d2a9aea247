//! The client as an adversary, command by command: DMA_MAP/DMA_UNMAP, SET_IRQS and region
//! access (malformed.rs has framing, VERSION and the info queries). Each test is named after
//! the hostile input, checks the exact errno and that the server keeps working afterwards.

mod common;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use common::*;
use vfio_bindings::bindings::vfio as v;
use vfio_user::wire::{
    dma_flags, Capabilities, Command, DmaMap, DmaUnmap, Header, RegionAccess, SetIrqs, FLAG_NO_REPLY, HEADER_SIZE,
};
use vfio_user::{eventfd, memfd, pci_irq, pci_region, Client, ClientOptions, Errno};

// ---- DMA_MAP / DMA_UNMAP ----

#[test]
fn dma_map_with_wrong_msg_size_gets_einval() {
    let (_dev, _srv, c) = connected();
    let ram = memfd("r", 0x1000).unwrap();
    let mut p = DmaMap {
        flags: 3,
        offset: 0,
        iova: 0,
        size: 0x1000,
    }
    .encode();
    p.pop();
    assert_eq!(errno_of(&c, 2, &p, &[ram.as_fd()]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn dma_map_argsz_lie_gets_einval() {
    let (_dev, _srv, c) = connected();
    let mut p = DmaMap {
        flags: 3,
        offset: 0,
        iova: 0,
        size: 0x1000,
    }
    .encode();
    p[0..4].copy_from_slice(&4096u32.to_le_bytes());
    assert_eq!(errno_of(&c, 2, &p, &[]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn dma_map_overlapping_existing_map_gets_eexist() {
    let (dev, _srv, c) = connected();
    let ram = memfd("r", 0x4000).unwrap();
    c.dma_map(0x2000, 0x2000, ram.as_fd(), 0, true, true).unwrap();
    let e = c.dma_map(0x3000, 0x2000, ram.as_fd(), 0, true, true).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EEXIST));
    let e = c.dma_map(0x1000, 0x2000, ram.as_fd(), 0, true, true).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EEXIST));
    assert_eq!(dev.client().dma.len(), 1);
    still_works(&c);
}

#[test]
fn dma_map_with_two_fds_gets_einval() {
    let (_dev, _srv, c) = connected();
    let a = memfd("a", 0x1000).unwrap();
    let b = memfd("b", 0x1000).unwrap();
    let p = DmaMap {
        flags: 3,
        offset: 0,
        iova: 0,
        size: 0x1000,
    }
    .encode();
    assert_eq!(errno_of(&c, 2, &p, &[a.as_fd(), b.as_fd()]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn dma_map_wrapping_the_address_space_gets_einval() {
    let (_dev, _srv, c) = connected();
    let p = DmaMap {
        flags: 3,
        offset: 0,
        iova: u64::MAX - 0xfff,
        size: 0x2000,
    }
    .encode();
    assert_eq!(errno_of(&c, 2, &p, &[]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn dma_map_with_unmappable_fd_gets_its_errno() {
    let (_dev, _srv, c) = connected();
    let efd = eventfd().unwrap();
    let p = DmaMap {
        flags: 3,
        offset: 0,
        iova: 0,
        size: 0x1000,
    }
    .encode();
    assert_eq!(errno_of(&c, 2, &p, &[efd.as_fd()]), Errno::ENODEV);
    still_works(&c);
}

#[test]
fn dma_map_past_end_of_fd_gets_einval() {
    // Touching such a mapping would raise SIGBUS in the device.
    let (dev, _srv, c) = connected();
    let ram = memfd("small", 0x1000).unwrap();
    let e = c.dma_map(0x10000, 0x2000, ram.as_fd(), 0, true, true).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    let e = c.dma_map(0x10000, 0x1000, ram.as_fd(), 0x1000, true, true).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    assert!(dev.client().dma.is_empty());
    still_works(&c);
}

#[test]
fn dma_map_past_max_dma_maps_gets_enospc() {
    let (_dev, srv) = start();
    let caps = Capabilities {
        max_dma_maps: 2,
        ..Capabilities::ours()
    };
    let c = Client::connect_with(
        srv.path(),
        ClientOptions {
            caps,
            ..Default::default()
        },
    )
    .unwrap();
    let ram = memfd("r", 0x3000).unwrap();
    c.dma_map(0x1000, 0x1000, ram.as_fd(), 0, true, true).unwrap();
    c.dma_map(0x2000, 0x1000, ram.as_fd(), 0, true, true).unwrap();
    let e = c.dma_map(0x3000, 0x1000, ram.as_fd(), 0, true, true).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENOSPC));
    still_works(&c);
}

#[test]
fn dma_unmap_splitting_a_mapping_gets_einval() {
    let (dev, _srv, c) = connected();
    let ram = memfd("r", 0x2000).unwrap();
    c.dma_map(0x10000, 0x2000, ram.as_fd(), 0, true, true).unwrap();
    assert_eq!(c.dma_unmap(0x11000, 0x1000).unwrap_err().errno(), Some(Errno::EINVAL));
    assert_eq!(c.dma_unmap(0xf000, 0x2000).unwrap_err().errno(), Some(Errno::EINVAL));
    assert_eq!(dev.client().dma.len(), 1);
    still_works(&c);
}

#[test]
fn dma_unmap_all_with_a_range_gets_einval() {
    let (_dev, _srv, c) = connected();
    let p = DmaUnmap {
        flags: dma_flags::UNMAP_ALL,
        iova: 0x1000,
        size: 0x1000,
    }
    .encode();
    assert_eq!(errno_of(&c, 3, &p, &[]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn dma_unmap_with_dirty_bitmap_gets_enotsup() {
    let (_dev, _srv, c) = connected();
    let p = DmaUnmap {
        flags: dma_flags::UNMAP_GET_DIRTY_BITMAP,
        iova: 0x1000,
        size: 0x1000,
    }
    .encode();
    assert_eq!(errno_of(&c, 3, &p, &[]), Errno::ENOTSUP);
    still_works(&c);
}

#[test]
fn dma_unmap_with_an_fd_gets_einval() {
    let (_dev, _srv, c) = connected();
    let e = eventfd().unwrap();
    let p = DmaUnmap {
        flags: 0,
        iova: 0x1000,
        size: 0x1000,
    }
    .encode();
    assert_eq!(errno_of(&c, 3, &p, &[e.as_fd()]), Errno::EINVAL);
    still_works(&c);
}

// ---- SET_IRQS ----

const TRIGGER_EVENTFD: u32 = v::VFIO_IRQ_SET_DATA_EVENTFD | v::VFIO_IRQ_SET_ACTION_TRIGGER;

#[test]
fn set_irqs_range_past_count_gets_einval() {
    let (_dev, _srv, c) = connected();
    let flags = v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_MASK;
    assert_eq!(
        errno_of(&c, 8, &SetIrqs::encode(flags, pci_irq::MSIX, 6, 3, &[]), &[]),
        Errno::EINVAL
    );
    assert_eq!(
        errno_of(&c, 8, &SetIrqs::encode(flags, pci_irq::MSIX, u32::MAX, 2, &[]), &[]),
        Errno::EINVAL
    );
    assert_eq!(
        errno_of(&c, 8, &SetIrqs::encode(flags, 5, 0, 1, &[]), &[]),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn set_irqs_with_wrong_number_of_fds_gets_einval() {
    let (_dev, _srv, c) = connected();
    let fds: Vec<_> = (0..2).map(|_| eventfd().unwrap()).collect();
    let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    assert_eq!(
        errno_of(&c, 8, &SetIrqs::encode(TRIGGER_EVENTFD, pci_irq::MSIX, 0, 3, &[]), &b),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn set_irqs_with_more_fds_than_max_msg_fds_gets_einval() {
    let (_dev, srv) = start();
    let caps = Capabilities {
        max_msg_fds: 2,
        ..Capabilities::ours()
    };
    let c = Client::connect_with(
        srv.path(),
        ClientOptions {
            caps,
            ..Default::default()
        },
    )
    .unwrap();
    let fds: Vec<_> = (0..3).map(|_| eventfd().unwrap()).collect();
    let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    assert_eq!(
        errno_of(&c, 8, &SetIrqs::encode(TRIGGER_EVENTFD, pci_irq::MSIX, 0, 3, &[]), &b),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn set_irqs_fds_with_data_none_gets_einval() {
    let (_dev, _srv, c) = connected();
    let e = eventfd().unwrap();
    let flags = v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_TRIGGER;
    assert_eq!(
        errno_of(&c, 8, &SetIrqs::encode(flags, pci_irq::MSIX, 0, 1, &[]), &[e.as_fd()]),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn set_irqs_with_two_data_types_gets_einval() {
    let (_dev, _srv, c) = connected();
    let flags = v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_DATA_BOOL | v::VFIO_IRQ_SET_ACTION_TRIGGER;
    assert_eq!(
        errno_of(&c, 8, &SetIrqs::encode(flags, pci_irq::MSIX, 0, 1, &[true]), &[]),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn set_irqs_argsz_lie_gets_einval() {
    let (_dev, _srv, c) = connected();
    let flags = v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_MASK;
    let mut p = SetIrqs::encode(flags, pci_irq::MSIX, 0, 1, &[]);
    p[0..4].copy_from_slice(&64u32.to_le_bytes());
    assert_eq!(errno_of(&c, 8, &p, &[]), Errno::EINVAL);
    still_works(&c);
}

// ---- region access ----

#[test]
fn region_read_past_region_end_gets_einval() {
    let (_dev, _srv, c) = connected();
    assert_eq!(
        errno_of(
            &c,
            9,
            &RegionAccess::encode(BAR0_SIZE - 2, pci_region::BAR0, 4, &[]),
            &[]
        ),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn region_read_with_offset_overflow_gets_einval() {
    let (_dev, _srv, c) = connected();
    assert_eq!(
        errno_of(
            &c,
            9,
            &RegionAccess::encode(u64::MAX - 1, pci_region::BAR0, 4, &[]),
            &[]
        ),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn region_read_of_index_out_of_range_gets_einval() {
    let (_dev, _srv, c) = connected();
    assert_eq!(errno_of(&c, 9, &RegionAccess::encode(0, 9, 4, &[]), &[]), Errno::EINVAL);
    assert_eq!(
        errno_of(&c, 10, &RegionAccess::encode(0, u32::MAX, 1, &[1]), &[]),
        Errno::EINVAL
    );
    // An empty region (size 0) has no valid byte.
    assert_eq!(
        errno_of(&c, 9, &RegionAccess::encode(0, pci_region::BAR1, 1, &[]), &[]),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn region_read_count_past_max_data_xfer_gets_e2big() {
    let (_dev, _srv, c) = connected();
    assert_eq!(
        errno_of(
            &c,
            9,
            &RegionAccess::encode(0, pci_region::BAR2, (1 << 20) + 1, &[]),
            &[]
        ),
        Errno::E2BIG
    );
    still_works(&c);
}

#[test]
fn region_read_with_trailing_bytes_gets_einval() {
    let (_dev, _srv, c) = connected();
    assert_eq!(
        errno_of(&c, 9, &RegionAccess::encode(0, pci_region::BAR0, 4, &[1, 2]), &[]),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn region_write_count_lie_gets_einval() {
    let (_dev, _srv, c) = connected();
    assert_eq!(
        errno_of(
            &c,
            10,
            &RegionAccess::encode(0, pci_region::BAR0, 8, &[1, 2, 3, 4]),
            &[]
        ),
        Errno::EINVAL
    );
    assert_eq!(
        errno_of(
            &c,
            10,
            &RegionAccess::encode(0, pci_region::BAR0, 2, &[1, 2, 3, 4]),
            &[]
        ),
        Errno::EINVAL
    );
    assert_eq!(errno_of(&c, 10, &[0u8; 10], &[]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn region_write_to_read_only_region_gets_einval() {
    let (_dev, _srv, c) = connected();
    assert_eq!(
        errno_of(&c, 10, &RegionAccess::encode(0, pci_region::BAR4, 1, &[1]), &[]),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn region_read_with_an_fd_gets_einval() {
    let (_dev, _srv, c) = connected();
    let e = eventfd().unwrap();
    assert_eq!(
        errno_of(&c, 9, &RegionAccess::encode(0, pci_region::BAR0, 1, &[]), &[e.as_fd()]),
        Errno::EINVAL
    );
    still_works(&c);
}

#[test]
fn write_multi_with_one_bad_entry_changes_nothing_and_gets_einval() {
    let (dev, _srv, c) = connected();
    let e = c
        .write_multi(
            &[
                (pci_region::BAR0, 0x100, &[1]),
                (pci_region::BAR0, BAR0_SIZE - 1, &[1, 2]),
            ],
            false,
        )
        .unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    assert_eq!(dev.bar0.lock().unwrap()[0x100], 0);
    still_works(&c);
}

#[test]
fn write_multi_with_count_past_entries_gets_e2big() {
    let (_dev, _srv, c) = connected();
    let mut p = vec![0u8; 8 + 24];
    p[0..8].copy_from_slice(&201u64.to_le_bytes());
    assert_eq!(errno_of(&c, 15, &p, &[]), Errno::E2BIG);
    p[0..8].copy_from_slice(&2u64.to_le_bytes());
    assert_eq!(errno_of(&c, 15, &p, &[]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn reset_with_payload_gets_einval() {
    let (dev, _srv, c) = connected();
    assert_eq!(errno_of(&c, 13, &[0u8; 4], &[]), Errno::EINVAL);
    assert_eq!(dev.resets.load(std::sync::atomic::Ordering::SeqCst), 0);
    still_works(&c);
}

#[test]
fn dma_map_of_unsealed_memfd_is_accepted_but_never_mmapped() {
    let (dev, _srv, c) = connected();
    // SAFETY: constant NUL-terminated name, constant flags.
    let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(raw >= 0);
    // SAFETY: memfd_create just returned this fd and nobody else owns it.
    let ram = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    std::fs::File::from(ram.try_clone().unwrap()).set_len(0x1000).unwrap();
    c.dma_map(0x10000, 0x1000, ram.as_fd(), 0, true, true).unwrap();
    let maps = dev.client().dma.mappings();
    assert_eq!(
        (maps.len(), maps[0].fd_offset),
        (1, None),
        "reached through DMA messages, not mmap"
    );
    // The client may shrink its file now: the server holds no mapping of it to fault on.
    std::fs::File::from(ram.try_clone().unwrap()).set_len(0).unwrap();
    still_works(&c);
}

#[test]
fn set_irqs_with_a_pipe_instead_of_an_eventfd_is_refused() {
    let (dev, _srv, c) = connected();
    let mut p = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the live two-element array.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned these fds and nobody else owns them.
    let (r, w) = unsafe {
        (
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(p[0]),
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(p[1]),
        )
    };
    assert_eq!(
        errno_of(
            &c,
            8,
            &SetIrqs::encode(TRIGGER_EVENTFD, pci_irq::MSIX, 0, 1, &[]),
            &[w.as_fd()]
        ),
        Errno::EINVAL
    );
    assert!(!dev.client().irqs.is_enabled(pci_irq::MSIX, 0).unwrap());
    drop(r);
    still_works(&c);
}

#[test]
fn set_irqs_with_a_blocking_eventfd_at_its_max_counter_does_not_hang_trigger() {
    let (dev, _srv, c) = connected();
    // SAFETY: plain syscall with constant flags (no EFD_NONBLOCK: the hostile part).
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(raw >= 0);
    // SAFETY: eventfd just returned this fd and nobody else owns it.
    let e = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let max = (u64::MAX - 1).to_ne_bytes();
    // SAFETY: writes 8 bytes from a live stack buffer to an fd we own.
    assert_eq!(unsafe { libc::write(e.as_raw_fd(), max.as_ptr().cast(), 8) }, 8);
    c.set_irq_eventfds(pci_irq::MSIX, 0, &[e.as_fd()]).unwrap();
    let irqs = dev.client().irqs;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(irqs.trigger(pci_irq::MSIX, 0));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("trigger blocked on a full eventfd");
    assert_eq!(r.unwrap(), vfio_user::IrqOutcome::Fired);
    still_works(&c);
}

#[test]
fn message_split_into_many_sendmsgs_each_with_fds_is_refused_before_fd_table_fills() {
    let (_dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let fds: Vec<OwnedFd> = (0..8).map(|_| eventfd().unwrap()).collect();
    let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    // A SET_IRQS header announcing a 4 KiB payload, then the payload a byte at a time, each
    // sendmsg carrying 8 more fds: the message never completes, the fds would pile up.
    let h = Header {
        msg_id: 3,
        command: Command::DeviceSetIrqs as u16,
        msg_size: (HEADER_SIZE + 4096) as u32,
        ..Header::default()
    };
    c.send_bytes(&h.encode(), &b).unwrap();
    for _ in 0..4 {
        if c.send_bytes(&[0], &b).is_err() {
            break;
        }
    }
    assert!(
        c.wait_closed(Duration::from_secs(5)),
        "the server kept reading a message with 40 fds"
    );
    server_accepts_next(&srv);
}

/// One whole message as bytes: a header for `command` (id `id`, `flags`) and `payload`.
fn message(id: u16, command: Command, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Header {
        msg_id: id,
        command: command as u16,
        msg_size: (HEADER_SIZE + payload.len()) as u32,
        flags,
        ..Header::default()
    }
    .encode()
    .to_vec();
    m.extend_from_slice(payload);
    m
}

fn dma_map_payload(iova: u64) -> Vec<u8> {
    DmaMap {
        flags: 3,
        offset: 0,
        iova,
        size: 0x1000,
    }
    .encode()
}

/// The mapping the device saw at `iova` (waits for it).
fn mapped_at(dev: &TestDevice, iova: u64) -> vfio_user::MappingInfo {
    let mut found = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            found = dev.events().into_iter().find_map(|e| match e {
                Event::Mapped(m) if m.iova == iova => Some(m),
                _ => None,
            });
            found.is_some()
        }),
        "no DMA_MAP at {iova:#x} reached the device"
    );
    found.unwrap()
}

#[test]
fn fd_attached_to_a_later_part_of_a_message_than_its_first_byte_belongs_to_that_message() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let ram = memfd("r", 0x1000).unwrap();
    let m = message(7, Command::DmaMap, 0, &dma_map_payload(0x10000));
    // The header alone, then the payload carrying the fd: the fd rode on this message's
    // bytes, so it is this message's (framing.rs), however the reads fall.
    c.send_bytes(&m[..HEADER_SIZE], &[]).unwrap();
    c.send_bytes(&m[HEADER_SIZE..], &[ram.as_fd()]).unwrap();
    assert_eq!(mapped_at(&dev, 0x10000).fd_offset, Some(0));
    still_works(&c);
}

#[test]
fn posted_write_then_dma_map_with_an_fd_back_to_back_gives_the_fd_to_the_dma_map() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let ram = memfd("r", 0x1000).unwrap();
    // As QEMU sends them: a posted register write, then at once a DMA_MAP with its fd, each
    // with its own sendmsg; the server may read both in one recvmsg.
    let w = message(
        8,
        Command::RegionWrite,
        FLAG_NO_REPLY,
        &RegionAccess::encode(0, pci_region::BAR0, 1, &[0x5a]),
    );
    c.send_bytes(&w, &[]).unwrap();
    c.send_bytes(
        &message(9, Command::DmaMap, 0, &dma_map_payload(0x20000)),
        &[ram.as_fd()],
    )
    .unwrap();
    assert_eq!(mapped_at(&dev, 0x20000).fd_offset, Some(0));
    assert_eq!(c.region_read(pci_region::BAR0, 0, 1).unwrap(), vec![0x5a]);
}

#[test]
fn two_messages_in_one_sendmsg_with_an_fd_give_it_to_the_message_holding_the_last_byte_read() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let ram = memfd("r", 0x1000).unwrap();
    // Two DMA_MAPs written with one sendmsg carrying one fd: both arrive in one read, so the
    // fd goes to the second (documented in framing.rs); the first maps without an fd.
    let mut both = message(10, Command::DmaMap, 0, &dma_map_payload(0x30000));
    both.extend(message(11, Command::DmaMap, 0, &dma_map_payload(0x40000)));
    c.send_bytes(&both, &[ram.as_fd()]).unwrap();
    assert_eq!(mapped_at(&dev, 0x40000).fd_offset, Some(0));
    assert_eq!(mapped_at(&dev, 0x30000).fd_offset, None);
    still_works(&c);
}
