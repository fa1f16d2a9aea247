//! Queue and lifetime cases: every queue of every endpoint at once (interrupt and polled),
//! a command that cannot complete (Bus Master off) timing out, a reset cancelling a waiting
//! command, and an endpoint removed while maps and buffers name it.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use dma_range::{Opcode, Status};

use super::ctx::{expect_errno, expect_status, Cmd, Ctx};
use super::uapi::{self, EpInfo, Path};
use super::{Case, Outcome};
use phyr_kernels::crc32c::crc32c;

use crate::cli::bind::{self as cli_bind, Target};
use crate::data::{fill_bytes, first_diff};
use crate::suite::Tap;
use phyr_report::{ResetKind, ResetLine};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "k-queues",
            about: "every queue of (up to) two endpoints at once, interrupt and polled: FILL + CRC32C, checked",
            run: queues,
        },
        Case {
            name: "k-timeout",
            about: "Bus Master off: the command times out (ETIMEDOUT), the queue is stopped and works again",
            run: timeout,
        },
        Case {
            name: "k-reset",
            about: "RESET while a command waits: it is cancelled (ECANCELED); every queue works after",
            run: reset,
        },
        Case {
            name: "k-removal",
            about: "unbind a peer while maps and buffers name it: revoked, others untouched; bind it again",
            run: removal,
        },
    ]
}

const ROUNDS: u64 = 12;
const LEN: u64 = 65536;

fn queue_worker(ctx: &Ctx, ep: &EpInfo, q: u32) -> Result<()> {
    let b = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, LEN)?;
    let seg = [b.all()];
    let m = ctx.map(ep, Path::SgTable, uapi::DIR_BIDIRECTIONAL, &seg)?;
    for i in 0..ROUNDS {
        let pat = 0x0101_0101_0101_0101u64.wrapping_mul(u64::from(q) + 1) ^ (i << 40) ^ u64::from(ep.ep);
        let want = fill_bytes(pat, LEN as usize);
        let crc = crc32c(&want);
        let s = ctx.submit(ep, &Cmd::new(Opcode::Fill, q).dst(&m).pattern(pat), LEN, Some(crc))?;
        expect_status("FILL", &s, Status::SUCCESS)?;
        ensure!(
            first_diff(&ctx.read_segs(&seg)?, &want).is_none(),
            "round {i}: bytes differ"
        );
        let s = ctx.submit(ep, &Cmd::new(Opcode::Crc32c, q).src(&m), LEN, Some(crc))?;
        expect_status("CRC32C", &s, Status::SUCCESS)?;
        ensure!(s.cqe.result as u32 == crc, "round {i}: CRC32C {:#x}", s.cqe.result);
    }
    Ok(())
}

fn queues(ctx: &Ctx) -> Result<Outcome> {
    let eps: Vec<EpInfo> = ctx.eps.iter().take(2).copied().collect();
    let polled = eps[0].queues[..eps[0].nr_queues as usize]
        .iter()
        .filter(|q| q.flags & uapi::QUEUE_POLLED != 0)
        .count();
    Tap::diag(&format!("{} queue(s) per endpoint, {polled} polled", eps[0].nr_queues));
    std::thread::scope(|sc| {
        let workers: Vec<_> = eps
            .iter()
            .flat_map(|ep| (0..ep.nr_queues).map(move |q| (ep, q)))
            .map(|(ep, q)| (ep.ep, q, sc.spawn(move || queue_worker(ctx, ep, q))))
            .collect();
        for (ep, q, w) in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("worker ep{ep} q{q} panicked"))?
                .with_context(|| format!("ep{ep} queue {q}"))?;
        }
        Ok(Outcome::Pass)
    })
}

/// Sets (`on`) or clears the Bus Master Enable bit of `bdf`'s COMMAND register through its
/// sysfs config file (bit 2 of the 16-bit register at offset 4).
fn set_bus_master(sysfs: &std::path::Path, bdf: &str, on: bool) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let path = sysfs.join("bus/pci/devices").join(bdf).join("config");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut cmd = [0u8; 2];
    f.seek(SeekFrom::Start(4))?;
    f.read_exact(&mut cmd)?;
    let mut v = u16::from_le_bytes(cmd);
    if on {
        v |= 1 << 2;
    } else {
        v &= !(1 << 2);
    }
    f.seek(SeekFrom::Start(4))?;
    f.write_all(&v.to_le_bytes())
        .with_context(|| format!("writing COMMAND of {bdf}"))?;
    Ok(())
}

/// Clears Bus Master Enable of an endpoint until dropped.
struct BusMasterOff<'a> {
    ctx: &'a Ctx,
    bdf: String,
}

impl<'a> BusMasterOff<'a> {
    fn new(ctx: &'a Ctx, ep: &EpInfo) -> Result<Self> {
        let bdf = ep.bdf();
        set_bus_master(&ctx.sysfs, &bdf, false)?;
        Ok(Self { ctx, bdf })
    }
}

impl Drop for BusMasterOff<'_> {
    fn drop(&mut self) {
        if let Err(e) = set_bus_master(&self.ctx.sysfs, &self.bdf, true) {
            Tap::diag(&format!("setting Bus Master of {} again: {e:#}", self.bdf));
        }
    }
}

fn every_queue_works(ctx: &Ctx, ep: &EpInfo) -> Result<()> {
    for q in 0..ep.nr_queues {
        let s = ctx.submit(ep, &Cmd::new(Opcode::Nop, q), 0, None)?;
        expect_status(&format!("NOP on queue {q}"), &s, Status::SUCCESS)?;
    }
    Ok(())
}

fn timeout(ctx: &Ctx) -> Result<Outcome> {
    let ep = ctx.eps[0];
    {
        let _off = BusMasterOff::new(ctx, &ep)?;
        for q in [0, ep.nr_queues - 1] {
            let mut c = Cmd::new(Opcode::Nop, q);
            c.timeout_ms = 300;
            expect_errno(
                &format!("NOP on queue {q} without Bus Master"),
                ctx.submit_raw(&ep, &c),
                libc::ETIMEDOUT,
            )?;
        }
    }
    every_queue_works(ctx, &ep)?;
    Ok(Outcome::Pass)
}

fn reset(ctx: &Ctx) -> Result<Outcome> {
    let ep = ctx.eps[0];
    {
        let _off = BusMasterOff::new(ctx, &ep)?;
        std::thread::scope(|sc| -> Result<()> {
            let waiter = sc.spawn(|| {
                let mut c = Cmd::new(Opcode::Nop, 0);
                c.timeout_ms = 30_000;
                ctx.submit_raw(&ep, &c)
            });
            std::thread::sleep(Duration::from_millis(500));
            ctx.dev.reset(ep.ep)?;
            Tap::report(&ResetLine {
                ep: ep.ep,
                kind: ResetKind::Ctrl,
            });
            let r = waiter.join().map_err(|_| anyhow::anyhow!("waiter panicked"))?;
            expect_errno("NOP waiting at the reset", r, libc::ECANCELED)
        })?;
    }
    every_queue_works(ctx, &ep)?;
    Ok(Outcome::Pass)
}

fn removal(ctx: &Ctx) -> Result<Outcome> {
    let Some(peer) = ctx.eps.get(1).copied() else {
        return Ok(Outcome::Skip("needs two endpoints".into()));
    };
    let ep = ctx.eps[0];
    let bdf = peer.bdf();
    let peer_mem = if ctx.p2pdma() {
        ctx.alloc(uapi::BUF_P2PMEM, peer.ep, 8192)?
    } else {
        ctx.alloc_at(uapi::BUF_BAR, peer.ep, 8192, peer.bar2_size - 8192)?
    };
    let ram = ctx.alloc(uapi::BUF_RAM, 0, 8192)?;
    let through_peer = ctx.map(&ep, Path::Resource, 0, &[ram.seg(0, 4096), peer_mem.all()])?;
    let for_peer = ctx.map(&peer, Path::SgTable, 0, &[ram.all()])?;
    let unrelated = ctx.map(&ep, Path::SgTable, 0, &[ram.all()])?;

    cli_bind::unbind(&ctx.sysfs, &bdf)?;
    Tap::diag(&format!("unbound {bdf} (ep{})", peer.ep));
    let crc = |m| Cmd::new(Opcode::Crc32c, 0).src(m);
    let checks = (|| -> Result<()> {
        expect_errno(
            "a map through the removed peer",
            ctx.submit_raw(&ep, &crc(&through_peer)),
            libc::ENOENT,
        )?;
        expect_errno(
            "a command on the removed endpoint",
            ctx.submit_raw(&peer, &crc(&for_peer)),
            libc::ENODEV,
        )?;
        expect_errno("EP_INFO of it", ctx.dev.ep_info(peer.ep), libc::ENODEV)?;
        expect_errno("its map id", ctx.dev.unmap(for_peer.m.id, 0), libc::ENOENT)?;
        expect_errno("its buffer id", ctx.dev.buf_free(peer_mem.id), libc::ENOENT)?;
        expect_errno(
            "allocating from it",
            ctx.dev.buf_alloc(uapi::BUF_BAR, peer.ep, 4096, 0),
            libc::ENODEV,
        )?;
        let s = ctx.submit(&ep, &crc(&unrelated), 8192, None)?;
        expect_status("a map not involving it", &s, Status::SUCCESS)
    })();
    cli_bind::bind(
        &ctx.sysfs,
        std::path::Path::new("/proc"),
        Target::Kernel,
        std::slice::from_ref(&bdf),
    )
    .context("binding the peer again")?;
    // phyr.ko reset the device on removal and again on probe (CTRL.RESET each)
    for _ in 0..2 {
        Tap::report(&ResetLine {
            ep: peer.ep,
            kind: ResetKind::Ctrl,
        });
    }
    checks?;
    let back = ctx.dev.ep_info(peer.ep)?;
    ensure!(back.bdf() == bdf, "ep{} came back as {}", peer.ep, back.bdf());
    every_queue_works(ctx, &back)?;
    Ok(Outcome::Pass)
}
