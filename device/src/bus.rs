//! One endpoint's view of every address space its DMA engine can reach: IOVAs through the
//! client's DMA mappings (`IovaMemory`) and bus addresses through the fabric. Resolves a range
//! into pieces and reports failures as completion statuses with the first failing address.

use dma_range::{AddrSpace, DmaRange, Status};
use phyr_trace::{Space, Target};

use crate::fabric::{Fabric, Port};
use crate::mem::{Dir, IovaMemory, MemFaultKind, Piece};

/// Why an access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessError {
    /// A resolution failure: status and the first failing address.
    Fault { status: Status, addr: u64 },
    /// The piece callback stopped the walk; the caller knows why.
    Stopped,
}

/// What `read_with`/`write_with` tell their caller about each piece: its bus address, the
/// piece, what it resolved to, and the bytes moved.
pub type Seen<'a> = dyn FnMut(u64, &Piece<'_>, Target, &[u8]) + 'a;

/// The address spaces one endpoint reaches.
#[derive(Clone, Copy)]
pub struct Bus<'a> {
    pub iova: &'a dyn IovaMemory,
    pub fabric: &'a Fabric,
    pub me: &'a Port,
}

/// The trace's address space of an access that reached no piece.
pub fn plain_space(space: AddrSpace) -> Space {
    match space {
        AddrSpace::Iova => Space::Iova,
        AddrSpace::Bus => Space::Bus,
    }
}

/// The trace's address space of a piece.
pub fn trace_space(space: AddrSpace, piece: &Piece<'_>) -> Space {
    match (space, piece.is_message()) {
        (AddrSpace::Bus, _) => Space::Bus,
        (AddrSpace::Iova, true) => Space::Message,
        (AddrSpace::Iova, false) => Space::Iova,
    }
}

impl<'a> Bus<'a> {
    /// Calls `f` with the pieces of `[addr, addr + len)` in `space`, in order.
    pub fn pieces(
        &self,
        space: AddrSpace,
        addr: u64,
        len: u64,
        dir: Dir,
        f: &mut dyn FnMut(Piece<'_>, Target) -> Result<(), ()>,
    ) -> Result<(), AccessError> {
        if len == 0 {
            return Ok(());
        }
        match space {
            AddrSpace::Iova => self.iova.access(addr, len, dir, f).map_err(|e| match e.kind {
                MemFaultKind::Stopped => AccessError::Stopped,
                _ => AccessError::Fault {
                    status: e.status(),
                    addr: e.addr,
                },
            }),
            AddrSpace::Bus => {
                let r = self.fabric.route(self.me, addr, len).map_err(|e| AccessError::Fault {
                    status: e.status,
                    addr: e.addr,
                })?;
                let target = Target::PeerBar {
                    endpoint: r.endpoint,
                    bar: 2,
                    offset: r.offset,
                };
                f(Piece::Raw(r.piece), target).map_err(|()| AccessError::Stopped)
            }
        }
    }

    /// Calls `f` with the pieces of `[seg.addr + off, + len)`, a part of data segment `seg`.
    /// An IOVA part resolves on its own, mapping by mapping. A bus-address segment is routed
    /// *whole* first: ABI §5 bounds a segment by the BAR that decodes its start, so a segment
    /// that runs past that BAR's end fails (`BUS_PAST_BAR_END`, at the BAR's end) on every
    /// part, its first included, even where a neighbouring BAR decodes the bytes past the end.
    pub fn segment_pieces(
        &self,
        seg: &DmaRange,
        off: u64,
        len: u64,
        dir: Dir,
        f: &mut dyn FnMut(Piece<'_>, Target) -> Result<(), ()>,
    ) -> Result<(), AccessError> {
        if len == 0 {
            return Ok(());
        }
        match seg.space() {
            AddrSpace::Iova => self.pieces(AddrSpace::Iova, seg.addr.wrapping_add(off), len, dir, f),
            AddrSpace::Bus => {
                let r = self
                    .fabric
                    .route(self.me, seg.addr, u64::from(seg.len))
                    .map_err(|e| AccessError::Fault {
                        status: e.status,
                        addr: e.addr,
                    })?;
                let target = Target::PeerBar {
                    endpoint: r.endpoint,
                    bar: 2,
                    offset: r.offset.wrapping_add(off),
                };
                let part = r.piece.sub(off as usize, len as usize);
                f(Piece::Raw(part), target).map_err(|()| AccessError::Stopped)
            }
        }
    }

    /// Reads `buf.len()` bytes at `addr` (list blocks, queue entries).
    pub fn read(&self, space: AddrSpace, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        self.read_with(space, addr, buf, &mut |_, _, _, _| {})
    }

    /// `read`, telling `seen` about each piece read (its address, piece, target and the bytes
    /// it put in `buf`) for tracing.
    pub fn read_with(
        &self,
        space: AddrSpace,
        addr: u64,
        buf: &mut [u8],
        seen: &mut Seen<'_>,
    ) -> Result<(), AccessError> {
        let mut off = 0usize;
        let mut msg_fault = None;
        let total = buf.len();
        let r = self.pieces(space, addr, total as u64, Dir::Read, &mut |p, t| {
            let dst = &mut buf[off..off + p.len().min(total - off)];
            match p {
                Piece::Raw(r) => {
                    r.read_into(dst);
                }
                Piece::Message { iova, .. } => {
                    if let Err(e) = self.iova.message_read(iova, dst) {
                        msg_fault = Some(AccessError::Fault {
                            status: e.status(),
                            addr: e.addr,
                        });
                        return Err(());
                    }
                }
            }
            seen(addr.wrapping_add(off as u64), &p, t, dst);
            off += dst.len();
            Ok(())
        });
        match (r, msg_fault) {
            (Err(AccessError::Stopped), Some(f)) => Err(f),
            (r, _) => r,
        }
    }

    /// Reads the little-endian u32 at `addr` (a shadow doorbell) with acquire ordering: the
    /// device's later reads (the SQ entries it publishes) see what the driver wrote before it.
    /// Directly addressable, 4-byte aligned memory is read with one atomic load; anything else
    /// (a DMA message, a word split across mappings) is copied, then fenced.
    pub fn load_u32(&self, space: AddrSpace, addr: u64) -> Result<u32, AccessError> {
        let mut whole = None;
        self.pieces(space, addr, 4, Dir::Read, &mut |p, _| {
            if let Piece::Raw(r) = p {
                whole = r.load_acquire_u32(0);
            }
            // Not a whole aligned word: fall back to a copy below.
            if whole.is_none() {
                return Err(());
            }
            Ok(())
        })
        .or_else(|e| match e {
            AccessError::Stopped => Ok(()),
            e => Err(e),
        })?;
        if let Some(v) = whole {
            return Ok(v);
        }
        let mut b = [0u8; 4];
        self.read(space, addr, &mut b)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        Ok(u32::from_le_bytes(b))
    }

    /// Writes `data` at `addr` (completions).
    pub fn write(&self, space: AddrSpace, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        self.write_with(space, addr, data, &mut |_, _, _, _| {})
    }

    /// Makes the bytes at offsets `marks` (ascending) of `data` visible at `addr`, each after
    /// everything written before the call: the second half of a two-pass write whose first
    /// pass (`write_with`) put `data` there with other values in those bytes. Directly
    /// addressable memory gets one release store per marked byte, in order (ABI §6: a
    /// completion's phase byte becomes visible last); memory reached by DMA messages gets `data`
    /// again in one DMA_WRITE per piece (the client applied the first pass before it answered
    /// it, so only the marked bytes change). `seen` hears of each piece as `write_with` says.
    pub fn publish_with(
        &self,
        space: AddrSpace,
        addr: u64,
        data: &[u8],
        marks: &mut dyn Iterator<Item = usize>,
        seen: &mut Seen<'_>,
    ) -> Result<(), AccessError> {
        let mut off = 0usize;
        let mut msg_fault = None;
        let mut mark = marks.next();
        let r = self.pieces(space, addr, data.len() as u64, Dir::Write, &mut |p, t| {
            let end = off + p.len().min(data.len() - off);
            match p {
                Piece::Raw(r) => {
                    while let Some(m) = mark.filter(|&m| m < end) {
                        if m >= off {
                            r.store_release(m - off, data[m]);
                        }
                        mark = marks.next();
                    }
                }
                Piece::Message { iova, .. } => {
                    if let Err(e) = self.iova.message_write(iova, &data[off..end]) {
                        msg_fault = Some(AccessError::Fault {
                            status: e.status(),
                            addr: e.addr,
                        });
                        return Err(());
                    }
                }
            }
            seen(addr.wrapping_add(off as u64), &p, t, &data[off..end]);
            off = end;
            Ok(())
        });
        match (r, msg_fault) {
            (Err(AccessError::Stopped), Some(f)) => Err(f),
            (r, _) => r,
        }
    }

    /// `write`, telling `seen` about each piece written (and its bytes), for tracing.
    pub fn write_with(&self, space: AddrSpace, addr: u64, data: &[u8], seen: &mut Seen<'_>) -> Result<(), AccessError> {
        let mut off = 0usize;
        let mut msg_fault = None;
        let r = self.pieces(space, addr, data.len() as u64, Dir::Write, &mut |p, t| {
            let src = &data[off..off + p.len().min(data.len() - off)];
            match p {
                Piece::Raw(r) => {
                    r.write_from(src);
                }
                Piece::Message { iova, .. } => {
                    if let Err(e) = self.iova.message_write(iova, src) {
                        msg_fault = Some(AccessError::Fault {
                            status: e.status(),
                            addr: e.addr,
                        });
                        return Err(());
                    }
                }
            }
            seen(addr.wrapping_add(off as u64), &p, t, src);
            off += src.len();
            Ok(())
        });
        match (r, msg_fault) {
            (Err(AccessError::Stopped), Some(f)) => Err(f),
            (r, _) => r,
        }
    }
}
