//! `phyr-harness test`: the userspace suite (`phyr suite`) and the kernel-path suite
//! (`phyr ksuite`) on a matrix of kernels and recipes (every recipe on the first kernel, the
//! first recipe on the others), one session each (suite_session.rs), TAP and JUnit in
//! results/, and the final `N passed, N failed` line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::kernel::spec::KernelSpec;
use crate::launch::options::GuestOpts;
use crate::launch::recipe::Recipe;
use crate::launch::rundir::RunDir;
use crate::progress::say;
use crate::provision::cache::Cache;
use crate::results::junit;
use crate::results::suite_session::{self, SessionPlan, Suite};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Recipes to run the userspace suite under, comma-separated (all on the first kernel, the
    /// first one on the other kernels).
    #[arg(long, value_delimiter = ',', default_value = "default,anon-ram")]
    recipes: Vec<String>,
    /// Recipes to run the kernel-path suite (`phyr ksuite`, through phyr.ko) under,
    /// comma-separated (all on the first kernel, the first one on the other kernels); `none`
    /// runs no kernel suite.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "default,two-switches,passthrough,root-ports-epyc,acs-redirect,bar2-8g"
    )]
    ksuite_recipes: Vec<String>,
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
    let load = |names: &[String]| -> Result<Vec<Recipe>> {
        names
            .iter()
            .filter(|n| !n.is_empty() && n.as_str() != "none")
            .map(|r| Recipe::load(r, &dir).map_err(Into::into))
            .collect()
    };
    let recipes = load(&a.recipes)?;
    let krecipes = load(&a.ksuite_recipes)?;
    if recipes.is_empty() && krecipes.is_empty() {
        bail!("--recipes and --ksuite-recipes name no recipe");
    }
    let specs = kernel_specs(&a)?;
    let sessions: Vec<(Suite, &Recipe)> = recipes
        .iter()
        .map(|r| (Suite::User, r))
        .chain(krecipes.iter().map(|r| (Suite::Kernel, r)))
        .collect();
    // Other kernels' sessions are `name@label`: a channel's label is its name, 40 bytes cover
    // a long release.
    let label = specs
        .iter()
        .skip(1)
        .map(|s| match s {
            KernelSpec::Channel(c) => c.name().len(),
            _ => 40,
        })
        .max();
    for (suite, r) in &sessions {
        let name = suite.dir_name(&r.name);
        let name = match label {
            Some(n) => format!("{name}@{}", "x".repeat(n)),
            None => name,
        };
        crate::launch::rundir::check_future_socket_paths(&a.guest.runs_dir, Some(&name), r.endpoints)?;
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
        let (p, f, s) = run_cargo(&a, &all_parts[0].qemu, &results, &mut suites)?;
        (passed, failed, skipped) = (passed + p, failed + f, skipped + s);
    }
    let plan = |suite| SessionPlan {
        suite,
        guest: &a.guest,
        verbose: a.verbose,
        crosscheck: !a.no_crosscheck,
        // The share is the same on every recipe: once per kernel, in the userspace sessions.
        share_probe: suite == Suite::User,
    };
    let matrices = [
        (Suite::User, &recipes, matrix(all_parts.len(), recipes.len())),
        (Suite::Kernel, &krecipes, matrix(all_parts.len(), krecipes.len())),
    ];
    'all: for (suite, recipes, pairs) in matrices {
        for (ki, ri) in pairs {
            let (parts, r) = (&all_parts[ki], &recipes[ri]);
            let name = session_name(&suite.dir_name(&r.name), &parts.kernel.label, ki == 0);
            let run = top.session(Some(&name))?;
            let s = suite_session::run(&plan(suite), parts, r, &run, &name, &results)?;
            passed += s.report.passed();
            skipped += s.report.skipped();
            failed += s.report.failed();
            suites.push(s.junit);
            if crate::sys::pending_signal().is_some() {
                break 'all;
            }
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

/// `cargo test --workspace` (and the device's kernels once more on the release build), counted
/// like a suite: returns (passed, failed, skipped) and pushes their JUnit suites.
fn run_cargo(
    a: &TestArgs,
    qemu: &crate::provision::qemu::Qemu,
    results: &Path,
    suites: &mut Vec<String>,
) -> Result<(usize, usize, usize)> {
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
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
            crate::results::cargo_test::run(&log, &a.cargo_args, qemu)?
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
    Ok((passed, failed, skipped))
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
}
