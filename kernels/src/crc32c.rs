//! CRC32C over slices: the one the driver, the trace format and the harness use (the device's
//! raw-memory kernels are [`crate::mem`]). Accelerated on x86-64 with SSE4.2 (and by folding
//! with AVX2 + VPCLMULQDQ for longer inputs), [`crate::portable`] elsewhere; the results are
//! the same bit for bit.

use crate::poly::{mul_mod, SHIFT};

/// CRC32C of `bytes`.
#[inline]
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_append(0, bytes)
}

/// Continues `crc` (the CRC32C of the bytes before; 0 for none) over `bytes`: a transfer
/// moved in several pieces folds them in turn, starting from 0.
#[inline]
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(c) = crate::x86::crc32c_append(crc, bytes) {
        return c;
    }
    crate::portable::crc32c_append(crc, bytes)
}

/// CRC32C of the little-endian bytes of `words` (a trace frame composed in registers: the
/// accelerated path checksums the registers, never re-reading them from memory).
#[inline]
pub fn crc32c_words(words: &[u64]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(c) = crate::x86::crc32c_words(words) {
        return c;
    }
    words
        .iter()
        .fold(0, |crc, w| crate::portable::crc32c_append(crc, &w.to_le_bytes()))
}

/// The CRC32C of `A` followed by `B`, from `crc_a` = CRC32C(A), `crc_b` = CRC32C(B) and
/// `len_b` = |B|: CRC(A B) = CRC(A) * x^(8 |B|) + CRC(B) mod P, one multiplication per set bit
/// of `len_b` (no bit-matrix squaring).
pub fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    // A CRC value is a reflected polynomial: reverse it into normal bit order and back.
    let mut v = crc_a.reverse_bits();
    for (k, m) in SHIFT.iter().enumerate() {
        if (len_b >> k) & 1 != 0 {
            v = mul_mod(v, *m);
        }
    }
    v.reverse_bits() ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable;

    fn data(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// Every length through the short path, the folding threshold and hybrid chunk sizes, at
    /// several alignments and seeds: the accelerated path equals the reference.
    #[test]
    fn accelerated_slices_equal_the_portable_reference() {
        let d = data(40_000, 1);
        let mut lens: Vec<usize> = (0..600).collect();
        lens.extend([1000, 4031, 4032, 4033, 5000, 9999, 16_384, 25_000, 39_000]);
        for len in lens {
            for start in [0usize, 1, 3, 31] {
                for init in [0u32, 0xDEAD_BEEF] {
                    let b = &d[start..start + len];
                    let want = portable::crc32c_append(init, b);
                    assert_eq!(crc32c_append(init, b), want, "len {len} start {start} init {init:#x}");
                }
            }
        }
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn crc_of_words_equals_the_crc_of_their_bytes() {
        for n in [0usize, 1, 8, 9] {
            let words: Vec<u64> = (0..n)
                .map(|i| 0x0123_4567_89ab_cdef_u64.rotate_left(i as u32 * 7) ^ i as u64)
                .collect();
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            assert_eq!(crc32c_words(&words), portable::crc32c(&bytes), "{n} words");
        }
    }

    #[test]
    fn combine_matches_the_crc_of_the_concatenation() {
        let d = data(70_000, 5);
        for split in [0usize, 1, 7, 100, 4096, 33_333, 65_536, 69_999, 70_000] {
            let (a, b) = d.split_at(split);
            let got = crc32c_combine(portable::crc32c(a), portable::crc32c(b), b.len() as u64);
            assert_eq!(got, portable::crc32c(&d), "split at {split}");
        }
        // Appending zero bytes: combining with the CRC of zeros equals appending them.
        let zeros = vec![0u8; 5000];
        for len in [1usize, 255, 4096, 5000] {
            let want = portable::crc32c_append(0xDEAD_BEEF, &zeros[..len]);
            let got = crc32c_combine(0xDEAD_BEEF, portable::crc32c(&zeros[..len]), len as u64);
            assert_eq!(got, want, "len {len}");
        }
    }

    /// Lengths with many set bits and beyond 4 GiB (too long to checksum here): combining is
    /// additive in the length, `combine(combine(x, 0, m), 0, n) == combine(x, 0, m + n)`, with
    /// carries into every high bit of the length.
    #[test]
    fn combine_of_long_lengths_adds_up() {
        for (m, n) in [
            (0x1234_5677u64, 1u64),
            (u32::MAX as u64, 0x10001),
            (5 << 32 | 0xFFF, 3 << 31),
        ] {
            let step = crc32c_combine(crc32c_combine(0xDEAD_BEEF, 0, m), 0, n);
            assert_eq!(step, crc32c_combine(0xDEAD_BEEF, 0, m + n), "{m:#x} + {n:#x}");
        }
    }
}
