//! `WireError`: why a message was refused, and the errno that goes back.

use crate::errno::Errno;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{command}: payload of {actual} bytes, expected {expected}")]
    WrongSize {
        command: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("{command}: payload of {actual} bytes, need at least {min}")]
    TooShort {
        command: &'static str,
        min: usize,
        actual: usize,
    },
    #[error("{command}: argsz {argsz} does not fit (need {min}..={max})")]
    BadArgsz {
        command: &'static str,
        argsz: u32,
        min: u32,
        max: u32,
    },
    #[error("{command}: flags {flags:#x} not allowed")]
    BadFlags { command: &'static str, flags: u32 },
    #[error("{command}: {what} not supported")]
    Unsupported { command: &'static str, what: &'static str },
    #[error("{command}: count {count} exceeds {max}")]
    CountTooLarge {
        command: &'static str,
        count: u64,
        max: u64,
    },
    #[error("{command}: address {addr:#x} + size {size:#x} overflows")]
    Overflow {
        command: &'static str,
        addr: u64,
        size: u64,
    },
    #[error("{command}: {what} {value:#x} not aligned to {align:#x}")]
    Misaligned {
        command: &'static str,
        what: &'static str,
        value: u64,
        align: u64,
    },
    #[error("{command}: {what}")]
    Invalid { command: &'static str, what: &'static str },
    #[error("VERSION: capabilities string not NUL-terminated")]
    VersionNotNulTerminated,
    #[error("VERSION: capabilities are not valid JSON: {reason}")]
    VersionBadJson { reason: String },
    #[error("VERSION: {what}")]
    VersionBadCapability { what: String },
    #[error("VERSION: unsupported major version {major}")]
    VersionUnsupported { major: u16 },
    #[error("{command}: got {got} fds, expected {expected}")]
    WrongFdCount {
        command: &'static str,
        got: usize,
        expected: usize,
    },
}

impl WireError {
    /// The errno the server replies with.
    pub fn errno(&self) -> Errno {
        match self {
            WireError::Unsupported { .. } | WireError::VersionUnsupported { .. } => Errno::ENOTSUP,
            WireError::CountTooLarge { .. } => Errno::E2BIG,
            _ => Errno::EINVAL,
        }
    }
}
