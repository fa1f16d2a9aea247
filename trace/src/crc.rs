//! CRC32C of the bytes a DMA transaction moved (the `crc32c` field of [`crate::DmaRecord`]).
//!
//! Hardware-accelerated where the CPU has it (SSE4.2 / ARMv8 CRC). A transfer moved in several
//! chunks folds them with [`data_crc_append`], starting from 0.

/// CRC32C (Castagnoli) of `bytes`.
#[inline]
pub fn data_crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Continues `crc` (the CRC32C of the bytes before) over `bytes`.
#[inline]
pub fn data_crc_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

/// CRC32C of a frame body (at most a few hundred bytes, usually 64): the SSE4.2 instruction
/// in a plain loop. On such short inputs the `crc32c` crate's general path (alignment split,
/// three-way interleave setup, table shifts) costs as much again (seen in a profile of the
/// device bench: its `crc_u64_parallel3` called on 64-byte bodies).
#[inline]
pub(crate) fn frame_crc(body: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE4.2 (checked just above).
            return unsafe { frame_crc_sse42(body) };
        }
    }
    crc32c::crc32c(body)
}

/// [`frame_crc`] of a body given as little-endian words, checksummed from registers (never
/// re-read from memory right after being stored); used by `format::dma_frame` with CRC on.
#[inline]
pub(crate) fn frame_crc_words(words: &[u64]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE4.2 (checked just above).
            return unsafe { frame_crc_words_sse42(words) };
        }
    }
    words
        .iter()
        .fold(0, |crc, w| crc32c::crc32c_append(crc, &w.to_le_bytes()))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn frame_crc_words_sse42(words: &[u64]) -> u32 {
    use std::arch::x86_64::_mm_crc32_u64;
    !(words.iter().fold(u64::from(u32::MAX), |crc, &w| _mm_crc32_u64(crc, w)) as u32)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn frame_crc_sse42(body: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut crc = u64::from(u32::MAX);
    let mut words = body.chunks_exact(8);
    for w in &mut words {
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(w.try_into().unwrap_or_default()));
    }
    let mut crc = crc as u32;
    for &b in words.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_crc_equals_the_crc32c_crate() {
        let data: Vec<u8> = (0..600u32).map(|i| (i * 31 + 7) as u8).collect();
        for start in 0..9 {
            for len in 0..300 {
                let b = &data[start..start + len];
                assert_eq!(frame_crc(b), crc32c::crc32c(b), "start {start} len {len}");
            }
        }
        assert_eq!(frame_crc(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn frame_crc_of_words_equals_the_crc_of_their_bytes() {
        let words: [u64; 8] = std::array::from_fn(|i| 0x0123_4567_89ab_cdef_u64.rotate_left(i as u32 * 7) ^ i as u64);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(frame_crc_words(&words), crc32c::crc32c(&bytes));
    }

    #[test]
    fn chunked_crc_equals_whole_crc() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let (a, b) = data.split_at(3333);
        assert_eq!(data_crc_append(data_crc(a), b), data_crc(&data));
        assert_eq!(data_crc(b"123456789"), 0xe306_9283); // the CRC-32C check value
    }
}
