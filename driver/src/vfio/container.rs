//! The VFIO container (`/dev/vfio/vfio`) and the IOMMU groups attached to it.
//!
//! One container holds every group the driver uses, so all endpoints share one IOMMU
//! address space: an IOVA mapped once is reachable by every endpoint (as with Linux's
//! default domain per container). The IOMMU type is set when the first group joins.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use vfio_bindings::bindings::vfio as sys;

use super::device::VfioDevice;
use super::error::{last_os, Result, VfioError};
use super::ioctl;

/// An IOMMU group opened through `/dev/vfio/<id>` and set to the container.
#[derive(Debug)]
struct Group {
    id: u32,
    file: File,
}

/// Read/write permission of a DMA mapping, as seen from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaPerm {
    ReadOnly,
    ReadWrite,
}

#[derive(Debug)]
pub struct Container {
    file: File,
    groups: Vec<Group>,
    iommu_type: Option<u32>,
}

impl Container {
    /// Opens `/dev/vfio/vfio` and checks the API version and the TYPE1 extension.
    pub fn open() -> Result<Self> {
        let path = "/dev/vfio/vfio";
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| VfioError::Open {
                path: path.into(),
                source,
            })?;
        // SAFETY: GET_API_VERSION takes no argument and only returns an int; the fd is a
        // valid open VFIO container (just opened above).
        let v = unsafe { libc::ioctl(file.as_raw_fd(), ioctl::GET_API_VERSION) };
        if v != sys::VFIO_API_VERSION as i32 {
            return Err(VfioError::ApiVersion(v));
        }
        let c = Self {
            file,
            groups: Vec::new(),
            iommu_type: None,
        };
        if !c.has_extension(sys::VFIO_TYPE1v2_IOMMU) && !c.has_extension(sys::VFIO_TYPE1_IOMMU) {
            return Err(VfioError::NoType1);
        }
        Ok(c)
    }

    fn has_extension(&self, ext: u32) -> bool {
        // SAFETY: CHECK_EXTENSION takes its argument by value (an integer) and returns an
        // int; no memory is passed to the kernel.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), ioctl::CHECK_EXTENSION, ext as libc::c_ulong) };
        r > 0
    }

    /// Which IOMMU type was set ("TYPE1v2", "TYPE1"), once a group has joined.
    pub fn iommu_type_name(&self) -> &'static str {
        match self.iommu_type {
            Some(sys::VFIO_TYPE1v2_IOMMU) => "TYPE1v2",
            Some(sys::VFIO_TYPE1_IOMMU) => "TYPE1",
            _ => "unset",
        }
    }

    /// Opens group `id` and attaches it to this container (idempotent).
    pub fn add_group(&mut self, id: u32) -> Result<()> {
        if self.groups.iter().any(|g| g.id == id) {
            return Ok(());
        }
        let path = format!("/dev/vfio/{id}");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| VfioError::Open {
                path: path.clone(),
                source,
            })?;
        let mut status = sys::vfio_group_status {
            argsz: std::mem::size_of::<sys::vfio_group_status>() as u32,
            flags: 0,
        };
        // SAFETY: `status` is a live, correctly sized vfio_group_status whose argsz says so;
        // the kernel writes at most argsz bytes into it.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), ioctl::GROUP_GET_STATUS, &mut status) };
        if r < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_GROUP_GET_STATUS",
                what: path,
                source: last_os(),
            });
        }
        if status.flags & sys::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(VfioError::GroupNotViable(id));
        }
        let cfd: libc::c_int = self.file.as_raw_fd();
        // SAFETY: GROUP_SET_CONTAINER reads one int (the container fd) from the pointer,
        // which points at a live local.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), ioctl::GROUP_SET_CONTAINER, &cfd) };
        if r < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_GROUP_SET_CONTAINER",
                what: path,
                source: last_os(),
            });
        }
        if self.iommu_type.is_none() {
            let ty = if self.has_extension(sys::VFIO_TYPE1v2_IOMMU) {
                sys::VFIO_TYPE1v2_IOMMU
            } else {
                sys::VFIO_TYPE1_IOMMU
            };
            // SAFETY: SET_IOMMU takes the IOMMU type by value; no memory is passed.
            let r = unsafe { libc::ioctl(self.file.as_raw_fd(), ioctl::SET_IOMMU, ty as libc::c_ulong) };
            if r < 0 {
                return Err(VfioError::Ioctl {
                    op: "VFIO_SET_IOMMU",
                    what: "/dev/vfio/vfio".into(),
                    source: last_os(),
                });
            }
            self.iommu_type = Some(ty);
        }
        self.groups.push(Group { id, file });
        Ok(())
    }

    /// Opens the device `bdf` (e.g. "0000:03:00.0") of group `group` (added before).
    pub fn open_device(&mut self, group: u32, bdf: &str) -> Result<VfioDevice> {
        self.add_group(group)?;
        let g = self
            .groups
            .iter()
            .find(|g| g.id == group)
            .expect("group added just above");
        let name = CString::new(bdf).map_err(|_| VfioError::Sys {
            op: "device name",
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in BDF"),
        })?;
        // SAFETY: GROUP_GET_DEVICE_FD reads a NUL-terminated string from the pointer; `name`
        // is a live CString.
        let fd = unsafe { libc::ioctl(g.file.as_raw_fd(), ioctl::GROUP_GET_DEVICE_FD, name.as_ptr()) };
        if fd < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_GROUP_GET_DEVICE_FD",
                what: format!("{bdf} in group {group}"),
                source: last_os(),
            });
        }
        // SAFETY: the ioctl returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        VfioDevice::new(fd, bdf.to_string())
    }

    /// Supported IOMMU page sizes (bitmap), from VFIO_IOMMU_GET_INFO.
    pub fn iova_pgsizes(&self) -> Result<u64> {
        let mut info = sys::vfio_iommu_type1_info {
            argsz: std::mem::size_of::<sys::vfio_iommu_type1_info>() as u32,
            ..Default::default()
        };
        // SAFETY: `info` is a live vfio_iommu_type1_info and argsz is its size; the kernel
        // writes at most that many bytes.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), ioctl::IOMMU_GET_INFO, &mut info) };
        if r < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_IOMMU_GET_INFO",
                what: "container".into(),
                source: last_os(),
            });
        }
        Ok(info.iova_pgsizes)
    }

    /// Maps `size` bytes of this process's memory at `vaddr` to `iova` for every device in
    /// the container. The kernel pins the pages; they stay valid for the device until
    /// `unmap_dma`, whatever the process does with its own mapping.
    pub fn map_dma(&self, vaddr: u64, iova: u64, size: u64, perm: DmaPerm) -> Result<()> {
        let mut flags = sys::VFIO_DMA_MAP_FLAG_READ;
        if perm == DmaPerm::ReadWrite {
            flags |= sys::VFIO_DMA_MAP_FLAG_WRITE;
        }
        let map = sys::vfio_iommu_type1_dma_map {
            argsz: std::mem::size_of::<sys::vfio_iommu_type1_dma_map>() as u32,
            flags,
            vaddr,
            iova,
            size,
        };
        // SAFETY: `map` is a live, fully initialised vfio_iommu_type1_dma_map; the kernel
        // only reads it. The kernel itself validates that vaddr..vaddr+size is mapped in
        // this process (and pins it), so a bad vaddr is an error, not memory unsafety.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), ioctl::IOMMU_MAP_DMA, &map) };
        if r < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_IOMMU_MAP_DMA",
                what: format!("vaddr {vaddr:#x} -> iova {iova:#x} size {size:#x} ({perm:?})"),
                source: last_os(),
            });
        }
        Ok(())
    }

    /// Unmaps `[iova, iova + size)`; returns how many bytes the kernel unmapped.
    pub fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64> {
        let mut unmap = sys::vfio_iommu_type1_dma_unmap {
            argsz: std::mem::size_of::<sys::vfio_iommu_type1_dma_unmap>() as u32,
            flags: 0,
            iova,
            size,
            data: Default::default(),
        };
        // SAFETY: `unmap` is a live vfio_iommu_type1_dma_unmap with argsz = its size (no
        // bitmap data follows, flags = 0); the kernel writes back `size` within it.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), ioctl::IOMMU_UNMAP_DMA, &mut unmap) };
        if r < 0 {
            return Err(VfioError::Ioctl {
                op: "VFIO_IOMMU_UNMAP_DMA",
                what: format!("iova {iova:#x} size {size:#x}"),
                source: last_os(),
            });
        }
        Ok(unmap.size)
    }
}
