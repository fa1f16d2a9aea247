//! Every command through the real vfio-user client and server: IOVA and BUS_ADDR segments,
//! peer-to-peer and own-BAR transfers, chained lists, lists in BAR2, MSI-X eventfds,
//! fd-less (DMA message) mappings, POLL mode.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::*;
use dma_range::regs::*;
use dma_range::{encode_chained, AddrSpace, Command, DmaRange, Opcode, Status};
use phyr_device::{FleetConfig, TraceSettings};
use phyr_kernels::crc32c;
use vfio_user::pci_irq;

#[test]
fn identity_and_config_space_through_the_client() {
    let r = rig(1);
    let e = &r.eps[0];
    assert_eq!(e.r32(REG_ID), PHYR_ID);
    assert_eq!(e.r32(REG_NUM_QUEUES), 4);
    assert_eq!(e.r64(REG_BAR2_SIZE), 4 << 20);
    assert_eq!(e.cfg_r32(0) & 0xFFFF, 0x1234);
    assert_eq!(e.cfg_r32(0) >> 16, 0x7068);
    // BARs read back as programmed (flags in the low bits).
    assert_eq!(e.cfg_r32(0x10), bar0_bus(0) as u32);
    assert_eq!(e.cfg_r32(0x18), bar2_bus(0) as u32 | 0xC);
    e.w32(REG_SCRATCH, 0xC0FFEE);
    assert_eq!(e.r32(REG_SCRATCH), 0xC0FFEE);
}

#[test]
fn every_command_on_guest_ram() {
    let r = rig(1);
    let e = &r.eps[0];
    let mut q = QueueDrv::new(e, 0, 16, 0);
    let src_data = pattern(100_000, 3);
    e.put(data(0), &src_data);
    let src = e.list(lists(0), &[iova(data(0), 60_000), iova(data(60_000), 40_000)]);
    let dst = e.list(lists(0x100), &[iova(data(0x4_0000), 100_000)]);

    let c = q.run(
        e,
        &Command::new(Opcode::Nop, 1, DmaRange::default(), DmaRange::default()),
    );
    assert_eq!((c.command_id, c.status()), (1, Some(Status::SUCCESS)));

    let c = q.run(e, &Command::new(Opcode::Copy, 2, src, dst));
    assert_eq!((c.status(), c.result), (Some(Status::SUCCESS), 100_000));
    assert_eq!(e.get(data(0x4_0000), 100_000), src_data);

    let c = q.run(e, &Command::new(Opcode::Crc32c, 3, dst, DmaRange::default()));
    assert_eq!(c.result, u64::from(crc32c::crc32c(&src_data)));

    let c = q.run(e, &Command::new(Opcode::Compare, 4, src, dst));
    assert_eq!((c.status(), c.result), (Some(Status::SUCCESS), 100_000));
    e.put(data(0x4_0000 + 77_777), &[!src_data[77_777]]);
    let c = q.run(e, &Command::new(Opcode::Compare, 5, src, dst));
    assert_eq!((c.status(), c.result), (Some(Status::COMPARE_MISMATCH), 77_777));

    let mut fill = Command::new(Opcode::Fill, 6, DmaRange::default(), dst);
    fill.pattern = 0x1122_3344_5566_7788;
    let c = q.run(e, &fill);
    assert_eq!((c.status(), c.result), (Some(Status::SUCCESS), 100_000));
    let got = e.get(data(0x4_0000), 16);
    assert_eq!(got[..8], 0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(got[8..], got[..8]);
    assert_eq!(e.r64(REG_COMPLETED), 6);
    assert_eq!(e.r64(REG_FAILED), 0);
}

#[test]
fn p2p_copy_between_two_endpoints_and_to_own_bar_mixing_iova_and_bus() {
    let r = rig(2);
    let (e0, e1) = (&r.eps[0], &r.eps[1]);
    let bar2_1 = e1.map_bar2();
    let bar2_0 = e0.map_bar2();
    let mut q = QueueDrv::new(e0, 1, 8, 0);
    let d = pattern(20_000, 9);
    e0.put(data(0), &d[..12_000]);
    bar2_0.slice(0x1000, 8_000).unwrap().copy_from(&d[12_000..]).unwrap();
    // Source: guest RAM (IOVA) + own BAR2 (bus address); destination: peer BAR2 + own RAM.
    let src = e0.list(lists(0), &[iova(data(0), 12_000), bus(bar2_bus(0) + 0x1000, 8_000)]);
    let dst = e0.list(
        lists(0x100),
        &[bus(bar2_bus(1) + 0x10, 15_000), iova(data(0x8_0000), 5_000)],
    );
    let c = q.run(e0, &Command::new(Opcode::Copy, 7, src, dst));
    assert_eq!((c.status(), c.result), (Some(Status::SUCCESS), 20_000));
    let mut peer = vec![0u8; 15_000];
    bar2_1.slice(0x10, 15_000).unwrap().copy_to(&mut peer);
    assert_eq!(peer, d[..15_000]);
    assert_eq!(e0.get(data(0x8_0000), 5_000), d[15_000..]);
    // BUS->BUS: peer BAR2 back into own BAR2.
    let src = e0.list(lists(0x200), &[bus(bar2_bus(1) + 0x10, 15_000)]);
    let dst = e0.list(lists(0x300), &[bus(bar2_bus(0) + 0x10_0000, 15_000)]);
    assert_eq!(
        q.run(e0, &Command::new(Opcode::Copy, 8, src, dst)).status(),
        Some(Status::SUCCESS)
    );
    let mut own = vec![0u8; 15_000];
    bar2_0.slice(0x10_0000, 15_000).unwrap().copy_to(&mut own);
    assert_eq!(own, d[..15_000]);
}

#[test]
fn chained_list_living_in_peer_bar2() {
    let r = rig(2);
    let (e0, e1) = (&r.eps[0], &r.eps[1]);
    let bar2_1 = e1.map_bar2();
    let mut q = QueueDrv::new(e0, 0, 8, 0);
    let d = pattern(40 * 1000, 5);
    e0.put(data(0), &d);
    let segs: Vec<DmaRange> = (0..40).map(|i| iova(data(i * 1000), 1000)).collect();
    // Blocks of 8 entries, chained, in the peer's BAR2 (written by the "guest CPU" via mmap).
    let (head, blocks) = encode_chained(&segs, 8, |i| (AddrSpace::Bus, bar2_bus(1) + 0x2000 + i as u64 * 0x100));
    for (i, b) in blocks.iter().enumerate() {
        bar2_1.slice(0x2000 + i * 0x100, b.len()).unwrap().copy_from(b).unwrap();
    }
    assert!(blocks.len() > 4);
    let dst = e0.list(lists(0), &[iova(data(0x10_0000), 40_000)]);
    let c = q.run(e0, &Command::new(Opcode::Copy, 1, head, dst));
    assert_eq!((c.status(), c.result), (Some(Status::SUCCESS), 40_000));
    assert_eq!(e0.get(data(0x10_0000), 40_000), d);
    let c = q.run(e0, &Command::new(Opcode::Crc32c, 2, head, DmaRange::default()));
    assert_eq!(c.result, u64::from(crc32c::crc32c(&d)));
}

#[test]
fn msix_is_delivered_through_the_clients_eventfd() {
    let r = rig(1);
    let e = &r.eps[0];
    let fds: Vec<_> = (0..MSIX_VECTORS).map(|_| vfio_user::eventfd().unwrap()).collect();
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    e.client.set_irq_eventfds(pci_irq::MSIX, 0, &borrowed).unwrap();
    let mut q = QueueDrv::new(e, 3, 4, QCTRL_IRQ);
    q.run(
        e,
        &Command::new(Opcode::Nop, 1, DmaRange::default(), DmaRange::default()),
    );
    let t = Instant::now();
    let mut got = 0;
    while got == 0 && t.elapsed() < Duration::from_secs(5) {
        got = vfio_user::eventfd_take(fds[3].as_fd()).unwrap_or(0);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(got >= 1, "vector 3 (queue 3's MSIX_VECTOR) never fired");
    assert_eq!(vfio_user::eventfd_take(fds[0].as_fd()).unwrap_or(0), 0);
    // IRQ_TEST raises any vector.
    e.w32(REG_IRQ_TEST, 6);
    let t = Instant::now();
    let mut got = 0;
    while got == 0 && t.elapsed() < Duration::from_secs(5) {
        got = vfio_user::eventfd_take(fds[6].as_fd()).unwrap_or(0);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(got, 1);
}

#[test]
fn fd_less_mapping_is_reached_through_dma_messages() {
    let r = rig(1);
    let e = &r.eps[0];
    let local = e.client.dma_map_local(0x4000_0000, 1 << 20, true, true).unwrap();
    let d = pattern(300_000, 1);
    local.write(0x100, &d).unwrap();
    let mut q = QueueDrv::new(e, 0, 4, 0);
    let src = e.list(lists(0), &[iova(0x4000_0100, 300_000)]);
    let dst = e.list(lists(0x100), &[iova(data(0), 300_000)]);
    let c = q.run(e, &Command::new(Opcode::Copy, 1, src, dst));
    assert_eq!((c.status(), c.result), (Some(Status::SUCCESS), 300_000));
    assert_eq!(e.get(data(0), 300_000), d);
    // And back into the fd-less map.
    let back = e.list(lists(0x200), &[iova(0x4008_0000, 300_000)]);
    assert_eq!(
        q.run(e, &Command::new(Opcode::Copy, 2, dst, back)).status(),
        Some(Status::SUCCESS)
    );
    assert_eq!(local.read(0x8_0000, 300_000).unwrap(), d);
}

#[test]
fn poll_mode_with_shadow_doorbells_runs_many_commands() {
    let r = rig(1);
    let e = &r.eps[0];
    let mut q = QueueDrv::new(e, 2, 64, QCTRL_POLL);
    for round in 0..10u16 {
        for i in 0..50u16 {
            q.push(
                e,
                &Command::new(Opcode::Nop, round * 100 + i, DmaRange::default(), DmaRange::default()),
            );
        }
        q.ring(e);
        for i in 0..50u16 {
            assert_eq!(q.wait(e).command_id, round * 100 + i);
        }
    }
    assert_eq!(e.r64(REG_COMPLETED), 500);
}

#[test]
fn guest_ram_mapped_page_by_page_like_intel_iommu() {
    let r = rig(1);
    let e = &r.eps[0];
    // Map a second copy of guest RAM page by page at another IOVA, as QEMU does behind
    // intel-iommu, and copy across 64 page mappings in one segment.
    for p in 0..64u64 {
        e.client
            .dma_map(
                0x2_0000_0000 + p * 4096,
                4096,
                e.ram_fd.as_fd(),
                DATA_AREA + p * 4096,
                true,
                true,
            )
            .unwrap();
    }
    let d = pattern(64 * 4096 - 100, 8);
    let mut q = QueueDrv::new(e, 0, 4, 0);
    e.put(data(0x10_0000), &d);
    let src = e.list(lists(0), &[iova(data(0x10_0000), d.len() as u32)]);
    let dst = e.list(lists(0x100), &[iova(0x2_0000_0000 + 50, d.len() as u32)]);
    assert_eq!(
        q.run(e, &Command::new(Opcode::Copy, 1, src, dst)).status(),
        Some(Status::SUCCESS)
    );
    assert_eq!(e.get(data(50), d.len()), d);
}

#[test]
fn list_living_in_own_bar2_written_by_the_guest_cpu() {
    let r = rig(1);
    let e = &r.eps[0];
    let bar2 = e.map_bar2();
    let d = pattern(3000, 4);
    e.put(data(0), &d);
    let segs = [iova(data(0), 1000), iova(data(1000), 2000)];
    let bytes: Vec<u8> = segs.iter().flat_map(|s| s.to_bytes()).collect();
    bar2.slice(0x8000, bytes.len()).unwrap().copy_from(&bytes).unwrap();
    let mut q = QueueDrv::new(e, 0, 4, 0);
    let head = Command::list_head(AddrSpace::Bus, bar2_bus(0) + 0x8000, 2);
    let c = q.run(e, &Command::new(Opcode::Crc32c, 1, head, DmaRange::default()));
    assert_eq!(
        (c.status(), c.result),
        (Some(Status::SUCCESS), u64::from(crc32c::crc32c(&d)))
    );
}

#[test]
fn command_done_is_recorded_as_each_command_of_a_batch_ends() {
    use phyr_trace::{Event, Payload};
    let trace = tmpdir("done-order");
    let cfg = FleetConfig {
        endpoints: 1,
        bar2_size: 4 << 20,
        trace: Some(TraceSettings {
            dir: trace.clone(),
            data_crc: true,
            max_bytes: phyr_trace::TraceConfig::default().max_bytes,
        }),
        ..Default::default()
    };
    let r = rig_with(cfg, 16 << 20);
    let e = &r.eps[0];
    let mut q = QueueDrv::new(e, 0, 16, 0);
    e.put(data(0), &pattern(200_000, 9));
    let src = e.list(lists(0), &[iova(data(0), 200_000)]);
    let dst = e.list(lists(0x100), &[iova(data(0x10_0000), 200_000)]);
    // Four commands behind one doorbell: the device runs them as one batch.
    for id in 1..=4 {
        q.push(e, &Command::new(Opcode::Copy, id, src, dst));
    }
    q.ring(e);
    for _ in 0..4 {
        assert_eq!(q.wait(e).status(), Some(Status::SUCCESS));
    }
    drop(r); // flushes the trace
    let t = phyr_trace::read_bytes(&std::fs::read(trace.join("ep0.phyrtrace")).unwrap()).unwrap();
    // (command id, is CommandDone, t_ns) of queue 0's records, ring entries aside.
    let seq: Vec<(u16, bool, u64)> = t
        .records
        .iter()
        .filter_map(|(_, rec)| match &rec.payload {
            Payload::Dma(d) if d.queue == 0 && d.list != 3 => Some((d.command_id, false, rec.t_ns)),
            Payload::Event {
                event: Event::CommandDone { command_id, .. },
                ..
            } => Some((*command_id, true, rec.t_ns)),
            _ => None,
        })
        .collect();
    // Each command's transfers, then its CommandDone, then the next command's: in file order
    // and in time.
    let ids: Vec<u16> = seq.iter().map(|s| s.0).collect();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(ids, want, "{seq:?}");
    for w in seq.windows(2) {
        assert!(w[0].2 <= w[1].2, "time goes back: {w:?}");
        if w[0].0 != w[1].0 {
            assert!(
                w[0].1 && !w[1].1,
                "command {} ends with its CommandDone: {seq:?}",
                w[0].0
            );
        }
    }
    assert_eq!(seq.iter().filter(|s| s.1).count(), 4);
    // Ring entries and completions carry the CRC of their bytes like every other transfer.
    let ring: Vec<_> = t
        .records
        .iter()
        .filter_map(|(_, rec)| match &rec.payload {
            Payload::Dma(d) if d.list == 3 => Some(d.crc32c),
            _ => None,
        })
        .collect();
    assert!(ring.len() >= 2 && ring.iter().all(Option::is_some), "{ring:?}");
    let _ = std::fs::remove_dir_all(trace);
}
