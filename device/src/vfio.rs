//! The endpoint as a vfio-user device: regions (BAR0 registers, BAR2 peer memory offered whole
//! as sparse-mmap with its memfd, 4 KiB config space), MSI-X as the only interrupt, resets and
//! session changes forwarded to the [`Endpoint`]. The server validated every access already.

use std::sync::{Arc, Mutex};

use dma_range::regs;
use vfio_user::{
    pci_irq, pci_region, ClientHandles, Device, DeviceInfo, Errno, IrqInfo, MappingInfo, RegionInfo, RegionMmap,
    DEVICE_FLAG_PCI, DEVICE_FLAG_RESET, IRQ_INFO_EVENTFD, IRQ_INFO_MASKABLE, IRQ_INFO_NORESIZE, REGION_FLAG_READ,
    REGION_FLAG_WRITE,
};

use crate::client_mem::{ClientIrqs, ClientMemory};
use crate::config::CONFIG_SIZE;
use crate::endpoint::{Endpoint, Ports};

/// An [`Endpoint`] served over vfio-user.
#[derive(Debug)]
pub struct VfioEndpoint {
    ep: Arc<Endpoint>,
    /// The connected client's memory, told about map changes (trace target snapshots).
    mem: Mutex<Option<Arc<ClientMemory>>>,
}

impl VfioEndpoint {
    pub fn new(ep: Arc<Endpoint>) -> Self {
        Self {
            ep,
            mem: Mutex::new(None),
        }
    }

    fn invalidate(&self) {
        if let Some(m) = self.mem.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            m.invalidate();
        }
    }
}

const RW: u32 = REGION_FLAG_READ | REGION_FLAG_WRITE;

impl Device for VfioEndpoint {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            flags: DEVICE_FLAG_PCI | DEVICE_FLAG_RESET,
            num_regions: pci_region::COUNT,
            num_irqs: pci_irq::COUNT,
        }
    }

    fn region_info(&self, index: u32) -> Option<RegionInfo> {
        let bar2 = &self.ep.port().bar2;
        Some(match index {
            pci_region::BAR0 => RegionInfo::io(regs::BAR0_SIZE, RW),
            pci_region::BAR2 => RegionInfo {
                size: bar2.size(),
                flags: RW,
                mmap: Some(RegionMmap {
                    fd: bar2.fd(),
                    file_offset: 0,
                    sparse_areas: vec![(0, bar2.size())],
                }),
            },
            pci_region::CONFIG => RegionInfo::io(CONFIG_SIZE as u64, RW),
            i if i < pci_region::COUNT => RegionInfo::io(0, 0),
            _ => return None,
        })
    }

    fn region_read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        match index {
            pci_region::BAR0 => self.ep.bar0_read(offset, buf),
            pci_region::BAR2 => self.ep.bar2_read(offset, buf),
            pci_region::CONFIG => self.ep.config_read(offset, buf),
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }

    fn region_write(&self, index: u32, offset: u64, data: &[u8]) -> Result<(), Errno> {
        match index {
            pci_region::BAR0 => self.ep.bar0_write(offset, data),
            pci_region::BAR2 => self.ep.bar2_write(offset, data),
            pci_region::CONFIG => self.ep.config_write(offset, data),
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }

    fn irq_info(&self, index: u32) -> Option<IrqInfo> {
        match index {
            pci_irq::MSIX => Some(IrqInfo {
                count: u32::from(regs::MSIX_VECTORS),
                flags: IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_NORESIZE,
            }),
            i if i < pci_irq::COUNT => Some(IrqInfo {
                count: 0,
                flags: IRQ_INFO_EVENTFD,
            }),
            _ => None,
        }
    }

    fn reset(&self) {
        tracing::info!(endpoint = self.ep.index(), "device reset");
        self.ep.reset();
    }

    fn connected(&self, client: ClientHandles) {
        tracing::info!(endpoint = self.ep.index(), "client connected");
        let targets = self.ep.hook().enabled();
        let mem = Arc::new(ClientMemory::new(client.dma, targets));
        *self.mem.lock().unwrap_or_else(|e| e.into_inner()) = Some(mem.clone());
        self.ep.connect(Ports {
            mem,
            irq: Arc::new(ClientIrqs(client.irqs)),
        });
    }

    fn disconnected(&self) {
        tracing::info!(endpoint = self.ep.index(), "client disconnected");
        self.ep.disconnect();
        *self.mem.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn dma_mapped(&self, m: &MappingInfo) {
        self.invalidate();
        self.ep.hook().event(|| phyr_trace::Event::DmaMap {
            iova: m.iova,
            size: m.size,
            readable: m.readable,
            writable: m.writable,
            has_fd: m.fd_offset.is_some(),
            fd_offset: m.fd_offset,
        });
    }

    fn dma_unmapped(&self, iova: u64, size: u64) {
        self.invalidate();
        self.ep
            .hook()
            .event(|| phyr_trace::Event::DmaUnmap { iova, size, all: false });
    }
}
