//! Reading and writing the bytes behind a `Loc` from the CPU side (host buffers directly,
//! BARs through their mmap), and deterministic test patterns.

use crate::bench::Bench;
use crate::error::Result;
use crate::mapping::Loc;

pub fn read(s: &Bench, loc: Loc, len: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    match loc {
        Loc::Host { mem, offset } => mem.buf.read(offset, &mut v)?,
        Loc::Bar { ep, offset } => s.ep(ep)?.bar2.read(offset, &mut v)?,
    }
    Ok(v)
}

pub fn write(s: &Bench, loc: Loc, data: &[u8]) -> Result<()> {
    match loc {
        Loc::Host { mem, offset } => mem.buf.write(offset, data)?,
        Loc::Bar { ep, offset } => s.ep(ep)?.bar2.write(offset, data)?,
    }
    Ok(())
}

/// `len` pseudo-random bytes from `seed` (xorshift64*), so every case has distinct data.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// What FILL writes: the 8-byte little-endian pattern repeated from offset 0 of the list.
pub fn fill_bytes(pattern: u64, len: usize) -> Vec<u8> {
    pattern.to_le_bytes().iter().copied().cycle().take(len).collect()
}

/// First offset where `a` and `b` differ, if any (lengths compared too).
pub fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then_some(a.len().min(b.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_deterministic_and_seed_dependent() {
        assert_eq!(pattern(1, 100), pattern(1, 100));
        assert_ne!(pattern(1, 100), pattern(2, 100));
        assert_eq!(pattern(3, 13).len(), 13);
    }

    #[test]
    fn fill_repeats_the_pattern_from_offset_zero() {
        assert_eq!(fill_bytes(0x0807060504030201, 10), [1, 2, 3, 4, 5, 6, 7, 8, 1, 2]);
    }

    #[test]
    fn first_diff_reports_offset_or_length_difference() {
        assert_eq!(first_diff(b"abc", b"abc"), None);
        assert_eq!(first_diff(b"abc", b"abd"), Some(2));
        assert_eq!(first_diff(b"ab", b"abc"), Some(2));
    }
}
