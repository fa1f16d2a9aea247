//! Every command once through a real socket, the way QEMU uses it.

mod common;

use std::os::fd::AsFd;

use common::*;
use vfio_bindings::bindings::vfio as v;
use vfio_user::wire::REGION_INFO_SIZE;
use vfio_user::{
    eventfd, eventfd_take, memfd, pci_irq, pci_region, Client, DmaSpace, IrqOutcome, MmapRegion, DEVICE_FLAG_PCI,
    DEVICE_FLAG_RESET, REGION_FLAG_CAPS, REGION_FLAG_MMAP,
};

#[test]
fn version_negotiates_and_connects_the_device() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let caps = c.server_caps().unwrap();
    assert_eq!(caps.max_data_xfer_size, 1 << 20);
    assert_eq!(caps.pgsizes, 4096);
    assert!(caps.write_multiple);
    assert_eq!(dev.events(), vec![Event::Connected]);
}

#[test]
fn device_info_reports_flags_and_counts() {
    let (_dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let i = c.device_info().unwrap();
    assert_eq!(i.flags, DEVICE_FLAG_PCI | DEVICE_FLAG_RESET);
    assert_eq!((i.num_regions, i.num_irqs), (9, 5));
}

#[test]
fn region_info_sends_fd_and_sparse_areas_for_mmapable_region() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let (bar0, fd0) = c.region_info(pci_region::BAR0).unwrap();
    assert_eq!(bar0.size, BAR0_SIZE);
    assert_eq!(bar0.flags & REGION_FLAG_MMAP, 0);
    assert!(fd0.is_none());
    let (bar2, fd2) = c.region_info(pci_region::BAR2).unwrap();
    assert_eq!(bar2.size, BAR2_SIZE);
    assert_ne!(bar2.flags & REGION_FLAG_MMAP, 0);
    assert_ne!(bar2.flags & REGION_FLAG_CAPS, 0);
    assert_eq!(bar2.sparse.len(), 2);
    assert_eq!((bar2.sparse[1].offset, bar2.sparse[1].size), (0x8000, 0x8000));
    // The fd maps the same memory the device sees.
    let fd2 = fd2.expect("fd for the mmap-able region");
    let m = Client::mmap_region(fd2.as_fd(), &bar2, 0x8000, 0x8000, true).unwrap();
    m.slice(0x10, 4).unwrap().copy_from(&[9, 8, 7, 6]).unwrap();
    let mut out = [0u8; 4];
    dev.bar2.slice(0x8010, 4).unwrap().copy_to(&mut out);
    assert_eq!(out, [9, 8, 7, 6]);
    let (cfg, _) = c.region_info(pci_region::CONFIG).unwrap();
    assert_eq!(cfg.size, CONFIG_SIZE);
}

#[test]
fn region_info_with_small_argsz_reports_needed_argsz() {
    let (_dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let mut req = vec![0u8; REGION_INFO_SIZE];
    req[0..4].copy_from_slice(&(REGION_INFO_SIZE as u32).to_le_bytes());
    req[8..12].copy_from_slice(&pci_region::BAR2.to_le_bytes());
    let r = c
        .call(vfio_user::wire::Command::DeviceGetRegionInfo, &req, &[])
        .unwrap();
    assert_eq!(r.payload.len(), REGION_INFO_SIZE);
    let argsz = u32::from_le_bytes(r.payload[0..4].try_into().unwrap());
    assert_eq!(argsz as usize, REGION_INFO_SIZE + 16 + 2 * 16);
}

#[test]
fn irq_info_reports_counts() {
    let (_dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    assert_eq!(c.irq_info(pci_irq::MSIX).unwrap().count, MSIX_VECTORS);
    assert_eq!(c.irq_info(pci_irq::INTX).unwrap().count, 1);
    assert_eq!(c.irq_info(pci_irq::MSI).unwrap().count, 0);
}

#[test]
fn set_irqs_eventfds_mask_unmask_and_deassign() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let fds: Vec<_> = (0..MSIX_VECTORS).map(|_| eventfd().unwrap()).collect();
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    c.set_irq_eventfds(pci_irq::MSIX, 0, &borrowed).unwrap();
    let irqs = dev.client().irqs;
    assert_eq!(irqs.trigger(pci_irq::MSIX, 3).unwrap(), IrqOutcome::Fired);
    assert_eq!(eventfd_take(fds[3].as_fd()).unwrap(), 1);
    // Mask vector 3, trigger: pending, fires on unmask.
    c.set_irqs(
        v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_MASK,
        pci_irq::MSIX,
        3,
        1,
        &[],
    )
    .unwrap();
    assert_eq!(irqs.trigger(pci_irq::MSIX, 3).unwrap(), IrqOutcome::Pending);
    assert_eq!(eventfd_take(fds[3].as_fd()).unwrap(), 0);
    c.set_irqs(
        v::VFIO_IRQ_SET_DATA_BOOL | v::VFIO_IRQ_SET_ACTION_UNMASK,
        pci_irq::MSIX,
        2,
        2,
        &[false, true],
    )
    .unwrap();
    assert_eq!(eventfd_take(fds[3].as_fd()).unwrap(), 1);
    // A DATA_BOOL trigger from the client fires vector 5.
    c.set_irqs(
        v::VFIO_IRQ_SET_DATA_BOOL | v::VFIO_IRQ_SET_ACTION_TRIGGER,
        pci_irq::MSIX,
        5,
        1,
        &[true],
    )
    .unwrap();
    assert_eq!(eventfd_take(fds[5].as_fd()).unwrap(), 1);
    // De-assign vectors 0..4 with an fd-less EVENTFD set.
    c.set_irq_eventfds_deassign(pci_irq::MSIX, 0, 4).unwrap();
    assert_eq!(irqs.trigger(pci_irq::MSIX, 1).unwrap(), IrqOutcome::NoEventfd);
    assert_eq!(irqs.trigger(pci_irq::MSIX, 6).unwrap(), IrqOutcome::Fired);
    // Disable the whole index.
    c.set_irqs(
        v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_TRIGGER,
        pci_irq::MSIX,
        0,
        0,
        &[],
    )
    .unwrap();
    assert_eq!(irqs.trigger(pci_irq::MSIX, 6).unwrap(), IrqOutcome::NoEventfd);
}

#[test]
fn region_read_write_posted_and_multi() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    c.region_write(pci_region::BAR0, 0x10, &[1, 2, 3, 4]).unwrap();
    assert_eq!(c.region_read(pci_region::BAR0, 0x10, 4).unwrap(), vec![1, 2, 3, 4]);
    // A posted write is not answered, but a later read sees it (in-order processing).
    c.region_write_posted(pci_region::BAR0, 0x20, &[5, 6]).unwrap();
    assert_eq!(c.region_read(pci_region::BAR0, 0x20, 2).unwrap(), vec![5, 6]);
    c.write_multi(
        &[(pci_region::BAR0, 0x30, &[7]), (pci_region::CONFIG, 0x4, &[8, 9])],
        false,
    )
    .unwrap();
    c.write_multi(&[(pci_region::BAR0, 0x40, &[0xaa; 8])], true).unwrap();
    assert_eq!(c.region_read(pci_region::BAR0, 0x30, 1).unwrap(), vec![7]);
    assert_eq!(c.region_read(pci_region::CONFIG, 0x4, 2).unwrap(), vec![8, 9]);
    assert_eq!(c.region_read(pci_region::BAR0, 0x40, 8).unwrap(), vec![0xaa; 8]);
    assert_eq!(dev.bar0.lock().unwrap()[0x10], 1);
    assert_eq!(c.region_read(pci_region::BAR4, 0, 16).unwrap(), vec![0x44; 16]);
}

#[test]
fn reset_reaches_the_device() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    c.reset().unwrap();
    c.reset().unwrap();
    assert_eq!(dev.resets.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn dma_map_with_memfd_gives_device_zero_copy_access() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let ram = memfd("guest-ram", 0x10000).unwrap();
    let view = MmapRegion::map(ram.as_fd(), 0, 0x10000, true, true).unwrap();
    // Two adjacent page maps (as behind an IOMMU) and one read-only page.
    c.dma_map(0x10000, 0x1000, ram.as_fd(), 0x0, true, true).unwrap();
    c.dma_map(0x11000, 0x1000, ram.as_fd(), 0x1000, true, true).unwrap();
    c.dma_map(0x20000, 0x1000, ram.as_fd(), 0x2000, true, false).unwrap();
    let dma = dev.client().dma;
    assert_eq!(dma.len(), 3);
    // A write spanning both adjacent maps lands in the memfd.
    let data: Vec<u8> = (0..64).collect();
    dma.write(0x10fe0, &data).unwrap();
    let mut seen = vec![0u8; 64];
    view.slice(0xfe0, 64).unwrap().copy_to(&mut seen);
    assert_eq!(seen, data);
    // Read back, copy to the read-only page fails with its address.
    let mut back = vec![0u8; 64];
    dma.read(0x10fe0, &mut back).unwrap();
    assert_eq!(back, data);
    let err = DmaSpace::copy(&dma, 0x10fe0, &dma, 0x20ff0, 64).unwrap_err();
    assert_eq!(err.error, vfio_user::DmaError::ReadOnly { addr: 0x20ff0 });
    // Copy within the space, across the page boundary.
    DmaSpace::copy(&dma, 0x10fe0, &dma, 0x10000, 64).unwrap();
    let mut copied = vec![0u8; 64];
    view.slice(0, 64).unwrap().copy_to(&mut copied);
    assert_eq!(copied, data);
    // Reading past the mapped range reports the first unmapped byte.
    let mut big = vec![0u8; 0x2000];
    assert_eq!(
        dma.read(0x10800, &mut big),
        Err(vfio_user::DmaError::NotMapped { addr: 0x12000 })
    );
    assert!(matches!(dev.events()[1], Event::Mapped(m) if m.iova == 0x10000 && m.fd_offset == Some(0)));
}

#[test]
fn dma_without_fd_goes_through_dma_read_and_dma_write_messages() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let local = c.dma_map_local(0x40000, 0x3000, true, true).unwrap();
    local.write(0x100, b"hello from the client").unwrap();
    let dma = dev.client().dma;
    let mut buf = vec![0u8; 21];
    dma.read(0x40100, &mut buf).unwrap();
    assert_eq!(&buf, b"hello from the client");
    dma.write(0x42ff0, &[0x5a; 16]).unwrap();
    assert_eq!(local.read(0x2ff0, 16).unwrap(), vec![0x5a; 16]);
    // A read-only fd-less map refuses writes locally, before any message.
    let _ro = c.dma_map_local(0x50000, 0x1000, true, false).unwrap();
    assert_eq!(
        dma.write(0x50000, &[1]),
        Err(vfio_user::DmaError::ReadOnly { addr: 0x50000 })
    );
}

#[test]
fn large_dma_read_through_messages_is_split_at_max_transfer() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let size = 3 << 20;
    let local = c.dma_map_local(0x100000, size, true, true).unwrap();
    let pattern: Vec<u8> = (0..size as usize).map(|i| (i * 7 % 251) as u8).collect();
    local.write(0, &pattern).unwrap();
    let mut out = vec![0u8; size as usize];
    dev.client().dma.read(0x100000, &mut out).unwrap();
    assert!(out == pattern);
}

#[test]
fn packed_layout_for_dma_messages_also_works() {
    let opts = vfio_user::ServerOptions {
        dma_layout: vfio_user::wire::DmaRwLayout::QemuPacked,
        ..Default::default()
    };
    let (dev, srv) = start_with(opts);
    let copts = vfio_user::ClientOptions {
        dma_layout: vfio_user::wire::DmaRwLayout::QemuPacked,
        ..Default::default()
    };
    let c = Client::connect_with(srv.path(), copts).unwrap();
    let local = c.dma_map_local(0x1000, 0x1000, true, true).unwrap();
    dev.client().dma.write(0x1004, &[1, 2, 3]).unwrap();
    assert_eq!(local.read(4, 3).unwrap(), vec![1, 2, 3]);
    let mut b = [0u8; 3];
    dev.client().dma.read(0x1004, &mut b).unwrap();
    assert_eq!(b, [1, 2, 3]);
}

#[test]
fn dma_unmap_and_unmap_all_remove_mappings() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let ram = memfd("guest-ram", 0x4000).unwrap();
    for i in 0..4u64 {
        c.dma_map(0x1000 * (i + 1), 0x1000, ram.as_fd(), 0x1000 * i, true, true)
            .unwrap();
    }
    let dma = dev.client().dma;
    // Unmapping a range that holds two maps removes both; an empty range is fine.
    c.dma_unmap(0x1000, 0x2000).unwrap();
    c.dma_unmap(0x100000, 0x1000).unwrap();
    assert_eq!(dma.len(), 2);
    assert_eq!(
        dma.write(0x1000, &[1]),
        Err(vfio_user::DmaError::NotMapped { addr: 0x1000 })
    );
    c.dma_unmap_all().unwrap();
    assert!(dma.is_empty());
    assert!(dev.events().contains(&Event::Unmapped(0x4000, 0x1000)));
}

#[test]
fn unmapped_fdless_range_reports_efault_from_client() {
    // The client answers DMA_READ for memory it does not have with EFAULT; the device sees
    // the errno with the faulting address.
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let local = c.dma_map_local(0x1000, 0x1000, true, true).unwrap();
    drop(local);
    c.forget_local(0x1000, 0x1000);
    let mut b = [0u8; 4];
    let e = dev.client().dma.read(0x1000, &mut b).unwrap_err();
    assert_eq!(
        e,
        vfio_user::DmaError::Remote {
            addr: 0x1000,
            errno: vfio_user::Errno::EFAULT
        }
    );
}
