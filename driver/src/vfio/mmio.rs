//! Memory shared with a device: BAR mappings (`MmioRegion`) and anonymous DMA buffers
//! (`DmaBuffer`). Both are accessed only through volatile, bounds-checked copies, because the
//! device (or the VMM behind it) reads and writes them behind the compiler's back.

use std::ptr::NonNull;

use super::error::{last_os, Result, VfioError};

/// Copies `len` bytes from `src` to `dst` with volatile accesses: 8-byte words where both
/// sides allow it, single bytes at the edges.
///
/// # Safety
/// `src` must be valid for `len` bytes of reads and `dst` for `len` bytes of writes, and the
/// two must not overlap.
unsafe fn volatile_copy(src: *const u8, dst: *mut u8, len: usize) {
    let mut i = 0;
    let aligned = (src as usize & 7) == (dst as usize & 7);
    while i < len && (!aligned || (src as usize + i) & 7 != 0) {
        // SAFETY: i < len, so both pointers are in bounds (caller's contract).
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        i += 1;
    }
    while aligned && i + 8 <= len {
        // SAFETY: i + 8 <= len keeps the word in bounds; both addresses are 8-byte aligned
        // (same alignment, src + i aligned by the loop above).
        unsafe {
            let w = src.add(i).cast::<u64>().read_volatile();
            dst.add(i).cast::<u64>().write_volatile(w);
        }
        i += 8;
    }
    while i < len {
        // SAFETY: i < len, in bounds for both.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        i += 1;
    }
}

/// A shared memory mapping owned by this process (munmap-ed on drop).
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    what: String,
}

// SAFETY: the mapping is plain shared memory owned by this struct; access goes through
// volatile copies with bounds checks, so moving it between threads is sound.
unsafe impl Send for Mapping {}

impl Mapping {
    fn check(&self, offset: u64, len: usize, align: usize) -> Result<usize> {
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= self.len as u64 && offset as usize & (align - 1) == 0 => Ok(offset as usize),
            _ => Err(VfioError::OutOfBounds {
                what: self.what.clone(),
                offset,
                len,
                size: self.len as u64,
            }),
        }
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let off = self.check(offset, buf.len(), 1)?;
        // SAFETY: check() proved off + buf.len() <= self.len, so the source lies inside the
        // live mapping; `buf` is a distinct Rust buffer of buf.len() bytes.
        unsafe { volatile_copy(self.ptr.as_ptr().add(off), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let off = self.check(offset, buf.len(), 1)?;
        // SAFETY: check() proved the destination lies inside the live mapping; `buf` is a
        // distinct Rust buffer.
        unsafe { volatile_copy(buf.as_ptr(), self.ptr.as_ptr().add(off), buf.len()) };
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the mapping once
        // its owner is dropped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// An mmap-ed device region (a BAR). Registers are read and written with single 32-bit
/// volatile accesses; 64-bit registers as two 32-bit accesses, low half first (ABI).
#[derive(Debug)]
pub struct MmioRegion(Mapping);

impl MmioRegion {
    pub(super) fn map(fd: i32, offset: u64, len: usize, what: String) -> Result<Self> {
        // SAFETY: a fresh shared mapping of a device fd at a kernel-chosen address; it
        // aliases no Rust object. The result is checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(VfioError::Mmap {
                what,
                offset,
                len,
                source: last_os(),
            });
        }
        let ptr = NonNull::new(p.cast()).expect("mmap never returns NULL on success");
        Ok(Self(Mapping { ptr, len, what }))
    }

    pub fn len(&self) -> u64 {
        self.0.len as u64
    }

    /// The mapping's virtual address in this process (for VFIO_IOMMU_MAP_DMA of a peer BAR).
    pub fn vaddr(&self) -> u64 {
        self.0.ptr.as_ptr() as u64
    }

    pub fn read32(&self, offset: u64) -> Result<u32> {
        let off = self.0.check(offset, 4, 4)?;
        // SAFETY: check() proved the 4 bytes are inside the mapping and 4-byte aligned.
        Ok(u32::from_le(unsafe {
            self.0.ptr.as_ptr().add(off).cast::<u32>().read_volatile()
        }))
    }

    pub fn write32(&self, offset: u64, v: u32) -> Result<()> {
        let off = self.0.check(offset, 4, 4)?;
        // SAFETY: check() proved the 4 bytes are inside the mapping and 4-byte aligned.
        unsafe { self.0.ptr.as_ptr().add(off).cast::<u32>().write_volatile(v.to_le()) };
        Ok(())
    }

    pub fn read64(&self, offset: u64) -> Result<u64> {
        let lo = self.read32(offset)?;
        let hi = self.read32(offset + 4)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    pub fn write64(&self, offset: u64, v: u64) -> Result<()> {
        self.write32(offset, v as u32)?;
        self.write32(offset + 4, (v >> 32) as u32)
    }

    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read(offset, buf)
    }

    pub fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.0.write(offset, buf)
    }
}

/// Anonymous, page-aligned, zero-filled memory for DMA (rings, data buffers, lists).
#[derive(Debug)]
pub struct DmaBuffer(Mapping);

impl DmaBuffer {
    /// Allocates `len` bytes rounded up to whole pages, populated (so VFIO pins real pages).
    pub fn new(len: usize) -> Result<Self> {
        let len = len.max(1).div_ceil(4096) * 4096;
        // SAFETY: a fresh private anonymous mapping at a kernel-chosen address; it aliases
        // nothing. Checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(VfioError::Mmap {
                what: "anonymous DMA buffer".into(),
                offset: 0,
                len,
                source: last_os(),
            });
        }
        let ptr = NonNull::new(p.cast()).expect("mmap never returns NULL on success");
        Ok(Self(Mapping {
            ptr,
            len,
            what: format!("DMA buffer of {len:#x} bytes"),
        }))
    }

    pub fn len(&self) -> u64 {
        self.0.len as u64
    }

    pub fn vaddr(&self) -> u64 {
        self.0.ptr.as_ptr() as u64
    }

    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read(offset, buf)
    }

    pub fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.0.write(offset, buf)
    }

    /// Reads `len` bytes at `offset` into a new vector.
    pub fn to_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read(offset, &mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dma_buffer_round_trips_unaligned_ranges() {
        let b = DmaBuffer::new(10_000).unwrap();
        assert_eq!(b.len(), 12_288);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        b.write(3, &data).unwrap();
        assert_eq!(b.to_vec(3, 1000).unwrap(), data);
        assert_eq!(b.to_vec(0, 3).unwrap(), vec![0, 0, 0]);
    }

    #[test]
    fn dma_buffer_rejects_access_past_the_end() {
        let b = DmaBuffer::new(4096).unwrap();
        assert!(b.write(4090, &[0u8; 7]).is_err());
        assert!(b.read(u64::MAX - 2, &mut [0u8; 4]).is_err());
    }
}
