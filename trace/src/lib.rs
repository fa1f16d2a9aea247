//! Device-side DMA traces (issue 6).
//!
//! - [`Record`]: what the device did on the bus, or a protocol event (the contract with the
//!   device's recording hook).
//! - [`format`]: the bounded binary file format (`trace/FORMAT.md`).
//! - [`TraceReader`]: reads every complete record and reports a torn tail.

pub mod format;
mod reader;
mod record;
#[cfg(test)]
mod testutil;

pub use format::{FormatError, Header};
pub use reader::{read_bytes, FileError, ReadError, Tail, TraceContents, TraceReader};
pub use record::{Direction, DmaRecord, Event, Payload, Record, Space, Target};
