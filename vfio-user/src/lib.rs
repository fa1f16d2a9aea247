//! vfio-user protocol layer: wire types, framing over UNIX stream sockets with SCM_RIGHTS fd
//! passing, a validating server loop, and a client for tests and benchmarks.
//! It knows nothing of phyr's device: a device implements [`Device`] and gets a [`ClientHandles`].
//!
//! Table of contents (private modules, public items re-exported below):
//! - `errno`: [`Errno`], the positive errno every error reply carries.
//! - `device`: the [`Device`] backend trait and the [`ClientHandles`] it gets on connect.
//! - `info`: the plain data a device returns ([`DeviceInfo`], [`RegionInfo`], [`IrqInfo`],
//!   [`MappingInfo`]) with the VFIO flags and indices.
//! - `dma`: [`DmaSpace`], the client's DMA mappings with checked, chunked, zero-copy access
//!   and the DMA_READ/DMA_WRITE message fallback; `dma_error`: why an access, copy, map or
//!   unmap failed ([`DmaError`], ...).
//! - `irq`: [`Irqs`], the eventfd table from SET_IRQS with mask/pending bits.
//! - `wire`: message layouts, one validator per command ([`wire`] is public for tests).
//! - `channel`: whole-message framing with fds, reply routing by message id.
//! - `remote`: server-to-client DMA messages.
//! - `server`: [`Server`], the accept loop; [`ServerOptions`]; per connection its state, its
//!   read-validate-dispatch loop and one handler per command.
//! - `client`: [`Client`], drives a server the way QEMU does.
//! - `sys`: the only `unsafe`: mmap ([`MmapRegion`], [`MemSlice`]), memfd/eventfd, SCM_RIGHTS.
//!
//! Rules for device code (each one avoids a deadlock or a stall of QEMU):
//! - Do DMA from your own threads. From inside a `Device` callback, message DMA (mappings
//!   without fd) fails at once with [`DmaError::RequestThread`].
//! - Do not start message DMA (`read`/`write` of an fd-less range) while you hold a
//!   [`DmaChunk::Mapped`] slice inside [`DmaSpace::with_chunks`]: an unmap of that chunk waits
//!   for you while QEMU waits for the unmap. Finish the chunk first ([`DmaSpace::copy`] does).
//!
//! Checked against QEMU 11.1 (`tests/qemu.rs`, `examples/qemu_probe.rs`): VERSION, DMA_MAP
//! with and without fd, REGION_INFO with sparse mmap (the BAR memfd is mapped into the guest),
//! config space through REGION_READ/WRITE, DMA_READ/DMA_WRITE in the spec layout.

mod channel;
mod client;
mod device;
mod dma;
mod dma_error;
mod errno;
mod framing;
mod info;
mod irq;
mod remote;
mod server;
mod sys;
pub mod wire;

pub use channel::{FrameError, Message};
pub use client::{Client, ClientError, ClientOptions, LocalMemory};
pub use device::{ClientHandles, Device};
pub use dma::{Access, DmaChunk, DmaSpace, DEFAULT_DMA_TIMEOUT};
pub use dma_error::{CopyError, CopySide, DmaError, MapError, UnmapError};
pub use errno::Errno;
pub use info::{
    pci_irq, pci_region, DeviceInfo, IrqInfo, MappingInfo, RegionInfo, RegionMmap, DEVICE_FLAG_PCI, DEVICE_FLAG_RESET,
    IRQ_INFO_AUTOMASKED, IRQ_INFO_EVENTFD, IRQ_INFO_MASKABLE, IRQ_INFO_NORESIZE, REGION_FLAG_CAPS, REGION_FLAG_MMAP,
    REGION_FLAG_READ, REGION_FLAG_WRITE,
};
pub use irq::{IrqError, IrqOutcome, Irqs};
pub use server::{Server, ServerError, ServerHandle, ServerOptions};
pub use sys::fd::{eventfd, eventfd_signal, eventfd_take, memfd};
pub use sys::mem::{MemSlice, MmapRegion, NotWritable, PAGE_SIZE};
