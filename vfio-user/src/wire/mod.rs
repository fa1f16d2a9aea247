//! Wire formats: the 16-byte header, the command numbers, and one validator per message.
//!
//! Every parser takes the payload (the bytes after the header) and returns a typed message or
//! a [`WireError`]; each `WireError` knows the errno the server answers with.

mod bytes;
mod dma;
mod error;
mod header;
mod info;
mod region_io;
mod set_irqs;
mod version;

pub use dma::{dma_flags, DmaMap, DmaRwLayout, DmaRwReply, DmaRwRequest, DmaUnmap, DMA_MAP_SIZE, DMA_UNMAP_SIZE};
pub use error::WireError;
pub use header::{Command, Header, FLAG_ERROR, FLAG_NO_REPLY, HEADER_SIZE, TYPE_COMMAND, TYPE_MASK, TYPE_REPLY};
pub use info::{
    DeviceInfoMsg, IrqInfoMsg, RegionInfoMsg, SparseArea, DEVICE_INFO_SIZE, IRQ_INFO_SIZE, MAX_ARGSZ, REGION_INFO_SIZE,
};
pub use region_io::{RegionAccess, WriteMulti, WriteOne, MULTI_DATA, MULTI_MAX, REGION_ACCESS_SIZE};
pub use set_irqs::{IrqAction, IrqData, SetIrqs, SET_IRQS_SIZE};
pub use version::{Capabilities, Version};

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
