//! COPY's overlap rule (ABI §4): a destination segment may not share a byte with a source
//! segment of the same address space. [`first_overlap`] finds the first destination segment
//! (by index) that does, and its first shared byte, in O((n + m) log n) for long lists: the
//! source ranges are sorted and merged into disjoint intervals per address space, then each
//! destination segment is looked up by binary search. Short lists (the common case) are
//! compared pair by pair, without touching the scratch vector.

use dma_range::{AddrSpace, DmaRange};

/// A source interval: address space, first byte, one past the last byte.
pub type Interval = (AddrSpace, u64, u64);

/// Above this many segment pairs the sorted lookup replaces the pair-by-pair comparison.
const PAIRWISE: usize = 64;

fn span(r: &DmaRange) -> (u64, u64) {
    // Walked lists have no `addr + len` overflow (LIST_ADDR_OVERFLOW); saturate anyway.
    (r.addr, r.addr.saturating_add(u64::from(r.len)))
}

/// The index of the first destination segment sharing a byte with a source segment in the same
/// address space, and the first such byte of it; `None` if they are disjoint. `scratch` is
/// reused between calls (no allocation per command once it has grown).
pub fn first_overlap(src: &[DmaRange], dst: &[DmaRange], scratch: &mut Vec<Interval>) -> Option<(usize, u64)> {
    if src.len().saturating_mul(dst.len()) <= PAIRWISE {
        return dst.iter().enumerate().find_map(|(i, d)| {
            let (ds, de) = span(d);
            src.iter()
                .filter(|s| s.space() == d.space())
                .map(span)
                .filter(|&(ss, se)| ss < de && ds < se)
                .map(|(ss, _)| ss.max(ds))
                .min()
                .map(|at| (i, at))
        });
    }
    scratch.clear();
    scratch.extend(src.iter().map(|s| {
        let (a, b) = span(s);
        (s.space(), a, b)
    }));
    scratch.sort_unstable_by_key(|&(sp, a, _)| (sp as u8, a));
    // Merge overlapping or touching intervals of the same space: afterwards the intervals of
    // one space are disjoint and sorted by start and by end alike.
    let mut w = 0usize;
    for r in 0..scratch.len() {
        let cur = scratch[r];
        if w > 0 && scratch[w - 1].0 == cur.0 && cur.1 <= scratch[w - 1].2 {
            scratch[w - 1].2 = scratch[w - 1].2.max(cur.2);
        } else {
            scratch[w] = cur;
            w += 1;
        }
    }
    scratch.truncate(w);
    dst.iter().enumerate().find_map(|(i, d)| {
        let (ds, de) = span(d);
        let key = (d.space() as u8, ds);
        let k = scratch.partition_point(|&(sp, _, end)| (sp as u8, end) <= key);
        let &(sp, ss, _) = scratch.get(k)?;
        (sp == d.space() && ss < de).then(|| (i, ss.max(ds)))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn iova(a: u64, l: u32) -> DmaRange {
        DmaRange::segment(AddrSpace::Iova, a, l)
    }

    fn bus(a: u64, l: u32) -> DmaRange {
        DmaRange::segment(AddrSpace::Bus, a, l)
    }

    #[test]
    fn touching_ranges_and_other_spaces_do_not_overlap() {
        let mut v = Vec::new();
        assert_eq!(
            first_overlap(&[iova(0x1000, 0x1000)], &[iova(0x2000, 16)], &mut v),
            None
        );
        assert_eq!(first_overlap(&[iova(0x1000, 0x1000)], &[iova(0xFF0, 16)], &mut v), None);
        assert_eq!(first_overlap(&[iova(0x1000, 0x1000)], &[bus(0x1000, 16)], &mut v), None);
    }

    #[test]
    fn upward_and_downward_overlaps_report_the_first_shared_byte() {
        let mut v = Vec::new();
        // dst above src: the first shared byte is the destination's start.
        assert_eq!(
            first_overlap(&[iova(0x1000, 0x2000)], &[iova(0x1010, 0x2000)], &mut v),
            Some((0, 0x1010))
        );
        // dst below src: the first shared byte is the source's start.
        assert_eq!(
            first_overlap(&[iova(0x1010, 0x2000)], &[iova(0x1000, 0x2000)], &mut v),
            Some((0, 0x1010))
        );
        // The first destination segment by index wins, not the lowest address.
        let dst = [iova(0x9000, 16), bus(0x5008, 16), iova(0x1000, 16)];
        let src = [iova(0x1008, 8), bus(0x5000, 16)];
        assert_eq!(first_overlap(&src, &dst, &mut v), Some((1, 0x5008)));
    }

    fn seg() -> impl Strategy<Value = DmaRange> {
        (any::<bool>(), 0u64..64, 1u32..24).prop_map(|(b, a, l)| if b { bus(a * 8, l) } else { iova(a * 8, l) })
    }

    proptest! {
        /// The sorted lookup of long lists agrees with comparing every byte.
        #[test]
        fn sorted_lookup_matches_a_byte_by_byte_search(
            src in prop::collection::vec(seg(), 1..40),
            dst in prop::collection::vec(seg(), 1..40),
        ) {
            let naive = dst.iter().enumerate().find_map(|(i, d)| {
                (d.addr..d.addr + u64::from(d.len)).find(|&b| {
                    src.iter().any(|s| s.space() == d.space() && s.addr <= b && b < s.addr + u64::from(s.len))
                }).map(|b| (i, b))
            });
            let mut v = Vec::new();
            prop_assert_eq!(first_overlap(&src, &dst, &mut v), naive);
        }
    }
}
