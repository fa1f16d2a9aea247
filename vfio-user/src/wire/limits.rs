//! The limits this implementation advertises and enforces on the wire.

/// Largest message (header included) either side accepts: 1 MiB of data plus room for the
/// largest fixed part. A peer's length field never makes us allocate more than this.
pub const MAX_MESSAGE_SIZE: usize = (1 << 20) + 4096;

/// Largest data transfer (REGION_READ/WRITE count, DMA_READ/WRITE count) we advertise.
pub const MAX_DATA_XFER: u32 = 1 << 20;

/// DMA page size we advertise (`pgsizes`).
pub const PAGE_SIZE: u64 = 4096;

/// Most DMA mappings we advertise (QEMU refuses more than 65535).
pub const MAX_DMA_MAPS: u32 = 65535;

/// Most fds per message we advertise (QEMU's own maximum).
pub const MAX_MSG_FDS: u32 = 16;
