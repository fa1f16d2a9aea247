//! What each DMA API path must make of the same memory, piece by piece: which kernel call
//! produced each DMA address, how pieces group into list entries, when the IOVA path falls
//! back; and where a segment that crosses a page boundary of scattered RAM is split.

use anyhow::{ensure, Context, Result};
use phyr_report::{KernelCall, MapType};

use super::cases_data::copy_check;
use super::ctx::{Ctx, KMap};
use super::uapi::{self, EpInfo, MapSeg, Path};
use super::{Case, Outcome};
use crate::suite::Tap;

const PAGE: u64 = 4096;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "k-api-paths",
            about: "scattered RAM and a peer's p2pmem through each path: the kernel call per piece, one IOVA range per run, the fallback without translation",
            run: api_paths,
        },
        Case {
            name: "k-page-crossing",
            about: "odd-length segments across page boundaries of scattered RAM and p2pmem: split exactly where the memory is discontiguous, every path",
            run: page_crossing,
        },
    ]
}

/// Whether the IOMMU translates RAM for `m`'s endpoint (some RAM piece's DMA address is not
/// its physical address).
fn translated(m: &KMap<'_>) -> bool {
    m.kernel_segs()
        .iter()
        .any(|s| s.map == MapType::None && s.dma.addr != s.phys)
}

/// The call a path must use for a piece of type `t`, and whether that call may fall back to
/// `dma_map_phys()` (the IOVA path without translation).
fn expected_call(path: Path, t: MapType, translated: bool) -> KernelCall {
    match (path, t) {
        (Path::SgTable, _) => KernelCall::SgTable,
        (Path::Iova, MapType::BusAddr) => KernelCall::BusAddrMap,
        (Path::Iova, _) if translated => KernelCall::IovaLink,
        (Path::Iova, _) | (Path::Phys, _) => KernelCall::MapPhys,
        (Path::Resource, MapType::None) => KernelCall::MapPage,
        (Path::Resource, _) => KernelCall::MapResource,
    }
}

/// Every piece of `m` made by the call `path` must use for its type.
fn check_calls(m: &KMap<'_>, path: Path, translated: bool) -> Result<()> {
    for (i, s) in m.kernel_segs().iter().enumerate() {
        let want = expected_call(path, s.map, translated);
        ensure!(
            s.call == Some(want),
            "piece {i} ({}) made by {}, expected {want}",
            s.map,
            s.call.map_or("?", |c| c.name())
        );
        let fallback = m.m.pieces[i].flags & uapi::PIECE_FALLBACK != 0;
        ensure!(
            fallback == (path == Path::Iova && !translated && s.map != MapType::BusAddr),
            "piece {i}: FALLBACK {fallback} on path {} with translation {translated}",
            path.name()
        );
    }
    Ok(())
}

fn api_paths(ctx: &Ctx) -> Result<Outcome> {
    let ep = ctx.eps[0];
    let mut any_translated = false;
    for p in ctx.paths() {
        ram_through(ctx, &ep, p, &mut any_translated).with_context(|| format!("RAM via {}", p.name()))?;
    }
    Tap::diag(if any_translated {
        "RAM through the IOMMU: IOVAs"
    } else {
        "no IOMMU translation: DMA address = physical address, the IOVA path falls back to dma_map_phys()"
    });
    if !ctx.p2pdma() {
        return Ok(Outcome::Pass);
    }
    // A peer the kernel can reach (bus address or through the host bridge).
    for peer in ctx.eps.iter().filter(|e| e.ep != ep.ep) {
        let q = ctx.dev.p2p_query(peer.ep, ep.ep)?;
        let decided = q.map_type as u8;
        if decided == uapi::MAP_NOT_SUPPORTED {
            continue;
        }
        for p in ctx.paths() {
            peer_through(ctx, &ep, peer, p, decided)
                .with_context(|| format!("ep{}'s p2pmem via {}", peer.ep, p.name()))?;
        }
        return Ok(Outcome::Pass);
    }
    Tap::diag("no peer the kernel can reach from ep0: RAM only");
    Ok(Outcome::Pass)
}

/// Four scattered pages (inner edges page-aligned) through `path`.
fn ram_through(ctx: &Ctx, ep: &EpInfo, path: Path, any_translated: &mut bool) -> Result<()> {
    let b = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, 4 * PAGE)?;
    let seg = [b.seg(100, 4 * PAGE - 200)];
    let m = ctx.map(ep, path, uapi::DIR_BIDIRECTIONAL, &seg)?;
    let t = translated(&m);
    *any_translated |= t;
    check_calls(&m, path, t)?;
    let (pieces, ranges) = (m.m.pieces.len(), m.m.ranges.len());
    let one_range = match path {
        // dma-iommu concatenates granule-aligned entries into one IOVA range
        Path::SgTable | Path::Iova => t,
        Path::Phys | Path::Resource => false,
    };
    if one_range {
        ensure!(
            ranges == 1,
            "{pieces} pieces in {ranges} ranges, expected one IOVA range"
        );
    } else if path != Path::SgTable {
        ensure!(
            ranges == pieces,
            "{pieces} pieces in {ranges} ranges, expected one per piece"
        );
    }
    if !t {
        ensure!(
            m.m.pieces.iter().all(|x| x.dma_addr == x.phys),
            "without translation a DMA address must be the physical address"
        );
    }
    let dst = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, 4 * PAGE)?;
    drop(m);
    copy_check(ctx, ep, path, &seg, &[dst.seg(7, seg[0].len)], 0)
}

/// Two pages of `peer`'s p2pmem through `path`; the kernel decided `decided` for the pair.
fn peer_through(ctx: &Ctx, ep: &EpInfo, peer: &EpInfo, path: Path, decided: u8) -> Result<()> {
    let pm = ctx.alloc(uapi::BUF_P2PMEM, peer.ep, 2 * PAGE)?;
    let seg = [pm.seg(3, 2 * PAGE - 6)];
    let m = ctx.map(ep, path, uapi::DIR_BIDIRECTIONAL, &seg)?;
    let follows = matches!(path, Path::SgTable | Path::Iova);
    let want = match uapi::map_type(decided) {
        Some(t) if follows => t,
        _ => MapType::ThruHostBridge,
    };
    // Peer memory through the host bridge is translated when the IOMMU translates RAM.
    let ram = ctx.alloc(uapi::BUF_RAM, 0, PAGE)?;
    let t = translated(&ctx.map(ep, Path::SgTable, uapi::DIR_BIDIRECTIONAL, &[ram.all()])?);
    for (i, s) in m.kernel_segs().iter().enumerate() {
        ensure!(s.map == want, "piece {i}: {}, expected {want}", s.map);
    }
    check_calls(&m, path, t)?;
    let back = ctx.alloc(uapi::BUF_RAM, 0, 2 * PAGE)?;
    drop(m);
    copy_check(ctx, ep, path, &seg, &[back.seg(0, seg[0].len)], 0)
}

/// Odd-length segments each crossing one page boundary of `buf` (pages `1..=n`).
fn crossing_segs(buf: u32, n: u64) -> Vec<MapSeg> {
    (1..=n)
        .map(|k| MapSeg {
            buf,
            reserved: 0,
            offset: k * PAGE - (6 + k),
            len: 13 + 2 * k,
        })
        .collect()
}

/// The pieces of `m` split `segs` exactly where the memory stops being contiguous: each piece
/// keeps its page offset, starts a new piece only on a page boundary, and never follows a
/// physically adjacent one. Returns how many segments were split.
fn check_splits(m: &KMap<'_>, segs: &[MapSeg]) -> Result<usize> {
    let mut split = 0;
    for (k, seg) in segs.iter().enumerate() {
        let pieces: Vec<&uapi::Piece> = m.m.pieces.iter().filter(|p| p.seg as usize == k).collect();
        ensure!(!pieces.is_empty(), "segment {k} has no piece");
        ensure!(
            pieces[0].buf_offset == seg.offset && pieces[0].phys % PAGE == seg.offset % PAGE,
            "segment {k}: first piece at buffer offset {:#x} phys {:#x}, segment at {:#x}",
            pieces[0].buf_offset,
            pieces[0].phys,
            seg.offset
        );
        for w in pieces.windows(2) {
            let (a, b) = (w[0], w[1]);
            ensure!(
                b.buf_offset % PAGE == 0 && b.phys % PAGE == 0,
                "segment {k}: a piece starts at buffer offset {:#x} (phys {:#x}), not at a page boundary",
                b.buf_offset,
                b.phys
            );
            ensure!(
                a.phys + u64::from(a.len) != b.phys,
                "segment {k}: pieces at phys {:#x}+{:#x} and {:#x} are contiguous, yet split",
                a.phys,
                a.len,
                b.phys
            );
        }
        split += usize::from(pieces.len() > 1);
    }
    Ok(split)
}

fn page_crossing(ctx: &Ctx) -> Result<Outcome> {
    const N: u64 = 8;
    let ep = ctx.eps[0];
    let mut splits = 0;
    for p in ctx.paths() {
        let sc = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, (N + 1) * PAGE)?;
        let segs = crossing_segs(sc.id, N);
        let total: u64 = segs.iter().map(|s| s.len).sum();
        let m = ctx.map(&ep, p, uapi::DIR_BIDIRECTIONAL, &segs)?;
        let split = check_splits(&m, &segs).with_context(|| format!("scattered RAM via {}", p.name()))?;
        splits = splits.max(split);
        drop(m);
        let dst = ctx.alloc(uapi::BUF_RAM_SCATTER, 0, (N + 1) * PAGE)?;
        let dsegs = crossing_segs(dst.id, N);
        copy_check(ctx, &ep, p, &segs, &dsegs, 0).with_context(|| format!("page-crossing COPY via {}", p.name()))?;
        if let Some((_, peer)) = ctx.same_switch_pair().filter(|_| ctx.p2pdma()) {
            let pm = ctx.alloc(uapi::BUF_P2PMEM, peer.ep, (N + 1) * PAGE)?;
            let psegs = crossing_segs(pm.id, N);
            let m = ctx.map(&ep, p, uapi::DIR_BIDIRECTIONAL, &psegs)?;
            ensure!(
                m.m.pieces.len() == segs.len(),
                "{}: {} pieces for {} segments of contiguous p2pmem",
                p.name(),
                m.m.pieces.len(),
                segs.len()
            );
            drop(m);
            copy_check(ctx, &ep, p, &segs, &psegs, 0).with_context(|| format!("RAM to p2pmem via {}", p.name()))?;
        }
        Tap::diag(&format!(
            "{}: {total} bytes in {N} segments, {split} split at a page boundary",
            p.name()
        ));
    }
    if splits == 0 {
        return Ok(Outcome::Skip(
            "every page of the scattered buffer came out physically adjacent: nothing was split".into(),
        ));
    }
    Ok(Outcome::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_segments_straddle_one_page_boundary_each_at_odd_lengths() {
        let segs = crossing_segs(1, 8);
        for (k, s) in segs.iter().enumerate() {
            let k = k as u64 + 1;
            assert_eq!(s.offset / PAGE, k - 1, "starts in page {}", k - 1);
            assert_eq!((s.offset + s.len - 1) / PAGE, k, "ends in page {k}");
            assert_eq!(s.len % 2, 1);
        }
    }

    #[test]
    fn each_path_names_its_call() {
        assert_eq!(expected_call(Path::Iova, MapType::None, true), KernelCall::IovaLink);
        assert_eq!(expected_call(Path::Iova, MapType::None, false), KernelCall::MapPhys);
        assert_eq!(
            expected_call(Path::Iova, MapType::BusAddr, false),
            KernelCall::BusAddrMap
        );
        assert_eq!(
            expected_call(Path::Resource, MapType::ThruHostBridge, true),
            KernelCall::MapResource
        );
        assert_eq!(expected_call(Path::Resource, MapType::None, true), KernelCall::MapPage);
        assert_eq!(
            expected_call(Path::SgTable, MapType::BusAddr, true),
            KernelCall::SgTable
        );
        assert_eq!(
            expected_call(Path::Phys, MapType::ThruHostBridge, true),
            KernelCall::MapPhys
        );
    }
}
