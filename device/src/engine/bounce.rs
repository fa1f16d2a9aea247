//! The DMA-message path of COPY and COMPARE: memory without an fd is reached by
//! DMA_READ/DMA_WRITE messages through bounce buffers of at most `BOUNCE` bytes, one list at a
//! time, so that no fd-backed piece is ever held while a message is in flight.

use dma_range::{DmaRange, Status, FAULT_LIST_DST, FAULT_LIST_SRC};

use super::{local_crc, Exec, Failure, Step, BOUNCE};
use crate::bus::AccessError;
use crate::hook::ListKind;
use crate::mem::{Dir, Piece};

impl Exec<'_> {
    /// Moves `[from, st.len)` of a step through a bounce buffer, one list at a time. A DMA
    /// message is only ever sent while no fd-backed piece is held: an in-use mark held across
    /// the message would make a concurrent DMA_UNMAP wait (on the socket reader) for this
    /// worker, while the worker waits for a reply only that reader can route.
    pub(super) fn copy_bounced(
        &self,
        st: &Step,
        sr: &DmaRange,
        dr: &DmaRange,
        from: u64,
        done: &mut u64,
    ) -> Result<(), Failure> {
        let mut buf = vec![0u8; (st.len - from).min(BOUNCE as u64) as usize];
        let mut off = from;
        while off < st.len {
            let k = (st.len - off).min(BOUNCE as u64) as usize;
            self.bounce_in(FAULT_LIST_SRC, st.si, sr, st.s + off, &mut buf[..k])?;
            self.bounce_out(st.di, dr, st.d + off, &buf[..k], done)?;
            off += k as u64;
        }
        Ok(())
    }

    /// Reads `[addr, addr + buf.len())` of list `list` segment `seg` into `buf`, piece by
    /// piece (no nested walk: a message is never sent while another piece is held).
    fn bounce_in(&self, list: u8, seg: usize, r: &DmaRange, addr: u64, buf: &mut [u8]) -> Result<(), Failure> {
        let kind = if list == FAULT_LIST_DST {
            ListKind::Dst
        } else {
            ListKind::Src
        };
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
                            fail = Some(self.fault(list, seg, r, Dir::Read, m.status(), m.addr));
                            return Err(());
                        }
                    }
                }
                if self.hook.enabled() {
                    let data = local_crc(self.hook, part);
                    self.record_with(kind, seg, r, Dir::Read, p, addr + o as u64, tgt, t0, data);
                }
                o += p.len();
                Ok(())
            });
        match res {
            Ok(()) => Ok(()),
            Err(AccessError::Stopped) => Err(fail.unwrap_or(Failure::plain(Status::IOMMU_FAULT))),
            Err(AccessError::Fault { status, addr }) => Err(self.fault(list, seg, r, Dir::Read, status, addr)),
        }
    }

    /// Writes `data` to `[addr, addr + data.len())` of destination segment `seg`, piece by
    /// piece, counting written bytes in `done`.
    fn bounce_out(&self, seg: usize, r: &DmaRange, addr: u64, data: &[u8], done: &mut u64) -> Result<(), Failure> {
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
                            fail = Some(self.fault(FAULT_LIST_DST, seg, r, Dir::Write, m.status(), m.addr));
                            return Err(());
                        }
                    }
                }
                if self.hook.enabled() {
                    let data = local_crc(self.hook, part);
                    self.record_with(ListKind::Dst, seg, r, Dir::Write, p, addr + o as u64, tgt, t0, data);
                }
                o += p.len();
                *done += p.len() as u64;
                Ok(())
            });
        match res {
            Ok(()) => Ok(()),
            Err(AccessError::Stopped) => Err(fail.unwrap_or(Failure::plain(Status::IOMMU_FAULT))),
            Err(AccessError::Fault { status, addr }) => {
                Err(self.fault(FAULT_LIST_DST, seg, r, Dir::Write, status, addr))
            }
        }
    }

    /// COMPARE of `[from, st.len)` of a step through two bounce buffers (see `copy_bounced`).
    /// Returns the transfer offset of the first difference.
    pub(super) fn compare_bounced(
        &self,
        st: &Step,
        sr: &DmaRange,
        dr: &DmaRange,
        from: u64,
        done: &mut u64,
    ) -> Result<Option<u64>, Failure> {
        let n = (st.len - from).min(BOUNCE as u64) as usize;
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        let mut off = from;
        while off < st.len {
            let k = (st.len - off).min(BOUNCE as u64) as usize;
            self.bounce_in(FAULT_LIST_SRC, st.si, sr, st.s + off, &mut a[..k])?;
            self.bounce_in(FAULT_LIST_DST, st.di, dr, st.d + off, &mut b[..k])?;
            if let Some(i) = a[..k].iter().zip(&b[..k]).position(|(x, y)| x != y) {
                return Ok(Some(st.off + off + i as u64));
            }
            *done += k as u64;
            off += k as u64;
        }
        Ok(None)
    }
}
