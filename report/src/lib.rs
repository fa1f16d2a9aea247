//! The report lines a phyr driver prints for the harness to cross-check against the device's
//! DMA traces: `# phyr-endpoint`, `# phyr-map`, `# phyr-queue`, `# phyr-cmd`, `# phyr-ranges`,
//! `# phyr-reset` and the kernel path's `# phyr-kmap`. docs/REPORT.md is the grammar written
//! out (every line, field and example, for producers in C too); this crate is its one
//! implementation: each line type prints itself (`Display`) and parses itself (`FromStr`),
//! [`Line::find`] picks a report line out of a console line, [`parse_log`] turns a console log
//! into commands with their range lists resolved.

mod cmd;
mod codes;
mod fields;
mod lines;
mod log;
mod range;

use std::fmt;
use std::str::FromStr;

pub use cmd::{Cmd, CmdLine, CmdReport, RangesLine, MAX_CMD_LINE, MAX_RANGES_LINE};
pub use codes::{CmdStatus, Fault, Op};
pub use fields::num;
pub use lines::{
    EndpointLine, KernelSeg, KmapLine, MapLine, MapTarget, MapType, Perm, QueueLine, QueueMode, ResetKind, ResetLine,
    Window,
};
pub use log::{parse_log, ConsoleLog, ReportedCmd};
pub use range::{merge, space_from_name, space_name, RangeList, Span};

/// What every report line starts with, before its kind.
pub const MARKER: &str = "# phyr-";

/// Why a report line did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a `# phyr-{0}` line")]
    NotThisKind(&'static str),
    #[error("`# phyr-{0}` is not a report line kind")]
    UnknownKind(String),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{key}={value}`: {what}")]
    Bad {
        key: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("field `{0}` given twice")]
    Duplicate(String),
    #[error("`{0}` is not `key=value`")]
    NotKeyValue(String),
    #[error("range `{text}`: {what}")]
    Range { text: String, what: &'static str },
    #[error("phyr-{kind} line: {what}")]
    Positional { kind: &'static str, what: &'static str },
}

/// The words after `# phyr-<kind>` in `line` (leading and trailing whitespace ignored).
pub(crate) fn words_after<'a>(line: &'a str, kind: &'static str) -> Result<&'a str, ParseError> {
    let rest = line
        .trim()
        .strip_prefix(MARKER)
        .and_then(|r| r.strip_prefix(kind))
        .ok_or(ParseError::NotThisKind(kind))?;
    if rest.is_empty() || rest.starts_with(char::is_whitespace) {
        Ok(rest)
    } else {
        Err(ParseError::NotThisKind(kind))
    }
}

/// Any report line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Endpoint(EndpointLine),
    Map(MapLine),
    Queue(QueueLine),
    Cmd(CmdLine),
    Ranges(RangesLine),
    Reset(ResetLine),
    Kmap(KmapLine),
}

/// Every line kind, as spelled after `# phyr-`.
pub const KINDS: [&str; 7] = ["endpoint", "map", "queue", "cmd", "ranges", "reset", "kmap"];

impl Line {
    /// The report line in one console line, if it holds one: the marker `# phyr-<kind>` at the
    /// start or after a space (what comes before it, a printk timestamp or a `dev_info` device
    /// prefix, is ignored). `None` for other lines and for kinds this crate does not know;
    /// `Some(Err)` for a report line that does not parse.
    pub fn find(console_line: &str) -> Option<Result<Line, ParseError>> {
        let mut from = 0;
        let at = loop {
            let i = from + console_line[from..].find(MARKER)?;
            if i == 0 || console_line[..i].ends_with(char::is_whitespace) {
                break i;
            }
            from = i + MARKER.len();
        };
        let text = &console_line[at..];
        let kind = text[MARKER.len()..].split_whitespace().next().unwrap_or("");
        KINDS.contains(&kind).then(|| text.parse())
    }

    /// The kind, as spelled after `# phyr-`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Endpoint(_) => "endpoint",
            Self::Map(_) => "map",
            Self::Queue(_) => "queue",
            Self::Cmd(_) => "cmd",
            Self::Ranges(_) => "ranges",
            Self::Reset(_) => "reset",
            Self::Kmap(_) => "kmap",
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Endpoint(l) => l.fmt(f),
            Self::Map(l) => l.fmt(f),
            Self::Queue(l) => l.fmt(f),
            Self::Cmd(l) => l.fmt(f),
            Self::Ranges(l) => l.fmt(f),
            Self::Reset(l) => l.fmt(f),
            Self::Kmap(l) => l.fmt(f),
        }
    }
}

impl FromStr for Line {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let t = s.trim();
        let kind = t
            .strip_prefix(MARKER)
            .and_then(|r| r.split_whitespace().next())
            .ok_or_else(|| ParseError::UnknownKind(t.chars().take(20).collect()))?;
        Ok(match kind {
            "endpoint" => Self::Endpoint(t.parse()?),
            "map" => Self::Map(t.parse()?),
            "queue" => Self::Queue(t.parse()?),
            "cmd" => Self::Cmd(t.parse()?),
            "ranges" => Self::Ranges(t.parse()?),
            "reset" => Self::Reset(t.parse()?),
            "kmap" => Self::Kmap(t.parse()?),
            k => return Err(ParseError::UnknownKind(k.to_string())),
        })
    }
}

#[cfg(test)]
mod tests;
