//! Data cases: buffers of every kind mapped through every DMA API path the kernel offers,
//! moved by the device, checked byte for byte and by the device's CRC32C.

use anyhow::{ensure, Context, Result};
use dma_range::{Opcode, Status};

use super::ctx::{expect_status, Cmd, Ctx};
use super::uapi::{self, EpInfo, MapSeg, Path};
use super::{Case, Outcome};
use phyr_kernels::crc32c::crc32c;

use crate::data::{fill_bytes, first_diff, pattern};
use crate::suite::Tap;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "k-caps",
            about: "uapi version, paths compiled in for this kernel, endpoints and their queues",
            run: caps,
        },
        Case {
            name: "k-ram-only",
            about: "RAM to scattered RAM, odd offsets and lengths, every path",
            run: ram_only,
        },
        Case {
            name: "k-peer-only",
            about: "a peer's p2pmem to RAM and RAM to it, every path (bus address where the kernel says so)",
            run: peer_only,
        },
        Case {
            name: "k-own-bar",
            about: "p2pmem of the executing endpoint's own BAR2, every path",
            run: own_bar,
        },
        Case {
            name: "k-mixed-list",
            about: "one list of RAM, peer p2pmem, scattered RAM and own p2pmem, unaligned; both directions, every path",
            run: mixed_list,
        },
        Case {
            name: "k-chained-list",
            about: "the mixed list in chained blocks of 1 and 3 entries",
            run: chained_list,
        },
        Case {
            name: "k-many-segments",
            about: "MAX_LIST_ENTRIES pages one range each (per-piece path); one more is LIST_TOO_MANY_ENTRIES",
            run: many_segments,
        },
        Case {
            name: "k-bar-window",
            about: "a raw window at the end of a peer's BAR2, through the peer paths (also without P2PDMA)",
            run: bar_window,
        },
        Case {
            name: "k-over-4g",
            about: "more than 4 GiB of a peer's p2pmem in one list (BAR2 > 4 GiB): ranges split below 4 GiB, FILL lands at both ends and across the split",
            run: over_4g,
        },
        Case {
            name: "k-fill-compare",
            about: "FILL over a mixed list, COMPARE equal lists, COMPARE_MISMATCH at the first changed byte",
            run: fill_compare,
        },
    ]
}

fn caps(ctx: &Ctx) -> Result<Outcome> {
    let v = ctx.info.kernel_version;
    let k = |a: u32, b: u32| (a << 16) | (b << 8);
    Tap::diag(&format!(
        "uapi {:#x} caps {:#x} kernel {}.{}.{} endpoints {}; P2P decisions by {}",
        ctx.info.uapi_version,
        ctx.info.caps,
        v >> 16,
        (v >> 8) & 0xff,
        v & 0xff,
        ctx.eps.len(),
        if ctx.info.caps & uapi::CAP_P2PDMA_STATE != 0 {
            "pci_p2pdma_state()"
        } else {
            "a one-page dma_map_sgtable() probe"
        }
    ));
    ensure!(
        ctx.has(Path::SgTable) && ctx.has(Path::Resource),
        "SGTABLE and RESOURCE are always there"
    );
    ensure!(ctx.has(Path::Iova) == (v >= k(6, 16)), "IOVA path vs kernel version");
    ensure!(ctx.has(Path::Phys) == (v >= k(6, 18)), "PHYS path vs kernel version");
    ensure!(ctx.info.page_size == 4096, "page size {}", ctx.info.page_size);
    ensure!(!ctx.eps.is_empty(), "no endpoint is bound to phyr.ko");
    for e in &ctx.eps {
        Tap::diag(&format!(
            "ep{} {} switch {} flags {:#x} bar2 phys {:#x} bus {:#x} size {:#x} queues {}",
            e.ep,
            e.bdf(),
            e.switch_id,
            e.flags,
            e.bar2_phys,
            e.bar2_bus,
            e.bar2_size,
            e.nr_queues
        ));
        ensure!(e.version >> 16 == 1, "ep{} VERSION {:#x}", e.ep, e.version);
        ensure!(
            (1..=uapi::MAX_QUEUES as u32).contains(&e.nr_queues),
            "ep{} queues",
            e.ep
        );
        ensure!(
            (e.flags & uapi::EP_P2PMEM != 0) == ctx.p2pdma(),
            "ep{}: BAR2 p2pmem flag vs CONFIG_PCI_P2PDMA",
            e.ep
        );
        for q in &e.queues[..e.nr_queues as usize] {
            ensure!(
                q.entries >= 2 && q.sq_dma != 0 && q.cq_dma != 0,
                "ep{} queue without rings",
                e.ep
            );
            ensure!(
                (q.shadow_dma != 0) == (q.flags & uapi::QUEUE_POLLED != 0),
                "shadow iff polled"
            );
        }
    }
    Ok(Outcome::Pass)
}

/// Fills `src` with fresh bytes, COPYs them to `dst` through `path` on `ep`, and checks
/// `dst` byte for byte and by the device's CRC32C of `dst`.
pub fn copy_check(ctx: &Ctx, ep: &EpInfo, path: Path, src: &[MapSeg], dst: &[MapSeg], blocks: u32) -> Result<()> {
    let total: u64 = src.iter().map(|s| s.len).sum();
    let data = pattern(ctx.seed(), usize::try_from(total)?);
    let crc = crc32c(&data);
    ctx.write_segs(src, &data)?;
    let queue = ctx.seed() as u32 % ep.nr_queues;
    let sm = ctx.map(ep, path, uapi::DIR_TO_DEVICE, src)?;
    // read back by CRC32C below: not DMA_FROM_DEVICE (write-only through an IOMMU)
    let dm = ctx.map(ep, path, uapi::DIR_BIDIRECTIONAL, dst)?;
    let s = ctx.submit(
        ep,
        &Cmd::new(Opcode::Copy, queue).src(&sm).dst(&dm).blocks(blocks),
        total,
        Some(crc),
    )?;
    expect_status("COPY", &s, Status::SUCCESS)?;
    ensure!(
        s.cqe.result == total,
        "COPY result {:#x}, expected {total:#x}",
        s.cqe.result
    );
    let got = ctx.read_segs(dst)?;
    if let Some(at) = first_diff(&got, &data) {
        anyhow::bail!(
            "destination differs at byte {at} of {total}: {:#04x}, expected {:#04x}",
            got.get(at).copied().unwrap_or(0),
            data.get(at).copied().unwrap_or(0)
        );
    }
    let s = ctx.submit(
        ep,
        &Cmd::new(Opcode::Crc32c, queue).src(&dm).blocks(blocks),
        total,
        Some(crc),
    )?;
    expect_status("CRC32C", &s, Status::SUCCESS)?;
    ensure!(
        s.cqe.result as u32 == crc,
        "device CRC32C {:#010x}, expected {crc:#010x}",
        s.cqe.result
    );
    Ok(())
}

/// Runs `f` once per path this kernel offers; names the path in the error.
fn each_path(ctx: &Ctx, mut f: impl FnMut(&Ctx, Path) -> Result<()>) -> Result<()> {
    for p in ctx.paths() {
        f(ctx, p).with_context(|| format!("path {}", p.name()))?;
    }
    Ok(())
}

fn ram_only(ctx: &Ctx) -> Result<Outcome> {
    let ep = ctx.eps[0];
    each_path(ctx, |ctx, p| {
        let a = ctx.alloc(uapi::BUF_RAM, 0, 3 * 4096 + 123)?;
        let b = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, 6 * 4096)?;
        let len = 3 * 4096 + 23 - 100;
        copy_check(ctx, &ep, p, &[a.seg(100, len)], &[b.seg(4000, len)], 0)
    })?;
    Ok(Outcome::Pass)
}

fn peer_only(ctx: &Ctx) -> Result<Outcome> {
    if !ctx.p2pdma() {
        return Ok(Outcome::Skip("the kernel has no CONFIG_PCI_P2PDMA".into()));
    }
    let Some((ep, peer)) = ctx.same_switch_pair() else {
        return Ok(Outcome::Skip("needs two endpoints behind one switch".into()));
    };
    each_path(ctx, |ctx, p| {
        let pm = ctx.alloc(uapi::BUF_P2PMEM, peer.ep, 3 * 4096)?;
        let ram = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, 3 * 4096)?;
        copy_check(ctx, &ep, p, &[pm.seg(0, 3 * 4096)], &[ram.seg(0, 3 * 4096)], 0)?;
        copy_check(ctx, &ep, p, &[ram.seg(7, 9000)], &[pm.seg(3000, 9000)], 0)
    })?;
    Ok(Outcome::Pass)
}

fn own_bar(ctx: &Ctx) -> Result<Outcome> {
    if !ctx.p2pdma() {
        return Ok(Outcome::Skip("the kernel has no CONFIG_PCI_P2PDMA".into()));
    }
    let ep = ctx.eps[0];
    each_path(ctx, |ctx, p| {
        let pm = ctx.alloc(uapi::BUF_P2PMEM, ep.ep, 2 * 4096)?;
        let ram = ctx.alloc(uapi::BUF_RAM, 0, 2 * 4096)?;
        copy_check(ctx, &ep, p, &[pm.seg(1, 8000)], &[ram.seg(5, 8000)], 0)
    })?;
    Ok(Outcome::Pass)
}

/// RAM (unaligned start), a peer's p2pmem, scattered RAM crossing a page, own p2pmem.
fn mixed(ctx: &Ctx, blocks: &[u32]) -> Result<Outcome> {
    if !ctx.p2pdma() {
        return Ok(Outcome::Skip("the kernel has no CONFIG_PCI_P2PDMA".into()));
    }
    let Some((ep, peer)) = ctx.same_switch_pair() else {
        return Ok(Outcome::Skip("needs two endpoints behind one switch".into()));
    };
    let blocks = blocks.to_vec();
    each_path(ctx, |ctx, p| {
        let ram = ctx.alloc(uapi::BUF_RAM, 0, 2 * 4096)?;
        let pm = ctx.alloc(uapi::BUF_P2PMEM, peer.ep, 3 * 4096)?;
        let sc = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, 3 * 4096)?;
        let own = ctx.alloc(uapi::BUF_P2PMEM, ep.ep, 4096)?;
        let list = [
            ram.seg(5, 4091),
            pm.seg(4096, 5000),
            sc.seg(2000, 6000),
            own.seg(10, 4000),
        ];
        let total: u64 = list.iter().map(|s| s.len).sum();
        let dst = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, total + 64)?;
        let flat = [dst.seg(33, total)];
        for &b in &blocks {
            copy_check(ctx, &ep, p, &list, &flat, b).context("mixed list as source")?;
            copy_check(ctx, &ep, p, &flat, &list, b).context("mixed list as destination")?;
        }
        Ok(())
    })?;
    Ok(Outcome::Pass)
}

fn mixed_list(ctx: &Ctx) -> Result<Outcome> {
    mixed(ctx, &[0])
}

fn chained_list(ctx: &Ctx) -> Result<Outcome> {
    mixed(ctx, &[1, 3])
}

fn many_segments(ctx: &Ctx) -> Result<Outcome> {
    let ep = ctx.eps[0];
    // One range per piece: RESOURCE (any kernel). A scattered buffer has no two
    // consecutive pages adjacent, so every page is its own piece.
    let n = u64::from(ep.max_list_entries);
    let sc = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, (n + 1) * 4096)?;
    let seg = [sc.seg(0, n * 4096)];
    let m = ctx.map(&ep, Path::Resource, uapi::DIR_BIDIRECTIONAL, &seg)?;
    if m.m.ranges.len() as u64 != n {
        return Ok(Outcome::Skip(format!(
            "{} of {n} pages came out physically adjacent (ranges {})",
            n - m.m.ranges.len() as u64,
            m.m.ranges.len()
        )));
    }
    let pat = 0x0102_0304_0506_0708 ^ ctx.seed();
    let want = fill_bytes(pat, usize::try_from(n * 4096)?);
    let crc = crc32c(&want);
    let s = ctx.submit(
        &ep,
        &Cmd::new(Opcode::Fill, 0).dst(&m).pattern(pat),
        n * 4096,
        Some(crc),
    )?;
    expect_status("FILL over MAX_LIST_ENTRIES ranges", &s, Status::SUCCESS)?;
    let s = ctx.submit(
        &ep,
        &Cmd::new(Opcode::Crc32c, 0).src(&m).blocks(64),
        n * 4096,
        Some(crc),
    )?;
    expect_status("CRC32C in chained blocks of 64", &s, Status::SUCCESS)?;
    ensure!(
        s.cqe.result as u32 == crc,
        "device CRC32C {:#010x}, expected {crc:#010x}",
        s.cqe.result
    );
    ensure!(first_diff(&ctx.read_segs(&seg)?, &want).is_none(), "FILL bytes differ");

    let one_more = [sc.seg(0, (n + 1) * 4096)];
    let m2 = ctx.map(&ep, Path::Resource, uapi::DIR_BIDIRECTIONAL, &one_more)?;
    if m2.m.ranges.len() as u64 == n + 1 {
        let s = ctx.submit(&ep, &Cmd::new(Opcode::Fill, 0).dst(&m2), 0, None)?;
        expect_status(
            "FILL over MAX_LIST_ENTRIES + 1 ranges",
            &s,
            Status::LIST_TOO_MANY_ENTRIES,
        )?;
        ensure!(s.cqe.result == 0, "bytes moved before the list check: {}", s.cqe.result);
    }
    Ok(Outcome::Pass)
}

fn bar_window(ctx: &Ctx) -> Result<Outcome> {
    let ep = ctx.eps[0];
    let peer = ctx
        .eps
        .iter()
        .find(|e| e.ep != ep.ep && e.switch_id == ep.switch_id)
        .copied()
        .unwrap_or(ep);
    // The last 16 KiB of the peer's BAR2: far from where p2pmem allocations start.
    let off = peer.bar2_size - 4 * 4096;
    for p in ctx.paths().into_iter().filter(|&p| p != Path::SgTable) {
        let w = ctx.alloc_at(uapi::BUF_BAR, peer.ep, 4 * 4096, off)?;
        ensure!(w.phys == peer.bar2_phys + off, "window phys {:#x}", w.phys);
        let ram = ctx.alloc(uapi::BUF_RAM, 0, 4 * 4096)?;
        copy_check(ctx, &ep, p, &[ram.seg(3, 10000)], &[w.seg(4096 + 5, 10000)], 0)
            .with_context(|| format!("RAM to the window, path {}", p.name()))?;
        copy_check(ctx, &ep, p, &[w.seg(0, 4 * 4096)], &[ram.seg(0, 4 * 4096)], 0)
            .with_context(|| format!("the window to RAM, path {}", p.name()))?;
    }
    Ok(Outcome::Pass)
}

fn fill_compare(ctx: &Ctx) -> Result<Outcome> {
    let ep = ctx.eps[0];
    let peer = ctx.same_switch_pair().map(|(_, p)| p);
    let a = ctx.alloc(uapi::BUF_RAM, 0, 8192)?;
    let sc = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, 8192)?;
    let pm = match peer.filter(|_| ctx.p2pdma()) {
        Some(peer) => Some(ctx.alloc(uapi::BUF_P2PMEM, peer.ep, 8192)?),
        None => None,
    };
    let mut list = vec![a.seg(1, 5000), sc.seg(100, 7000)];
    if let Some(pm) = &pm {
        list.push(pm.seg(3, 4099));
    }
    let total: u64 = list.iter().map(|s| s.len).sum();
    let copy = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, total)?;
    let flat = [copy.all()];
    for p in ctx.paths() {
        let pat = 0x1122_3344_5566_7788 ^ ctx.seed();
        let want = fill_bytes(pat, usize::try_from(total)?);
        let crc = crc32c(&want);
        let m = ctx.map(&ep, p, uapi::DIR_BIDIRECTIONAL, &list)?;
        let s = ctx.submit(&ep, &Cmd::new(Opcode::Fill, 1).dst(&m).pattern(pat), total, Some(crc))?;
        expect_status("FILL", &s, Status::SUCCESS)?;
        ensure!(
            first_diff(&ctx.read_segs(&list)?, &want).is_none(),
            "{}: FILL bytes differ",
            p.name()
        );
        ctx.write_segs(&flat, &want)?;
        let f = ctx.map(&ep, p, uapi::DIR_TO_DEVICE, &flat)?;
        let s = ctx.submit(&ep, &Cmd::new(Opcode::Compare, 1).src(&m).dst(&f), total, Some(crc))?;
        expect_status("COMPARE equal", &s, Status::SUCCESS)?;
        ensure!(s.cqe.result == total, "COMPARE result {:#x}", s.cqe.result);
        let at = total - 1 - (ctx.seed() % 3000);
        ctx.dev.buf_write(copy.id, at, &[want[usize::try_from(at)?] ^ 0x5a])?;
        let s = ctx.submit(&ep, &Cmd::new(Opcode::Compare, 1).src(&m).dst(&f), total, None)?;
        expect_status("COMPARE one byte changed", &s, Status::COMPARE_MISMATCH)?;
        ensure!(
            s.cqe.result == at,
            "{}: mismatch at {:#x}, changed {at:#x}",
            p.name(),
            s.cqe.result
        );
    }
    Ok(Outcome::Pass)
}

fn over_4g(ctx: &Ctx) -> Result<Outcome> {
    const LEN: u64 = (4 << 30) + 3 * 4096;
    if !ctx.p2pdma() {
        return Ok(Outcome::Skip("the kernel has no CONFIG_PCI_P2PDMA".into()));
    }
    let Some((ep, peer)) = ctx
        .same_switch_pair()
        .filter(|(_, p)| p.bar2_size > LEN)
        .or_else(|| ctx.eps.iter().find(|e| e.bar2_size > LEN).map(|e| (*e, *e)))
    else {
        return Ok(Outcome::Skip("needs a BAR2 over 4 GiB (--bar2-size 8589934592)".into()));
    };
    let pm = ctx.alloc(uapi::BUF_P2PMEM, peer.ep, LEN)?;
    let seg = [pm.seg(5, LEN - 10)];
    let m = ctx.map(&ep, Path::SgTable, uapi::DIR_BIDIRECTIONAL, &seg)?;
    ensure!(
        m.m.ranges.len() >= 2,
        "{} range(s) for {} bytes",
        m.m.ranges.len(),
        LEN - 10
    );
    let mut next = m.m.ranges[0].addr;
    for r in &m.m.ranges {
        ensure!(
            r.flags & uapi::RANGE_BUS_ADDR != 0,
            "a range of the peer's BAR is not a bus address"
        );
        ensure!(r.addr == next, "ranges not contiguous at {:#x}", r.addr);
        next = r.addr + u64::from(r.len);
    }
    let pat = 0x0f1e_2d3c_4b5a_6978;
    let mut fill = Cmd::new(Opcode::Fill, 0).dst(&m).pattern(pat);
    fill.timeout_ms = 300_000; // 4 GiB take longer than the default 10 s under TCG
    let s = ctx.submit(&ep, &fill, LEN - 10, None)?;
    expect_status("FILL over 4 GiB", &s, Status::SUCCESS)?;
    ensure!(s.cqe.result == LEN - 10, "FILL result {:#x}", s.cqe.result);
    // the device writes pattern byte k % 8 at list offset k: check 4 KiB windows at the
    // start, across the first range's end and at the end
    let split = u64::from(m.m.ranges[0].len);
    for at in [0, split - 2048, LEN - 10 - 4096] {
        let mut got = vec![0u8; 4096];
        ctx.dev.buf_read(pm.id, 5 + at, &mut got)?;
        let want: Vec<u8> = (at..at + 4096).map(|k| pat.to_le_bytes()[(k % 8) as usize]).collect();
        ensure!(got == want, "bytes at list offset {at:#x} differ");
    }
    Ok(Outcome::Pass)
}
