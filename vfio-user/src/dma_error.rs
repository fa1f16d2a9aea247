//! Why a device access to the client's DMA mappings, a copy between them, or a change to the
//! mapping table failed, and the errno each refusal answers the client with.

use std::time::Duration;

use crate::errno::Errno;

/// Why a device access failed. `addr` is the first IOVA that could not be accessed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    #[error("IOVA {addr:#x} is not mapped")]
    NotMapped { addr: u64 },
    #[error("write to read-only mapping at IOVA {addr:#x}")]
    ReadOnly { addr: u64 },
    #[error("read from write-only mapping at IOVA {addr:#x}")]
    WriteOnly { addr: u64 },
    #[error("client disconnected (IOVA {addr:#x})")]
    Disconnected { addr: u64 },
    #[error("client refused DMA at IOVA {addr:#x}: {errno}")]
    Remote { addr: u64, errno: Errno },
    #[error("access of {len:#x} bytes at IOVA {addr:#x} wraps the address space")]
    TooLarge { addr: u64, len: u64 },
    #[error("no reply to DMA message for IOVA {addr:#x} within {timeout:?}")]
    Timeout { addr: u64, timeout: Duration },
    #[error("message DMA at IOVA {addr:#x} from the request thread would deadlock")]
    RequestThread { addr: u64 },
    #[error("IOVA {addr:#x} needs DMA messages but this space has no client connection")]
    NoMessageChannel { addr: u64 },
}

impl DmaError {
    /// The faulting address.
    pub fn addr(&self) -> u64 {
        match *self {
            DmaError::NotMapped { addr }
            | DmaError::ReadOnly { addr }
            | DmaError::WriteOnly { addr }
            | DmaError::Disconnected { addr }
            | DmaError::Remote { addr, .. }
            | DmaError::TooLarge { addr, .. }
            | DmaError::Timeout { addr, .. }
            | DmaError::RequestThread { addr }
            | DmaError::NoMessageChannel { addr } => addr,
        }
    }
}

/// Which side of a [`DmaSpace::copy`](crate::DmaSpace::copy) faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopySide {
    Src,
    Dst,
}

/// A failed copy: the side, the error (with the faulting address) and bytes copied before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{side:?} fault after {done} bytes: {error}")]
pub struct CopyError {
    pub side: CopySide,
    pub error: DmaError,
    pub done: u64,
}

/// Why a mapping could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("[{iova:#x}, +{size:#x}) overlaps an existing mapping")]
    Overlap { iova: u64, size: u64 },
    #[error("already {max} mappings")]
    TooMany { max: usize },
    #[error("[{iova:#x}, +{size:#x}) is empty or wraps")]
    BadRange { iova: u64, size: u64 },
    #[error("mmap of the mapping's fd failed: {errno}")]
    Mmap { errno: Errno },
    #[error("file range [{offset:#x}, +{size:#x}) runs past the end of the file ({file_size:#x} bytes)")]
    PastEndOfFile { offset: u64, size: u64, file_size: u64 },
}

impl MapError {
    pub fn errno(&self) -> Errno {
        match self {
            MapError::Overlap { .. } => Errno::EEXIST,
            MapError::TooMany { .. } => Errno::ENOSPC,
            MapError::BadRange { .. } | MapError::PastEndOfFile { .. } => Errno::EINVAL,
            MapError::Mmap { errno } => *errno,
        }
    }
}

/// Why an unmap was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnmapError {
    #[error("[{iova:#x}, +{size:#x}) cuts the mapping at {mapping:#x} in two")]
    Splits { iova: u64, size: u64, mapping: u64 },
    #[error("[{iova:#x}, +{size:#x}) is empty or wraps")]
    BadRange { iova: u64, size: u64 },
}

impl UnmapError {
    pub fn errno(&self) -> Errno {
        Errno::EINVAL
    }
}
