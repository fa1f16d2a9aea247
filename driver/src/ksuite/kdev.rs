//! `/dev/phyr` as safe calls. Every ioctl goes through `KDev::ioctl`; the structs are the
//! `#[repr(C)]` mirrors of uapi.rs, and the user pointers inside them are set here from
//! slices that outlive the call. Errors keep the call name and the errno, so cases can
//! expect an exact errno.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path as FsPath;

use super::uapi::{self, BufAlloc, BufFree, BufIo, EpInfo, Info, Map, MapSeg, P2pQuery, Piece, Range, Reset, Submit};

/// A failed call: which one and the errno it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{call}: {} ({})", errno_name(*errno), std::io::Error::from_raw_os_error(*errno))]
pub struct KErr {
    pub call: &'static str,
    pub errno: i32,
}

pub type KResult<T> = std::result::Result<T, KErr>;

pub fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EINVAL => "EINVAL",
        libc::ENOENT => "ENOENT",
        libc::ENODEV => "ENODEV",
        libc::ENXIO => "ENXIO",
        libc::ERANGE => "ERANGE",
        libc::E2BIG => "E2BIG",
        libc::ENOMEM => "ENOMEM",
        libc::ENOSPC => "ENOSPC",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EREMOTEIO => "EREMOTEIO",
        libc::EXDEV => "EXDEV",
        libc::ESTALE => "ESTALE",
        libc::EBUSY => "EBUSY",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECANCELED => "ECANCELED",
        libc::EINTR => "EINTR",
        libc::EFAULT => "EFAULT",
        libc::ENOTTY => "ENOTTY",
        libc::EIO => "EIO",
        _ => "E?",
    }
}

/// What PHYR_IOC_MAP returned.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub id: u32,
    pub ranges: Vec<Range>,
    pub pieces: Vec<Piece>,
    pub total_len: u64,
}

pub struct KDev {
    file: File,
}

impl KDev {
    pub fn open(path: &FsPath) -> std::io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self { file })
    }

    /// # Safety
    /// `req` must be the request number whose size and direction belong to `T` (uapi.rs
    /// pins both), and every user pointer inside `*arg` must name memory that stays valid,
    /// and writable where the kernel writes, for as many elements as the counts in `*arg`
    /// say, until this returns.
    unsafe fn ioctl<T>(&self, call: &'static str, req: libc::c_ulong, arg: &mut T) -> KResult<()> {
        // SAFETY: the fd is open; `arg` is an exclusive borrow of a `#[repr(C)]` struct of
        // the size encoded in `req` (caller's contract), so the kernel reads and writes
        // inside it; the pointers within it are valid by the caller's contract.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), req, arg as *mut T) };
        if r < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            return Err(KErr { call, errno });
        }
        Ok(())
    }

    pub fn info(&self) -> KResult<Info> {
        let mut i = Info::default();
        // SAFETY: Info has no pointers; IOC_INFO is its request.
        unsafe { self.ioctl("INFO", uapi::IOC_INFO, &mut i)? };
        Ok(i)
    }

    pub fn ep_info(&self, ep: u32) -> KResult<EpInfo> {
        let mut i = EpInfo {
            ep,
            ..Default::default()
        };
        // SAFETY: EpInfo has no pointers; IOC_EP_INFO is its request.
        unsafe { self.ioctl("EP_INFO", uapi::IOC_EP_INFO, &mut i)? };
        Ok(i)
    }

    pub fn p2p_query(&self, provider: u32, client: u32) -> KResult<P2pQuery> {
        let mut q = P2pQuery {
            provider,
            client,
            ..Default::default()
        };
        // SAFETY: P2pQuery has no pointers; IOC_P2P_QUERY is its request.
        unsafe { self.ioctl("P2P_QUERY", uapi::IOC_P2P_QUERY, &mut q)? };
        Ok(q)
    }

    pub fn buf_alloc(&self, kind: u32, ep: u32, len: u64, bar_offset: u64) -> KResult<BufAlloc> {
        let mut a = BufAlloc {
            kind,
            ep,
            len,
            bar_offset,
            ..Default::default()
        };
        // SAFETY: BufAlloc has no pointers; IOC_BUF_ALLOC is its request.
        unsafe { self.ioctl("BUF_ALLOC", uapi::IOC_BUF_ALLOC, &mut a)? };
        Ok(a)
    }

    pub fn buf_free(&self, buf: u32) -> KResult<()> {
        let mut f = BufFree { buf, reserved: 0 };
        // SAFETY: BufFree has no pointers; IOC_BUF_FREE is its request.
        unsafe { self.ioctl("BUF_FREE", uapi::IOC_BUF_FREE, &mut f) }
    }

    pub fn buf_read(&self, buf: u32, offset: u64, out: &mut [u8]) -> KResult<()> {
        let mut io = BufIo {
            buf,
            flags: 0,
            offset,
            len: out.len() as u64,
            data: out.as_mut_ptr() as u64,
        };
        // SAFETY: `data` points at `out`, writable for `len` bytes and borrowed for the call.
        unsafe { self.ioctl("BUF_READ", uapi::IOC_BUF_READ, &mut io) }
    }

    pub fn buf_write(&self, buf: u32, offset: u64, data: &[u8]) -> KResult<()> {
        let mut io = BufIo {
            buf,
            flags: 0,
            offset,
            len: data.len() as u64,
            data: data.as_ptr() as u64,
        };
        // SAFETY: `data` points at the slice, readable for `len` bytes during the call; the
        // kernel only reads it for BUF_WRITE.
        unsafe { self.ioctl("BUF_WRITE", uapi::IOC_BUF_WRITE, &mut io) }
    }

    /// MAP with room for `ranges_cap` ranges and `pieces_cap` pieces. On ENOSPC the needed
    /// counts come back in the returned header (and nothing stays mapped).
    pub fn map_raw(
        &self,
        req: &mut Map,
        segs: &[MapSeg],
        ranges_cap: u32,
        pieces_cap: u32,
    ) -> KResult<(Vec<Range>, Vec<Piece>)> {
        let mut ranges = vec![Range::default(); ranges_cap as usize];
        let mut pieces = vec![Piece::default(); pieces_cap as usize];
        req.nr_segs = u32::try_from(segs.len()).unwrap_or(u32::MAX);
        req.segs = segs.as_ptr() as u64;
        req.nr_ranges = ranges_cap;
        req.ranges = ranges.as_mut_ptr() as u64;
        req.nr_pieces = pieces_cap;
        req.pieces = pieces.as_mut_ptr() as u64;
        // SAFETY: `segs` is readable for nr_segs (its length, or u32::MAX which the kernel
        // rejects before reading) elements; `ranges`/`pieces` are writable for their
        // capacities, the counts passed; all live across the call.
        unsafe { self.ioctl("MAP", uapi::IOC_MAP, req)? };
        ranges.truncate(req.nr_ranges as usize);
        pieces.truncate(req.nr_pieces as usize);
        Ok((ranges, pieces))
    }

    /// MAP, sizing the output arrays from the input (one piece per page touched, plus one
    /// per segment; at most 65536) and retrying once with the kernel's counts on ENOSPC.
    pub fn map(&self, ep: u32, path: uapi::Path, dir: u32, segs: &[MapSeg]) -> KResult<Mapped> {
        let page = 4096u64;
        let guess: u64 = segs.iter().map(|s| s.len / page + 2).sum();
        let cap = u32::try_from(guess.min(65536)).unwrap_or(65536);
        let mut req = Map {
            ep,
            path: path as u32,
            dir,
            ..Default::default()
        };
        let (ranges, pieces) = match self.map_raw(&mut req, segs, cap, cap) {
            Err(KErr {
                errno: libc::ENOSPC, ..
            }) => {
                let (r, p) = (req.nr_ranges, req.nr_pieces);
                req = Map {
                    ep,
                    path: path as u32,
                    dir,
                    ..Default::default()
                };
                self.map_raw(&mut req, segs, r, p)?
            }
            other => other?,
        };
        Ok(Mapped {
            id: req.map,
            ranges,
            pieces,
            total_len: req.total_len,
        })
    }

    pub fn unmap(&self, map: u32, flags: u32) -> KResult<()> {
        let mut u = uapi::Unmap { map, flags };
        // SAFETY: Unmap has no pointers; IOC_UNMAP is its request.
        unsafe { self.ioctl("UNMAP", uapi::IOC_UNMAP, &mut u) }
    }

    pub fn submit(&self, s: &mut Submit) -> KResult<()> {
        // SAFETY: Submit has no pointers; IOC_SUBMIT is its request.
        unsafe { self.ioctl("SUBMIT", uapi::IOC_SUBMIT, s) }
    }

    pub fn reset(&self, ep: u32) -> KResult<()> {
        let mut r = Reset { ep, reserved: 0 };
        // SAFETY: Reset has no pointers; IOC_RESET is its request.
        unsafe { self.ioctl("RESET", uapi::IOC_RESET, &mut r) }
    }

    /// BUF_READ into an address in the kernel's half of the address space, which no user
    /// pointer can name: the driver must answer EFAULT.
    pub fn buf_read_to_kernel_address(&self, buf: u32) -> KResult<()> {
        let mut io = BufIo {
            buf,
            flags: 0,
            offset: 0,
            len: 1,
            data: 0xffff_8000_0000_0000,
        };
        // SAFETY: the pointer is in the kernel half: copy_to_user refuses it, nothing of
        // this process can be written through it.
        unsafe { self.ioctl("BUF_READ", uapi::IOC_BUF_READ, &mut io) }
    }

    /// An ioctl request the driver does not know (for the ENOTTY case).
    pub fn unknown_request(&self) -> KResult<()> {
        let mut dummy = 0u64;
        // SAFETY: request 'P' 0x7f with no size: the driver rejects it before reading; the
        // argument is a live u64 regardless.
        unsafe { self.ioctl("0x7f", (u64::from(b'P') << 8 | 0x7f) as libc::c_ulong, &mut dummy) }
    }
}
