//! After a guest suite: cross-check the device's DMA records (RUN/trace/epN.phyrtrace)
//! against what the driver reported on the console (`# phyr-cmd` lines, format in
//! driver/src/report.rs). For every command the driver says it ran:
//! - the device completed a command with the same endpoint, queue, id, opcode, status, result;
//! - for a successful command with a known CRC, the bytes the device moved on the data side
//!   (dst for COPY/FILL, src for CRC32C/COMPARE) add up to `bytes` and their CRC32C matches;
//! - every access that reached memory lies inside a segment the driver handed out for that
//!   list (src, dst, or the list blocks), in the same address space.
//!
//! Commands are matched per (endpoint, queue, id) in order of completion, scoped to *reset
//! epochs*: the driver prints `# phyr-reset ep=N kind=ctrl|vfio` when it resets an endpoint
//! (ids restart), the device records `Event::Reset`. All commands the driver reports for an
//! endpoint between two of its resets must match device completions of one device epoch, and
//! after a driver reset a later device epoch (at least one device reset per driver reset; the
//! kernel resets the device on its own too, at open and release). A device completion the
//! driver never reported (a command in flight at a reset, a case that gave up waiting) is
//! counted as `unreported`, not an error; a reported command without a matching completion
//! (same opcode, status and result) in its epoch is.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use phyr_trace::{DmaRecord, Event, Payload, Space, TraceReader};

/// One `space:addr+len` segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    pub bus: bool,
    pub addr: u64,
    pub len: u64,
}

/// A parsed `# phyr-cmd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverCmd {
    pub ep: u16,
    pub q: u16,
    pub id: u16,
    pub op: String,
    pub status: String,
    pub result: u64,
    pub bytes: u64,
    pub crc32c: Option<u32>,
    pub src: Vec<Seg>,
    pub dst: Vec<Seg>,
    pub lists: Vec<Seg>,
    /// `# phyr-reset` lines for this endpoint before this command.
    pub resets: u32,
}

/// What the device did for one command.
#[derive(Debug, Default)]
struct DeviceCmd {
    /// `Event::Reset` records of the endpoint before the completion.
    epoch: u32,
    opcode: u8,
    status: u16,
    result: u64,
    dma: Vec<DmaRecord>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub commands_checked: usize,
    /// Of those, commands whose data CRC was compared too (the driver reported one and every
    /// data record carries one: not with `--trace-crc off`).
    pub crcs_compared: usize,
    /// Commands the device started but a reset ended without a completion (not checked).
    pub unfinished: usize,
    /// Device completions no `# phyr-cmd` line reported (not checked, not an error).
    pub unreported: usize,
    pub problems: Vec<String>,
}

impl Report {
    /// One line with the counts: checked, ended by a reset, done by the device but not reported.
    pub fn counts(&self) -> String {
        format!(
            "{} commands checked against the device traces ({} with their data CRC), {} problem(s); {} ended \
             by a reset without a completion and {} completed by the device but not reported by the driver \
             (neither checked)",
            self.commands_checked,
            self.crcs_compared,
            self.problems.len(),
            self.unfinished,
            self.unreported
        )
    }
}

fn num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `space:addr+len`, optionally `*N` (the same range N times in a row: same coverage).
fn seg(x: &str) -> Option<Seg> {
    let (space, rest) = x.split_once(':')?;
    let (addr, len) = rest.split_once('+')?;
    let len = match len.split_once('*') {
        Some((len, reps)) => {
            reps.parse::<u64>().ok().filter(|&n| n >= 2)?;
            len
        }
        None => len,
    };
    Some(Seg {
        bus: space == "bus",
        addr: num(addr)?,
        len: num(len)?,
    })
}

fn segs(s: &str) -> Option<Vec<Seg>> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    if inner.is_empty() {
        return Some(vec![]);
    }
    inner.split(',').map(seg).collect()
}

/// A range-list field of a phyr-cmd line: inline, or a reference `@N/K` to `K` ranges that
/// follow on `# phyr-ranges N I/T ...` lines.
enum Field {
    Inline(Vec<Seg>),
    Ref { n: u64, k: usize },
}

fn field(s: &str) -> Option<Field> {
    match s.strip_prefix('@') {
        Some(r) => {
            let (n, k) = r.split_once('/')?;
            Some(Field::Ref {
                n: n.parse().ok()?,
                k: k.parse().ok()?,
            })
        }
        None => segs(s).map(Field::Inline),
    }
}

/// Which range list of a command a reference fills.
#[derive(Debug, Clone, Copy)]
enum Which {
    Src,
    Dst,
    Lists,
}

/// Parses a phyr-cmd line; referenced range lists are left empty and returned to be filled.
/// The `@N/K` references of one phyr-cmd line: (which list, N, K).
type Refs = Vec<(Which, u64, usize)>;

fn parse_cmd_fields(line: &str) -> Option<(DriverCmd, Refs)> {
    let rest = line.trim().strip_prefix("# phyr-cmd ")?;
    let mut f = BTreeMap::new();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        f.insert(k, v);
    }
    let mut refs = Vec::new();
    let mut take = |which, v: &str| -> Option<Vec<Seg>> {
        match field(v)? {
            Field::Inline(segs) => Some(segs),
            Field::Ref { n, k } => {
                refs.push((which, n, k));
                Some(Vec::new())
            }
        }
    };
    let src = take(Which::Src, f.get("src")?)?;
    let dst = take(Which::Dst, f.get("dst")?)?;
    let lists = take(Which::Lists, f.get("lists")?)?;
    let cmd = DriverCmd {
        ep: num(f.get("ep")?)?.try_into().ok()?,
        q: num(f.get("q")?)?.try_into().ok()?,
        id: num(f.get("id")?)?.try_into().ok()?,
        op: f.get("op")?.to_string(),
        status: f.get("status")?.to_string(),
        result: num(f.get("result")?)?,
        bytes: num(f.get("bytes")?)?,
        crc32c: f.get("crc32c").and_then(|c| num(c)).map(|c| c as u32),
        src,
        dst,
        lists,
        resets: 0,
    };
    Some((cmd, refs))
}

/// Parses a `# phyr-ranges N I/T R R ...` line into (N, ranges).
fn parse_ranges_line(line: &str) -> Option<(u64, Vec<Seg>)> {
    let mut words = line.trim().strip_prefix("# phyr-ranges ")?.split_whitespace();
    let n = words.next()?.parse().ok()?;
    let _part = words.next()?.split_once('/')?;
    Some((n, words.map(seg).collect::<Option<Vec<_>>>()?))
}

/// The endpoint of a `# phyr-reset ep=N kind=ctrl|vfio` line.
fn parse_reset_line(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("# phyr-reset ")?;
    let ep = rest.split_whitespace().find_map(|kv| kv.strip_prefix("ep="))?;
    num(ep)?.try_into().ok()
}

/// Every command the driver reported on the console, with `@N/K` references resolved from
/// the `# phyr-ranges` lines; a reference that does not add up to K ranges (a lost console
/// line) is a problem.
pub fn parse_driver_log(log: &str) -> (Vec<DriverCmd>, Vec<String>) {
    let mut cmds: Vec<DriverCmd> = Vec::new();
    let mut problems = Vec::new();
    // reference number -> (command index, which list, expected count, ranges so far)
    let mut pending: BTreeMap<u64, (usize, Which, usize, Vec<Seg>)> = BTreeMap::new();
    let mut settle = |pending: &mut BTreeMap<u64, (usize, Which, usize, Vec<Seg>)>, cmds: &mut Vec<DriverCmd>| {
        for (n, (i, which, k, got)) in std::mem::take(pending) {
            if got.len() != k {
                problems.push(format!(
                    "console: range reference @{n}/{k} of command id {} has {} ranges (a console line was lost?)",
                    cmds[i].id,
                    got.len()
                ));
            }
            let c = &mut cmds[i];
            match which {
                Which::Src => c.src = got,
                Which::Dst => c.dst = got,
                Which::Lists => c.lists = got,
            }
        }
    };
    let mut resets: BTreeMap<u16, u32> = BTreeMap::new();
    for line in log.lines() {
        if let Some(ep) = parse_reset_line(line) {
            *resets.entry(ep).or_default() += 1;
        } else if let Some((n, ranges)) = parse_ranges_line(line) {
            if let Some(p) = pending.get_mut(&n) {
                p.3.extend(ranges);
            }
        } else if let Some((cmd, refs)) = parse_cmd_fields(line) {
            settle(&mut pending, &mut cmds);
            for (which, n, k) in refs {
                pending.insert(n, (cmds.len(), which, k, Vec::new()));
            }
            let resets = resets.get(&cmd.ep).copied().unwrap_or(0);
            cmds.push(DriverCmd { resets, ..cmd });
        }
    }
    settle(&mut pending, &mut cmds);
    (cmds, problems)
}

fn same_status(driver: &str, code: u16) -> bool {
    match num(driver) {
        Some(n) if driver.starts_with("0x") => n == u64::from(code),
        _ => driver == phyr_trace::status_name(code),
    }
}

fn same_opcode(driver: &str, code: u8) -> bool {
    match driver.strip_prefix("0x") {
        Some(h) => u8::from_str_radix(h, 16).ok() == Some(code),
        None => driver == phyr_trace::opcode_name(code),
    }
}

fn inside(rec: &DmaRecord, allowed: &[Seg]) -> bool {
    let bus = rec.space == Space::Bus;
    let end = rec.addr.checked_add(u64::from(rec.len));
    allowed.iter().any(|s| {
        s.bus == bus && rec.addr >= s.addr && end.is_some_and(|e| s.addr.checked_add(s.len).is_some_and(|se| e <= se))
    })
}

/// Reads every endpoint's trace in `trace_dir` into completed commands per (ep, q, id).
/// Completed commands per (endpoint, queue, command id), in completion order.
type DeviceCommands = BTreeMap<(u16, u16, u16), VecDeque<DeviceCmd>>;

/// Also counts, in `unfinished`, commands that did DMA but were ended by a reset without a completion.
fn device_commands(trace_dir: &Path, unfinished: &mut usize) -> Result<DeviceCommands, String> {
    let files = phyr_trace::trace_files(trace_dir).map_err(|e| e.to_string())?;
    let mut done = DeviceCommands::new();
    for f in files {
        let mut reader = TraceReader::open(&f.path).map_err(|e| e.to_string())?;
        let mut pending: BTreeMap<(u16, u16, u16), DeviceCmd> = BTreeMap::new();
        let mut epochs: BTreeMap<u16, u32> = BTreeMap::new();
        while let Some((_, rec)) = reader.next_record().map_err(|e| format!("{}: {e}", f.path.display()))? {
            match rec.payload {
                Payload::Dma(d) => pending
                    .entry((d.endpoint, d.queue, d.command_id))
                    .or_default()
                    .dma
                    .push(d),
                Payload::Event {
                    endpoint,
                    event:
                        Event::CommandDone {
                            queue,
                            command_id,
                            opcode,
                            status,
                            result,
                        },
                } => {
                    let key = (endpoint, queue, command_id);
                    let mut cmd = pending.remove(&key).unwrap_or_default();
                    (cmd.opcode, cmd.status, cmd.result) = (opcode, status, result);
                    cmd.epoch = epochs.get(&endpoint).copied().unwrap_or(0);
                    done.entry(key).or_default().push_back(cmd);
                }
                // A reset ends the commands in flight without completions: their records must
                // not be credited to a later command that reuses the same id.
                Payload::Event {
                    endpoint,
                    event: Event::Reset,
                } => {
                    *epochs.entry(endpoint).or_default() += 1;
                    let before = pending.len();
                    pending.retain(|k, _| k.0 != endpoint);
                    *unfinished += before - pending.len();
                }
                Payload::Event { .. } => {}
            }
        }
    }
    Ok(done)
}

/// Cross-checks the console log of a suite run against the run's traces.
pub fn check(serial_log: &str, trace_dir: &Path) -> Report {
    let mut report = Report::default();
    let (driver, problems) = parse_driver_log(serial_log);
    report.problems.extend(problems);
    if driver.is_empty() {
        report
            .problems
            .push("the console has no `# phyr-cmd` lines to check".into());
        return report;
    }
    let mut device = match device_commands(trace_dir, &mut report.unfinished) {
        Ok(d) => d,
        Err(e) => {
            report.problems.push(format!("cannot read the device traces: {e}"));
            return report;
        }
    };
    let device_total: usize = device.values().map(VecDeque::len).sum();
    let mut matched = 0usize;
    // Per endpoint: (driver resets, device epoch) of the last command matched.
    let mut last: BTreeMap<u16, (u32, u32)> = BTreeMap::new();
    for d in &driver {
        let what = format!("ep{} q{} cmd {} {}", d.ep, d.q, d.id, d.op);
        let mut epochs = match last.get(&d.ep) {
            Some(&(resets, epoch)) if resets == d.resets => Epochs {
                lo: epoch,
                hi: Some(epoch),
            },
            Some(&(resets, epoch)) => Epochs {
                lo: epoch + d.resets.saturating_sub(resets),
                hi: None,
            },
            None => Epochs { lo: d.resets, hi: None },
        };
        // A command aborted by a reset is reported after the driver's reset line, but the
        // device completed it before recording the reset: it may sit one epoch earlier.
        let normal_lo = epochs.lo;
        if d.status == "ABORTED_RESET" {
            epochs.lo = epochs.lo.saturating_sub(1);
        }
        let Some(dev) = device
            .get_mut(&(d.ep, d.q, d.id))
            .and_then(|q| take_match(q, d, epochs))
        else {
            report.problems.push(format!(
                "{what}: the driver reports it ({} result {:#x}), the device trace has no completion in its reset epoch ({epochs:?})",
                d.status, d.result
            ));
            continue;
        };
        matched += 1;
        last.insert(d.ep, (d.resets, dev.epoch.max(normal_lo)));
        report.commands_checked += 1;
        let opcode = dev_opcode(&dev);
        if !same_cmd(d, &dev) {
            report.problems.push(format!(
                "{what}: driver saw {} result {:#x}, device recorded {} {} result {:#x}",
                d.status,
                d.result,
                phyr_trace::opcode_name(opcode),
                phyr_trace::status_name(dev.status),
                dev.result
            ));
        }
        for rec in dev.dma.iter().filter(|r| r.status == 0) {
            let allowed = match rec.list {
                0 => &d.src,
                1 => &d.dst,
                2 => &d.lists,
                _ => continue,
            };
            if !inside(rec, allowed) {
                report.problems.push(format!(
                    "{what}: device {:?} {:?} {:#x}+{:#x} (list {}, segment {}) is outside what the driver handed out",
                    rec.direction, rec.space, rec.addr, rec.len, rec.list, rec.segment
                ));
            }
        }
        if d.status == "SUCCESS" {
            check_data(d, &dev, &what, &mut report);
        }
    }
    report.unreported = device_total - matched;
    report
}

/// Which device reset epochs a driver command may be matched in: `lo..=hi` (no `hi`: any
/// later one).
#[derive(Debug, Clone, Copy)]
struct Epochs {
    lo: u32,
    hi: Option<u32>,
}

impl Epochs {
    fn admits(self, e: u32) -> bool {
        e >= self.lo && self.hi.is_none_or(|hi| e <= hi)
    }
}

/// The opcode of a device command: the DMA records carry it too; the completion event's may
/// be unset (0).
fn dev_opcode(dev: &DeviceCmd) -> u8 {
    dev.dma.first().map_or(dev.opcode, |r| r.opcode)
}

fn same_cmd(d: &DriverCmd, dev: &DeviceCmd) -> bool {
    let opcode_ok = same_opcode(&d.op, dev_opcode(dev)) || (dev.dma.is_empty() && dev.opcode == 0);
    opcode_ok && same_status(&d.status, dev.status) && d.result == dev.result
}

/// Takes the device completion of `d` from `q` (completions of one (ep, q, id) in order):
/// the first in an admitted epoch that agrees with the driver; the completions before it were
/// never reported (dropped). Without one that agrees, the first admitted completion (to
/// report the mismatch), if any; completions of later epochs stay for later commands.
fn take_match(q: &mut VecDeque<DeviceCmd>, d: &DriverCmd, epochs: Epochs) -> Option<DeviceCmd> {
    let first = q.iter().position(|c| epochs.admits(c.epoch))?;
    // Never skip a whole epoch to find agreement: within the admitted ones, only the first
    // epoch and (for an aborted command, which may sit one earlier) the one after it.
    let last = match (epochs.hi, d.status == "ABORTED_RESET") {
        (Some(hi), _) => hi,
        (None, true) => q[first].epoch + 1,
        (None, false) => q[first].epoch,
    };
    let pos = q
        .iter()
        .enumerate()
        .skip(first)
        .take_while(|(_, c)| c.epoch <= last)
        .find(|(_, c)| same_cmd(d, c))
        .map_or(first, |(i, _)| i);
    q.drain(..pos);
    q.pop_front()
}

/// Bytes and CRC of the data side of a successful command.
fn check_data(d: &DriverCmd, dev: &DeviceCmd, what: &str, report: &mut Report) {
    let side = if d.op == "COPY" || d.op == "FILL" { 1 } else { 0 };
    if d.op == "NOP" {
        return;
    }
    let recs: Vec<&DmaRecord> = dev.dma.iter().filter(|r| r.list == side && r.status == 0).collect();
    let moved: u64 = recs.iter().map(|r| u64::from(r.len)).sum();
    if moved != d.bytes {
        report.problems.push(format!(
            "{what}: driver expected {} bytes, the device moved {moved}",
            d.bytes
        ));
        return;
    }
    let (Some(want), true) = (d.crc32c, recs.iter().all(|r| r.crc32c.is_some())) else {
        return;
    };
    report.crcs_compared += 1;
    let got = recs.iter().fold(0u32, |acc, r| {
        crc32c::crc32c_combine(acc, r.crc32c.unwrap_or(0), r.len as usize)
    });
    if got != want {
        report.problems.push(format!(
            "{what}: driver expected CRC32C {want:#010x}, the device's records give {got:#010x}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses one `# phyr-cmd ...` line with inline range lists; `None` for anything else, a
    /// malformed line, or one with `@N/K` references (see [`parse_driver_log`]).
    fn parse_cmd_line(line: &str) -> Option<DriverCmd> {
        match parse_cmd_fields(line)? {
            (cmd, refs) if refs.is_empty() => Some(cmd),
            _ => None,
        }
    }

    const LINE: &str = "# phyr-cmd ep=0 q=1 id=17 op=COPY status=SUCCESS result=0x2000 bytes=8192 crc32c=0x1a2b3c4d \
src=[iova:0x100000+0x1000,bus:0xfe000000+0x1000] dst=[iova:0x200000+0x2000] lists=[iova:0x5000+0x20] fault=-";

    #[test]
    fn range_references_are_resolved_from_phyr_ranges_lines() {
        let log = "# phyr-cmd ep=0 q=2 id=5 op=COPY status=SUCCESS result=0x80 bytes=128 crc32c=0x0badf00d \
src=@7/3 dst=[iova:0x900000+0x80] lists=@8/1 fault=-
# phyr-ranges 7 1/2 iova:0x100000+0x40 iova:0x100080+0x20
# phyr-ranges 7 2/2 bus:0xfe010000+0x20
# phyr-ranges 8 1/1 iova:0x5000+0x30
ok 1 something";
        let (cmds, problems) = parse_driver_log(log);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0].src.len(), 3);
        assert_eq!(
            cmds[0].src[2],
            Seg {
                bus: true,
                addr: 0xfe010000,
                len: 0x20
            }
        );
        assert_eq!(
            cmds[0].lists,
            vec![Seg {
                bus: false,
                addr: 0x5000,
                len: 0x30
            }]
        );
        assert!(parse_cmd_line(log.lines().next().unwrap()).is_none());
    }

    #[test]
    fn lost_phyr_ranges_line_is_a_problem() {
        let log = "# phyr-cmd ep=0 q=2 id=5 op=COPY status=SUCCESS result=0x80 bytes=128 crc32c=- \
src=@7/3 dst=[iova:0x900000+0x80] lists=[] fault=-
# phyr-ranges 7 1/2 iova:0x100000+0x40 iova:0x100080+0x20";
        let (cmds, problems) = parse_driver_log(log);
        assert_eq!(cmds[0].src.len(), 2);
        assert!(problems[0].contains("@7/3"), "{problems:?}");
    }

    #[test]
    fn parses_the_driver_line() {
        let c = parse_cmd_line(LINE).unwrap();
        assert_eq!(
            (c.ep, c.q, c.id, c.op.as_str(), c.status.as_str()),
            (0, 1, 17, "COPY", "SUCCESS")
        );
        assert_eq!((c.result, c.bytes, c.crc32c), (0x2000, 8192, Some(0x1a2b3c4d)));
        assert_eq!(
            c.src[1],
            Seg {
                bus: true,
                addr: 0xfe000000,
                len: 0x1000
            }
        );
        assert_eq!(
            c.lists,
            vec![Seg {
                bus: false,
                addr: 0x5000,
                len: 0x20
            }]
        );
        assert!(parse_cmd_line("# phyr-cmd ep=x").is_none());
        assert!(parse_cmd_line(&LINE.replace("src=[iova:0x100000+0x1000,", "src=[iova:0x100000,")).is_none());
        assert!(parse_cmd_line("ok 1 copy").is_none());
    }

    fn rec(list: u8, space: Space, addr: u64, len: u32, data: &[u8]) -> DmaRecord {
        DmaRecord {
            endpoint: 0,
            queue: 1,
            command_id: 17,
            opcode: 1,
            segment: 0,
            list,
            direction: if list == 1 {
                phyr_trace::Direction::Write
            } else {
                phyr_trace::Direction::Read
            },
            space,
            addr,
            len,
            target: phyr_trace::Target::None,
            status: 0,
            crc32c: Some(crc32c::crc32c(data)),
            dur_ns: 0,
        }
    }

    #[test]
    fn accesses_must_stay_inside_handed_out_segments() {
        let c = parse_cmd_line(LINE).unwrap();
        assert!(inside(&rec(0, Space::Iova, 0x100800, 0x800, b""), &c.src));
        assert!(inside(&rec(0, Space::Bus, 0xfe000000, 0x1000, b""), &c.src));
        assert!(
            !inside(&rec(0, Space::Iova, 0xfe000000, 0x1000, b""), &c.src),
            "space must match"
        );
        assert!(
            !inside(&rec(0, Space::Iova, 0x100800, 0x801, b""), &c.src),
            "one byte past the end"
        );
        assert!(!inside(&rec(1, Space::Iova, u64::MAX, 2, b""), &c.dst), "wrapping end");
    }

    #[test]
    fn crc_and_length_are_combined_across_records() {
        let data = vec![0xabu8; 8192];
        let mut d = parse_cmd_line(LINE).unwrap();
        d.crc32c = Some(crc32c::crc32c(&data));
        let dev = DeviceCmd {
            epoch: 0,
            opcode: 1,
            status: 0,
            result: 0x2000,
            dma: vec![
                rec(1, Space::Iova, 0x200000, 4096, &data[..4096]),
                rec(1, Space::Iova, 0x201000, 4096, &data[4096..]),
            ],
        };
        let mut r = Report::default();
        check_data(&d, &dev, "t", &mut r);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.crcs_compared, 1);
        d.crc32c = Some(1);
        check_data(&d, &dev, "t", &mut r);
        assert!(r.problems[0].contains("CRC32C"));
        d.bytes = 100;
        check_data(&d, &dev, "t", &mut r);
        assert!(r.problems[1].contains("moved 8192"));
    }

    #[test]
    fn dma_of_a_command_ended_by_reset_is_not_credited_to_the_next_one() {
        use phyr_trace::{Recorder, TraceClock, TraceConfig};
        let dir = std::env::temp_dir().join(format!("phyr-crosscheck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = vec![7u8; 4096];
        {
            let r = Recorder::create(&dir, 0, &TraceConfig::default(), &TraceClock::new()).unwrap();
            // cmd 17 starts moving data elsewhere, then a reset ends it without a completion...
            r.record_now(Payload::Dma(rec(1, Space::Iova, 0x900000, 4096, &data)));
            r.record_now(Payload::Event {
                endpoint: 0,
                event: Event::Reset,
            });
            // ...and a new cmd 17 (same id) does exactly what the driver reports.
            r.record_now(Payload::Dma(rec(0, Space::Iova, 0x100000, 4096, &data)));
            r.record_now(Payload::Dma(rec(1, Space::Iova, 0x200000, 4096, &data)));
            let done = Event::CommandDone {
                queue: 1,
                command_id: 17,
                opcode: 1,
                status: 0,
                result: 0x1000,
            };
            r.record_now(Payload::Event {
                endpoint: 0,
                event: done,
            });
            r.flush().unwrap();
        }
        let line = format!(
            "# phyr-cmd ep=0 q=1 id=17 op=COPY status=SUCCESS result=0x1000 bytes=4096 crc32c={:#010x} \
             src=[iova:0x100000+0x1000] dst=[iova:0x200000+0x1000] lists=[] fault=-",
            crc32c::crc32c(&data)
        );
        let report = check(&format!("noise\n{line}\n"), &dir);
        assert_eq!((report.commands_checked, report.unfinished), (1, 1));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        // Without the trace the check says so rather than passing.
        let missing = check(&line, &dir.join("nope"));
        assert!(missing.problems[0].contains("cannot read the device traces"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A trace directory for endpoint 0 with these events, in order.
    fn trace_dir(tag: &str, events: &[Event]) -> std::path::PathBuf {
        use phyr_trace::{Recorder, TraceClock, TraceConfig};
        let dir = std::env::temp_dir().join(format!("phyr-crosscheck-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let r = Recorder::create(&dir, 0, &TraceConfig::default(), &TraceClock::new()).unwrap();
        for e in events {
            r.record_now(Payload::Event {
                endpoint: 0,
                event: e.clone(),
            });
        }
        r.flush().unwrap();
        dir
    }

    fn done(command_id: u16, opcode: u8, status: u16, result: u64) -> Event {
        Event::CommandDone {
            queue: 0,
            command_id,
            opcode,
            status,
            result,
        }
    }

    fn cmd_line(id: u16, op: &str, status: &str, result: u64) -> String {
        format!(
            "# phyr-cmd ep=0 q=0 id={id} op={op} status={status} result={result:#x} bytes=0 crc32c=- src=[] dst=[] lists=[] fault=-"
        )
    }

    #[test]
    fn ids_reused_across_resets_match_within_their_epoch() {
        let dir = trace_dir(
            "epochs",
            &[
                done(1, 0, 0, 0),
                Event::Reset,
                done(1, 1, 0x40, 0x800),
                Event::Reset,
                done(1, 0, 0, 0),
            ],
        );
        let nop = cmd_line(1, "NOP", "SUCCESS", 0);
        let aborted = cmd_line(1, "COPY", "ABORTED_RESET", 0x800);
        let log = format!("{nop}\n# phyr-reset ep=0 kind=vfio\n{aborted}\n# phyr-reset ep=0 kind=ctrl\n{nop}\n");
        let r = check(&log, &dir);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!((r.commands_checked, r.unreported), (3, 0));
        // Without the reset lines the driver claims all three in one epoch: the COPY has no
        // completion there.
        let r = check(&format!("{nop}\n{aborted}\n{nop}\n"), &dir);
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("cmd 1 COPY") && p.contains("no completion in its reset epoch")),
            "{:?}",
            r.problems
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreported_device_completions_before_a_reported_one_are_not_errors() {
        let dir = trace_dir(
            "unreported",
            &[
                // cmd 1 COPY finished, but the driver never printed it; then a reset.
                done(1, 1, 0, 0x10000),
                Event::Reset,
                // Same epoch, same id twice (the queue was re-created): only the NOP reported.
                done(1, 1, 0x40, 0x800),
                done(2, 1, 0, 0x1000),
                done(2, 0, 0, 0),
            ],
        );
        let log = format!(
            "# phyr-reset ep=0 kind=ctrl\n{}\n{}\n",
            cmd_line(1, "COPY", "ABORTED_RESET", 0x800),
            cmd_line(2, "NOP", "SUCCESS", 0)
        );
        let r = check(&log, &dir);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!((r.commands_checked, r.unreported), (2, 2));
        // Still strict: a reported result the device never produced is a mismatch.
        let log = format!(
            "# phyr-reset ep=0 kind=ctrl\n{}\n",
            cmd_line(1, "COPY", "ABORTED_RESET", 0x400)
        );
        let r = check(&log, &dir);
        assert!(
            r.problems.len() == 1 && r.problems[0].contains("driver saw ABORTED_RESET result 0x400"),
            "{:?}",
            r.problems
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_command_aborted_by_a_reset_is_reported_after_the_reset_line() {
        // The device completes the aborted COPY, then records the reset; the driver prints
        // its reset line first, then the COPY, then resets again and runs a NOP (id 1 again).
        let dir = trace_dir(
            "aborted",
            &[done(1, 1, 0x40, 0x400000), Event::Reset, Event::Reset, done(1, 0, 0, 0)],
        );
        let log = format!(
            "# phyr-reset ep=0 kind=ctrl\n{}\n# phyr-reset ep=0 kind=ctrl\n{}\n",
            cmd_line(1, "COPY", "ABORTED_RESET", 0x400000),
            cmd_line(1, "NOP", "SUCCESS", 0)
        );
        let r = check(&log, &dir);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!((r.commands_checked, r.unreported), (2, 0));
        // Only an aborted command gets that slack.
        let log = format!(
            "# phyr-reset ep=0 kind=ctrl\n{}\n",
            cmd_line(1, "COPY", "SUCCESS", 0x400000)
        );
        assert!(!check(&log, &dir).problems.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn repeated_ranges_parse_with_their_coverage() {
        let line = LINE.replace("dst=[iova:0x200000+0x2000]", "dst=[bus:0xe0000000+0x2000000*4096]");
        let c = parse_cmd_line(&line).unwrap();
        assert_eq!(
            c.dst,
            vec![Seg {
                bus: true,
                addr: 0xe0000000,
                len: 0x2000000
            }]
        );
        assert!(parse_cmd_line(&LINE.replace("+0x2000]", "+0x2000*1]")).is_none());
    }

    #[test]
    fn reset_lines_count_per_endpoint() {
        let log = format!(
            "# phyr-reset ep=1 kind=ctrl\n{}\n# phyr-reset ep=0 kind=vfio\n{}\n",
            cmd_line(1, "NOP", "SUCCESS", 0),
            cmd_line(2, "NOP", "SUCCESS", 0)
        );
        let (cmds, problems) = parse_driver_log(&log);
        assert!(problems.is_empty());
        assert_eq!((cmds[0].resets, cmds[1].resets), (0, 1));
    }
}
