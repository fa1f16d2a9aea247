//! VFIO ioctl request numbers. The kernel defines them as `_IO(VFIO_TYPE, VFIO_BASE + n)`
//! (no size or direction bits: the structs carry their own `argsz`), which bindgen cannot
//! export, so they are computed here from the constants vfio-bindings does export.

use vfio_bindings::bindings::vfio::{VFIO_BASE, VFIO_TYPE};

const fn vfio_io(nr: u32) -> libc::c_ulong {
    ((VFIO_TYPE as u32) << 8 | (VFIO_BASE + nr)) as libc::c_ulong
}

pub const GET_API_VERSION: libc::c_ulong = vfio_io(0);
pub const CHECK_EXTENSION: libc::c_ulong = vfio_io(1);
pub const SET_IOMMU: libc::c_ulong = vfio_io(2);
pub const GROUP_GET_STATUS: libc::c_ulong = vfio_io(3);
pub const GROUP_SET_CONTAINER: libc::c_ulong = vfio_io(4);
pub const GROUP_GET_DEVICE_FD: libc::c_ulong = vfio_io(6);
pub const DEVICE_GET_INFO: libc::c_ulong = vfio_io(7);
pub const DEVICE_GET_REGION_INFO: libc::c_ulong = vfio_io(8);
pub const DEVICE_GET_IRQ_INFO: libc::c_ulong = vfio_io(9);
pub const DEVICE_SET_IRQS: libc::c_ulong = vfio_io(10);
pub const DEVICE_RESET: libc::c_ulong = vfio_io(11);
pub const IOMMU_GET_INFO: libc::c_ulong = vfio_io(12);
pub const IOMMU_MAP_DMA: libc::c_ulong = vfio_io(13);
pub const IOMMU_UNMAP_DMA: libc::c_ulong = vfio_io(14);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_header() {
        // Values from linux/vfio.h as compiled on x86_64 (';' = 0x3b, base 100 = 0x64).
        assert_eq!(GET_API_VERSION, 0x3b64);
        assert_eq!(SET_IOMMU, 0x3b66);
        assert_eq!(GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(IOMMU_UNMAP_DMA, 0x3b72);
    }
}
