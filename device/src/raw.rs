//! Directly addressable memory spans and the data operations on them (copy, fill, checksum,
//! compare). All the engine's unsafe memory access lives here: a `RawPiece` can only be made
//! by `unsafe fn new`, whose caller promises the span is valid for the piece's lifetime of use
//! (the duration of the callback that hands it out), and every operation stays inside it.
//!
//! The memory is shared with the guest (MAP_SHARED memfds), so it can change under us; we only
//! move bytes, never rely on their values for memory safety, never form a `&[u8]` over it, and
//! allow overlapping source and destination (a copy inside one mapping). The byte loops
//! themselves (copy, copy + CRC32C, CRC32C) are the `phyr-kernels` crate's `mem` module.

use phyr_kernels::crc32c::{crc32c_append, crc32c_combine};
use phyr_kernels::mem as kernels;

/// Bytes of guest-shared memory copied into a local buffer at a time for comparing.
const CHUNK: usize = 4096;

/// A span of directly addressable memory.
#[derive(Debug, Clone, Copy)]
pub struct RawPiece {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a RawPiece is a plain address range into shared (MAP_SHARED) memory; whoever made
// it vouched for its validity for the duration of use (see `new`), on any thread.
unsafe impl Send for RawPiece {}
// SAFETY: as for Send; all accesses through it are raw copies that tolerate concurrent change.
unsafe impl Sync for RawPiece {}

impl RawPiece {
    /// # Safety
    /// `[ptr, ptr + len)` must stay valid for reads (and for writes, if the piece is used as a
    /// destination) for as long as the piece and its sub-pieces are used.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        Self { ptr, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sub-span `[off, off + len)`, clamped to this piece.
    pub fn sub(&self, off: usize, len: usize) -> RawPiece {
        let off = off.min(self.len);
        let len = len.min(self.len - off);
        // `off <= self.len`, so the pointer stays inside (or one past) the span.
        RawPiece {
            ptr: self.ptr.wrapping_add(off),
            len,
        }
    }

    /// Copies `min(src.len, dst.len)` bytes from `src` to `dst` (overlap allowed).
    pub fn copy(src: RawPiece, dst: RawPiece) -> usize {
        let n = src.len.min(dst.len);
        // SAFETY: both spans are valid for n bytes (constructor contract, n <= both lengths);
        // the kernel tolerates overlap.
        unsafe { kernels::copy(src.ptr, dst.ptr, n) };
        n
    }

    /// Copies like [`RawPiece::copy`] and returns the CRC32C of the bytes moved (from 0), in
    /// the same pass.
    pub fn copy_crc32c(src: RawPiece, dst: RawPiece) -> (usize, u32) {
        let n = src.len.min(dst.len);
        // SAFETY: as for `copy`.
        let crc = unsafe { kernels::copy_crc32c(src.ptr, dst.ptr, n, 0) };
        (n, crc)
    }

    /// Copies from the piece into `buf` (`min` of both lengths). Whatever the caller then
    /// checks and uses is read from `buf` alone: the optimizer is kept from turning a use of
    /// `buf` into a second read of guest memory (a double fetch the guest could race).
    pub fn read_into(&self, buf: &mut [u8]) -> usize {
        let n = self.len.min(buf.len());
        // SAFETY: the piece is valid for n reads; buf is a distinct Rust buffer of >= n bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, buf.as_mut_ptr(), n) };
        kernels::forget_contents(&mut buf[..n]);
        n
    }

    /// Copies `data` into the piece (`min` of both lengths).
    pub fn write_from(&self, data: &[u8]) -> usize {
        let n = self.len.min(data.len());
        // SAFETY: the piece is valid for n writes; data is a distinct Rust buffer of >= n bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr, n) };
        n
    }

    /// Fills the piece with the 8-byte `pattern`, starting at byte `phase` of the pattern.
    /// Returns the CRC32C of the bytes written if `with_crc` (computed from the pattern, not by
    /// reading guest memory back).
    pub fn fill(&self, pattern: u64, phase: usize, with_crc: bool) -> Option<u32> {
        let block = pattern_block(pattern, phase);
        // Every whole block has the same CRC: appended by a multiplication, not re-checksummed.
        let block_crc = if with_crc { crc32c_append(0, &block) } else { 0 };
        // 4096 is a multiple of 8, so every block starts at the same phase.
        let mut done = 0;
        let mut crc = 0u32;
        while done < self.len {
            let k = self.sub(done, block.len()).write_from(&block);
            if with_crc {
                crc = if k == block.len() {
                    crc32c_combine(crc, block_crc, k as u64)
                } else {
                    crc32c_append(crc, &block[..k])
                };
            }
            done += k;
        }
        with_crc.then_some(crc)
    }

    /// CRC32C of the piece appended to `crc`. The guest may write the memory while we read
    /// it: a concurrent write only changes the checksum.
    pub fn crc32c(&self, crc: u32) -> u32 {
        // SAFETY: the span is valid for reads (constructor contract).
        unsafe { kernels::crc32c(self.ptr, self.len, crc) }
    }

    /// Offset of the first byte that differs between `a` and `b` (over the shorter length).
    /// Compares local copies, 4 KiB at a time (see `crc32c`: the memory is guest-shared).
    pub fn first_difference(a: RawPiece, b: RawPiece) -> Option<usize> {
        Self::compare(a, b, false).0
    }

    /// [`first_difference`](Self::first_difference); with `with_crc`, reads both to the end
    /// and also returns the CRC32C of the bytes read from each (from the local copies the
    /// comparison used, not a second read of guest memory).
    pub fn compare(a: RawPiece, b: RawPiece, with_crc: bool) -> (Option<usize>, Option<(u32, u32)>) {
        let n = a.len.min(b.len);
        let (mut x, mut y) = ([0u8; CHUNK], [0u8; CHUNK]);
        let (mut first, mut crcs) = (None, (0u32, 0u32));
        let mut off = 0;
        while off < n {
            let k = (n - off).min(CHUNK);
            a.sub(off, k).read_into(&mut x[..k]);
            b.sub(off, k).read_into(&mut y[..k]);
            if first.is_none() && x[..k] != y[..k] {
                first = x[..k].iter().zip(&y[..k]).position(|(p, q)| p != q).map(|i| off + i);
                if !with_crc {
                    break;
                }
            }
            if with_crc {
                crcs = (crc32c_append(crcs.0, &x[..k]), crc32c_append(crcs.1, &y[..k]));
            }
            off += k;
        }
        (first, with_crc.then_some(crcs))
    }

    /// A piece over a Rust buffer (tests and bounce buffers).
    pub fn of_slice(buf: &mut [u8]) -> RawPiece {
        RawPiece {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }
}

/// 4 KiB of the 8-byte `pattern` starting at byte `phase` of it (FILL's unit; 4096 is a
/// multiple of 8, so consecutive blocks continue the pattern).
pub fn pattern_block(pattern: u64, phase: usize) -> [u8; 4096] {
    let pat = pattern.to_le_bytes();
    let mut block = [0u8; 4096];
    for (i, b) in block.iter_mut().enumerate() {
        *b = pat[(phase + i) % 8];
    }
    block
}

#[cfg(test)]
mod tests {
    use phyr_kernels::crc32c;

    use super::*;

    #[test]
    fn sub_past_end_is_clamped_to_empty() {
        let mut b = [0u8; 16];
        let p = RawPiece::of_slice(&mut b);
        assert_eq!(p.sub(20, 5).len(), 0);
        assert_eq!(p.sub(10, 100).len(), 6);
        assert_eq!(p.sub(usize::MAX, usize::MAX).len(), 0);
    }

    #[test]
    fn fill_keeps_pattern_phase() {
        let mut b = [0u8; 20];
        assert_eq!(RawPiece::of_slice(&mut b).fill(0x0807_0605_0403_0201, 3, false), None);
        assert_eq!(&b[..6], &[4, 5, 6, 7, 8, 1]);
    }

    #[test]
    fn fill_crc_is_the_crc_of_the_bytes_written_across_blocks() {
        let mut b = vec![0u8; 3 * 4096 + 100];
        let crc = RawPiece::of_slice(&mut b).fill(0x1122_3344_5566_7788, 5, true);
        assert_eq!(crc, Some(crc32c::crc32c(&b)));
    }

    #[test]
    fn compare_with_crc_reads_both_to_the_end_past_a_difference() {
        let mut x: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut y = x.clone();
        y[5000] ^= 1;
        let (cx, cy) = (crc32c::crc32c(&x), crc32c::crc32c(&y));
        let (a, b) = (RawPiece::of_slice(&mut x), RawPiece::of_slice(&mut y));
        assert_eq!(RawPiece::compare(a, b, true), (Some(5000), Some((cx, cy))));
        assert_eq!(RawPiece::compare(a, b, false), (Some(5000), None));
        assert_eq!(RawPiece::first_difference(a, a), None);
    }

    #[test]
    fn overlapping_copy_is_a_memmove() {
        let mut b: Vec<u8> = (0..32).collect();
        let p = RawPiece::of_slice(&mut b);
        RawPiece::copy(p.sub(0, 16), p.sub(4, 16));
        assert_eq!(&b[4..20], &(0..16).collect::<Vec<u8>>()[..]);
    }

    #[test]
    fn crc32c_of_a_piece_spanning_many_chunks_matches_the_slice_crc() {
        let mut b: Vec<u8> = (0..10_001u32).map(|i| (i * 7) as u8).collect();
        let want = crc32c::crc32c(&b);
        let p = RawPiece::of_slice(&mut b);
        assert_eq!(p.crc32c(0), want);
        assert_eq!(p.sub(4096, 10_000).crc32c(p.sub(0, 4096).crc32c(0)), want);
        assert_eq!(p.sub(0, 0).crc32c(5), 5);
    }

    #[test]
    fn guest_rewriting_memory_during_crc32c_and_first_difference_only_changes_the_result() {
        use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
        use std::sync::Arc;
        // The "guest" writes through atomics; the device side only ever copies it out.
        let mem: Arc<Vec<AtomicU8>> = Arc::new((0..3 * CHUNK + 17).map(|_| AtomicU8::new(1)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (mem.clone(), stop.clone());
        let writer = std::thread::spawn(move || {
            let mut v = 0u8;
            while !s.load(Ordering::Relaxed) {
                for a in m.iter() {
                    a.store(v, Ordering::Relaxed);
                }
                v = v.wrapping_add(1);
            }
        });
        // SAFETY: AtomicU8 has the layout of u8; `mem` outlives every use of the piece below
        // (the Arc is held until the end of the test).
        let p = unsafe { RawPiece::new(mem.as_ptr().cast::<u8>().cast_mut(), mem.len()) };
        for _ in 0..200 {
            let _ = p.crc32c(0);
            let d = RawPiece::first_difference(p, p.sub(1, usize::MAX));
            assert!(d.is_none_or(|i| i < p.len() - 1));
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        let now: Vec<u8> = mem.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        assert_eq!(p.crc32c(0), crc32c::crc32c(&now));
        assert_eq!(RawPiece::first_difference(p, p.sub(1, usize::MAX)), None);
    }

    #[test]
    fn first_difference_finds_offset_past_first_block() {
        let mut a = vec![7u8; 10000];
        let mut c = a.clone();
        c[9000] = 1;
        let (pa, pc) = (RawPiece::of_slice(&mut a), RawPiece::of_slice(&mut c));
        assert_eq!(RawPiece::first_difference(pa, pc), Some(9000));
        assert_eq!(RawPiece::first_difference(pa, pa), None);
    }
}
