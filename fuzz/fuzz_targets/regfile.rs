//! The BAR0 register file under arbitrary MMIO sequences.
//!
//! Input: a queue count byte, then 12-byte operations (kind, offset, size, value). Checks: no
//! panic; a bad access is counted as exactly one guest error; identity registers never change;
//! SCRATCH reads back what was written; an enabled queue's configuration is one the ABI allows
//! and cannot be rewritten while it runs; a doorbell value is always inside its ring.
#![no_main]

use dma_range::regs::*;
use libfuzzer_sys::fuzz_target;
use phyr_device::{Limits, Live, QueueConfig, RegEffect, RegFile};

struct Zero;
impl Live for Zero {
    fn q_status(&self, _q: usize) -> u32 {
        0
    }
    fn sq_head(&self, _q: usize) -> u32 {
        0
    }
    fn cq_tail(&self, _q: usize) -> u32 {
        0
    }
    fn completed(&self) -> u64 {
        0
    }
    fn failed(&self) -> u64 {
        0
    }
}

fn allowed(c: &QueueConfig) -> bool {
    let size_ok = |s: u32| s.is_power_of_two() && (2..=DEFAULT_MAX_QUEUE_ENTRIES).contains(&s);
    size_ok(c.sq_size)
        && size_ok(c.cq_size)
        && c.sq_base % 64 == 0
        && c.cq_base % 32 == 0
        && c.vector < MSIX_VECTORS
        && (!c.poll || (c.shadow != 0 && c.shadow % 8 == 0))
}

fuzz_target!(|data: &[u8]| {
    let Some((&nq, ops)) = data.split_first() else {
        return;
    };
    let num_queues = u32::from(nq % 9);
    let mut regs = RegFile::new(Limits {
        endpoint: 1,
        switch: 0,
        bar2_size: 1 << 26,
        num_queues,
    });
    let mut enabled: Vec<Option<QueueConfig>> = vec![None; num_queues as usize];
    let mut scratch = 0u32;
    for op in ops.chunks_exact(12) {
        let off = u64::from(u16::from_le_bytes([op[1], op[2]])) % (BAR0_SIZE + 64);
        let size = [1, 2, 4, 8][usize::from(op[3] & 3)];
        let value = u64::from_le_bytes(op[4..12].try_into().unwrap());
        let errors = regs.guest_errors;
        match op[0] % 8 {
            0..=3 => {
                let v = regs.read(off, size, &Zero);
                assert_eq!(v.is_none(), regs.guest_errors == errors + 1);
                if let Some(v) = v {
                    assert!(
                        size == 8 || v >> (8 * size) == 0,
                        "read of {size} bytes returned {v:#x}"
                    );
                }
                match (off, size) {
                    (REG_ID, 4) => assert_eq!(v, Some(u64::from(PHYR_ID))),
                    (REG_VERSION, 4) => assert_eq!(v, Some(u64::from(ABI_VERSION))),
                    (REG_NUM_QUEUES, 4) => assert_eq!(v, Some(u64::from(num_queues))),
                    (REG_SCRATCH, 4) => assert_eq!(v, Some(u64::from(scratch))),
                    _ => {}
                }
            }
            4..=6 => {
                let effect = regs.write(off, size, value);
                if (off, size) == (REG_SCRATCH, 4) {
                    scratch = value as u32;
                }
                match effect {
                    RegEffect::GuestError(_) => assert_eq!(regs.guest_errors, errors + 1),
                    RegEffect::QueueEnable(q, cfg) => {
                        assert!(allowed(&cfg), "queue {q} enabled with {cfg:?}");
                        assert!(enabled[q].replace(cfg).is_none(), "queue {q} enabled twice");
                    }
                    RegEffect::QueueDisable(q) => assert!(enabled[q].take().is_some()),
                    RegEffect::SqTail(q, v) => assert!(enabled[q].is_none_or(|c| v < c.sq_size)),
                    RegEffect::CqHead(q, v) => assert!(enabled[q].is_none_or(|c| v < c.cq_size)),
                    RegEffect::IrqTest(v) => assert!(v < MSIX_VECTORS),
                    RegEffect::Reset => {
                        regs.reset();
                        enabled.iter_mut().for_each(|e| *e = None);
                        scratch = 0;
                    }
                    _ => assert_eq!(regs.guest_errors, errors),
                }
            }
            _ => {
                let q = usize::from(op[1]) % (num_queues as usize + 1);
                regs.queue_stopped(q);
                if let Some(e) = enabled.get_mut(q) {
                    *e = None;
                }
            }
        }
    }
});
