//! `phyr-harness soak` (`just soak`): the endpoints under `phyr soak` (driver/src/soak/) for a
//! while, across two guests and one device. Guest 1 runs the randomized workload with its
//! injected faults until the harness SIGKILLs its QEMU mid-run, as a crashing VMM dies; the
//! same phyr-device process keeps serving, guest 2 boots against it, first checks that BAR2
//! outside the soak's arenas still holds what guest 1 wrote there, and soaks for the rest of the
//! time. At the end every command both guests reported is cross-checked against the device's
//! traces (one trace for both: guest 2's VFIO open resets every endpoint, which the check is
//! told between the two logs).
//!
//! The last line: `N commands, N faults injected, N corrupted bytes (seed S)`; the same seed
//! replays the same choices (`just soak --seed S`).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;

use crate::image::initramfs::GuestMode;
use crate::launch::boot::{self, BootOptions};
use crate::launch::guest_run::{self, Console, DeviceProc, Ending, Outcome};
use crate::launch::options::GuestOpts;
use crate::launch::prepare;
use crate::launch::recipe::Recipe;
use crate::launch::rundir::{self, RunDir};
use crate::progress::say;
use crate::provision::cache::Cache;
use crate::results::crosscheck;
use crate::results::expected::Expected;
use phyr_report::{SoakLine, SoakState};

#[derive(Args)]
pub struct SoakArgs {
    /// How long to soak, in minutes, both guests together (at least 1).
    #[arg(long, default_value_t = 2)]
    pub minutes: u64,
    /// Seed of every random choice (decimal or 0x-hex); default: from the clock. Printed at
    /// the end, so a failing soak can be replayed.
    #[arg(long, value_parser = parse_seed)]
    pub seed: Option<u64>,
    /// Recipe name in qemu-configs/ (or a path to an .args file); it needs two endpoints.
    #[arg(long, short, default_value = "default")]
    pub recipe: String,
    #[command(flatten)]
    pub guest: GuestOpts,
}

fn parse_seed(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a seed: a decimal or 0x-hex 64-bit number"))
}

/// What one guest's soak adds up to: its last `# phyr-soak` line (docs/REPORT.md), printed at
/// the end, every two seconds and whenever a byte was found corrupted or an outcome wrong, so
/// a guest whose QEMU was killed still reports every corruption it saw.
pub fn tally(serial: &str) -> Option<SoakLine> {
    phyr_report::parse_log(serial).soak.last().copied()
}

/// `soak`: returns the exit code (0: nothing corrupted, every outcome allowed, the cross-check
/// clean, both guests and the device ended as planned).
pub fn run(cache: &Cache, a: SoakArgs) -> Result<i32> {
    if a.minutes == 0 {
        anyhow::bail!("--minutes 0: a soak needs at least a minute");
    }
    let recipe = Recipe::load(&a.recipe, &a.guest.recipes_dir())?;
    if recipe.endpoints < 2 {
        anyhow::bail!(
            "recipe {} has {} endpoint(s); the soak mixes peer-to-peer lists and needs two (try --recipe default)",
            recipe.name,
            recipe.endpoints
        );
    }
    rundir::check_future_socket_paths(&a.guest.runs_dir, Some("soak"), recipe.endpoints)?;
    let seed = a.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let spec = prepare::kernel_spec(&a.guest.sources)?;
    let parts = prepare::prepare(cache, &a.guest, true, &[spec], &[], false)?
        .pop()
        .context("no kernel prepared")?;
    let run = RunDir::create(&a.guest.runs_dir)?.session(Some("soak"))?;
    let total = a.minutes * 60;
    // Guest 1 soaks for about half the time, then its QEMU dies; guest 2 takes the rest.
    let first = (total * 9 / 20).max(20);
    let second = total.saturating_sub(first).max(20);
    say(format!(
        "soak: seed {seed}, recipe {} ({}), {}, {} min: guest 1 for {first} s then its QEMU killed with \
         SIGKILL, guest 2 against the same phyr-device for {second} s; run directory {}",
        recipe.name,
        recipe.description,
        parts.kernel.description,
        a.minutes,
        run.path.display()
    ));

    // Guest 1 asks for the whole time; its QEMU is killed before it ends.
    let cmd1 = format!("phyr soak --seed {seed} --seconds {total} --guest 1");
    let mut l1 = boot::launch(&parts, &run, &boot_options(&a, &recipe, cmd1, total))?;
    let mut dl = l1
        .device
        .take()
        .context("the soak needs phyr-device (not --no-device)")?;
    // About 0.4 GiB of records per endpoint and minute: room for all of it, so the cross-check
    // sees every command.
    dl.args
        .extend(["--trace-max".into(), format!("{}M", 1024 * a.minutes.max(1))]);
    let mut device = DeviceProc::start(&dl, &run)?;
    l1.kill_after_ready = Some(Duration::from_secs(first));
    let o1 = guest_run::run_with_device(l1, &mut device)?;
    if !matches!(o1.ending, Ending::QemuKilled(_)) {
        // Guest 1 ended on its own: a side died, the guest panicked, or `phyr soak` stopped.
        device.stop(&run);
        guest_run::report_ending(&run, &o1);
        let serial = std::fs::read_to_string(run.file("serial.log")).unwrap_or_default();
        say(format!(
            "FAILED: guest 1 ended before its QEMU was to be killed ({first} s after READY){}",
            guest_cmd_exit(&serial).map_or(String::new(), |st| format!("; `phyr soak` exited with status {st}"))
        ));
        return Ok(stopped(&run, 1, seed, a.minutes));
    }
    say_guest(1, &o1);
    keep_as(&run, "guest1");

    let cmd2 = format!("phyr soak --seed {seed} --seconds {second} --guest 2");
    let l2 = boot::launch(&parts, &run, &boot_options(&a, &recipe, cmd2, second))?;
    let o2 = guest_run::run_with_device(l2, &mut device)?;
    let device_end = device.stop(&run);
    let panicked = std::fs::read_to_string(run.file("serial.log")).is_ok_and(|s| s.contains("Kernel panic"));
    if o2.ending != Ending::PoweredOff || panicked {
        guest_run::report_ending(&run, &o2);
        return Ok(stopped(&run, 2, seed, a.minutes));
    }
    say_guest(2, &o2);
    // The device served both guests; asked to stop, it must end cleanly (closing its traces).
    let device_bad = match device_end {
        Some(st) if st.success() => None,
        Some(st) => Some(format!(
            "phyr-device exited with {st} when stopped; see {}",
            run.file("device.log").display()
        )),
        None => Some("phyr-device did not stop on SIGTERM within 3 s and was killed".to_owned()),
    };

    let s1 = std::fs::read_to_string(run.file(crosscheck::GUEST1_CONSOLE)).unwrap_or_default();
    let s2 = std::fs::read_to_string(run.file("serial.log")).unwrap_or_default();
    let c = crosscheck::check(
        &crosscheck::joined_log(&s1, &s2, recipe.endpoints),
        &run.file("trace"),
        &Expected::of(&recipe),
    );
    std::fs::write(run.file("crosscheck.txt"), c.problems.join("\n") + "\n")?;
    say(format!("trace cross-check: {}", c.counts()));
    for p in c.problems.iter().take(10) {
        say(format!("  {p}"));
    }
    let (t1, t2) = (tally(&s1).unwrap_or(none(1, seed)), tally(&s2).unwrap_or(none(2, seed)));
    let commands = t1.commands.saturating_add(t2.commands);
    let faults = t1.faults.saturating_add(t2.faults).saturating_add(1);
    let corrupted = t1.corrupted.saturating_add(t2.corrupted);
    let mut bad = verdict(&s2, &t1, &t2);
    bad.extend(device_bad);
    if !c.problems.is_empty() {
        bad.push(format!(
            "{} cross-check problem(s) (in {})",
            c.problems.len(),
            run.file("crosscheck.txt").display()
        ));
    }
    for b in &bad {
        say(format!("FAILED: {b}; logs in {}", run.path.display()));
    }
    say(format!(
        "soak: 2 guests, 1 QEMU kill; rerun with `just soak --minutes {} --seed {seed}`",
        a.minutes
    ));
    println!("{commands} commands, {faults} faults injected, {corrupted} corrupted bytes (seed {seed})");
    Ok(i32::from(!bad.is_empty()))
}

/// A guest that printed no `# phyr-soak` line: nothing to add up.
fn none(guest: u32, seed: u64) -> SoakLine {
    SoakLine {
        guest,
        seed,
        state: SoakState::Running,
        t: 0,
        commands: 0,
        faults: 0,
        corrupted: 0,
        wrong: 0,
        lost: 0,
        inherited: 0,
    }
}

/// The soak stopped during guest `guest` (a side died, a guest panicked or hung, `phyr soak`
/// failed; what happened was said): what the guests had counted, the seed to replay it, and
/// exit code 1. The logs stay in the run directory.
fn stopped(run: &RunDir, guest: u32, seed: u64, minutes: u64) -> i32 {
    let read = |f: &str| std::fs::read_to_string(run.file(f)).unwrap_or_default();
    let consoles = match guest {
        1 => vec![read("serial.log")],
        _ => vec![read(crosscheck::GUEST1_CONSOLE), read("serial.log")],
    };
    let t: Vec<SoakLine> = consoles.iter().filter_map(|c| tally(c)).collect();
    let sum = |f: fn(&SoakLine) -> u64| t.iter().map(f).sum::<u64>();
    say(format!(
        "soak: stopped during guest {guest}; logs in {}; rerun with `just soak --minutes {minutes} --seed {seed}`",
        run.path.display()
    ));
    println!(
        "{} commands, {} faults injected, {} corrupted bytes (seed {seed})",
        sum(|l| l.commands),
        sum(|l| l.faults) + u64::from(guest > 1),
        sum(|l| l.corrupted)
    );
    1
}

/// The exit status `phyr soak` printed (`=== phyr guest-cmd end: exit N ===`), if it ended.
fn guest_cmd_exit(serial: &str) -> Option<i32> {
    serial.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix("=== phyr guest-cmd end: exit ")?
            .strip_suffix(" ===")?
            .trim()
            .parse()
            .ok()
    })
}

/// Everything that makes a soak whose guests ended as planned fail, besides the cross-check:
/// from guest 2's console `s2` and both guests' last `# phyr-soak` lines (`t1`, `t2`).
fn verdict(s2: &str, t1: &SoakLine, t2: &SoakLine) -> Vec<String> {
    let mut bad = Vec::new();
    if t1.commands == 0 {
        bad.push("guest 1 ran no soak command (no `# phyr-soak` line with commands in serial.guest1.log)".into());
    }
    match (t2.state, guest_cmd_exit(s2)) {
        // A marker cut by a kernel message is no failure; corruption and wrong outcomes
        // (exit status 1) are counted below.
        (SoakState::End, None | Some(0)) => {}
        (SoakState::End, Some(_)) if (t1.corrupted | t2.corrupted | t1.wrong | t2.wrong) > 0 => {}
        (SoakState::End, Some(st)) => bad.push(format!(
            "guest 2's `phyr soak` reached its end but exited with status {st}; see serial.log"
        )),
        (_, st) => bad.push(format!(
            "guest 2 did not reach the end of its soak (no `# phyr-soak ... state=end` line{}); see serial.log",
            st.map_or(String::new(), |s| format!("; `phyr soak` exited with status {s}"))
        )),
    }
    if t2.inherited == 0 {
        bad.push("guest 2 did not check BAR2 as guest 1 left it".into());
    }
    let wrong = t1.wrong.saturating_add(t2.wrong);
    if wrong > 0 {
        bad.push(format!(
            "{wrong} command(s) ended in a way the soak does not allow (`# soak wrong` lines)"
        ));
    }
    let corrupted = t1.corrupted.saturating_add(t2.corrupted);
    if corrupted > 0 {
        bad.push(format!("{corrupted} corrupted byte(s) (`# soak corrupt` lines)"));
    }
    bad
}

fn boot_options<'a>(a: &'a SoakArgs, recipe: &'a Recipe, cmd: String, seconds: u64) -> BootOptions<'a> {
    BootOptions {
        recipe,
        mode: GuestMode::Command(cmd),
        // The soak prints every command; the terminal gets its own lines (worth_echoing).
        console: Console::Summary,
        no_device: false,
        append: a.guest.append.as_deref(),
        bar2_size: a.guest.bar2_size,
        trace_crc: !a.guest.no_trace_crc,
        // Boot, the soak, its last sweep, and slack for TCG on a busy machine.
        timeout: Some(Duration::from_secs(a.guest.timeout.unwrap_or(seconds + 300))),
        modules: &a.guest.modules,
        share: None,
        share_probe: None,
    }
}

fn say_guest(n: u32, o: &Outcome) {
    let how = match o.ending {
        Ending::QemuKilled(after) => format!("its QEMU killed with SIGKILL {:.1} s after READY", after.as_secs_f64()),
        _ => format!("powered off after {:.1} s", o.elapsed.as_secs_f64()),
    };
    say(format!("soak: guest {n} {how}; the device kept serving"));
}

/// Renames guest 1's console and QEMU logs so guest 2's do not overwrite them.
fn keep_as(run: &RunDir, tag: &str) {
    for f in ["serial.log", "qemu.log", "qemu.cmdline"] {
        let from = run.file(f);
        let (stem, ext) = f.split_once('.').unwrap_or((f, "log"));
        let to = run.file(&format!("{stem}.{tag}.{ext}"));
        if Path::new(&from).exists() {
            let _ = std::fs::rename(&from, &to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(state: SoakState, commands: u64, corrupted: u64) -> String {
        SoakLine {
            guest: 1,
            seed: 7,
            state,
            t: 3,
            commands,
            faults: 1,
            corrupted,
            wrong: 0,
            lost: 0,
            inherited: 0,
        }
        .to_string()
    }

    #[test]
    fn a_guest_counts_from_its_last_soak_line() {
        let log = format!(
            "{}\n# soak corrupt bytes=3: first at host0+0x10\n{}\nphyr-init: powering off\n",
            line(SoakState::Running, 5, 0),
            line(SoakState::End, 9, 3)
        );
        let t = tally(&log).unwrap();
        assert_eq!((t.commands, t.corrupted, t.state), (9, 3, SoakState::End));
    }

    #[test]
    fn a_killed_guest_counts_from_its_last_running_line() {
        let log = format!(
            "{}\n{}\n",
            line(SoakState::Running, 5, 0),
            line(SoakState::Running, 8, 4)
        );
        let t = tally(&log).unwrap();
        assert_eq!((t.commands, t.corrupted, t.state), (8, 4, SoakState::Running));
    }

    #[test]
    fn a_log_without_soak_lines_counts_nothing() {
        assert_eq!(tally("phyr-init: READY\n# soak progress commands=9\n"), None);
    }

    #[test]
    fn a_malformed_soak_line_is_not_counted() {
        assert_eq!(tally("# phyr-soak guest=1 seed=0x7 state=end commands=x\n"), None);
    }

    #[test]
    fn the_joined_log_resets_every_endpoint_between_the_guests() {
        let j = crosscheck::joined_log("a\n", "b\n", 2);
        assert_eq!(j, "a\n# phyr-reset ep=0 kind=vfio\n# phyr-reset ep=1 kind=vfio\nb\n");
    }

    /// A soak that went as planned: guest 1 killed mid-run, guest 2 to its end (its console,
    /// both guests' last lines).
    fn planned() -> (String, SoakLine, SoakLine) {
        let t1 = tally(&line(SoakState::Running, 50, 0)).unwrap();
        let mut t2 = tally(&line(SoakState::End, 60, 0)).unwrap();
        t2.inherited = 1 << 20;
        let s2 = format!("{t2}\n=== phyr guest-cmd end: exit 0 ===\n");
        (s2, t1, t2)
    }

    #[test]
    fn a_soak_as_planned_passes() {
        let (s2, t1, t2) = planned();
        assert_eq!(verdict(&s2, &t1, &t2), Vec::<String>::new());
        // guest 2's end marker cut by a kernel message: its state=end line is what counts.
        assert!(verdict(&t2.to_string(), &t1, &t2).is_empty());
    }

    #[test]
    fn guest_1_without_soak_lines_fails() {
        let (s2, _, t2) = planned();
        let bad = verdict(&s2, &none(1, 7), &t2);
        assert!(bad.iter().any(|b| b.contains("guest 1 ran no soak command")), "{bad:?}");
    }

    #[test]
    fn guest_2_stopping_early_or_exiting_non_zero_fails() {
        let (_, t1, mut t2) = planned();
        let s2 = "=== phyr guest-cmd end: exit 1 ===\n";
        t2.state = SoakState::Running;
        let bad = verdict(s2, &t1, &t2);
        assert!(
            bad.iter()
                .any(|b| b.contains("did not reach the end") && b.contains("status 1")),
            "{bad:?}"
        );
        t2.state = SoakState::End;
        let bad = verdict(s2, &t1, &t2);
        assert!(bad.iter().any(|b| b.contains("exited with status 1")), "{bad:?}");
    }

    #[test]
    fn corruption_wrong_outcomes_and_an_unchecked_bar2_fail() {
        let (s2, mut t1, mut t2) = planned();
        t1.corrupted = 3;
        t2.wrong = 1;
        t2.inherited = 0;
        let bad = verdict(&s2, &t1, &t2);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad.iter().any(|b| b.contains("3 corrupted byte(s)")));
        assert!(bad.iter().any(|b| b.contains("1 command(s) ended")));
        assert!(bad.iter().any(|b| b.contains("did not check BAR2")));
    }

    #[test]
    fn exit_markers_parse_or_are_ignored() {
        assert_eq!(guest_cmd_exit("x\n=== phyr guest-cmd end: exit 0 ===\n"), Some(0));
        assert_eq!(guest_cmd_exit("=== phyr guest-cmd end: exit 137 ===\r\n"), Some(137));
        assert_eq!(
            guest_cmd_exit("=== phyr guest-cmd end: exit [   54.3] DMAR ===\n"),
            None
        );
        assert_eq!(guest_cmd_exit("=== phyr guest-cmd end: exit 0"), None);
        assert_eq!(guest_cmd_exit(""), None);
    }

    #[test]
    fn a_killed_guests_console_is_read_up_to_its_last_soak_line() {
        let soak = line(SoakState::Running, 5, 0);
        // Killed while printing a command's range lines, in the middle of a line.
        let first = format!(
            "x\n{soak}\n# phyr-cmd ep=0 q=0 id=9 op=COPY ... src=@3/9\n# phyr-ranges 3 1/2 iova:0x1000+0x10 bu"
        );
        let j = crosscheck::joined_log(&first, "b\n", 1);
        assert_eq!(j, format!("x\n{soak}\n# phyr-reset ep=0 kind=vfio\nb\n"));
        // A soak line a kernel message cut is no place to cut: the whole one before it is.
        let cut = format!("{soak}\n{}[   72.643285] DMAR: x\n", &soak[..20]);
        let j = crosscheck::joined_log(&format!("{cut}rest of it\n"), "b\n", 1);
        assert_eq!(j, format!("{soak}\n# phyr-reset ep=0 kind=vfio\nb\n"));
        // Without a soak line: up to the last whole line.
        assert_eq!(crosscheck::joined_log("a\nhalf", "b\n", 0), "a\nb\n");
    }

    #[test]
    fn seeds_parse_as_decimal_or_hex_and_nothing_else() {
        assert_eq!(parse_seed("42"), Ok(42));
        assert_eq!(parse_seed("0x2a"), Ok(42));
        assert!(parse_seed("-1").is_err());
        assert!(parse_seed("0xzz").is_err());
        assert!(parse_seed("").is_err());
    }
}
