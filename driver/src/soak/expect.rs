//! What a planned command must produce, computed from the arenas' shadows before it runs:
//! the bytes it writes at each transfer offset, the CRC32C of its data, where COMPARE finds
//! its first difference. Long commands repeat one region thousands of times, so CRCs of
//! repeats are combined (`crc32c_combine`) rather than recomputed.

use std::collections::{BTreeMap, HashMap};

use dma_range::Opcode;
use phyr_kernels::crc32c::{crc32c, crc32c_combine};

use super::arena::Arenas;
use super::plan::{starts, Plan, Seg};

/// The bytes of a list's stream at transfer offsets `t..t + len`, from the shadows (every
/// segment there has arena bytes behind it).
pub fn stream_bytes(a: &Arenas, segs: &[Seg], st: &[u64], t: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    let mut i = st.partition_point(|&s| s <= t).saturating_sub(1);
    let mut at = t;
    while at < t + len && i < segs.len() {
        let seg = &segs[i];
        let inner = at - st[i];
        let take = (seg.len() - inner).min(t + len - at);
        match seg.at {
            Some((id, off)) => {
                let sh = &a.list[id].shadow;
                out.extend_from_slice(&sh[(off + inner) as usize..(off + inner + take) as usize]);
            }
            // Never asked for: bytes past a bad segment are never moved.
            None => out.extend(std::iter::repeat_n(0, take as usize)),
        }
        at += take;
        i += 1;
    }
    out
}

/// What the command writes at destination transfer offsets `t..t + len`: the source's bytes
/// (COPY) or the pattern (FILL).
pub fn new_bytes(p: &Plan, a: &Arenas, src_starts: &[u64], t: u64, len: u64) -> Vec<u8> {
    match p.op {
        Opcode::Fill => {
            let pat = p.pattern.to_le_bytes();
            (t..t + len).map(|k| pat[(k % 8) as usize]).collect()
        }
        _ => stream_bytes(a, &p.src, src_starts, t, len),
    }
}

/// `block` (CRC32C `crc`, `len` bytes) repeated `n` times.
pub fn crc_repeat(crc: u32, len: u64, n: u64) -> u32 {
    let (mut acc, mut base, mut base_len, mut n) = (0u32, crc, len, n);
    while n > 0 {
        if n & 1 != 0 {
            acc = crc32c_combine(acc, base, base_len);
        }
        base = crc32c_combine(base, base, base_len);
        base_len *= 2;
        n >>= 1;
    }
    acc
}

/// CRC32C of a list's stream from the shadows; `None` if a segment has no bytes behind it.
/// Repeated segments are checksummed once.
pub fn stream_crc(a: &Arenas, segs: &[Seg]) -> Option<u32> {
    let mut seen: HashMap<(usize, u64, u64), u32> = HashMap::new();
    let mut acc = 0u32;
    for s in segs {
        let (id, off) = s.at?;
        let len = s.len();
        let c = *seen
            .entry((id, off, len))
            .or_insert_with(|| crc32c(&a.list[id].shadow[off as usize..(off + len) as usize]));
        acc = crc32c_combine(acc, c, len);
    }
    Some(acc)
}

/// CRC32C of `total` bytes of FILL's pattern.
pub fn fill_crc(pattern: u64, total: u64) -> u32 {
    const BLOCK: u64 = 64 << 10;
    let pat = pattern.to_le_bytes();
    let block: Vec<u8> = (0..BLOCK.min(total)).map(|k| pat[(k % 8) as usize]).collect();
    let whole = total / BLOCK;
    let tail = total % BLOCK;
    let head = if whole > 0 {
        crc_repeat(crc32c(&block), BLOCK, whole)
    } else {
        0
    };
    crc32c_combine(head, crc32c(&block[..tail as usize]), tail)
}

/// CRC32C of the data a successful command moves (what its report line states), when known.
pub fn expected_crc(p: &Plan, a: &Arenas) -> Option<u32> {
    if p.det.is_some() {
        return None;
    }
    match p.op {
        Opcode::Fill => Some(fill_crc(p.pattern, p.total())),
        Opcode::Nop => None,
        _ => stream_crc(a, &p.src),
    }
}

/// COMPARE: the first transfer offset where source and destination differ (the total if
/// none), from the shadows.
pub fn first_difference(p: &Plan, a: &Arenas) -> u64 {
    let total = p.total();
    let (ss, ds) = (starts(&p.src), starts(&p.dst));
    const STEP: u64 = 64 << 10;
    let mut t = 0;
    while t < total {
        let n = STEP.min(total - t);
        let x = stream_bytes(a, &p.src, &ss, t, n);
        let y = stream_bytes(a, &p.dst, &ds, t, n);
        if let Some(i) = x.iter().zip(&y).position(|(u, v)| u != v) {
            return t + i as u64;
        }
        t += n;
    }
    total
}

/// Spans of one arena already accounted for (painted, or visited): sorted, disjoint.
#[derive(Default)]
pub struct Spans(BTreeMap<u64, u64>);

impl Spans {
    /// The parts of `x..y` not yet covered, which become covered.
    pub fn claim(&mut self, x: u64, y: u64) -> Vec<(u64, u64)> {
        let mut free = Vec::new();
        let mut at = x;
        // The span starting at or before x may reach into it.
        let first = self.0.range(..=x).next_back().map(|(&s, &e)| (s, e));
        let later: Vec<(u64, u64)> = self.0.range(x..y).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in first.into_iter().chain(later) {
            if e <= at {
                continue;
            }
            if s > at {
                free.push((at, s.min(y)));
            }
            at = at.max(e);
            if at >= y {
                break;
            }
        }
        if at < y {
            free.push((at, y));
        }
        // Merge x..y into the set.
        let mut lo = x;
        let mut hi = y;
        let touching: Vec<u64> = self
            .0
            .range(..=y)
            .filter(|(&s, &e)| e >= x && s <= y)
            .map(|(&s, _)| s)
            .collect();
        for s in touching {
            if let Some(e) = self.0.remove(&s) {
                lo = lo.min(s);
                hi = hi.max(e);
            }
        }
        self.0.insert(lo, hi);
        free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_crc_equals_the_crc_of_the_repeats() {
        let block: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in [0u64, 1, 2, 3, 7, 64] {
            let whole: Vec<u8> = block.iter().copied().cycle().take(block.len() * n as usize).collect();
            assert_eq!(
                crc_repeat(crc32c(&block), block.len() as u64, n),
                crc32c(&whole),
                "n={n}"
            );
        }
    }

    #[test]
    fn fill_crc_equals_the_crc_of_the_pattern_bytes() {
        let pat = 0x0807_0605_0403_0201u64;
        for total in [0u64, 1, 9, 65536, 65537, 200_003] {
            let bytes: Vec<u8> = (0..total).map(|k| pat.to_le_bytes()[(k % 8) as usize]).collect();
            assert_eq!(fill_crc(pat, total), crc32c(&bytes), "total={total}");
        }
    }

    #[test]
    fn spans_hand_out_each_byte_once() {
        let mut s = Spans::default();
        assert_eq!(s.claim(10, 20), vec![(10, 20)]);
        assert_eq!(s.claim(15, 30), vec![(20, 30)]);
        assert_eq!(s.claim(0, 40), vec![(0, 10), (30, 40)]);
        assert_eq!(s.claim(5, 35), vec![]);
        assert_eq!(s.claim(50, 60), vec![(50, 60)]);
        assert_eq!(s.claim(45, 65), vec![(45, 50), (60, 65)]);
        assert_eq!(s.0.len(), 2);
    }
}
