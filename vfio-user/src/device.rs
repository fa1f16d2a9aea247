//! The backend trait a device implements, and the handles it gets when a client connects
//! (the plain data it hands the server: `info.rs`).
//!
//! The server validates every message (sizes, argsz, region index/offset/count, IRQ ranges)
//! before it calls into the device, so a `Device` never sees an out-of-range access.

use std::sync::Arc;

use crate::dma::DmaSpace;
use crate::errno::Errno;
use crate::info::{DeviceInfo, IrqInfo, MappingInfo, RegionInfo};
use crate::irq::Irqs;

/// What a device receives when a client connects (at VERSION): handles on that client's DMA
/// mappings and interrupt eventfds, valid until [`Device::disconnected`].
#[derive(Clone)]
pub struct ClientHandles {
    /// The client's DMA mappings.
    pub dma: Arc<DmaSpace>,
    /// The client's interrupt eventfds.
    pub irqs: Arc<Irqs>,
}

/// The device side of a vfio-user endpoint.
///
/// Calls come from the connection's request thread; `region_read`/`region_write` are
/// only called with `index < num_regions` and `offset + len <= size` and the matching
/// READ/WRITE flag set. Device DMA (through [`ClientHandles::dma`]) must be issued from the
/// device's own threads, never from inside these callbacks when the mapping has no fd
/// (the `DmaSpace` refuses that with `DmaError::RequestThread` instead of deadlocking).
///
/// `info` and each region's size and READ/WRITE flags are read once per session, at VERSION:
/// the server checks every region access against that copy without calling the device
/// (a region's layout does not change while a client is connected; QEMU caches it too).
pub trait Device: Send + Sync + 'static {
    /// `DEVICE_GET_INFO`: the device flags and how many regions and IRQ indices it has.
    /// Read once per client, at VERSION; a device declaring more regions or IRQ indices than
    /// the server accepts is refused with `EINVAL`.
    fn info(&self) -> DeviceInfo;
    /// `DEVICE_GET_REGION_INFO` for `index` (`< info().num_regions`): size, READ/WRITE flags
    /// and the fd to mmap, if any. `None` answers `EINVAL` (the index exists but is unused).
    /// Also read once per client at VERSION for the size and flags that bound region access.
    fn region_info(&self, index: u32) -> Option<RegionInfo>;
    /// `REGION_READ`: fill `buf` with `buf.len()` bytes of region `index` from `offset`.
    /// Called only within the region and when it is readable. An `Err` is the errno of the
    /// error reply.
    fn region_read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// `REGION_WRITE` (and each entry of `REGION_WRITE_MULTI`): store `data` into region
    /// `index` at `offset`. Called only within the region and when it is writable. An `Err`
    /// is the errno of the error reply (for a multi-write, the entries after it are not written).
    fn region_write(&self, index: u32, offset: u64, data: &[u8]) -> Result<(), Errno>;
    /// `DEVICE_GET_IRQ_INFO` for `index` (`< info().num_irqs`): vector count and `IRQ_INFO_*`
    /// flags. `None` reports the index with no vectors. Also read once at VERSION to size the
    /// client's eventfd table.
    fn irq_info(&self, index: u32) -> Option<IrqInfo>;
    /// `DEVICE_RESET`: return the device to its power-on state. The client's DMA mappings and
    /// eventfds stay (they belong to the connection, not the device).
    fn reset(&self);
    /// A client completed VERSION: keep `client` to do DMA and raise interrupts until
    /// [`Device::disconnected`].
    fn connected(&self, client: ClientHandles);
    /// The client is gone (socket closed or a framing error). Its `DmaSpace` and `Irqs` are
    /// already disconnected: DMA fails with `DmaError::Disconnected`, triggers with
    /// `IrqError::Disconnected`. Drop the handles and stop DMA.
    fn disconnected(&self);
    /// `DMA_MAP` added mapping `m` to the client's `DmaSpace` (already usable). For
    /// bookkeeping such as trace target tables; the default does nothing.
    fn dma_mapped(&self, _m: &MappingInfo) {}
    /// `DMA_UNMAP` (or an unmap-all) removed the mapping at `iova` of `size` bytes, after
    /// every device access to it ended. The default does nothing.
    fn dma_unmapped(&self, _iova: u64, _size: u64) {}
}
