//! The phyr ABI: what the device and any driver agree on. docs/ABI.md is the human spec.
//!
//! - `entry`: the dma_range entry `{ u64 addr; u32 len; u32 flags; }` and its flags.
//! - `list`: list blocks, CHAIN entries, the device's validating walk, a driver's encoder.
//! - `regs`: the BAR0 register map and PCI identity.
//! - `command`: submission entries and opcodes.
//! - `completion`: completion entries and statuses.
//! - `list_kind`: which list a transaction or fault belongs to (trace records, completions, reports).

mod command;
mod completion;
mod entry;
mod list;
mod list_kind;
pub mod regs;

pub use command::{Command, Opcode, COMMAND_SIZE};
pub use completion::{
    Completion, Status, COMPLETION_SIZE, FAULT_LIST_DST, FAULT_LIST_NONE, FAULT_LIST_SRC, NO_SEGMENT,
};
pub use entry::{AddrSpace, DmaRange, ENTRY_SIZE, RANGE_BUS_ADDR, RANGE_CHAIN, RANGE_FLAGS_KNOWN};
pub use list::{
    blocks_needed, encode_chained, split_range, walk, walk_into, ListFault, ListLimits, ReadFault, WalkedList,
    MAX_SEGMENT_LEN,
};
pub use list_kind::ListKind;
