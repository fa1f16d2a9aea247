//! The `# phyr-cmd` line (one command the driver ran, as its completion reported it) and the
//! `# phyr-ranges` lines that carry its longer range lists.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use dma_range::{Completion, ListKind, Opcode, Status};

use crate::fields::{bad, num, Fields};
use crate::range::{merge, RangeList, Span};
use crate::{words_after, ParseError};

/// Longest phyr-cmd line [`Cmd::render`] prints with inline range lists (bytes, without the
/// newline).
pub const MAX_CMD_LINE: usize = 2048;
/// Longest `# phyr-ranges` line [`Cmd::render`] prints (bytes, without the newline).
pub const MAX_RANGES_LINE: usize = 1024;

/// Reference numbers of `# phyr-ranges` blocks, unique within the process.
static NEXT_REF: AtomicU32 = AtomicU32::new(1);

/// The `op=` of a phyr-cmd line: an opcode by name (`COPY`), or the raw code (`0x7`) of one
/// the ABI does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Known(Opcode),
    Unknown(u8),
}

impl Op {
    pub fn from_code(code: u8) -> Self {
        Opcode::from_u8(code).map_or(Self::Unknown(code), Self::Known)
    }

    pub fn code(self) -> u8 {
        match self {
            Self::Known(o) => o as u8,
            Self::Unknown(c) => c,
        }
    }

    /// The list whose bytes `bytes=` and `crc32c=` describe: the destination for COPY and FILL,
    /// the source for CRC32C and COMPARE; none for NOP and unknown opcodes.
    pub fn data_list(self) -> Option<ListKind> {
        match self {
            Self::Known(Opcode::Copy | Opcode::Fill) => Some(ListKind::Dst),
            Self::Known(Opcode::Crc32c | Opcode::Compare) => Some(ListKind::Src),
            Self::Known(Opcode::Nop) | Self::Unknown(_) => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(o) => f.write_str(o.name()),
            Self::Unknown(c) => write!(f, "{c:#x}"),
        }
    }
}

impl FromStr for Op {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Opcode::from_name(s)
            .map(Self::Known)
            .or_else(|| num(s).map(Self::from_code))
            .ok_or_else(|| bad("op", s, "not an opcode name or number"))
    }
}

/// The `status=` of a phyr-cmd line: a status by name (`IOMMU_FAULT`), or the raw code of one
/// the ABI does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmdStatus {
    Known(Status),
    Unknown(u16),
}

impl CmdStatus {
    pub fn from_code(code: u16) -> Self {
        Status::from_u16(code).map_or(Self::Unknown(code), Self::Known)
    }

    pub fn code(self) -> u16 {
        match self {
            Self::Known(s) => s as u16,
            Self::Unknown(c) => c,
        }
    }

    /// SUCCESS and COMPARE_MISMATCH are normal outcomes; everything else (unknown codes too)
    /// is a failure.
    pub fn is_failure(self) -> bool {
        match self {
            Self::Known(s) => s.is_failure(),
            Self::Unknown(_) => true,
        }
    }
}

impl fmt::Display for CmdStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(s) => f.write_str(s.name()),
            Self::Unknown(c) => write!(f, "{c:#x}"),
        }
    }
}

impl FromStr for CmdStatus {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Status::from_name(s)
            .map(Self::Known)
            .or_else(|| num(s).map(Self::from_code))
            .ok_or_else(|| bad("status", s, "not a status name or number"))
    }
}

/// The `fault=` of a phyr-cmd line when the completion names a faulting segment:
/// `list=src|dst,seg=N,addr=0x..`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub list: ListKind,
    /// The faulting entry's index in its list (data entries across chained blocks, from 0).
    pub segment: u32,
    pub addr: u64,
}

impl Fault {
    /// The fault a completion reports, if it names a list.
    pub fn of(c: &Completion) -> Option<Self> {
        Some(Self {
            list: ListKind::from_fault_list(c.fault_list)?,
            segment: c.segment,
            addr: c.fault_addr,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "list={},seg={},addr={:#x}",
            self.list.name(),
            self.segment,
            self.addr
        )
    }
}

impl FromStr for Fault {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let parts: Vec<&str> = s.split(',').collect();
        let field = |i: usize, key: &str| parts.get(i).and_then(|p| p.strip_prefix(key));
        let fault = || {
            Some(Self {
                list: ListKind::from_name(field(0, "list=")?)?,
                segment: num(field(1, "seg=")?)?,
                addr: num(field(2, "addr=")?)?,
            })
        };
        fault()
            .filter(|_| parts.len() == 3)
            .ok_or_else(|| bad("fault", s, "`-` or `list=src|dst,seg=N,addr=0x..`"))
    }
}

/// One `# phyr-cmd` line as printed: its range lists inline or as references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdLine {
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
    pub src: RangeList,
    pub dst: RangeList,
    /// Every list block the device was told to read.
    pub lists: RangeList,
    pub fault: Option<Fault>,
}

impl fmt::Display for CmdLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "# phyr-cmd ep={} q={} id={} op={} status={} result={:#x} bytes={} crc32c=",
            self.ep, self.q, self.id, self.op, self.status, self.result, self.bytes
        )?;
        match self.crc32c {
            Some(c) => write!(f, "{c:#010x}")?,
            None => f.write_str("-")?,
        }
        write!(f, " src={} dst={} lists={} fault=", self.src, self.dst, self.lists)?;
        match &self.fault {
            Some(x) => write!(f, "{x}"),
            None => f.write_str("-"),
        }
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
            crc32c: match f.req("crc32c")? {
                "-" => None,
                _ => Some(f.num("crc32c")?),
            },
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

/// Everything the driver says about one command, range lists complete (what a parser gets
/// back from a phyr-cmd line and its phyr-ranges lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub ep: u32,
    pub q: u32,
    pub id: u16,
    pub op: Op,
    pub status: CmdStatus,
    pub result: u64,
    pub bytes: u64,
    pub crc32c: Option<u32>,
    pub src: Vec<Span>,
    pub dst: Vec<Span>,
    pub lists: Vec<Span>,
    pub fault: Option<Fault>,
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
            let line = self.line(fields.clone());
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
        (self.line(fields), ranges)
    }

    fn line(&self, [src, dst, lists]: [RangeList; 3]) -> CmdLine {
        CmdLine {
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

    /// The command of `line`, its referenced lists still empty (filled from phyr-ranges lines).
    pub fn from_line(line: &CmdLine) -> Self {
        let inline = |l: &RangeList| match l {
            RangeList::Inline(v) => v.clone(),
            RangeList::Ref { .. } => Vec::new(),
        };
        Self {
            ep: line.ep,
            q: line.q,
            id: line.id,
            op: line.op,
            status: line.status,
            result: line.result,
            bytes: line.bytes,
            crc32c: line.crc32c,
            src: inline(&line.src),
            dst: inline(&line.dst),
            lists: inline(&line.lists),
            fault: line.fault,
        }
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
