//! The machine-readable lines the driver prints (prefixed "# " so they are TAP diagnostics)
//! for the harness to cross-check against the device's DMA traces. One line per fact:
//!
//! ```text
//! # phyr-map kind=host iova=0x100000+0x10000 perm=rw
//! # phyr-map kind=bar ep=1 bar=2 offset=0x0 iova=0x200000+0x200000 perm=rw
//! # phyr-queue ep=0 q=0 mode=irq size=64 vector=0 sq=iova:0x...+0x1000 cq=iova:0x...+0x1000 [shadow=iova:..+..]
//! # phyr-cmd ep=0 q=0 id=17 op=COPY status=SUCCESS result=0x10000 bytes=65536 crc32c=0x1a2b3c4d src=[iova:0x100000+0x8000,bus:0xfe000000+0x8000] dst=[iova:0x300000+0x10000] lists=[iova:0x500000+0x20,iova:0x502000+0x20] fault=-
//! # phyr-reset ep=0 kind=ctrl
//! ```
//!
//! # The phyr-cmd line
//!
//! Space-separated `key=value` fields, in this order (parsers should key on names):
//! - `ep`: the endpoint's ENDPOINT_ID register (the device's numbering, as in
//!   `trace/epN.phyrtrace`); `# phyr-endpoint` lines map it to the BDF and the driver's index.
//!   `q`: queue; `id`: command id (decimal).
//! - `op`: NOP/COPY/FILL/CRC32C/COMPARE (or `0x..` for raw opcodes); `status`: the completion
//!   status name (or `0x..`); `result`: the completion's result (hex).
//! - `bytes`: total length (decimal) of the data the command was asked to move (src for
//!   CRC32C and COMPARE, dst for COPY/FILL). `crc32c`: CRC32C of those bytes as the driver
//!   expects them (`0x` + 8 hex digits), `-` if it does not know (failed commands, `phyr submit`).
//! - `src`, `dst`, `lists`: *range lists*, see below. `src`/`dst` cover the data segments of
//!   each list, `lists` every list block the device was told to read (heads and chained
//!   blocks of both lists, plus hand-made blocks of negative tests).
//! - `fault`: `-` or `list=src|dst,seg=N,addr=0x..` from the completion.
//!
//! # The phyr-reset line
//!
//! `# phyr-reset ep=N kind=ctrl|vfio`: the driver reset endpoint `N` (ENDPOINT_ID, as in
//! phyr-cmd) by CTRL.RESET (`ctrl`) or VFIO_DEVICE_RESET (`vfio`); printed once the reset
//! returned, before any later phyr-cmd line of that endpoint. Command ids restart after it
//! (queues are re-created), and commands in flight at the reset may have completed on the
//! device without a phyr-cmd line. The device records the reset too (`Event::Reset`), so a
//! checker scopes (ep, q, id) to the epoch between two resets. Resets the driver did not
//! ask for (the kernel's, when vfio-pci opens or releases the device) have no line.
//!
//! # Range lists
//!
//! A range list is either inline, `[R,R,...]` (`[]` when empty), or a reference `@N/K`.
//! Each `R` is `space:addr+len`: `space` is `iova` or `bus`, `addr` and `len` are `0x` hex
//! (`len` may exceed 32 bits). Ranges are **merged**: consecutive segments of the list that
//! are contiguous in the same space (`iova:0x1000+0x10,iova:0x1010+0x10`) are printed as one
//! (`iova:0x1000+0x20`); list order is otherwise kept and nothing else is merged. So the
//! printed ranges cover exactly the bytes of the segments the driver handed out, but a range
//! may span several segments: check coverage ("does this DMA access lie inside a range"),
//! not segment indices. A range followed by the very same range (space, address and length)
//! is printed once with a repeat count, `R*N` (decimal `N` >= 2): a list that names the same
//! bytes N times in a row (`bus:0xe0000000+0x2000000*4096`); it covers the bytes of `R`, and
//! stands for `N * len` bytes of the list.
//!
//! If the inline line would exceed [`MAX_CMD_LINE`] bytes, the longest range lists are
//! replaced by references `@N/K` until it fits: `N` is a reference number (decimal, unique
//! within one driver process, counting from 1), `K` the number of ranges it holds. The ranges
//! follow **directly after** the phyr-cmd line (written with it in one write, before any other
//! phyr-cmd line) as one or more lines, each under [`MAX_RANGES_LINE`] bytes:
//!
//! ```text
//! # phyr-ranges N I/T R R R ...
//! ```
//!
//! `I/T`: this is part `I` of `T` (from 1) of reference `N`; the parts come in order and
//! their `R`s (same `space:addr+len` syntax, separated by single spaces) concatenated are the
//! `K` ranges. A parser collects parts until it has `T` of them (or `K` ranges) for every
//! reference of the pending phyr-cmd line; a missing part means a lost console line.
//! Example:
//!
//! ```text
//! # phyr-cmd ep=0 q=2 id=5 op=COPY status=SUCCESS result=0x40000 bytes=262144 crc32c=0x0badf00d src=@7/300 dst=[iova:0x900000+0x40000] lists=[iova:0x980000+0x1310] fault=-
//! # phyr-ranges 7 1/2 iova:0x100000+0x40 iova:0x100080+0x40 ...
//! # phyr-ranges 7 2/2 ... bus:0xfe010000+0x40
//! ```
//!
//! Parsing sketch: split the phyr-cmd line on whitespace into `key=value`; for each of
//! `src`/`dst`/`lists`, a value starting with `[` is split on `,` inside the brackets, a value
//! `@N/K` is resolved from the following `# phyr-ranges N ...` lines (their fifth and later
//! whitespace-separated fields).
//! Each `R` splits at the first `:` and the `+`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use dma_range::{AddrSpace, Completion, DmaRange, Opcode, Status, FAULT_LIST_DST, FAULT_LIST_SRC};

/// Longest phyr-cmd line printed with inline range lists (bytes, without the newline).
pub const MAX_CMD_LINE: usize = 2048;
/// Longest `# phyr-ranges` line (bytes, without the newline).
pub const MAX_RANGES_LINE: usize = 1024;

/// Reference numbers of `# phyr-ranges` blocks, unique within the process.
static NEXT_REF: AtomicU32 = AtomicU32::new(1);

pub fn space_name(s: AddrSpace) -> &'static str {
    match s {
        AddrSpace::Iova => "iova",
        AddrSpace::Bus => "bus",
    }
}

/// `len` bytes at `addr` in `space` (longer than a segment may be, after merging).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub space: AddrSpace,
    pub addr: u64,
    pub len: u64,
    /// How many times the range occurs in a row in the list (printed `R*N` when above 1).
    pub reps: u64,
}

impl Span {
    pub fn new(space: AddrSpace, addr: u64, len: u64) -> Self {
        Self {
            space,
            addr,
            len,
            reps: 1,
        }
    }

    fn text(&self) -> String {
        let reps = if self.reps > 1 {
            format!("*{}", self.reps)
        } else {
            String::new()
        };
        format!("{}:{:#x}+{:#x}{reps}", space_name(self.space), self.addr, self.len)
    }
}

impl From<&DmaRange> for Span {
    fn from(r: &DmaRange) -> Self {
        Self::new(r.space(), r.addr, u64::from(r.len))
    }
}

impl From<&(AddrSpace, u64, u32)> for Span {
    fn from(b: &(AddrSpace, u64, u32)) -> Self {
        Self::new(b.0, b.1, u64::from(b.2))
    }
}

/// Merges consecutive spans that are contiguous in the same space, and counts consecutive
/// repeats of the same span (`R*N`); keeps the order.
pub fn merge(spans: impl IntoIterator<Item = Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in spans {
        match out.last_mut() {
            Some(p)
                if p.reps == 1
                    && s.reps == 1
                    && p.space == s.space
                    && p.addr.checked_add(p.len) == Some(s.addr)
                    && p.len.checked_add(s.len).is_some() =>
            {
                p.len += s.len;
            }
            Some(p) if (p.space, p.addr, p.len) == (s.space, s.addr, s.len) => p.reps += s.reps,
            _ => out.push(s),
        }
    }
    out
}

fn inline_text(spans: &[Span]) -> String {
    let mut s = String::from("[");
    for (i, x) in spans.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.text());
    }
    s.push(']');
    s
}

/// The `# phyr-ranges N I/T ...` lines of reference `n`.
fn ranges_lines(n: u32, spans: &[Span]) -> Vec<String> {
    // Room for "# phyr-ranges N I/T " with up to 10-digit numbers.
    let budget = MAX_RANGES_LINE - 48;
    let mut bodies = vec![String::new()];
    for s in spans {
        let t = s.text();
        let cur = bodies.last_mut().expect("never empty");
        if !cur.is_empty() && cur.len() + 1 + t.len() > budget {
            bodies.push(t);
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(&t);
        }
    }
    let total = bodies.len();
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| format!("# phyr-ranges {n} {}/{total} {b}", i + 1))
        .collect()
}

pub fn opcode_name(op: u8) -> String {
    Opcode::from_u8(op).map_or_else(|| format!("{op:#x}"), |o| o.name().to_string())
}

pub fn status_name(code: u16) -> String {
    Status::from_u16(code).map_or_else(|| format!("{code:#x}"), |s| s.name().to_string())
}

pub fn fault_text(c: &Completion) -> String {
    let list = match c.fault_list {
        FAULT_LIST_SRC => "src",
        FAULT_LIST_DST => "dst",
        _ => return "-".into(),
    };
    format!("list={list},seg={},addr={:#x}", c.segment, c.fault_addr)
}

/// How the driver reset an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// CTRL.RESET.
    Ctrl,
    /// VFIO_DEVICE_RESET.
    Vfio,
}

/// The `# phyr-reset` line; `ep` is the ENDPOINT_ID register.
pub fn reset_line(ep: u32, kind: ResetKind) -> String {
    let k = match kind {
        ResetKind::Ctrl => "ctrl",
        ResetKind::Vfio => "vfio",
    };
    format!("# phyr-reset ep={ep} kind={k}")
}

/// Everything a phyr-cmd line says.
pub struct CmdLine<'a> {
    pub ep: usize,
    pub q: u32,
    pub opcode: u8,
    pub completion: &'a Completion,
    pub bytes: u64,
    pub crc32c: Option<u32>,
    pub src: &'a [DmaRange],
    pub dst: &'a [DmaRange],
    pub lists: &'a [(AddrSpace, u64, u32)],
}

impl CmdLine<'_> {
    /// The phyr-cmd line, followed (after `\n`) by its `# phyr-ranges` lines if it needs
    /// any. Print it with one `println!` so the lines stay together.
    pub fn render(&self) -> String {
        self.render_with(&NEXT_REF)
    }

    /// As `render`, taking reference numbers from `refs`.
    pub fn render_with(&self, refs: &AtomicU32) -> String {
        let c = self.completion;
        let crc = self.crc32c.map_or_else(|| "-".into(), |v| format!("{v:#010x}"));
        let head = format!(
            "# phyr-cmd ep={} q={} id={} op={} status={} result={:#x} bytes={} crc32c={crc}",
            self.ep,
            self.q,
            c.command_id,
            opcode_name(self.opcode),
            status_name(c.status),
            c.result,
            self.bytes,
        );
        let fault = fault_text(c);
        let fields = [
            ("src", merge(self.src.iter().map(Span::from))),
            ("dst", merge(self.dst.iter().map(Span::from))),
            ("lists", merge(self.lists.iter().map(Span::from))),
        ];
        let mut texts: Vec<String> = fields.iter().map(|(_, v)| inline_text(v)).collect();
        let mut refs_used: Vec<(u32, usize)> = Vec::new();
        let line_len = |texts: &[String]| {
            head.len()
                + fault.len()
                + " fault=".len()
                + fields
                    .iter()
                    .zip(texts)
                    .map(|((k, _), t)| k.len() + 2 + t.len())
                    .sum::<usize>()
        };
        while line_len(&texts) > MAX_CMD_LINE {
            let longest = (0..fields.len())
                .filter(|&i| !texts[i].starts_with('@'))
                .max_by_key(|&i| texts[i].len());
            let Some(i) = longest else { break };
            let n = refs.fetch_add(1, Ordering::Relaxed);
            texts[i] = format!("@{n}/{}", fields[i].1.len());
            refs_used.push((n, i));
        }
        let mut out = head;
        for ((k, _), t) in fields.iter().zip(&texts) {
            let _ = write!(out, " {k}={t}");
        }
        let _ = write!(out, " fault={fault}");
        for (n, i) in refs_used {
            for l in ranges_lines(n, &fields[i].1) {
                out.push('\n');
                out.push_str(&l);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iova(a: u64, l: u32) -> DmaRange {
        DmaRange::segment(AddrSpace::Iova, a, l)
    }

    #[test]
    fn cmd_line_is_one_parseable_line() {
        let c = Completion {
            segment: 2,
            fault_list: FAULT_LIST_DST,
            fault_addr: 0x80000,
            ..Completion::ok(17, Status::IOMMU_FAULT, 0x2000)
        };
        let src = [
            iova(0x100000, 0x1000),
            DmaRange::segment(AddrSpace::Bus, 0xfe000000, 0x10),
        ];
        let line = CmdLine {
            ep: 0,
            q: 1,
            opcode: 1,
            completion: &c,
            bytes: 4112,
            crc32c: None,
            src: &src,
            dst: &[],
            lists: &[(AddrSpace::Iova, 0x5000, 32)],
        }
        .render();
        assert_eq!(
            line,
            "# phyr-cmd ep=0 q=1 id=17 op=COPY status=IOMMU_FAULT result=0x2000 bytes=4112 crc32c=- \
             src=[iova:0x100000+0x1000,bus:0xfe000000+0x10] dst=[] lists=[iova:0x5000+0x20] fault=list=dst,seg=2,addr=0x80000"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn contiguous_ranges_in_one_space_merge() {
        let m = merge([
            Span::new(AddrSpace::Iova, 0x1000, 0x10),
            Span::new(AddrSpace::Iova, 0x1010, 0x10),
            Span::new(AddrSpace::Bus, 0x1020, 0x10), // contiguous address, other space
            Span::new(AddrSpace::Bus, 0x1030, 0x10),
            Span::new(AddrSpace::Bus, 0x1050, 0x10), // gap
            Span::new(AddrSpace::Bus, 0x1040, 0x10), // before, not after: kept apart
        ]);
        let t: Vec<String> = m.iter().map(Span::text).collect();
        assert_eq!(
            t,
            [
                "iova:0x1000+0x20",
                "bus:0x1020+0x20",
                "bus:0x1050+0x10",
                "bus:0x1040+0x10"
            ]
        );
        // Merged lengths may pass 4 GiB; addresses never wrap.
        let big = merge([
            Span::new(AddrSpace::Iova, 0, 0xffff_ffff),
            Span::new(AddrSpace::Iova, 0xffff_ffff, 0xffff_ffff),
        ]);
        assert_eq!(big, [Span::new(AddrSpace::Iova, 0, 0x1_ffff_fffe)]);
        let wrap = merge([
            Span::new(AddrSpace::Iova, u64::MAX - 1, 2),
            Span::new(AddrSpace::Iova, 0, 2),
        ]);
        assert_eq!(wrap.len(), 2);
    }

    /// A max-length list of contiguous segments collapses to one range.
    #[test]
    fn four_thousand_contiguous_segments_print_one_range() {
        let c = Completion::ok(3, Status::SUCCESS, 4096 * 64);
        let src: Vec<DmaRange> = (0..4096).map(|i| iova(0x10_0000 + i * 64, 64)).collect();
        let blocks: Vec<(AddrSpace, u64, u32)> = (0..64)
            .map(|i| (AddrSpace::Iova, 0x80_0000 + i * 0x410, 0x410))
            .collect();
        let line = CmdLine {
            ep: 1,
            q: 0,
            opcode: 3,
            completion: &c,
            bytes: 4096 * 64,
            crc32c: Some(1),
            src: &src,
            dst: &[],
            lists: &blocks,
        }
        .render();
        assert!(
            line.ends_with("src=[iova:0x100000+0x40000] dst=[] lists=[iova:0x800000+0x10400] fault=-"),
            "{line}"
        );
    }

    #[test]
    fn repeated_ranges_print_once_with_a_count() {
        let m = merge([
            Span::new(AddrSpace::Bus, 0xe000_0000, 0x10),
            Span::new(AddrSpace::Bus, 0xe000_0000, 0x10),
            Span::new(AddrSpace::Bus, 0xe000_0000, 0x10),
            Span::new(AddrSpace::Bus, 0xe000_0010, 0x10), // contiguous, but after a repeat: apart
            Span::new(AddrSpace::Iova, 0xe000_0010, 0x10), // same numbers, other space
        ]);
        let texts: Vec<String> = m.iter().map(Span::text).collect();
        assert_eq!(
            texts,
            ["bus:0xe0000000+0x10*3", "bus:0xe0000010+0x10", "iova:0xe0000010+0x10"]
        );
        let src: Vec<DmaRange> = (0..4096)
            .map(|_| DmaRange::segment(AddrSpace::Bus, 0xe000_0000, 0x200_0000))
            .collect();
        let c = Completion::ok(3, Status::ABORTED_RESET, 0x80_0000);
        let line = CmdLine {
            ep: 0,
            q: 0,
            opcode: 1,
            completion: &c,
            bytes: 4096 << 25,
            crc32c: None,
            src: &src,
            dst: &[],
            lists: &[],
        }
        .render();
        assert!(line.contains(" src=[bus:0xe0000000+0x2000000*4096] "), "{line}");
        assert_eq!(
            parse(&line)[0].1,
            [Span {
                reps: 4096,
                ..Span::new(AddrSpace::Bus, 0xe000_0000, 0x200_0000)
            }]
        );
    }

    /// Parses what `render_with` printed back into (space, addr, len) per field, the way the
    /// harness is meant to.
    fn parse(out: &str) -> Vec<(String, Vec<Span>)> {
        let mut lines = out.lines();
        let cmd = lines.next().unwrap();
        let rest: Vec<&str> = lines.collect();
        let span = |t: &str| {
            let (sp, r) = t.split_once(':').unwrap();
            let (a, l) = r.split_once('+').unwrap();
            let (l, reps) = l.split_once('*').map_or((l, 1), |(l, k)| (l, k.parse().unwrap()));
            let n = |x: &str| u64::from_str_radix(x.strip_prefix("0x").unwrap(), 16).unwrap();
            Span {
                reps,
                ..Span::new(if sp == "bus" { AddrSpace::Bus } else { AddrSpace::Iova }, n(a), n(l))
            }
        };
        let mut out = Vec::new();
        for kv in cmd.split_whitespace().skip(2) {
            let (k, v) = kv.split_once('=').unwrap();
            if !["src", "dst", "lists"].contains(&k) {
                continue;
            }
            let spans: Vec<Span> = if let Some(inner) = v.strip_prefix('[') {
                let inner = inner.strip_suffix(']').unwrap();
                inner.split(',').filter(|x| !x.is_empty()).map(span).collect()
            } else {
                let (n, count) = v.strip_prefix('@').unwrap().split_once('/').unwrap();
                let mine: Vec<&&str> = rest.iter().filter(|l| l.split_whitespace().nth(2) == Some(n)).collect();
                let mut spans = Vec::new();
                for (i, l) in mine.iter().enumerate() {
                    assert!(l.len() < MAX_RANGES_LINE, "{} bytes", l.len());
                    let f: Vec<&str> = l.split_whitespace().collect();
                    assert_eq!(&f[..2], ["#", "phyr-ranges"]);
                    assert_eq!(f[3], format!("{}/{}", i + 1, mine.len()));
                    spans.extend(f[4..].iter().map(|t| span(t)));
                }
                assert_eq!(spans.len(), count.parse::<usize>().unwrap());
                spans
            };
            out.push((k.to_string(), spans));
        }
        out
    }

    #[test]
    fn long_lists_move_to_phyr_ranges_lines_and_round_trip() {
        let c = Completion::ok(9, Status::SUCCESS, 0);
        // 4096 scattered segments (every other 64-byte slot): nothing merges.
        let src: Vec<DmaRange> = (0..4096).map(|i| iova(0x10_0000 + i * 128, 64)).collect();
        let dst = [iova(0x90_0000, 4096 * 64)];
        let blocks = [(AddrSpace::Bus, 0xfe00_0000, 0x100), (AddrSpace::Iova, 0x5000, 0x20)];
        let refs = AtomicU32::new(7);
        let cl = CmdLine {
            ep: 0,
            q: 2,
            opcode: 1,
            completion: &c,
            bytes: 4096 * 64,
            crc32c: Some(0xbad),
            src: &src,
            dst: &dst,
            lists: &blocks,
        };
        let out = cl.render_with(&refs);
        let first = out.lines().next().unwrap();
        assert!(first.len() <= MAX_CMD_LINE);
        assert!(
            first.contains(
                " src=@7/4096 dst=[iova:0x900000+0x40000] lists=[bus:0xfe000000+0x100,iova:0x5000+0x20] fault=-"
            ),
            "{first}"
        );
        assert!(out.lines().skip(1).all(|l| l.starts_with("# phyr-ranges 7 ")));
        assert!(out.len() < 4096 * 30, "{} bytes", out.len());
        let p = parse(&out);
        let want: Vec<Span> = src.iter().map(Span::from).collect();
        assert_eq!(p[0], ("src".to_string(), want));
        assert_eq!(p[1].1, [Span::new(AddrSpace::Iova, 0x90_0000, 0x40000)]);
        assert_eq!(p[2].1.len(), 2);
        assert_eq!(refs.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn two_long_lists_get_two_references() {
        let c = Completion::ok(1, Status::SUCCESS, 0);
        let src: Vec<DmaRange> = (0..200).map(|i| iova(i * 128, 64)).collect();
        let dst: Vec<DmaRange> = (0..150)
            .map(|i| DmaRange::segment(AddrSpace::Bus, 0xfe00_0000 + i * 128, 64))
            .collect();
        let refs = AtomicU32::new(1);
        let out = CmdLine {
            ep: 0,
            q: 0,
            opcode: 1,
            completion: &c,
            bytes: 0,
            crc32c: None,
            src: &src,
            dst: &dst,
            lists: &[],
        }
        .render_with(&refs);
        assert!(
            out.lines().next().unwrap().contains("src=@1/200 dst=@2/150 lists=[] "),
            "{out}"
        );
        let p = parse(&out);
        assert_eq!(p[0].1.len(), 200);
        assert_eq!(p[1].1[149], Span::new(AddrSpace::Bus, 0xfe00_0000 + 149 * 128, 64));
    }
}
