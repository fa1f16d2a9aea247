//! `phyr-harness test`: the guest suite under each recipe, TAP and JUnit in results/, and
//! the final `N passed, N failed` line.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::boot::{self, BootOptions};
use crate::cache::Cache;
use crate::initramfs::GuestMode;
use crate::provision::say;
use crate::recipe::Recipe;
use crate::rundir::RunDir;
use crate::session::Console;
use crate::{junit, tap, GuestOpts};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Recipes to run the suite under, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "default,anon-ram")]
    recipes: Vec<String>,
    /// Failures already counted elsewhere (e.g. by `cargo test`), added to the final line.
    #[arg(long, default_value_t = 0)]
    extra_failed: usize,
    /// Passes already counted elsewhere, added to the final line.
    #[arg(long, default_value_t = 0)]
    extra_passed: usize,
    /// Run `cargo test --workspace` first and count its tests in the totals and junit.xml.
    #[arg(long)]
    cargo: bool,
    /// Extra arguments for `cargo test` (with --cargo), e.g. `--release`.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true, num_args = 1.., value_delimiter = ' ')]
    cargo_args: Vec<String>,
    /// Skip the cross-check of the device's DMA traces against the driver's `# phyr-cmd` lines.
    #[arg(long)]
    no_crosscheck: bool,
    /// Echo the whole guest console (default: init messages, TAP results and kernel trouble).
    #[arg(long, short)]
    verbose: bool,
    #[command(flatten)]
    guest: GuestOpts,
}

/// Default per-recipe limit: a TCG boot plus the suite, with margin.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

pub fn run(cache: &Cache, a: TestArgs) -> Result<i32> {
    let dir = crate::recipes_dir(&a.guest);
    let recipes: Vec<Recipe> = a
        .recipes
        .iter()
        .map(|r| Recipe::load(r, &dir))
        .collect::<Result<_, _>>()?;
    for r in &recipes {
        crate::rundir::check_future_socket_paths(&a.guest.runs_dir, Some(&r.name), r.endpoints)?;
    }
    let parts = crate::prepare(cache, &a.guest, true)?;
    let top = RunDir::create(&a.guest.runs_dir)?;
    let results = top.session(None)?.file("results");
    let _ = std::fs::remove_dir(top.file("sock"));
    let _ = std::fs::remove_dir(top.file("trace"));
    say(format!("run directory: {}", top.path.display()));
    let (mut passed, mut failed, mut skipped) = (a.extra_passed, a.extra_failed, 0);
    let mut suites = Vec::new();
    if a.cargo {
        let mut runs = vec![("cargo", "cargo test --workspace", "cargo-test.log")];
        if !crate::cargo_test::picks_a_profile(&a.cargo_args) {
            let what = "cargo test --release (the device's kernels as they ship)";
            runs.push(("cargo-release", what, "cargo-test-release.log"));
        }
        for (suite, what, log) in runs {
            say(format!("{what} ..."));
            let t = Instant::now();
            let log = results.join(log);
            let report = if suite == "cargo" {
                crate::cargo_test::run(&log, &a.cargo_args, &parts.qemu)?
            } else {
                crate::cargo_test::run_release_kernels(&log)?
            };
            say(format!(
                "{what}: {} passed, {} failed, {} ignored ({:.0} s); log in {}",
                report.passed(),
                report.failed(),
                report.skipped(),
                t.elapsed().as_secs_f64(),
                log.display()
            ));
            for p in &report.problems {
                say(format!("  problem: {p}"));
            }
            for t in report.tests.iter().filter(|t| !t.ok) {
                say(format!("  FAILED: {}", t.name));
            }
            passed += report.passed();
            failed += report.failed();
            skipped += report.skipped();
            suites.push(junit::suite_xml(suite, &report, t.elapsed().as_secs_f64()));
        }
    }
    for r in &recipes {
        let run = top.session(Some(&r.name))?;
        say(format!(
            "suite under recipe {} ({}) in {}",
            r.name,
            r.description,
            run.path.display()
        ));
        let t = Instant::now();
        let opts = BootOptions {
            recipe: r,
            mode: GuestMode::Suite,
            console: if a.verbose { Console::Captured } else { Console::Summary },
            no_device: a.guest.no_device,
            append: a.guest.append.as_deref(),
            bar2_size: a.guest.bar2_size,
            trace_crc: !a.guest.no_trace_crc,
            timeout: Some(a.guest.timeout.map(Duration::from_secs).unwrap_or(DEFAULT_TIMEOUT)),
        };
        let outcome = boot::boot(&parts, &run, &opts);
        let mut report = tap::parse(&std::fs::read_to_string(run.file("serial.log")).unwrap_or_default());
        match &outcome {
            Ok(o) => {
                if crate::report_ending(&run, o) != 0 && report.run_failure().is_none() && report.missing() == 0 {
                    report.problems.push(format!(
                        "the session ended badly: {:?}; see {}",
                        o.ending,
                        run.path.display()
                    ));
                }
            }
            Err(e) => {
                say(format!("recipe {}: {e:#}", r.name));
                report.problems.insert(0, format!("could not boot: {e:#}"));
            }
        }
        if !a.no_crosscheck && !a.guest.no_device && report.began {
            crosscheck(&run, &mut report)?;
        }
        std::fs::write(results.join(format!("{}.tap", r.name)), report.tap.join("\n") + "\n")?;
        std::fs::write(run.file("results/suite.tap"), report.tap.join("\n") + "\n")?;
        suites.push(junit::suite_xml(&r.name, &report, t.elapsed().as_secs_f64()));
        say(format!(
            "recipe {}: {} passed, {} failed, {} skipped",
            r.name,
            report.passed(),
            report.failed(),
            report.skipped()
        ));
        for p in &report.problems {
            say(format!("  problem: {p}"));
        }
        passed += report.passed();
        skipped += report.skipped();
        failed += report.failed();
        if crate::sys::pending_signal().is_some() {
            break;
        }
    }
    std::fs::write(results.join("junit.xml"), junit::document(&suites))?;
    say(format!(
        "results: {} ({skipped} skipped tests not counted)",
        results.display()
    ));
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { 0 } else { 1 })
}

/// Adds the trace cross-check as one more test of the recipe's suite (see crosscheck.rs).
fn crosscheck(run: &RunDir, report: &mut tap::SuiteReport) -> Result<()> {
    let serial = std::fs::read_to_string(run.file("serial.log")).unwrap_or_default();
    let c = crate::crosscheck::check(&serial, &run.file("trace"));
    let mut text = format!("{}\n", c.counts());
    for p in &c.problems {
        text.push_str(p);
        text.push('\n');
    }
    std::fs::write(run.file("results/crosscheck.txt"), &text)?;
    if c.problems.is_empty() {
        say(format!(
            "trace cross-check: {} commands match the device's DMA records ({} with their data CRC)",
            c.commands_checked, c.crcs_compared
        ));
    } else {
        say(format!(
            "trace cross-check: {} problem(s) in {} commands; see {}",
            c.problems.len(),
            c.commands_checked,
            run.file("results/crosscheck.txt").display()
        ));
        for p in c.problems.iter().take(5) {
            say(format!("  {p}"));
        }
    }
    let ok = c.problems.is_empty();
    report.tap.push(format!(
        "{} {} trace-crosscheck",
        if ok { "ok" } else { "not ok" },
        report.tests.len() + 1
    ));
    report.tests.push(tap::TestResult {
        number: report.tests.len() as u32 + 1,
        name: "trace-crosscheck".into(),
        ok,
        skipped: false,
        directive: c.problems.first().cloned().unwrap_or_default(),
        diagnostics: c.problems.iter().take(50).cloned().collect(),
    });
    Ok(())
}
