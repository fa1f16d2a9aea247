//! A submission/completion queue pair in host memory, doorbells through the BAR0 mmap,
//! completions found by their phase bit and signalled by MSI-X (IRQ mode), or polled (SPIN
//! mode: doorbell + polled CQ; POLL mode: the device polls a shadow doorbell in host memory).

use std::collections::VecDeque;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use dma_range::{regs, AddrSpace, Command, Completion, COMMAND_SIZE, COMPLETION_SIZE};
use phyr_report::{QueueLine, Span};

use crate::endpoint::Endpoint;
use crate::error::{DriverError, Result};
use crate::hostmem::HostMem;

/// How completions are signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueMode {
    /// Doorbell register, completion signalled by the queue's MSI-X vector (eventfd).
    Irq,
    /// Doorbell register, completion found by polling the CQ phase bit (no interrupt).
    Spin,
    /// Q_CTRL.POLL: tail/head through the shadow doorbell in host memory; CQ polled.
    Poll,
}

impl QueueMode {
    /// The mode as the `# phyr-queue` line names it.
    pub fn report(self) -> phyr_report::QueueMode {
        match self {
            Self::Irq => phyr_report::QueueMode::Irq,
            Self::Spin => phyr_report::QueueMode::Spin,
            Self::Poll => phyr_report::QueueMode::Poll,
        }
    }
}

/// The host memory a queue lives in: its submission and completion rings, and in POLL mode
/// the shadow doorbell page.
pub struct QueueMem {
    pub sq: HostMem,
    pub cq: HostMem,
    pub shadow: Option<HostMem>,
}

pub struct Queue {
    pub ep: usize,
    pub q: u32,
    pub size: u32,
    pub mode: QueueMode,
    pub vector: u32,
    sq: HostMem,
    cq: HostMem,
    shadow: Option<HostMem>,
    sq_tail: u32,
    cq_head: u32,
    phase: bool,
    next_id: u16,
    outstanding: u32,
    stash: VecDeque<Completion>,
    irq_since_empty: bool,
    /// MSI-X signals seen on this queue's vector since creation.
    pub irqs_seen: u64,
}

impl Queue {
    /// Programs queue `q` of `e` with `size` entries in `mem`, enables it and waits until the
    /// device says it is; prints its `# phyr-queue` line when `trace`.
    pub(crate) fn create(e: &Endpoint, q: u32, size: u32, mode: QueueMode, mem: QueueMem, trace: bool) -> Result<Self> {
        let QueueMem { sq, cq, shadow } = mem;
        let r = |reg| regs::queue_reg(q, reg);
        let vector = q % (e.irqs.len().max(1) as u32);
        e.w32(r(regs::Q_CTRL), 0)?;
        e.w64(r(regs::Q_SQ_BASE), sq.iova)?;
        e.w64(r(regs::Q_CQ_BASE), cq.iova)?;
        e.w32(r(regs::Q_SQ_SIZE), size)?;
        e.w32(r(regs::Q_CQ_SIZE), size)?;
        e.w32(r(regs::Q_MSIX_VECTOR), vector)?;
        e.w64(r(regs::Q_SHADOW_BASE), shadow.as_ref().map_or(0, |s| s.iova))?;
        let ctrl = regs::QCTRL_ENABLE
            | match mode {
                QueueMode::Irq => regs::QCTRL_IRQ,
                QueueMode::Spin => 0,
                QueueMode::Poll => regs::QCTRL_POLL,
            };
        if let Some(ev) = e.irqs.get(vector as usize) {
            ev.take();
        }
        e.w32(r(regs::Q_CTRL), ctrl)?;
        let t0 = Instant::now();
        loop {
            let st = e.r32(r(regs::Q_STATUS))?;
            if st & regs::QSTATUS_ERROR != 0 {
                return Err(DriverError::QueueEnable {
                    ep: e.index,
                    q,
                    qstatus: st,
                });
            }
            if st & regs::QSTATUS_ENABLED != 0 {
                break;
            }
            if t0.elapsed() > Duration::from_secs(2) {
                return Err(DriverError::QueueEnable {
                    ep: e.index,
                    q,
                    qstatus: st,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if trace {
            let span = |m: &HostMem| Span::new(AddrSpace::Iova, m.iova, m.len());
            let line = QueueLine {
                ep: e.id.endpoint_id,
                q,
                mode: mode.report(),
                size,
                vector,
                sq: span(&sq),
                cq: span(&cq),
                shadow: shadow.as_ref().map(span),
            };
            println!("{line}");
        }
        Ok(Self {
            ep: e.index,
            q,
            size,
            mode,
            vector,
            sq,
            cq,
            shadow,
            sq_tail: 0,
            cq_head: 0,
            phase: true,
            next_id: 1,
            outstanding: 0,
            stash: VecDeque::new(),
            irq_since_empty: false,
            irqs_seen: 0,
        })
    }

    /// Clears Q_CTRL.ENABLE and waits for Q_STATUS.ENABLED to drop.
    pub fn disable(&self, e: &Endpoint) -> Result<()> {
        e.w32(regs::queue_reg(self.q, regs::Q_CTRL), 0)?;
        let t0 = Instant::now();
        while e.r32(regs::queue_reg(self.q, regs::Q_STATUS))? & regs::QSTATUS_ENABLED != 0 {
            if t0.elapsed() > Duration::from_secs(2) {
                let qstatus = e.r32(regs::queue_reg(self.q, regs::Q_STATUS))?;
                return Err(DriverError::QueueEnable {
                    ep: e.index,
                    q: self.q,
                    qstatus,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// The id the next submitted command gets (0 is skipped): a driver that re-creates a queue
    /// can keep ids unique across the queue's lives, so a trace never shows one id twice.
    pub fn set_next_id(&mut self, id: u16) {
        self.next_id = id.max(1);
    }

    /// Writes `cmd` (its command_id replaced by a fresh one) into the SQ and rings the
    /// doorbell. Returns the command id.
    pub fn submit(&mut self, e: &Endpoint, mut cmd: Command) -> Result<u16> {
        if self.outstanding + 1 >= self.size {
            return Err(DriverError::QueueFull {
                ep: self.ep,
                q: self.q,
                size: self.size,
            });
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        cmd.command_id = id;
        self.sq
            .buf
            .write(u64::from(self.sq_tail) * COMMAND_SIZE as u64, &cmd.to_bytes())?;
        self.sq_tail = (self.sq_tail + 1) % self.size;
        self.outstanding += 1;
        // The entry must be visible in memory before the device learns of it.
        fence(Ordering::SeqCst);
        match (&self.shadow, self.mode) {
            (Some(sh), QueueMode::Poll) => sh.buf.write(0, &self.sq_tail.to_le_bytes())?,
            _ => e.w32(regs::doorbell(self.q, regs::DB_SQ_TAIL), self.sq_tail)?,
        }
        Ok(id)
    }

    /// The completion at the CQ head, if the device has posted it (phase matches).
    fn peek(&mut self) -> Result<Option<Completion>> {
        let mut b = [0u8; COMPLETION_SIZE];
        self.cq
            .buf
            .read(u64::from(self.cq_head) * COMPLETION_SIZE as u64, &mut b)?;
        if (b[7] & 1 != 0) != self.phase {
            return Ok(None);
        }
        fence(Ordering::Acquire);
        // Re-read after the fence so no field is older than the phase bit.
        self.cq
            .buf
            .read(u64::from(self.cq_head) * COMPLETION_SIZE as u64, &mut b)?;
        Ok(Some(Completion::from_bytes(&b)))
    }

    fn consume(&mut self, e: &Endpoint) -> Result<()> {
        self.cq_head = (self.cq_head + 1) % self.size;
        if self.cq_head == 0 {
            self.phase = !self.phase;
        }
        self.outstanding = self.outstanding.saturating_sub(1);
        fence(Ordering::SeqCst);
        match (&self.shadow, self.mode) {
            (Some(sh), QueueMode::Poll) => sh.buf.write(4, &self.cq_head.to_le_bytes())?,
            _ => e.w32(regs::doorbell(self.q, regs::DB_CQ_HEAD), self.cq_head)?,
        }
        Ok(())
    }

    /// What a driver collects after it reset or disabled the queue: every completion the
    /// device posted that no `wait` took yet (kept ones first, then the CQ by phase), at once,
    /// without waiting for interrupts and without writing the CQ head (the queue may be gone).
    pub fn drain_posted(&mut self) -> Result<Vec<Completion>> {
        let mut v: Vec<Completion> = self.stash.drain(..).collect();
        while let Some(c) = self.peek()? {
            self.cq_head = (self.cq_head + 1) % self.size;
            if self.cq_head == 0 {
                self.phase = !self.phase;
            }
            self.outstanding = self.outstanding.saturating_sub(1);
            v.push(c);
        }
        Ok(v)
    }

    /// Waits for the completion of command `cid` (completions of other commands that come
    /// first are kept for their own `wait`).
    pub fn wait(&mut self, e: &Endpoint, cid: u16, timeout: Duration) -> Result<Completion> {
        if let Some(pos) = self.stash.iter().position(|c| c.command_id == cid) {
            return Ok(self.stash.remove(pos).expect("position is in range"));
        }
        let t0 = Instant::now();
        let mut last_check = t0;
        let ev = e.irqs.get(self.vector as usize);
        loop {
            if let Some(ev) = ev {
                let n = ev.take();
                if n > 0 {
                    self.irqs_seen += n;
                    self.irq_since_empty = true;
                }
            }
            match self.peek()? {
                Some(c) => {
                    if self.mode == QueueMode::Irq && !self.irq_since_empty {
                        // The entry is there; its interrupt must follow promptly.
                        let left = timeout.saturating_sub(t0.elapsed()).max(Duration::from_millis(500));
                        let n = ev.map(|ev| ev.wait(left)).transpose()?.unwrap_or(0);
                        if n == 0 {
                            return Err(DriverError::NoInterrupt {
                                ep: self.ep,
                                q: self.q,
                                cid: c.command_id,
                                vector: self.vector,
                                ms: left.as_millis() as u64,
                            });
                        }
                        self.irqs_seen += n;
                        self.irq_since_empty = true;
                    }
                    self.consume(e)?;
                    if c.command_id == cid {
                        return Ok(c);
                    }
                    self.stash.push_back(c);
                    continue;
                }
                None => {
                    self.irq_since_empty = false;
                }
            }
            if last_check.elapsed() >= Duration::from_millis(200) {
                // A queue that hit an error (e.g. its SQ entry could not be fetched) posts nothing.
                last_check = Instant::now();
                let qstatus = e.r32(regs::queue_reg(self.q, regs::Q_STATUS))?;
                if qstatus & regs::QSTATUS_ERROR != 0 {
                    return Err(DriverError::QueueError {
                        ep: self.ep,
                        q: self.q,
                        cid,
                        qstatus,
                    });
                }
            }
            let elapsed = t0.elapsed();
            if elapsed >= timeout {
                return Err(self.timeout_error(e, cid, timeout));
            }
            match (self.mode, ev) {
                (QueueMode::Irq, Some(ev)) => {
                    let n = ev.wait((timeout - elapsed).min(Duration::from_millis(100)))?;
                    if n > 0 {
                        self.irqs_seen += n;
                        self.irq_since_empty = true;
                    }
                }
                _ => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }

    fn timeout_error(&self, e: &Endpoint, cid: u16, timeout: Duration) -> DriverError {
        let rq = |reg| e.r32(regs::queue_reg(self.q, reg)).unwrap_or(u32::MAX);
        DriverError::Timeout {
            ep: self.ep,
            q: self.q,
            cid,
            ms: timeout.as_millis() as u64,
            status: e.status(),
            qstatus: rq(regs::Q_STATUS),
            sq_head: rq(regs::Q_SQ_HEAD),
            cq_tail: rq(regs::Q_CQ_TAIL),
            sq_tail: self.sq_tail,
            cq_head: self.cq_head,
            phase: self.phase,
        }
    }
}
