//! One endpoint: config space, register file, BAR2, queues and their worker threads, bound to
//! a client session. Transport-neutral: `vfio.rs` maps the vfio-user `Device` trait onto these
//! methods. Register writes are decoded under the register lock and their effects applied
//! after it is released (a queue stop may wait for a worker).

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use dma_range::{regs, ListLimits, Status};

use crate::bus::Bus;
use crate::config::{ConfigEffect, ConfigSpace};
use crate::fabric::{Fabric, Port};
use crate::hook::Hook;
use crate::mem::{IovaMemory, IrqSink};
use crate::queue::{process, Counters, Progress, QueueCtx, QueueShared};
use crate::regs::{Limits, Live, RegEffect, RegFile};

/// What a connected client gives the endpoint: its memory and its interrupts.
#[derive(Clone)]
pub struct Ports {
    pub mem: Arc<dyn IovaMemory>,
    pub irq: Arc<dyn IrqSink>,
}

/// How long a POLL-mode queue keeps spinning after its last command before it naps.
const POLL_SPIN: Duration = Duration::from_millis(2);
/// Nap length of an idle POLL-mode queue (it still reads the shadow doorbell after each nap).
const POLL_NAP: Duration = Duration::from_micros(200);
/// Nap length of an idle doorbell-mode queue (a doorbell wakes it at once).
const IDLE_NAP: Duration = Duration::from_millis(100);

/// One endpoint of the fabric.
pub struct Endpoint {
    index: u16,
    port: Arc<Port>,
    fabric: Arc<Fabric>,
    config: Mutex<ConfigSpace>,
    regs: Mutex<RegFile>,
    queues: Vec<QueueShared>,
    counters: Counters,
    enabled: AtomicBool,
    /// COMMAND.BUS_MASTER: without it the endpoint starts no DMA (no ring fetch, no poll).
    bus_master: AtomicBool,
    session: RwLock<Option<Ports>>,
    hook: Hook,
    threads: Mutex<Vec<Thread>>,
    joins: Mutex<Vec<JoinHandle<()>>>,
    shutdown: AtomicBool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("index", &self.index).finish()
    }
}

/// The worker publishes these with release ordering after the completions they count are
/// written (queue.rs `process`): a register read that returns a value is answered only after
/// those completions are visible in memory (ABI §7).
impl Live for Endpoint {
    fn q_status(&self, q: usize) -> u32 {
        self.queues.get(q).map_or(0, |q| q.status.load(Acquire))
    }
    fn sq_head(&self, q: usize) -> u32 {
        self.queues.get(q).map_or(0, |q| q.sq_head.load(Acquire))
    }
    fn cq_tail(&self, q: usize) -> u32 {
        self.queues.get(q).map_or(0, |q| q.cq_tail.load(Acquire))
    }
    fn completed(&self) -> u64 {
        self.counters.completed.load(Acquire)
    }
    fn failed(&self) -> u64 {
        self.counters.failed.load(Acquire)
    }
}

impl Endpoint {
    /// Endpoint `index` of `fabric` with `num_queues` queues; call [`Endpoint::start`] next.
    pub fn new(fabric: Arc<Fabric>, index: u16, num_queues: u32, hook: Hook) -> Option<Arc<Self>> {
        let port = fabric.port(index as usize)?.clone();
        let limits = Limits {
            endpoint: u32::from(index),
            switch: port.switch,
            bar2_size: port.bar2.size(),
            num_queues,
        };
        Some(Arc::new(Self {
            index,
            config: Mutex::new(ConfigSpace::new(port.bar2.size())),
            port,
            fabric,
            regs: Mutex::new(RegFile::new(limits)),
            queues: (0..num_queues).map(|_| QueueShared::default()).collect(),
            counters: Counters::default(),
            enabled: AtomicBool::new(false),
            bus_master: AtomicBool::new(false),
            session: RwLock::new(None),
            hook,
            threads: Mutex::new(Vec::new()),
            joins: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
        }))
    }

    /// Spawns one worker thread per queue.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        for q in 0..self.queues.len() {
            let ep = Arc::clone(self);
            let h = std::thread::Builder::new()
                .name(format!("phyr-ep{}-q{q}", self.index))
                .spawn(move || ep.worker(q))?;
            lock(&self.threads).push(h.thread().clone());
            lock(&self.joins).push(h);
        }
        Ok(())
    }

    /// Stops and joins the workers (commands in flight are aborted as by a reset), then
    /// closes the trace.
    pub fn shutdown(&self) {
        self.do_reset(false);
        self.shutdown.store(true, SeqCst);
        self.wake_all();
        for h in lock(&self.joins).drain(..) {
            let _ = h.join();
        }
        self.hook.close();
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn port(&self) -> &Arc<Port> {
        &self.port
    }

    pub fn hook(&self) -> &Hook {
        &self.hook
    }

    pub fn guest_errors(&self) -> u64 {
        lock(&self.regs).guest_errors
    }

    fn wake(&self, q: usize) {
        if let Some(t) = lock(&self.threads).get(q) {
            t.unpark();
        }
    }

    fn wake_all(&self) {
        for t in lock(&self.threads).iter() {
            t.unpark();
        }
    }

    // ---- client session ----

    pub fn connect(&self, ports: Ports) {
        *self.session.write().unwrap_or_else(|e| e.into_inner()) = Some(ports);
        self.hook.event(|| phyr_trace::Event::Connected);
        self.wake_all();
    }

    /// The client left: everything stops, and the next client finds a fresh device.
    pub fn disconnect(&self) {
        self.do_reset(false);
        *self.session.write().unwrap_or_else(|e| e.into_inner()) = None;
        let mut c = lock(&self.config);
        c.reset();
        self.port.set_decode(c.decode());
        self.bus_master.store(false, SeqCst);
        self.hook.event(|| phyr_trace::Event::Disconnected);
    }

    /// Whether a worker is blocked in a DMA message (see `QueueShared::stop`).
    fn in_message(&self) -> bool {
        self.ports().is_some_and(|p| p.mem.messages_in_flight())
    }

    fn ports(&self) -> Option<Ports> {
        self.session.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    // ---- regions ----

    pub fn config_read(&self, offset: u64, buf: &mut [u8]) {
        lock(&self.config).read(offset, buf);
    }

    pub fn config_write(&self, offset: u64, data: &[u8]) {
        let (eff, command) = {
            let mut c = lock(&self.config);
            let eff = c.write(offset, data);
            (eff, c.read16(crate::config::OFF_COMMAND))
        };
        let bm = command & crate::config::COMMAND_BUS_MASTER != 0;
        if self.bus_master.swap(bm, SeqCst) != bm {
            tracing::debug!(endpoint = self.index, bus_master = bm, "bus mastering changed");
            self.wake_all();
        }
        if let ConfigEffect::Decode(d) = eff {
            tracing::debug!(endpoint = self.index, ?d, "BAR decode changed");
            self.port.set_decode(d);
        }
    }

    /// BAR0 read: registers; the MSI-X table/PBA (emulated by the VMM) read as zero; bad
    /// accesses read all-ones.
    pub fn bar0_read(&self, offset: u64, buf: &mut [u8]) {
        if offset >= regs::MSIX_TABLE_OFFSET {
            buf.fill(0);
            return;
        }
        let v = match buf.len() {
            4 | 8 => lock(&self.regs).read(offset, buf.len(), self),
            _ => {
                lock(&self.regs).guest_errors += 1;
                None
            }
        };
        match v {
            Some(v) => buf.copy_from_slice(&v.to_le_bytes()[..buf.len()]),
            None => buf.fill(0xFF),
        }
    }

    pub fn bar0_write(&self, offset: u64, data: &[u8]) {
        if offset >= regs::MSIX_TABLE_OFFSET {
            return;
        }
        let eff = match data.len() {
            4 | 8 => {
                let mut v = [0u8; 8];
                v[..data.len()].copy_from_slice(data);
                lock(&self.regs).write(offset, data.len(), u64::from_le_bytes(v))
            }
            _ => {
                lock(&self.regs).guest_errors += 1;
                RegEffect::GuestError("register access of unsupported width")
            }
        };
        self.apply(eff, offset);
    }

    pub fn bar2_read(&self, offset: u64, buf: &mut [u8]) {
        if !self.port.bar2.read(offset, buf) {
            buf.fill(0xFF);
        }
    }

    pub fn bar2_write(&self, offset: u64, data: &[u8]) {
        self.port.bar2.write(offset, data);
    }

    fn apply(&self, eff: RegEffect, offset: u64) {
        match eff {
            RegEffect::None => {}
            RegEffect::GuestError(why) => {
                tracing::debug!(endpoint = self.index, offset, "guest error: {why}");
            }
            RegEffect::DeviceEnable(on) => {
                self.enabled.store(on, SeqCst);
                self.wake_all();
            }
            RegEffect::Reset => self.reset(),
            RegEffect::IrqTest(v) => {
                if let Some(p) = self.ports() {
                    p.irq.msix(v);
                    self.hook.event(|| phyr_trace::Event::Interrupt { vector: v });
                }
            }
            RegEffect::QueueEnable(q, cfg) => {
                self.queues[q].start(cfg);
                self.wake(q);
            }
            RegEffect::QueueEnableFailed(q, s) => self.queues[q].enable_failed(s),
            RegEffect::QueueDisable(q) => self.queues[q].stop(Status::ABORTED_QUEUE_DISABLED, 0, &|| self.in_message()),
            // Never the run lock here: the worker may hold it while it waits for Bus Master,
            // which only a later config write on this (the reader) thread can set again.
            RegEffect::QueueIrq(q, on) => self.queues[q].irq.store(on, Relaxed),
            RegEffect::SqTail(q, v) => {
                self.queues[q].sq_tail.store(v, Release);
                self.queues[q].sq_rung.store(true, Release);
                self.wake(q);
            }
            RegEffect::CqHead(q, v) => {
                self.queues[q].cq_head.store(v, Release);
                self.queues[q].cq_rung.store(true, Release);
                self.wake(q);
            }
        }
    }

    /// Device reset (CTRL.RESET or vfio DEVICE_RESET): commands in flight complete with
    /// ABORTED_RESET, queues stop, registers return to power-on values. Config space (and so
    /// the BAR addresses) is kept: the VMM owns it.
    pub fn reset(&self) {
        self.do_reset(true);
    }

    fn do_reset(&self, record: bool) {
        self.enabled.store(false, SeqCst);
        for q in &self.queues {
            q.stop(Status::ABORTED_RESET, 0, &|| self.in_message());
        }
        lock(&self.regs).reset();
        self.counters.completed.store(0, Relaxed);
        self.counters.failed.store(0, Relaxed);
        if record {
            self.hook.event(|| phyr_trace::Event::Reset);
        }
    }

    // ---- workers ----

    fn worker(&self, qi: usize) {
        let mut last_work = Instant::now();
        while !self.shutdown.load(Relaxed) {
            let (progress, poll) = self.step(qi);
            match progress {
                Progress::Worked(_) => last_work = Instant::now(),
                Progress::Stopped(s) => {
                    tracing::warn!(endpoint = self.index, queue = qi, "queue stopped: {s}");
                    lock(&self.regs).queue_stopped(qi);
                }
                Progress::Idle if poll => {
                    if last_work.elapsed() < POLL_SPIN {
                        std::thread::yield_now();
                    } else {
                        std::thread::park_timeout(POLL_NAP);
                    }
                }
                Progress::Idle => std::thread::park_timeout(IDLE_NAP),
            }
        }
    }

    /// One look at queue `qi`: processes a batch if the device is enabled, the queue runs and
    /// a client is connected. Returns the progress and whether the queue is in POLL mode.
    fn step(&self, qi: usize) -> (Progress, bool) {
        let q = &self.queues[qi];
        let Some(ports) = self.ports() else {
            return (Progress::Idle, false);
        };
        let mut guard = q.lock();
        q.finish_pending_stop(&mut guard);
        q.take_start(&mut guard);
        let Some(run) = guard.as_mut() else {
            return (Progress::Idle, false);
        };
        let poll = run.cfg.poll;
        if !self.enabled.load(Acquire) || !self.bus_master.load(Acquire) {
            return (Progress::Idle, false);
        }
        let ctx = QueueCtx {
            bus: Bus {
                iova: &*ports.mem,
                fabric: &self.fabric,
                me: &self.port,
            },
            hook: &self.hook,
            irq: &*ports.irq,
            counters: &self.counters,
            limits: ListLimits::default(),
            queue: qi as u16,
            bus_master: &self.bus_master,
        };
        let p = process(run, q, &ctx);
        if let Progress::Stopped(_) = p {
            *guard = None;
        }
        (p, poll)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
