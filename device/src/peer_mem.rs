//! BAR2 "peer memory": a memfd, mapped once into the device process. The client (QEMU) gets
//! the same fd through the region's sparse-mmap area and maps it into the guest, so the guest
//! CPU, the own DMA engine and peers' DMA engines all see the same bytes. Pages are only
//! allocated when touched, so a large BAR costs nothing until used.
//!
//! The memfd and its mapping are vfio-user's own (`vfio_user::memfd`, `MmapRegion`): one
//! implementation of shared memory for the whole workspace, and no `unsafe` here. Pieces of
//! the BAR borrow the `PeerMem` (`RawPiece<'_>`), so none outlives the mapping.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use vfio_user::MmapRegion;

use crate::raw::RawPiece;

#[derive(Debug, thiserror::Error)]
pub enum PeerMemError {
    #[error("BAR2 size {0:#x} is not a power of two of at least 4 KiB")]
    BadSize(u64),
    #[error("creating the sealed BAR2 memfd of {size:#x} bytes failed: {source}")]
    Memfd { size: u64, source: std::io::Error },
    #[error("mapping BAR2 ({size:#x} bytes) failed: {source}")]
    Mmap { size: u64, source: std::io::Error },
}

/// The memfd behind one endpoint's BAR2 and its mapping in this process.
#[derive(Debug)]
pub struct PeerMem {
    fd: Arc<OwnedFd>,
    map: MmapRegion,
}

impl PeerMem {
    /// Creates a zero-filled memfd of `size` bytes (a power of two >= 4 KiB) and maps it.
    ///
    /// The memfd is sealed against shrinking and growing (and against further seal changes)
    /// before anyone else sees it (`vfio_user::memfd`): the client receives it for the
    /// sparse-mmap area, and an `ftruncate` of it would turn our accesses past the new end
    /// into SIGBUS.
    pub fn new(name: &str, size: u64) -> Result<Self, PeerMemError> {
        if size < 4096 || !size.is_power_of_two() || usize::try_from(size).is_err() {
            return Err(PeerMemError::BadSize(size));
        }
        let fd =
            vfio_user::memfd(&name.replace('\0', ""), size).map_err(|source| PeerMemError::Memfd { size, source })?;
        let map =
            MmapRegion::map(fd.as_fd(), 0, size, true, true).map_err(|source| PeerMemError::Mmap { size, source })?;
        Ok(Self { fd: Arc::new(fd), map })
    }

    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    /// The memfd, for the region's sparse-mmap area.
    pub fn fd(&self) -> Arc<OwnedFd> {
        self.fd.clone()
    }

    /// The span `[offset, offset + len)`, or None when it does not fit inside the BAR. The
    /// piece borrows the BAR: it cannot outlive the mapping.
    ///
    /// ```compile_fail
    /// let piece = {
    ///     let bar = phyr_device::PeerMem::new("bar2", 4096).unwrap();
    ///     bar.piece(0, 16).unwrap()
    /// }; // the mapping is gone here: the compiler refuses the use below
    /// assert_eq!(piece.len(), 16);
    /// ```
    pub fn piece(&self, offset: u64, len: u64) -> Option<RawPiece<'_>> {
        let (offset, len) = (usize::try_from(offset).ok()?, usize::try_from(len).ok()?);
        self.map.slice(offset, len).map(RawPiece::from)
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

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
