//! One phyr endpoint opened through VFIO: its sysfs identity, BAR0 registers, BAR2 peer
//! memory, MSI-X eventfds, and the register-level operations (identity, enable, reset).

use std::path::Path;
use std::time::{Duration, Instant};

use dma_range::regs;

use crate::error::{DriverError, Result};
use crate::sysfs::PciFunction;
use crate::vfio::{self, Container, EventFd, MmioRegion, VfioDevice};

/// What the identity registers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identity {
    pub version: u32,
    pub num_queues: u32,
    pub max_queue_entries: u32,
    pub endpoint_id: u32,
    pub switch_id: u32,
    pub bar2_size: u64,
    pub max_list_entries: u32,
    pub max_chain: u32,
}

pub struct Endpoint {
    /// Index in the bench (endpoints sorted by BDF).
    pub index: usize,
    pub pci: PciFunction,
    pub dev: VfioDevice,
    pub bar0: MmioRegion,
    pub bar2: MmioRegion,
    pub id: Identity,
    /// One eventfd per MSI-X vector routed (vector i -> irqs[i]).
    pub irqs: Vec<EventFd>,
}

impl Endpoint {
    /// Opens `pci` through `container`: device fd, BAR0/BAR2 mmap, identity check, MSI-X.
    pub fn open(container: &mut Container, index: usize, pci: PciFunction) -> Result<Self> {
        let bdf = pci.bdf.clone();
        let err = |why: String| DriverError::Endpoint { bdf: bdf.clone(), why };
        let group = pci
            .iommu_group
            .ok_or_else(|| err("no iommu_group in sysfs (is the IOMMU enabled?)".into()))?;
        if pci.driver.as_deref() != Some("vfio-pci") {
            return Err(err(format!("bound to {:?}, not vfio-pci", pci.driver)));
        }
        let dev = container.open_device(group, &pci.bdf)?;
        let bar0_info = dev.region_info(vfio::VFIO_PCI_BAR0_REGION_INDEX)?;
        let bar2_info = dev.region_info(vfio::VFIO_PCI_BAR2_REGION_INDEX)?;
        if bar0_info.size < regs::BAR0_SIZE {
            return Err(err(format!(
                "BAR0 is {:#x} bytes, expected {:#x}",
                bar0_info.size,
                regs::BAR0_SIZE
            )));
        }
        dev.enable_bus_master()?;
        let bar0 = dev.map_region(&bar0_info)?;
        let bar2 = dev.map_region(&bar2_info)?;
        let mut ep = Self {
            index,
            pci,
            dev,
            bar0,
            bar2,
            id: Identity::default(),
            irqs: Vec::new(),
        };
        let idreg = ep.r32(regs::REG_ID)?;
        if idreg != regs::PHYR_ID {
            return Err(err(format!(
                "ID register reads {idreg:#010x}, expected {:#010x} (\"PHYR\")",
                regs::PHYR_ID
            )));
        }
        ep.id = Identity {
            version: ep.r32(regs::REG_VERSION)?,
            num_queues: ep.r32(regs::REG_NUM_QUEUES)?,
            max_queue_entries: ep.r32(regs::REG_MAX_QUEUE_ENTRIES)?,
            endpoint_id: ep.r32(regs::REG_ENDPOINT_ID)?,
            switch_id: ep.r32(regs::REG_SWITCH_ID)?,
            bar2_size: ep.bar0.read64(regs::REG_BAR2_SIZE)?,
            max_list_entries: ep.r32(regs::REG_MAX_LIST_ENTRIES)?,
            max_chain: ep.r32(regs::REG_MAX_CHAIN)?,
        };
        if ep.id.version >> 16 != regs::ABI_VERSION >> 16 {
            return Err(err(format!(
                "ABI version {:#x}, this driver speaks {:#x}",
                ep.id.version,
                regs::ABI_VERSION
            )));
        }
        let vectors = dev_vectors(&ep.dev)?.min(ep.id.num_queues.max(1));
        ep.irqs = (0..vectors)
            .map(|_| EventFd::new())
            .collect::<std::result::Result<_, _>>()?;
        let fds: Vec<i32> = ep.irqs.iter().map(|e| e.raw()).collect();
        ep.dev.set_irq_eventfds(vfio::VFIO_PCI_MSIX_IRQ_INDEX, &fds)?;
        Ok(ep)
    }

    pub fn r32(&self, off: u64) -> Result<u32> {
        Ok(self.bar0.read32(off)?)
    }

    pub fn w32(&self, off: u64, v: u32) -> Result<()> {
        Ok(self.bar0.write32(off, v)?)
    }

    pub fn w64(&self, off: u64, v: u64) -> Result<()> {
        Ok(self.bar0.write64(off, v)?)
    }

    pub fn status(&self) -> u32 {
        self.r32(regs::REG_STATUS).unwrap_or(u32::MAX)
    }

    /// Bus address of BAR2 (from sysfs `resource`; on x86 bus == CPU physical).
    pub fn bar2_bus(&self) -> u64 {
        self.pci.bar(2).map(|r| r.start).unwrap_or(0)
    }

    pub fn bar0_bus(&self) -> u64 {
        self.pci.bar(0).map(|r| r.start).unwrap_or(0)
    }

    /// Usable BAR2 bytes: the smaller of the register and the VFIO region.
    pub fn bar2_len(&self) -> u64 {
        self.id.bar2_size.min(self.bar2.len())
    }

    /// CTRL.RESET, then CTRL.ENABLE, then waits for STATUS.READY.
    pub fn reset_and_enable(&self, timeout: Duration) -> Result<()> {
        self.w32(regs::REG_CTRL, regs::CTRL_RESET)?;
        self.enable(timeout)
    }

    pub fn enable(&self, timeout: Duration) -> Result<()> {
        self.w32(regs::REG_CTRL, regs::CTRL_ENABLE)?;
        let t0 = Instant::now();
        loop {
            let st = self.status();
            if st != u32::MAX && st & regs::STATUS_READY != 0 {
                return Ok(());
            }
            if t0.elapsed() > timeout {
                return Err(DriverError::NotReady {
                    ep: self.index,
                    bdf: self.pci.bdf.clone(),
                    ms: timeout.as_millis() as u64,
                    ctrl: self.r32(regs::REG_CTRL).unwrap_or(u32::MAX),
                    status: st,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Drains every MSI-X eventfd (counts discarded).
    pub fn drain_irqs(&self) {
        for e in &self.irqs {
            e.take();
        }
    }
}

fn dev_vectors(dev: &VfioDevice) -> Result<u32> {
    let n = dev.irq_count(vfio::VFIO_PCI_MSIX_IRQ_INDEX)?;
    if n == 0 {
        return Err(DriverError::Endpoint {
            bdf: dev.name().into(),
            why: "no MSI-X vectors offered".into(),
        });
    }
    Ok(n)
}

/// Finds phyr endpoints in sysfs (vendor/device match), sorted by BDF; `only` restricts to
/// the given BDFs.
pub fn find(sys: &Path, only: &[String]) -> Result<Vec<PciFunction>> {
    let all = crate::sysfs::scan(sys)?;
    Ok(all
        .into_iter()
        .filter(|f| f.vendor == regs::PCI_VENDOR_ID && f.device == regs::PCI_DEVICE_ID)
        .filter(|f| only.is_empty() || only.iter().any(|b| b == &f.bdf || f.bdf.ends_with(b.as_str())))
        .collect())
}
