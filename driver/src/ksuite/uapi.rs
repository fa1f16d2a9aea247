//! The structs and request numbers of `/dev/phyr` (kernel/include/uapi/phyr.h,
//! docs/KERNEL-UAPI.md), laid out exactly as the C header; sizes are pinned below and the
//! request numbers checked against the C header's values in the tests.

use phyr_report::{KernelCall, KernelPath, MapType};

pub const UAPI_MAJOR: u32 = 1;
pub const MAX_ENDPOINTS: usize = 32;
pub const MAX_QUEUES: usize = 8;

pub const CAP_P2PDMA: u32 = 1 << 0;
pub const CAP_P2PDMA_STATE: u32 = 1 << 5;

pub const BUF_RAM: u32 = 1;
pub const BUF_RAM_SCATTER: u32 = 2;
pub const BUF_P2PMEM: u32 = 3;
pub const BUF_BAR: u32 = 4;

pub const DIR_BIDIRECTIONAL: u32 = 0;
pub const DIR_TO_DEVICE: u32 = 1;
pub const DIR_FROM_DEVICE: u32 = 2;

pub const MAP_NONE: u8 = 1;
pub const MAP_NOT_SUPPORTED: u8 = 2;
pub const MAP_BUS_ADDR: u8 = 3;
pub const MAP_THRU_HOST_BRIDGE: u8 = 4;

pub const PIECE_FALLBACK: u16 = 1 << 0;
pub const RANGE_BUS_ADDR: u32 = 1 << 0;
pub const SUBMIT_STALE: u32 = 1 << 0;
pub const SUBMIT_TIMED_OUT: u32 = 1 << 0;
pub const UNMAP_KEEP: u32 = 1 << 0;
pub const EP_P2PMEM: u32 = 1 << 0;
pub const QUEUE_POLLED: u32 = 1 << 0;

/// DMA API paths (`phyr_map.path`); `caps & (1 << path)` says it is compiled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Path {
    SgTable = 1,
    Iova = 2,
    Phys = 3,
    Resource = 4,
}

impl Path {
    pub const ALL: [Path; 4] = [Path::SgTable, Path::Iova, Path::Phys, Path::Resource];

    pub fn name(self) -> &'static str {
        self.report().name()
    }

    /// The path as the report grammar names it.
    pub fn report(self) -> KernelPath {
        match self {
            Path::SgTable => KernelPath::SgTable,
            Path::Iova => KernelPath::Iova,
            Path::Phys => KernelPath::Phys,
            Path::Resource => KernelPath::Resource,
        }
    }
}

/// A P2P decision (P2P_QUERY's `map_type`, a piece's `map_type`) as docs/REPORT.md spells it.
pub fn map_type_name(t: u8) -> &'static str {
    match map_type(t) {
        Some(m) => m.name(),
        None if t == MAP_NOT_SUPPORTED => "not_supported",
        None => "?",
    }
}

/// A piece's `map_type` in the report grammar (`None` for NOT_SUPPORTED or an unknown value).
pub fn map_type(t: u8) -> Option<MapType> {
    match t {
        MAP_NONE => Some(MapType::None),
        MAP_BUS_ADDR => Some(MapType::BusAddr),
        MAP_THRU_HOST_BRIDGE => Some(MapType::ThruHostBridge),
        _ => None,
    }
}

/// A piece's `how` (PHYR_HOW_*): the kernel call that produced its DMA address.
pub fn call(how: u8) -> Option<KernelCall> {
    match how {
        1 => Some(KernelCall::SgTable),
        2 => Some(KernelCall::IovaLink),
        3 => Some(KernelCall::BusAddrMap),
        4 => Some(KernelCall::MapPhys),
        5 => Some(KernelCall::MapPage),
        6 => Some(KernelCall::MapResource),
        _ => None,
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Info {
    pub uapi_version: u32,
    pub caps: u32,
    pub kernel_version: u32,
    pub page_size: u32,
    pub nr_endpoints: u32,
    pub reserved: u32,
    pub endpoints: [u32; MAX_ENDPOINTS],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueInfo {
    pub sq_dma: u64,
    pub cq_dma: u64,
    pub shadow_dma: u64,
    pub entries: u32,
    pub flags: u32,
    pub vector: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EpInfo {
    pub ep: u32,
    pub flags: u32,
    pub pci_domain: u32,
    pub pci_bus: u8,
    pub pci_devfn: u8,
    pub reserved0: u16,
    pub version: u32,
    pub switch_id: u32,
    pub max_list_entries: u32,
    pub max_chain: u32,
    pub nr_queues: u32,
    pub reserved1: u32,
    pub bar2_phys: u64,
    pub bar2_bus: u64,
    pub bar2_size: u64,
    pub queues: [QueueInfo; MAX_QUEUES],
}

impl EpInfo {
    pub fn bdf(&self) -> String {
        format!(
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.pci_domain,
            self.pci_bus,
            self.pci_devfn >> 3,
            self.pci_devfn & 7
        )
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct P2pQuery {
    pub provider: u32,
    pub client: u32,
    pub distance: i32,
    pub map_type: u32,
    pub source: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BufAlloc {
    pub kind: u32,
    pub ep: u32,
    pub len: u64,
    pub bar_offset: u64,
    pub flags: u32,
    pub buf: u32,
    pub phys: u64,
    pub nr_chunks: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BufFree {
    pub buf: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BufIo {
    pub buf: u32,
    pub flags: u32,
    pub offset: u64,
    pub len: u64,
    pub data: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapSeg {
    pub buf: u32,
    pub reserved: u32,
    pub offset: u64,
    pub len: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub addr: u64,
    pub len: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Piece {
    pub dma_addr: u64,
    pub phys: u64,
    pub buf_offset: u64,
    pub len: u32,
    pub range: u32,
    pub seg: u32,
    pub map_type: u8,
    pub how: u8,
    pub flags: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Map {
    pub ep: u32,
    pub path: u32,
    pub dir: u32,
    pub flags: u32,
    pub nr_segs: u32,
    pub nr_ranges: u32,
    pub nr_pieces: u32,
    pub map: u32,
    pub segs: u64,
    pub ranges: u64,
    pub pieces: u64,
    pub total_len: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Unmap {
    pub map: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Cqe {
    pub command_id: u16,
    pub status: u16,
    pub sq_head: u16,
    pub fault_list: u8,
    pub phase: u8,
    pub segment: u32,
    pub reserved: u32,
    pub result: u64,
    pub fault_addr: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Submit {
    pub ep: u32,
    pub queue: u32,
    pub opcode: u32,
    pub flags: u32,
    pub src_map: u32,
    pub dst_map: u32,
    pub block_entries: u32,
    pub timeout_ms: u32,
    pub pattern: u64,
    pub src_head: u64,
    pub dst_head: u64,
    pub list_dma: u64,
    pub list_bytes: u32,
    pub out_flags: u32,
    pub cqe: Cqe,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Reset {
    pub ep: u32,
    pub reserved: u32,
}

const _: () = {
    assert!(std::mem::size_of::<Info>() == 152);
    assert!(std::mem::size_of::<QueueInfo>() == 40);
    assert!(std::mem::size_of::<EpInfo>() == 384);
    assert!(std::mem::size_of::<P2pQuery>() == 24);
    assert!(std::mem::size_of::<BufAlloc>() == 48);
    assert!(std::mem::size_of::<BufIo>() == 32);
    assert!(std::mem::size_of::<MapSeg>() == 24);
    assert!(std::mem::size_of::<Range>() == 16);
    assert!(std::mem::size_of::<Piece>() == 40);
    assert!(std::mem::size_of::<Map>() == 64);
    assert!(std::mem::size_of::<Cqe>() == 32);
    assert!(std::mem::size_of::<Submit>() == 104);
};

const fn ioc(dir: u32, nr: u32, size: usize) -> libc::c_ulong {
    ((dir << 30) | ((size as u32) << 16) | ((b'P' as u32) << 8) | nr) as libc::c_ulong
}
const W: u32 = 1;
const R: u32 = 2;

pub const IOC_INFO: libc::c_ulong = ioc(R, 0x00, std::mem::size_of::<Info>());
pub const IOC_EP_INFO: libc::c_ulong = ioc(R | W, 0x01, std::mem::size_of::<EpInfo>());
pub const IOC_P2P_QUERY: libc::c_ulong = ioc(R | W, 0x02, std::mem::size_of::<P2pQuery>());
pub const IOC_BUF_ALLOC: libc::c_ulong = ioc(R | W, 0x10, std::mem::size_of::<BufAlloc>());
pub const IOC_BUF_FREE: libc::c_ulong = ioc(W, 0x11, std::mem::size_of::<BufFree>());
pub const IOC_BUF_READ: libc::c_ulong = ioc(W, 0x12, std::mem::size_of::<BufIo>());
pub const IOC_BUF_WRITE: libc::c_ulong = ioc(W, 0x13, std::mem::size_of::<BufIo>());
pub const IOC_MAP: libc::c_ulong = ioc(R | W, 0x20, std::mem::size_of::<Map>());
pub const IOC_UNMAP: libc::c_ulong = ioc(W, 0x21, std::mem::size_of::<Unmap>());
pub const IOC_SUBMIT: libc::c_ulong = ioc(R | W, 0x30, std::mem::size_of::<Submit>());
pub const IOC_RESET: libc::c_ulong = ioc(W, 0x31, std::mem::size_of::<Reset>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_c_header() {
        // printf of PHYR_IOC_* from kernel/include/uapi/phyr.h compiled with gcc on x86_64.
        assert_eq!(IOC_INFO, 0x8098_5000);
        assert_eq!(IOC_EP_INFO, 0xc180_5001);
        assert_eq!(IOC_P2P_QUERY, 0xc018_5002);
        assert_eq!(IOC_BUF_ALLOC, 0xc030_5010);
        assert_eq!(IOC_BUF_FREE, 0x4008_5011);
        assert_eq!(IOC_BUF_READ, 0x4020_5012);
        assert_eq!(IOC_BUF_WRITE, 0x4020_5013);
        assert_eq!(IOC_MAP, 0xc040_5020);
        assert_eq!(IOC_UNMAP, 0x4008_5021);
        assert_eq!(IOC_SUBMIT, 0xc068_5030);
        assert_eq!(IOC_RESET, 0x4008_5031);
    }

    #[test]
    fn bdf_is_printed_as_sysfs_names_it() {
        let e = EpInfo {
            pci_bus: 3,
            pci_devfn: 0x0a,
            ..Default::default()
        };
        assert_eq!(e.bdf(), "0000:03:01.2");
    }
}
