//! A whole console log: every command the driver reported, with `@N/K` references resolved
//! from the `# phyr-ranges` lines, the resets before it and the kernel's `# phyr-kmap`
//! pieces; the endpoints the driver announced; and every problem found on the way (a line that
//! does not parse, a lost line).

use std::collections::BTreeMap;

use dma_range::ListKind;

use crate::any_line::Line;
use crate::cmd::Cmd;
use crate::kmap::{KernelPath, KernelSeg, MapState, P2pLine};
use crate::lines::EndpointLine;
use crate::range::{RangeList, Span};
use crate::soak::SoakLine;

/// A command as the console reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedCmd {
    pub cmd: Cmd,
    /// `# phyr-reset` lines of this endpoint before the command.
    pub resets: u32,
    /// The `# phyr-kmap` pieces of this command, per list, in list order (empty unless a
    /// kernel driver ran it).
    pub kmap: BTreeMap<ListKind, KernelList>,
}

/// How the kernel mapped one list of a command: its `# phyr-kmap` lines put together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelList {
    pub path: Option<KernelPath>,
    pub state: Option<MapState>,
    /// Every piece, in list order.
    pub segs: Vec<KernelSeg>,
}

impl KernelList {
    /// Whether the mapping was torn down before the command ran.
    pub fn unmapped(&self) -> bool {
        self.state == Some(MapState::Unmapped)
    }
}

/// What [`parse_log`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsoleLog {
    pub cmds: Vec<ReportedCmd>,
    /// The `# phyr-endpoint` lines, by ENDPOINT_ID (the last one of each endpoint).
    pub endpoints: BTreeMap<u32, EndpointLine>,
    /// The `# phyr-p2p` lines, in order.
    pub p2p: Vec<P2pLine>,
    /// The `# phyr-soak` lines, in order.
    pub soak: Vec<SoakLine>,
    /// Report lines that do not parse, lost `# phyr-ranges` or `# phyr-kmap` lines.
    pub problems: Vec<String>,
}

/// A reference `@n/k` of a phyr-cmd line waiting for its phyr-ranges lines.
struct Pending {
    cmd: usize,
    list: ListKind,
    k: usize,
    parts_seen: u32,
    parts: Option<u32>,
    spans: Vec<Span>,
}

/// Where a kernel console message (`[  seconds.micros] ...`, printk with CONFIG_PRINTK_TIME)
/// starts inside `line` after its first byte, if it does.
fn printk_inside(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    (1..b.len()).find(|&i| {
        b[i] == b'[' && {
            let rest = &line[i + 1..];
            let t = rest.trim_start_matches(' ');
            let digits = t.bytes().take_while(u8::is_ascii_digit).count();
            let t = &t[digits..];
            digits > 0
                && t.starts_with('.')
                && t[1..].bytes().take_while(u8::is_ascii_digit).count() == 6
                && t[7..].starts_with("] ")
        }
    })
}

/// The console's lines with report lines the kernel interrupted put back together.
///
/// The guest kernel prints to the same serial console as `phyr`, and a printk can land in the
/// middle of a user-space line: `# phyr-map ... per[  11.98] DMAR: fault ...` then, after the
/// kernel's own line(s), `m=rw`. A report line cut by a printk timestamp is joined with the
/// first later line that is not a kernel message; its number is the line it started on.
fn unspliced(log: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let mut text = lines[i].to_string();
        i += 1;
        let mut kernel = Vec::new();
        // A line can be cut more than once: each cut's continuation may be cut again.
        while let Some(at) = printk_inside(&text).filter(|&at| text[..at].contains(crate::MARKER)) {
            // The kernel's line is a line of its own too.
            kernel.push((start, text[at..].to_string()));
            while i < lines.len() && printk_inside(&format!(" {}", lines[i])) == Some(1) {
                kernel.push((i, lines[i].to_string()));
                i += 1;
            }
            let rest = lines.get(i).copied().unwrap_or("");
            i += 1;
            text = format!("{}{rest}", &text[..at]);
        }
        out.push((start, text));
        out.extend(kernel);
    }
    out
}

/// Reads every report line of `log` (other lines are skipped).
pub fn parse_log(log: &str) -> ConsoleLog {
    let mut out = ConsoleLog::default();
    let mut pending: BTreeMap<u32, Pending> = BTreeMap::new();
    let mut resets: BTreeMap<u32, u32> = BTreeMap::new();
    let mut kmaps: BTreeMap<(u32, u32, u16), BTreeMap<ListKind, KernelList>> = BTreeMap::new();
    for (no, text) in unspliced(log) {
        let text = text.as_str();
        let line = match Line::find(text) {
            None => continue,
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                let shown: String = text.trim().chars().take(160).collect();
                out.problems.push(format!("console line {}: {e}: `{shown}`", no + 1));
                continue;
            }
        };
        match line {
            Line::Reset(r) => *resets.entry(r.ep).or_default() += 1,
            Line::Ranges(r) => match pending.get_mut(&r.n) {
                Some(p) => {
                    if r.part != p.parts_seen + 1 || p.parts.is_some_and(|t| t != r.parts) {
                        out.problems.push(format!(
                            "console line {}: phyr-ranges {} part {}/{} out of order (a console line was lost?)",
                            no + 1,
                            r.n,
                            r.part,
                            r.parts
                        ));
                    }
                    p.parts_seen = r.part;
                    p.parts = Some(r.parts);
                    p.spans.extend(r.spans);
                }
                None => out.problems.push(format!(
                    "console line {}: phyr-ranges for reference {} that no phyr-cmd line is waiting for",
                    no + 1,
                    r.n
                )),
            },
            Line::Cmd(c) => {
                settle(&mut pending, &mut out);
                let fields = [
                    (ListKind::Src, &c.src),
                    (ListKind::Dst, &c.dst),
                    (ListKind::Descriptor, &c.lists),
                ];
                for (list, field) in fields {
                    if let RangeList::Ref { n, k } = *field {
                        let p = Pending {
                            cmd: out.cmds.len(),
                            list,
                            k,
                            parts_seen: 0,
                            parts: None,
                            spans: Vec::new(),
                        };
                        pending.insert(n, p);
                    }
                }
                out.cmds.push(ReportedCmd {
                    cmd: Cmd::from_line(&c),
                    resets: resets.get(&c.ep).copied().unwrap_or(0),
                    kmap: kmaps.remove(&(c.ep, c.q, c.id)).unwrap_or_default(),
                });
            }
            Line::Kmap(k) => {
                let list = kmaps.entry((k.ep, k.q, k.id)).or_default().entry(k.list).or_default();
                // A line from piece 0 starts the command's mapping afresh (its id was reused).
                if k.first == 0 {
                    *list = KernelList {
                        path: k.path,
                        state: k.state,
                        segs: Vec::new(),
                    };
                } else if k.first as usize != list.segs.len() {
                    out.problems.push(format!(
                        "console line {}: phyr-kmap ep={} q={} id={} list={} starts at piece {}, after {} pieces \
                         (a console line was lost?)",
                        no + 1,
                        k.ep,
                        k.q,
                        k.id,
                        k.list.name(),
                        k.first,
                        list.segs.len()
                    ));
                } else if (k.path, k.state) != (list.path, list.state) {
                    out.problems.push(format!(
                        "console line {}: phyr-kmap ep={} q={} id={} list={} from piece {} says path={} state={}, its \
                         first line path={} state={}",
                        no + 1,
                        k.ep,
                        k.q,
                        k.id,
                        k.list.name(),
                        k.first,
                        k.path.map_or("-", KernelPath::name),
                        k.state.map_or("-", MapState::name),
                        list.path.map_or("-", KernelPath::name),
                        list.state.map_or("-", MapState::name),
                    ));
                }
                list.segs.extend(k.segs);
            }
            Line::Endpoint(e) => {
                out.endpoints.insert(e.endpoint_id, e);
            }
            Line::P2p(p) => out.p2p.push(p),
            Line::Soak(l) => out.soak.push(l),
            Line::Map(_) | Line::Queue(_) => {}
        }
    }
    settle(&mut pending, &mut out);
    out
}

/// Fills the referenced lists of the last command; a reference without all its ranges is a
/// problem.
fn settle(pending: &mut BTreeMap<u32, Pending>, out: &mut ConsoleLog) {
    for (n, p) in std::mem::take(pending) {
        let c = &mut out.cmds[p.cmd].cmd;
        if p.spans.len() != p.k || p.parts != Some(p.parts_seen) {
            out.problems.push(format!(
                "console: range reference @{n}/{} of command id {} has {} ranges in {} of {} parts (a console line \
                 was lost?)",
                p.k,
                c.id,
                p.spans.len(),
                p.parts_seen,
                p.parts.map_or_else(|| "?".to_string(), |t| t.to_string())
            ));
        }
        match p.list {
            ListKind::Src => c.src = p.spans,
            ListKind::Dst => c.dst = p.spans,
            ListKind::Descriptor | ListKind::Queue => c.lists = p.spans,
        }
    }
}
