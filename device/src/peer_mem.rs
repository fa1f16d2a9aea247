//! BAR2 "peer memory": a memfd, mapped once into the device process. The client (QEMU) gets
//! the same fd through the region's sparse-mmap area and maps it into the guest, so the guest
//! CPU, the own DMA engine and peers' DMA engines all see the same bytes. Pages are only
//! allocated when touched, so a large BAR costs nothing until used.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use crate::raw::RawPiece;

#[derive(Debug, thiserror::Error)]
pub enum PeerMemError {
    #[error("BAR2 size {0:#x} is not a power of two of at least 4 KiB")]
    BadSize(u64),
    #[error("memfd_create failed: {0}")]
    Memfd(#[source] std::io::Error),
    #[error("sizing the BAR2 memfd to {size:#x} bytes failed: {source}")]
    Truncate { size: u64, source: std::io::Error },
    #[error("sealing the BAR2 memfd against resizing failed: {0}")]
    Seal(#[source] std::io::Error),
    #[error("mapping BAR2 ({size:#x} bytes) failed: {source}")]
    Mmap { size: u64, source: std::io::Error },
}

/// The memfd behind one endpoint's BAR2 and its mapping in this process.
#[derive(Debug)]
pub struct PeerMem {
    fd: Arc<OwnedFd>,
    ptr: *mut u8,
    size: usize,
}

// SAFETY: the mapping is shared memory owned by this struct for its whole life; all access goes
// through RawPiece copies that tolerate concurrent change.
unsafe impl Send for PeerMem {}
// SAFETY: as for Send.
unsafe impl Sync for PeerMem {}

impl PeerMem {
    /// Creates a zero-filled memfd of `size` bytes (a power of two >= 4 KiB) and maps it.
    ///
    /// The memfd is sealed against shrinking and growing (and against further seal changes)
    /// before anyone else sees it: the client receives it for the sparse-mmap area, and an
    /// `ftruncate` of it would turn our accesses past the new end into SIGBUS.
    pub fn new(name: &str, size: u64) -> Result<Self, PeerMemError> {
        if size < 4096 || !size.is_power_of_two() || usize::try_from(size).is_err() {
            return Err(PeerMemError::BadSize(size));
        }
        let cname = std::ffi::CString::new(name.replace('\0', "")).unwrap_or_default();
        // SAFETY: cname is a valid NUL-terminated string; memfd_create has no other preconditions.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if raw < 0 {
            return Err(PeerMemError::Memfd(std::io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh fd we exclusively own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on an fd we own; size fits off_t (checked power of two, fits usize).
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(PeerMemError::Truncate {
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: plain fcntl on an fd we own, with integer arguments; no memory is passed.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(PeerMemError::Seal(std::io::Error::last_os_error()));
        }
        // SAFETY: mapping a fresh region (addr hint null) of a memfd that is `size` bytes long.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(PeerMemError::Mmap {
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self {
            fd: Arc::new(fd),
            ptr: ptr.cast(),
            size: size as usize,
        })
    }

    pub fn size(&self) -> u64 {
        self.size as u64
    }

    /// The memfd, for the region's sparse-mmap area.
    pub fn fd(&self) -> Arc<OwnedFd> {
        self.fd.clone()
    }

    /// The span `[offset, offset + len)`, or None when it does not fit inside the BAR.
    pub fn piece(&self, offset: u64, len: u64) -> Option<RawPiece> {
        let end = offset.checked_add(len)?;
        if end > self.size as u64 {
            return None;
        }
        // SAFETY: [offset, end) lies inside our mapping (checked above), which lives as long as
        // self; callers hold an Arc to the PeerMem while they use the piece.
        Some(unsafe { RawPiece::new(self.ptr.add(offset as usize), len as usize) })
    }

    /// Reads bytes at `offset` (for REGION_READ of BAR2 and tests); false if out of range.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        match self.piece(offset, buf.len() as u64) {
            Some(p) => p.read_into(buf) == buf.len(),
            None => false,
        }
    }

    /// Writes bytes at `offset`; false if out of range.
    pub fn write(&self, offset: u64, data: &[u8]) -> bool {
        match self.piece(offset, data.len() as u64) {
            Some(p) => p.write_from(data) == data.len(),
            None => false,
        }
    }
}

impl Drop for PeerMem {
    fn drop(&mut self) {
        // SAFETY: ptr/size are the mapping made in new(); nothing uses it after drop.
        unsafe { libc::munmap(self.ptr.cast(), self.size) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_not_power_of_two_is_rejected() {
        assert!(matches!(PeerMem::new("t", 12288), Err(PeerMemError::BadSize(12288))));
        assert!(matches!(PeerMem::new("t", 0), Err(PeerMemError::BadSize(0))));
    }

    #[test]
    fn ftruncate_of_the_handed_out_fd_fails_with_eperm() {
        let m = PeerMem::new("t", 8192).unwrap();
        let fd = m.fd();
        for len in [0, 4096, 16384] {
            // SAFETY: ftruncate on a valid fd we hold; integer arguments only.
            let r = unsafe { libc::ftruncate(fd.as_raw_fd(), len) };
            assert_eq!(r, -1, "ftruncate to {len} succeeded");
            assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EPERM));
        }
        // SAFETY: plain fcntl query on a valid fd.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        assert_eq!(
            seals & libc::F_SEAL_SEAL,
            libc::F_SEAL_SEAL,
            "seals can still be changed"
        );
        // The mapping is intact.
        assert!(m.write(8191, &[7]));
    }

    #[test]
    fn piece_past_end_is_refused() {
        let m = PeerMem::new("t", 8192).unwrap();
        assert!(m.piece(8190, 4).is_none());
        assert!(m.piece(u64::MAX, 2).is_none());
        assert!(m.piece(8188, 4).is_some());
        assert!(m.write(100, b"hello"));
        let mut b = [0u8; 5];
        assert!(m.read(100, &mut b));
        assert_eq!(&b, b"hello");
        assert!(!m.read(8190, &mut b));
    }
}
