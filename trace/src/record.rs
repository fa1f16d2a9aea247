//! One trace record: what the device did on the bus, or a protocol event.
//!
//! This struct is the contract between the device (which fills it in through
//! its recording hook) and the trace tools (which store, read, filter and
//! export it). The binary encoding lives in `format.rs`.

use serde::{Deserialize, Serialize};

/// Which address space a DMA transaction used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    /// An IOVA, translated through the DMA mappings the client (QEMU) sent.
    Iova,
    /// A PCI bus address, routed through the fabric to a BAR.
    Bus,
    /// An IOVA whose mapping came without an fd: reached with DMA_READ/DMA_WRITE messages.
    Message,
}

/// Direction seen from the device: `Read` = device reads memory (memory -> device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Read,
    Write,
}

/// Where an access landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Nothing: the access failed before it reached memory.
    None,
    /// Guest memory: index of the DMA mapping (in map order) and offset inside it.
    GuestMemory { mapping: u32, offset: u64 },
    /// A BAR of an endpoint in the fabric (the own endpoint included).
    PeerBar { endpoint: u16, bar: u8, offset: u64 },
}

/// A DMA transaction performed by the DMA engine (one per segment piece).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmaRecord {
    pub endpoint: u16,
    pub queue: u16,
    pub command_id: u16,
    pub opcode: u8,
    /// Index of the dma_range entry in its list (counting across chained blocks).
    pub segment: u32,
    /// A `dma_range::ListKind` code: 0 = source list (or the only list), 1 = destination
    /// list, 2 = the list itself (descriptor fetch), 3 = queue entry / completion write.
    pub list: u8,
    pub direction: Direction,
    pub space: Space,
    pub addr: u64,
    pub len: u32,
    pub target: Target,
    /// Completion status code (dma-range `Status`), 0 on success.
    pub status: u16,
    /// CRC32C of the bytes moved, when CRC recording is on and the access succeeded.
    pub crc32c: Option<u32>,
    /// How long the transaction took, in nanoseconds (0 if not measured). `t_ns` is its start.
    pub dur_ns: u32,
}

/// A protocol or device event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    DmaMap {
        iova: u64,
        size: u64,
        readable: bool,
        writable: bool,
        has_fd: bool,
        /// With `has_fd`: the offset in that fd of the mapping's first byte (DMA_MAP's
        /// `offset`; with the recipes' memory-backend-memfd, the offset in guest RAM). `None`
        /// without an fd, and in version 1 files, which did not record it.
        fd_offset: Option<u64>,
    },
    DmaUnmap {
        iova: u64,
        size: u64,
        all: bool,
    },
    Reset,
    Interrupt {
        vector: u16,
    },
    CommandDone {
        queue: u16,
        command_id: u16,
        opcode: u8,
        status: u16,
        result: u64,
    },
    Connected,
    Disconnected,
    Error {
        message: String,
    },
    /// The recorder dropped `records` records: the file reached its size cap (this marker is
    /// then the last record and its count is kept up to date), or the writer fell behind.
    Dropped {
        records: u64,
    },
    /// The recorder closed the file in an orderly way (the device shut down, or the last
    /// handle was dropped): always the last record. A file without one was not closed: its
    /// writer was killed, or is still recording.
    Closed,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    Dma(DmaRecord),
    Event { endpoint: u16, event: Event },
}

/// One record: a monotonic timestamp plus what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Nanoseconds since the trace file was opened (monotonic clock).
    pub t_ns: u64,
    pub payload: Payload,
}
