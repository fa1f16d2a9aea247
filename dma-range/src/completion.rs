//! Completion queue entries (32 bytes, little-endian) and completion statuses.
//!
//! ```text
//! 0x00 u16 command_id   0x02 u16 status   0x04 u16 sq_head   0x06 u8 fault_list   0x07 u8 phase (bit 0)
//! 0x08 u32 segment      0x0C u32 reserved
//! 0x10 u64 result       0x18 u64 fault_addr
//! ```
//! `fault_list`: 0 = source list, 1 = destination list, 0xFF = not about a list.
//! `segment`: index of the faulting entry in its list, counting data entries across chained
//! blocks from 0 (for list-structure faults: the index of the entry being read), 0xFFFF_FFFF if none.

pub const COMPLETION_SIZE: usize = 32;
pub const FAULT_LIST_SRC: u8 = 0;
pub const FAULT_LIST_DST: u8 = 1;
pub const FAULT_LIST_NONE: u8 = 0xFF;
pub const NO_SEGMENT: u32 = u32::MAX;

macro_rules! statuses {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $text:literal; )*) => {
        /// Completion status. Codes are stable ABI; names are spelled as in docs/ABI.md.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[repr(u16)]
        #[allow(non_camel_case_types)]
        pub enum Status {
            $( $(#[$doc])* $name = $code, )*
        }

        impl Status {
            pub fn from_u16(v: u16) -> Option<Self> {
                match v {
                    $( $code => Some(Self::$name), )*
                    _ => None,
                }
            }

            /// The status [`name`](Self::name) spells `name` (`IOMMU_FAULT`; exact case).
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|s| s.name() == name)
            }

            /// The status name as ABI.md spells it (e.g. `IOMMU_FAULT`).
            pub fn name(self) -> &'static str {
                match self { $( Self::$name => stringify!($name), )* }
            }

            /// One sentence saying what went wrong.
            pub fn description(self) -> &'static str {
                match self { $( Self::$name => $text, )* }
            }

            /// Every status, in code order.
            pub const ALL: &'static [Status] = &[ $( Self::$name, )* ];
        }
    };
}

statuses! {
    SUCCESS = 0x00, "command completed";
    /// result = first differing byte offset.
    COMPARE_MISMATCH = 0x01, "the two lists differ";
    INVALID_OPCODE = 0x02, "unknown opcode";
    INVALID_FIELD = 0x03, "a reserved field or flag is not zero";
    /// IOVA not covered by any DMA mapping.
    IOMMU_FAULT = 0x10, "IOVA not mapped (IOMMU fault)";
    WRITE_READ_ONLY = 0x11, "write through a read-only IOVA mapping";
    DMA_MESSAGE_FAILED = 0x12, "the VMM refused a DMA_READ/DMA_WRITE message";
    /// Unsupported Request: no BAR in the fabric decodes the address.
    BUS_NO_TARGET = 0x20, "bus address not decoded by any endpoint (Unsupported Request)";
    /// Unsupported Request: the decoding endpoint is behind another switch, and the root
    /// complex does not route peer-to-peer traffic between root ports.
    BUS_CROSS_SWITCH = 0x21, "bus address decoded behind another switch (Unsupported Request)";
    /// Completer Abort: the decoding BAR does not accept DMA (BAR0 registers).
    BUS_TARGET_ABORT = 0x22, "bus address decoded by a BAR that does not accept DMA (Completer Abort)";
    BUS_PAST_BAR_END = 0x23, "segment runs past the end of the BAR that decodes its start";
    LIST_ZERO_LENGTH = 0x30, "an entry has length zero";
    LIST_ADDR_OVERFLOW = 0x31, "addr + len overflows 64 bits";
    LIST_TOO_MANY_ENTRIES = 0x32, "more data entries than MAX_LIST_ENTRIES";
    LIST_CHAIN_CYCLE = 0x33, "a CHAIN entry points at a block already visited";
    LIST_CHAIN_TOO_LONG = 0x34, "more CHAIN entries than MAX_CHAIN";
    LIST_BAD_FLAGS = 0x35, "an entry has undefined flag bits set";
    LIST_LENGTH_MISMATCH = 0x36, "source and destination lists have different total lengths";
    /// A list block (head or chain target) is empty, not a multiple of 16 bytes, or too large.
    LIST_BAD_BLOCK = 0x37, "list block size is zero, not a multiple of 16, or too large";
    LIST_CHAIN_NOT_LAST = 0x38, "a CHAIN entry is not the last entry of its block";
    /// COPY only: a destination segment shares bytes with a source segment (same address space).
    LIST_OVERLAP = 0x39, "COPY source and destination overlap";
    ABORTED_RESET = 0x40, "aborted by a device reset";
    ABORTED_QUEUE_DISABLED = 0x41, "aborted because the queue was disabled";
}

impl Status {
    /// SUCCESS and COMPARE_MISMATCH are normal outcomes; everything else is a failure.
    pub fn is_failure(self) -> bool {
        !matches!(self, Self::SUCCESS | Self::COMPARE_MISMATCH)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (0x{:02x}): {}", self.name(), *self as u16, self.description())
    }
}

/// A completion entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub command_id: u16,
    /// Raw status code; `Status::from_u16` decodes it.
    pub status: u16,
    pub sq_head: u16,
    pub fault_list: u8,
    pub phase: bool,
    pub segment: u32,
    /// COPY/FILL: bytes written; CRC32C: the checksum; COMPARE: first differing offset
    /// (COMPARE_MISMATCH) or the bytes compared (SUCCESS). On a fault: bytes moved before it.
    pub result: u64,
    pub fault_addr: u64,
}

impl Completion {
    /// A completion without fault details.
    pub fn ok(command_id: u16, status: Status, result: u64) -> Self {
        Self {
            command_id,
            status: status as u16,
            sq_head: 0,
            fault_list: FAULT_LIST_NONE,
            phase: false,
            segment: NO_SEGMENT,
            result,
            fault_addr: 0,
        }
    }

    pub fn to_bytes(&self) -> [u8; COMPLETION_SIZE] {
        let mut b = [0u8; COMPLETION_SIZE];
        b[0..2].copy_from_slice(&self.command_id.to_le_bytes());
        b[2..4].copy_from_slice(&self.status.to_le_bytes());
        b[4..6].copy_from_slice(&self.sq_head.to_le_bytes());
        b[6] = self.fault_list;
        b[7] = u8::from(self.phase);
        b[8..12].copy_from_slice(&self.segment.to_le_bytes());
        b[16..24].copy_from_slice(&self.result.to_le_bytes());
        b[24..32].copy_from_slice(&self.fault_addr.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; COMPLETION_SIZE]) -> Self {
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(x)
        };
        Self {
            command_id: u16::from_le_bytes([b[0], b[1]]),
            status: u16::from_le_bytes([b[2], b[3]]),
            sq_head: u16::from_le_bytes([b[4], b[5]]),
            fault_list: b[6],
            phase: b[7] & 1 != 0,
            segment: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            result: u64_at(16),
            fault_addr: u64_at(24),
        }
    }

    /// The decoded status, if the code is known.
    pub fn status(&self) -> Option<Status> {
        Status::from_u16(self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_round_trips() {
        let c = Completion {
            command_id: 7,
            status: Status::IOMMU_FAULT as u16,
            sq_head: 3,
            fault_list: FAULT_LIST_DST,
            phase: true,
            segment: 5,
            result: 4096,
            fault_addr: 0xdead_0000,
        };
        assert_eq!(Completion::from_bytes(&c.to_bytes()), c);
    }

    #[test]
    fn status_codes_are_unique_and_named() {
        for s in Status::ALL {
            assert_eq!(Status::from_u16(*s as u16), Some(*s));
            assert!(!s.name().is_empty());
        }
        assert_eq!(Status::from_u16(0xFFFF), None);
        assert_eq!(Status::BUS_CROSS_SWITCH.name(), "BUS_CROSS_SWITCH");
        for s in Status::ALL {
            assert_eq!(Status::from_name(s.name()), Some(*s));
        }
        assert_eq!(Status::from_name("success"), None);
    }
}
