//! Negative cases: what the kernel must refuse (every hostile ioctl argument with its exact
//! errno, unreachable peers) and what the device must refuse (a use after unmap, a write
//! through a read-only mapping), with the exact status, list, segment and address.

use anyhow::{ensure, Result};
use dma_range::{Opcode, Status, FAULT_LIST_DST, FAULT_LIST_SRC};

use super::ctx::{expect_errno, expect_status, Cmd, Ctx};
use super::uapi::{self, Map, MapSeg, Path};
use super::{Case, Outcome};
use phyr_kernels::crc32c::crc32c;
use phyr_report::{P2pDecision, P2pLine};

use crate::data::{fill_bytes, first_diff, pattern};
use crate::suite::Tap;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "k-topology",
            about:
                "every client x provider: the kernel's P2P decision, the map each path makes of it, the bytes arriving",
            run: topology,
        },
        Case {
            name: "k-use-after-unmap",
            about:
                "a command over a list unmapped with KEEP: IOMMU_FAULT at its first address, no byte moved, every path",
            run: use_after_unmap,
        },
        Case {
            name: "k-read-only",
            about: "FILL through DMA_TO_DEVICE: WRITE_READ_ONLY, no byte moved; through DMA_FROM_DEVICE it lands",
            run: read_only,
        },
        Case {
            name: "k-hostile-args",
            about: "every ioctl argument the driver must refuse, each with its errno",
            run: hostile_args,
        },
        Case {
            name: "k-map-enospc",
            about: "MAP with arrays too small: ENOSPC with the sizes needed, nothing mapped; then it fits",
            run: map_enospc,
        },
    ]
}

fn topology(ctx: &Ctx) -> Result<Outcome> {
    if !ctx.p2pdma() {
        return Ok(Outcome::Skip("the kernel has no CONFIG_PCI_P2PDMA".into()));
    }
    for client in &ctx.eps {
        for provider in &ctx.eps {
            let q = ctx.dev.p2p_query(provider.ep, client.ep)?;
            let decided = q.map_type as u8;
            let decision = match decided {
                uapi::MAP_BUS_ADDR => P2pDecision::BusAddr,
                uapi::MAP_THRU_HOST_BRIDGE => P2pDecision::ThruHostBridge,
                uapi::MAP_NOT_SUPPORTED => P2pDecision::NotSupported,
                other => anyhow::bail!("P2P_QUERY answered map type {other}"),
            };
            Tap::report(&P2pLine {
                client: client.ep,
                provider: provider.ep,
                distance: u32::try_from(q.distance).ok(),
                decision,
            });
            if decided == uapi::MAP_BUS_ADDR {
                ensure!(
                    client.switch_id == provider.switch_id,
                    "bus address between switches {} and {}",
                    client.switch_id,
                    provider.switch_id
                );
            }
            ensure!(
                (decided == uapi::MAP_NOT_SUPPORTED) == (q.distance < 0),
                "decision {} with distance {}",
                uapi::map_type_name(decided),
                q.distance
            );
            for p in ctx.paths() {
                let b = ctx.alloc(uapi::BUF_P2PMEM, provider.ep, 8192)?;
                let seg = [b.seg(8, 8000)];
                // SGTABLE and IOVA follow the kernel; PHYS and RESOURCE always go through
                // the IOMMU.
                let follows = matches!(p, Path::SgTable | Path::Iova);
                if follows && decided == uapi::MAP_NOT_SUPPORTED {
                    let r = ctx.dev.map(client.ep, p, uapi::DIR_BIDIRECTIONAL, &seg);
                    expect_errno(&format!("map via {}", p.name()), r.map(|_| ()), libc::EREMOTEIO)?;
                    continue;
                }
                let m = ctx.map(client, p, uapi::DIR_BIDIRECTIONAL, &seg)?;
                let want = if follows { decided } else { uapi::MAP_THRU_HOST_BRIDGE };
                ensure!(
                    m.m.pieces.iter().all(|x| x.map_type == want),
                    "{}: pieces {}, kernel decided {}",
                    p.name(),
                    uapi::map_type_name(m.m.pieces[0].map_type),
                    uapi::map_type_name(want)
                );
                let pat = 0xa5a5_0000_0000_0000 | (u64::from(client.ep) << 8) | u64::from(provider.ep);
                let bytes = fill_bytes(pat, 8000);
                let crc = crc32c(&bytes);
                let s = ctx.submit(client, &Cmd::new(Opcode::Fill, 0).dst(&m).pattern(pat), 8000, Some(crc))?;
                expect_status(&format!("FILL via {}", p.name()), &s, Status::SUCCESS)?;
                ensure!(
                    first_diff(&ctx.read_segs(&seg)?, &bytes).is_none(),
                    "{}: bytes differ",
                    p.name()
                );
            }
        }
    }
    Ok(Outcome::Pass)
}

/// True if the IOMMU translates for `ep` (a RAM piece's DMA address is not its physical one).
fn translated(ctx: &Ctx, ep: &uapi::EpInfo) -> Result<bool> {
    let b = ctx.alloc(uapi::BUF_RAM, 0, 4096)?;
    let m = ctx.dev.map(ep.ep, Path::SgTable, uapi::DIR_BIDIRECTIONAL, &[b.all()])?;
    let t = m.pieces[0].dma_addr != m.pieces[0].phys;
    ctx.dev.unmap(m.id, 0)?;
    Ok(t)
}

const NO_IOMMU: &str = "no IOMMU translation (iommu passthrough): an unmapped DMA address still reaches RAM";

fn use_after_unmap(ctx: &Ctx) -> Result<Outcome> {
    let ep = ctx.eps[0];
    if !translated(ctx, &ep)? {
        return Ok(Outcome::Skip(NO_IOMMU.into()));
    }
    for p in ctx.paths() {
        // Three pages: never the IOVA size of the one-page list memory of the command.
        let b = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, 3 * 4096)?;
        let seg = [b.seg(16, 3 * 4096 - 32)];
        let before = pattern(ctx.seed(), 3 * 4096 - 32);
        ctx.write_segs(&seg, &before)?;
        let m = ctx.map(&ep, p, uapi::DIR_BIDIRECTIONAL, &seg)?;
        let first = m.m.ranges[0].addr;
        m.unmap_keep()?;
        expect_errno(
            "UNMAP KEEP twice",
            ctx.dev.unmap(m.m.id, uapi::UNMAP_KEEP),
            libc::EINVAL,
        )?;
        let fill = Cmd::new(Opcode::Fill, 0).dst(&m).pattern(0x1111_2222_3333_4444);
        expect_errno("SUBMIT over a stale map", ctx.submit_raw(&ep, &fill), libc::ESTALE)?;
        let mut fill = fill;
        fill.flags = uapi::SUBMIT_STALE;
        let s = ctx.submit(&ep, &fill, 0, None)?;
        expect_status(&format!("{}: FILL after unmap", p.name()), &s, Status::IOMMU_FAULT)?;
        ensure!(
            (s.cqe.fault_list, s.cqe.segment, s.cqe.fault_addr, s.cqe.result) == (FAULT_LIST_DST, 0, first, 0),
            "{}: fault list {} segment {} addr {:#x} result {}, expected dst 0 {first:#x} 0",
            p.name(),
            s.cqe.fault_list,
            s.cqe.segment,
            s.cqe.fault_addr,
            s.cqe.result
        );
        ensure!(
            first_diff(&ctx.read_segs(&seg)?, &before).is_none(),
            "{}: bytes moved",
            p.name()
        );
        let mut crc = Cmd::new(Opcode::Crc32c, 0).src(&m);
        crc.flags = uapi::SUBMIT_STALE;
        let s = ctx.submit(&ep, &crc, 0, None)?;
        expect_status("CRC32C after unmap", &s, Status::IOMMU_FAULT)?;
        ensure!(
            s.cqe.fault_list == FAULT_LIST_SRC && s.cqe.fault_addr == first,
            "CRC32C fault fields"
        );
    }
    Ok(Outcome::Pass)
}

fn read_only(ctx: &Ctx) -> Result<Outcome> {
    let ep = ctx.eps[0];
    if !translated(ctx, &ep)? {
        return Ok(Outcome::Skip(NO_IOMMU.into()));
    }
    for p in ctx.paths() {
        let b = ctx.alloc(uapi::BUF_RAM, 0, 2 * 4096)?;
        let seg = [b.seg(0, 2 * 4096)];
        let before = pattern(ctx.seed(), 2 * 4096);
        ctx.write_segs(&seg, &before)?;
        let m = ctx.map(&ep, p, uapi::DIR_TO_DEVICE, &seg)?;
        let s = ctx.submit(&ep, &Cmd::new(Opcode::Fill, 0).dst(&m).pattern(7), 0, None)?;
        expect_status(
            &format!("{}: FILL through a read-only map", p.name()),
            &s,
            Status::WRITE_READ_ONLY,
        )?;
        ensure!(
            s.cqe.fault_addr == m.m.ranges[0].addr && s.cqe.result == 0,
            "fault fields"
        );
        ensure!(
            first_diff(&ctx.read_segs(&seg)?, &before).is_none(),
            "{}: bytes moved",
            p.name()
        );
        // ... and the same bytes through a DMA_FROM_DEVICE mapping take the FILL
        let w = ctx.map(&ep, p, uapi::DIR_FROM_DEVICE, &seg)?;
        let s = ctx.submit(&ep, &Cmd::new(Opcode::Fill, 0).dst(&w).pattern(7), 2 * 4096, None)?;
        expect_status(
            &format!("{}: FILL through a write mapping", p.name()),
            &s,
            Status::SUCCESS,
        )?;
        ensure!(
            ctx.read_segs(&seg)? == fill_bytes(7, 2 * 4096),
            "{}: FILL bytes differ",
            p.name()
        );
    }
    Ok(Outcome::Pass)
}

fn hostile_args(ctx: &Ctx) -> Result<Outcome> {
    let d = &ctx.dev;
    let ep = ctx.eps[0];
    let none = 0xdead_u32;

    expect_errno("BUF_ALLOC kind 0", d.buf_alloc(0, 0, 4096, 0), libc::EINVAL)?;
    expect_errno("BUF_ALLOC kind 9", d.buf_alloc(9, 0, 4096, 0), libc::EINVAL)?;
    expect_errno("BUF_ALLOC len 0", d.buf_alloc(uapi::BUF_RAM, 0, 0, 0), libc::EINVAL)?;
    expect_errno(
        "BUF_ALLOC RAM with an ep",
        d.buf_alloc(uapi::BUF_RAM, 1, 4096, 0),
        libc::EINVAL,
    )?;
    expect_errno(
        "BUF_ALLOC RAM with a bar_offset",
        d.buf_alloc(uapi::BUF_RAM, 0, 4096, 4096),
        libc::EINVAL,
    )?;
    expect_errno(
        "BUF_ALLOC RAM 64 MiB contiguous",
        d.buf_alloc(uapi::BUF_RAM, 0, 64 << 20, 0),
        libc::E2BIG,
    )?;
    expect_errno(
        "BUF_ALLOC RAM_SCATTER 1 TiB",
        d.buf_alloc(uapi::BUF_RAM_SCATTER, 0, 1 << 40, 0),
        libc::E2BIG,
    )?;
    expect_errno(
        "BUF_ALLOC BAR unaligned",
        d.buf_alloc(uapi::BUF_BAR, ep.ep, 4096, 100),
        libc::EINVAL,
    )?;
    expect_errno(
        "BUF_ALLOC BAR past BAR2",
        d.buf_alloc(uapi::BUF_BAR, ep.ep, 8192, ep.bar2_size - 4096),
        libc::ERANGE,
    )?;
    expect_errno(
        "BUF_ALLOC BAR at BAR2's end",
        d.buf_alloc(uapi::BUF_BAR, ep.ep, 1, ep.bar2_size),
        libc::ERANGE,
    )?;
    expect_errno(
        "BUF_ALLOC BAR of no endpoint",
        d.buf_alloc(uapi::BUF_BAR, none, 4096, 0),
        libc::ENODEV,
    )?;
    let p2p_none = if ctx.p2pdma() { libc::ENODEV } else { libc::EOPNOTSUPP };
    expect_errno(
        "BUF_ALLOC P2PMEM of no endpoint",
        d.buf_alloc(uapi::BUF_P2PMEM, none, 4096, 0),
        p2p_none,
    )?;
    expect_errno("BUF_FREE unknown", d.buf_free(none), libc::ENOENT)?;

    let b = ctx.alloc(uapi::BUF_RAM, 0, 100)?;
    let mut one = [0u8; 1];
    expect_errno("BUF_READ past the end", d.buf_read(b.id, 100, &mut one), libc::ERANGE)?;
    expect_errno(
        "BUF_READ offset u64::MAX",
        d.buf_read(b.id, u64::MAX, &mut one),
        libc::ERANGE,
    )?;
    expect_errno("BUF_READ len 0", d.buf_read(b.id, 0, &mut []), libc::EINVAL)?;
    expect_errno(
        "BUF_WRITE 101 bytes into 100",
        d.buf_write(b.id, 0, &[0u8; 101]),
        libc::ERANGE,
    )?;
    expect_errno("BUF_READ unknown buffer", d.buf_read(none, 0, &mut one), libc::ENOENT)?;
    expect_errno(
        "BUF_READ to a kernel address",
        d.buf_read_to_kernel_address(b.id),
        libc::EFAULT,
    )?;

    let seg = |buf: u32, offset: u64, len: u64| MapSeg {
        buf,
        reserved: 0,
        offset,
        len,
    };
    let map = |path: u32, dir: u32, flags: u32, segs: &[MapSeg]| {
        let mut m = Map {
            ep: ep.ep,
            path,
            dir,
            flags,
            ..Default::default()
        };
        d.map_raw(&mut m, segs, 16, 16).map(|_| ())
    };
    let ok = [seg(b.id, 0, 100)];
    expect_errno("MAP path 0", map(0, 0, 0, &ok), libc::EINVAL)?;
    expect_errno("MAP path 5", map(5, 0, 0, &ok), libc::EINVAL)?;
    expect_errno("MAP dir 3", map(1, 3, 0, &ok), libc::EINVAL)?;
    expect_errno("MAP flags", map(1, 0, 1, &ok), libc::EINVAL)?;
    expect_errno("MAP no segments", map(1, 0, 0, &[]), libc::EINVAL)?;
    expect_errno(
        "MAP 8193 segments",
        map(1, 0, 0, &vec![seg(b.id, 0, 1); 8193]),
        libc::E2BIG,
    )?;
    let reserved = [MapSeg { reserved: 1, ..ok[0] }];
    expect_errno("MAP segment reserved", map(1, 0, 0, &reserved), libc::EINVAL)?;
    expect_errno("MAP segment len 0", map(1, 0, 0, &[seg(b.id, 0, 0)]), libc::EINVAL)?;
    expect_errno(
        "MAP segment past the end",
        map(1, 0, 0, &[seg(b.id, 50, 51)]),
        libc::ERANGE,
    )?;
    expect_errno(
        "MAP segment offset+len wraps",
        map(1, 0, 0, &[seg(b.id, 1, u64::MAX)]),
        libc::ERANGE,
    )?;
    expect_errno("MAP unknown buffer", map(1, 0, 0, &[seg(none, 0, 1)]), libc::ENOENT)?;
    for p in Path::ALL.into_iter().filter(|&p| !ctx.has(p)) {
        expect_errno(
            &format!("MAP via {} (not in this kernel)", p.name()),
            map(p as u32, 0, 0, &ok),
            libc::EOPNOTSUPP,
        )?;
    }
    expect_errno(
        "MAP for no endpoint",
        d.map(none, Path::SgTable, 0, &ok).map(|_| ()),
        libc::ENODEV,
    )?;
    let w = ctx.alloc_at(uapi::BUF_BAR, ep.ep, 4096, ep.bar2_size - 4096)?;
    expect_errno("MAP a BAR window via sgtable", map(1, 0, 0, &[w.all()]), libc::EINVAL)?;

    expect_errno("UNMAP unknown", d.unmap(none, 0), libc::ENOENT)?;
    let m = ctx.map(&ep, Path::SgTable, 0, &ok)?;
    expect_errno("UNMAP flags 2", d.unmap(m.m.id, 2), libc::EINVAL)?;

    let cmd = |op: Opcode| Cmd::new(op, 0);
    expect_errno(
        "SUBMIT queue out of range",
        ctx.submit_raw(&ep, &Cmd::new(Opcode::Nop, ep.nr_queues)),
        libc::EINVAL,
    )?;
    expect_errno(
        "SUBMIT COMPARE without lists",
        ctx.submit_raw(&ep, &cmd(Opcode::Compare)),
        libc::EINVAL,
    )?;
    expect_errno(
        "SUBMIT COPY without dst",
        ctx.submit_raw(&ep, &cmd(Opcode::Copy).src(&m)),
        libc::EINVAL,
    )?;
    expect_errno(
        "SUBMIT FILL with a src",
        ctx.submit_raw(&ep, &cmd(Opcode::Fill).src(&m).dst(&m)),
        libc::EINVAL,
    )?;
    expect_errno(
        "SUBMIT CRC32C with a pattern",
        ctx.submit_raw(&ep, &cmd(Opcode::Crc32c).src(&m).pattern(1)),
        libc::EINVAL,
    )?;
    let mut t = cmd(Opcode::Nop);
    t.timeout_ms = 600_001;
    expect_errno("SUBMIT timeout over 600 s", ctx.submit_raw(&ep, &t), libc::EINVAL)?;
    let mut f = cmd(Opcode::Nop);
    f.flags = 2;
    expect_errno("SUBMIT flags", ctx.submit_raw(&ep, &f), libc::EINVAL)?;
    let mut s = uapi::Submit {
        ep: ep.ep,
        opcode: 5,
        ..Default::default()
    };
    expect_errno("SUBMIT opcode 5", d.submit(&mut s), libc::EINVAL)?;
    s.opcode = Opcode::Crc32c as u32;
    s.src_map = none;
    expect_errno("SUBMIT unknown map", d.submit(&mut s), libc::ENOENT)?;
    s.ep = none;
    expect_errno("SUBMIT no endpoint", d.submit(&mut s), libc::ENODEV)?;
    if let Some(other) = ctx.eps.iter().find(|x| x.ep != ep.ep) {
        expect_errno(
            "SUBMIT a map of another endpoint",
            ctx.submit_raw(other, &cmd(Opcode::Crc32c).src(&m)),
            libc::EXDEV,
        )?;
    }
    expect_errno("EP_INFO no endpoint", d.ep_info(none), libc::ENODEV)?;
    expect_errno("P2P_QUERY no endpoint", d.p2p_query(none, ep.ep), libc::ENODEV)?;
    expect_errno("RESET no endpoint", d.reset(none), libc::ENODEV)?;
    expect_errno("unknown request", d.unknown_request(), libc::ENOTTY)?;
    // Nothing above changed the device: it still works.
    let s = ctx.submit(&ep, &cmd(Opcode::Crc32c).src(&m), 100, None)?;
    expect_status("CRC32C after the hostile calls", &s, Status::SUCCESS)?;
    Ok(Outcome::Pass)
}

fn map_enospc(ctx: &Ctx) -> Result<Outcome> {
    let ep = ctx.eps[0];
    let b = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, 5 * 4096)?;
    let segs = [b.seg(100, 4 * 4096)];
    let path = Path::Resource;
    let mut m = Map {
        ep: ep.ep,
        path: path as u32,
        ..Default::default()
    };
    expect_errno(
        "MAP with no room",
        ctx.dev.map_raw(&mut m, &segs, 0, 0).map(|_| ()),
        libc::ENOSPC,
    )?;
    let (r, p) = (m.nr_ranges, m.nr_pieces);
    ensure!(
        r >= 1 && p >= 5 && m.total_len == 4 * 4096,
        "needed {r} ranges {p} pieces {} bytes",
        m.total_len
    );
    let mut m2 = Map {
        ep: ep.ep,
        path: path as u32,
        ..Default::default()
    };
    expect_errno(
        "MAP one piece short",
        ctx.dev.map_raw(&mut m2, &segs, r, p - 1).map(|_| ()),
        libc::ENOSPC,
    )?;
    let mut m3 = Map {
        ep: ep.ep,
        path: path as u32,
        ..Default::default()
    };
    let (ranges, pieces) = ctx.dev.map_raw(&mut m3, &segs, r, p)?;
    ensure!(
        ranges.len() == r as usize && pieces.len() == p as usize,
        "sizes changed between calls"
    );
    ctx.dev.unmap(m3.map, 0)?;
    Ok(Outcome::Pass)
}
