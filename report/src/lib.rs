//! The report lines a phyr driver prints for the harness to cross-check against the device's
//! DMA traces: `# phyr-endpoint`, `# phyr-map`, `# phyr-queue`, `# phyr-cmd`, `# phyr-ranges`,
//! `# phyr-reset`, the kernel path's `# phyr-kmap` and `# phyr-p2p`, and `phyr soak`'s
//! `# phyr-soak`. docs/REPORT.md is the grammar written
//! out (every line, field and example, for producers in C too); this crate is its one
//! implementation: each line type prints itself (`Display`) and parses itself (`FromStr`),
//! [`Line::find`] picks a report line out of a console line, [`parse_log`] turns a console log
//! into commands with their range lists resolved.

mod any_line;
mod cmd;
mod codes;
mod fields;
mod kmap;
mod lines;
mod log;
mod range;
mod soak;
mod syntax;

pub use any_line::{Line, KINDS};
pub use cmd::{Cmd, CmdLine, CmdReport, RangesLine, MAX_CMD_LINE, MAX_RANGES_LINE};
pub use codes::{CmdStatus, Fault, Op};
pub use fields::num;
pub use kmap::{KernelCall, KernelPath, KernelSeg, KmapLine, MapState, MapType, P2pDecision, P2pLine};
pub use lines::{EndpointLine, MapLine, MapTarget, Perm, QueueLine, QueueMode, ResetKind, ResetLine, Window};
pub use log::{parse_log, ConsoleLog, KernelList, ReportedCmd};
pub use range::{merge, space_from_name, space_name, RangeList, Span};
pub use soak::{SoakLine, SoakState};
pub use syntax::{ParseError, MARKER};

#[cfg(test)]
mod tests;
