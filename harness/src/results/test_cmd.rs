//! `phyr-harness test`: the guest suite on a matrix of kernels and recipes (every recipe on
//! the first kernel, the first recipe on the others), TAP and JUnit in results/, and the final
//! `N passed, N failed` line. Each boot also loads the harness's test module (built for that
//! kernel) and round-trips a file through `--share`; both count as tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::image::initramfs::GuestMode;
use crate::image::share::Share;
use crate::kernel::spec::KernelSpec;
use crate::launch::boot::{self, BootOptions, Parts};
use crate::launch::guest_run::Console;
use crate::launch::options::GuestOpts;
use crate::launch::recipe::Recipe;
use crate::launch::rundir::RunDir;
use crate::progress::say;
use crate::provision::cache::Cache;
use crate::results::{junit, tap};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Recipes to run the suite under, comma-separated (all on the first kernel, the first one
    /// on the other kernels).
    #[arg(long, value_delimiter = ',', default_value = "default,anon-ram")]
    recipes: Vec<String>,
    /// Kernels to run the suite on, comma-separated (names, versions, bzImages or build
    /// directories, as --kernel takes them) [default: backports,stable]
    #[arg(long, value_delimiter = ',', value_name = "KERNELS", conflicts_with = "kernel")]
    kernels: Vec<String>,
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

/// The harness's own test module (harness/tests/kmod), built and loaded on every kernel.
fn test_module_dir() -> PathBuf {
    let here = PathBuf::from("harness/tests/kmod");
    if here.join("Kbuild").is_file() {
        return here;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kmod"))
}

/// The kernels of the matrix: `--kernel`, else `--kernels`, else backports and stable.
fn kernel_specs(a: &TestArgs) -> Result<Vec<KernelSpec>> {
    if a.guest.sources.kernel.is_some() {
        return Ok(vec![crate::launch::prepare::kernel_spec(&a.guest.sources)?]);
    }
    if a.kernels.is_empty() {
        return Ok(crate::kernel::spec::Channel::ALL
            .into_iter()
            .map(KernelSpec::Channel)
            .collect());
    }
    let specs = a
        .kernels
        .iter()
        .map(|k| KernelSpec::parse(k))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(specs)
}

/// (kernel index, recipe index) pairs: every recipe on kernel 0, recipe 0 on the others.
pub fn matrix(kernels: usize, recipes: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for r in 0..recipes {
        for k in 0..kernels {
            if r == 0 || k == 0 {
                v.push((k, r));
            }
        }
    }
    v
}

/// The session directory name: the recipe on the first kernel, `recipe@label` on the others.
pub fn session_name(recipe: &str, kernel_label: &str, first_kernel: bool) -> String {
    if first_kernel {
        recipe.to_owned()
    } else {
        format!("{recipe}@{kernel_label}")
    }
}

pub fn run(cache: &Cache, a: TestArgs) -> Result<i32> {
    let dir = a.guest.recipes_dir();
    let recipes: Vec<Recipe> = a
        .recipes
        .iter()
        .map(|r| Recipe::load(r, &dir))
        .collect::<Result<_, _>>()?;
    if recipes.is_empty() {
        bail!("--recipes names no recipe");
    }
    let specs = kernel_specs(&a)?;
    for r in &recipes {
        // Other kernels' sessions are `recipe@label`; 40 bytes covers a long release as label.
        let longest = format!("{}@{}", r.name, "x".repeat(40));
        let name = if specs.len() > 1 { &longest } else { &r.name };
        crate::launch::rundir::check_future_socket_paths(&a.guest.runs_dir, Some(name), r.endpoints)?;
    }
    let all_parts = crate::launch::prepare::prepare(cache, &a.guest, true, &specs, &[test_module_dir()], true)?;
    let top = RunDir::create(&a.guest.runs_dir)?;
    let results = top.session(None)?.file("results");
    let _ = std::fs::remove_dir(top.file("sock"));
    let _ = std::fs::remove_dir(top.file("trace"));
    say(format!("run directory: {}", top.path.display()));
    let (mut passed, mut failed, mut skipped) = (a.extra_passed, a.extra_failed, 0);
    let mut suites = Vec::new();
    if a.cargo {
        let mut runs = vec![("cargo", "cargo test --workspace", "cargo-test.log")];
        if !crate::results::cargo_test::picks_a_profile(&a.cargo_args) {
            let what = "cargo test --release (the device's kernels as they ship)";
            runs.push(("cargo-release", what, "cargo-test-release.log"));
        }
        for (suite, what, log) in runs {
            say(format!("{what} ..."));
            let t = Instant::now();
            let log = results.join(log);
            let report = if suite == "cargo" {
                crate::results::cargo_test::run(&log, &a.cargo_args, &all_parts[0].qemu)?
            } else {
                crate::results::cargo_test::run_release_kernels(&log)?
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
            suites.push(junit::suite_xml(suite, &[], &report, t.elapsed().as_secs_f64()));
        }
    }
    for (ki, ri) in matrix(all_parts.len(), recipes.len()) {
        let (parts, r) = (&all_parts[ki], &recipes[ri]);
        let k = &parts.kernel;
        let name = session_name(&r.name, &k.label, ki == 0);
        let run = top.session(Some(&name))?;
        let on = format!("{} on kernel {} ({})", r.name, k.release, k.label);
        say(format!(
            "suite under recipe {on}: {} in {}",
            r.description,
            run.path.display()
        ));
        let t = Instant::now();
        let probe = share_probe(parts, &run)?;
        let opts = BootOptions {
            recipe: r,
            mode: GuestMode::Suite,
            console: if a.verbose { Console::Captured } else { Console::Summary },
            no_device: a.guest.no_device,
            append: a.guest.append.as_deref(),
            bar2_size: a.guest.bar2_size,
            trace_crc: !a.guest.no_trace_crc,
            timeout: Some(a.guest.timeout.map(Duration::from_secs).unwrap_or(DEFAULT_TIMEOUT)),
            modules: &a.guest.modules,
            share: probe.as_ref().map(|p| &p.share),
            share_probe: probe.as_ref().map(|_| PROBE),
        };
        let outcome = boot::boot(parts, &run, &opts);
        let serial = std::fs::read_to_string(run.file("serial.log")).unwrap_or_default();
        let mut report = tap::parse(&serial);
        match &outcome {
            Ok(o) => {
                if crate::launch::guest_run::report_ending(&run, o) != 0
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
                say(format!("recipe {on}: {e:#}"));
                report.problems.insert(0, format!("could not boot: {e:#}"));
            }
        }
        if !a.no_crosscheck && !a.guest.no_device && report.began {
            crosscheck(&run, &mut report)?;
        }
        if !parts.build_problems.is_empty() {
            // A module that did not build for this kernel: booted without it, counted here.
            add_test(&mut report, "module-build", Some(parts.build_problems.join("; ")));
        }
        if report.began {
            add_module_check(parts, &serial, &mut report);
            if let Some(p) = &probe {
                add_share_check(p, &k.release, &mut report);
            }
        }
        std::fs::write(results.join(format!("{name}.tap")), report.tap.join("\n") + "\n")?;
        std::fs::write(run.file("results/suite.tap"), report.tap.join("\n") + "\n")?;
        let props = [
            ("kernel", k.release.as_str()),
            ("kernel-label", k.label.as_str()),
            ("recipe", r.name.as_str()),
        ];
        suites.push(junit::suite_xml(
            &format!("{}@{}", r.name, k.release),
            &props,
            &report,
            t.elapsed().as_secs_f64(),
        ));
        say(format!(
            "recipe {on}: {} passed, {} failed, {} skipped",
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

/// Tests the harness adds to a suite's results (the guest's own are printed as TAP).
const HARNESS_TESTS: &[&str] = &["module-build", "module-load", "host-share"];

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
fn add_test(report: &mut tap::SuiteReport, name: &str, problem: Option<String>) {
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

/// Adds the trace cross-check as one more test of the recipe's suite (see crosscheck.rs).
fn crosscheck(run: &RunDir, report: &mut tap::SuiteReport) -> Result<()> {
    let serial = std::fs::read_to_string(run.file("serial.log")).unwrap_or_default();
    let c = crate::results::crosscheck::check(&serial, &run.file("trace"));
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
    fn matrix_runs_every_recipe_on_the_first_kernel_only() {
        assert_eq!(matrix(2, 2), vec![(0, 0), (1, 0), (0, 1)]);
        assert_eq!(matrix(1, 3), vec![(0, 0), (0, 1), (0, 2)]);
        assert_eq!(matrix(3, 1), vec![(0, 0), (1, 0), (2, 0)]);
        assert!(matrix(0, 2).is_empty());
    }

    #[test]
    fn other_kernels_get_their_own_session_names() {
        assert_eq!(session_name("default", "backports", true), "default");
        assert_eq!(session_name("default", "stable", false), "default@stable");
    }

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
}
