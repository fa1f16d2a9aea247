//! The 16-byte message header and the command numbers.

use super::bytes::{u16_at, u32_at};

pub const HEADER_SIZE: usize = 16;
/// Bits 0-3 of `flags`: the message type.
pub const TYPE_MASK: u32 = 0xf;
pub const TYPE_COMMAND: u32 = 0;
pub const TYPE_REPLY: u32 = 1;
/// The sender expects no reply (posted writes).
pub const FLAG_NO_REPLY: u32 = 0x10;
/// The reply is an error; `error` holds the errno.
pub const FLAG_ERROR: u32 = 0x20;

/// A message header as it sits on the wire (all little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub msg_id: u16,
    pub command: u16,
    /// Whole message size, header included.
    pub msg_size: u32,
    pub flags: u32,
    pub error: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_SIZE]) -> Header {
        Header {
            msg_id: u16_at(b, 0),
            command: u16_at(b, 2),
            msg_size: u32_at(b, 4),
            flags: u32_at(b, 8),
            error: u32_at(b, 12),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..2].copy_from_slice(&self.msg_id.to_le_bytes());
        b[2..4].copy_from_slice(&self.command.to_le_bytes());
        b[4..8].copy_from_slice(&self.msg_size.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.error.to_le_bytes());
        b
    }

    pub fn msg_type(&self) -> u32 {
        self.flags & TYPE_MASK
    }

    pub fn is_reply(&self) -> bool {
        self.msg_type() == TYPE_REPLY
    }

    pub fn no_reply(&self) -> bool {
        self.flags & FLAG_NO_REPLY != 0
    }

    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }
}

/// vfio-user command numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Command {
    Version = 1,
    DmaMap = 2,
    DmaUnmap = 3,
    DeviceGetInfo = 4,
    DeviceGetRegionInfo = 5,
    DeviceGetRegionIoFds = 6,
    DeviceGetIrqInfo = 7,
    DeviceSetIrqs = 8,
    RegionRead = 9,
    RegionWrite = 10,
    DmaRead = 11,
    DmaWrite = 12,
    DeviceReset = 13,
    DirtyPages = 14,
    RegionWriteMulti = 15,
    DeviceFeature = 16,
    MigDataRead = 17,
    MigDataWrite = 18,
}

impl Command {
    pub fn from_u16(v: u16) -> Option<Command> {
        use Command::*;
        Some(match v {
            1 => Version,
            2 => DmaMap,
            3 => DmaUnmap,
            4 => DeviceGetInfo,
            5 => DeviceGetRegionInfo,
            6 => DeviceGetRegionIoFds,
            7 => DeviceGetIrqInfo,
            8 => DeviceSetIrqs,
            9 => RegionRead,
            10 => RegionWrite,
            11 => DmaRead,
            12 => DmaWrite,
            13 => DeviceReset,
            14 => DirtyPages,
            15 => RegionWriteMulti,
            16 => DeviceFeature,
            17 => MigDataRead,
            18 => MigDataWrite,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use Command::*;
        match self {
            Version => "VERSION",
            DmaMap => "DMA_MAP",
            DmaUnmap => "DMA_UNMAP",
            DeviceGetInfo => "DEVICE_GET_INFO",
            DeviceGetRegionInfo => "DEVICE_GET_REGION_INFO",
            DeviceGetRegionIoFds => "DEVICE_GET_REGION_IO_FDS",
            DeviceGetIrqInfo => "DEVICE_GET_IRQ_INFO",
            DeviceSetIrqs => "DEVICE_SET_IRQS",
            RegionRead => "REGION_READ",
            RegionWrite => "REGION_WRITE",
            DmaRead => "DMA_READ",
            DmaWrite => "DMA_WRITE",
            DeviceReset => "DEVICE_RESET",
            DirtyPages => "DIRTY_PAGES",
            RegionWriteMulti => "REGION_WRITE_MULTI",
            DeviceFeature => "DEVICE_FEATURE",
            MigDataRead => "MIG_DATA_READ",
            MigDataWrite => "MIG_DATA_WRITE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            msg_id: 0x1234,
            command: 9,
            msg_size: 32,
            flags: TYPE_REPLY | FLAG_ERROR,
            error: 22,
        };
        assert_eq!(Header::parse(&h.encode()), h);
        assert!(h.is_reply() && h.is_error() && !h.no_reply());
    }

    #[test]
    fn unknown_command_numbers_are_none() {
        assert_eq!(Command::from_u16(0), None);
        assert_eq!(Command::from_u16(19), None);
        assert_eq!(Command::from_u16(16), Some(Command::DeviceFeature));
    }
}
