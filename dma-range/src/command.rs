//! Submission queue entries: 64 bytes, little-endian.
//!
//! ```text
//! 0x00 u8  opcode            0x01 u8 flags (must be 0)   0x02 u16 command_id   0x04 u32 reserved (0)
//! 0x08 dma_range src         list head: {addr, len = block size in bytes, flags = BUS_ADDR?}
//! 0x18 dma_range dst         list head (COPY, FILL, COMPARE)
//! 0x28 u64 pattern           FILL: 8-byte pattern, repeated from offset 0 of the destination
//! 0x30 u64 reserved (0)      0x38 u64 reserved (0)
//! ```

use crate::entry::{DmaRange, ENTRY_SIZE, RANGE_CHAIN};

pub const COMMAND_SIZE: usize = 64;

/// What a command asks the DMA engine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Opcode {
    /// Completes at once; moves nothing.
    Nop = 0,
    /// Copy the source list's bytes to the destination list (total lengths must match).
    Copy = 1,
    /// Write the 8-byte pattern over the destination list.
    Fill = 2,
    /// CRC32C (Castagnoli, as iSCSI/ext4) of the source list; the result is the checksum.
    Crc32c = 3,
    /// Compare the source and destination lists; the result is the first differing offset.
    Compare = 4,
}

impl Opcode {
    /// Every opcode, in code order.
    pub const ALL: [Opcode; 5] = [Self::Nop, Self::Copy, Self::Fill, Self::Crc32c, Self::Compare];

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|o| *o as u8 == v)
    }

    /// The opcode [`name`](Self::name) spells `name` (`COPY`; exact case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Whether the command reads a source list.
    pub fn uses_src(self) -> bool {
        matches!(self, Self::Copy | Self::Crc32c | Self::Compare)
    }

    /// Whether the command uses a destination list.
    pub fn uses_dst(self) -> bool {
        matches!(self, Self::Copy | Self::Fill | Self::Compare)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Nop => "NOP",
            Self::Copy => "COPY",
            Self::Fill => "FILL",
            Self::Crc32c => "CRC32C",
            Self::Compare => "COMPARE",
        }
    }
}

/// A submission entry, decoded but not yet validated (the opcode is kept raw so a bad
/// one can be reported with its command id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Command {
    pub opcode: u8,
    pub flags: u8,
    pub command_id: u16,
    pub reserved0: u32,
    /// Head of the source list (a list pointer: CHAIN flag optional, len = block bytes).
    pub src: DmaRange,
    /// Head of the destination list.
    pub dst: DmaRange,
    pub pattern: u64,
    pub reserved1: u64,
    pub reserved2: u64,
}

impl Command {
    /// A command with the given opcode, id and list heads.
    pub fn new(opcode: Opcode, command_id: u16, src: DmaRange, dst: DmaRange) -> Self {
        Self {
            opcode: opcode as u8,
            command_id,
            src,
            dst,
            ..Default::default()
        }
    }

    /// A list head pointing at `entries` entries at `addr` in `space`.
    pub fn list_head(space: crate::AddrSpace, addr: u64, entries: u32) -> DmaRange {
        let bytes = entries.saturating_mul(ENTRY_SIZE as u32);
        let mut r = DmaRange::chain(space, addr, bytes);
        r.flags &= !RANGE_CHAIN;
        r
    }

    pub fn to_bytes(&self) -> [u8; COMMAND_SIZE] {
        let mut b = [0u8; COMMAND_SIZE];
        b[0] = self.opcode;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.command_id.to_le_bytes());
        b[4..8].copy_from_slice(&self.reserved0.to_le_bytes());
        b[8..24].copy_from_slice(&self.src.to_bytes());
        b[24..40].copy_from_slice(&self.dst.to_bytes());
        b[40..48].copy_from_slice(&self.pattern.to_le_bytes());
        b[48..56].copy_from_slice(&self.reserved1.to_le_bytes());
        b[56..64].copy_from_slice(&self.reserved2.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; COMMAND_SIZE]) -> Self {
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(x)
        };
        let range_at = |o: usize| {
            let mut x = [0u8; ENTRY_SIZE];
            x.copy_from_slice(&b[o..o + ENTRY_SIZE]);
            DmaRange::from_bytes(&x)
        };
        Self {
            opcode: b[0],
            flags: b[1],
            command_id: u16_at(2),
            reserved0: u32_at(4),
            src: range_at(8),
            dst: range_at(24),
            pattern: u64_at(40),
            reserved1: u64_at(48),
            reserved2: u64_at(56),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AddrSpace;

    #[test]
    fn command_round_trips() {
        let mut c = Command::new(
            Opcode::Copy,
            0xBEEF,
            Command::list_head(AddrSpace::Iova, 0x1000, 3),
            Command::list_head(AddrSpace::Bus, 0xfe00_0000, 1),
        );
        c.pattern = 0x0102_0304_0506_0708;
        let b = c.to_bytes();
        assert_eq!(b[0], 1);
        assert_eq!(u16::from_le_bytes([b[2], b[3]]), 0xBEEF);
        assert_eq!(Command::from_bytes(&b), c);
        assert_eq!(c.src.len, 48);
        assert!(!c.src.is_chain());
        assert_eq!(c.dst.space(), AddrSpace::Bus);
    }

    #[test]
    fn unknown_opcode_is_none() {
        assert_eq!(Opcode::from_u8(5), None);
        assert_eq!(Opcode::from_u8(0xFF), None);
        for o in Opcode::ALL {
            assert_eq!(Opcode::from_name(o.name()), Some(o));
        }
        assert_eq!(Opcode::from_name("copy"), None);
    }
}
