//! Directly addressable memory spans and the data operations on them (copy, fill, checksum,
//! compare). A [`RawPiece<'a>`] is a [`vfio_user::MemSlice<'a>`] — a bounds-checked view of
//! mapped memory that borrows the mapping it came from (a DMA mapping in use, a BAR's
//! memfd), like vm-memory's `VolatileSlice<'a>` — so the compiler keeps every piece inside
//! the borrow that keeps its memory mapped. Pieces are made safely: from a DMA chunk
//! (client_mem.rs), from a BAR (`PeerMem::piece`), or from a Rust buffer (`of_slice`).
//!
//! The memory is shared with the guest (MAP_SHARED memfds), so it can change under us; we only
//! move bytes, never rely on their values for memory safety, never form a `&[u8]` over it, and
//! allow overlapping source and destination (a copy inside one mapping). All the engine's
//! unsafe memory access is here, each block inside the bounds `MemSlice` vouches for; the
//! byte loops themselves (copy, copy + CRC32C, CRC32C) are the `phyr-kernels` crate's `mem` module. Writes go only
//! through slices that are writable (`MemSlice::as_mut_ptr`): a write op on a read-only piece
//! moves nothing and reports 0 bytes (the engine asks for write access, and the DMA space
//! checks the mapping, before it writes).

use vfio_user::MemSlice;

use phyr_kernels::crc32c::{crc32c_append, crc32c_combine};
use phyr_kernels::mem as kernels;

/// Bytes of guest-shared memory copied into a local buffer at a time for comparing.
const CHUNK: usize = 4096;

/// A span of directly addressable memory, valid for `'a`.
///
/// ```
/// let bar = phyr_device::PeerMem::new("bar2", 4096).unwrap();
/// let mut buf = *b"phyr";
/// let (dst, src) = (bar.piece(100, 4).unwrap(), phyr_device::RawPiece::of_slice(&mut buf));
/// assert_eq!(phyr_device::RawPiece::copy(src, dst), 4);
/// let mut back = [0u8; 4];
/// assert!(bar.read(100, &mut back) && &back == b"phyr");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RawPiece<'a>(MemSlice<'a>);

impl<'a> From<MemSlice<'a>> for RawPiece<'a> {
    fn from(s: MemSlice<'a>) -> Self {
        RawPiece(s)
    }
}

impl<'a> RawPiece<'a> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sub-span `[off, off + len)`, clamped to this piece.
    pub fn sub(&self, off: usize, len: usize) -> RawPiece<'a> {
        let off = off.min(self.len());
        let len = len.min(self.len() - off);
        // Both clamped into range, so `subslice` cannot refuse; an empty piece if it did.
        RawPiece(self.0.subslice(off, len).unwrap_or(MemSlice::from_slice(&[])))
    }

    /// Start pointer and length for reads (0 bytes if the slice is not readable).
    fn readable(&self) -> (*const u8, usize) {
        (self.0.as_ptr(), if self.0.readable() { self.len() } else { 0 })
    }

    /// Start pointer and length for writes (0 bytes if the slice is read-only).
    fn writable(&self) -> (*mut u8, usize) {
        match self.0.as_mut_ptr() {
            Some(p) => (p, self.len()),
            None => (std::ptr::null_mut(), 0),
        }
    }

    /// Copies `min(src.len, dst.len)` bytes from `src` to `dst` (overlap allowed); returns
    /// the count (0 if `dst` is read-only).
    pub fn copy(src: RawPiece<'_>, dst: RawPiece<'_>) -> usize {
        let ((s, sn), (d, dn)) = (src.readable(), dst.writable());
        let n = sn.min(dn);
        if n > 0 {
            // SAFETY: `s` is valid for `sn` bytes of reads and `d` for `dn` bytes of writes
            // for as long as the two borrowed slices (`MemSlice` bounds and flags), and
            // n <= both; the kernel tolerates overlap.
            unsafe { kernels::copy(s, d, n) };
        }
        n
    }

    /// Copies like [`RawPiece::copy`] and returns the CRC32C of the bytes moved (from 0), in
    /// the same pass.
    pub fn copy_crc32c(src: RawPiece<'_>, dst: RawPiece<'_>) -> (usize, u32) {
        let ((s, sn), (d, dn)) = (src.readable(), dst.writable());
        let n = sn.min(dn);
        if n == 0 {
            return (0, 0);
        }
        // SAFETY: as for `copy`: both spans valid for n bytes by their `MemSlice` bounds.
        let crc = unsafe { kernels::copy_crc32c(s, d, n, 0) };
        (n, crc)
    }

    /// Copies from the piece into `buf` (`min` of both lengths). Whatever the caller then
    /// checks and uses is read from `buf` alone: the optimizer is kept from turning a use of
    /// `buf` into a second read of guest memory (a double fetch the guest could race).
    pub fn read_into(&self, buf: &mut [u8]) -> usize {
        let n = self.0.copy_to(buf);
        kernels::forget_contents(&mut buf[..n]);
        n
    }

    /// Copies `data` into the piece (`min` of both lengths); 0 if the piece is read-only.
    pub fn write_from(&self, data: &[u8]) -> usize {
        self.0.copy_from(data).unwrap_or(0)
    }

    /// Stores `v` at byte `off` of the piece with release ordering: every write made through
    /// any piece before this call is visible to a reader that sees `v` (and orders its later
    /// reads after it, e.g. Linux's `dma_rmb()`). Returns false, storing nothing, if `off` is
    /// outside the piece or the piece is read-only. Completions publish their phase byte this
    /// way (ABI §6).
    pub fn store_release(&self, off: usize, v: u8) -> bool {
        let (p, n) = self.writable();
        if off >= n {
            return false;
        }
        // SAFETY: `off < n` (checked above) and `p` is valid for `n` bytes of writes and reads
        // while the borrowed `MemSlice` lives (a writable slice, `as_mut_ptr`); a u8 is always
        // aligned for AtomicU8. The other side only ever accesses the byte with plain loads and
        // stores of its own (shared memory outside this process's abstract machine).
        let byte = unsafe { std::sync::atomic::AtomicU8::from_ptr(p.add(off)) };
        byte.store(v, std::sync::atomic::Ordering::Release);
        true
    }

    /// Loads the little-endian u32 at byte `off` of the piece with acquire ordering, as one
    /// single-copy-atomic 4-byte load (never torn by a concurrent aligned store of the other
    /// side). `None` if `[off, off + 4)` leaves the piece, the address is not 4-byte aligned,
    /// or the piece is read-only (an atomic needs a writable mapping): copy and fence instead.
    pub fn load_acquire_u32(&self, off: usize) -> Option<u32> {
        let (p, n) = self.writable();
        if off.checked_add(4)? > n || !self.0.readable() {
            return None;
        }
        let p = p.wrapping_add(off);
        if !p.cast::<std::sync::atomic::AtomicU32>().is_aligned() {
            return None;
        }
        // SAFETY: `[off, off + 4)` lies inside the writable, readable span (checked above),
        // valid while the borrowed `MemSlice` lives; the address is aligned for AtomicU32
        // (checked above). The other side's stores are its own (shared memory outside this
        // process).
        let word = unsafe { std::sync::atomic::AtomicU32::from_ptr(p.cast::<u32>()) };
        Some(u32::from_le(word.load(std::sync::atomic::Ordering::Acquire)))
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
        while done < self.len() {
            let k = self.sub(done, block.len()).write_from(&block);
            if k == 0 {
                break;
            }
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
        let (p, n) = self.readable();
        // SAFETY: `p` is valid for `n` bytes of reads while the borrowed `MemSlice` lives (its
        // bounds; n is 0 for an unreadable slice).
        unsafe { kernels::crc32c(p, n, crc) }
    }

    /// Offset of the first byte that differs between `a` and `b` (over the shorter length).
    /// Compares local copies, 4 KiB at a time (see `crc32c`: the memory is guest-shared).
    pub fn first_difference(a: RawPiece<'_>, b: RawPiece<'_>) -> Option<usize> {
        Self::compare(a, b, false).0
    }

    /// [`first_difference`](Self::first_difference); with `with_crc`, reads both to the end
    /// and also returns the CRC32C of the bytes read from each (from the local copies the
    /// comparison used, not a second read of guest memory).
    pub fn compare(a: RawPiece<'_>, b: RawPiece<'_>, with_crc: bool) -> (Option<usize>, Option<(u32, u32)>) {
        let n = a.len().min(b.len());
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

    /// A piece over a Rust buffer (tests and bounce buffers), borrowing it.
    pub fn of_slice(buf: &'a mut [u8]) -> RawPiece<'a> {
        RawPiece(MemSlice::from_mut_slice(buf))
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
    fn store_release_and_load_acquire_stay_inside_the_piece() {
        let mut b = [0u8; 16];
        let p = RawPiece::of_slice(&mut b);
        assert!(p.store_release(15, 9));
        assert!(!p.store_release(16, 9), "a store past the end was accepted");
        let word = p.sub(4, 8);
        assert!(word.store_release(0, 0x78) && word.store_release(3, 0x12));
        let aligned = (0..4).find(|&o| b[o..].as_ptr().cast::<u32>().is_aligned()).unwrap();
        let p = RawPiece::of_slice(&mut b);
        assert_eq!(p.load_acquire_u32(13), None, "a load past the end was accepted");
        assert_eq!(p.load_acquire_u32(aligned + 1), None, "a misaligned load was accepted");
        assert_eq!(p.load_acquire_u32(usize::MAX - 1), None);
        b[aligned..aligned + 4].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        let p = RawPiece::of_slice(&mut b);
        assert_eq!(p.load_acquire_u32(aligned), Some(0x1234_5678));
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
        use std::os::fd::AsFd;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        // The "guest" writes through its own mapping of the memfd; the device side only ever
        // copies out of a second mapping of the same memory.
        let len = 3 * CHUNK + 17;
        let fd = vfio_user::memfd("t", len as u64).unwrap();
        let guest = Arc::new(vfio_user::MmapRegion::map(fd.as_fd(), 0, len as u64, true, true).unwrap());
        let dev = vfio_user::MmapRegion::map(fd.as_fd(), 0, len as u64, true, false).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (guest.clone(), stop.clone());
        let writer = std::thread::spawn(move || {
            let mut v = 0u8;
            while !s.load(Ordering::Relaxed) {
                g.as_slice().fill(v).unwrap();
                v = v.wrapping_add(1);
            }
        });
        let p = RawPiece::from(dev.as_slice());
        for _ in 0..200 {
            let _ = p.crc32c(0);
            let d = RawPiece::first_difference(p, p.sub(1, usize::MAX));
            assert!(d.is_none_or(|i| i < p.len() - 1));
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        let mut now = vec![0u8; len];
        p.read_into(&mut now);
        assert_eq!(p.crc32c(0), crc32c::crc32c(&now));
        assert_eq!(RawPiece::first_difference(p, p.sub(1, usize::MAX)), None);
        // The read-only mapping refuses every write op.
        assert_eq!(p.write_from(&[1]), 0);
        assert!(!p.store_release(0, 1));
        assert_eq!(p.load_acquire_u32(0), None);
        let mut b = [9u8; 8];
        assert_eq!(RawPiece::copy(RawPiece::of_slice(&mut b), p), 0);
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
