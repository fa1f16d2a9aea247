//! The coded fields of a phyr-cmd line: `op=`, `status=` (names from dma-range, or raw numbers
//! the ABI does not define) and `fault=`.

use std::fmt;
use std::str::FromStr;

use dma_range::{Completion, ListKind, Opcode, Status};

use crate::fields::{bad, num};
use crate::syntax::ParseError;

/// A field holding an ABI code: `Known` prints the ABI's name, `Unknown` the raw code as `0x..`;
/// parsing takes either (a number the ABI names becomes `Known`).
macro_rules! abi_code {
    ($(#[$doc:meta])* $name:ident($abi:ident, $raw:ty, $from_raw:ident), key $key:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            Known($abi),
            Unknown($raw),
        }

        impl $name {
            pub fn from_code(code: $raw) -> Self {
                $abi::$from_raw(code).map_or(Self::Unknown(code), Self::Known)
            }

            pub fn code(self) -> $raw {
                match self {
                    Self::Known(x) => x as $raw,
                    Self::Unknown(c) => c,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::Known(x) => f.write_str(x.name()),
                    Self::Unknown(c) => write!(f, "{c:#x}"),
                }
            }
        }

        impl FromStr for $name {
            type Err = ParseError;

            fn from_str(s: &str) -> Result<Self, ParseError> {
                $abi::from_name(s)
                    .map(Self::Known)
                    .or_else(|| num(s).map(Self::from_code))
                    .ok_or_else(|| bad($key, s, $what))
            }
        }
    };
}

abi_code!(
    /// The `op=` of a phyr-cmd line: an opcode by name (`COPY`), or the raw code (`0x7`) of one
    /// the ABI does not define.
    Op(Opcode, u8, from_u8), key "op", "not an opcode name or number"
);

abi_code!(
    /// The `status=` of a phyr-cmd line: a status by name (`IOMMU_FAULT`), or the raw code of
    /// one the ABI does not define.
    CmdStatus(Status, u16, from_u16), key "status", "not a status name or number"
);

impl Op {
    /// The list whose bytes `bytes=` and `crc32c=` describe: the destination for COPY and FILL,
    /// the source for CRC32C and COMPARE; none for NOP and unknown opcodes.
    pub fn data_list(self) -> Option<ListKind> {
        match self {
            Self::Known(Opcode::Copy | Opcode::Fill) => Some(ListKind::Dst),
            Self::Known(Opcode::Crc32c | Opcode::Compare) => Some(ListKind::Src),
            Self::Known(Opcode::Nop) | Self::Unknown(_) => None,
        }
    }
}

impl CmdStatus {
    /// SUCCESS and COMPARE_MISMATCH are normal outcomes; everything else (unknown codes too)
    /// is a failure.
    pub fn is_failure(self) -> bool {
        match self {
            Self::Known(s) => s.is_failure(),
            Self::Unknown(_) => true,
        }
    }
}

/// The `fault=` of a phyr-cmd line when the completion names a faulting segment:
/// `list=src|dst,seg=N,addr=0x..`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub list: ListKind,
    /// The faulting entry's index in its list (data entries across chained blocks, from 0).
    pub segment: u32,
    pub addr: u64,
}

impl Fault {
    /// The fault a completion reports, if it names a list.
    pub fn of(c: &Completion) -> Option<Self> {
        Some(Self {
            list: ListKind::from_fault_list(c.fault_list)?,
            segment: c.segment,
            addr: c.fault_addr,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "list={},seg={},addr={:#x}",
            self.list.name(),
            self.segment,
            self.addr
        )
    }
}

impl FromStr for Fault {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let parts: Vec<&str> = s.split(',').collect();
        let field = |i: usize, key: &str| parts.get(i).and_then(|p| p.strip_prefix(key));
        let fault = || {
            Some(Self {
                list: ListKind::from_name(field(0, "list=")?)?,
                segment: num(field(1, "seg=")?)?,
                addr: num(field(2, "addr=")?)?,
            })
        };
        fault()
            .filter(|_| parts.len() == 3)
            .ok_or_else(|| bad("fault", s, "`-` or `list=src|dst,seg=N,addr=0x..`"))
    }
}
