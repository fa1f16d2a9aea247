//! [`Line`]: any report line, found in a console line and parsed by its kind.

use std::fmt;
use std::str::FromStr;

use crate::cmd::{CmdLine, RangesLine};
use crate::kmap::{KmapLine, P2pLine};
use crate::lines::{EndpointLine, MapLine, QueueLine, ResetLine};
use crate::soak::SoakLine;
use crate::syntax::{ParseError, MARKER};

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
    P2p(P2pLine),
    Soak(SoakLine),
}

/// Every line kind, as spelled after `# phyr-`.
pub const KINDS: [&str; 9] = [
    "endpoint", "map", "queue", "cmd", "ranges", "reset", "kmap", "p2p", "soak",
];

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
            Self::P2p(_) => "p2p",
            Self::Soak(_) => "soak",
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
            Self::P2p(l) => l.fmt(f),
            Self::Soak(l) => l.fmt(f),
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
            "p2p" => Self::P2p(t.parse()?),
            "soak" => Self::Soak(t.parse()?),
            k => return Err(ParseError::UnknownKind(k.to_string())),
        })
    }
}
