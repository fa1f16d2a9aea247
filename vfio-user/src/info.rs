//! The plain data a [`crate::Device`] hands the server: device, region and IRQ info with their
//! VFIO flags and indices, and the description of a client's DMA mapping. Shared by the
//! device trait, the DMA space, the IRQ table and the wire formats; depends on none of them.

use std::os::fd::OwnedFd;
use std::sync::Arc;

/// `DEVICE_GET_INFO` flag: the device supports `DEVICE_RESET`.
pub const DEVICE_FLAG_RESET: u32 = vfio_bindings::bindings::vfio::VFIO_DEVICE_FLAGS_RESET;
/// `DEVICE_GET_INFO` flag: the device is a PCI device.
pub const DEVICE_FLAG_PCI: u32 = vfio_bindings::bindings::vfio::VFIO_DEVICE_FLAGS_PCI;
/// Region flag: readable with `REGION_READ`.
pub const REGION_FLAG_READ: u32 = vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_READ;
/// Region flag: writable with `REGION_WRITE`.
pub const REGION_FLAG_WRITE: u32 = vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_WRITE;
/// Region flag: (parts of) the region can be mmap-ed through the region's fd.
pub const REGION_FLAG_MMAP: u32 = vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_MMAP;
/// Region flag: capabilities follow the region info (set by the server, not the device).
pub const REGION_FLAG_CAPS: u32 = vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_CAPS;
/// IRQ info flag: triggers are signalled through eventfds.
pub const IRQ_INFO_EVENTFD: u32 = vfio_bindings::bindings::vfio::VFIO_IRQ_INFO_EVENTFD;
/// IRQ info flag: the vectors can be masked.
pub const IRQ_INFO_MASKABLE: u32 = vfio_bindings::bindings::vfio::VFIO_IRQ_INFO_MASKABLE;
/// IRQ info flag: the interrupt masks itself when it fires (INTx).
pub const IRQ_INFO_AUTOMASKED: u32 = vfio_bindings::bindings::vfio::VFIO_IRQ_INFO_AUTOMASKED;
/// IRQ info flag: the vector count cannot be resized (MSI-X without dynamic allocation).
pub const IRQ_INFO_NORESIZE: u32 = vfio_bindings::bindings::vfio::VFIO_IRQ_INFO_NORESIZE;

/// PCI region indices as VFIO numbers them.
pub mod pci_region {
    pub const BAR0: u32 = 0;
    pub const BAR1: u32 = 1;
    pub const BAR2: u32 = 2;
    pub const BAR3: u32 = 3;
    pub const BAR4: u32 = 4;
    pub const BAR5: u32 = 5;
    pub const ROM: u32 = 6;
    pub const CONFIG: u32 = 7;
    pub const VGA: u32 = 8;
    /// Number of regions of a VFIO PCI device.
    pub const COUNT: u32 = 9;
}

/// PCI IRQ indices as VFIO numbers them.
pub mod pci_irq {
    pub const INTX: u32 = 0;
    pub const MSI: u32 = 1;
    pub const MSIX: u32 = 2;
    pub const ERR: u32 = 3;
    pub const REQ: u32 = 4;
    /// Number of IRQ indices of a VFIO PCI device.
    pub const COUNT: u32 = 5;
}

/// What `DEVICE_GET_INFO` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `DEVICE_FLAG_*` bits.
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
}

/// The fd (and the parts of it) a client may mmap for a region.
#[derive(Debug, Clone)]
pub struct RegionMmap {
    /// The file backing the region; sent with every `GET_REGION_INFO` reply for this region.
    pub fd: Arc<OwnedFd>,
    /// Offset of the region's byte 0 in `fd`.
    pub file_offset: u64,
    /// `(offset, size)` areas, relative to the region start, that the client may mmap.
    /// Empty means the whole region.
    pub sparse_areas: Vec<(u64, u64)>,
}

/// What `DEVICE_GET_REGION_INFO` reports for one region.
#[derive(Debug, Clone)]
pub struct RegionInfo {
    pub size: u64,
    /// `REGION_FLAG_READ | REGION_FLAG_WRITE | REGION_FLAG_MMAP` bits. The server sets
    /// `REGION_FLAG_MMAP` itself when `mmap` is `Some` and `REGION_FLAG_CAPS` when it adds caps.
    pub flags: u32,
    pub mmap: Option<RegionMmap>,
}

impl RegionInfo {
    /// A region only reachable through `REGION_READ`/`REGION_WRITE`.
    pub fn io(size: u64, flags: u32) -> RegionInfo {
        RegionInfo {
            size,
            flags,
            mmap: None,
        }
    }
}

/// What `DEVICE_GET_IRQ_INFO` reports for one IRQ index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqInfo {
    /// Number of vectors (0: the index exists but is unused).
    pub count: u32,
    /// `IRQ_INFO_*` bits.
    pub flags: u32,
}

/// One DMA mapping as the client described it (for notifications and tracing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingInfo {
    pub iova: u64,
    pub size: u64,
    pub readable: bool,
    pub writable: bool,
    /// `Some(offset)` when the client passed an fd (the map is mmap-ed, zero-copy);
    /// `None` when the server reaches it with `DMA_READ`/`DMA_WRITE` messages.
    pub fd_offset: Option<u64>,
}
