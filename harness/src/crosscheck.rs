//! After a guest suite: cross-check the device's DMA records (RUN/trace/epN.phyrtrace)
//! against what the driver reported on the console (`# phyr-cmd` lines, format in
//! driver/src/report.rs). For every command the driver says it ran:
//! - the device completed a command with the same endpoint, queue, id, opcode, status, result;
//! - for a successful command with a known CRC, the bytes the device moved on the data side
//!   (dst for COPY/FILL, src for CRC32C/COMPARE) add up to `bytes` and their CRC32C matches;
//! - every access that reached memory lies inside a segment the driver handed out for that
//!   list (src, dst, or the list blocks), in the same address space.
//!
//! Commands are matched per (endpoint, queue, id) in order of completion.

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
}

/// What the device did for one command.
#[derive(Debug, Default)]
struct DeviceCmd {
    opcode: u8,
    status: u16,
    result: u64,
    dma: Vec<DmaRecord>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub commands_checked: usize,
    /// Commands the device started but a reset ended without a completion (not checked).
    pub unfinished: usize,
    pub problems: Vec<String>,
}

fn num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn seg(x: &str) -> Option<Seg> {
    let (space, rest) = x.split_once(':')?;
    let (addr, len) = rest.split_once('+')?;
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
    for line in log.lines() {
        if let Some((n, ranges)) = parse_ranges_line(line) {
            if let Some(p) = pending.get_mut(&n) {
                p.3.extend(ranges);
            }
        } else if let Some((cmd, refs)) = parse_cmd_fields(line) {
            settle(&mut pending, &mut cmds);
            for (which, n, k) in refs {
                pending.insert(n, (cmds.len(), which, k, Vec::new()));
            }
            cmds.push(cmd);
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
                    done.entry(key).or_default().push_back(cmd);
                }
                // A reset ends the commands in flight without completions: their records must
                // not be credited to a later command that reuses the same id.
                Payload::Event {
                    endpoint,
                    event: Event::Reset,
                } => {
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
    for d in &driver {
        let what = format!("ep{} q{} cmd {} {}", d.ep, d.q, d.id, d.op);
        let Some(dev) = device.get_mut(&(d.ep, d.q, d.id)).and_then(VecDeque::pop_front) else {
            report.problems.push(format!(
                "{what}: the driver reports it ({}), the device trace has no completion",
                d.status
            ));
            continue;
        };
        report.commands_checked += 1;
        // The DMA records carry the opcode too; the completion event's may be unset (0).
        let opcode = dev.dma.first().map_or(dev.opcode, |r| r.opcode);
        let opcode_ok = same_opcode(&d.op, opcode) || (dev.dma.is_empty() && dev.opcode == 0);
        if !opcode_ok || !same_status(&d.status, dev.status) || d.result != dev.result {
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
    report
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
}
