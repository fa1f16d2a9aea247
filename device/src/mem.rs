//! The engine's view of memory: what it needs from "memory by IOVA" (the client's DMA
//! mappings) and from interrupts, as two small traits, so the DMA engine does not depend on the
//! transport. `client_mem.rs` implements them over the vfio-user client's DMA mappings and
//! eventfds; unit tests implement them over plain buffers.
//!
//! Memory is handed to the engine in *pieces*: a directly addressable span (`Piece::Raw`,
//! valid only inside the callback that received it, because an unmap waits for that callback
//! to return: the callback takes `Piece<'_>` for any lifetime, so the compiler keeps the piece
//! from escaping it) or a span reachable only by DMA_READ/DMA_WRITE messages (`Piece::Message`).

use dma_range::Status;
use phyr_trace::Target;

pub use crate::raw::RawPiece;

/// One span of a resolved range.
#[derive(Debug, Clone, Copy)]
pub enum Piece<'a> {
    /// Directly addressable memory.
    Raw(RawPiece<'a>),
    /// An IOVA span of an fd-less mapping: reach it with `message_read` / `message_write`.
    Message { iova: u64, len: usize },
}

impl<'a> Piece<'a> {
    pub fn len(&self) -> usize {
        match self {
            Piece::Raw(r) => r.len(),
            Piece::Message { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the span is reached by messages (for the trace's address space).
    pub fn is_message(&self) -> bool {
        matches!(self, Piece::Message { .. })
    }

    /// The sub-span `[off, off + len)`, clamped to this piece.
    pub fn sub(&self, off: usize, len: usize) -> Piece<'a> {
        match *self {
            Piece::Raw(r) => Piece::Raw(r.sub(off, len)),
            Piece::Message { iova, len: l } => {
                let off = off.min(l);
                Piece::Message {
                    iova: iova.wrapping_add(off as u64),
                    len: len.min(l - off),
                }
            }
        }
    }
}

/// Why a memory access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemFaultKind {
    /// No DMA mapping covers the address (IOMMU fault).
    NotMapped,
    /// A write through a read-only mapping (or a read through a write-only one).
    Permission,
    /// The client refused or failed a DMA_READ/DMA_WRITE message.
    Message,
    /// The client is gone.
    Disconnected,
    /// The callback asked to stop (its caller knows why).
    Stopped,
}

/// A failed access with the first address that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?} at {addr:#x}")]
pub struct MemFault {
    pub kind: MemFaultKind,
    pub addr: u64,
}

impl MemFault {
    pub fn new(kind: MemFaultKind, addr: u64) -> Self {
        Self { kind, addr }
    }

    /// The completion status this fault becomes.
    pub fn status(&self) -> Status {
        match self.kind {
            MemFaultKind::NotMapped | MemFaultKind::Disconnected | MemFaultKind::Stopped => Status::IOMMU_FAULT,
            MemFaultKind::Permission => Status::WRITE_READ_ONLY,
            MemFaultKind::Message => Status::DMA_MESSAGE_FAILED,
        }
    }
}

/// Access direction, seen from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// The device reads memory.
    Read,
    /// The device writes memory.
    Write,
}

/// The callback that receives each piece of a range in order, with where it landed;
/// `Err(())` stops the walk (the access then fails with `MemFaultKind::Stopped`).
pub type PieceFn<'a> = dyn FnMut(Piece<'_>, Target) -> Result<(), ()> + 'a;

/// Memory addressed by IOVA: the client's DMA mappings.
pub trait IovaMemory: Send + Sync {
    /// Resolves `[iova, iova + len)` for `dir` and calls `f` with its pieces in order. Pieces are
    /// valid until `f` returns. Fails with the first address that is unmapped or not
    /// permitted; pieces before it may already have been handed out.
    fn access(&self, iova: u64, len: u64, dir: Dir, f: &mut PieceFn<'_>) -> Result<(), MemFault>;
    /// Reads a `Piece::Message` span by DMA_READ messages.
    fn message_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), MemFault>;
    /// Writes a `Piece::Message` span by DMA_WRITE messages.
    fn message_write(&self, iova: u64, data: &[u8]) -> Result<(), MemFault>;
    /// Whether some thread is inside `message_read`/`message_write` now (waiting for the
    /// client, which may itself be waiting for the device's reply to a request).
    fn messages_in_flight(&self) -> bool {
        false
    }
}

/// Where the engine raises interrupts.
pub trait IrqSink: Send + Sync {
    /// Raises MSI-X `vector` (masking and pending bits are the transport's business).
    fn msix(&self, vector: u16);
}
