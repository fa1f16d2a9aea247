//! Wire formats: the 16-byte header, the command numbers, and one validator per message.
//!
//! Every parser takes the payload (the bytes after the header) and returns a typed message or
//! a [`WireError`]; each `WireError` knows the errno the server answers with.

mod bytes;
mod dma;
mod error;
mod header;
mod info;
mod limits;
mod region_io;
mod set_irqs;
mod version;

pub use dma::{dma_flags, DmaMap, DmaRwLayout, DmaRwReply, DmaRwRequest, DmaUnmap, DMA_MAP_SIZE, DMA_UNMAP_SIZE};
pub use error::WireError;
pub use header::{Command, Header, FLAG_ERROR, FLAG_NO_REPLY, HEADER_SIZE, TYPE_COMMAND, TYPE_MASK, TYPE_REPLY};
pub use info::{
    DeviceInfoMsg, IrqInfoMsg, RegionInfoMsg, SparseArea, DEVICE_INFO_SIZE, IRQ_INFO_SIZE, MAX_ARGSZ, REGION_INFO_SIZE,
};
pub use limits::{MAX_DATA_XFER, MAX_DMA_MAPS, MAX_MESSAGE_SIZE, MAX_MSG_FDS, PAGE_SIZE};
pub use region_io::{RegionAccess, WriteMulti, WriteOne, MULTI_DATA, MULTI_MAX, REGION_ACCESS_SIZE};
pub use set_irqs::{IrqAction, IrqData, SetIrqs, SET_IRQS_SIZE};
pub use version::{Capabilities, Version};
