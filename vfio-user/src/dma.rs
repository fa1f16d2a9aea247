//! `DmaSpace`: the client's DMA mappings for one session, and device access to them.
//!
//! # Model
//! - The table maps IOVA ranges `[iova, iova + size)` to mappings. Ranges never overlap (a
//!   DMA_MAP that overlaps gets EEXIST), every end is computed with checked arithmetic, and
//!   the number of mappings is capped by the negotiated `max_dma_maps` (ENOSPC past it).
//! - A mapping that came with an fd is mmap-ed (MAP_SHARED, PROT from its READ/WRITE flags)
//!   and accessed with one memcpy per mapping: zero-copy. Behind an emulated IOMMU every page
//!   is its own mapping, so an access normally walks many adjacent mappings ("chunks").
//! - A mapping without an fd is reached with DMA_READ / DMA_WRITE messages to the client, split
//!   at the negotiated transfer size. They are sent from the calling (device) thread; the
//!   connection's reader thread routes the replies back. Calling from the reader thread itself
//!   would deadlock, so it fails with [`DmaError::RequestThread`].
//! - Every access checks permissions per mapping and reports the first faulting address.
//! - Each mapping counts its users. An unmap removes the mapping from the table at once (new
//!   lookups fail), then waits until no access is in flight: for mmap-ed mappings until the
//!   memcpy is done, for message mappings until the request is *sent* (socket ordering makes
//!   the client process it before the unmap; waiting for the reply would deadlock QEMU, which
//!   does not serve DMA_READ while it waits for the unmap reply).
//! - After disconnect every access fails with `Disconnected`; an mmap is released when its
//!   last user drops it.

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::thread::ThreadId;
use std::time::Duration;

use crate::dma_error::{CopyError, CopySide, DmaError, MapError, UnmapError};
use crate::errno::Errno;
use crate::info::MappingInfo;
use crate::remote::RemoteDma;
use crate::sys::mem::{MemSlice, MmapRegion, NotWritable};

/// Direction of a device access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The device reads guest memory.
    Read,
    /// The device writes guest memory.
    Write,
}

/// A piece of an access, as [`DmaSpace::with_chunks`] hands it out.
#[derive(Debug)]
pub enum DmaChunk<'a> {
    /// Directly accessible memory (an mmap-ed mapping).
    Mapped(MemSlice<'a>),
    /// A mapping without fd: use [`DmaSpace::read`] / [`DmaSpace::write`] on this range.
    Remote { iova: u64, len: u64 },
}

struct Mapping {
    info: MappingInfo,
    /// Last byte (inclusive), so a mapping may end at u64::MAX.
    last: u64,
    mem: Option<MmapRegion>,
    users: AtomicUsize,
    removed: AtomicBool,
}

/// How long a DMA message waits for its reply by default.
pub const DEFAULT_DMA_TIMEOUT: Duration = Duration::from_secs(10);

/// Local bounce buffer size for copies that involve message mappings.
const BOUNCE: u64 = 1 << 20;

/// The client's DMA mappings for one session. See the module docs for the model.
pub struct DmaSpace {
    table: RwLock<BTreeMap<u64, Arc<Mapping>>>,
    max_maps: usize,
    drained: Mutex<()>,
    drained_cv: Condvar,
    connected: AtomicBool,
    remote: Option<Arc<dyn RemoteDma>>,
    request_thread: OnceLock<ThreadId>,
    timeout: Duration,
}

impl std::fmt::Debug for DmaSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaSpace")
            .field("mappings", &self.len())
            .field("max_maps", &self.max_maps)
            .finish()
    }
}

/// An in-flight use of one mapping; dropping it may wake an unmap.
struct Use<'s> {
    space: &'s DmaSpace,
    map: Arc<Mapping>,
}

impl Drop for Use<'_> {
    fn drop(&mut self) {
        if self.map.users.fetch_sub(1, Ordering::SeqCst) == 1 && self.map.removed.load(Ordering::SeqCst) {
            let _g = self.space.drained.lock().unwrap_or_else(|p| p.into_inner());
            self.space.drained_cv.notify_all();
        }
    }
}

impl DmaSpace {
    /// A space with no client connection (device tests): fd-backed mappings work, fd-less
    /// ones fail with `NoMessageChannel`.
    pub fn new_local(max_maps: usize) -> DmaSpace {
        DmaSpace::build(max_maps, None, DEFAULT_DMA_TIMEOUT)
    }

    pub(crate) fn build(max_maps: usize, remote: Option<Arc<dyn RemoteDma>>, timeout: Duration) -> DmaSpace {
        DmaSpace {
            table: RwLock::new(BTreeMap::new()),
            max_maps,
            drained: Mutex::new(()),
            drained_cv: Condvar::new(),
            connected: AtomicBool::new(true),
            remote,
            request_thread: OnceLock::new(),
            timeout,
        }
    }

    /// Marks `id` as the thread that must never wait for a DMA message reply.
    pub(crate) fn set_request_thread(&self, id: ThreadId) {
        let _ = self.request_thread.set(id);
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.table.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mappings, in IOVA order.
    pub fn mappings(&self) -> Vec<MappingInfo> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|m| m.info)
            .collect()
    }

    /// Adds a mapping (DMA_MAP). With `fd`, the range `[fd_offset, +size)` of the file is
    /// mmap-ed now; `info.fd_offset` must then be `Some`.
    pub fn add_mapping(&self, info: MappingInfo, fd: Option<BorrowedFd<'_>>) -> Result<(), MapError> {
        let bad = MapError::BadRange {
            iova: info.iova,
            size: info.size,
        };
        if info.size == 0 {
            return Err(bad);
        }
        let last = info.iova.checked_add(info.size - 1).ok_or(bad)?;
        let mut info = info;
        let mem = match fd {
            Some(fd) => {
                let off = info.fd_offset.unwrap_or(0);
                info.fd_offset = Some(off);
                check_file_range(fd, off, info.size)?;
                let mem =
                    MmapRegion::map(fd, off, info.size, info.readable, info.writable).map_err(|e| MapError::Mmap {
                        errno: Errno::from_io(&e),
                    })?;
                if crate::sys::fd::sealed_against_shrink(fd) {
                    Some(mem)
                } else {
                    unsealed_fallback(&info);
                    info.fd_offset = None;
                    None
                }
            }
            None => {
                info.fd_offset = None;
                None
            }
        };
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        if t.len() >= self.max_maps {
            return Err(MapError::TooMany { max: self.max_maps });
        }
        let before = t.range(..=last).next_back();
        if before.is_some_and(|(_, m)| m.last >= info.iova) {
            return Err(MapError::Overlap {
                iova: info.iova,
                size: info.size,
            });
        }
        t.insert(
            info.iova,
            Arc::new(Mapping {
                info,
                last,
                mem,
                users: AtomicUsize::new(0),
                removed: AtomicBool::new(false),
            }),
        );
        Ok(())
    }

    /// Removes every mapping inside `[iova, +size)` (DMA_UNMAP) and returns them once no
    /// access to them is in flight. A mapping that straddles the range edge refuses the
    /// whole unmap (EINVAL, as VFIO type1 v2 does); an empty range is fine.
    pub fn remove_range(&self, iova: u64, size: u64) -> Result<Vec<MappingInfo>, UnmapError> {
        let bad = UnmapError::BadRange { iova, size };
        if size == 0 {
            return Err(bad);
        }
        let last = iova.checked_add(size - 1).ok_or(bad)?;
        let removed = {
            let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
            let mut keys = Vec::new();
            if let Some((&k, m)) = t.range(..iova).next_back() {
                if m.last >= iova {
                    return Err(UnmapError::Splits { iova, size, mapping: k });
                }
            }
            for (&k, m) in t.range(iova..=last) {
                if m.last > last {
                    return Err(UnmapError::Splits { iova, size, mapping: k });
                }
                keys.push(k);
            }
            keys.iter().filter_map(|k| t.remove(k)).collect::<Vec<_>>()
        };
        Ok(self.drain(removed))
    }

    /// Removes every mapping (DMA_UNMAP with the ALL flag), waiting as `remove_range` does.
    pub fn remove_all(&self) -> Vec<MappingInfo> {
        let removed: Vec<_> = {
            let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *t).into_values().collect()
        };
        self.drain(removed)
    }

    fn drain(&self, removed: Vec<Arc<Mapping>>) -> Vec<MappingInfo> {
        for m in &removed {
            m.removed.store(true, Ordering::SeqCst);
        }
        let mut g = self.drained.lock().unwrap_or_else(|p| p.into_inner());
        for m in &removed {
            while m.users.load(Ordering::SeqCst) != 0 {
                let (ng, res) = self
                    .drained_cv
                    .wait_timeout(g, Duration::from_secs(1))
                    .unwrap_or_else(|p| p.into_inner());
                g = ng;
                if res.timed_out() && m.users.load(Ordering::SeqCst) != 0 {
                    tracing::warn!(iova = m.info.iova, "unmap still waiting for an in-flight device access");
                }
            }
        }
        removed.iter().map(|m| m.info).collect()
    }

    /// Ends the session: later accesses fail with `Disconnected`, mappings go away as soon as
    /// their last in-flight access ends.
    pub(crate) fn disconnect(&self) {
        self.connected.store(false, Ordering::SeqCst);
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        t.clear();
    }

    /// Whether the client is still connected.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Finds the mapping holding `addr`, checks `access`, and marks it in use.
    /// Returns the use and how many bytes from `addr` the mapping still covers.
    fn lookup(&self, addr: u64, access: Access) -> Result<(Use<'_>, u64), DmaError> {
        if !self.connected.load(Ordering::SeqCst) {
            return Err(DmaError::Disconnected { addr });
        }
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        let (_, m) = t
            .range(..=addr)
            .next_back()
            .filter(|(_, m)| addr <= m.last)
            .ok_or(DmaError::NotMapped { addr })?;
        match access {
            Access::Read if !m.info.readable => return Err(DmaError::WriteOnly { addr }),
            Access::Write if !m.info.writable => return Err(DmaError::ReadOnly { addr }),
            _ => {}
        }
        m.users.fetch_add(1, Ordering::SeqCst);
        // (last - addr) + 1 can only overflow for a mapping of the whole 2^64 space.
        let avail = (m.last - addr).saturating_add(1);
        Ok((
            Use {
                space: self,
                map: Arc::clone(m),
            },
            avail,
        ))
    }

    fn remote(&self, addr: u64) -> Result<&Arc<dyn RemoteDma>, DmaError> {
        let r = self.remote.as_ref().ok_or(DmaError::NoMessageChannel { addr })?;
        if self.request_thread.get() == Some(&std::thread::current().id()) {
            return Err(DmaError::RequestThread { addr });
        }
        Ok(r)
    }

    fn check_range(addr: u64, len: u64) -> Result<(), DmaError> {
        if len > 0 && addr.checked_add(len - 1).is_none() {
            return Err(DmaError::TooLarge { addr, len });
        }
        Ok(())
    }

    /// Reads `dst.len()` bytes of guest memory at `iova` into `dst` (zero-copy for mmap-ed
    /// mappings: one memcpy per mapping straight into `dst`).
    pub fn read_to(&self, iova: u64, dst: &MemSlice<'_>) -> Result<(), DmaError> {
        let len = dst.len() as u64;
        Self::check_range(iova, len)?;
        let mut done = 0u64;
        while done < len {
            let addr = iova + done;
            let (u, avail) = self.lookup(addr, Access::Read)?;
            let mut n = avail.min(len - done);
            match &u.map.mem {
                Some(mem) => {
                    let src = chunk_of(mem, &u.map, addr, n);
                    let to = sub(dst, done, n);
                    // A writable destination was promised by the caller's &mut or mmap flags.
                    to.copy_from_mem(&src)
                        .map_err(|NotWritable| DmaError::ReadOnly { addr })?;
                    drop(u);
                }
                None => {
                    let remote = self.remote(addr)?;
                    n = n.min(remote.max_xfer() as u64);
                    let op = remote.send_read(addr, n as u32, self.timeout)?;
                    drop(u); // the request is on the wire: an unmap may proceed
                    op.wait_read(&sub(dst, done, n))?;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `src` to guest memory at `iova` (one memcpy per mmap-ed mapping).
    pub fn write_from(&self, iova: u64, src: &MemSlice<'_>) -> Result<(), DmaError> {
        let len = src.len() as u64;
        Self::check_range(iova, len)?;
        let mut done = 0u64;
        while done < len {
            let addr = iova + done;
            let (u, avail) = self.lookup(addr, Access::Write)?;
            let mut n = avail.min(len - done);
            match &u.map.mem {
                Some(mem) => {
                    let to = chunk_of(mem, &u.map, addr, n);
                    to.copy_from_mem(&sub(src, done, n))
                        .map_err(|NotWritable| DmaError::ReadOnly { addr })?;
                    drop(u);
                }
                None => {
                    let remote = self.remote(addr)?;
                    n = n.min(remote.max_xfer() as u64);
                    let mut data = vec![0u8; n as usize];
                    sub(src, done, n).copy_to(&mut data);
                    let op = remote.send_write(addr, &data, self.timeout)?;
                    drop(u);
                    op.wait_write()?;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Reads guest memory at `iova` into `buf`.
    pub fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.read_to(iova, &MemSlice::from_mut_slice(buf))
    }

    /// Writes `data` to guest memory at `iova`.
    pub fn write(&self, iova: u64, data: &[u8]) -> Result<(), DmaError> {
        self.write_from(iova, &MemSlice::from_slice(data))
    }

    /// Fills `len` bytes at `iova` with `byte`.
    pub fn fill(&self, iova: u64, len: u64, byte: u8) -> Result<(), DmaError> {
        Self::check_range(iova, len)?;
        let mut done = 0u64;
        while done < len {
            let addr = iova + done;
            let (u, avail) = self.lookup(addr, Access::Write)?;
            let mut n = avail.min(len - done);
            match &u.map.mem {
                Some(mem) => {
                    chunk_of(mem, &u.map, addr, n)
                        .fill(byte)
                        .map_err(|NotWritable| DmaError::ReadOnly { addr })?;
                }
                None => {
                    drop(u);
                    n = n.min(BOUNCE);
                    self.write(addr, &vec![byte; n as usize])?;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Walks `[iova, +len)` mapping by mapping, checking `access` for each, and hands every
    /// piece to `f` with its offset from `iova`. Mapped pieces are zero-copy slices (valid only
    /// during the call); `Remote` pieces are to be accessed with `read` / `write`.
    pub fn with_chunks<E: From<DmaError>>(
        &self,
        iova: u64,
        len: u64,
        access: Access,
        mut f: impl FnMut(u64, DmaChunk<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        Self::check_range(iova, len)?;
        let mut done = 0u64;
        while done < len {
            let addr = iova + done;
            let (u, avail) = self.lookup(addr, access)?;
            let n = avail.min(len - done);
            match &u.map.mem {
                Some(mem) => f(done, DmaChunk::Mapped(chunk_of(mem, &u.map, addr, n)))?,
                None => {
                    drop(u);
                    f(done, DmaChunk::Remote { iova: addr, len: n })?;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Copies `len` bytes from `src` space at `src_iova` to `dst` space at `dst_iova` (the
    /// two may be the same space). Between mmap-ed mappings this is one memcpy per pair of
    /// chunks and no bounce buffer; message mappings go through a bounce buffer.
    pub fn copy(src: &DmaSpace, src_iova: u64, dst: &DmaSpace, dst_iova: u64, len: u64) -> Result<(), CopyError> {
        let fail = |side, error, done| CopyError { side, error, done };
        Self::check_range(src_iova, len).map_err(|e| fail(CopySide::Src, e, 0))?;
        Self::check_range(dst_iova, len).map_err(|e| fail(CopySide::Dst, e, 0))?;
        let mut done = 0u64;
        while done < len {
            let (sa, da) = (src_iova + done, dst_iova + done);
            let (su, savail) = src.lookup(sa, Access::Read).map_err(|e| fail(CopySide::Src, e, done))?;
            let (du, davail) = dst
                .lookup(da, Access::Write)
                .map_err(|e| fail(CopySide::Dst, e, done))?;
            let mut n = savail.min(davail).min(len - done);
            match (&su.map.mem, &du.map.mem) {
                (Some(sm), Some(dm)) => {
                    let from = chunk_of(sm, &su.map, sa, n);
                    let to = chunk_of(dm, &du.map, da, n);
                    to.copy_from_mem(&from)
                        .map_err(|NotWritable| fail(CopySide::Dst, DmaError::ReadOnly { addr: da }, done))?;
                }
                _ => {
                    drop(su);
                    drop(du);
                    n = n.min(BOUNCE);
                    let mut buf = vec![0u8; n as usize];
                    src.read(sa, &mut buf).map_err(|e| {
                        let at = e.addr();
                        fail(CopySide::Src, e, done + at.saturating_sub(sa))
                    })?;
                    dst.write(da, &buf).map_err(|e| {
                        let at = e.addr();
                        fail(CopySide::Dst, e, done + at.saturating_sub(da))
                    })?;
                }
            }
            done += n;
        }
        Ok(())
    }
}

/// Touching an mmap past the end of its file raises SIGBUS: refuse such maps up front (for
/// regular files and memfds; other fd kinds have no meaningful size). See [`check_sealed`]
/// for why the size at map time is not enough.
fn check_file_range(fd: BorrowedFd<'_>, offset: u64, size: u64) -> Result<(), MapError> {
    let file = std::fs::File::from(fd.try_clone_to_owned().map_err(|e| MapError::Mmap {
        errno: Errno::from_io(&e),
    })?);
    let meta = file.metadata().map_err(|e| MapError::Mmap {
        errno: Errno::from_io(&e),
    })?;
    if meta.is_file() && offset.checked_add(size).is_none_or(|end| end > meta.len()) {
        return Err(MapError::PastEndOfFile {
            offset,
            size,
            file_size: meta.len(),
        });
    }
    Ok(())
}

/// The size check at map time does not stop the client from shrinking the fd later, which
/// would make the device's next access to the mapping SIGBUS. So only fds sealed against
/// shrinking (F_SEAL_SHRINK; QEMU's memory-backend-memfd seals by default, `seal=on`) are
/// mmap-ed; any other fd (memory-backend-file, a memfd with `seal=off`) is treated like a map
/// without an fd: the device reaches it with DMA_READ/DMA_WRITE messages. Nothing is refused,
/// it is only slower. (The mmap above still runs first, so an fd that cannot be mapped at all
/// reports the mmap's errno.)
fn unsealed_fallback(info: &MappingInfo) {
    tracing::warn!(
        iova = format_args!("{:#x}", info.iova),
        size = format_args!("{:#x}", info.size),
        "DMA_MAP fd is not sealed against shrinking (F_SEAL_SHRINK): a shrink would crash the device, \
         so this range is reached through DMA_READ/DMA_WRITE messages instead (slower); \
         use memory-backend-memfd with seal=on (QEMU's default) for zero-copy DMA"
    );
}

fn chunk_of<'m>(mem: &'m MmapRegion, map: &Mapping, addr: u64, n: u64) -> MemSlice<'m> {
    // lookup() guarantees map.info.iova <= addr and addr + n - 1 <= map.last, and the mmap
    // covers exactly [iova, last], so this slice is always in bounds.
    mem.slice((addr - map.info.iova) as usize, n as usize)
        .expect("chunk inside its mapping")
}

fn sub<'a>(s: &MemSlice<'a>, off: u64, n: u64) -> MemSlice<'a> {
    // Callers walk `off + n <= s.len()` by construction of the loops above.
    s.subslice(off as usize, n as usize)
        .expect("piece inside the caller's buffer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fd::memfd;
    use std::os::fd::AsFd;

    fn info(iova: u64, size: u64, writable: bool) -> MappingInfo {
        MappingInfo {
            iova,
            size,
            readable: true,
            writable,
            fd_offset: Some(0),
        }
    }

    fn space_with_pages(pages: u64) -> (DmaSpace, std::os::fd::OwnedFd) {
        let fd = memfd("t", pages * 4096).unwrap();
        let s = DmaSpace::new_local(1024);
        for i in 0..pages {
            let mut m = info(0x10000 + i * 4096, 4096, true);
            m.fd_offset = Some(i * 4096);
            s.add_mapping(m, Some(fd.as_fd())).unwrap();
        }
        (s, fd)
    }

    #[test]
    fn overlapping_map_is_refused() {
        let (s, fd) = space_with_pages(2);
        assert!(matches!(
            s.add_mapping(info(0x10800, 0x1000, true), Some(fd.as_fd())),
            Err(MapError::Overlap { .. })
        ));
        assert!(matches!(
            s.add_mapping(info(0xf000, 0x2000, true), Some(fd.as_fd())),
            Err(MapError::Overlap { .. })
        ));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn dma_map_of_unsealed_memfd_is_reached_through_messages_not_mmap() {
        // SAFETY: constant NUL-terminated name, constant flags.
        let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: memfd_create just returned this fd and nobody else owns it.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        std::fs::File::from(fd.try_clone().unwrap()).set_len(4096).unwrap();
        let s = DmaSpace::new_local(4);
        s.add_mapping(info(0, 4096, true), Some(fd.as_fd())).unwrap();
        assert_eq!(s.mappings()[0].fd_offset, None, "an unsealed fd must not be mmap-ed");
        // Shrinking it now cannot hurt the device: nothing of it is mapped.
        std::fs::File::from(fd.try_clone().unwrap()).set_len(0).unwrap();
        // The helper's memfds are sealed, so they are mmap-ed.
        let sealed = memfd("t", 4096).unwrap();
        s.add_mapping(info(0x10000, 4096, true), Some(sealed.as_fd())).unwrap();
        assert_eq!(s.mappings()[1].fd_offset, Some(0));
        assert!(
            std::fs::File::from(sealed).set_len(0).is_err(),
            "a sealed memfd cannot shrink"
        );
    }

    #[test]
    fn map_count_is_capped() {
        let fd = memfd("t", 4096).unwrap();
        let s = DmaSpace::new_local(1);
        s.add_mapping(info(0, 4096, true), Some(fd.as_fd())).unwrap();
        assert_eq!(
            s.add_mapping(info(0x1000, 4096, true), Some(fd.as_fd())),
            Err(MapError::TooMany { max: 1 })
        );
    }

    #[test]
    fn map_wrapping_the_address_space_is_refused() {
        let s = DmaSpace::new_local(4);
        assert!(matches!(
            s.add_mapping(info(u64::MAX, 2, true), None),
            Err(MapError::BadRange { .. })
        ));
        // A map ending exactly at the top is fine.
        s.add_mapping(info(u64::MAX - 0xfff, 0x1000, true), None).unwrap();
    }

    #[test]
    fn access_wrapping_the_address_space_is_too_large() {
        let (s, _fd) = space_with_pages(1);
        assert_eq!(
            s.fill(u64::MAX, 2, 0),
            Err(DmaError::TooLarge { addr: u64::MAX, len: 2 })
        );
    }

    #[test]
    fn chunks_follow_page_maps() {
        let (s, _fd) = space_with_pages(3);
        let mut seen = Vec::new();
        s.with_chunks::<DmaError>(0x10800, 0x2000, Access::Read, |off, c| {
            if let DmaChunk::Mapped(m) = c {
                seen.push((off, m.len()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 0x800), (0x800, 0x1000), (0x1800, 0x800)]);
    }

    #[test]
    fn copy_between_two_spaces_reports_the_faulting_side() {
        let (a, _fa) = space_with_pages(2);
        let (b, _fb) = space_with_pages(1);
        a.fill(0x10000, 0x2000, 0x3c).unwrap();
        let e = DmaSpace::copy(&a, 0x10000, &b, 0x10000, 0x2000).unwrap_err();
        assert_eq!(
            (e.side, e.error.clone(), e.done),
            (CopySide::Dst, DmaError::NotMapped { addr: 0x11000 }, 0x1000)
        );
        let mut out = [0u8; 4];
        b.read(0x10ffc, &mut out).unwrap();
        assert_eq!(out, [0x3c; 4]);
    }

    #[test]
    fn unmap_that_splits_a_mapping_is_refused() {
        let fd = memfd("t", 0x2000).unwrap();
        let s = DmaSpace::new_local(4);
        s.add_mapping(info(0x10000, 0x2000, true), Some(fd.as_fd())).unwrap();
        assert!(matches!(
            s.remove_range(0x11000, 0x1000),
            Err(UnmapError::Splits { .. })
        ));
        assert!(matches!(s.remove_range(0x11000, 0), Err(UnmapError::BadRange { .. })));
        assert_eq!(s.remove_range(0x10000, 0x2000).unwrap().len(), 1);
    }

    #[test]
    fn fdless_map_in_a_local_space_has_no_message_channel() {
        let s = DmaSpace::new_local(4);
        s.add_mapping(info(0x1000, 0x1000, true), None).unwrap();
        assert_eq!(s.write(0x1000, &[1]), Err(DmaError::NoMessageChannel { addr: 0x1000 }));
    }

    #[test]
    fn write_to_read_only_map_faults_at_its_first_byte() {
        let fd = memfd("t", 0x2000).unwrap();
        let s = DmaSpace::new_local(4);
        s.add_mapping(info(0x1000, 0x1000, true), Some(fd.as_fd())).unwrap();
        let mut ro = info(0x2000, 0x1000, false);
        ro.fd_offset = Some(0x1000);
        s.add_mapping(ro, Some(fd.as_fd())).unwrap();
        assert_eq!(s.write(0x1ff0, &[0u8; 32]), Err(DmaError::ReadOnly { addr: 0x2000 }));
    }

    #[test]
    fn disconnect_fails_later_accesses() {
        let (s, _fd) = space_with_pages(1);
        s.disconnect();
        assert_eq!(s.fill(0x10000, 1, 0), Err(DmaError::Disconnected { addr: 0x10000 }));
    }
}
