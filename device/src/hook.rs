//! The recording hook: the one function every DMA the engine performs passes through
//! ([`Hook::dma`]). With tracing off it is a single branch on an `Option`; with tracing on it
//! builds a `phyr_trace::DmaRecord` (with a CRC32C of the moved bytes when asked) and hands
//! it to the endpoint's `phyr_trace::Recorder`.

use phyr_trace::{Direction, DmaRecord, Event, Payload, Record, Recorder, Space, Target};

/// Which list (or structure) a transaction belongs to; `DmaRecord::list` holds its code.
pub use dma_range::ListKind;

use crate::mem::Dir;

/// The command a transaction belongs to.
#[derive(Debug, Clone, Copy, Default)]
pub struct CmdTag {
    pub queue: u16,
    pub command_id: u16,
    pub opcode: u8,
}

/// The CRC32C of the bytes a transaction moved, computed by the engine from the very bytes it
/// moved (the hook never reads guest memory itself).
#[derive(Debug, Clone, Copy)]
pub enum Data {
    /// Not computed (data CRCs off, or a failed transfer).
    None,
    Crc(u32),
}

/// One transaction as the engine describes it to the hook.
#[derive(Debug, Clone, Copy)]
pub struct Txn {
    pub tag: CmdTag,
    pub segment: u32,
    pub list: ListKind,
    pub dir: Dir,
    pub space: Space,
    pub addr: u64,
    pub len: u64,
    pub target: Target,
    pub status: u16,
    pub data: Data,
    /// `Hook::start()` taken before the transaction.
    pub t0: u64,
}

/// An endpoint's recording hook.
#[derive(Debug, Clone, Default)]
pub struct Hook {
    rec: Recorder,
    endpoint: u16,
}

impl Hook {
    pub fn new(rec: Recorder, endpoint: u16) -> Self {
        Self { rec, endpoint }
    }

    /// A hook that records nothing.
    pub fn off(endpoint: u16) -> Self {
        Self {
            rec: Recorder::disabled(),
            endpoint,
        }
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.rec.is_enabled()
    }

    /// Whether transactions should carry a CRC32C of their data.
    #[inline]
    pub fn wants_crc(&self) -> bool {
        self.rec.is_enabled() && self.rec.wants_crc()
    }

    /// A timestamp to pass back in `Txn::t0` (0 when tracing is off).
    #[inline]
    pub fn start(&self) -> u64 {
        if self.rec.is_enabled() {
            self.rec.now_ns()
        } else {
            0
        }
    }

    /// Every DMA transaction of the engine passes through here.
    #[inline]
    pub fn dma(&self, t: &Txn) {
        if !self.rec.is_enabled() {
            return;
        }
        self.record_dma(t);
    }

    /// Two transactions that ended together (the read and the write of a copied piece): one
    /// clock read for both.
    #[inline]
    pub fn dma_pair(&self, a: &Txn, b: &Txn) {
        if !self.rec.is_enabled() {
            return;
        }
        let now = self.rec.now_ns();
        self.record_dma_at(a, now);
        self.record_dma_at(b, now);
    }

    fn record_dma(&self, t: &Txn) {
        // List blocks and ring entries are a few dozen bytes: a second clock read would cost
        // more than the transfer. They carry their start time only (`dur_ns` 0, "not
        // measured" in the format).
        let now = match t.list {
            ListKind::Descriptor | ListKind::Queue => t.t0,
            ListKind::Src | ListKind::Dst => self.rec.now_ns(),
        };
        self.record_dma_at(t, now);
    }

    fn record_dma_at(&self, t: &Txn, now: u64) {
        let crc32c = if t.status == 0 && self.rec.wants_crc() {
            match t.data {
                Data::None => None,
                Data::Crc(c) => Some(c),
            }
        } else {
            None
        };
        let rec = DmaRecord {
            endpoint: self.endpoint,
            queue: t.tag.queue,
            command_id: t.tag.command_id,
            opcode: t.tag.opcode,
            segment: t.segment,
            list: t.list as u8,
            direction: match t.dir {
                Dir::Read => Direction::Read,
                Dir::Write => Direction::Write,
            },
            space: t.space,
            addr: t.addr,
            len: u32::try_from(t.len).unwrap_or(u32::MAX),
            target: t.target,
            status: t.status,
            crc32c,
            dur_ns: u32::try_from(now.saturating_sub(t.t0)).unwrap_or(u32::MAX),
        };
        self.rec.record(Record {
            t_ns: t.t0,
            payload: Payload::Dma(rec),
        });
    }

    /// A protocol or device event (map, unmap, reset, interrupt, completion...).
    #[inline]
    pub fn event(&self, event: impl FnOnce() -> Event) {
        if self.rec.is_enabled() {
            self.rec.record_now(Payload::Event {
                endpoint: self.endpoint,
                event: event(),
            });
        }
    }

    /// Closes the trace file (on shutdown): what is buffered, then the `Closed` record that
    /// tells readers the device stopped in an orderly way (trace/FORMAT.md).
    pub fn close(&self) {
        if let Err(e) = self.rec.close() {
            tracing::warn!(endpoint = self.endpoint, "closing the trace failed: {e}");
        }
    }
}
