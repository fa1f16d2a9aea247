//! One suite session of `phyr-harness test`: boot a guest with one recipe on one kernel, run
//! the userspace suite (`phyr suite`) or the kernel-path suite (`phyr ksuite`), read its TAP,
//! cross-check the device's traces against the driver's report lines, add the harness's own
//! tests (module-build, module-load, host-share, trace-crosscheck) and write the session's
//! results.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::image::initramfs::GuestMode;
use crate::image::share::Share;
use crate::launch::boot::{self, BootOptions, Parts};
use crate::launch::guest_run::Console;
use crate::launch::options::GuestOpts;
use crate::launch::recipe::Recipe;
use crate::launch::rundir::RunDir;
use crate::progress::say;
use crate::results::expected::Expected;
use crate::results::{junit, tap};

/// Which suite a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// `phyr suite`: the userspace VFIO driver.
    User,
    /// `phyr ksuite --bind`: the kernel path through phyr.ko.
    Kernel,
}

impl Suite {
    /// How the progress lines name it.
    pub fn title(self) -> &'static str {
        match self {
            Self::User => "suite",
            Self::Kernel => "kernel suite",
        }
    }

    /// The session directory's name for `recipe`: the kernel suite's get a `ksuite-` prefix.
    pub fn dir_name(self, recipe: &str) -> String {
        match self {
            Self::User => recipe.to_owned(),
            Self::Kernel => format!("ksuite-{recipe}"),
        }
    }

    fn mode(self) -> GuestMode {
        match self {
            Self::User => GuestMode::Suite,
            Self::Kernel => GuestMode::KernelSuite,
        }
    }
}

/// What a session leaves for the totals.
pub struct SessionResult {
    pub report: tap::SuiteReport,
    /// The session's `<testsuite>` element.
    pub junit: String,
}

/// Everything one session needs besides the kernel and recipe.
pub struct SessionPlan<'a> {
    pub suite: Suite,
    pub guest: &'a GuestOpts,
    pub verbose: bool,
    pub crosscheck: bool,
    /// Round-trip a file through `--share` (once per kernel is enough).
    pub share_probe: bool,
}

/// Default per-session limit: a TCG boot plus the suite, with margin.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs one session in `run` and writes its TAP (`results_dir/<name>.tap` and
/// `run/results/suite.tap`) and cross-check.
pub fn run(
    plan: &SessionPlan<'_>,
    parts: &Parts,
    r: &Recipe,
    run: &RunDir,
    name: &str,
    results_dir: &Path,
) -> Result<SessionResult> {
    let k = &parts.kernel;
    let on = format!("{} on kernel {} ({})", r.name, k.release, k.label);
    let title = plan.suite.title();
    say(format!(
        "{title} under recipe {on}: {} in {}",
        r.description,
        run.path.display()
    ));
    let t = Instant::now();
    let probe = if plan.share_probe {
        share_probe(parts, run)?
    } else {
        None
    };
    let g = plan.guest;
    let opts = BootOptions {
        recipe: r,
        mode: plan.suite.mode(),
        console: if plan.verbose {
            Console::Captured
        } else {
            Console::Summary
        },
        no_device: g.no_device,
        append: g.append.as_deref(),
        bar2_size: g.bar2_size,
        trace_crc: !g.no_trace_crc,
        timeout: Some(g.timeout.map(Duration::from_secs).unwrap_or(DEFAULT_TIMEOUT)),
        modules: &g.modules,
        share: probe.as_ref().map(|p| &p.share),
        share_probe: probe.as_ref().map(|_| PROBE),
    };
    let outcome = boot::boot(parts, run, &opts);
    let serial = std::fs::read_to_string(run.file("serial.log")).unwrap_or_default();
    let mut report = tap::parse(&serial);
    match &outcome {
        Ok(o) => {
            if crate::launch::guest_run::report_ending(run, o) != 0
                && report.run_failure().is_none()
                && report.missing() == 0
            {
                report.problems.push(format!(
                    "the session ended badly: {:?}; see {}",
                    o.ending,
                    run.path.display()
                ));
            }
        }
        Err(e) => {
            say(format!("{title} under recipe {on}: {e:#}"));
            report.problems.insert(0, format!("could not boot: {e:#}"));
        }
    }
    if plan.crosscheck && !g.no_device && report.began {
        crosscheck(run, r, &serial, &mut report)?;
    }
    if !parts.build_problems.is_empty() {
        // A module that did not build for this kernel: booted without it, counted here.
        add_test(&mut report, "module-build", Some(parts.build_problems.join("; ")));
    }
    if let Some(w) = &parts.driver_warnings {
        // The kernel driver is kept `make W=1` clean on every kernel the harness builds it for.
        let problem = w
            .first()
            .map(|first| format!("{} warning(s) under W=1, the first: {first}", w.len()));
        add_test(&mut report, "kernel-driver-w1", problem);
    }
    if report.began {
        add_module_check(parts, &serial, &mut report);
        if let Some(p) = &probe {
            add_share_check(p, &k.release, &mut report);
        }
    }
    let tap_text = report.tap.join("\n") + "\n";
    std::fs::write(results_dir.join(format!("{name}.tap")), &tap_text)?;
    std::fs::write(run.file("results/suite.tap"), &tap_text)?;
    let suite_name = match plan.suite {
        Suite::User => "suite",
        Suite::Kernel => "ksuite",
    };
    let props = [
        ("suite", suite_name),
        ("kernel", k.release.as_str()),
        ("kernel-label", k.label.as_str()),
        ("recipe", r.name.as_str()),
    ];
    let junit = junit::suite_xml(
        &format!("{}@{}", plan.suite.dir_name(&r.name), k.release),
        &props,
        &report,
        t.elapsed().as_secs_f64(),
    );
    say(format!(
        "{title} under recipe {on}: {} passed, {} failed, {} skipped",
        report.passed(),
        report.failed(),
        report.skipped()
    ));
    for p in &report.problems {
        say(format!("  problem: {p}"));
    }
    for t in report
        .tests
        .iter()
        .filter(|t| !t.ok && HARNESS_TESTS.contains(&t.name.as_str()))
    {
        say(format!("  FAILED: {}: {}", t.name, t.directive));
    }
    Ok(SessionResult { report, junit })
}

/// Tests the harness adds to a suite's results (the guest's own are printed as TAP).
const HARNESS_TESTS: &[&str] = &["module-build", "kernel-driver-w1", "module-load", "host-share"];

/// The share probe's file stem in the session's `share/` directory.
const PROBE: &str = "probe";

/// A session's `--share` check: the directory and the token the guest must echo back.
struct SharePlan {
    share: Share,
    token: String,
}

/// Shares `RUN/share` when QEMU and the kernel can (9p over virtio), with a fresh token in
/// `probe.in` for the guest to copy into `probe.out`.
fn share_probe(parts: &Parts, run: &RunDir) -> Result<Option<SharePlan>> {
    let config_ok = parts
        .kernel
        .config
        .as_ref()
        .is_some_and(|(_, c)| crate::image::share::missing_config(c).is_empty());
    if !parts.qemu.virtio_9p || !config_ok {
        return Ok(None);
    }
    let dir = run.file("share");
    std::fs::create_dir_all(&dir)?;
    let token = format!(
        "token-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    std::fs::write(dir.join(format!("{PROBE}.in")), &token)?;
    Ok(Some(SharePlan {
        share: Share::new(&dir)?,
        token,
    }))
}

/// Appends a harness-side test to a suite's report (the plan grows with it, so a suite that
/// stopped early still counts its own missing tests).
pub fn add_test(report: &mut tap::SuiteReport, name: &str, problem: Option<String>) {
    if let Some(p) = report.planned.as_mut() {
        *p += 1;
    }
    let n = report.tests.len() + 1;
    report.tap.push(match &problem {
        None => format!("ok {n} {name}"),
        Some(p) => format!("not ok {n} {name} # {p}"),
    });
    report.tests.push(tap::TestResult {
        number: n as u32,
        name: name.into(),
        ok: problem.is_none(),
        skipped: false,
        directive: problem.clone().unwrap_or_default(),
        diagnostics: problem.into_iter().collect(),
    });
}

/// `module-load`: init reported every out-of-tree module loaded.
fn add_module_check(parts: &Parts, serial: &str, report: &mut tap::SuiteReport) {
    if parts.built.is_empty() {
        return;
    }
    let missing: Vec<&str> = parts
        .built
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| !serial.contains(&format!("phyr-init: module {n} loaded")))
        .collect();
    let problem = (!missing.is_empty()).then(|| {
        let why = serial
            .lines()
            .find(|l| l.contains("phyr-init: ERROR: insmod"))
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default();
        format!("not loaded: {}{why}", missing.join(", "))
    });
    add_test(report, "module-load", problem);
}

/// `host-share`: the guest wrote `<release> <token>` into the shared directory.
fn add_share_check(p: &SharePlan, release: &str, report: &mut tap::SuiteReport) {
    let out: &Path = &p.share.dir.join(format!("{PROBE}.out"));
    let want = format!("{release} {}", p.token);
    let problem = match std::fs::read_to_string(out) {
        Ok(got) if got.trim() == want => None,
        Ok(got) => Some(format!("{} holds {:?}, expected {want:?}", out.display(), got.trim())),
        Err(e) => Some(format!("the guest did not write {} ({e})", out.display())),
    };
    add_test(report, "host-share", problem);
}

/// Adds the trace cross-check as one more test of the session (see crosscheck.rs).
fn crosscheck(run: &RunDir, r: &Recipe, serial: &str, report: &mut tap::SuiteReport) -> Result<()> {
    let c = crate::results::crosscheck::check(serial, &run.file("trace"), &Expected::of(r));
    let mut text = format!("{}\n", c.counts());
    for p in &c.problems {
        text.push_str(p);
        text.push('\n');
    }
    std::fs::write(run.file("results/crosscheck.txt"), &text)?;
    say(format!("trace cross-check: {}", c.summary()));
    let k = c.kernel.summary();
    if !k.is_empty() {
        say(format!("  {k}"));
    }
    if !c.problems.is_empty() {
        say(format!("  see {}", run.file("results/crosscheck.txt").display()));
        for p in c.problems.iter().take(5) {
            say(format!("  {p}"));
        }
    }
    add_test(report, "trace-crosscheck", c.problems.first().cloned());
    if let Some(t) = report.tests.last_mut() {
        t.diagnostics = c.problems.iter().take(50).cloned().collect();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_tests_are_numbered_after_the_suite() {
        let mut r = tap::parse("=== phyr suite begin ===\n1..1\nok 1 a\n=== phyr suite end: exit 0 ===\n");
        add_test(&mut r, "module-load", None);
        add_test(&mut r, "host-share", Some("no file".into()));
        assert_eq!(
            r.tap[r.tap.len() - 2..],
            ["ok 2 module-load", "not ok 3 host-share # no file"]
        );
        assert_eq!((r.passed(), r.failed()), (2, 1));
    }

    #[test]
    fn kernel_suite_sessions_have_their_own_directories() {
        assert_eq!(Suite::User.dir_name("default"), "default");
        assert_eq!(Suite::Kernel.dir_name("two-switches"), "ksuite-two-switches");
        assert_eq!(Suite::Kernel.mode(), GuestMode::KernelSuite);
    }
}
