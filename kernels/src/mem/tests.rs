//! The raw-memory kernels against the reference: every length around every boundary of the
//! accelerated paths, alignments, overlap, and a writer racing the fused copy + CRC32C.

use super::*;
use crate::portable;

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
    #[cfg(target_arch = "x86_64")]
    {
        use crate::x86::{hybrid_len, HYBRID_ITERS, STREAMS_MIN};
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
    }
    // The longest rest after the streams (3071 bytes: 23 blocks and a 127-byte tail).
    v.push(38_399);
    v
}

/// Room for the longest of `lengths()` plus offsets.
fn max_len() -> usize {
    lengths().into_iter().max().unwrap_or(0) + 64
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
                let want = portable::crc32c_append(init, &src[so..so + n]);
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
    for n in [16 << 10, 65_536] {
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
        let want = portable::crc32c(&want_data);
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

/// A guest rewriting the source while the device copies it (hostile, or a driver bug the
/// trace is meant to expose): the CRC returned must still be the CRC of the bytes that
/// landed in the destination. Meaningful in optimized builds (`just test` runs this crate's
/// tests on the release build too): there the compiler once checksummed a second read of the
/// source instead of the stored registers, and ~1 copy in 100 of this test disagreed.
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
                if got != portable::crc32c(&dst[..n]) {
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
