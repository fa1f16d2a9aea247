//! Queue, interrupt and reset cases: MSI-X plumbing, NOP, interrupt vs polled vs
//! shadow-doorbell completion, several queues in flight at once, reset mid-command.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use dma_range::{regs, Opcode, Status};

use super::case::{Case, Outcome};
use super::check::{self, Opts};
use super::tap::Tap;
use crate::bench::Bench;
use crate::data;
use crate::exec::Job;
use crate::mapping::{ListAt, Loc, PhysRange, Route};
use crate::queue::QueueMode;
use crate::vfio::DmaPerm;

/// Cases that check the plumbing every other case relies on; they run first.
pub fn cases_first() -> Vec<Case> {
    vec![
        Case {
            name: "msix-irq-test",
            about: "IRQ_TEST raises each MSI-X vector; its eventfd fires",
            run: irq_test,
        },
        Case {
            name: "nop",
            about: "NOP completes with SUCCESS on every endpoint",
            run: nop,
        },
    ]
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "interrupt-completion",
            about: "COPY on an IRQ queue; completion signalled by MSI-X",
            run: irq_completion,
        },
        Case {
            name: "polled-completion",
            about: "COPY on a queue without IRQ; CQ polled; no interrupt raised",
            run: polled,
        },
        Case {
            name: "shadow-doorbell-poll",
            about: "COPY on a POLL queue (shadow doorbells in host memory)",
            run: shadow,
        },
        Case {
            name: "queue-wrap",
            about: "200 NOPs in batches of 40 on a 64-entry queue: rings wrap, phase flips, sq_head tracks",
            run: queue_wrap,
        },
        Case {
            name: "several-queues",
            about: "one COPY in flight on every queue of every endpoint at once",
            run: several_queues,
        },
        Case {
            name: "abort-on-reset",
            about: "CTRL.RESET mid-COPY: ABORTED_RESET at a segment boundary, no later writes",
            run: abort_on_reset,
        },
        Case {
            name: "abort-on-vfio-reset",
            about: "VFIO_DEVICE_RESET mid-COPY: ABORTED_RESET, no later writes, device usable after",
            run: abort_on_vfio_reset,
        },
    ]
}

fn irq_test(s: &mut Bench) -> Result<Outcome> {
    for e in &s.endpoints {
        e.drain_irqs();
        for (v, ev) in e.irqs.iter().enumerate() {
            e.w32(regs::REG_IRQ_TEST, v as u32)?;
            let n = ev.wait(Duration::from_secs(3))?;
            ensure!(
                n > 0,
                "endpoint {} ({}): MSI-X vector {v} did not fire within 3 s of IRQ_TEST",
                e.index,
                e.pci.bdf
            );
        }
        Tap::diag(&format!("ep{}: {} MSI-X vectors fire", e.index, e.irqs.len()));
    }
    Ok(Outcome::Pass)
}

fn nop(s: &mut Bench) -> Result<Outcome> {
    for ep in 0..s.endpoints.len() {
        let c = Job::new(ep, Opcode::Nop, None, None).run(s)?;
        check::expect_success(&c, 0)?;
    }
    Ok(Outcome::Pass)
}

fn one_copy(s: &mut Bench, q: u32, mode: QueueMode, seed: u64) -> Result<()> {
    let (a, b) = (
        s.alloc_host(64 << 10, DmaPerm::ReadWrite)?,
        s.alloc_host(64 << 10, DmaPerm::ReadWrite)?,
    );
    let o = Opts {
        q,
        mode,
        seed,
        seg_max: 4096,
        ..Default::default()
    };
    check::copy_and_check(
        s,
        &[PhysRange::host(&a, 0, 64 << 10)],
        &[PhysRange::host(&b, 0, 64 << 10)],
        o,
    )
}

fn irq_completion(s: &mut Bench) -> Result<Outcome> {
    let q = 1.min(s.ep(0)?.id.num_queues - 1);
    let before = s.queue(0, q, QueueMode::Irq)?.irqs_seen;
    one_copy(s, q, QueueMode::Irq, 201)?;
    let after = s.queue(0, q, QueueMode::Irq)?.irqs_seen;
    ensure!(
        after > before,
        "no MSI-X interrupt counted on queue {q} ({before} -> {after})"
    );
    Tap::diag(&format!("queue {q}: {} interrupts for 2 commands", after - before));
    Ok(Outcome::Pass)
}

fn polled(s: &mut Bench) -> Result<Outcome> {
    let q = 2.min(s.ep(0)?.id.num_queues - 1);
    let vector = s.queue(0, q, QueueMode::Spin)?.vector as usize;
    s.ep(0)?.irqs[vector].take();
    one_copy(s, q, QueueMode::Spin, 202)?;
    let stray = s.ep(0)?.irqs[vector].take();
    ensure!(
        stray == 0,
        "queue {q} has Q_CTRL.IRQ clear, yet vector {vector} fired {stray} times"
    );
    Ok(Outcome::Pass)
}

fn shadow(s: &mut Bench) -> Result<Outcome> {
    let q = 3.min(s.ep(0)?.id.num_queues - 1);
    one_copy(s, q, QueueMode::Poll, 203)?;
    Ok(Outcome::Pass)
}

fn queue_wrap(s: &mut Bench) -> Result<Outcome> {
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
            let c = Job::new(0, Opcode::Nop, None, None)
                .on(q, QueueMode::Spin)
                .finish(s, id, t)?;
            check::expect_success(&c, 0)?;
            done += 1;
            let want = (done % size) as u16;
            ensure!(
                c.sq_head == want,
                "command {id}: completion sq_head {}, expected {want}",
                c.sq_head
            );
        }
    }
    Tap::diag(&format!("{done} commands through a {size}-entry ring"));
    Ok(Outcome::Pass)
}

fn several_queues(s: &mut Bench) -> Result<Outcome> {
    let mut bufs = Vec::new();
    let mut slots = Vec::new();
    for ep in 0..s.endpoints.len() {
        for q in 0..s.endpoints[ep].id.num_queues {
            slots.push((ep, q));
            bufs.push((
                s.alloc_host(32 << 10, DmaPerm::ReadWrite)?,
                s.alloc_host(32 << 10, DmaPerm::ReadWrite)?,
            ));
        }
    }
    let mut prepared = Vec::new();
    for (i, ((ep, q), (a, b))) in slots.iter().zip(&bufs).enumerate() {
        let o = Opts {
            ep: *ep,
            q: *q,
            mode: QueueMode::Irq,
            seed: 300 + i as u64,
            seg_max: 2048,
            ..Default::default()
        };
        prepared.push(check::prepare(
            s,
            &[PhysRange::host(a, 0, 32 << 10)],
            &[PhysRange::host(b, 0, 32 << 10)],
            o,
        )?);
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

fn abort_on_reset(s: &mut Bench) -> Result<Outcome> {
    abort(s, false)
}

fn abort_on_vfio_reset(s: &mut Bench) -> Result<Outcome> {
    abort(s, true)?;
    // The endpoint must be fully usable again (config space restored by the kernel).
    one_copy(s, 0, QueueMode::Irq, 402)?;
    Ok(Outcome::Pass)
}

/// ABI: an abort stops a command within the next 4 MiB of data; the device moves data in
/// steps of at most this much, each starting at a segment start or the previous step's end.
const ABORT_STEP: u64 = 4 << 20;
/// Bytes sampled at the start of every `ABORT_STEP` of a BAR2 half.
const WIN: usize = 4096;

/// Resets endpoint 0 while it runs a COPY that cannot finish in time: MAX_LIST_ENTRIES
/// entries, each the whole first half of its own BAR2 (by bus address) to the whole second
/// half (64 MiB BAR2: 4096 x 32 MiB = 128 GiB, no DMA message even for anon RAM). Proves the
/// abort: ABORTED_RESET with a step-aligned byte count (CTRL.RESET; after VFIO_DEVICE_RESET,
/// which Linux brackets by clearing Bus Master, the device may post nothing), no write to
/// the destination afterwards, and a NOP on the re-created queue completes at once.
fn abort(s: &mut Bench, vfio_reset: bool) -> Result<Outcome> {
    let ep = 0;
    let (n, half) = {
        let e = s.ep(ep)?;
        (
            u64::from(e.id.max_list_entries.min(4096)),
            (e.bar2_len() / 2).min(1 << 31),
        )
    };
    ensure!(
        half >= ABORT_STEP && half % ABORT_STEP == 0,
        "BAR2 of {:#x} bytes is too small for this case",
        2 * half
    );
    let total = n * half;
    let windows: Vec<u64> = (0..half).step_by(ABORT_STEP as usize).collect();
    let src_data: Vec<Vec<u8>> = (0..windows.len()).map(|i| data::pattern(401 + i as u64, WIN)).collect();
    {
        let e = s.ep(ep)?;
        for (&o, d) in windows.iter().zip(&src_data) {
            e.bar2.write(o, d)?;
            e.bar2.write(half + o, &[0x5A; WIN])?;
        }
    }
    let src: Vec<PhysRange> = (0..n).map(|_| PhysRange::bar(ep, 0, half, Route::Bus)).collect();
    let dst: Vec<PhysRange> = (0..n).map(|_| PhysRange::bar(ep, half, half, Route::Bus)).collect();
    let o = Opts {
        ep,
        q: 0,
        mode: QueueMode::Spin,
        seg_max: half as u32,
        block_entries: 512,
        ..Default::default()
    };
    let src_l = check::list_for(s, &src, &o, ListAt::Host)?;
    let dst_l = check::list_for(s, &dst, &o, ListAt::Host)?;
    let job = Job::new(ep, Opcode::Copy, Some(&src_l), Some(&dst_l)).on(o.q, o.mode);
    let dst_windows = |s: &Bench| -> Result<Vec<Vec<u8>>> {
        windows
            .iter()
            .map(|&o| Ok(data::read(s, Loc::Bar { ep, offset: half + o }, WIN)?))
            .collect()
    };
    let id = job.submit(s)?;
    // Reset once data is moving: the first step writes the start of the destination half.
    let t0 = Instant::now();
    let mut started = false;
    while t0.elapsed() < Duration::from_secs(2) {
        if data::read(s, Loc::Bar { ep, offset: half }, 8)? != [0x5A; 8] {
            started = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    if vfio_reset {
        s.vfio_reset(ep)?;
    } else {
        s.ctrl_reset(ep)?;
    }
    let reset_us = t0.elapsed().as_micros();
    if !started {
        s.reset_endpoint(ep)?;
        bail!("the {total}-byte COPY moved no data within 2 s of the doorbell");
    }
    Tap::diag(&format!(
        "{} issued {reset_us} us after the doorbell, data was moving",
        if vfio_reset { "VFIO_DEVICE_RESET" } else { "CTRL.RESET" }
    ));
    // CTRL.RESET completes the command at once; after VFIO_DEVICE_RESET give it a moment.
    let wait = Duration::from_millis(if vfio_reset { 500 } else { 2000 });
    let c = match job.finish(s, id, wait) {
        Ok(c) => Some(c),
        Err(e) if vfio_reset => {
            Tap::diag(&format!(
                "no completion after VFIO_DEVICE_RESET (Bus Master was off): {e}"
            ));
            None
        }
        Err(e) => {
            let _ = s.reset_endpoint(ep);
            bail!("no completion for the command aborted by CTRL.RESET: {e}");
        }
    };
    let got = dst_windows(s)?;
    // Nothing may be written after the reset: mark the destination and see it stay.
    {
        let e = s.ep(ep)?;
        for &o in &windows {
            e.bar2.write(half + o, &[0xC3; WIN])?;
        }
    }
    std::thread::sleep(Duration::from_millis(150));
    let later = dst_windows(s)?;
    if let Some(i) = later.iter().position(|w| w.iter().any(|&x| x != 0xC3)) {
        let _ = s.reset_endpoint(ep);
        bail!(
            "destination offset {:#x} was written after the reset (the command still runs)",
            windows[i]
        );
    }
    // What was there: a prefix of the windows copied, the rest untouched (first pass), or
    // every window copied (a later pass).
    let copied = got.iter().zip(&src_data).take_while(|(g, d)| g == d).count();
    if let Some(i) = got[copied..].iter().position(|w| w != &[0x5A; WIN]) {
        bail!(
            "after the reset destination offset {:#x} holds neither the source nor the filler",
            windows[copied + i]
        );
    }
    let moved = match &c {
        Some(c) => {
            check::expect_status(c, Status::ABORTED_RESET)?;
            ensure!(
                c.result > 0 && c.result % ABORT_STEP == 0 && c.result < total,
                "aborted after {:#x} bytes: expected a nonzero multiple of {ABORT_STEP:#x} below {total:#x}",
                c.result
            );
            // Windows below the reported count are copied, those past it (first pass) not.
            let want = if c.result >= half {
                windows.len()
            } else {
                windows.iter().filter(|&&o| o < c.result).count()
            };
            ensure!(
                copied == want,
                "{:#x} bytes reported moved, but {copied} of {} destination windows hold the source",
                c.result,
                windows.len()
            );
            format!(
                "ABORTED_RESET after {:#x} of {total:#x} bytes (segment {})",
                c.result, c.segment
            )
        }
        None => format!(
            "no completion; {copied} of {} destination windows of the first pass copied",
            windows.len()
        ),
    };
    // The worker is free again: a NOP on the same queue, re-created, completes promptly.
    s.reset_endpoint(ep)?;
    let nop = Job::new(ep, Opcode::Nop, None, None).on(o.q, o.mode);
    let t1 = Instant::now();
    let nid = nop.submit(s)?;
    let nc = nop
        .finish(s, nid, Duration::from_secs(1))
        .map_err(|e| anyhow::anyhow!("NOP after the reset: {e}"))?;
    check::expect_success(&nc, 0)?;
    Tap::diag(&format!(
        "{moved}; nothing written after the reset; NOP on queue {} done in {} us",
        o.q,
        t1.elapsed().as_micros()
    ));
    Ok(Outcome::Pass)
}
