//! `phyr-harness test --cargo`: runs `cargo test --workspace` first and turns its per-test
//! lines (`test name ... ok|FAILED|ignored`) into the same report as the guest suite, so the
//! final `N passed, N failed` line and junit.xml cover both.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::provision::qemu::Qemu;
use crate::results::tap::{SuiteReport, TestResult};

/// Runs cargo test in the current directory with its output in `log`, telling the tests that
/// need QEMU (vfio-user/tests/qemu.rs) to use `qemu` and to fail rather than skip without it.
pub fn run(log: &Path, extra_args: &[String], qemu: &Qemu) -> Result<SuiteReport> {
    let mut args: Vec<String> = vec!["test".into(), "--workspace".into()];
    args.extend(extra_args.iter().cloned());
    run_cargo(log, &args, "", &qemu_env(qemu))
}

/// The environment that points the QEMU tests at `qemu` and makes them required.
pub fn qemu_env(qemu: &Qemu) -> Vec<(&'static str, PathBuf)> {
    let which = match &qemu.prefix {
        Some(p) => ("PHYR_QEMU_PREFIX", p.clone()),
        None => ("PHYR_QEMU", qemu.program.clone()),
    };
    vec![("PHYR_REQUIRE_QEMU", PathBuf::from("1")), which]
}

/// The byte-moving and CRC32C kernels' tests (`phyr-kernels`) once more, built as they ship
/// (release). In the debug build std's debug assertions keep the optimizer from a rewrite that
/// once made a COPY's data CRC disagree with the bytes written while the guest rewrote the
/// source (kernels/src/mem.rs), so only this run can catch it coming back. Test names get a
/// `release ` prefix.
pub fn run_release_kernels(log: &Path) -> Result<SuiteReport> {
    let args: Vec<String> = ["test", "--release", "-p", "phyr-kernels", "--lib"]
        .map(String::from)
        .to_vec();
    let mut report = run_cargo(log, &args, "release ", &[])?;
    if report.tests.is_empty() && report.problems.is_empty() {
        // A renamed module must not turn this run into a silent pass.
        report
            .problems
            .push(format!("`cargo {}` ran no test; see {}", args.join(" "), log.display()));
    }
    Ok(report)
}

/// Whether `cargo test` extra arguments already pick an optimized profile (then the
/// release-build kernel run would only repeat tests).
pub fn picks_a_profile(args: &[String]) -> bool {
    args.iter()
        .any(|a| a == "--release" || a == "-r" || a == "--profile" || a.starts_with("--profile="))
}

fn run_cargo(log: &Path, args: &[String], prefix: &str, env: &[(&str, PathBuf)]) -> Result<SuiteReport> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let shown = format!("cargo {}", args.join(" "));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("running `{shown}` (is cargo on PATH?)"))?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut report = parse(&text);
    let file_name = log
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    for t in &mut report.tests {
        t.name.insert_str(0, prefix);
        if !t.ok {
            t.directive = format!("failed; see results/{file_name}");
        }
    }
    if !status.success() && report.failed() == 0 {
        let why = format!("`{shown}` failed ({status}) without a failing test (a build error?)");
        report.problems.push(format!("{why}; see {}", log.display()));
    }
    Ok(report)
}

/// Per-test results from cargo's (libtest's) human output.
pub fn parse(output: &str) -> SuiteReport {
    let mut r = SuiteReport {
        began: true,
        exit_status: Some(0),
        ..SuiteReport::default()
    };
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, verdict)) = rest.rsplit_once(" ... ") else {
            continue;
        };
        let (ok, skipped) = match verdict.split(',').next().unwrap_or("").trim() {
            "ok" => (true, false),
            "FAILED" => (false, false),
            "ignored" => (true, true),
            _ => continue,
        };
        r.tap.push(line.to_owned());
        r.tests.push(TestResult {
            number: r.tests.len() as u32 + 1,
            name: name.trim().to_owned(),
            ok,
            skipped,
            directive: if ok {
                String::new()
            } else {
                "failed; see results/cargo-test.log".into()
            },
            diagnostics: vec![],
        });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qemu_tests_are_required_and_pointed_at_the_harness_qemu() {
        let private = Qemu::in_prefix(Path::new("/cache/qemu/prefix"));
        let env = qemu_env(&private);
        assert_eq!(env[0], ("PHYR_REQUIRE_QEMU", PathBuf::from("1")));
        assert_eq!(env[1], ("PHYR_QEMU_PREFIX", PathBuf::from("/cache/qemu/prefix")));
        let system = Qemu {
            program: "/usr/bin/qemu-system-x86_64".into(),
            prefix: None,
            ..private
        };
        assert_eq!(
            qemu_env(&system)[1],
            ("PHYR_QEMU", PathBuf::from("/usr/bin/qemu-system-x86_64"))
        );
    }

    #[test]
    fn release_or_profile_arguments_skip_the_extra_release_run() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(picks_a_profile(&v(&["--release"])) && picks_a_profile(&v(&["-r"])));
        assert!(picks_a_profile(&v(&["--profile", "bench"])) && picks_a_profile(&v(&["--profile=bench"])));
        assert!(!picks_a_profile(&v(&["-p", "phyr-trace", "--", "--nocapture"])));
    }

    #[test]
    fn parses_libtest_lines() {
        let out = "running 3 tests\n\
test cpio::tests::round_trip ... ok\n\
test recipe::tests::bad ... FAILED\n\
test boot::slow ... ignored, needs QEMU\n\
test src/lib.rs - Record (line 12) ... ok\n\
test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out\n";
        let r = parse(out);
        assert_eq!(r.tests.len(), 4);
        assert_eq!((r.passed(), r.failed(), r.skipped()), (2, 1, 1));
        assert_eq!(r.tests[3].name, "src/lib.rs - Record (line 12)");
        assert!(r.problems.is_empty());
    }

    #[test]
    fn noise_is_ignored() {
        let r = parse("test result: ok. 0 passed\ntest weird line\n   Compiling x\n");
        assert!(r.tests.is_empty());
    }
}
