//! Device-side DMA traces (issue 6).
//!
//! - [`Record`]: what the device did on the bus, or a protocol event (the contract with the
//!   device's recording hook).
//! - [`Recorder`]: the hook's sink, one bounded `<dir>/ep<N>.phyrtrace` per endpoint.
//! - [`format`]: the binary file format (`trace/FORMAT.md`).
//! - [`TraceReader`]: reads every complete record and reports a torn tail; [`MergedReader`]
//!   reads a run's files in time order.
//! - Tools: [`Filter`], [`Summary`], [`write_line`] (listing), [`export`] (Perfetto, JSON Lines),
//!   [`resolve_run_dir`] / [`trace_files`] (finding a run's traces).

mod clock;
mod crc;
pub mod export;
mod filter;
mod follow;
pub mod format;
mod inspect;
mod listing;
mod merge;
mod names;
mod reader;
mod record;
mod run_dir;
mod summary;
#[cfg(test)]
mod testutil;
mod writer;

pub use clock::TraceClock;
pub use crc::{data_crc, data_crc_append};
pub use filter::{parse_space, parse_u64, AddrRange, Filter, FilterError, StatusFilter};
pub use follow::{FollowError, Follower};
pub use format::{FormatError, Header};
pub use inspect::{export, follow, follow_target, inspect, ExportFormat, FollowRunError, Outcome, Views};
pub use listing::{event_details, fmt_time, write_header, write_line, Style};
pub use merge::{FileReport, Item, MergedReader};
pub use names::{opcode_name, status_description, status_is_failure, status_name};
pub use reader::{read_bytes, FileError, ReadError, Tail, TraceContents, TraceReader};
pub use record::{Direction, DmaRecord, Event, Payload, Record, Space, Target};
pub use run_dir::{pick_recipe_run, resolve_run_dir, trace_files, LocateError, TraceFile};
pub use summary::{human_bytes, EndpointSummary, ErrorGroup, Flow, Summary};
pub use writer::{trace_file_name, Recorder, TraceConfig, WriteError};
