//! Errors of the VFIO layer: each says which operation failed on which object, with the errno.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{op} failed on {what}: {source}")]
    Ioctl {
        op: &'static str,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("VFIO API version is {0}, this driver speaks version 0")]
    ApiVersion(i32),
    #[error("the VFIO container supports neither TYPE1v2 nor TYPE1 IOMMU (is vfio_iommu_type1 loaded and an IOMMU enabled?)")]
    NoType1,
    #[error(
        "IOMMU group {0} is not viable: some device in it is bound to a host driver (bind all of them to vfio-pci)"
    )]
    GroupNotViable(u32),
    #[error("mmap of {what} ({len:#x} bytes at region offset {offset:#x}) failed: {source}")]
    Mmap {
        what: String,
        offset: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("region {index} of {device} is not mmap-able (flags {flags:#x})")]
    NotMappable { device: String, index: u32, flags: u32 },
    #[error("{what}: access of {len} bytes at {offset:#x} is outside the {size:#x}-byte region or misaligned")]
    OutOfBounds {
        what: String,
        offset: u64,
        len: usize,
        size: u64,
    },
    #[error("short {op} on {what}: {done} of {want} bytes")]
    Short {
        op: &'static str,
        what: String,
        done: usize,
        want: usize,
    },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, VfioError>;

/// The errno of the last failed libc call, as an `io::Error`.
pub(crate) fn last_os() -> io::Error {
    io::Error::last_os_error()
}
