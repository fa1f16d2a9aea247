//! The x86-64 kernels: AVX2 copies and CRC32C by folding (AVX2 + VPCLMULQDQ) beside three
//! SSE4.2 `crc32` instruction streams, detected at run time. Reached only through `crate::mem`
//! and `crate::crc32c`, which fall back to `crate::portable` without these instructions.
//!
//! Notation: the CRC polynomial is P = 0x1EDC6F41 (+ x^32); "raw" CRC of a message M is
//! M(x) * x^32 mod P, which is what the SSE4.2 `crc32` instruction accumulates from a zero
//! state, and CRC32C(M) = !raw(M with !init XORed into its first 4 bytes). Raw CRC depends only
//! on M mod P, so any 16-byte block may be replaced by another 16-byte value congruent to it
//! mod P, and a block `D` bytes ahead may absorb it after multiplying by x^(8D). Eight 16-byte
//! lanes (four 256-bit registers) each absorb the lane 128 bytes ahead; at the end the 128
//! bytes of lanes stand for everything read so far, and the `crc32` instruction reduces them
//! (16 steps). Lane layout: a 16-byte little-endian block is reflected, bit i of the 128-bit
//! value is the coefficient of x^(127-i); its low qword `lo` and high qword `hi` give block =
//! lo * x^64 + hi (each a 64-bit reflected polynomial). A carry-less product of two reflected
//! 64-bit values is the reflected product shifted by one bit, hence the constants
//! x^(64+8D-1) and x^(8D-1) below (see `fold_constant`).

use std::arch::x86_64::*;

use crate::opaque::forget_contents;
use crate::poly::xpow_mod;

/// Bytes per folding step: four 256-bit registers, eight 16-byte lanes.
pub(crate) const FOLD_BLOCK: usize = 128;
/// Below this a copy goes through a small local buffer instead of the folding loop.
pub(crate) const SMALL: usize = 2 * FOLD_BLOCK;

/// The qword pair that moves a lane `dist` bytes ahead: (for `lo`, for `hi`), each x^k mod P
/// placed so that bit j of the qword is the coefficient of x^(63-j).
const fn fold_constant(dist: u32) -> (u64, u64) {
    (
        xpow_mod(64 + 8 * dist - 1).reverse_bits(),
        xpow_mod(8 * dist - 1).reverse_bits(),
    )
}

/// True when the folding kernels can run (checked once per call; std caches the CPUID).
#[inline]
pub(crate) fn simd() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("vpclmulqdq")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("sse4.2")
}

/// CRC32C of a slice appended to `crc`, if the CPU has SSE4.2 (`None` otherwise): by folding
/// (AVX2 + VPCLMULQDQ) from `SMALL` bytes on, the `crc32` instruction 8 bytes at a time below
/// (short inputs, such as trace frame bodies, gain nothing from the folding setup).
#[inline]
pub(crate) fn crc32c_append(crc: u32, bytes: &[u8]) -> Option<u32> {
    if !std::arch::is_x86_feature_detected!("sse4.2") {
        return None;
    }
    if bytes.len() >= SMALL && simd() {
        // SAFETY: the features are present; a slice is valid for reads of its length; without
        // stores `dst` is never dereferenced.
        return Some(unsafe { fold_crc::<false>(bytes.as_ptr(), std::ptr::null_mut(), bytes.len(), crc) });
    }
    // SAFETY: SSE4.2 is present (checked above).
    Some(!unsafe { raw_crc(!crc, bytes) })
}

/// CRC32C of the little-endian bytes of `words`, checksummed from registers (never re-read from
/// memory right after being stored), if the CPU has SSE4.2.
#[inline]
pub(crate) fn crc32c_words(words: &[u64]) -> Option<u32> {
    if !std::arch::is_x86_feature_detected!("sse4.2") {
        return None;
    }
    // SAFETY: SSE4.2 is present (checked above).
    Some(unsafe { words_sse42(words) })
}

#[target_feature(enable = "sse4.2")]
fn words_sse42(words: &[u64]) -> u32 {
    !(words.iter().fold(u64::from(u32::MAX), |crc, &w| _mm_crc32_u64(crc, w)) as u32)
}

/// The register value of a 32-byte load, as if produced by an instruction the compiler cannot
/// see through: every later use (the store and the CRC) takes this one register, and none is
/// turned into a second read of guest memory (see [`forget_contents`]).
#[target_feature(enable = "avx")]
#[inline]
fn opaque(mut v: __m256i) -> __m256i {
    // SAFETY: an empty template on one register: no memory, stack or flags are touched.
    unsafe { core::arch::asm!("/* {0} */", inout(ymm_reg) v, options(pure, nomem, nostack, preserves_flags)) };
    v
}

/// Copies of at least this many bytes run as three interleaved streams (`stream_len`), where
/// `crate::mem::copy` takes the AVX2 path at all.
pub(crate) const STREAMS_MIN: usize = 16 << 10;

/// Length of each of the three streams a copy of `n >= STREAMS_MIN` bytes is split into (the
/// rest, under 3 KiB, follows as one stream), 0 for shorter copies: about a third, a multiple
/// of 128, and chosen so that neither `q` nor `2q` lies within 512 bytes of a multiple of
/// 4 KiB. A load a multiple of 4 KiB away from a pending store (the same address bits 0..11)
/// is first taken for a dependent one ("4K aliasing"), which slows streams spaced by a
/// multiple of 4 KiB. This keeps the streams of one side apart; how the source sits against
/// the destination is the caller's (as for any copy loop).
///
/// Why three streams: reading and writing three places at once keeps more cache-line misses
/// in flight when the data comes from DRAM; two, four and six streams, one stream and glibc's
/// `memmove` were slower in a scratch loop (figures in kernels/README.md). The device bench's
/// COPY 64 MiB row is the reproducible trace of it.
const fn stream_len(n: usize) -> usize {
    if n < STREAMS_MIN {
        return 0;
    }
    let q = n / 3 / FOLD_BLOCK * FOLD_BLOCK;
    let r = q % 4096;
    // n >= STREAMS_MIN, so q >= 5376: every subtraction below stays positive.
    if r < 512 {
        q - r - 512
    } else if r > 1792 && r < 2304 {
        q - (r - 1792)
    } else if r > 3584 {
        q - (r - 3584)
    } else {
        q
    }
}

/// # Safety
/// AVX2 present; spans valid and not overlapping.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn copy_avx2(src: *const u8, dst: *mut u8, n: usize) {
    let q = stream_len(n);
    // SAFETY: `stream_len` keeps `3 * q <= n` (0 for short copies): the three streams lie
    // inside both spans.
    unsafe { copy_blocks::<3>(src, dst, q, q) };
    let mut done = 3 * q;
    let blocks = (n - done) / FOLD_BLOCK * FOLD_BLOCK;
    // SAFETY: `done + blocks <= n`.
    unsafe { copy_blocks::<1>(src.add(done), dst.add(done), blocks, 0) };
    done += blocks;
    // SAFETY: the remaining `n - done` bytes are inside both spans.
    unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n - done) };
}

/// Copies `K` spans of `len` bytes (a multiple of 128) lying `stride` bytes apart, 128 bytes
/// of each in turn: four 32-byte loads and stores per span and step.
///
/// # Safety
/// AVX2 present; `[src, src + (K - 1) * stride + len)` valid for reads, the same span at `dst`
/// valid for writes, not overlapping.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn copy_blocks<const K: usize>(src: *const u8, dst: *mut u8, len: usize, stride: usize) {
    let mut o = 0;
    while o + FOLD_BLOCK <= len {
        for k in 0..K {
            // SAFETY: `k * stride + o + 128 <= (K - 1) * stride + len`: inside both spans.
            unsafe {
                let s = src.add(k * stride + o).cast::<__m256i>();
                let d = dst.add(k * stride + o).cast::<__m256i>();
                let (a, b, c, e) = (
                    _mm256_loadu_si256(s),
                    _mm256_loadu_si256(s.add(1)),
                    _mm256_loadu_si256(s.add(2)),
                    _mm256_loadu_si256(s.add(3)),
                );
                _mm256_storeu_si256(d, a);
                _mm256_storeu_si256(d.add(1), b);
                _mm256_storeu_si256(d.add(2), c);
                _mm256_storeu_si256(d.add(3), e);
            }
        }
        o += FOLD_BLOCK;
    }
}

/// Raw CRC (no inversions) of `bytes` continued from `state`, 8 bytes per instruction.
#[target_feature(enable = "sse4.2")]
pub(crate) fn raw_crc(state: u32, bytes: &[u8]) -> u32 {
    let mut s = u64::from(state);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        s = _mm_crc32_u64(s, u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
    }
    let mut s = s as u32;
    for &b in words.remainder() {
        s = _mm_crc32_u8(s, b);
    }
    s
}

/// Moves `n` bytes (`STORE`) and folds them into a CRC32C appended to `crc`: whole hybrid
/// chunks first (largest that fits), then the folding loop, then the tail.
///
/// # Safety
/// The features of [`simd`] present; `[src, src + n)` valid for reads; with `STORE`,
/// `[dst, dst + n)` valid for writes and not overlapping the source.
#[target_feature(enable = "avx2,vpclmulqdq,pclmulqdq,sse4.2")]
pub(crate) unsafe fn fold_crc<const STORE: bool>(src: *const u8, dst: *mut u8, n: usize, crc: u32) -> u32 {
    let mut state = !crc;
    let mut o = 0;
    // SAFETY: the caller's contract covers [0, n) and `o` starts at 0; `hybrid_run` stays
    // inside [o, n).
    unsafe {
        hybrid_run::<STORE, { HYBRID_ITERS[0] }>(src, dst, n, &mut o, &mut state);
        hybrid_run::<STORE, { HYBRID_ITERS[1] }>(src, dst, n, &mut o, &mut state);
        hybrid_run::<STORE, { HYBRID_ITERS[2] }>(src, dst, n, &mut o, &mut state);
    }
    // SAFETY: `[o, n)` is inside the caller's spans.
    !unsafe { fold_span::<STORE>(src.add(o), dst.wrapping_add(o), n - o, state) }
}

/// As many whole `ITERS` chunks as fit in `[*o, n)`, advancing `*o` and `*state`.
///
/// # Safety
/// As for [`fold_crc`], with `*o <= n`.
#[target_feature(enable = "avx2,vpclmulqdq,pclmulqdq,sse4.2")]
#[inline]
unsafe fn hybrid_run<const STORE: bool, const ITERS: usize>(
    src: *const u8,
    dst: *mut u8,
    n: usize,
    o: &mut usize,
    state: &mut u32,
) {
    while n - *o >= hybrid_len(ITERS) {
        // SAFETY: `*o + hybrid_len <= n`: the chunk is inside the caller's spans.
        *state = unsafe { hybrid_chunk::<STORE, ITERS>(src.add(*o), dst.wrapping_add(*o), *state) };
        *o += hybrid_len(ITERS);
    }
}

/// Loads 128 bytes at `src + o` (and stores them at `dst + o` with `STORE`).
///
/// # Safety
/// `[o, o + 128)` inside the spans of [`fold_crc`].
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn fold_block<const STORE: bool>(src: *const u8, dst: *mut u8, o: usize) -> [__m256i; 4] {
    // SAFETY: the caller's contract covers [o, o + 128) of both spans.
    unsafe {
        let s = src.add(o).cast::<__m256i>();
        let mut v = [
            _mm256_loadu_si256(s),
            _mm256_loadu_si256(s.add(1)),
            _mm256_loadu_si256(s.add(2)),
            _mm256_loadu_si256(s.add(3)),
        ];
        if STORE {
            // Stored and folded from the same registers.
            for x in v.iter_mut() {
                *x = opaque(*x);
            }
            let d = dst.add(o).cast::<__m256i>();
            for (i, x) in v.iter().enumerate() {
                _mm256_storeu_si256(d.add(i), *x);
            }
        }
        v
    }
}

/// Moves the eight accumulated lanes 128 bytes ahead (a multiplication by x^(8 128) mod P,
/// folded) and adds the next block `v` to them.
#[target_feature(enable = "avx2,vpclmulqdq")]
#[inline]
fn fold_step(acc: &mut [__m256i; 4], v: [__m256i; 4]) {
    const K: (u64, u64) = fold_constant(FOLD_BLOCK as u32);
    let k = _mm256_set_epi64x(K.1 as i64, K.0 as i64, K.1 as i64, K.0 as i64);
    for (a, x) in acc.iter_mut().zip(v) {
        let folded = _mm256_xor_si256(
            _mm256_clmulepi64_epi128(*a, k, 0x00),
            _mm256_clmulepi64_epi128(*a, k, 0x11),
        );
        *a = _mm256_xor_si256(folded, x);
    }
}

/// The raw CRC state the 128 bytes of lanes stand for.
#[target_feature(enable = "avx2,sse4.2")]
#[inline]
fn reduce_lanes(acc: &[__m256i; 4]) -> u32 {
    let mut lanes = [0u8; FOLD_BLOCK];
    for (i, a) in acc.iter().enumerate() {
        // SAFETY: `lanes` is a local 128-byte array; register i goes to [32 i, 32 i + 32).
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().add(32 * i).cast::<__m256i>(), *a) };
    }
    raw_crc(0, &lanes)
}

/// Raw CRC `state` continued over `n` bytes by folding (tail through a local buffer).
///
/// # Safety
/// As for [`fold_crc`].
#[target_feature(enable = "avx2,vpclmulqdq,pclmulqdq,sse4.2")]
unsafe fn fold_span<const STORE: bool>(src: *const u8, dst: *mut u8, n: usize, mut state: u32) -> u32 {
    let mut o = 0;
    if n >= SMALL {
        // SAFETY: every block is [o, o + 128) with o + 128 <= n.
        let mut acc = unsafe { fold_block::<STORE>(src, dst, 0) };
        acc[0] = _mm256_xor_si256(acc[0], _mm256_set_epi64x(0, 0, 0, i64::from(state)));
        o = FOLD_BLOCK;
        while o + FOLD_BLOCK <= n {
            // SAFETY: as above.
            fold_step(&mut acc, unsafe { fold_block::<STORE>(src, dst, o) });
            o += FOLD_BLOCK;
        }
        state = reduce_lanes(&acc);
    }
    // The tail (under FOLD_BLOCK bytes after folding, under SMALL for a small span) through a
    // local buffer.
    let mut buf = [0u8; SMALL];
    while o < n {
        let k = (n - o).min(SMALL);
        // SAFETY: `o + k <= n`: inside the spans; `buf` is local and holds k bytes.
        unsafe { std::ptr::copy_nonoverlapping(src.add(o), buf.as_mut_ptr(), k) };
        forget_contents(&mut buf[..k]);
        state = raw_crc(state, &buf[..k]);
        if STORE {
            // SAFETY: as above, for the destination.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), dst.add(o), k) };
        }
        o += k;
    }
    state
}

/// Hybrid chunks: the folding loop (VPCLMULQDQ) and three `crc32` instruction streams run
/// side by side on different parts of a chunk. Each alone is held to one instruction per cycle
/// on its execution unit (one `crc32`, or half a 256-bit carry-less multiply), but they use
/// different units, so together they run faster than either (figures: kernels/README.md, from
/// `cargo bench -p phyr-device -- trace`, its "for scale" rows). A chunk of `ITERS` iterations is
/// `[fold: 128 ITERS][stream 0: 32 ITERS][stream 1][stream 2]`; each iteration folds 128
/// bytes and advances every stream by 32; at the end the streams are appended to the fold's
/// state with one carry-less multiply each ([`shift_state`]). Chunk sizes in iterations,
/// largest first; not powers of two: streams 8 KiB apart put a stream's loads on the same
/// address bits 0..11 as the previous stream's stores, which the CPU then waits for (4K
/// aliasing).
pub(crate) const HYBRID_ITERS: [usize; 3] = [292, 73, 18];
/// Bytes each stream advances per iteration.
const STREAM_STEP: usize = 32;

pub(crate) const fn hybrid_len(iters: usize) -> usize {
    iters * (FOLD_BLOCK + 3 * STREAM_STEP)
}

/// The constant that appends `len` zero bytes to a raw CRC state `s`:
/// `crc32(0, clmul(s, k)) = s * x^(8 len) mod P` for k = x^(8 len - 33) mod P, reflected (the
/// carry-less product of two reflected values is shifted by one bit, and `crc32` of a qword
/// multiplies by x^32). `len` >= 5.
const fn shift_constant(len: usize) -> u64 {
    assert!(len >= 5, "x^(8 len - 33) needs len >= 5");
    (xpow_mod(8 * len as u32 - 33) as u32).reverse_bits() as u64
}

/// `state * x^(8 len) mod P` for the `len` of constant `k` (see [`shift_constant`]).
#[target_feature(enable = "pclmulqdq,sse4.2")]
#[inline]
fn shift_state(state: u32, k: u64) -> u32 {
    let p = _mm_clmulepi64_si128(_mm_cvtsi64_si128(i64::from(state)), _mm_cvtsi64_si128(k as i64), 0x00);
    _mm_crc32_u64(0, _mm_cvtsi128_si64(p) as u64) as u32
}

/// One hybrid chunk (see [`HYBRID_ITERS`]): raw CRC `state` continued over its bytes.
///
/// # Safety
/// `[src, src + hybrid_len(ITERS))` valid for reads; with `STORE`, the same span of `dst` valid
/// for writes and not overlapping the source.
#[target_feature(enable = "avx2,vpclmulqdq,pclmulqdq,sse4.2")]
unsafe fn hybrid_chunk<const STORE: bool, const ITERS: usize>(src: *const u8, dst: *mut u8, state: u32) -> u32 {
    const { assert!(ITERS >= 1, "a chunk has at least one iteration") };
    let fold_len = FOLD_BLOCK * ITERS;
    let stream_len = STREAM_STEP * ITERS;
    let k_stream = const { shift_constant(STREAM_STEP * ITERS) };
    let mut c = [0u64; 3];
    // Each stream step is loaded once into a register, stored from it and checksummed from it
    // (lane by lane): the CRC is of exactly the bytes written, whatever the guest does to the
    // source meanwhile. (Scalar loads and stores were slower: kernels/README.md.)
    let mut stream_step = |i: usize| {
        for (j, cj) in c.iter_mut().enumerate() {
            let o = fold_len + j * stream_len + i * STREAM_STEP;
            // SAFETY: `o + 32 <= fold_len + 3 stream_len = hybrid_len(ITERS)`: inside the spans.
            let v = unsafe { _mm256_loadu_si256(src.add(o).cast::<__m256i>()) };
            // Without this the compiler checksums straight from the source (a second read).
            let v = if STORE { opaque(v) } else { v };
            if STORE {
                // SAFETY: as above, for the destination.
                unsafe { _mm256_storeu_si256(dst.add(o).cast::<__m256i>(), v) };
            }
            *cj = _mm_crc32_u64(*cj, _mm256_extract_epi64::<0>(v) as u64);
            *cj = _mm_crc32_u64(*cj, _mm256_extract_epi64::<1>(v) as u64);
            *cj = _mm_crc32_u64(*cj, _mm256_extract_epi64::<2>(v) as u64);
            *cj = _mm_crc32_u64(*cj, _mm256_extract_epi64::<3>(v) as u64);
        }
    };
    // SAFETY: fold blocks are [128 i, 128 i + 128) with i < ITERS: inside the fold part.
    let mut acc = unsafe { fold_block::<STORE>(src, dst, 0) };
    acc[0] = _mm256_xor_si256(acc[0], _mm256_set_epi64x(0, 0, 0, i64::from(state)));
    stream_step(0);
    for i in 1..ITERS {
        // SAFETY: as above.
        fold_step(&mut acc, unsafe { fold_block::<STORE>(src, dst, FOLD_BLOCK * i) });
        stream_step(i);
    }
    // The state after the fold part, then each stream appended in turn.
    let mut s = reduce_lanes(&acc);
    for cj in c {
        s = shift_state(s, k_stream) ^ cj as u32;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poly::POLY;

    #[test]
    fn three_copy_streams_stay_inside_the_copy_and_apart_from_4k_multiples() {
        let dist = |x: usize| (x % 4096).min(4096 - x % 4096);
        assert_eq!(stream_len(STREAMS_MIN - 1), 0);
        assert_eq!(stream_len(0), 0);
        for n in STREAMS_MIN..=(3 << 20) {
            let q = stream_len(n);
            assert!(
                q.is_multiple_of(FOLD_BLOCK) && 3 * q <= n && n - 3 * q < 3072,
                "n {n} q {q}"
            );
            assert!(dist(q) >= 512 && dist(2 * q) >= 512, "n {n} q {q}");
        }
    }

    #[test]
    fn hybrid_chunks_shrink_and_the_smallest_is_the_documented_4032_bytes() {
        let lens = HYBRID_ITERS.map(hybrid_len);
        assert!(lens[0] > lens[1] && lens[1] > lens[2]);
        assert_eq!(lens[2], 4032, "update kernels/README.md");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn shift_constant_appends_zero_bytes() {
        if !simd() {
            return;
        }
        for len in [5usize, 6, 32, 512, 8192] {
            for state in [1u32, 0x8000_0000, 0xDEAD_BEEF] {
                // SAFETY: `simd()` holds: PCLMULQDQ and SSE4.2 are present.
                let got = unsafe { shift_state(state, shift_constant(len)) };
                // SAFETY: as above (`raw_crc` of zero bytes is the reference).
                let want = unsafe { raw_crc(state, &vec![0u8; len]) };
                assert_eq!(got, want, "len {len} state {state:#x}");
            }
        }
    }

    #[test]
    fn fold_constants_match_the_polynomial() {
        // x^32 mod P is P's low part; x^31 is itself.
        assert_eq!(xpow_mod(32), POLY);
        assert_eq!(xpow_mod(31), 1 << 31);
        assert_eq!(fold_constant(16).1, xpow_mod(127).reverse_bits());
    }
}
