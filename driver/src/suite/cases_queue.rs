//! Queue, interrupt and reset cases: MSI-X plumbing, NOP, interrupt vs polled vs
//! shadow-doorbell completion, several queues in flight at once, reset mid-command.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use dma_range::{regs, Opcode, Status};

use super::check::{self, Opts};
use super::{Case, Outcome, Tap};
use crate::data;
use crate::exec::Job;
use crate::mapping::PhysRange;
use crate::queue::QueueMode;
use crate::session::Session;
use crate::vfio::DmaPerm;

/// Cases that check the plumbing every other case relies on; they run first.
pub fn cases_first() -> Vec<Case> {
    vec![
        Case { name: "msix-irq-test", about: "IRQ_TEST raises each MSI-X vector; its eventfd fires", run: irq_test },
        Case { name: "nop", about: "NOP completes with SUCCESS on every endpoint", run: nop },
    ]
}

pub fn cases() -> Vec<Case> {
    vec![
        Case { name: "interrupt-completion", about: "COPY on an IRQ queue; completion signalled by MSI-X", run: irq_completion },
        Case { name: "polled-completion", about: "COPY on a queue without IRQ; CQ polled; no interrupt raised", run: polled },
        Case { name: "shadow-doorbell-poll", about: "COPY on a POLL queue (shadow doorbells in host memory)", run: shadow },
        Case { name: "queue-wrap", about: "200 NOPs in batches of 40 on a 64-entry queue: rings wrap, phase flips, sq_head tracks", run: queue_wrap },
        Case { name: "several-queues", about: "one COPY in flight on every queue of every endpoint at once", run: several_queues },
        Case { name: "abort-on-reset", about: "CTRL.RESET mid-COPY: ABORTED_RESET at a segment boundary, no later writes", run: abort_on_reset },
        Case { name: "abort-on-vfio-reset", about: "VFIO_DEVICE_RESET mid-COPY: ABORTED_RESET, no later writes, device usable after", run: abort_on_vfio_reset },
    ]
}

fn irq_test(s: &mut Session) -> Result<Outcome> {
    for e in &s.endpoints {
        e.drain_irqs();
        for (v, ev) in e.irqs.iter().enumerate() {
            e.w32(regs::REG_IRQ_TEST, v as u32)?;
            let n = ev.wait(Duration::from_secs(3))?;
            ensure!(n > 0, "endpoint {} ({}): MSI-X vector {v} did not fire within 3 s of IRQ_TEST", e.index, e.pci.bdf);
        }
        Tap::diag(&format!("ep{}: {} MSI-X vectors fire", e.index, e.irqs.len()));
    }
    Ok(Outcome::Pass)
}

fn nop(s: &mut Session) -> Result<Outcome> {
    for ep in 0..s.endpoints.len() {
        let c = Job::new(ep, Opcode::Nop, None, None).run(s)?;
        check::expect_success(&c, 0)?;
    }
    Ok(Outcome::Pass)
}

fn one_copy(s: &mut Session, q: u32, mode: QueueMode, seed: u64) -> Result<()> {
    let (a, b) = (s.alloc_host(64 << 10, DmaPerm::ReadWrite)?, s.alloc_host(64 << 10, DmaPerm::ReadWrite)?);
    let o = Opts { q, mode, seed, seg_max: 4096, ..Default::default() };
    check::copy_and_check(s, &[PhysRange::host(&a, 0, 64 << 10)], &[PhysRange::host(&b, 0, 64 << 10)], o)
}

fn irq_completion(s: &mut Session) -> Result<Outcome> {
    let q = 1.min(s.ep(0)?.id.num_queues - 1);
    let before = s.queue(0, q, QueueMode::Irq)?.irqs_seen;
    one_copy(s, q, QueueMode::Irq, 201)?;
    let after = s.queue(0, q, QueueMode::Irq)?.irqs_seen;
    ensure!(after > before, "no MSI-X interrupt counted on queue {q} ({before} -> {after})");
    Tap::diag(&format!("queue {q}: {} interrupts for 2 commands", after - before));
    Ok(Outcome::Pass)
}

fn polled(s: &mut Session) -> Result<Outcome> {
    let q = 2.min(s.ep(0)?.id.num_queues - 1);
    let vector = s.queue(0, q, QueueMode::Spin)?.vector as usize;
    s.ep(0)?.irqs[vector].take();
    one_copy(s, q, QueueMode::Spin, 202)?;
    let stray = s.ep(0)?.irqs[vector].take();
    ensure!(stray == 0, "queue {q} has Q_CTRL.IRQ clear, yet vector {vector} fired {stray} times");
    Ok(Outcome::Pass)
}

fn shadow(s: &mut Session) -> Result<Outcome> {
    let q = 3.min(s.ep(0)?.id.num_queues - 1);
    one_copy(s, q, QueueMode::Poll, 203)?;
    Ok(Outcome::Pass)
}

fn queue_wrap(s: &mut Session) -> Result<Outcome> {
    // A fresh queue, so the ring indices start at 0.
    s.reset_endpoint(0)?;
    let q = 0;
    let size = s.queue(0, q, QueueMode::Spin)?.size;
    let t = s.timeout;
    let mut done = 0u32;
    for _batch in 0..5 {
        let mut ids = Vec::new();
        for _ in 0..40 {
            ids.push(Job::new(0, Opcode::Nop, None, None).on(q, QueueMode::Spin).submit(s)?);
        }
        for id in ids {
            let c = Job::new(0, Opcode::Nop, None, None).on(q, QueueMode::Spin).finish(s, id, t)?;
            check::expect_success(&c, 0)?;
            done += 1;
            let want = (done % size) as u16;
            ensure!(c.sq_head == want, "command {id}: completion sq_head {}, expected {want}", c.sq_head);
        }
    }
    Tap::diag(&format!("{done} commands through a {size}-entry ring"));
    Ok(Outcome::Pass)
}

fn several_queues(s: &mut Session) -> Result<Outcome> {
    let mut bufs = Vec::new();
    let mut slots = Vec::new();
    for ep in 0..s.endpoints.len() {
        for q in 0..s.endpoints[ep].id.num_queues {
            slots.push((ep, q));
            bufs.push((s.alloc_host(32 << 10, DmaPerm::ReadWrite)?, s.alloc_host(32 << 10, DmaPerm::ReadWrite)?));
        }
    }
    let mut prepared = Vec::new();
    for (i, ((ep, q), (a, b))) in slots.iter().zip(&bufs).enumerate() {
        let o = Opts { ep: *ep, q: *q, mode: QueueMode::Irq, seed: 300 + i as u64, seg_max: 2048, ..Default::default() };
        prepared.push(check::prepare(s, &[PhysRange::host(a, 0, 32 << 10)], &[PhysRange::host(b, 0, 32 << 10)], o)?);
    }
    let mut ids = Vec::new();
    for p in &prepared {
        ids.push(p.job().submit(s)?);
    }
    Tap::diag(&format!("{} commands in flight on {} queues", ids.len(), slots.len()));
    let t = s.timeout;
    for (p, id) in prepared.iter().zip(ids) {
        let c = p.job().finish(s, id, t)?;
        p.verify(s, &c)?;
    }
    Ok(Outcome::Pass)
}

fn abort_on_reset(s: &mut Session) -> Result<Outcome> {
    abort(s, false)
}

fn abort_on_vfio_reset(s: &mut Session) -> Result<Outcome> {
    abort(s, true)?;
    // The endpoint must be fully usable again (config space restored by the kernel).
    one_copy(s, 0, QueueMode::Irq, 402)?;
    Ok(Outcome::Pass)
}

fn abort(s: &mut Session, vfio_reset: bool) -> Result<Outcome> {
    const SEG: u64 = 1024;
    let n = u64::from(s.ep(0)?.id.max_list_entries.min(4096));
    let len = n * SEG;
    let (a, b) = (s.alloc_host(len, DmaPerm::ReadWrite)?, s.alloc_host(len, DmaPerm::ReadWrite)?);
    let o = Opts { q: 0, mode: QueueMode::Spin, seed: 401, seg_max: SEG as u32, block_entries: 512, ..Default::default() };
    let p = check::prepare(s, &[PhysRange::host(&a, 0, len)], &[PhysRange::host(&b, 0, len)], o)?;
    let job = p.job();
    let id = job.submit(s)?;
    // Reset once data is moving: wait until the first destination segment has been written.
    let t0 = std::time::Instant::now();
    let mut started = false;
    while t0.elapsed() < Duration::from_secs(2) {
        if b.buf.to_vec(0, 8)? != [0x5A; 8] {
            started = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    if vfio_reset {
        s.ep(0)?.dev.reset()?;
    } else {
        s.ep(0)?.w32(regs::REG_CTRL, regs::CTRL_RESET)?;
    }
    Tap::diag(&format!("reset issued {} us after the doorbell ({})", t0.elapsed().as_micros(), if started { "data was moving" } else { "no data seen yet" }));
    let t = s.timeout;
    let c = job.finish(s, id, t);
    let c = match c {
        Ok(c) => Some(c),
        // A function-level reset may leave the CQ unreachable (the ABI then posts nothing).
        Err(e) if vfio_reset => {
            Tap::diag(&format!("no completion after VFIO_DEVICE_RESET: {e}"));
            None
        }
        Err(e) => {
            let _ = s.reset_endpoint(0);
            bail!("no completion for the command aborted by the reset: {e}");
        }
    };
    let snapshot = b.buf.to_vec(0, len as usize)?;
    std::thread::sleep(Duration::from_millis(100));
    let later = b.buf.to_vec(0, len as usize)?;
    s.reset_endpoint(0)?;
    let Some(c) = c else {
        ensure!(snapshot == later, "destination changed after the reset (byte {:?})", data::first_diff(&snapshot, &later));
        let k = snapshot.iter().zip(&p.expected).take_while(|(a, b)| a == b).count();
        if let Some(off) = snapshot[k..].iter().position(|&x| x != 0x5A) {
            bail!("after the reset the destination holds neither the copied prefix nor the filler at byte {}", k + off);
        }
        Tap::diag(&format!("{k} of {len} bytes were copied before the reset; nothing after"));
        return Ok(Outcome::Pass);
    };
    if c.status == Status::SUCCESS as u16 {
        bail!("the {len}-byte COPY finished before the reset reached the device; nothing was aborted");
    }
    check::expect_status(&c, Status::ABORTED_RESET)?;
    ensure!(c.result % SEG == 0 && c.result < len, "aborted after {:#x} bytes: not a segment boundary below {len:#x}", c.result);
    ensure!(snapshot == later, "destination changed after the aborted command completed (byte {:?})", data::first_diff(&snapshot, &later));
    let moved = c.result as usize;
    if let Some(off) = data::first_diff(&snapshot[..moved], &p.expected[..moved]) {
        bail!("byte {off} of the {moved} bytes reported moved is wrong");
    }
    if let Some(off) = snapshot[moved..].iter().position(|&x| x != 0x5A) {
        bail!("byte {} past the {moved} bytes reported moved was written", moved + off);
    }
    Tap::diag(&format!("aborted after {moved} of {len} bytes (segment {})", c.segment));
    Ok(Outcome::Pass)
}
