//! Tools over device-side DMA traces (`phyr-trace` reads and writes them): what
//! `phyr-harness trace` and the cross-check use.
//!
//! - [`resolve_run_dir`] / [`trace_files`]: finding a run's traces (`runs/latest`, a run
//!   directory, its `trace/` directory, or one file).
//! - [`MergedReader`]: a run's files in time order; [`Follower`]: tailing them while a guest runs.
//! - [`Filter`], [`write_line`] (listing), [`Summary`], [`export`] (Perfetto, JSON Lines).
//! - [`inspect`], [`follow`]: the `trace` command's views.

pub mod export;
mod filter;
mod follow;
mod inspect;
mod listing;
mod merge;
mod names;
mod run_dir;
mod summary;

pub use filter::{parse_space, parse_u64, AddrRange, Filter, FilterError, StatusFilter};
pub use follow::{FollowError, Follower};
pub use inspect::{export, follow, follow_target, inspect, ExportFormat, FollowRunError, Outcome, Views};
pub use listing::{event_details, fmt_time, write_header, write_line, Style};
pub use merge::{FileReport, Item, MergedReader};
pub use names::{opcode_name, status_description, status_is_failure, status_name};
pub use run_dir::{pick_recipe_run, resolve_run_dir, trace_files, LocateError, TraceFile};
pub use summary::{human_bytes, EndpointSummary, ErrorGroup, Flow, Summary};
