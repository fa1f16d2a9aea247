//! A VFIO device fd: device/region/IRQ info, config space access, MSI-X eventfds, reset,
//! and mmap of its regions (BARs).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use vfio_bindings::bindings::vfio as sys;

use super::error::{last_os, Result, VfioError};
use super::ioctl;
use super::mmio::MmioRegion;

/// What VFIO_DEVICE_GET_REGION_INFO says about one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    pub index: u32,
    pub flags: u32,
    pub size: u64,
    /// Offset of the region in the device fd (for pread/pwrite/mmap).
    pub offset: u64,
}

impl RegionInfo {
    pub fn mappable(&self) -> bool {
        self.flags & sys::VFIO_REGION_INFO_FLAG_MMAP != 0
    }
}

#[derive(Debug)]
pub struct VfioDevice {
    fd: OwnedFd,
    name: String,
    flags: u32,
    num_regions: u32,
    num_irqs: u32,
}

impl VfioDevice {
    pub(super) fn new(fd: OwnedFd, name: String) -> Result<Self> {
        let mut info = sys::vfio_device_info {
            argsz: std::mem::size_of::<sys::vfio_device_info>() as u32,
            ..Default::default()
        };
        // SAFETY: `info` is a live vfio_device_info and argsz is its size; the kernel writes
        // at most argsz bytes.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), ioctl::DEVICE_GET_INFO, &mut info) };
        if r < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_DEVICE_GET_INFO",
                what: name,
                source: last_os(),
            });
        }
        Ok(Self {
            fd,
            name,
            flags: info.flags,
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_pci(&self) -> bool {
        self.flags & sys::VFIO_DEVICE_FLAGS_PCI != 0
    }

    pub fn supports_reset(&self) -> bool {
        self.flags & sys::VFIO_DEVICE_FLAGS_RESET != 0
    }

    pub fn num_regions(&self) -> u32 {
        self.num_regions
    }

    pub fn num_irqs(&self) -> u32 {
        self.num_irqs
    }

    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        let mut info = sys::vfio_region_info {
            argsz: std::mem::size_of::<sys::vfio_region_info>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: `info` is a live vfio_region_info and argsz is exactly its size, so the
        // kernel does not append capability data beyond it (it reports the needed argsz).
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), ioctl::DEVICE_GET_REGION_INFO, &mut info) };
        if r < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_DEVICE_GET_REGION_INFO",
                what: format!("{} region {index}", self.name),
                source: last_os(),
            });
        }
        Ok(RegionInfo {
            index,
            flags: info.flags,
            size: info.size,
            offset: info.offset,
        })
    }

    /// Number of vectors of IRQ index `index` (e.g. VFIO_PCI_MSIX_IRQ_INDEX).
    pub fn irq_count(&self, index: u32) -> Result<u32> {
        let mut info = sys::vfio_irq_info {
            argsz: std::mem::size_of::<sys::vfio_irq_info>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: `info` is a live vfio_irq_info with argsz = its size.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), ioctl::DEVICE_GET_IRQ_INFO, &mut info) };
        if r < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_DEVICE_GET_IRQ_INFO",
                what: format!("{} irq index {index}", self.name),
                source: last_os(),
            });
        }
        Ok(info.count)
    }

    /// Routes vectors `0..fds.len()` of IRQ index `index` to the given eventfds
    /// (ACTION_TRIGGER | DATA_EVENTFD). An empty slice disables the index.
    pub fn set_irq_eventfds(&self, index: u32, fds: &[RawFd]) -> Result<()> {
        let hdr = std::mem::size_of::<sys::vfio_irq_set>();
        let bytes = hdr + std::mem::size_of_val(fds);
        // u32 words keep the buffer aligned for vfio_irq_set (alignment 4).
        let mut buf = vec![0u32; bytes.div_ceil(4)];
        let flags = if fds.is_empty() {
            sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_TRIGGER
        } else {
            sys::VFIO_IRQ_SET_DATA_EVENTFD | sys::VFIO_IRQ_SET_ACTION_TRIGGER
        };
        // vfio_irq_set layout: argsz, flags, index, start, count, then count i32 fds.
        buf[0] = bytes as u32;
        buf[1] = flags;
        buf[2] = index;
        buf[3] = 0;
        buf[4] = fds.len() as u32;
        for (i, fd) in fds.iter().enumerate() {
            buf[hdr / 4 + i] = *fd as u32;
        }
        // SAFETY: `buf` is a live, 4-byte-aligned buffer of at least `bytes` bytes holding a
        // vfio_irq_set header followed by `count` eventfds, and argsz says `bytes`; the
        // kernel only reads it.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), ioctl::DEVICE_SET_IRQS, buf.as_ptr()) };
        if r < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_DEVICE_SET_IRQS",
                what: format!("{} irq index {index}, {} vectors", self.name, fds.len()),
                source: last_os(),
            });
        }
        Ok(())
    }

    /// VFIO_DEVICE_RESET (a function-level reset through the VMM).
    pub fn reset(&self) -> Result<()> {
        // SAFETY: DEVICE_RESET takes no argument.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), ioctl::DEVICE_RESET) };
        if r < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_DEVICE_RESET",
                what: self.name.clone(),
                source: last_os(),
            });
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes of region `r` at `offset` with pread.
    pub fn region_read(&self, r: &RegionInfo, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(r, offset, buf.len())?;
        // SAFETY: `buf` is a live, writable buffer of buf.len() bytes; pread writes at most
        // that many.
        let n = unsafe {
            libc::pread(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                (r.offset + offset) as libc::off_t,
            )
        };
        self.done("pread", r, n, buf.len())
    }

    /// Writes `buf` into region `r` at `offset` with pwrite.
    pub fn region_write(&self, r: &RegionInfo, offset: u64, buf: &[u8]) -> Result<()> {
        self.check(r, offset, buf.len())?;
        // SAFETY: `buf` is a live buffer of buf.len() bytes; pwrite only reads it.
        let n = unsafe {
            libc::pwrite(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                (r.offset + offset) as libc::off_t,
            )
        };
        self.done("pwrite", r, n, buf.len())
    }

    fn check(&self, r: &RegionInfo, offset: u64, len: usize) -> Result<()> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= r.size => Ok(()),
            _ => Err(VfioError::OutOfBounds {
                what: format!("{} region {}", self.name, r.index),
                offset,
                len,
                size: r.size,
            }),
        }
    }

    fn done(&self, op: &'static str, r: &RegionInfo, n: isize, want: usize) -> Result<()> {
        let what = format!("{} region {}", self.name, r.index);
        if n < 0 {
            return Err(VfioError::Ioctl {
                op,
                what,
                source: last_os(),
            });
        }
        if n as usize != want {
            return Err(VfioError::Short {
                op,
                what,
                done: n as usize,
                want,
            });
        }
        Ok(())
    }

    /// Sets Memory Space and Bus Master Enable in the PCI COMMAND register (vfio-pci leaves
    /// bus mastering off: without it the device can neither DMA nor send MSI/MSI-X).
    pub fn enable_bus_master(&self) -> Result<u16> {
        let cfg = self.region_info(sys::VFIO_PCI_CONFIG_REGION_INDEX)?;
        let mut cmd = [0u8; 2];
        self.region_read(&cfg, 4, &mut cmd)?;
        let v = u16::from_le_bytes(cmd) | 0x0002 | 0x0004;
        self.region_write(&cfg, 4, &v.to_le_bytes())?;
        self.region_read(&cfg, 4, &mut cmd)?;
        Ok(u16::from_le_bytes(cmd))
    }

    /// Maps the whole region `r` (must be mmap-able) read/write and shared.
    pub fn map_region(&self, r: &RegionInfo) -> Result<MmioRegion> {
        if !r.mappable() {
            return Err(VfioError::NotMappable {
                device: self.name.clone(),
                index: r.index,
                flags: r.flags,
            });
        }
        MmioRegion::map(
            self.fd.as_raw_fd(),
            r.offset,
            r.size as usize,
            format!("{} BAR{}", self.name, r.index),
        )
    }
}
