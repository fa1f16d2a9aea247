//! Shared memory: [`MmapRegion`] owns an mmap of a file, [`MemSlice`] is a bounds-checked view
//! of memory another party may change at any time (guest RAM, a BAR's backing file).
//!
//! Copies use `ptr::copy` (memmove): never a `&[u8]` over shared memory, since the other side
//! can write it concurrently. A `MemSlice` knows whether it may be written: the write methods
//! refuse (with [`NotWritable`]) rather than fault on a read-only mapping.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// The page size mappings are aligned to.
pub const PAGE_SIZE: u64 = 4096;

/// A write was attempted through a read-only [`MemSlice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("write through a read-only memory slice")]
pub struct NotWritable;

/// An owned `mmap(MAP_SHARED)` of (part of) a file, unmapped on drop.
#[derive(Debug)]
pub struct MmapRegion {
    /// Start of the whole mapping (page aligned).
    base: NonNull<u8>,
    /// Length of the whole mapping.
    map_len: usize,
    /// Offset of the caller's byte 0 inside the mapping (file offsets need not be page aligned).
    delta: usize,
    /// Length the caller asked for.
    len: usize,
    readable: bool,
    writable: bool,
}

// SAFETY: the mapping is plain shared memory owned by this value; all access goes through
// `MemSlice` copies, which are fine from any thread.
unsafe impl Send for MmapRegion {}
// SAFETY: as above; `&MmapRegion` only hands out `MemSlice`s, which copy with memmove.
unsafe impl Sync for MmapRegion {}

impl MmapRegion {
    /// Maps `len` bytes of `fd` from `offset`, with PROT_READ/PROT_WRITE as asked.
    ///
    /// Accesses through the mapping stay valid only while the file covers `offset + len`:
    /// a later truncate makes them SIGBUS. For fds from an untrusted peer the caller must
    /// check the size and require F_SEAL_SHRINK (the server's DMA_MAP path does both; the
    /// client trusts the server's BAR fds).
    pub fn map(fd: BorrowedFd<'_>, offset: u64, len: u64, readable: bool, writable: bool) -> io::Result<MmapRegion> {
        let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
        if len == 0 {
            return Err(invalid("zero-length mapping"));
        }
        let delta = offset % PAGE_SIZE;
        let aligned = offset - delta;
        let map_len = len
            .checked_add(delta)
            .ok_or_else(|| invalid("mapping length overflows"))?;
        let map_len = usize::try_from(map_len).map_err(|_| invalid("mapping too large"))?;
        let file_off = libc::off_t::try_from(aligned).map_err(|_| invalid("file offset too large"))?;
        let mut prot = libc::PROT_NONE;
        if readable {
            prot |= libc::PROT_READ;
        }
        if writable {
            prot |= libc::PROT_WRITE;
        }
        // SAFETY: a fresh mapping at an address the kernel picks (null hint), of a file we
        // borrow for the duration of the call; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                file_off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(MmapRegion {
            base,
            map_len,
            delta: delta as usize,
            len: len as usize,
            readable,
            writable,
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never: zero-length maps are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn readable(&self) -> bool {
        self.readable
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The whole region as a slice.
    pub fn as_slice(&self) -> MemSlice<'_> {
        // SAFETY: base + delta .. + len lies inside the live mapping of map_len bytes
        // (map_len = len + delta), which outlives the returned borrow.
        unsafe {
            MemSlice::from_raw(
                self.base.as_ptr().add(self.delta),
                self.len,
                self.readable,
                self.writable,
            )
        }
    }

    /// `len` bytes from `offset`, or `None` if that leaves the region.
    pub fn slice(&self, offset: usize, len: usize) -> Option<MemSlice<'_>> {
        self.as_slice().subslice(offset, len)
    }
}

impl Drop for MmapRegion {
    fn drop(&mut self) {
        // SAFETY: base/map_len describe the mapping created in `map`, unmapped only here;
        // no MemSlice can outlive `self` (they borrow it).
        let rc = unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
        if rc != 0 {
            tracing::warn!("munmap failed: {}", io::Error::last_os_error());
        }
    }
}

/// A bounds-checked view of `len` bytes of memory that others may modify concurrently.
#[derive(Debug, Clone, Copy)]
pub struct MemSlice<'a> {
    ptr: *mut u8,
    len: usize,
    readable: bool,
    writable: bool,
    _life: PhantomData<&'a mut [u8]>,
}

// SAFETY: a MemSlice is a pointer range into memory that stays mapped for 'a; copies through
// it are memmoves, valid from any thread.
unsafe impl Send for MemSlice<'_> {}
// SAFETY: as above.
unsafe impl Sync for MemSlice<'_> {}

impl<'a> MemSlice<'a> {
    /// # Safety
    /// `ptr..ptr+len` must stay valid (mapped, readable/writable as flagged) for `'a`.
    pub(crate) unsafe fn from_raw(ptr: *mut u8, len: usize, readable: bool, writable: bool) -> MemSlice<'a> {
        MemSlice {
            ptr,
            len,
            readable,
            writable,
            _life: PhantomData,
        }
    }

    /// A read-only view of a local buffer.
    pub fn from_slice(buf: &'a [u8]) -> MemSlice<'a> {
        MemSlice {
            ptr: buf.as_ptr().cast_mut(),
            len: buf.len(),
            readable: true,
            writable: false,
            _life: PhantomData,
        }
    }

    /// A writable view of a local buffer.
    pub fn from_mut_slice(buf: &'a mut [u8]) -> MemSlice<'a> {
        MemSlice {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            readable: true,
            writable: true,
            _life: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether the slice may be read (a mapping made without PROT_READ may not).
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Raw start pointer (for callers doing their own volatile access or hashing). The
    /// pointer is valid for `len()` bytes of reads, for the slice's lifetime, if
    /// [`readable`](Self::readable).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// Raw start pointer for writes: valid for `len()` bytes of writes (and reads, if
    /// readable) for the slice's lifetime; `None` for a read-only slice.
    pub fn as_mut_ptr(&self) -> Option<*mut u8> {
        self.writable.then_some(self.ptr)
    }

    /// `len` bytes from `offset`, or `None` if that leaves the slice.
    pub fn subslice(&self, offset: usize, len: usize) -> Option<MemSlice<'a>> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: offset <= end <= self.len, so the result stays inside our valid range.
        Some(unsafe { MemSlice::from_raw(self.ptr.add(offset), len, self.readable, self.writable) })
    }

    /// Copies `min(self.len, dst.len())` bytes into `dst`; returns the count (0 for a slice
    /// that is not readable).
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        if !self.readable {
            return 0;
        }
        let n = self.len.min(dst.len());
        // SAFETY: self.ptr is valid for n <= self.len bytes of reads (the bounds `subslice` /
        // `MmapRegion::as_slice` checked, the readable flag checked above) for 'a; dst is a
        // unique borrow of n bytes; memmove tolerates any overlap.
        unsafe { std::ptr::copy(self.ptr, dst.as_mut_ptr(), n) };
        n
    }

    /// Copies `min(self.len, src.len())` bytes from `src`; returns the count.
    pub fn copy_from(&self, src: &[u8]) -> Result<usize, NotWritable> {
        if !self.writable {
            return Err(NotWritable);
        }
        let n = self.len.min(src.len());
        // SAFETY: self is writable for self.len >= n bytes (checked flag); src is readable for n.
        unsafe { std::ptr::copy(src.as_ptr(), self.ptr, n) };
        Ok(n)
    }

    /// Copies `min(self.len, src.len)` bytes from another shared slice (one memmove).
    pub fn copy_from_mem(&self, src: &MemSlice<'_>) -> Result<usize, NotWritable> {
        if !self.writable {
            return Err(NotWritable);
        }
        let n = if src.readable { self.len.min(src.len) } else { 0 };
        // SAFETY: both ranges are valid for n bytes (n <= both lengths), self is writable;
        // memmove handles overlap when both view the same mapping.
        unsafe { std::ptr::copy(src.ptr, self.ptr, n) };
        Ok(n)
    }

    /// Fills the slice with `byte`.
    pub fn fill(&self, byte: u8) -> Result<(), NotWritable> {
        if !self.writable {
            return Err(NotWritable);
        }
        // SAFETY: self is writable for self.len bytes.
        unsafe { std::ptr::write_bytes(self.ptr, byte, self.len) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn mapping_a_memfd_shares_bytes_between_two_maps() {
        let fd = crate::sys::fd::memfd("t", 8192).unwrap();
        let a = MmapRegion::map(fd.as_fd(), 0, 8192, true, true).unwrap();
        let b = MmapRegion::map(fd.as_fd(), 4096, 4096, true, false).unwrap();
        a.slice(4096, 4).unwrap().copy_from(&[1, 2, 3, 4]).unwrap();
        let mut out = [0u8; 4];
        b.slice(0, 4).unwrap().copy_to(&mut out);
        assert_eq!(out, [1, 2, 3, 4]);
        assert_eq!(b.as_slice().copy_from(&[0]), Err(NotWritable));
    }

    #[test]
    fn unaligned_file_offset_is_honoured() {
        let fd = crate::sys::fd::memfd("t", 8192).unwrap();
        let a = MmapRegion::map(fd.as_fd(), 0, 8192, true, true).unwrap();
        a.slice(100, 1).unwrap().copy_from(&[7]).unwrap();
        let b = MmapRegion::map(fd.as_fd(), 100, 10, true, false).unwrap();
        let mut out = [0u8; 1];
        b.as_slice().copy_to(&mut out);
        assert_eq!(out, [7]);
    }

    #[test]
    fn subslice_past_end_is_none() {
        let mut buf = [0u8; 8];
        let s = MemSlice::from_mut_slice(&mut buf);
        assert!(s.subslice(4, 5).is_none());
        assert!(s.subslice(usize::MAX, 2).is_none());
        assert_eq!(s.subslice(4, 4).unwrap().len(), 4);
    }

    #[test]
    fn zero_length_map_is_refused() {
        let fd = crate::sys::fd::memfd("t", 4096).unwrap();
        assert!(MmapRegion::map(fd.as_fd(), 0, 0, true, true).is_err());
    }
}
