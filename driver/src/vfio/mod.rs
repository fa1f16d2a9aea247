//! Userspace VFIO: the only module of the driver that holds `unsafe` code (ioctls, mmap,
//! volatile access to shared memory, eventfds).

mod container;
mod device;
mod error;
mod eventfd;
mod ioctl;
mod mmio;

pub use container::{Container, DmaPerm};
pub use device::VfioDevice;
pub use error::VfioError;
pub use eventfd::EventFd;
pub use mmio::{DmaBuffer, MmioRegion};

pub use vfio_bindings::bindings::vfio::{
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR2_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
};
