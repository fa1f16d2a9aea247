//! Byte-moving kernels over raw memory: copy, copy with a CRC32C of the bytes moved (one pass),
//! and CRC32C. The memory may be shared with another party that rewrites it meanwhile (a
//! guest's RAM): the kernels never form a `&[u8]` over it, and a CRC is always of the bytes
//! that were written, read once. The device's `RawPiece` is their caller; it vouches for the
//! spans.
//!
//! Why our own loops rather than `ptr::copy` + a CRC over the destination:
//! - glibc's `memmove` takes its `rep movsb` path for mid-sized copies, and on the AMD Zen 3
//!   machines phyr was measured on that path collapses whenever the destination is not 32-byte
//!   aligned (figures: kernels/README.md). A guest is free to DMA to any byte address, so the
//!   engine must not depend on that. Four 32-byte loads and stores per iteration keep their
//!   speed whatever the alignment; short copies to aligned destinations stay with glibc (see
//!   [`copy`]).
//! - Copies of 16 KiB and more run as three interleaved streams (with AVX2, spans not
//!   overlapping), which keeps more misses in flight when the data comes from DRAM.
//! - A data CRC for the trace used to re-read the moved bytes (through a local buffer, since
//!   the memory is guest-shared). The fused kernel computes the CRC from the very registers it
//!   stores, so the checksum is of the bytes that were written, and the data is read once.
//!   The optimizer is kept from reading the source a second time (it did, for the `crc32`
//!   streams and the tail buffer) by an opaque register move and [`forget_contents`]; the test
//!   `copy_crc32c_sums_the_bytes_written_while_the_source_is_being_rewritten` races a writer
//!   against the copy, and `just test` runs it on the release build too.
//!
//! Without AVX2 (or off x86-64) every kernel takes the portable path: bytes go through a local
//! buffer and [`crate::crc32c::crc32c_append`].

pub use crate::opaque::forget_contents;

/// Copies `n` bytes from `src` to `dst`; the spans may overlap (memmove semantics).
///
/// Where the CPU has AVX2 and the spans do not overlap: our loop for copies of 16 KiB and more
/// (three interleaved streams) and for unaligned destinations (where glibc collapses, see the
/// module docs). Everything else (short copies to 32-byte aligned destinations, overlapping
/// spans, CPUs without AVX2, other architectures) goes to glibc's `memmove`.
///
/// # Safety
/// `[src, src + n)` must be valid for reads and `[dst, dst + n)` for writes.
pub unsafe fn copy(src: *const u8, dst: *mut u8, n: usize) {
    #[cfg(target_arch = "x86_64")]
    if (n >= crate::x86::STREAMS_MIN || !(dst as usize).is_multiple_of(32))
        && !overlap(src, dst, n)
        && std::arch::is_x86_feature_detected!("avx2")
    {
        // SAFETY: AVX2 is present; the caller's contract covers the spans; no overlap.
        unsafe { crate::x86::copy_avx2(src, dst, n) };
        return;
    }
    // SAFETY: the caller's contract; `ptr::copy` handles overlap.
    unsafe { std::ptr::copy(src, dst, n) };
}

/// Copies `n` bytes from `src` to `dst` and returns the CRC32C of the bytes moved, appended to
/// `crc` (as [`crate::crc32c::crc32c_append`]). Overlapping spans (a copy inside one mapping) go
/// through a heap buffer of `n` bytes, so the checksum is of exactly what was written even if
/// the source changes meanwhile.
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
        return crate::crc32c::crc32c_append(crc, &tmp);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::x86::simd() {
        // SAFETY: the features are present; the caller's contract covers the spans.
        return unsafe { crate::x86::fold_crc::<true>(src, dst, n, crc) };
    }
    // SAFETY: the caller's contract; no overlap.
    unsafe { via_buffer(src, Some(dst), n, crc) }
}

/// CRC32C of the `n` bytes at `src`, appended to `crc`.
///
/// # Safety
/// `[src, src + n)` must be valid for reads.
pub unsafe fn crc32c(src: *const u8, n: usize, crc: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if crate::x86::simd() {
        // SAFETY: the features are present; the caller's contract covers the source span;
        // without stores `dst` is never dereferenced.
        return unsafe { crate::x86::fold_crc::<false>(src, std::ptr::null_mut(), n, crc) };
    }
    // SAFETY: the caller's contract.
    unsafe { via_buffer(src, None, n, crc) }
}

fn overlap(src: *const u8, dst: *mut u8, n: usize) -> bool {
    let (s, d) = (src as usize, dst as usize);
    s < d.wrapping_add(n) && d < s.wrapping_add(n)
}

/// The portable path: bytes go through a local buffer (never a `&[u8]` over shared memory),
/// which is checksummed and, with `dst`, written out.
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
        crc = crate::crc32c::crc32c_append(crc, &buf[..k]);
        if let Some(d) = dst {
            // SAFETY: inside the destination span, which the caller made valid for writes.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), d.add(off), k) };
        }
        off += k;
    }
    crc
}

#[cfg(test)]
mod tests;
