//! The `# phyr-cmd` line (one command the driver ran, as its completion reported it) and the
//! `# phyr-ranges` lines that carry its longer range lists.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use dma_range::ListKind;

use crate::codes::{CmdStatus, Fault, Op};
use crate::fields::{num, Crc, Dash, Fields};
use crate::range::{merge, RangeList, Span};
use crate::syntax::{words_after, ParseError};

/// Longest phyr-cmd line [`Cmd::render`] prints with inline range lists (bytes, without the
/// newline).
pub const MAX_CMD_LINE: usize = 2048;
/// Longest `# phyr-ranges` line [`Cmd::render`] prints (bytes, without the newline).
pub const MAX_RANGES_LINE: usize = 1024;

/// Reference numbers of `# phyr-ranges` blocks, unique within the process.
static NEXT_REF: AtomicU32 = AtomicU32::new(1);

/// Everything a phyr-cmd line says about one command, with its range lists as `L`: a
/// [`CmdLine`] holds them as printed (inline or `@N/K`), a [`Cmd`] complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdReport<L> {
    /// The endpoint's ENDPOINT_ID register (the device's numbering, as in `trace/epN.phyrtrace`).
    pub ep: u32,
    pub q: u32,
    pub id: u16,
    pub op: Op,
    pub status: CmdStatus,
    pub result: u64,
    /// Total length of the data the command was asked to move (see [`Op::data_list`]).
    pub bytes: u64,
    /// CRC32C of those bytes as the driver expects them; `None` (`-`) if it does not know.
    pub crc32c: Option<u32>,
    pub src: L,
    pub dst: L,
    /// Every list block the device was told to read.
    pub lists: L,
    pub fault: Option<Fault>,
}

/// One `# phyr-cmd` line as printed: its range lists inline or as references.
pub type CmdLine = CmdReport<RangeList>;

/// A command with its range lists complete (what a parser gets back from a phyr-cmd line and
/// its phyr-ranges lines, and what a producer renders).
pub type Cmd = CmdReport<Vec<Span>>;

impl<L> CmdReport<L> {
    /// The same command with `[src, dst, lists]` as its range lists.
    pub fn with_lists<M>(&self, [src, dst, lists]: [M; 3]) -> CmdReport<M> {
        CmdReport {
            ep: self.ep,
            q: self.q,
            id: self.id,
            op: self.op,
            status: self.status,
            result: self.result,
            bytes: self.bytes,
            crc32c: self.crc32c,
            src,
            dst,
            lists,
            fault: self.fault,
        }
    }
}

impl fmt::Display for CmdLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "# phyr-cmd ep={} q={} id={} op={} status={} result={:#x} bytes={} crc32c={} src={} dst={} lists={} fault={}",
            self.ep,
            self.q,
            self.id,
            self.op,
            self.status,
            self.result,
            self.bytes,
            Dash(self.crc32c.map(Crc)),
            self.src,
            self.dst,
            self.lists,
            Dash(self.fault)
        )
    }
}

impl FromStr for CmdLine {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let f = Fields::parse(words_after(s, "cmd")?)?;
        let list = |key| f.req(key)?.parse::<RangeList>();
        Ok(Self {
            ep: f.num("ep")?,
            q: f.num("q")?,
            id: f.num("id")?,
            op: f.req("op")?.parse()?,
            status: f.req("status")?.parse()?,
            result: f.num("result")?,
            bytes: f.num("bytes")?,
            crc32c: f.dash("crc32c", "`-` or a number", num)?,
            src: list("src")?,
            dst: list("dst")?,
            lists: list("lists")?,
            fault: match f.req("fault")? {
                "-" => None,
                x => Some(x.parse()?),
            },
        })
    }
}

/// One `# phyr-ranges N I/T R R ...` line: part `part` of `parts` (from 1) of reference `n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangesLine {
    pub n: u32,
    pub part: u32,
    pub parts: u32,
    pub spans: Vec<Span>,
}

impl fmt::Display for RangesLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "# phyr-ranges {} {}/{}", self.n, self.part, self.parts)?;
        for s in &self.spans {
            write!(f, " {s}")?;
        }
        Ok(())
    }
}

impl FromStr for RangesLine {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut words = words_after(s, "ranges")?.split_whitespace();
        let bad = |what| ParseError::Positional { kind: "ranges", what };
        let n = words
            .next()
            .and_then(num)
            .ok_or(bad("first word is the reference number N"))?;
        let (part, parts) = words
            .next()
            .and_then(|w| w.split_once('/'))
            .and_then(|(i, t)| Some((num(i)?, num(t)?)))
            .filter(|&(i, t)| i >= 1 && i <= t)
            .ok_or(bad("second word is `I/T` with 1 <= I <= T"))?;
        let spans = words.map(str::parse).collect::<Result<_, _>>()?;
        Ok(Self { n, part, parts, spans })
    }
}

impl Cmd {
    /// The ranges the command handed out for `list` (`Queue` has none).
    pub fn ranges(&self, list: ListKind) -> &[Span] {
        match list {
            ListKind::Src => &self.src,
            ListKind::Dst => &self.dst,
            ListKind::Descriptor => &self.lists,
            ListKind::Queue => &[],
        }
    }

    /// The phyr-cmd line, followed (after `\n`) by its `# phyr-ranges` lines if it needs any:
    /// ranges merged (see [`merge`]), the longest lists moved to references until the line fits
    /// [`MAX_CMD_LINE`]. Print it with one write so the lines stay together.
    pub fn render(&self) -> String {
        self.render_with(&NEXT_REF)
    }

    /// As [`render`](Self::render), taking reference numbers from `refs`.
    pub fn render_with(&self, refs: &AtomicU32) -> String {
        let (line, ranges) = self.lines_with(refs);
        let mut out = line.to_string();
        for r in ranges {
            out.push('\n');
            out.push_str(&r.to_string());
        }
        out
    }

    /// The lines [`render_with`](Self::render_with) prints.
    pub fn lines_with(&self, refs: &AtomicU32) -> (CmdLine, Vec<RangesLine>) {
        let mut merged = [
            merge(self.src.clone()),
            merge(self.dst.clone()),
            merge(self.lists.clone()),
        ];
        let inline = |m: &[Vec<Span>; 3]| m.clone().map(RangeList::Inline);
        let mut fields = inline(&merged);
        let mut moved: Vec<(u32, usize)> = Vec::new();
        loop {
            let line = self.with_lists(fields.clone());
            if line.to_string().len() <= MAX_CMD_LINE {
                break;
            }
            let longest = (0..3)
                .filter(|&i| matches!(fields[i], RangeList::Inline(_)))
                .max_by_key(|&i| fields[i].to_string().len());
            let Some(i) = longest else { break };
            let n = refs.fetch_add(1, Ordering::Relaxed);
            fields[i] = RangeList::Ref { n, k: merged[i].len() };
            moved.push((n, i));
        }
        let ranges = moved
            .into_iter()
            .flat_map(|(n, i)| ranges_lines(n, std::mem::take(&mut merged[i])))
            .collect();
        (self.with_lists(fields), ranges)
    }

    /// The command of `line`, its referenced lists still empty (filled from phyr-ranges lines).
    pub fn from_line(line: &CmdLine) -> Self {
        let inline = |l: &RangeList| match l {
            RangeList::Inline(v) => v.clone(),
            RangeList::Ref { .. } => Vec::new(),
        };
        line.with_lists([inline(&line.src), inline(&line.dst), inline(&line.lists)])
    }
}

/// The `# phyr-ranges n I/T ...` lines of reference `n`, each under [`MAX_RANGES_LINE`].
fn ranges_lines(n: u32, spans: Vec<Span>) -> Vec<RangesLine> {
    // Room for "# phyr-ranges N I/T " with up to 10-digit numbers.
    let budget = MAX_RANGES_LINE - 48;
    let mut parts: Vec<(usize, Vec<Span>)> = vec![(0, Vec::new())];
    for s in spans {
        let t = s.to_string().len();
        let (len, cur) = parts.last_mut().expect("never empty");
        if !cur.is_empty() && *len + 1 + t > budget {
            parts.push((t, vec![s]));
        } else {
            *len += t + usize::from(!cur.is_empty());
            cur.push(s);
        }
    }
    let total = parts.len() as u32;
    parts
        .into_iter()
        .zip(1..)
        .map(|((_, spans), part)| RangesLine {
            n,
            part,
            parts: total,
            spans,
        })
        .collect()
}
