//! The DMA-message path of COPY and COMPARE: memory without an fd is reached by
//! DMA_READ/DMA_WRITE messages through bounce buffers of at most `BOUNCE` bytes, one list at a
//! time, so that no fd-backed piece is ever held while a message is in flight.

use dma_range::Status;

use super::{local_crc, Exec, Failure, Seg, Step, BOUNCE};
use crate::bus::AccessError;
use crate::mem::{Dir, Piece};

impl Exec<'_> {
    /// Moves `[from, step.len)` of a step through a bounce buffer, one list at a time. A DMA
    /// message is only ever sent while no fd-backed piece is held: an in-use mark held across
    /// the message would make a concurrent DMA_UNMAP wait (on the socket reader) for this
    /// worker, while the worker waits for a reply only that reader can route.
    pub(super) fn copy_bounced(&self, step: &Step<'_>, from: u64, done: &mut u64) -> Result<(), Failure> {
        let mut buf = vec![0u8; (step.len - from).min(BOUNCE as u64) as usize];
        let mut off = from;
        while off < step.len {
            let k = (step.len - off).min(BOUNCE as u64) as usize;
            self.bounce_in(step.src, step.src_addr + off, &mut buf[..k])?;
            self.bounce_out(step.dst, step.dst_addr + off, &buf[..k], done)?;
            off += k as u64;
        }
        Ok(())
    }

    /// Reads `[addr, addr + buf.len())` of segment `seg` into `buf`, piece by piece (no
    /// nested walk: a message is never sent while another piece is held).
    fn bounce_in(&self, seg: Seg<'_>, addr: u64, buf: &mut [u8]) -> Result<(), Failure> {
        let r = seg.range;
        let mut fail = None;
        let mut o = 0usize;
        let res = self
            .bus
            .segment_pieces(r, addr - r.addr, buf.len() as u64, Dir::Read, &mut |p, tgt| {
                let t0 = self.hook.start();
                let part = &mut buf[o..o + p.len()];
                match p {
                    Piece::Raw(raw) => {
                        raw.read_into(part);
                    }
                    Piece::Message { iova, .. } => {
                        if let Some(s) = (self.abort)() {
                            fail = Some(Failure::plain(s));
                            return Err(());
                        }
                        if let Err(m) = self.bus.iova.message_read(iova, part) {
                            fail = Some(self.fault(seg, Dir::Read, m.status(), m.addr));
                            return Err(());
                        }
                    }
                }
                if self.hook.enabled() {
                    let data = local_crc(self.hook, part);
                    let read = seg.access(Dir::Read, p, addr + o as u64, tgt);
                    self.record(&read, t0, data);
                }
                o += p.len();
                Ok(())
            });
        match res {
            Ok(()) => Ok(()),
            Err(AccessError::Stopped) => Err(fail.unwrap_or(Failure::plain(Status::IOMMU_FAULT))),
            Err(AccessError::Fault { status, addr }) => Err(self.fault(seg, Dir::Read, status, addr)),
        }
    }

    /// Writes `data` to `[addr, addr + data.len())` of destination segment `seg`, piece by
    /// piece, counting written bytes in `done`.
    fn bounce_out(&self, seg: Seg<'_>, addr: u64, data: &[u8], done: &mut u64) -> Result<(), Failure> {
        let r = seg.range;
        let mut fail = None;
        let mut o = 0usize;
        let res = self
            .bus
            .segment_pieces(r, addr - r.addr, data.len() as u64, Dir::Write, &mut |p, tgt| {
                let t0 = self.hook.start();
                let part = &data[o..o + p.len()];
                match p {
                    Piece::Raw(raw) => {
                        raw.write_from(part);
                    }
                    Piece::Message { iova, .. } => {
                        if let Some(s) = (self.abort)() {
                            fail = Some(Failure::plain(s));
                            return Err(());
                        }
                        if let Err(m) = self.bus.iova.message_write(iova, part) {
                            fail = Some(self.fault(seg, Dir::Write, m.status(), m.addr));
                            return Err(());
                        }
                    }
                }
                if self.hook.enabled() {
                    let data = local_crc(self.hook, part);
                    let write = seg.access(Dir::Write, p, addr + o as u64, tgt);
                    self.record(&write, t0, data);
                }
                o += p.len();
                *done += p.len() as u64;
                Ok(())
            });
        match res {
            Ok(()) => Ok(()),
            Err(AccessError::Stopped) => Err(fail.unwrap_or(Failure::plain(Status::IOMMU_FAULT))),
            Err(AccessError::Fault { status, addr }) => Err(self.fault(seg, Dir::Write, status, addr)),
        }
    }

    /// COMPARE of `[from, step.len)` of a step through two bounce buffers (see `copy_bounced`).
    /// Returns the transfer offset of the first difference.
    pub(super) fn compare_bounced(&self, step: &Step<'_>, from: u64, done: &mut u64) -> Result<Option<u64>, Failure> {
        let n = (step.len - from).min(BOUNCE as u64) as usize;
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        let mut off = from;
        while off < step.len {
            let k = (step.len - off).min(BOUNCE as u64) as usize;
            self.bounce_in(step.src, step.src_addr + off, &mut a[..k])?;
            self.bounce_in(step.dst, step.dst_addr + off, &mut b[..k])?;
            if let Some(i) = a[..k].iter().zip(&b[..k]).position(|(x, y)| x != y) {
                return Ok(Some(step.off + off + i as u64));
            }
            *done += k as u64;
            off += k as u64;
        }
        Ok(None)
    }
}
