//! The BAR0 register file (see `dma_range::regs` for the map, docs/ABI.md for the rules).
//!
//! Holds the programmed values (queue bases, sizes, vectors, CTRL, SCRATCH); the live values
//! the DMA engine publishes (SQ_HEAD, CQ_TAIL, Q_STATUS, counters) are read through [`Live`].
//! A write returns its [`RegEffect`], which the endpoint applies (enable a queue, ring a
//! doorbell, reset...). Bad accesses (unknown offset, wrong width, read-only target, doorbell
//! value out of range, base/size write while the queue runs) change nothing, read all-ones,
//! and are counted as guest errors, never a panic.

use dma_range::regs::*;
use dma_range::Status;

/// A queue's validated configuration, captured when Q_CTRL.ENABLE is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueConfig {
    pub sq_base: u64,
    pub cq_base: u64,
    pub sq_size: u32,
    pub cq_size: u32,
    /// Shadow doorbell area (0 = none).
    pub shadow: u64,
    pub vector: u16,
    pub irq: bool,
    pub poll: bool,
}

/// Programmed values of one queue's register block.
#[derive(Debug, Clone, Copy, Default)]
struct QueueRegs {
    sq_base: u64,
    cq_base: u64,
    sq_size: u32,
    cq_size: u32,
    ctrl: u32,
    shadow: u64,
    vector: u32,
}

/// Live values the register file reads from the engine.
pub trait Live {
    fn q_status(&self, q: usize) -> u32;
    fn sq_head(&self, q: usize) -> u32;
    fn cq_tail(&self, q: usize) -> u32;
    fn completed(&self) -> u64;
    fn failed(&self) -> u64;
}

/// What a register write asks the endpoint to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegEffect {
    None,
    /// The access was bad: ignored and counted.
    GuestError(&'static str),
    /// CTRL.ENABLE changed.
    DeviceEnable(bool),
    /// CTRL.RESET written.
    Reset,
    /// IRQ_TEST written with this vector.
    IrqTest(u16),
    /// Q_CTRL.ENABLE set and the configuration validated.
    QueueEnable(usize, QueueConfig),
    /// Q_CTRL.ENABLE set but the configuration is invalid: the queue stays disabled with
    /// Q_STATUS.ERROR and this status.
    QueueEnableFailed(usize, Status),
    /// Q_CTRL.ENABLE cleared.
    QueueDisable(usize),
    /// Q_CTRL.IRQ changed while the queue runs.
    QueueIrq(usize, bool),
    SqTail(usize, u32),
    CqHead(usize, u32),
}

/// Device-wide limits the registers advertise.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub endpoint: u32,
    pub switch: u32,
    pub bar2_size: u64,
    pub num_queues: u32,
}

/// The register file.
#[derive(Debug)]
pub struct RegFile {
    limits: Limits,
    ctrl: u32,
    scratch: u32,
    queues: Vec<QueueRegs>,
    /// Bad accesses seen since creation.
    pub guest_errors: u64,
}

/// Whether a 64-bit register accepts this access; returns the shift of the accessed half.
fn half64(off_in_reg: u64, size: usize) -> Option<u32> {
    match (off_in_reg, size) {
        (0, 8) | (0, 4) => Some(0),
        (4, 4) => Some(32),
        _ => None,
    }
}

fn merge(old: u64, value: u64, shift: u32, size: usize) -> u64 {
    if size == 8 {
        value
    } else {
        (old & !(0xFFFF_FFFFu64 << shift)) | ((value & 0xFFFF_FFFF) << shift)
    }
}

impl RegFile {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ctrl: 0,
            scratch: 0,
            queues: vec![QueueRegs::default(); limits.num_queues as usize],
            guest_errors: 0,
        }
    }

    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }

    pub fn device_enabled(&self) -> bool {
        self.ctrl & CTRL_ENABLE != 0
    }

    /// Back to power-on values (the guest error count is kept).
    pub fn reset(&mut self) {
        self.ctrl = 0;
        self.scratch = 0;
        for q in &mut self.queues {
            *q = QueueRegs::default();
        }
    }

    /// Which queue block an offset falls in: (queue, offset inside the block).
    fn queue_of(&self, off: u64) -> Option<(usize, u64)> {
        let rel = off.checked_sub(QUEUE_BASE)?;
        let q = (rel / QUEUE_STRIDE) as usize;
        (q < self.queues.len()).then_some((q, rel % QUEUE_STRIDE))
    }

    fn doorbell_of(&self, off: u64) -> Option<(usize, u64)> {
        let rel = off.checked_sub(DOORBELL_BASE)?;
        let q = (rel / DOORBELL_STRIDE) as usize;
        (q < self.queues.len()).then_some((q, rel % DOORBELL_STRIDE))
    }

    /// Reads `size` (1, 2, 4 or 8) bytes at `off`; `None` for a bad access (reads all-ones).
    pub fn read(&mut self, off: u64, size: usize, live: &dyn Live) -> Option<u64> {
        let v = self.read_inner(off, size, live);
        if v.is_none() {
            self.guest_errors += 1;
        }
        v
    }

    fn read_inner(&self, off: u64, size: usize, live: &dyn Live) -> Option<u64> {
        let r32 = |v: u32| (size == 4).then_some(u64::from(v));
        let r64 =
            |v: u64, base: u64| half64(off - base, size).map(|s| if size == 8 { v } else { (v >> s) & 0xFFFF_FFFF });
        let l = &self.limits;
        match off {
            REG_ID => r32(PHYR_ID),
            REG_VERSION => r32(ABI_VERSION),
            REG_NUM_QUEUES => r32(l.num_queues),
            REG_MAX_QUEUE_ENTRIES => r32(DEFAULT_MAX_QUEUE_ENTRIES),
            REG_ENDPOINT_ID => r32(l.endpoint),
            REG_SWITCH_ID => r32(l.switch),
            o if (REG_BAR2_SIZE..REG_BAR2_SIZE + 8).contains(&o) => r64(l.bar2_size, REG_BAR2_SIZE),
            REG_MAX_LIST_ENTRIES => r32(DEFAULT_MAX_LIST_ENTRIES),
            REG_MAX_CHAIN => r32(DEFAULT_MAX_CHAIN),
            REG_CTRL => r32(self.ctrl),
            REG_STATUS => r32(if self.device_enabled() { STATUS_READY } else { 0 }),
            o if (REG_COMPLETED..REG_COMPLETED + 8).contains(&o) => r64(live.completed(), REG_COMPLETED),
            o if (REG_FAILED..REG_FAILED + 8).contains(&o) => r64(live.failed(), REG_FAILED),
            REG_SCRATCH => r32(self.scratch),
            REG_GUEST_ERRORS => r32(u32::try_from(self.guest_errors).unwrap_or(u32::MAX)),
            _ => {
                let (q, r) = self.queue_of(off)?;
                let regs = &self.queues[q];
                match r {
                    o if (Q_SQ_BASE..Q_SQ_BASE + 8).contains(&o) => r64(regs.sq_base, Q_SQ_BASE + (off - r)),
                    o if (Q_CQ_BASE..Q_CQ_BASE + 8).contains(&o) => r64(regs.cq_base, Q_CQ_BASE + (off - r)),
                    o if (Q_SHADOW_BASE..Q_SHADOW_BASE + 8).contains(&o) => r64(regs.shadow, Q_SHADOW_BASE + (off - r)),
                    Q_SQ_SIZE => r32(regs.sq_size),
                    Q_CQ_SIZE => r32(regs.cq_size),
                    Q_CTRL => r32(regs.ctrl),
                    Q_STATUS => r32(live.q_status(q)),
                    Q_MSIX_VECTOR => r32(regs.vector),
                    Q_SQ_HEAD => r32(live.sq_head(q)),
                    Q_CQ_TAIL => r32(live.cq_tail(q)),
                    _ => None,
                }
            }
        }
    }

    /// Writes `size` bytes of `value` at `off`.
    pub fn write(&mut self, off: u64, size: usize, value: u64) -> RegEffect {
        let e = self.write_inner(off, size, value);
        if let RegEffect::GuestError(_) = e {
            self.guest_errors += 1;
        }
        e
    }

    fn write_inner(&mut self, off: u64, size: usize, value: u64) -> RegEffect {
        use RegEffect::GuestError as Bad;
        let v32 = value as u32;
        match off {
            REG_CTRL if size == 4 => {
                if v32 & CTRL_RESET != 0 {
                    return RegEffect::Reset;
                }
                if v32 & !CTRL_ENABLE != 0 {
                    return Bad("undefined CTRL bits");
                }
                let was = self.device_enabled();
                self.ctrl = v32 & CTRL_ENABLE;
                if was != self.device_enabled() {
                    RegEffect::DeviceEnable(self.device_enabled())
                } else {
                    RegEffect::None
                }
            }
            REG_SCRATCH if size == 4 => {
                self.scratch = v32;
                RegEffect::None
            }
            REG_IRQ_TEST if size == 4 => match u16::try_from(v32) {
                Ok(v) if v < MSIX_VECTORS => RegEffect::IrqTest(v),
                _ => Bad("IRQ_TEST vector out of range"),
            },
            _ => {
                if let Some((q, which)) = self.doorbell_of(off) {
                    return self.doorbell(q, which, size, v32);
                }
                let Some((q, r)) = self.queue_of(off) else {
                    return Bad("write to unknown or read-only register");
                };
                self.queue_write(q, r, size, value)
            }
        }
    }

    fn doorbell(&mut self, q: usize, which: u64, size: usize, v: u32) -> RegEffect {
        if size != 4 {
            return RegEffect::GuestError("doorbell access not 32 bits");
        }
        let regs = &self.queues[q];
        match which {
            DB_SQ_TAIL if v < regs.sq_size => RegEffect::SqTail(q, v),
            DB_CQ_HEAD if v < regs.cq_size => RegEffect::CqHead(q, v),
            _ => RegEffect::GuestError("doorbell value out of range"),
        }
    }

    fn queue_write(&mut self, q: usize, r: u64, size: usize, value: u64) -> RegEffect {
        use RegEffect::GuestError as Bad;
        let regs = &mut self.queues[q];
        let running = regs.ctrl & QCTRL_ENABLE != 0;
        let v32 = value as u32;
        let base_reg = |o: u64| match o {
            o if (Q_SQ_BASE..Q_SQ_BASE + 8).contains(&o) => Some(Q_SQ_BASE),
            o if (Q_CQ_BASE..Q_CQ_BASE + 8).contains(&o) => Some(Q_CQ_BASE),
            o if (Q_SHADOW_BASE..Q_SHADOW_BASE + 8).contains(&o) => Some(Q_SHADOW_BASE),
            _ => None,
        };
        if let Some(base) = base_reg(r) {
            let Some(shift) = half64(r - base, size) else {
                return Bad("64-bit register access of wrong width or alignment");
            };
            if running {
                return Bad("queue base written while the queue is enabled");
            }
            let slot = match base {
                Q_SQ_BASE => &mut regs.sq_base,
                Q_CQ_BASE => &mut regs.cq_base,
                _ => &mut regs.shadow,
            };
            *slot = merge(*slot, value, shift, size);
            return RegEffect::None;
        }
        if size != 4 {
            return Bad("32-bit register access of wrong width");
        }
        match r {
            Q_SQ_SIZE | Q_CQ_SIZE | Q_MSIX_VECTOR if running => Bad("queue configuration written while enabled"),
            Q_SQ_SIZE => {
                regs.sq_size = v32;
                RegEffect::None
            }
            Q_CQ_SIZE => {
                regs.cq_size = v32;
                RegEffect::None
            }
            Q_MSIX_VECTOR => {
                regs.vector = v32;
                RegEffect::None
            }
            Q_CTRL => {
                if v32 & !(QCTRL_ENABLE | QCTRL_IRQ | QCTRL_POLL) != 0 {
                    return Bad("undefined Q_CTRL bits");
                }
                let was = regs.ctrl;
                match (was & QCTRL_ENABLE != 0, v32 & QCTRL_ENABLE != 0) {
                    (false, true) => match Self::validate(regs, v32) {
                        Ok(cfg) => {
                            regs.ctrl = v32;
                            RegEffect::QueueEnable(q, cfg)
                        }
                        Err(status) => {
                            regs.ctrl = v32 & !QCTRL_ENABLE;
                            RegEffect::QueueEnableFailed(q, status)
                        }
                    },
                    (true, false) => {
                        regs.ctrl = v32;
                        RegEffect::QueueDisable(q)
                    }
                    (true, true) if (was ^ v32) & QCTRL_POLL != 0 => Bad("Q_CTRL.POLL changed while enabled"),
                    (true, true) if (was ^ v32) & QCTRL_IRQ != 0 => {
                        regs.ctrl = v32;
                        RegEffect::QueueIrq(q, v32 & QCTRL_IRQ != 0)
                    }
                    _ => {
                        regs.ctrl = v32;
                        RegEffect::None
                    }
                }
            }
            _ => Bad("write to unknown or read-only queue register"),
        }
    }

    fn validate(regs: &QueueRegs, ctrl: u32) -> Result<QueueConfig, Status> {
        let size_ok = |s: u32| s.is_power_of_two() && (2..=DEFAULT_MAX_QUEUE_ENTRIES).contains(&s);
        let poll = ctrl & QCTRL_POLL != 0;
        let ok = size_ok(regs.sq_size)
            && size_ok(regs.cq_size)
            && regs.sq_base & 63 == 0
            && regs.cq_base & 31 == 0
            && regs.sq_base.checked_add(u64::from(regs.sq_size) * 64).is_some()
            && regs.cq_base.checked_add(u64::from(regs.cq_size) * 32).is_some()
            && regs.vector < u32::from(MSIX_VECTORS)
            && (!poll || (regs.shadow != 0 && regs.shadow & 7 == 0));
        if !ok {
            return Err(Status::INVALID_FIELD);
        }
        Ok(QueueConfig {
            sq_base: regs.sq_base,
            cq_base: regs.cq_base,
            sq_size: regs.sq_size,
            cq_size: regs.cq_size,
            shadow: if poll { regs.shadow } else { 0 },
            vector: regs.vector as u16,
            irq: ctrl & QCTRL_IRQ != 0,
            poll,
        })
    }

    /// Marks queue `q` stopped by the engine (a fault on its rings).
    pub fn queue_stopped(&mut self, q: usize) {
        if let Some(r) = self.queues.get_mut(q) {
            r.ctrl &= !QCTRL_ENABLE;
        }
    }
}

#[cfg(test)]
mod tests;
