//! Reading the guest suite's TAP (kselftest style) out of a serial console log.
//!
//! The guest prints `=== phyr suite begin ===`, then TAP (`TAP version 13`, `1..N`,
//! `ok 1 name`, `not ok 2 name # reason`, `ok 3 name # SKIP why`, `# diagnostics`), then
//! `=== phyr suite end: exit N ===`. Kernel messages may be interleaved on the console; lines
//! that are not TAP are ignored. A suite that stops early counts its missing tests as failed.

pub const BEGIN: &str = "=== phyr suite begin ===";
pub const END_PREFIX: &str = "=== phyr suite end: exit ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub number: u32,
    pub name: String,
    pub ok: bool,
    pub skipped: bool,
    /// The text after `#` (reason for a failure or skip).
    pub directive: String,
    /// `#` lines that followed the result line (kselftest prints details before, but both are kept).
    pub diagnostics: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuiteReport {
    pub planned: Option<u32>,
    pub tests: Vec<TestResult>,
    /// Exit status the guest printed at the end marker; None when the suite never finished.
    pub exit_status: Option<i32>,
    pub began: bool,
    /// Problems with the run as a whole (no output, crashed mid-way, plan mismatch).
    pub problems: Vec<String>,
    /// The raw TAP lines, for results/<recipe>.tap.
    pub tap: Vec<String>,
}

impl SuiteReport {
    /// Tests that ran and passed (skips are not passes).
    pub fn passed(&self) -> usize {
        self.tests.iter().filter(|t| t.ok && !t.skipped).count()
    }

    pub fn skipped(&self) -> usize {
        self.tests.iter().filter(|t| t.skipped).count()
    }

    /// Planned tests that were never reported (the suite stopped early).
    pub fn missing(&self) -> usize {
        self.planned
            .map_or(0, |p| (p as usize).saturating_sub(self.tests.len()))
    }

    /// A problem with the run as a whole that is not already counted as missing tests.
    pub fn run_failure(&self) -> Option<&str> {
        if self.missing() > 0 {
            return None;
        }
        self.problems
            .iter()
            .find(|p| !p.starts_with("planned"))
            .map(String::as_str)
    }

    /// The first problem, to explain missing tests.
    pub fn why_missing(&self) -> &str {
        self.problems
            .iter()
            .find(|p| !p.starts_with("planned"))
            .map_or("the suite stopped early", String::as_str)
    }

    /// Failed tests, plus missing tests, plus one for a run that failed as a whole.
    pub fn failed(&self) -> usize {
        self.tests.iter().filter(|t| !t.ok).count() + self.missing() + usize::from(self.run_failure().is_some())
    }
}

/// Parses the suite section of a console log.
pub fn parse(log: &str) -> SuiteReport {
    let mut r = SuiteReport::default();
    let mut pending_diag: Vec<String> = Vec::new();
    for raw in log.lines() {
        let line = raw.trim_end_matches('\r').trim_end();
        if !r.began {
            if line.ends_with(BEGIN) {
                r.began = true;
            }
            continue;
        }
        if let Some(pos) = line.find(END_PREFIX) {
            let rest = line[pos + END_PREFIX.len()..].trim_end_matches(" ===").trim();
            r.exit_status = Some(rest.parse().unwrap_or(-1));
            break;
        }
        let l = line.trim_start();
        if l.starts_with("TAP version") {
            r.tap.push(l.to_owned());
        } else if let Some(plan) = l.strip_prefix("1..") {
            r.planned = plan.split_whitespace().next().and_then(|n| n.parse().ok());
            r.tap.push(l.to_owned());
        } else if let Some(t) = parse_result(l) {
            r.tap.push(l.to_owned());
            let mut t = t;
            t.diagnostics = std::mem::take(&mut pending_diag);
            r.tests.push(t);
        } else if let Some(d) = l.strip_prefix('#') {
            r.tap.push(l.to_owned());
            pending_diag.push(d.trim().to_owned());
        }
    }
    if !r.began {
        r.problems
            .push("the guest never started the suite (no begin marker in the console log)".into());
    } else if r.exit_status.is_none() {
        r.problems
            .push("the suite did not finish (no end marker: guest crash, hang or timeout)".into());
    }
    if let Some(p) = r.planned {
        if r.tests.len() as u32 != p {
            r.problems
                .push(format!("planned {p} tests, {} reported", r.tests.len()));
        }
    }
    if r.began && r.tests.is_empty() && r.planned.is_none() {
        r.problems.push("the suite printed no TAP results".into());
    }
    if let Some(code) = r.exit_status {
        if code != 0 && r.tests.iter().all(|t| t.ok) {
            r.problems.push(format!(
                "`phyr suite` exited with status {code} although every reported test passed"
            ));
        }
    }
    r
}

/// `ok 3 name # SKIP why` / `not ok 4 name # reason`.
fn parse_result(l: &str) -> Option<TestResult> {
    let (ok, rest) = if let Some(r) = l.strip_prefix("not ok") {
        (false, r)
    } else if let Some(r) = l.strip_prefix("ok") {
        (true, r)
    } else {
        return None;
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    let rest = rest.trim_start();
    let num_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let number = rest[..num_end].parse().ok()?;
    let rest = rest[num_end..].trim_start().trim_start_matches("- ");
    let (name, directive) = match rest.split_once(" # ").or_else(|| rest.split_once('#')) {
        Some((n, d)) => (n.trim(), d.trim()),
        None => (rest.trim(), ""),
    };
    let upper = directive.to_ascii_uppercase();
    let skipped = upper.starts_with("SKIP");
    // A TODO test that fails is not a failure in TAP.
    let ok = ok || upper.starts_with("TODO");
    Some(TestResult {
        number,
        name: name.to_owned(),
        ok,
        skipped,
        directive: directive.to_owned(),
        diagnostics: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "[    3.1] vfio-pci 0000:03:00.0: enabling device\r\n\
phyr-init: READY: 2 device(s) bound to vfio-pci\r\n\
=== phyr suite begin ===\r\n\
TAP version 13\r\n\
1..4\r\n\
# host buffer to host buffer\r\n\
ok 1 host_to_host\r\n\
[    4.2] random kernel line\r\n\
not ok 2 peer_bus_addr # status 3 at segment 1, expected 0\r\n\
ok 3 irq_completion # SKIP no MSI-X\r\n\
ok 4 - chained_lists\r\n\
=== phyr suite end: exit 1 ===\r\n\
phyr-init: powering off\r\n";

    #[test]
    fn parses_kselftest_output_between_markers() {
        let r = parse(LOG);
        assert_eq!(r.planned, Some(4));
        assert_eq!(r.tests.len(), 4);
        assert_eq!(r.exit_status, Some(1));
        assert_eq!((r.passed(), r.failed(), r.skipped()), (2, 1, 1));
        assert_eq!(r.tests[0].diagnostics, vec!["host buffer to host buffer"]);
        assert_eq!(r.tests[1].name, "peer_bus_addr");
        assert_eq!(r.tests[1].directive, "status 3 at segment 1, expected 0");
        assert!(r.tests[2].skipped && r.tests[2].ok);
        assert_eq!(r.tests[3].name, "chained_lists");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(!r.tap.iter().any(|l| l.contains("kernel line")));
    }

    #[test]
    fn a_crash_mid_suite_counts_missing_tests_as_failed() {
        let cut = &LOG[..LOG.find("not ok 2").unwrap()];
        let r = parse(cut);
        assert_eq!(r.exit_status, None);
        assert_eq!((r.passed(), r.failed()), (1, 3));
        assert!(r.problems.iter().any(|p| p.contains("did not finish")));
    }

    #[test]
    fn no_suite_at_all_is_one_failure() {
        let r = parse("Kernel panic - not syncing: VFS\n");
        assert_eq!((r.passed(), r.failed()), (0, 1));
        assert!(r.problems[0].contains("never started"));
        let r = parse("=== phyr suite begin ===\nsh: phyr: not found\n=== phyr suite end: exit 127 ===\n");
        assert_eq!((r.passed(), r.failed()), (0, 1));
    }

    #[test]
    fn hostile_lines_do_not_panic() {
        for l in [
            "ok",
            "ok x",
            "not ok 99999999999999999999 big",
            "okay 1",
            "ok 1 #",
            "1..",
            "1..x",
            "=== phyr suite end: exit  ===",
        ] {
            let _ = parse(&format!("{BEGIN}\n{l}\n"));
        }
        assert!(parse_result("okay 1").is_none());
        assert!(parse_result("ok 1 a # TODO later").unwrap().ok);
    }
}
