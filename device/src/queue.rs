//! One submission/completion queue pair at run time: the doorbells and live values shared
//! with the register file, and [`process`], which consumes a batch of commands from the SQ ring
//! (in guest memory), executes them, and posts their completions to the CQ ring.
//!
//! Ownership: the queue's worker thread holds `QueueShared::run` while it processes; a
//! disable or reset sets `abort`, then takes the same lock, so once it holds the lock no
//! command of this queue is touching memory, and the aborted command's completion is posted.
//!
//! The socket reader thread (register and config writes, reset, disconnect) never blocks on
//! `run`: the IRQ flag is an atomic, an enable is a request the worker installs (`start`),
//! and a stop only tries the lock for a bounded time, then leaves the stop pending (`stop`).
//! The worker may be waiting for something only the reader can deliver (a config write that
//! sets Bus Master again, a DMA message reply).

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering::*};
use std::sync::Mutex;

use dma_range::{regs::QSTATUS_ENABLED, regs::QSTATUS_ERROR, AddrSpace, Command, Completion, ListLimits, Status};
use dma_range::{COMMAND_SIZE, COMPLETION_SIZE};

use crate::bus::{trace_space, AccessError, Bus};
use crate::engine::{Exec, Lists};
use crate::hook::{CmdTag, Data, Hook, ListKind, Txn};
use crate::mem::{Dir, IrqSink, Piece};
use crate::regs::QueueConfig;

/// Longest a queue stop waits for the worker before leaving the stop pending.
pub const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Most commands taken from the SQ in one batch.
pub const BATCH: u32 = 64;

/// State of a running queue (owned by whoever holds `QueueShared::run`).
#[derive(Debug)]
pub struct QueueRun {
    pub cfg: QueueConfig,
    pub sq_head: u32,
    pub cq_tail: u32,
    pub phase: bool,
    /// The engine's list scratch, reused from command to command.
    pub lists: Lists,
}

impl QueueRun {
    pub fn new(cfg: QueueConfig) -> Self {
        Self {
            cfg,
            sq_head: 0,
            cq_tail: 0,
            phase: true,
            lists: Lists::default(),
        }
    }
}

/// What the register file and the worker share for one queue.
#[derive(Debug, Default)]
pub struct QueueShared {
    pub sq_tail: AtomicU32,
    pub cq_head: AtomicU32,
    /// The SQ_TAIL / CQ_HEAD doorbell was rung since the worker last looked: in POLL mode the
    /// doorbell value then wins over the shadow for that one look.
    pub sq_rung: AtomicBool,
    pub cq_rung: AtomicBool,
    /// A stop could not wait for the worker (it was blocked in a DMA message): the worker
    /// clears the run itself when it gets back.
    pub stop_pending: AtomicBool,
    pub sq_head: AtomicU32,
    pub cq_tail: AtomicU32,
    /// Q_STATUS.
    pub status: AtomicU32,
    /// Non-zero: the `Status` code that aborts the running command.
    pub abort: AtomicU16,
    /// Q_CTRL.IRQ: raise the queue's vector after posting completions.
    pub irq: AtomicBool,
    /// An enable the worker has not installed yet (the reader never waits for `run`). Its
    /// lock is only ever held for a take or a store.
    pub start_req: Mutex<Option<QueueConfig>>,
    pub run: Mutex<Option<QueueRun>>,
}

impl QueueShared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Option<QueueRun>> {
        self.run.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the queue with a validated configuration: the doorbells, register views and
    /// IRQ flag are set at once; the worker installs the run itself (`take_start`), after
    /// finishing any stop still pending. Never waits for the worker.
    pub fn start(&self, cfg: QueueConfig) {
        let mut req = self.start_req.lock().unwrap_or_else(|e| e.into_inner());
        self.sq_tail.store(0, Relaxed);
        self.cq_head.store(0, Relaxed);
        self.sq_head.store(0, Relaxed);
        self.cq_tail.store(0, Relaxed);
        self.sq_rung.store(false, Relaxed);
        self.cq_rung.store(false, Relaxed);
        self.irq.store(cfg.irq, Relaxed);
        self.status.store(QSTATUS_ENABLED, Relaxed);
        *req = Some(cfg);
    }

    /// Called by the worker with the run lock held, after `finish_pending_stop`: installs a
    /// requested enable.
    pub fn take_start(&self, run: &mut Option<QueueRun>) {
        let req = self.start_req.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(cfg) = req {
            self.sq_head.store(0, Relaxed);
            self.cq_tail.store(0, Relaxed);
            *run = Some(QueueRun::new(cfg));
        }
    }

    /// Stops the queue; a command in flight completes with `why`. Returns once nothing of this
    /// queue touches memory any more.
    ///
    /// If the worker does not get back within `STOP_WAIT` (it can only be stuck in a
    /// DMA_READ/DMA_WRITE message whose reply is queued behind the caller's own request), the
    /// stop is left pending: the worker, which checks `abort` before touching memory again,
    /// clears the run when it returns.
    ///
    /// `in_message` says whether the worker is blocked in a DMA message right now: then
    /// waiting is pointless (the client answers it only after our reply), so the stop is
    /// left pending at once. When the message returns, the worker moves no more data (it
    /// checks `abort` before every step and every message) and only posts the aborted
    /// command's completion, late, so the driver still learns its fate.
    pub fn stop(&self, why: Status, status_after: u32, in_message: &dyn Fn() -> bool) {
        // An enable not yet installed is dropped with the run.
        self.start_req.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.abort.store(why as u16, SeqCst);
        self.status.store(status_after, Relaxed);
        let deadline = std::time::Instant::now() + STOP_WAIT;
        loop {
            match self.run.try_lock() {
                Ok(mut run) => {
                    *run = None;
                    self.abort.store(0, SeqCst);
                    return;
                }
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    *p.into_inner() = None;
                    self.abort.store(0, SeqCst);
                    return;
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    if in_message() || std::time::Instant::now() > deadline {
                        self.stop_pending.store(true, SeqCst);
                        tracing::warn!("queue stop did not wait for the worker (blocked in a DMA message)");
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(20));
                }
            }
        }
    }

    /// Called by the worker with the run lock held: completes a pending stop.
    pub fn finish_pending_stop(&self, run: &mut Option<QueueRun>) {
        if self.stop_pending.swap(false, SeqCst) {
            *run = None;
            self.abort.store(0, SeqCst);
        }
    }

    /// Q_STATUS for a failed enable.
    pub fn enable_failed(&self, status: Status) {
        self.status
            .store(QSTATUS_ERROR | (u32::from(status as u16) << 16), Relaxed);
    }
}

/// Device-wide counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
}

/// What one call to [`process`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Commands were completed.
    Worked(u32),
    /// Nothing to do (no new entries, or the CQ is full).
    Idle,
    /// The queue hit a fault on its own rings and stopped (Q_STATUS.ERROR set).
    Stopped(Status),
}

/// Everything `process` needs besides the queue.
pub struct QueueCtx<'a> {
    pub bus: Bus<'a>,
    pub hook: &'a Hook,
    pub irq: &'a dyn IrqSink,
    pub counters: &'a Counters,
    pub limits: ListLimits,
    pub queue: u16,
    /// COMMAND.BUS_MASTER of the endpoint: while it is clear the queue does no DMA at all.
    pub bus_master: &'a AtomicBool,
}

/// How often a command held up by a clear Bus Master looks again.
const BUS_MASTER_NAP: std::time::Duration = std::time::Duration::from_micros(100);

/// Waits while Bus Master is clear (ABI §1: no DMA without it, commands wait), unless an
/// abort (reset, queue disable) is pending. Returns whether Bus Master is set.
fn wait_for_bus_master(q: &QueueShared, bus_master: &AtomicBool) -> bool {
    loop {
        if bus_master.load(Acquire) {
            return true;
        }
        if q.abort.load(Acquire) != 0 {
            return false;
        }
        std::thread::sleep(BUS_MASTER_NAP);
    }
}

fn ring_fault(e: AccessError) -> Status {
    match e {
        AccessError::Fault { status, .. } => status,
        AccessError::Stopped => Status::IOMMU_FAULT,
    }
}

/// Reads the shadow doorbells (SQ tail, CQ head) in POLL mode: each a whole u32 (never torn),
/// with acquire ordering (the SQ entries are read after the tail that published them).
fn shadow(ctx: &QueueCtx<'_>, addr: u64) -> Result<(u32, u32), Status> {
    let tail = ctx.bus.load_u32(AddrSpace::Iova, addr).map_err(ring_fault)?;
    let head = ctx.bus.load_u32(AddrSpace::Iova, addr + 4).map_err(ring_fault)?;
    Ok((tail, head))
}

/// Processes up to one batch of commands.
pub fn process(run: &mut QueueRun, q: &QueueShared, ctx: &QueueCtx<'_>) -> Progress {
    if q.abort.load(Relaxed) != 0 {
        return Progress::Idle;
    }
    let cfg = run.cfg;
    let (mut tail, mut cq_head) = (q.sq_tail.load(Acquire), q.cq_head.load(Acquire));
    if cfg.poll {
        let (sq_rung, cq_rung) = (q.sq_rung.swap(false, AcqRel), q.cq_rung.swap(false, AcqRel));
        if !(sq_rung && cq_rung) {
            match shadow(ctx, cfg.shadow) {
                Ok((t, h)) => {
                    // Out-of-range shadow values are ignored (the driver's bug, not ours).
                    if t < cfg.sq_size && !sq_rung {
                        tail = t;
                    }
                    if h < cfg.cq_size && !cq_rung {
                        cq_head = h;
                    }
                }
                Err(s) => return stop_unless_pending(q, s),
            }
        }
    }
    // Entries are read only after the tail that published them (the driver fenced its side).
    std::sync::atomic::fence(Acquire);
    let avail = tail.wrapping_sub(run.sq_head) & (cfg.sq_size - 1);
    let cq_free = cq_head.wrapping_sub(run.cq_tail).wrapping_sub(1) & (cfg.cq_size - 1);
    let n = avail.min(cq_free).min(BATCH).min(cfg.sq_size - run.sq_head);
    if n == 0 {
        return Progress::Idle;
    }
    let mut raw = [0u8; BATCH as usize * COMMAND_SIZE];
    let sq_bytes = &mut raw[..n as usize * COMMAND_SIZE];
    let sq_addr = cfg.sq_base + u64::from(run.sq_head) * COMMAND_SIZE as u64;
    let t0 = ctx.hook.start();
    let r = ctx
        .bus
        .read_with(AddrSpace::Iova, sq_addr, sq_bytes, &mut |a, p, t, bytes| {
            ring_record(ctx, Dir::Read, a, p, t, t0, bytes);
        });
    if let Err(e) = r {
        return stop_unless_pending(q, ring_fault(e));
    }
    // Called before every data step and DMA message: also holds the command while Bus
    // Master is clear.
    let abort = || {
        wait_for_bus_master(q, ctx.bus_master);
        match q.abort.load(Relaxed) {
            0 => None,
            code => Some(Status::from_u16(code).unwrap_or(Status::ABORTED_RESET)),
        }
    };
    let mut done = [Completion::ok(0, Status::SUCCESS, 0); BATCH as usize];
    let mut k = 0usize;
    for chunk in sq_bytes.chunks_exact(COMMAND_SIZE) {
        if k > 0 && q.abort.load(Relaxed) != 0 {
            break;
        }
        let mut b = [0u8; COMMAND_SIZE];
        b.copy_from_slice(chunk);
        let cmd = Command::from_bytes(&b);
        let exec = Exec {
            bus: ctx.bus,
            limits: ctx.limits,
            hook: ctx.hook,
            tag: CmdTag {
                queue: ctx.queue,
                command_id: cmd.command_id,
                opcode: cmd.opcode,
            },
            abort: &abort,
        };
        let mut c = exec.run(&cmd, &mut run.lists);
        // Recorded as the command ends (not after the batch: a batch of 64 would stamp the
        // first command's end many microseconds late), whether or not its completion can be
        // posted.
        ctx.hook.event(|| phyr_trace::Event::CommandDone {
            queue: ctx.queue,
            command_id: c.command_id,
            opcode: cmd.opcode,
            status: c.status,
            result: c.result,
        });
        run.sq_head = (run.sq_head + 1) & (cfg.sq_size - 1);
        c.sq_head = run.sq_head as u16;
        done[k] = c;
        k += 1;
    }
    let k = k as u32;
    if !wait_for_bus_master(q, ctx.bus_master) {
        // Reset or disabled while Bus Master is clear (Linux clears it around a
        // VFIO_DEVICE_RESET): the completions cannot be written; the queue is gone anyway.
        tracing::debug!(
            queue = ctx.queue,
            commands = k,
            "completions dropped: Bus Master clear at a reset"
        );
        return Progress::Idle;
    }
    let pending = q.stop_pending.load(SeqCst);
    if let Err(s) = post(run, &mut done[..k as usize], ctx) {
        return stop_unless_pending(q, s);
    }
    if pending {
        // The stop returned without us: completions are posted, the rest was reset.
        return Progress::Idle;
    }
    q.sq_head.store(run.sq_head, Release);
    q.cq_tail.store(run.cq_tail, Release);
    let failed = done[..k as usize]
        .iter()
        .filter(|c| c.status().is_none_or(|s| s.is_failure()))
        .count();
    ctx.counters.failed.fetch_add(failed as u64, Release);
    ctx.counters.completed.fetch_add(u64::from(k), Release);
    if q.irq.load(Relaxed) {
        ctx.irq.msix(cfg.vector);
        ctx.hook.event(|| phyr_trace::Event::Interrupt { vector: cfg.vector });
    }
    Progress::Worked(k)
}

/// Offset of the phase byte in a completion (ABI §6).
const PHASE_BYTE: usize = 7;

/// Writes completions at the CQ tail, in at most two contiguous runs. Each run is written in
/// two passes so that no entry's phase bit is new before its body is in place (ABI §6): first
/// the entries with the *old* phase (what the free slot already holds), then, with release
/// ordering, the phase bytes (`Bus::publish_with`).
fn post(run: &mut QueueRun, comps: &mut [Completion], ctx: &QueueCtx<'_>) -> Result<(), Status> {
    let cfg = run.cfg;
    let mut i = 0;
    while i < comps.len() {
        let room = (cfg.cq_size - run.cq_tail) as usize;
        let take = (comps.len() - i).min(room);
        let mut bytes = [0u8; BATCH as usize * COMPLETION_SIZE];
        for (j, c) in comps[i..i + take].iter_mut().enumerate() {
            c.phase = run.phase;
            let e = &mut bytes[j * COMPLETION_SIZE..(j + 1) * COMPLETION_SIZE];
            e.copy_from_slice(&c.to_bytes());
            e[PHASE_BYTE] = u8::from(!run.phase);
        }
        let bytes = &mut bytes[..take * COMPLETION_SIZE];
        let addr = cfg.cq_base + u64::from(run.cq_tail) * COMPLETION_SIZE as u64;
        let t0 = ctx.hook.start();
        let mut seen = |a, p: &Piece<'_>, t, b: &[u8]| ring_record(ctx, Dir::Write, a, p, t, t0, b);
        ctx.bus
            .write_with(AddrSpace::Iova, addr, bytes, &mut seen)
            .map_err(ring_fault)?;
        for e in bytes.chunks_exact_mut(COMPLETION_SIZE) {
            e[PHASE_BYTE] = u8::from(run.phase);
        }
        let mut marks = (0..take).map(|j| j * COMPLETION_SIZE + PHASE_BYTE);
        ctx.bus
            .publish_with(AddrSpace::Iova, addr, bytes, &mut marks, &mut seen)
            .map_err(ring_fault)?;
        run.cq_tail += take as u32;
        if run.cq_tail == cfg.cq_size {
            run.cq_tail = 0;
            run.phase = !run.phase;
        }
        i += take;
    }
    Ok(())
}

/// Records a submission-entry fetch or a completion write, with the CRC of its `bytes` (shadow
/// doorbell polls are not recorded: in POLL mode they would flood the trace).
fn ring_record(
    ctx: &QueueCtx<'_>,
    dir: Dir,
    addr: u64,
    p: &Piece<'_>,
    target: phyr_trace::Target,
    t0: u64,
    bytes: &[u8],
) {
    if !ctx.hook.enabled() {
        return;
    }
    ctx.hook.dma(&Txn {
        tag: CmdTag {
            queue: ctx.queue,
            command_id: 0,
            opcode: 0,
        },
        segment: dma_range::NO_SEGMENT,
        list: ListKind::Queue,
        dir,
        space: trace_space(AddrSpace::Iova, p),
        addr,
        len: p.len() as u64,
        target,
        status: 0,
        data: crate::engine::local_crc(ctx.hook, bytes).unwrap_or(Data::None),
        t0,
    });
}

/// A ring fault stops the queue with an error status, unless a stop is already pending (the
/// queue was reset or disabled meanwhile: its status belongs to that).
fn stop_unless_pending(q: &QueueShared, s: Status) -> Progress {
    if q.stop_pending.load(SeqCst) {
        return Progress::Idle;
    }
    stop(q, s)
}

fn stop(q: &QueueShared, s: Status) -> Progress {
    q.status.store(QSTATUS_ERROR | (u32::from(s as u16) << 16), Release);
    Progress::Stopped(s)
}
