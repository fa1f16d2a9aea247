//! Byte-moving kernels over raw memory: copy, copy with a CRC32C of the bytes moved (one pass),
//! and CRC32C. `RawPiece` (raw.rs) is their only caller; it vouches for the spans.
//!
//! Why our own loops rather than `ptr::copy` + a CRC crate:
//! - glibc's `memmove` takes its `rep movsb` path for 4 KiB..~256 KiB, and on the AMD Zen 3
//!   machines we run on that path drops from ~50 GB/s to ~3 GB/s whenever the destination is
//!   not 32-byte aligned (measured: a 64 KiB copy to `dst + 16` runs at 2.9 GB/s). A guest is
//!   free to DMA to any byte address, so the engine must not depend on that. Four 32-byte
//!   loads and stores per iteration run at 40..100 GB/s whatever the alignment; short copies
//!   to aligned destinations stay with glibc (see `copy`).
//! - Copies of 16 KiB and more run as three interleaved streams (with AVX2, spans not
//!   overlapping), which keeps more misses in flight: ~1.3x glibc's `memmove` in a scratch
//!   loop when the data comes from DRAM (see `stream_len`).
//! - A data CRC for the trace used to re-read the moved bytes (through a local buffer, since
//!   the memory is guest-shared). The fused kernel computes the CRC from the very registers it
//!   stores, so the checksum is of the bytes that were written, and the data is read once.
//!   The optimizer is kept from reading the source a second time (it did, for the `crc32`
//!   streams and the tail buffer) by `opaque` and `forget_contents`; the test
//!   `copy_crc32c_sums_the_bytes_written_while_the_source_is_being_rewritten` races a writer
//!   against the copy, and `just test` runs it on the release build too.
//!
//! CRC32C by folding (x86-64 with AVX2 + VPCLMULQDQ, detected at run time; portable
//! fallbacks otherwise), run beside three `crc32` instruction streams for spans of 4032 bytes
//! and more (see `HYBRID_ITERS`). Notation: the CRC polynomial is P = 0x1EDC6F41 (+ x^32); "raw" CRC
//! of a message M is M(x) * x^32 mod P, which is what the SSE4.2 `crc32` instruction
//! accumulates from a zero state, and CRC32C(M) = !raw(M with !init XORed into its first 4
//! bytes). Raw CRC depends only on M mod P, so any 16-byte block may be replaced by another
//! 16-byte value congruent to it mod P, and a block `D` bytes ahead may absorb it after
//! multiplying by x^(8D). Eight 16-byte lanes (four 256-bit registers) each absorb the lane 128
//! bytes ahead; at the end the 128 bytes of lanes stand for everything read so far, and the
//! `crc32` instruction reduces them (16 steps). Lane layout: a 16-byte little-endian block is
//! reflected, bit i of the 128-bit value is the coefficient of x^(127-i); its low qword `lo`
//! and high qword `hi` give block = lo * x^64 + hi (each a 64-bit reflected polynomial). A
//! carry-less product of two reflected 64-bit values is the reflected product shifted by one
//! bit, hence the constants x^(64+8D-1) and x^(8D-1) below (see `fold_constant`).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Bytes per folding step: four 256-bit registers, eight 16-byte lanes.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const FOLD_BLOCK: usize = 128;
/// Below this a copy goes through a small local buffer instead of the folding loop.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const SMALL: usize = 2 * FOLD_BLOCK;

/// The CRC32C polynomial without its x^32 term (normal, not reflected, bit order).
const POLY: u64 = 0x1EDC_6F41;

/// x^n mod P, in normal bit order (bit k is the coefficient of x^k).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const fn xpow_mod(n: u32) -> u64 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        r <<= 1;
        if r & (1 << 32) != 0 {
            r ^= (1 << 32) | POLY;
        }
        i += 1;
    }
    r
}

/// The qword pair that moves a lane `dist` bytes ahead: (for `lo`, for `hi`), each x^k mod P
/// placed so that bit j of the qword is the coefficient of x^(63-j).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const fn fold_constant(dist: u32) -> (u64, u64) {
    (
        xpow_mod(64 + 8 * dist - 1).reverse_bits(),
        xpow_mod(8 * dist - 1).reverse_bits(),
    )
}

/// True when the folding kernels can run (checked once per call; std caches the CPUID).
#[cfg(target_arch = "x86_64")]
#[inline]
fn simd() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("vpclmulqdq")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("sse4.2")
}

/// (a * b) mod P for polynomials of degree < 32 in normal bit order.
const fn mul_mod(a: u32, b: u32) -> u32 {
    let mut r: u64 = 0;
    let mut i = 0;
    while i < 32 {
        if (b >> i) & 1 != 0 {
            r ^= (a as u64) << i;
        }
        i += 1;
    }
    let mut d = 62;
    while d >= 32 {
        if (r >> d) & 1 != 0 {
            r ^= ((1 << 32) | POLY) << (d - 32);
        }
        d -= 1;
    }
    r as u32
}

/// `SHIFT[k]` = x^(8 * 2^k) mod P: appending 2^k zero bytes multiplies a CRC by it.
const SHIFT: [u32; 64] = {
    let mut t = [0u32; 64];
    t[0] = 1 << 8;
    let mut k = 1;
    while k < 64 {
        t[k] = mul_mod(t[k - 1], t[k - 1]);
        k += 1;
    }
    t
};

/// The CRC32C of `A` followed by `B`, from `crc_a` = CRC32C(A), `crc_b` = CRC32C(B) and
/// `len_b` = |B| (as `crc32c::crc32c_combine`, whose bit-matrix method costs ~10 µs a call):
/// CRC(A B) = CRC(A) * x^(8 |B|) + CRC(B) mod P, one multiplication per set bit of `len_b`.
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

/// Copies `n` bytes from `src` to `dst`; the spans may overlap (memmove semantics).
///
/// Where the CPU has AVX2 and the spans do not overlap: our loop for copies of `STREAMS_MIN`
/// bytes and more (three interleaved streams, see `stream_len`) and for unaligned destinations
/// (where glibc collapses, see the module docs). Everything else (short copies to 32-byte
/// aligned destinations, overlapping spans, CPUs without AVX2, other architectures) goes to
/// glibc's `memmove`.
///
/// # Safety
/// `[src, src + n)` must be valid for reads and `[dst, dst + n)` for writes.
pub unsafe fn copy(src: *const u8, dst: *mut u8, n: usize) {
    #[cfg(target_arch = "x86_64")]
    if (n >= STREAMS_MIN || !(dst as usize).is_multiple_of(32))
        && !overlap(src, dst, n)
        && std::arch::is_x86_feature_detected!("avx2")
    {
        // SAFETY: AVX2 is present; the caller's contract covers the spans; no overlap.
        unsafe { copy_avx2(src, dst, n) };
        return;
    }
    // SAFETY: the caller's contract; `ptr::copy` handles overlap.
    unsafe { std::ptr::copy(src, dst, n) };
}

/// Copies `n` bytes from `src` to `dst` and returns the CRC32C of the bytes moved, appended to
/// `crc` (as `crc32c::crc32c_append`). Overlapping spans (a copy inside one mapping) go
/// through a heap buffer of `n` bytes, so the checksum is of exactly what was written even if
/// the guest changes the source meanwhile.
///
/// # Safety
/// As for [`copy`].
pub unsafe fn copy_crc32c(src: *const u8, dst: *mut u8, n: usize, crc: u32) -> u32 {
    if overlap(src, dst, n) {
        let mut tmp = vec![0u8; n];
        // SAFETY: the source span is valid for n reads (caller's contract); `tmp` is a
        // distinct local buffer of n bytes.
        unsafe { std::ptr::copy_nonoverlapping(src, tmp.as_mut_ptr(), n) };
        forget_contents(&mut tmp);
        // SAFETY: the destination span is valid for n writes; `tmp` does not overlap it.
        unsafe { std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, n) };
        return crc32c::crc32c_append(crc, &tmp);
    }
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the features are present; the caller's contract covers the spans.
        return unsafe { fold_crc::<true>(src, dst, n, crc) };
    }
    // SAFETY: the caller's contract; no overlap.
    unsafe { via_buffer(src, Some(dst), n, crc) }
}

/// CRC32C of device-local `bytes`, appended to `crc` (the fast kernel of [`crc32c`]).
pub fn crc32c_slice(bytes: &[u8], crc: u32) -> u32 {
    // SAFETY: a slice is valid for reads of its length.
    unsafe { crc32c(bytes.as_ptr(), bytes.len(), crc) }
}

/// CRC32C of the `n` bytes at `src`, appended to `crc`.
///
/// # Safety
/// `[src, src + n)` must be valid for reads.
pub unsafe fn crc32c(src: *const u8, n: usize, crc: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the features are present; the caller's contract covers the source span;
        // without stores `dst` is never dereferenced.
        return unsafe { fold_crc::<false>(src, std::ptr::null_mut(), n, crc) };
    }
    // SAFETY: the caller's contract.
    unsafe { via_buffer(src, None, n, crc) }
}

fn overlap(src: *const u8, dst: *mut u8, n: usize) -> bool {
    let (s, d) = (src as usize, dst as usize);
    s < d.wrapping_add(n) && d < s.wrapping_add(n)
}

/// Makes the compiler forget what `buf` holds, as if code it cannot see had rewritten it: the
/// bytes later stored out of `buf` and checksummed from it are then read from `buf`, never
/// re-read from where they were copied from. Guest memory may change between two reads, and
/// the CRC must be of the bytes written (without this, the optimizer was seen turning
/// "source -> buffer -> destination" into a second copy straight from the source).
#[inline(always)]
pub(crate) fn forget_contents(buf: &mut [u8]) {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    // SAFETY: an empty template: it touches no memory; without `nomem` the compiler has to
    // assume it may have written through the pointer it is given.
    unsafe {
        core::arch::asm!("/* {0} */", in(reg) buf.as_mut_ptr(), options(nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    std::hint::black_box(buf);
}

/// The register value of a 32-byte load, as if produced by an instruction the compiler cannot
/// see through: every later use (the store and the CRC) takes this one register, and none is
/// turned into a second read of guest memory (see [`forget_contents`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
fn opaque(mut v: __m256i) -> __m256i {
    // SAFETY: an empty template on one register: no memory, stack or flags are touched.
    unsafe { core::arch::asm!("/* {0} */", inout(ymm_reg) v, options(pure, nomem, nostack, preserves_flags)) };
    v
}

/// The portable path: bytes go through a local buffer (never a `&[u8]` over guest-shared
/// memory), which is checksummed and, with `dst`, written out.
///
/// # Safety
/// `[src, src + n)` valid for reads; `[dst, dst + n)` valid for writes and not overlapping.
unsafe fn via_buffer(src: *const u8, dst: Option<*mut u8>, n: usize, mut crc: u32) -> u32 {
    let mut buf = [0u8; 4096];
    let mut off = 0;
    while off < n {
        let k = (n - off).min(buf.len());
        // SAFETY: `off + k <= n`: inside the source span; `buf` is local and holds k bytes.
        unsafe { std::ptr::copy_nonoverlapping(src.add(off), buf.as_mut_ptr(), k) };
        forget_contents(&mut buf[..k]);
        crc = crc32c::crc32c_append(crc, &buf[..k]);
        if let Some(d) = dst {
            // SAFETY: inside the destination span, which the caller made valid for writes.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), d.add(off), k) };
        }
        off += k;
    }
    crc
}

/// Copies of at least this many bytes run as three interleaved streams (`stream_len`), where
/// `copy` takes the AVX2 path at all.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const STREAMS_MIN: usize = 16 << 10;

/// Length of each of the three streams a copy of `n >= STREAMS_MIN` bytes is split into (the
/// rest, under 3 KiB, follows as one stream), 0 for shorter copies: about a third, a multiple
/// of 128, and chosen so that neither `q` nor `2q` lies within 512 bytes of a multiple of
/// 4 KiB. A load a multiple of 4 KiB away from a pending store (the same address bits 0..11)
/// is first taken for a dependent one ("4K aliasing"): four streams exactly 16 KiB apart
/// copied 64 KiB at 36 GB/s instead of 50. This keeps the streams of one side apart; how the
/// source sits against the destination is the caller's (as for any copy loop).
///
/// Why three streams: reading and writing three places at once keeps more cache-line misses
/// in flight. Measured with a scratch loop (two runs, 2026-11-24, not part of the bench) on
/// this Zen 3 VM, 64 KiB copies walking through 96 MiB (DRAM-bound): three streams 12.7..13.4
/// GB/s, two 10.7..12.6, four 11.4..12.4, six 12.2..12.5, against 9.0..10.1 for glibc
/// `memmove` and a one-stream loop (prefetching 512..2048 bytes ahead did not help); inside L3
/// (4 MiB) three streams 35 against 30; inside L2 (the same 64 KiB) both ~50. The device
/// bench's COPY 64 MiB row is the reproducible trace of it.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
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
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn copy_avx2(src: *const u8, dst: *mut u8, n: usize) {
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
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn raw_crc(state: u32, bytes: &[u8]) -> u32 {
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
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,vpclmulqdq,pclmulqdq,sse4.2")]
unsafe fn fold_crc<const STORE: bool>(src: *const u8, dst: *mut u8, n: usize, crc: u32) -> u32 {
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
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
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
/// side by side on different parts of a chunk. On the Zen 3 machines we bench on each alone
/// tops out at ~25 GB/s (one `crc32`, or half a 256-bit carry-less multiply, per cycle), but
/// they use different execution units: together a CRC runs at ~38 GB/s and a copy with its
/// CRC at ~33 GB/s (fold alone: 25.5), against 50 GB/s for a plain copy (`cargo bench -p
/// phyr-device`, "for scale" rows). A chunk of `ITERS` iterations is
/// `[fold: 128 ITERS][stream 0: 32 ITERS][stream 1][stream 2]`; each iteration folds 128
/// bytes and advances every stream by 32; at the end the streams are appended to the fold's
/// state with one carry-less multiply each ([`shift_state`]). Chunk sizes in iterations,
/// largest first; not powers of two: streams 8 KiB apart put a stream's loads on the same
/// address bits 0..11 as the previous stream's stores, which the CPU then waits for (4K
/// aliasing, measured 3% slower).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const HYBRID_ITERS: [usize; 3] = [292, 73, 18];
/// Bytes each stream advances per iteration.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const STREAM_STEP: usize = 32;

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const fn hybrid_len(iters: usize) -> usize {
    iters * (FOLD_BLOCK + 3 * STREAM_STEP)
}

/// The constant that appends `len` zero bytes to a raw CRC state `s`:
/// `crc32(0, clmul(s, k)) = s * x^(8 len) mod P` for k = x^(8 len - 33) mod P, reflected (the
/// carry-less product of two reflected values is shifted by one bit, and `crc32` of a qword
/// multiplies by x^32). `len` >= 5.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const fn shift_constant(len: usize) -> u64 {
    assert!(len >= 5, "x^(8 len - 33) needs len >= 5");
    (xpow_mod(8 * len as u32 - 33) as u32).reverse_bits() as u64
}

/// `state * x^(8 len) mod P` for the `len` of constant `k` (see [`shift_constant`]).
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,vpclmulqdq,pclmulqdq,sse4.2")]
unsafe fn hybrid_chunk<const STORE: bool, const ITERS: usize>(src: *const u8, dst: *mut u8, state: u32) -> u32 {
    const { assert!(ITERS >= 1, "a chunk has at least one iteration") };
    let fold_len = FOLD_BLOCK * ITERS;
    let stream_len = STREAM_STEP * ITERS;
    let k_stream = const { shift_constant(STREAM_STEP * ITERS) };
    let mut c = [0u64; 3];
    // Each stream step is loaded once into a register, stored from it and checksummed from it
    // (lane by lane): the CRC is of exactly the bytes written, whatever the guest does to the
    // source meanwhile. (Scalar loads and stores measured 10% slower.)
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

    fn data(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// Lengths around every boundary of the kernels: small path, first block, fold loop, tail,
    /// and each hybrid chunk size alone, followed by the smaller ones, and twice.
    fn lengths() -> Vec<usize> {
        let mut v = vec![
            0, 1, 7, 8, 127, 128, 255, 256, 257, 383, 384, 385, 1000, 4096, 65_535, 65_536,
        ];
        let [big, mid, small] = HYBRID_ITERS.map(hybrid_len);
        for c in [small, mid, big] {
            v.extend([c - 1, c, c + 1, c + 300]);
        }
        v.extend([mid + small + 200, big + mid + 2 * small + 255, 2 * big + 1]);
        // Three-stream copies: the threshold, and streams moved off each 4 KiB trap.
        v.extend([
            STREAMS_MIN - 1,
            STREAMS_MIN,
            STREAMS_MIN + 129,
            3 * 12_288 + 5,
            3 * 10_240 + 7,
            3 * 16_000 + 99,
        ]);
        // The longest rest after the streams (3071 bytes: 23 blocks and a 127-byte tail).
        v.push(38_399);
        v
    }

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

    /// Room for the longest of `lengths()` plus offsets.
    fn max_len() -> usize {
        lengths().into_iter().max().unwrap_or(0) + 64
    }

    #[test]
    fn hybrid_chunks_shrink_and_the_smallest_is_the_documented_4032_bytes() {
        let lens = HYBRID_ITERS.map(hybrid_len);
        assert!(lens[0] > lens[1] && lens[1] > lens[2]);
        assert_eq!(lens[2], 4032, "update the module docs");
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

    #[test]
    fn copy_crc32c_matches_the_reference_at_every_length_offset_and_seed() {
        let src = data(max_len(), 1);
        for n in lengths() {
            for (so, d_off) in [(0, 0), (0, 16), (3, 1), (31, 5)] {
                for init in [0u32, 0xDEAD_BEEF] {
                    let mut dst = vec![0u8; n + 64];
                    // SAFETY: both buffers hold `off + n` bytes and are distinct.
                    let got = unsafe { copy_crc32c(src.as_ptr().add(so), dst.as_mut_ptr().add(d_off), n, init) };
                    let want = crc32c::crc32c_append(init, &src[so..so + n]);
                    assert_eq!(got, want, "n {n} src+{so} dst+{d_off} init {init:#x}");
                    assert_eq!(&dst[d_off..d_off + n], &src[so..so + n]);
                    assert!(
                        dst[..d_off].iter().chain(&dst[d_off + n..]).all(|&b| b == 0),
                        "wrote outside the span"
                    );
                    // SAFETY: the source span is valid for reads.
                    assert_eq!(unsafe { crc32c(src.as_ptr().add(so), n, init) }, want);
                }
            }
        }
    }

    #[test]
    fn copy_moves_every_length_and_alignment() {
        let src = data(max_len() + 64, 2);
        for n in lengths() {
            for s_off in [0, 3, 31] {
                for d_off in [0, 1, 16, 33] {
                    // 32-byte aligned base, so `d_off` 0 really takes the aligned paths.
                    let mut buf = vec![0u8; n + 80];
                    let base = buf.as_ptr().align_offset(32);
                    let dst = &mut buf[base..base + n + 40];
                    // SAFETY: distinct buffers of sufficient size.
                    unsafe { copy(src.as_ptr().add(s_off), dst.as_mut_ptr().add(d_off), n) };
                    assert_eq!(
                        &dst[d_off..d_off + n],
                        &src[s_off..s_off + n],
                        "n {n} s_off {s_off} d_off {d_off}"
                    );
                    let outside = dst[..d_off].iter().chain(&dst[d_off + n..]);
                    assert!(
                        outside.into_iter().all(|&b| b == 0),
                        "n {n} s_off {s_off} d_off {d_off}: wrote outside"
                    );
                }
            }
        }
    }

    #[test]
    fn overlapping_long_copy_moves_like_memmove() {
        for n in [STREAMS_MIN, 65_536] {
            for (from, to) in [
                (0usize, 32usize),
                (32, 0),
                (0, 4096),
                (4096, 0),
                (0, 12_289),
                (12_289, 0),
            ] {
                let mut b = data(n + 12_320, 4);
                let want = b[from..from + n].to_vec();
                let p = b.as_mut_ptr();
                // SAFETY: both spans lie inside `b`.
                unsafe { copy(p.add(from), p.add(to), n) };
                assert_eq!(&b[to..to + n], &want[..], "n {n} from {from} to {to}");
            }
        }
    }

    #[test]
    fn overlapping_copy_crc32c_moves_like_memmove_and_sums_the_original_bytes() {
        for (from, to) in [(0usize, 40usize), (40, 0), (0, 1), (1, 0)] {
            let mut b = data(5000, 3);
            let want_data = b[from..from + 4000].to_vec();
            let want = crc32c::crc32c(&want_data);
            let p = b.as_mut_ptr();
            // SAFETY: both spans lie inside `b` (5000 bytes).
            let got = unsafe { copy_crc32c(p.add(from), p.add(to), 4000, 0) };
            assert_eq!(got, want);
            assert_eq!(&b[to..to + 4000], &want_data[..]);
            let mut c = data(5000, 3);
            let p = c.as_mut_ptr();
            // SAFETY: as above.
            unsafe { copy(p.add(from), p.add(to), 4000) };
            assert_eq!(&c[to..to + 4000], &want_data[..]);
        }
    }

    #[test]
    fn combine_matches_the_crc_of_the_concatenation() {
        let d = data(70_000, 5);
        for split in [0usize, 1, 7, 100, 4096, 33_333, 65_536, 69_999, 70_000] {
            let (a, b) = d.split_at(split);
            let got = crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len() as u64);
            assert_eq!(got, crc32c::crc32c(&d), "split at {split}");
        }
        // Lengths with many set bits and beyond 4 GiB agree with the crate's slow combine.
        for len in [0x1234_5677u64, u32::MAX as u64, 5 << 32 | 0xFFF] {
            let want = crc32c::crc32c_combine(0xDEAD_BEEF, 0x0BAD_F00D, len as usize);
            assert_eq!(crc32c_combine(0xDEAD_BEEF, 0x0BAD_F00D, len), want, "len {len:#x}");
        }
    }

    /// A guest rewriting the source while the device copies it (hostile, or a driver bug the
    /// trace is meant to expose): the CRC returned must still be the CRC of the bytes that
    /// landed in the destination. Meaningful in optimized builds (phyr-device's tests build
    /// with opt-level 3, see the workspace Cargo.toml): there the compiler once checksummed a
    /// second read of the source instead of the stored registers, and ~1 copy in 100 of this
    /// test disagreed.
    #[test]
    fn copy_crc32c_sums_the_bytes_written_while_the_source_is_being_rewritten() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
        let words: Vec<AtomicU64> = (0..70_000 / 8).map(|i| AtomicU64::new(i as u64)).collect();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut x = 1u64;
                while !stop.load(Relaxed) {
                    for w in &words {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        w.store(x, Relaxed);
                    }
                }
            });
            let src = words.as_ptr().cast::<u8>();
            let mut dst = vec![0u8; 70_000];
            let mut bad = Vec::new();
            // Lengths through the small path, the folding loop with its tail, and hybrid chunks.
            for n in [100usize, 1000, 4032, 5000, 65_408] {
                for _ in 0..400 {
                    // SAFETY: `words` holds 70_000 bytes; `dst` is a distinct buffer of as many.
                    let got = unsafe { copy_crc32c(src, dst.as_mut_ptr(), n, 0) };
                    if got != crc32c::crc32c(&dst[..n]) {
                        bad.push(n);
                    }
                }
            }
            stop.store(true, Relaxed);
            assert!(bad.is_empty(), "CRC differs from the bytes written for lengths {bad:?}");
        });
    }

    #[test]
    fn portable_path_matches_the_simd_path() {
        let src = data(10_000, 4);
        let mut d1 = vec![0u8; 10_000];
        // SAFETY: distinct buffers of 10_000 bytes.
        let a = unsafe { via_buffer(src.as_ptr(), Some(d1.as_mut_ptr()), 10_000, 7) };
        // SAFETY: as above.
        let b = unsafe { copy_crc32c(src.as_ptr(), d1.as_mut_ptr(), 10_000, 7) };
        assert_eq!(a, b);
        assert_eq!(d1, src);
    }
}
