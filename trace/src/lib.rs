//! Device-side DMA traces (issue 6).
//!
//! - [`Record`]: what the device did on the bus, or a protocol event (the contract with the
//!   device's recording hook).
//! - [`Recorder`]: the hook's sink, one bounded `<dir>/ep<N>.phyrtrace` per endpoint.
//! - [`format`]: the binary file format (`trace/FORMAT.md`).
//! - [`TraceReader`]: reads every complete record and reports a torn tail.

mod crc;
pub mod format;
mod reader;
mod record;
#[cfg(test)]
mod testutil;
mod writer;

pub use crc::{data_crc, data_crc_append};
pub use format::{FormatError, Header};
pub use reader::{read_bytes, FileError, ReadError, Tail, TraceContents, TraceReader};
pub use record::{Direction, DmaRecord, Event, Payload, Record, Space, Target};
pub use writer::{trace_file_name, Recorder, TraceClock, TraceConfig, WriteError};
