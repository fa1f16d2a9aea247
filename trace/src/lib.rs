//! Device-side DMA traces: the `.phyrtrace` file format (written out in `trace/FORMAT.md`, the
//! one description of the layout), the recorder the device links, and the reader.
//!
//! - [`Record`]: what the device did on the bus, or a protocol event (the contract with the
//!   device's recording hook).
//! - [`Recorder`]: the hook's sink, one bounded `<dir>/ep<N>.phyrtrace` per endpoint.
//! - [`format`]: encoding and decoding of the header and frames.
//! - [`TraceReader`]: reads every complete record, reports a torn tail, and says whether the
//!   writer closed the file ([`Closure`]) or was killed.
//!
//! The inspection tools (listing, filters, summaries, exporters, following a live run, finding
//! a run's traces) are the `phyr-trace-tools` crate (`trace-tools/`).

mod clock;
pub mod format;
mod reader;
mod record;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
mod writer;

pub use clock::TraceClock;
pub use format::{FormatError, Header};
pub use reader::{read_bytes, Closure, FileError, ReadError, Tail, TraceContents, TraceReader};
pub use record::{Direction, DmaRecord, Event, Payload, Record, Space, Target};
pub use writer::{trace_file_name, Recorder, TraceConfig, WriteError};
