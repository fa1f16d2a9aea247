//! Random command shapes: which arena bytes each list covers, how they are reached (IOVA,
//! bus address, a BAR through the IOMMU), how they split into segments, where the list blocks
//! go, and the bad segments put in on purpose. All choices come from the soak's seed.

use anyhow::{bail, Result};
use dma_range::{AddrSpace, DmaRange, Opcode};

use super::arena::{Arenas, Home, Occupancy};
use super::expect;
use super::plan::{det_fault_with_bars, starts, Bad, Limits, Plan, Seg};
use super::rng::Rng;
use crate::bench::Bench;
use crate::mapping::{self, BuiltList, Place, Route, Segment, Via};
use crate::queue::QueueMode;

/// What planning the commands of one step needs.
pub struct Planner<'a> {
    pub s: &'a mut Bench,
    pub a: &'a mut Arenas,
    /// Bytes already given to a command of this step.
    pub occ: &'a mut Occupancy,
    pub rng: &'a mut Rng,
    pub limits: &'a Limits,
}

/// `total` bytes split into `parts` random non-empty pieces.
fn split(total: u64, parts: usize, rng: &mut Rng) -> Vec<u64> {
    let parts = (parts as u64).clamp(1, total.max(1));
    let mut cuts: Vec<u64> = (1..parts).map(|_| rng.range(1, total - 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut v = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain([total]) {
        if c > at {
            v.push(c - at);
            at = c;
        }
    }
    v
}

impl Planner<'_> {
    /// A random arena (a writable one for a destination), not `avoid`.
    fn pick_arena(&mut self, writable: bool, avoid: Option<usize>) -> usize {
        loop {
            let id = self.rng.below(self.a.list.len() as u64) as usize;
            if (!writable || self.a.list[id].writable()) && Some(id) != avoid {
                return id;
            }
        }
    }

    /// How `ep` reaches bytes of `arena`: bus address or IOMMU, at random where both work.
    fn route(&mut self, arena: usize, ep: usize) -> Route {
        match self.a.list[arena].home {
            Home::Bar { ep: owner, .. } if self.limits.bus_ok[owner][ep] && self.rng.chance(60) => Route::Bus,
            Home::Bar { .. } => Route::Iommu,
            Home::Host { .. } => Route::Auto,
        }
    }

    /// Maps `len` arena bytes at `(arena, off)` for `ep` into segments of at most `max_seg`
    /// bytes, by `rt`.
    fn segments(
        &mut self,
        (arena, off): (usize, u64),
        len: u64,
        rt: Route,
        ep: usize,
        max_seg: u32,
    ) -> Result<Vec<Seg>> {
        let place = self.a.list[arena].place(off);
        let segs = mapping::map_places(self.s, ep, &[(place, len, rt)], max_seg)?;
        let mut at = off;
        Ok(segs
            .into_iter()
            .map(|sg| {
                let seg = Seg {
                    range: sg.range,
                    at: Some((arena, at)),
                    bad: None,
                    message: matches!(sg.via, Via::PeerIova { .. }),
                };
                at += u64::from(sg.range.len);
                seg
            })
            .collect())
    }

    /// A list of `lens` pieces, each in a random arena at a random free offset (writable
    /// arenas for a destination), mapped for `ep`. `None` if the arenas are too full.
    fn data_list(&mut self, ep: usize, lens: &[u64], writable: bool, max_seg: u32) -> Result<Option<Vec<Seg>>> {
        let mut out = Vec::new();
        for &len in lens {
            let mut got = None;
            for _ in 0..6 {
                let id = self.pick_arena(writable, None);
                if let Some(off) = self.occ.take(id, self.a.list[id].len, len, self.rng) {
                    got = Some((id, off));
                    break;
                }
            }
            let Some(at) = got else { return Ok(None) };
            let rt = self.route(at.0, ep);
            out.extend(self.segments(at, len, rt, ep, max_seg)?);
        }
        Ok(Some(out))
    }

    /// A bad segment of kind `bad` (at most `len` bytes) for `ep`; `None` if this bench
    /// cannot make one now (the read-only arena is full).
    fn bad_segment(&mut self, bad: Bad, len: u64, ep: usize) -> Option<Seg> {
        let len = len.clamp(1, 4096);
        let (b0, b0_len, b2, b2_len) = self.limits.bars[ep];
        let (space, addr, at) = match bad {
            // Below the IOVA window nothing is ever mapped (iova.rs).
            Bad::Unmapped => {
                let half = crate::iova::IOVA_START / 2;
                (AddrSpace::Iova, half + self.rng.below(half - 4096), None)
            }
            Bad::ReadOnly => {
                let id = self.a.list.iter().position(|x| !x.writable())?;
                let off = self.occ.take(id, self.a.list[id].len, len, self.rng)?;
                match self.a.list[id].place(off) {
                    Place::Host { iova, offset, .. } => (AddrSpace::Iova, iova + offset, Some((id, off))),
                    Place::Bar { .. } => return None,
                }
            }
            Bad::NoTarget => (AddrSpace::Bus, self.limits.undecoded + self.rng.below(4096), None),
            Bad::TargetAbort => (
                AddrSpace::Bus,
                b0 + self.rng.below(b0_len.saturating_sub(len).max(1)),
                None,
            ),
            Bad::PastBarEnd => {
                let inside = self.rng.range(1, 256);
                let range = DmaRange::segment(AddrSpace::Bus, b2 + b2_len - inside, (inside + len) as u32);
                return Some(Seg {
                    range,
                    at: None,
                    bad: Some(bad),
                    message: false,
                });
            }
        };
        Some(Seg {
            range: DmaRange::segment(space, addr, len as u32),
            at,
            bad: Some(bad),
            message: false,
        })
    }

    /// A normal command: random opcode, random list shapes over random arenas, sometimes one
    /// bad segment. `None` when the arenas are too full for it this step.
    pub fn normal(&mut self, ep: usize, q: u32, mode: QueueMode) -> Result<Option<Plan>> {
        let rng = &mut *self.rng;
        let op = [Opcode::Copy, Opcode::Fill, Opcode::Crc32c, Opcode::Compare][rng.weighted(&[45, 20, 20, 15])];
        let max_seg = [u32::MAX, 64 << 10, 4096, 512][rng.weighted(&[40, 30, 20, 10])];
        let pieces = match rng.weighted(&[60, 30, 10]) {
            0 => rng.range(1, 8),
            1 => rng.range(9, 64),
            _ => rng.range(65, 300),
        } as usize;
        let mut lens: Vec<u64> = (0..pieces).map(|_| rng.len(64 << 10)).collect();
        while lens.iter().sum::<u64>() > (1 << 20) && lens.len() > 1 {
            lens.pop();
        }
        let total: u64 = lens.iter().sum();
        let other = split(total, rng.range(1, pieces as u64 * 2) as usize, rng);
        let (src_lens, dst_lens) = match op {
            Opcode::Fill => (vec![], lens),
            Opcode::Crc32c => (lens, vec![]),
            _ => (lens, other),
        };
        let Some(mut src) = self.data_list(ep, &src_lens, false, max_seg)? else {
            return Ok(None);
        };
        let Some(mut dst) = self.data_list(ep, &dst_lens, true, max_seg)? else {
            return Ok(None);
        };
        // One bad segment, on purpose, in one command out of twelve (not COMPARE, whose
        // mismatch could come first).
        if op != Opcode::Compare && self.rng.chance(8) {
            let bad = Bad::ALL[self.rng.below(Bad::ALL.len() as u64) as usize];
            let in_dst = match op {
                Opcode::Fill => true,
                Opcode::Crc32c => false,
                _ => bad == Bad::ReadOnly || self.rng.chance(50),
            };
            let len = self.rng.len(4096);
            if let Some(seg) = (bad != Bad::ReadOnly || in_dst)
                .then(|| self.bad_segment(bad, len, ep))
                .flatten()
            {
                // COPY totals must match: the other list grows by the same bytes.
                if op == Opcode::Copy {
                    let Some(more) = self.data_list(ep, &[seg.len()], !in_dst, max_seg)? else {
                        return Ok(None);
                    };
                    let other = if in_dst { &mut src } else { &mut dst };
                    let j = self.rng.below(other.len() as u64 + 1) as usize;
                    other.splice(j..j, more);
                }
                let list = if in_dst { &mut dst } else { &mut src };
                let i = self.rng.below(list.len() as u64 + 1) as usize;
                list.insert(i, seg);
            }
        }
        if src.len().max(dst.len()) > self.limits.max_entries {
            return Ok(None);
        }
        if op == Opcode::Compare && self.rng.chance(75) {
            self.mirror(&src, &dst)?;
        }
        let mut p = Plan::new(ep, q, mode, op, self.rng.next(), src, dst);
        p.det = det_fault_with_bars(&p.src, &p.dst, self.limits, ep);
        Ok(Some(p))
    }

    /// COMPARE of random bytes differs at once: its destination becomes a copy of the source
    /// (written by the CPU), sometimes with one bit changed, so the result says something.
    fn mirror(&mut self, src: &[Seg], dst: &[Seg]) -> Result<()> {
        let total: u64 = src.iter().map(Seg::len).sum();
        let data = expect::stream_bytes(self.a, src, &starts(src), 0, total);
        let flip = self.rng.chance(60).then(|| self.rng.below(total) as usize);
        let mut at = 0usize;
        for seg in dst {
            let Some((id, off)) = seg.at else { continue };
            let mut piece = data[at..at + seg.len() as usize].to_vec();
            if let Some(k) = flip.filter(|&k| k >= at && k < at + piece.len()) {
                piece[k - at] ^= 1 << self.rng.below(8);
            }
            self.a.list[id].write(self.s, off, &piece)?;
            at += seg.len() as usize;
        }
        Ok(())
    }

    /// A free `len`-byte region of `force`, or of a random arena (writable for a
    /// destination) other than `avoid`.
    fn region(&mut self, len: u64, force: Option<usize>, writable: bool, avoid: Option<usize>) -> Option<(usize, u64)> {
        for _ in 0..8 {
            let id = match force {
                Some(id) => id,
                None => self.pick_arena(writable, avoid),
            };
            if let Some(off) = self.occ.take(id, self.a.list[id].len, len, self.rng) {
                return Some((id, off));
            }
        }
        None
    }

    /// A long command for a fault to land in: `L` bytes of one arena region repeated `n`
    /// times into another (COPY), or a pattern over one region `n` times (FILL), `n` x `L`
    /// being a few GiB. With a `target` arena (an unmap fault's), its source or destination
    /// lies there, reached through the IOMMU (so that unmapping a BAR window matters), and
    /// nothing else does.
    pub fn long(
        &mut self,
        ep: usize,
        q: u32,
        mode: QueueMode,
        fill: bool,
        target: Option<usize>,
    ) -> Result<Option<Plan>> {
        // A multiple of 8: FILL's pattern then starts every pass at the same phase, so every
        // pass writes the same bytes and a destination tells how far the command got.
        let l = self.rng.range(64 << 10, 1 << 20) & !7;
        let mut n = (((4u64 << 30) / l) as usize).clamp(256, self.limits.max_entries);
        // The fault's target holds the source (COPY) or the destination.
        let in_src = match target {
            Some(t) => !fill && (!self.a.list[t].writable() || self.rng.chance(60)),
            None => false,
        };
        if target.is_some_and(|t| !in_src && !self.a.list[t].writable()) {
            return Ok(None);
        }
        let src_at = match fill {
            true => None,
            false => match self.region(l, target.filter(|_| in_src), false, target) {
                Some(x) => Some(x),
                None => return Ok(None),
            },
        };
        let Some(dst_at) = self.region(l, target.filter(|_| !in_src), true, target) else {
            return Ok(None);
        };
        let mut one = |at: (usize, u64)| -> Result<Seg> {
            let rt = match target == Some(at.0) {
                true => Route::Iommu,
                false => self.route(at.0, ep),
            };
            let mut v = self.segments(at, l, rt, ep, u32::MAX)?;
            if v.len() != 1 {
                bail!("a long command's region became {} segments", v.len());
            }
            Ok(v.remove(0))
        };
        let src_seg = src_at.map(&mut one).transpose()?;
        let dst_seg = one(dst_at)?;
        // Bytes moved by DMA messages go through QEMU 64 KiB at a time: a quarter of the bytes.
        if dst_seg.message || src_seg.is_some_and(|x| x.message) {
            n = (n / 4).max(16);
        }
        let src = src_seg.map_or_else(Vec::new, |x| vec![x; n]);
        let op = if fill { Opcode::Fill } else { Opcode::Copy };
        let mut p = Plan::new(ep, q, mode, op, self.rng.next(), src, vec![dst_seg; n]);
        p.long = true;
        Ok(Some(p))
    }

    /// Encodes `segs` into chained blocks placed at a random free spot of a random arena (not
    /// `avoid`), written by the CPU (shadow included), addressed as `ep` reaches that arena.
    pub fn place_list(&mut self, ep: usize, segs: &[Seg], avoid: Option<usize>) -> Result<Option<BuiltList>> {
        let n = segs.len().max(1);
        let min_per = n.div_ceil(self.limits.max_chain + 1) + 1;
        let per = [2, 3, 7, 16, 64, 256, 4096][self.rng.weighted(&[5, 5, 10, 20, 25, 25, 10])]
            .clamp(min_per.max(2), self.limits.max_entries + 1);
        let (bytes, _) = mapping::list_footprint(n, per);
        let Some((id, off)) = self.region(bytes + 16, None, false, avoid) else {
            return Ok(None);
        };
        let off = (off + 15) & !15;
        let (space, base) = match self.a.list[id].place(off) {
            Place::Host { iova, offset, .. } => (AddrSpace::Iova, iova + offset),
            Place::Bar { ep: owner, offset } if self.limits.bus_ok[owner][ep] => {
                (AddrSpace::Bus, self.limits.bars[owner].2 + offset)
            }
            Place::Bar { ep: owner, offset } => {
                let (iova, contig) = self.s.bar_iova(owner, offset)?;
                if contig < bytes {
                    bail!("a list of {bytes:#x} bytes would cross a BAR IOVA window");
                }
                (AddrSpace::Iova, iova)
            }
        };
        let ranges: Vec<DmaRange> = segs.iter().map(|x| x.range).collect();
        let l = mapping::layout(&ranges, per, space, base);
        for (b, (_, addr, _)) in &l.blocks {
            self.a.list[id].write(self.s, off + (addr - base), b)?;
        }
        Ok(Some(BuiltList {
            head: l.head,
            segments: segs
                .iter()
                .map(|x| Segment {
                    range: x.range,
                    via: Via::Raw,
                })
                .collect(),
            blocks: l.blocks.into_iter().map(|(_, p)| p).collect(),
            storage: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_total_with_non_empty_parts() {
        let mut rng = Rng::new(9);
        for total in [1u64, 2, 17, 4096, 100_000] {
            for parts in [1usize, 2, 5, 300] {
                let v = split(total, parts, &mut rng);
                assert_eq!(v.iter().sum::<u64>(), total);
                assert!(v.iter().all(|&x| x > 0) && v.len() <= parts.max(1));
            }
        }
    }

    #[test]
    fn split_of_nothing_or_into_no_parts_stays_sane() {
        let mut rng = Rng::new(1);
        assert!(split(0, 5, &mut rng).is_empty());
        assert_eq!(split(7, 0, &mut rng), vec![7]);
        let v = split(3, usize::MAX, &mut rng);
        assert!(v.iter().sum::<u64>() == 3 && v.len() <= 3 && !v.contains(&0));
    }
}
