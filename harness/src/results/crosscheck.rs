//! After a guest suite: cross-check the device's DMA records (RUN/trace/epN.phyrtrace)
//! against what the driver reported on the console (`# phyr-cmd` lines: docs/REPORT.md,
//! read with the `phyr-report` crate). For every command the driver says it ran:
//! - the device completed a command with the same endpoint, queue, id, opcode, status, result;
//! - for a successful command with a known CRC, the bytes the device moved on the data side
//!   (dst for COPY/FILL, src for CRC32C/COMPARE) add up to `bytes` and their CRC32C matches;
//! - every access that reached memory lies inside a segment the driver handed out for that
//!   list (src, dst, or the list blocks), in the same address space;
//! - with a kernel driver (`# phyr-kmap` lines), what kernel_oracle.rs checks: every piece
//!   inside the command's ranges in the space its map type implies, every access in the space
//!   the kernel chose, at the guest-physical address or BAR offset it mapped, nothing after an
//!   unmap.
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
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use dma_range::{AddrSpace, ListKind, Status};
use phyr_kernels::crc32c;
use phyr_report::{CmdStatus, Op, ReportedCmd, Span};
use phyr_trace::{DmaRecord, Event, Payload, Record, Space, TraceReader};

use crate::launch::recipe::Recipe;
use crate::results::expected::Expected;
use crate::results::guest_phys::GuestPhys;
use crate::results::kernel_oracle::{self, KernelStats, Oracle, TimedDma};

/// What the device did for one command.
#[derive(Debug, Default)]
struct DeviceCmd {
    /// `Event::Reset` records of the endpoint before the completion.
    epoch: u32,
    opcode: u8,
    status: u16,
    result: u64,
    /// Its DMA records with their time stamps.
    dma: Vec<TimedDma>,
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
    /// What the kernel path's oracle checked (commands with `# phyr-kmap` lines).
    pub kernel: KernelStats,
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
        ) + &match self.kernel.summary() {
            k if k.is_empty() => String::new(),
            k => format!("; {k}"),
        }
    }

    /// The progress line's words: how many commands matched (or the problems).
    pub fn summary(&self) -> String {
        if self.problems.is_empty() {
            format!(
                "{} commands match the device's DMA records ({} with their data CRC)",
                self.commands_checked, self.crcs_compared
            )
        } else {
            format!(
                "{} problem(s) in {} commands",
                self.problems.len(),
                self.commands_checked
            )
        }
    }
}

/// Whether the reported status is ABORTED_RESET (such a command gets one epoch of slack).
fn aborted_by_reset(d: &ReportedCmd) -> bool {
    d.cmd.status == CmdStatus::Known(Status::ABORTED_RESET)
}

/// Whether a device access lies inside one of the ranges the driver handed out for its list.
fn inside(rec: &DmaRecord, allowed: &[Span]) -> bool {
    // A DMA_READ/DMA_WRITE message (memory without an fd) carries an IOVA too.
    let space = match rec.space {
        Space::Iova | Space::Message => AddrSpace::Iova,
        Space::Bus => AddrSpace::Bus,
    };
    allowed.iter().any(|s| s.covers(space, rec.addr, u64::from(rec.len)))
}

/// Completed commands per (endpoint, queue, command id), in completion order.
type DeviceCommands = BTreeMap<(u32, u32, u16), VecDeque<DeviceCmd>>;

/// Reads every endpoint's trace in `trace_dir` into completed commands per (ep, q, id), and
/// the event records (for the mapping history, `GuestPhys`). Also counts, in `unfinished`,
/// commands that did DMA but were ended by a reset without a completion.
fn device_commands(trace_dir: &Path, unfinished: &mut usize) -> Result<(DeviceCommands, Vec<Record>), String> {
    let files = phyr_trace_tools::trace_files(trace_dir).map_err(|e| e.to_string())?;
    let mut done = DeviceCommands::new();
    let mut events = Vec::new();
    for f in files {
        let mut reader = TraceReader::open(&f.path).map_err(|e| e.to_string())?;
        let mut pending: BTreeMap<(u32, u32, u16), DeviceCmd> = BTreeMap::new();
        let mut epochs: BTreeMap<u16, u32> = BTreeMap::new();
        while let Some((_, rec)) = reader.next_record().map_err(|e| format!("{}: {e}", f.path.display()))? {
            if matches!(rec.payload, Payload::Event { .. }) {
                events.push(rec.clone());
            }
            match rec.payload {
                Payload::Dma(d) => pending
                    .entry((u32::from(d.endpoint), u32::from(d.queue), d.command_id))
                    .or_default()
                    .dma
                    .push((rec.t_ns, d)),
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
                    let key = (u32::from(endpoint), u32::from(queue), command_id);
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
                    pending.retain(|k, _| k.0 != u32::from(endpoint));
                    *unfinished += before - pending.len();
                }
                Payload::Event { .. } => {}
            }
        }
    }
    Ok((done, events))
}

/// Cross-checks the console log of a suite run against the run's traces and what its recipe
/// says (`expected`).
pub fn check(serial_log: &str, trace_dir: &Path, expected: &Expected) -> Report {
    let mut report = Report::default();
    let log = phyr_report::parse_log(serial_log);
    report.problems.extend(log.problems);
    kernel_oracle::check_p2p(expected, &log.p2p, &mut report.kernel, &mut report.problems);
    let driver = log.cmds;
    if driver.is_empty() {
        report
            .problems
            .push("the console has no `# phyr-cmd` lines to check".into());
        return report;
    }
    let (mut device, events) = match device_commands(trace_dir, &mut report.unfinished) {
        Ok(d) => d,
        Err(e) => {
            report.problems.push(format!("cannot read the device traces: {e}"));
            return report;
        }
    };
    let guest_phys = expected.layout.clone().map(|l| GuestPhys::from_records(l, &events));
    let oracle = Oracle {
        guest_phys: &guest_phys,
        endpoints: &log.endpoints,
    };
    let device_total: usize = device.values().map(VecDeque::len).sum();
    let mut matched = 0usize;
    // Per endpoint: (driver resets, device epoch, whether that epoch is surely the driver's
    // current one) of the last command matched. A command aborted by a reset may have completed
    // just before the device recorded that reset: the driver's later commands then run one
    // epoch on, so after one the epoch is only a lower bound.
    let mut last: BTreeMap<u32, (u32, u32, bool)> = BTreeMap::new();
    for d in &driver {
        let c = &d.cmd;
        let what = format!("ep{} q{} cmd {} {}", c.ep, c.q, c.id, c.op);
        let mut epochs = match last.get(&c.ep) {
            Some(&(resets, epoch, sure)) if resets == d.resets => Epochs {
                lo: epoch,
                hi: Some(if sure { epoch } else { epoch + 1 }),
            },
            Some(&(resets, epoch, _)) => Epochs {
                lo: epoch + d.resets.saturating_sub(resets),
                hi: None,
            },
            None => Epochs { lo: d.resets, hi: None },
        };
        // A command aborted by a reset is reported after the driver's reset line, but the
        // device completed it before recording the reset: it may sit one epoch earlier.
        let normal_lo = epochs.lo;
        if aborted_by_reset(d) {
            epochs.lo = epochs.lo.saturating_sub(1);
        }
        let Some(dev) = device
            .get_mut(&(c.ep, c.q, c.id))
            .and_then(|q| take_match(q, d, epochs))
        else {
            report.problems.push(format!(
                "{what}: the driver reports it ({} result {:#x}), the device trace has no completion in its reset epoch ({epochs:?})",
                c.status, c.result
            ));
            continue;
        };
        matched += 1;
        last.insert(c.ep, (d.resets, dev.epoch.max(normal_lo), !aborted_by_reset(d)));
        report.commands_checked += 1;
        let opcode = dev_opcode(&dev);
        if !same_cmd(d, &dev) {
            report.problems.push(format!(
                "{what}: driver saw {} result {:#x}, device recorded {} {} result {:#x}",
                c.status,
                c.result,
                Op::from_code(opcode),
                CmdStatus::from_code(dev.status),
                dev.result
            ));
        }
        for (_, rec) in dev.dma.iter().filter(|(_, r)| r.status == 0) {
            let allowed = match ListKind::from_u8(rec.list) {
                Some(list @ (ListKind::Src | ListKind::Dst | ListKind::Descriptor)) => c.ranges(list),
                Some(ListKind::Queue) | None => continue,
            };
            if !inside(rec, allowed) {
                report.problems.push(format!(
                    "{what}: device {:?} {:?} {:#x}+{:#x} (list {}, segment {}) is outside what the driver handed out",
                    rec.direction, rec.space, rec.addr, rec.len, rec.list, rec.segment
                ));
            }
        }
        kernel_oracle::check_command(&oracle, d, &dev.dma, &what, &mut report.kernel, &mut report.problems);
        if c.status == CmdStatus::Known(Status::SUCCESS) {
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
    dev.dma.first().map_or(dev.opcode, |(_, r)| r.opcode)
}

fn same_cmd(d: &ReportedCmd, dev: &DeviceCmd) -> bool {
    let c = &d.cmd;
    let opcode_ok = c.op.code() == dev_opcode(dev) || (dev.dma.is_empty() && dev.opcode == 0);
    opcode_ok && c.status.code() == dev.status && c.result == dev.result
}

/// Takes the device completion of `d` from `q` (completions of one (ep, q, id) in order):
/// the first in an admitted epoch that agrees with the driver; the completions before it were
/// never reported (dropped). Without one that agrees, the first admitted completion (to
/// report the mismatch), if any; completions of later epochs stay for later commands.
fn take_match(q: &mut VecDeque<DeviceCmd>, d: &ReportedCmd, epochs: Epochs) -> Option<DeviceCmd> {
    let first = q.iter().position(|c| epochs.admits(c.epoch))?;
    // Never skip a whole epoch to find agreement: within the admitted ones, only the first
    // epoch and (for an aborted command, which may sit one earlier) the one after it.
    let last = match (epochs.hi, aborted_by_reset(d)) {
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
fn check_data(d: &ReportedCmd, dev: &DeviceCmd, what: &str, report: &mut Report) {
    let c = &d.cmd;
    let Some(side) = c.op.data_list() else {
        return;
    };
    let recs: Vec<&DmaRecord> = dev
        .dma
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.list == side as u8 && r.status == 0)
        .collect();
    let moved: u64 = recs.iter().map(|r| u64::from(r.len)).sum();
    if moved != c.bytes {
        report.problems.push(format!(
            "{what}: driver expected {} bytes, the device moved {moved}",
            c.bytes
        ));
        return;
    }
    let (Some(want), true) = (c.crc32c, recs.iter().all(|r| r.crc32c.is_some())) else {
        return;
    };
    report.crcs_compared += 1;
    let got = recs.iter().fold(0u32, |acc, r| {
        crc32c::crc32c_combine(acc, r.crc32c.unwrap_or(0), u64::from(r.len))
    });
    if got != want {
        report.problems.push(format!(
            "{what}: driver expected CRC32C {want:#010x}, the device's records give {got:#010x}"
        ));
    }
}

/// `crosscheck DIR`: one session directory (serial.log + trace/), or a `test` run holding one
/// per recipe.
/// What the recipe of a session expects, from the recipe copy the harness left in it.
fn expected_of_session(dir: &Path) -> Expected {
    let file = dir.join(crate::launch::boot::RECIPE_COPY);
    let recipe = std::fs::read_to_string(&file)
        .map_err(|e| format!("{} ({e}): the recipe is unknown", file.display()))
        .and_then(|text| Recipe::parse("session", &file, &text).map_err(|e| e.to_string()));
    match recipe {
        Ok(r) => Expected::of(&r),
        Err(e) => Expected::unknown(&e),
    }
}

/// Guest 1's console in a session whose device served two guests one after the other
/// (`just soak`: guest 1's QEMU is killed, guest 2 boots against the same phyr-device); the
/// session's serial.log is guest 2's.
pub const GUEST1_CONSOLE: &str = "serial.guest1.log";

/// Two guests' console logs as one, with a `# phyr-reset` of every endpoint between them: the
/// second guest's VFIO open resets each endpoint, and its command ids start again. The first
/// guest's VMM was killed mid-output, so its console is read up to its last `# phyr-soak` line,
/// where no command's lines are half printed (without one, up to its last whole line); the
/// commands after it count as unreported.
pub fn joined_log(first: &str, second: &str, endpoints: usize) -> String {
    let whole = first.rfind('\n').map_or("", |i| &first[..=i]);
    // The last physical line that is a whole `# phyr-soak` line (one a kernel message cut
    // does not parse, and is not a place to cut).
    let mut end = 0;
    let mut cut = whole;
    for l in whole.split_inclusive('\n') {
        end += l.len();
        if matches!(
            phyr_report::Line::find(l.trim_end()),
            Some(Ok(phyr_report::Line::Soak(_)))
        ) {
            cut = &whole[..end];
        }
    }
    let mut s = String::with_capacity(cut.len() + second.len() + 64 * endpoints);
    s.push_str(cut);
    for ep in 0..endpoints {
        s.push_str(&format!("# phyr-reset ep={ep} kind=vfio\n"));
    }
    s.push_str(second);
    s
}

/// A session's console as the check reads it: serial.log, after [`GUEST1_CONSOLE`] when the
/// session has one (joined as [`joined_log`] says, for every endpoint with a trace).
pub fn session_console(dir: &Path) -> Result<String> {
    let serial = std::fs::read_to_string(dir.join("serial.log"))
        .with_context(|| format!("reading {}", dir.join("serial.log").display()))?;
    let first = dir.join(GUEST1_CONSOLE);
    if !first.is_file() {
        return Ok(serial);
    }
    let earlier = std::fs::read_to_string(&first).with_context(|| format!("reading {}", first.display()))?;
    let endpoints = phyr_trace_tools::trace_files(&dir.join("trace")).map_or(0, |f| f.len());
    Ok(joined_log(&earlier, &serial, endpoints))
}

pub fn command(dir: &Path) -> Result<i32> {
    let sessions: Vec<PathBuf> = if dir.join("serial.log").is_file() {
        vec![dir.to_owned()]
    } else {
        let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("serial.log").is_file())
            .collect();
        subs.sort();
        subs
    };
    if sessions.is_empty() {
        bail!("{} holds no serial.log (nor recipe directories with one): pass a run directory such as runs/latest/default", dir.display());
    }
    let mut failed = false;
    for s in &sessions {
        let serial = session_console(s)?;
        let c = check(&serial, &s.join("trace"), &expected_of_session(s));
        for p in &c.problems {
            println!("{}: {p}", s.display());
        }
        println!("{}: {}", s.display(), c.counts());
        failed |= !c.problems.is_empty();
    }
    Ok(i32::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No recipe: these tests have no kernel commands.
    fn no_layout() -> &'static Expected {
        static E: std::sync::OnceLock<Expected> = std::sync::OnceLock::new();
        E.get_or_init(|| Expected::unknown("no recipe in this test"))
    }

    /// The one command of a console log.
    fn parse_cmd_line(line: &str) -> ReportedCmd {
        let log = phyr_report::parse_log(line);
        assert!(log.problems.is_empty(), "{:?}", log.problems);
        assert_eq!(log.cmds.len(), 1, "{line}");
        log.cmds.into_iter().next().unwrap()
    }

    const LINE: &str = "# phyr-cmd ep=0 q=1 id=17 op=COPY status=SUCCESS result=0x2000 bytes=8192 crc32c=0x1a2b3c4d \
src=[iova:0x100000+0x1000,bus:0xfe000000+0x1000] dst=[iova:0x200000+0x2000] lists=[iova:0x5000+0x20] fault=-";

    #[test]
    fn parses_the_driver_line() {
        let c = parse_cmd_line(LINE).cmd;
        assert_eq!(
            (c.ep, c.q, c.id, c.op.to_string(), c.status.to_string()),
            (0, 1, 17, "COPY".into(), "SUCCESS".into())
        );
        assert_eq!((c.result, c.bytes, c.crc32c), (0x2000, 8192, Some(0x1a2b3c4d)));
        assert_eq!(c.src[1], Span::new(AddrSpace::Bus, 0xfe000000, 0x1000));
        assert_eq!(c.lists, vec![Span::new(AddrSpace::Iova, 0x5000, 0x20)]);
        // A report line that does not parse is a problem of the check, not a skipped line.
        let r = check("# phyr-cmd ep=x", Path::new("/nonexistent"), no_layout());
        assert!(r.problems[0].contains("field `ep=x`"), "{:?}", r.problems);
        let r = check(
            &LINE.replace("src=[iova:0x100000+0x1000,", "src=[iova:0x100000,"),
            Path::new("/nonexistent"),
            no_layout(),
        );
        assert!(r.problems[0].contains("no `+len`"), "{:?}", r.problems);
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
        let c = parse_cmd_line(LINE).cmd;
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
        let message = |addr| rec(0, Space::Message, addr, 0x800, b"");
        assert!(inside(&message(0x100800), &c.src), "a message carries an IOVA");
        assert!(!inside(&message(0xfe000000), &c.src), "not a bus address");
    }

    #[test]
    fn crc_and_length_are_combined_across_records() {
        let data = vec![0xabu8; 8192];
        let mut d = parse_cmd_line(LINE);
        d.cmd.crc32c = Some(crc32c::crc32c(&data));
        let dev = DeviceCmd {
            epoch: 0,
            opcode: 1,
            status: 0,
            result: 0x2000,
            dma: vec![
                (0, rec(1, Space::Iova, 0x200000, 4096, &data[..4096])),
                (1, rec(1, Space::Iova, 0x201000, 4096, &data[4096..])),
            ],
        };
        let mut r = Report::default();
        check_data(&d, &dev, "t", &mut r);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.crcs_compared, 1);
        d.cmd.crc32c = Some(1);
        check_data(&d, &dev, "t", &mut r);
        assert!(r.problems[0].contains("CRC32C"));
        d.cmd.bytes = 100;
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
        let report = check(&format!("noise\n{line}\n"), &dir, no_layout());
        assert_eq!((report.commands_checked, report.unfinished), (1, 1));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        // Without the trace the check says so rather than passing.
        let missing = check(&line, &dir.join("nope"), no_layout());
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
        let r = check(&log, &dir, no_layout());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!((r.commands_checked, r.unreported), (3, 0));
        // Without the reset lines the driver claims all three in one epoch: the COPY has no
        // completion there.
        let r = check(&format!("{nop}\n{aborted}\n{nop}\n"), &dir, no_layout());
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
        let r = check(&log, &dir, no_layout());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!((r.commands_checked, r.unreported), (2, 2));
        // Still strict: a reported result the device never produced is a mismatch.
        let log = format!(
            "# phyr-reset ep=0 kind=ctrl\n{}\n",
            cmd_line(1, "COPY", "ABORTED_RESET", 0x400)
        );
        let r = check(&log, &dir, no_layout());
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
        let r = check(&log, &dir, no_layout());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!((r.commands_checked, r.unreported), (2, 0));
        // Only an aborted command gets that slack.
        let log = format!(
            "# phyr-reset ep=0 kind=ctrl\n{}\n",
            cmd_line(1, "COPY", "SUCCESS", 0x400000)
        );
        assert!(!check(&log, &dir, no_layout()).problems.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn commands_after_an_aborted_one_that_completed_before_its_reset_run_one_epoch_on() {
        // Seen in `just soak`: the first command the driver reports after its reset line was
        // aborted by that reset and completed just before the device recorded it; the next
        // commands (same driver reset count) ran after the reset, one device epoch later.
        let dir = trace_dir(
            "aborted-first",
            // Two resets of the kernel's own (open) before the driver's first.
            &[
                Event::Reset,
                Event::Reset,
                done(1, 1, 0x40, 0x800),
                Event::Reset,
                done(2, 0, 0, 0),
                done(3, 0, 0, 0),
            ],
        );
        let log = format!(
            "# phyr-reset ep=0 kind=ctrl\n{}\n{}\n{}\n",
            cmd_line(1, "COPY", "ABORTED_RESET", 0x800),
            cmd_line(2, "NOP", "SUCCESS", 0),
            cmd_line(3, "NOP", "SUCCESS", 0)
        );
        let r = check(&log, &dir, no_layout());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.commands_checked, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn repeated_ranges_parse_with_their_coverage() {
        let line = LINE.replace("dst=[iova:0x200000+0x2000]", "dst=[bus:0xe0000000+0x2000000*4096]");
        let c = parse_cmd_line(&line).cmd;
        assert!(inside(&rec(1, Space::Bus, 0xe1000000, 0x1000000, b""), &c.dst));
        assert!(
            !inside(&rec(1, Space::Bus, 0xe2000000, 0x1000, b""), &c.dst),
            "the count adds no coverage"
        );
    }
}
