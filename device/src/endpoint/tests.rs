//! Endpoint tests over in-process memory: queues, doorbells, POLL mode, interrupts, aborts.
//! (The same flows through the real vfio-user client are in device/tests/.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dma_range::regs::*;
use dma_range::{AddrSpace, Command, Completion, DmaRange, Opcode, Status, COMPLETION_SIZE};

use super::*;
use crate::peer_mem::PeerMem;
use crate::testmem::TestMem;

const SQ: u64 = 0x10_0000;
const CQ: u64 = 0x11_0000;
const SHADOW: u64 = 0x12_0000;
const DATA: u64 = 0x20_0000;
const MSG: u64 = 0x90_0000;

#[derive(Default)]
struct Irqs(Mutex<Vec<u16>>, AtomicU32);
impl IrqSink for Irqs {
    fn msix(&self, v: u16) {
        self.0.lock().unwrap().push(v);
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

struct Rig {
    ep: Arc<Endpoint>,
    mem: Arc<TestMem>,
    irqs: Arc<Irqs>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.ep.shutdown();
    }
}

fn rig() -> Rig {
    let mut mem = TestMem::default();
    mem.map(SQ, 0x10_0000, true, false);
    mem.map(DATA, 0x10_0000, true, false);
    mem.map(MSG, 0x1_0000, true, true);
    let mem = Arc::new(mem);
    let fabric = Arc::new(Fabric::new(vec![Arc::new(Port::new(
        0,
        0,
        PeerMem::new("b", 1 << 20).unwrap(),
    ))]));
    let ep = Endpoint::new(fabric, 0, 4, Hook::off(0)).unwrap();
    ep.start().unwrap();
    let irqs = Arc::new(Irqs::default());
    ep.connect(Ports {
        mem: mem.clone(),
        irq: irqs.clone(),
    });
    ep.config_write(0x04, &0x0006u16.to_le_bytes()); // memory decode + bus master
    Rig { ep, mem, irqs }
}

impl Rig {
    fn w32(&self, off: u64, v: u32) {
        self.ep.bar0_write(off, &v.to_le_bytes());
    }
    fn w64(&self, off: u64, v: u64) {
        self.ep.bar0_write(off, &v.to_le_bytes());
    }
    fn r32(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.ep.bar0_read(off, &mut b);
        u32::from_le_bytes(b)
    }
    fn setup(&self, q: u32, size: u32, ctrl: u32) {
        self.w64(queue_reg(q, Q_SQ_BASE), SQ + u64::from(q) * 0x4000);
        self.w64(queue_reg(q, Q_CQ_BASE), CQ + u64::from(q) * 0x4000);
        self.w32(queue_reg(q, Q_SQ_SIZE), size);
        self.w32(queue_reg(q, Q_CQ_SIZE), size);
        self.w64(queue_reg(q, Q_SHADOW_BASE), SHADOW + u64::from(q) * 8);
        self.w32(queue_reg(q, Q_MSIX_VECTOR), q + 1);
        self.w32(REG_CTRL, CTRL_ENABLE);
        self.w32(queue_reg(q, Q_CTRL), QCTRL_ENABLE | ctrl);
        assert_eq!(self.r32(queue_reg(q, Q_STATUS)), QSTATUS_ENABLED);
    }
    fn submit(&self, q: u32, slot: u32, cmd: &Command) {
        self.mem
            .put(SQ + u64::from(q) * 0x4000 + u64::from(slot) * 64, &cmd.to_bytes());
    }
    fn completion(&self, q: u32, slot: u32) -> Completion {
        let b = self
            .mem
            .get(CQ + u64::from(q) * 0x4000 + u64::from(slot) * 32, COMPLETION_SIZE);
        Completion::from_bytes(b.as_slice().try_into().unwrap())
    }
    fn wait_completion(&self, q: u32, slot: u32, phase: bool) -> Completion {
        let t = Instant::now();
        loop {
            let c = self.completion(q, slot);
            if c.phase == phase {
                return c;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "no completion in slot {slot}");
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    fn list(&self, at: u64, segs: &[DmaRange]) -> DmaRange {
        let bytes: Vec<u8> = segs.iter().flat_map(|s| s.to_bytes()).collect();
        self.mem.put(at, &bytes);
        Command::list_head(AddrSpace::Iova, at, segs.len() as u32)
    }
}

fn iova(a: u64, l: u32) -> DmaRange {
    DmaRange::segment(AddrSpace::Iova, a, l)
}

#[test]
fn doorbell_runs_commands_posts_completions_with_phase_and_raises_msix() {
    let r = rig();
    r.setup(1, 4, QCTRL_IRQ);
    r.mem.put(DATA, b"hello, phyr!");
    let src = r.list(DATA + 0x1000, &[iova(DATA, 12)]);
    let dst = r.list(DATA + 0x1100, &[iova(DATA + 0x2000, 12)]);
    // Six commands through a ring of four: the CQ wraps and the phase flips.
    for i in 0..6u32 {
        let slot = i % 4;
        r.submit(1, slot, &Command::new(Opcode::Copy, 100 + i as u16, src, dst));
        r.w32(doorbell(1, DB_SQ_TAIL), (slot + 1) % 4);
        let c = r.wait_completion(1, slot, i < 4);
        assert_eq!(
            (c.command_id, c.status(), c.result, c.sq_head as u32),
            (100 + i as u16, Some(Status::SUCCESS), 12, (slot + 1) % 4)
        );
        r.w32(doorbell(1, DB_CQ_HEAD), (slot + 1) % 4);
    }
    assert_eq!(r.mem.get(DATA + 0x2000, 12), b"hello, phyr!");
    let t = Instant::now();
    while r.irqs.1.load(Ordering::SeqCst) < 6 && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(r.irqs.0.lock().unwrap().iter().all(|v| *v == 2));
    let mut b = [0u8; 8];
    r.ep.bar0_read(REG_COMPLETED, &mut b);
    assert_eq!(u64::from_le_bytes(b), 6);
}

#[test]
fn poll_mode_reads_shadow_doorbell() {
    let r = rig();
    r.setup(0, 8, QCTRL_POLL);
    for i in 0..3u32 {
        r.submit(
            0,
            i,
            &Command::new(Opcode::Nop, i as u16, DmaRange::default(), DmaRange::default()),
        );
    }
    r.mem.put(SHADOW, &3u32.to_le_bytes());
    for i in 0..3 {
        assert_eq!(r.wait_completion(0, i, true).command_id, i as u16);
    }
}

#[test]
fn unmapped_sq_stops_queue_with_iommu_fault_status() {
    let r = rig();
    r.w64(queue_reg(2, Q_SQ_BASE), 0x7000_0000);
    r.w64(queue_reg(2, Q_CQ_BASE), CQ);
    r.w32(queue_reg(2, Q_SQ_SIZE), 4);
    r.w32(queue_reg(2, Q_CQ_SIZE), 4);
    r.w32(REG_CTRL, CTRL_ENABLE);
    r.w32(queue_reg(2, Q_CTRL), QCTRL_ENABLE);
    r.w32(doorbell(2, DB_SQ_TAIL), 1);
    let t = Instant::now();
    while r.r32(queue_reg(2, Q_STATUS)) & QSTATUS_ERROR == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(r.r32(queue_reg(2, Q_STATUS)) >> 16, Status::IOMMU_FAULT as u32);
    assert_eq!(r.r32(queue_reg(2, Q_CTRL)) & QCTRL_ENABLE, 0);
}

/// Starts a COPY whose first segment is stuck in a DMA message, then runs `interrupt`.
fn abort_mid_command(interrupt: impl FnOnce(&Rig), expect: Status) {
    let r = rig();
    r.setup(0, 4, 0);
    let src = r.list(DATA + 0x1000, &[iova(MSG, 4096), iova(DATA, 4096)]);
    let dst = r.list(DATA + 0x1100, &[iova(DATA + 0x4000, 8192)]);
    r.mem.set_hold(true);
    r.submit(0, 0, &Command::new(Opcode::Copy, 42, src, dst));
    r.w32(doorbell(0, DB_SQ_TAIL), 1);
    let t = Instant::now();
    while !r.mem.entered.load(Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    let mem = r.mem.clone();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        mem.set_hold(false);
    });
    interrupt(&r);
    release.join().unwrap();
    // When the interrupting write returns, the command has completed (aborted) already.
    let c = r.completion(0, 0);
    assert!(c.phase);
    assert_eq!((c.command_id, c.status(), c.result), (42, Some(expect), 4096));
    assert_eq!(r.r32(queue_reg(0, Q_STATUS)) & QSTATUS_ENABLED, 0);
}

#[test]
fn reset_mid_command_completes_it_with_aborted_reset() {
    abort_mid_command(|r| r.w32(REG_CTRL, CTRL_RESET), Status::ABORTED_RESET);
}

#[test]
fn queue_disable_mid_command_completes_it_with_aborted_queue_disabled() {
    abort_mid_command(|r| r.w32(queue_reg(0, Q_CTRL), 0), Status::ABORTED_QUEUE_DISABLED);
}

#[test]
fn odd_width_register_access_reads_all_ones_and_counts() {
    let r = rig();
    let mut b = [0u8; 2];
    r.ep.bar0_read(REG_ID, &mut b);
    assert_eq!(b, [0xFF, 0xFF]);
    r.ep.bar0_write(REG_CTRL, &[1, 0, 0]);
    assert_eq!(r.ep.guest_errors(), 2);
    assert_eq!(r.r32(REG_CTRL), 0);
}

#[test]
fn reset_while_worker_waits_on_a_dma_message_returns_at_once_and_moves_no_data_after() {
    let r = rig();
    r.mem.report_in_flight.store(true, Ordering::SeqCst);
    r.setup(0, 4, 0);
    let src = r.list(DATA + 0x1000, &[iova(MSG, 4096), iova(DATA, 4096)]);
    let dst = r.list(DATA + 0x1100, &[iova(DATA + 0x4000, 8192)]);
    r.mem.put(DATA + 0x4000 + 4096, &[0x11; 4096]);
    r.mem.set_hold(true);
    r.submit(0, 0, &Command::new(Opcode::Copy, 42, src, dst));
    r.w32(doorbell(0, DB_SQ_TAIL), 1);
    let t = Instant::now();
    while !r.mem.entered.load(Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    r.w32(REG_CTRL, CTRL_RESET);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "reset waited for a DMA message: {:?}",
        t.elapsed()
    );
    // The client answers the message only now (after our reply, as QEMU does).
    r.mem.set_hold(false);
    // Only the aborted command's completion arrives, late; no data moves after the reset.
    let c = r.wait_completion(0, 0, true);
    assert_eq!((c.command_id, c.status()), (42, Some(Status::ABORTED_RESET)));
    assert_eq!(
        r.mem.get(DATA + 0x4000 + 4096, 4096),
        vec![0x11; 4096],
        "no data DMA after the reset returned"
    );
    assert_eq!(r.r32(queue_reg(0, Q_STATUS)), 0, "status stays as the reset left it");
    r.mem.put(CQ, &[0u8; 32]);
    // The queue works again once re-enabled.
    r.setup(0, 4, 0);
    r.submit(
        0,
        0,
        &Command::new(Opcode::Nop, 5, DmaRange::default(), DmaRange::default()),
    );
    r.w32(doorbell(0, DB_SQ_TAIL), 1);
    assert_eq!(r.wait_completion(0, 0, true).command_id, 5);
}

/// Found by `phyr soak`: a command whose last piece is a DMA message still in flight when a
/// reset returns used to finish with SUCCESS after the reset (its completion then followed the
/// device's reset in the trace); ABI §3 says it completes with the abort status.
#[test]
fn a_command_whose_last_dma_message_is_in_flight_at_a_reset_completes_aborted_reset() {
    let r = rig();
    r.mem.report_in_flight.store(true, Ordering::SeqCst);
    r.setup(0, 4, 0);
    let src = r.list(DATA + 0x1000, &[iova(MSG, 4096)]);
    r.mem.set_hold(true);
    r.submit(0, 0, &Command::new(Opcode::Crc32c, 43, src, DmaRange::default()));
    r.w32(doorbell(0, DB_SQ_TAIL), 1);
    let t = Instant::now();
    while !r.mem.entered.load(Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    r.w32(REG_CTRL, CTRL_RESET);
    r.mem.set_hold(false);
    let c = r.wait_completion(0, 0, true);
    assert_eq!((c.command_id, c.status()), (43, Some(Status::ABORTED_RESET)), "{c:?}");
    assert_eq!(c.result, 4096, "the piece in flight was read: its bytes count as moved");
}

#[test]
fn without_bus_master_enable_no_command_is_fetched() {
    let r = rig();
    r.ep.config_write(0x04, &0x0002u16.to_le_bytes());
    r.setup(0, 4, 0);
    r.submit(
        0,
        0,
        &Command::new(Opcode::Nop, 1, DmaRange::default(), DmaRange::default()),
    );
    r.w32(doorbell(0, DB_SQ_TAIL), 1);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!r.completion(0, 0).phase, "a device without BUS_MASTER must not DMA");
    r.ep.config_write(0x04, &0x0006u16.to_le_bytes());
    assert_eq!(r.wait_completion(0, 0, true).command_id, 1);
}

/// Starts a COPY (4 KiB through a held DMA message, then 4 KiB of plain memory) and waits
/// until the worker is inside the message; the destination's second half holds 0x11.
fn copy_stuck_in_message(r: &Rig) {
    r.setup(0, 4, 0);
    let src = r.list(DATA + 0x1000, &[iova(MSG, 4096), iova(DATA, 4096)]);
    let dst = r.list(DATA + 0x1100, &[iova(DATA + 0x4000, 8192)]);
    r.mem.put(DATA + 0x4000 + 4096, &[0x11; 4096]);
    r.mem.set_hold(true);
    r.submit(0, 0, &Command::new(Opcode::Copy, 42, src, dst));
    r.w32(doorbell(0, DB_SQ_TAIL), 1);
    let t = Instant::now();
    while !r.mem.entered.load(Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn bus_master_cleared_mid_command_holds_it_until_set_again() {
    let r = rig();
    copy_stuck_in_message(&r);
    r.ep.config_write(0x04, &0x0002u16.to_le_bytes());
    r.mem.set_hold(false);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        r.mem.get(DATA + 0x4000 + 4096, 4096),
        vec![0x11; 4096],
        "data moved without Bus Master"
    );
    assert!(!r.completion(0, 0).phase, "completion written without Bus Master");
    r.ep.config_write(0x04, &0x0006u16.to_le_bytes());
    let c = r.wait_completion(0, 0, true);
    assert_eq!((c.command_id, c.status(), c.result), (42, Some(Status::SUCCESS), 8192));
}

#[test]
fn reset_with_bus_master_clear_posts_no_completion_and_moves_no_data() {
    // As Linux does a VFIO_DEVICE_RESET: Bus Master off, reset, config restored.
    let r = rig();
    r.mem.report_in_flight.store(true, Ordering::SeqCst);
    copy_stuck_in_message(&r);
    r.ep.config_write(0x04, &0x0002u16.to_le_bytes());
    r.ep.reset();
    r.mem.set_hold(false);
    std::thread::sleep(Duration::from_millis(100));
    r.ep.config_write(0x04, &0x0006u16.to_le_bytes());
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !r.completion(0, 0).phase,
        "completion written around a reset with Bus Master clear"
    );
    assert_eq!(
        r.mem.get(DATA + 0x4000 + 4096, 4096),
        vec![0x11; 4096],
        "no data DMA after the reset"
    );
    assert_eq!(r.r32(queue_reg(0, Q_STATUS)), 0);
    // The queue works again once re-enabled.
    r.setup(0, 4, 0);
    r.submit(
        0,
        0,
        &Command::new(Opcode::Nop, 5, DmaRange::default(), DmaRange::default()),
    );
    r.w32(doorbell(0, DB_SQ_TAIL), 1);
    assert_eq!(r.wait_completion(0, 0, true).command_id, 5);
}

#[test]
fn clearing_ctrl_enable_pauses_the_queues_and_setting_it_resumes_them() {
    let r = rig();
    r.setup(0, 4, 0);
    r.w32(REG_CTRL, 0);
    assert_eq!(r.r32(REG_STATUS), 0);
    let nop = |id| Command::new(Opcode::Nop, id, DmaRange::default(), DmaRange::default());
    r.submit(0, 0, &nop(1));
    r.w32(doorbell(0, DB_SQ_TAIL), 1);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!r.completion(0, 0).phase, "a command ran with CTRL.ENABLE clear");
    assert_eq!(r.r32(queue_reg(0, Q_STATUS)), QSTATUS_ENABLED, "the queue was not kept");
    r.w32(REG_CTRL, CTRL_ENABLE);
    assert_eq!(r.r32(REG_STATUS), STATUS_READY);
    assert_eq!(r.wait_completion(0, 0, true).command_id, 1);
}

#[test]
fn a_reset_is_complete_when_the_write_returns_and_keeps_guest_errors() {
    let r = rig();
    r.setup(0, 4, 0);
    r.w32(REG_SCRATCH, 0x55);
    let mut b = [0u8; 2];
    r.ep.bar0_read(REG_ID, &mut b); // a 2-byte read: ignored and counted
    assert_eq!(r.r32(REG_GUEST_ERRORS), 1);
    r.w32(REG_CTRL, CTRL_RESET);
    for off in [
        REG_CTRL,
        REG_STATUS,
        REG_SCRATCH,
        queue_reg(0, Q_CTRL),
        queue_reg(0, Q_STATUS),
    ] {
        assert_eq!(r.r32(off), 0, "register {off:#x} after reset");
    }
    assert_eq!(r.r32(queue_reg(0, Q_SQ_SIZE)), 0);
    assert_eq!(r.r32(REG_GUEST_ERRORS), 1);
}

mod ordering;
