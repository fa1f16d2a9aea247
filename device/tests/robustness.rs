//! Hostile timing through the real client: DMA_UNMAP of a range a command is using, device
//! reset and queue disable mid-command, a client vanishing mid-command, bad register traffic.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::*;
use dma_range::regs::*;
use dma_range::{Command, Completion, DmaRange, Opcode, Status, FAULT_LIST_DST};
use phyr_device::FleetConfig;
use vfio_user::{pci_region, Client, LocalMemory, MmapRegion};

const BIG: u64 = 64 << 20;
/// Where the destination of the big copy is mapped, 1 MiB per DMA map.
const DST_IOVA: u64 = 0x5_0000_0000;
/// Offset of the destination inside the guest RAM memfd.
const DST_FD_OFF: u64 = 0x500_0000;

fn big_rig() -> Rig {
    rig_with(
        FleetConfig {
            endpoints: 1,
            bar2_size: 4 << 20,
            ..Default::default()
        },
        160 << 20,
    )
}

/// Maps the destination 1 MiB at a time and starts a 64 MiB COPY into it; returns once the
/// first destination byte has changed (the command is running).
fn start_big_copy(e: &Ep, q: &mut QueueDrv) {
    for i in 0..(BIG >> 20) {
        e.client
            .dma_map(
                DST_IOVA + (i << 20),
                1 << 20,
                e.ram_fd.as_fd(),
                DST_FD_OFF + (i << 20),
                true,
                true,
            )
            .unwrap();
    }
    e.ram.slice(0x100_0000, BIG as usize).unwrap().fill(0xAB).unwrap();
    let src = e.list(lists(0), &[iova(RAM_IOVA + 0x100_0000, BIG as u32)]);
    // Many segments so the command crosses many step boundaries.
    let segs: Vec<DmaRange> = (0..64).map(|i| iova(DST_IOVA + (i << 20), 1 << 20)).collect();
    let dst = e.list(lists(0x1000), &segs);
    q.submit(e, &Command::new(Opcode::Copy, 0xB16, src, dst));
    let t = Instant::now();
    while e.get(RAM_IOVA + DST_FD_OFF, 1)[0] != 0xAB {
        assert!(t.elapsed() < Duration::from_secs(10), "copy never started");
        std::hint::spin_loop();
    }
}

/// How far the big copy has come: how many 64 KiB blocks of its destination begin with the
/// source's 0xAB (the copy moves 1 MiB steps, three streams each, so this is a progress count,
/// not a frontier).
fn copy_progress(e: &Ep) -> usize {
    (0..BIG / (64 << 10))
        .filter(|i| e.get(RAM_IOVA + DST_FD_OFF + (i << 16), 1)[0] == 0xAB)
        .count()
}

/// Clears Bus Master under the running big copy, then polls until the copy has stopped moving
/// (no progress over 10 polls 2 ms apart: the worker waits for Bus Master between steps) or
/// has completed (it outran the clear: `false`). Fails after 5 s of neither.
fn hold_with_bus_master_clear(e: &Ep, q: &QueueDrv) -> bool {
    e.client
        .region_write(pci_region::CONFIG, 0x04, &0x0002u16.to_le_bytes())
        .unwrap();
    let t = Instant::now();
    let (mut last, mut still) = (copy_progress(e), 0);
    while still < 10 {
        if q.peek(e).is_some() {
            return false;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the copy neither finished nor stopped after Bus Master was cleared"
        );
        std::thread::sleep(Duration::from_millis(2));
        let now = copy_progress(e);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    q.peek(e).is_none()
}

/// Starts the big copy, runs `interrupt` while it moves data, and returns the rig, the queue
/// and what `peek` shows right after `interrupt` returned. On a loaded machine the copy can
/// outrun the interruption (SUCCESS): then the scenario is retried on a fresh device.
fn interrupted_copy(interrupt: impl Fn(&Ep)) -> (Rig, QueueDrv, Option<dma_range::Completion>) {
    for attempt in 0..5 {
        let r = big_rig();
        let mut q = QueueDrv::new(&r.eps[0], 0, 4, 0);
        start_big_copy(&r.eps[0], &mut q);
        interrupt(&r.eps[0]);
        let c = q.peek(&r.eps[0]);
        if c.is_some_and(|c| c.status() == Some(Status::SUCCESS)) && attempt < 4 {
            continue;
        }
        return (r, q, c);
    }
    unreachable!()
}

/// Bytes of the guest RAM memfd (by offset) as the "guest" sees them.
fn snapshot(e: &Ep, off: u64, len: usize) -> Vec<u8> {
    e.get(RAM_IOVA + off, len)
}

#[test]
fn dma_unmap_of_destination_mid_copy_fails_the_command_and_nothing_writes_after_the_reply() {
    let cut = DST_IOVA + BIG - (16 << 20);
    for attempt in 0..5 {
        let r = big_rig();
        let e = &r.eps[0];
        let mut q = QueueDrv::new(e, 0, 4, 0);
        start_big_copy(e, &mut q);
        e.client.dma_unmap(cut, 16 << 20).unwrap();
        // From the unmap reply on, the device must not touch the range.
        let before = snapshot(e, DST_FD_OFF + BIG - (16 << 20), 16 << 20);
        let c = q.wait(e);
        if c.status() == Some(Status::SUCCESS) && attempt < 4 {
            continue; // the copy outran the unmap on a loaded machine: try again
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(c.status(), Some(Status::IOMMU_FAULT), "{c:?}");
        assert_eq!(c.fault_list, FAULT_LIST_DST);
        assert!(
            c.fault_addr >= cut && c.fault_addr < DST_IOVA + BIG,
            "fault at {:#x}",
            c.fault_addr
        );
        assert_eq!(c.segment as u64, (c.fault_addr - DST_IOVA) >> 20);
        assert_eq!(c.result, c.fault_addr - DST_IOVA, "bytes moved before the fault");
        assert!(
            snapshot(e, DST_FD_OFF + BIG - (16 << 20), 16 << 20) == before,
            "device wrote after the unmap reply"
        );
        return;
    }
}

#[test]
fn device_reset_mid_copy_completes_it_with_aborted_reset_before_the_reply() {
    let (r, _q, c) = interrupted_copy(|e| e.client.reset().unwrap());
    let e = &r.eps[0];
    let c = c.expect("the aborted command's completion is posted before the reset reply");
    assert_eq!(c.status(), Some(Status::ABORTED_RESET));
    assert!(c.result > 0 && c.result < BIG, "partial: {}", c.result);
    let before = snapshot(e, DST_FD_OFF, BIG as usize);
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        snapshot(e, DST_FD_OFF, BIG as usize) == before,
        "device wrote after the reset"
    );
    assert_eq!(e.r32(queue_reg(0, Q_STATUS)) & QSTATUS_ENABLED, 0);
    assert_eq!(e.r32(REG_CTRL), 0);
}

#[test]
fn ctrl_reset_register_mid_copy_completes_it_with_aborted_reset() {
    let (_r, _q, c) = interrupted_copy(|e| e.w32(REG_CTRL, CTRL_RESET));
    assert_eq!(c.map(|c| c.status()), Some(Some(Status::ABORTED_RESET)));
}

#[test]
fn queue_disable_mid_copy_completes_it_with_aborted_queue_disabled() {
    let (r, q, c) = interrupted_copy(|e| e.w32(queue_reg(0, Q_CTRL), 0));
    let e = &r.eps[0];
    let c = c.expect("completion posted before the disable returns");
    assert_eq!(c.status(), Some(Status::ABORTED_QUEUE_DISABLED));
    // The queue can be enabled again and works.
    e.w32(queue_reg(0, Q_CTRL), QCTRL_ENABLE);
    let mut q = QueueDrv {
        tail: 0,
        cq_head: 0,
        phase: true,
        ..q
    };
    e.put(q.cq, &[0u8; 128]);
    assert_eq!(
        q.run(
            e,
            &Command::new(Opcode::Nop, 9, DmaRange::default(), DmaRange::default())
        )
        .command_id,
        9
    );
}

#[test]
fn client_disconnect_mid_copy_then_a_new_client_finds_a_fresh_device() {
    let mut r = big_rig();
    let mut q = QueueDrv::new(&r.eps[0], 0, 4, 0);
    start_big_copy(&r.eps[0], &mut q);
    let old = r.eps.remove(0);
    let ram_fd = old.ram_fd;
    old.client.close();
    let path = r.dir.join("ep0.sock");
    let t = Instant::now();
    let client = loop {
        match Client::connect(&path) {
            Ok(c) => break c,
            Err(_) if t.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("reconnect: {e}"),
        }
    };
    client
        .dma_map(RAM_IOVA, 160 << 20, ram_fd.as_fd(), 0, true, true)
        .unwrap();
    let ram = MmapRegion::map(ram_fd.as_fd(), 0, 160 << 20, true, true).unwrap();
    let e = Ep {
        index: 0,
        client,
        ram_fd,
        ram,
        ram_size: 160 << 20,
    };
    assert_eq!(e.r32(REG_CTRL), 0, "device reset on disconnect");
    assert_eq!(e.cfg_r32(0x10), 0, "BARs unprogrammed for the new client");
    e.program_bars();
    let mut q = QueueDrv::new(&e, 0, 4, 0);
    assert_eq!(
        q.run(
            &e,
            &Command::new(Opcode::Nop, 1, DmaRange::default(), DmaRange::default())
        )
        .status(),
        Some(Status::SUCCESS)
    );
    r.eps.push(e);
}

#[test]
fn submission_ring_in_unmapped_memory_stops_the_queue_with_iommu_fault() {
    let r = rig(1);
    let e = &r.eps[0];
    e.w64(queue_reg(1, Q_SQ_BASE), 0x9_0000_0000);
    e.w64(queue_reg(1, Q_CQ_BASE), data(0));
    e.w32(queue_reg(1, Q_SQ_SIZE), 8);
    e.w32(queue_reg(1, Q_CQ_SIZE), 8);
    e.w32(REG_CTRL, CTRL_ENABLE);
    e.w32(queue_reg(1, Q_CTRL), QCTRL_ENABLE);
    e.w32(doorbell(1, DB_SQ_TAIL), 1);
    let t = Instant::now();
    while e.r32(queue_reg(1, Q_STATUS)) & QSTATUS_ERROR == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(e.r32(queue_reg(1, Q_STATUS)) >> 16, Status::IOMMU_FAULT as u32);
}

#[test]
fn queue_enable_with_size_not_power_of_two_sets_q_status_error_invalid_field() {
    let r = rig(1);
    let e = &r.eps[0];
    e.w64(queue_reg(0, Q_SQ_BASE), data(0));
    e.w64(queue_reg(0, Q_CQ_BASE), data(0x1000));
    e.w32(queue_reg(0, Q_SQ_SIZE), 6);
    e.w32(queue_reg(0, Q_CQ_SIZE), 8);
    e.w32(queue_reg(0, Q_CTRL), QCTRL_ENABLE);
    assert_eq!(
        e.r32(queue_reg(0, Q_STATUS)),
        QSTATUS_ERROR | ((Status::INVALID_FIELD as u32) << 16)
    );
    assert_eq!(e.r32(queue_reg(0, Q_CTRL)), 0);
}

#[test]
fn odd_sized_and_unknown_register_accesses_read_all_ones_and_never_break_the_device() {
    let r = rig(1);
    let e = &r.eps[0];
    assert_eq!(
        e.client.region_read(pci_region::BAR0, REG_ID, 2).unwrap(),
        vec![0xFF, 0xFF]
    );
    assert_eq!(
        e.client.region_read(pci_region::BAR0, 0x0FF0, 4).unwrap(),
        vec![0xFF; 4]
    );
    e.client.region_write(pci_region::BAR0, REG_CTRL, &[1, 0, 0]).unwrap();
    e.client
        .region_write(pci_region::BAR0, REG_ID, &0u32.to_le_bytes())
        .unwrap();
    e.client.region_write(pci_region::BAR0, 0x3FFC, &[0xFF; 4]).unwrap();
    e.client
        .region_write_posted(pci_region::BAR0, doorbell(0, DB_SQ_TAIL), &999u32.to_le_bytes())
        .unwrap();
    assert_eq!(e.r32(REG_ID), PHYR_ID);
    let mut q = QueueDrv::new(e, 0, 4, 0);
    assert_eq!(
        q.run(
            e,
            &Command::new(Opcode::Nop, 1, DmaRange::default(), DmaRange::default())
        )
        .status(),
        Some(Status::SUCCESS)
    );
}

#[test]
fn device_reset_keeps_bar_addresses_for_p2p() {
    let r = rig(1);
    let e = &r.eps[0];
    e.client.reset().unwrap();
    assert_eq!(e.cfg_r32(0x18), bar2_bus(0) as u32 | 0xC);
    let mut q = QueueDrv::new(e, 0, 4, 0);
    let src = e.list(lists(0), &[iova(data(0), 64)]);
    let dst = e.list(lists(0x100), &[bus(bar2_bus(0), 64)]);
    assert_eq!(
        q.run(e, &Command::new(Opcode::Copy, 1, src, dst)).status(),
        Some(Status::SUCCESS)
    );
}

#[test]
fn bus_master_cleared_then_q_ctrl_irq_flipped_mid_copy_returns_at_once_and_the_copy_finishes() {
    // Before the fix the IRQ write blocked the socket reader on the queue lock the worker
    // held while waiting for Bus Master, which only that reader could set again: a hang. A
    // watchdog turns a hang into a failure.
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = finished.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        if !f.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("deadlock: the register write never returned");
            std::process::exit(101);
        }
    });
    for attempt in 0..5 {
        let r = big_rig();
        let e = &r.eps[0];
        let fds: Vec<_> = (0..MSIX_VECTORS).map(|_| vfio_user::eventfd().unwrap()).collect();
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        e.client
            .set_irq_eventfds(vfio_user::pci_irq::MSIX, 0, &borrowed)
            .unwrap();
        let mut q = QueueDrv::new(e, 0, 4, 0);
        start_big_copy(e, &mut q);
        let held = hold_with_bus_master_clear(e, &q);
        if !held && attempt < 4 {
            continue; // the copy outran the Bus Master clear: try again
        }
        let t = Instant::now();
        e.w32(queue_reg(0, Q_CTRL), QCTRL_ENABLE | QCTRL_IRQ);
        assert_eq!(e.r32(queue_reg(0, Q_STATUS)), QSTATUS_ENABLED);
        e.client
            .region_write(pci_region::CONFIG, 0x04, &0x0006u16.to_le_bytes())
            .unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "register writes took {:?}",
            t.elapsed()
        );
        let c = q.wait(e);
        assert_eq!(
            (c.command_id, c.status(), c.result),
            (0xB16, Some(Status::SUCCESS), BIG)
        );
        if held {
            let t = Instant::now();
            let mut got = 0;
            while got == 0 && t.elapsed() < Duration::from_secs(5) {
                got = vfio_user::eventfd_take(fds[0].as_fd()).unwrap_or(0);
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(got >= 1, "the IRQ bit set while held did not take effect");
        }
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        return;
    }
}

#[test]
fn queue_re_enabled_while_the_worker_is_held_by_a_clear_bus_master_returns_at_once() {
    // Disable leaves the stop pending after STOP_WAIT at worst, but the enable that follows
    // must not wait for the held worker at all.
    for attempt in 0..5 {
        let r = big_rig();
        let e = &r.eps[0];
        let mut q = QueueDrv::new(e, 0, 4, 0);
        start_big_copy(e, &mut q);
        if !hold_with_bus_master_clear(e, &q) && attempt < 4 {
            continue; // the copy outran the Bus Master clear: try again
        }
        e.w32(queue_reg(0, Q_CTRL), 0);
        let t = Instant::now();
        e.w32(queue_reg(0, Q_CTRL), QCTRL_ENABLE);
        assert!(t.elapsed() < Duration::from_secs(1), "enable waited {:?}", t.elapsed());
        assert_eq!(e.r32(queue_reg(0, Q_STATUS)), QSTATUS_ENABLED);
        e.client
            .region_write(pci_region::CONFIG, 0x04, &0x0006u16.to_le_bytes())
            .unwrap();
        // The aborted command's completion is lost (ABI §3: the CQ was not reachable with Bus
        // Master clear when the abort happened), so the re-enabled queue's first completion, in
        // slot 0, is the NOP's: nothing of the old run was posted into the new one.
        let mut q = QueueDrv {
            tail: 0,
            cq_head: 0,
            phase: true,
            ..q
        };
        e.put(q.cq, &[0u8; 128]);
        let c = q.run(
            e,
            &Command::new(Opcode::Nop, 9, DmaRange::default(), DmaRange::default()),
        );
        assert_eq!((c.command_id, c.status()), (9, Some(Status::SUCCESS)));
        assert_eq!(q.cq_head, 1, "the NOP's completion was the first of the new run");
        return;
    }
}

#[test]
fn ftruncate_of_the_bar2_fd_the_client_receives_fails_with_eperm() {
    let r = rig(1);
    let e = &r.eps[0];
    let (info, fd) = e.client.region_info(pci_region::BAR2).unwrap();
    let file = std::fs::File::from(fd.expect("BAR2 comes with an fd"));
    for len in [0, info.size / 2, info.size * 2] {
        let err = file.set_len(len).expect_err("the client resized BAR2's memfd");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    }
    // The device still serves BAR2 (no SIGBUS).
    let last = info.size - 4;
    e.client.region_write(pci_region::BAR2, last, &[1, 2, 3, 4]).unwrap();
    assert_eq!(
        e.client.region_read(pci_region::BAR2, last, 4).unwrap(),
        vec![1, 2, 3, 4]
    );
}

#[test]
fn dma_unmap_of_memfd_destination_during_copy_from_fd_less_source_does_not_stall() {
    // Before the fix the worker held the destination mapping in use across each DMA_READ of
    // the fd-less source: the unmap (on the socket reader) waited for the worker, the worker
    // for a reply only that reader routes -> a 10 s stall and DMA_MESSAGE_FAILED.
    let r = big_rig();
    let e = &r.eps[0];
    let _local = fd_less_and_memfd_maps(e);
    let mut q = QueueDrv::new(e, 0, 4, 0);
    let src = e.list(lists(0), &[iova(FD_LESS_IOVA, LEN as u32)]);
    let dst = e.list(lists(0x1000), &[iova(DST_IOVA, LEN as u32)]);
    q.submit(e, &Command::new(Opcode::Copy, 0xF00, src, dst));
    let t = Instant::now();
    while e.get(RAM_IOVA + DST_FD_OFF, 1)[0] != 0x5A {
        assert!(t.elapsed() < Duration::from_secs(10), "copy never started");
        std::hint::spin_loop();
    }
    let c = unmap_memfd_maps_and_wait(e, &mut q);
    if c.status() == Some(Status::IOMMU_FAULT) {
        assert_eq!(c.fault_list, FAULT_LIST_DST);
    }
}

#[test]
fn dma_unmap_of_memfd_source_during_compare_with_fd_less_destination_does_not_stall() {
    let r = big_rig();
    let e = &r.eps[0];
    let _local = fd_less_and_memfd_maps(e);
    e.ram
        .slice(DST_FD_OFF as usize, LEN as usize)
        .unwrap()
        .fill(0x5A)
        .unwrap();
    let mut q = QueueDrv::new(e, 0, 4, 0);
    let src = e.list(lists(0), &[iova(DST_IOVA, LEN as u32)]);
    let dst = e.list(lists(0x1000), &[iova(FD_LESS_IOVA, LEN as u32)]);
    q.submit(e, &Command::new(Opcode::Compare, 0xF01, src, dst));
    std::thread::sleep(Duration::from_millis(30));
    unmap_memfd_maps_and_wait(e, &mut q);
}

/// Size of the two mappings of the unmap-during-message-DMA tests.
const LEN: u64 = 16 << 20;
/// Where those tests map their fd-less (message-backed) side.
const FD_LESS_IOVA: u64 = 0x4000_0000;

/// The two sides of the unmap-during-message-DMA tests: LEN bytes of 0x5A mapped without an fd
/// at FD_LESS_IOVA (keep the returned map alive), and LEN bytes of guest RAM at DST_IOVA as
/// 1 MiB memfd mappings.
fn fd_less_and_memfd_maps(e: &Ep) -> LocalMemory {
    let local = e.client.dma_map_local(FD_LESS_IOVA, LEN, true, true).unwrap();
    local.write(0, &vec![0x5Au8; LEN as usize]).unwrap();
    for i in 0..(LEN >> 20) {
        e.client
            .dma_map(
                DST_IOVA + (i << 20),
                1 << 20,
                e.ram_fd.as_fd(),
                DST_FD_OFF + (i << 20),
                true,
                true,
            )
            .unwrap();
    }
    local
}

/// Unmaps all of the memfd side (the mapping the worker is using right now is among the
/// removed) and waits for the command: it must complete within 2 s, whole or with an IOMMU
/// fault inside the unmapped range.
fn unmap_memfd_maps_and_wait(e: &Ep, q: &mut QueueDrv) -> Completion {
    let t = Instant::now();
    e.client.dma_unmap(DST_IOVA, LEN).unwrap();
    let c = q.wait(e);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "unmap + completion took {took:?}");
    match c.status() {
        Some(Status::SUCCESS) => assert_eq!(c.result, LEN),
        Some(Status::IOMMU_FAULT) => {
            assert!(
                c.fault_addr >= DST_IOVA && c.fault_addr < DST_IOVA + LEN,
                "fault at {:#x}",
                c.fault_addr
            )
        }
        s => panic!("unexpected completion {s:?}: {c:?}"),
    }
    c
}
