//! The dma_range entry: `{ u64 addr; u32 len; u32 flags; }`, 16 bytes, little-endian.

/// The entry's address is a PCI bus address (routed through the fabric), not an IOVA.
pub const RANGE_BUS_ADDR: u32 = 1 << 0;
/// The entry points at the next list block (`addr`, `len` = block size in bytes).
pub const RANGE_CHAIN: u32 = 1 << 1;
/// Every flag bit this ABI version defines; any other bit set is `Status::ListBadFlags`.
pub const RANGE_FLAGS_KNOWN: u32 = RANGE_BUS_ADDR | RANGE_CHAIN;

/// Size of one encoded entry.
pub const ENTRY_SIZE: usize = 16;

/// Which address space an address lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddrSpace {
    /// An I/O virtual address, translated by the IOMMU (the DMA mappings QEMU sends).
    Iova,
    /// A PCI bus address, decoded by whichever endpoint BAR claims it.
    Bus,
}

/// One dma_range entry as it sits in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct DmaRange {
    pub addr: u64,
    pub len: u32,
    pub flags: u32,
}

impl DmaRange {
    /// A data segment in the given address space.
    pub fn segment(space: AddrSpace, addr: u64, len: u32) -> Self {
        let flags = match space {
            AddrSpace::Iova => 0,
            AddrSpace::Bus => RANGE_BUS_ADDR,
        };
        Self { addr, len, flags }
    }

    /// A chain entry (or a list head): the list block at `addr`, `len` bytes long.
    pub fn chain(space: AddrSpace, addr: u64, len: u32) -> Self {
        let mut r = Self::segment(space, addr, len);
        r.flags |= RANGE_CHAIN;
        r
    }

    pub fn space(&self) -> AddrSpace {
        if self.flags & RANGE_BUS_ADDR != 0 {
            AddrSpace::Bus
        } else {
            AddrSpace::Iova
        }
    }

    pub fn is_chain(&self) -> bool {
        self.flags & RANGE_CHAIN != 0
    }

    /// `addr + len`, or `None` when it overflows the 64-bit address space.
    pub fn end(&self) -> Option<u64> {
        self.addr.checked_add(u64::from(self.len))
    }

    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; ENTRY_SIZE]) -> Self {
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&b[0..8]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&b[8..12]);
        let mut flags = [0u8; 4];
        flags.copy_from_slice(&b[12..16]);
        Self {
            addr: u64::from_le_bytes(addr),
            len: u32::from_le_bytes(len),
            flags: u32::from_le_bytes(flags),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_layout_is_addr_len_flags_little_endian() {
        let r = DmaRange {
            addr: 0x1122_3344_5566_7788,
            len: 0xAABB_CCDD,
            flags: 3,
        };
        let b = r.to_bytes();
        assert_eq!(b[0], 0x88);
        assert_eq!(b[7], 0x11);
        assert_eq!(b[8], 0xDD);
        assert_eq!(b[12], 3);
        assert_eq!(DmaRange::from_bytes(&b), r);
    }

    #[test]
    fn end_detects_overflow() {
        assert_eq!(DmaRange::segment(AddrSpace::Iova, u64::MAX, 1).end(), None);
        assert_eq!(
            DmaRange::segment(AddrSpace::Iova, u64::MAX - 1, 1).end(),
            Some(u64::MAX)
        );
    }
}
