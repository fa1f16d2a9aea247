//! TAP version 13 output in the kselftest style: "TAP version 13", "1..N", "ok N name",
//! "not ok N name # reason", "ok N name # SKIP reason", "# ..." diagnostics and a final
//! "# totals: pass:X fail:Y xfail:0 xpass:0 skip:Z error:0".

use std::io::Write;

#[derive(Debug, Default)]
pub struct Tap {
    n: usize,
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
}

/// One line of TAP text, with newlines in `s` made safe (a reason must stay on its line).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " | ")
}

impl Tap {
    pub fn header(&self, planned: usize) {
        println!("TAP version 13");
        println!("1..{planned}");
        flush();
    }

    pub fn diag(msg: &str) {
        for l in msg.lines() {
            println!("# {l}");
        }
        flush();
    }

    /// A report line (docs/REPORT.md): already a `# ` diagnostic.
    pub fn report(line: &impl std::fmt::Display) {
        println!("{line}");
        flush();
    }

    pub fn ok(&mut self, name: &str) {
        self.n += 1;
        self.pass += 1;
        println!("ok {} {name}", self.n);
        flush();
    }

    pub fn not_ok(&mut self, name: &str, reason: &str) {
        self.n += 1;
        self.fail += 1;
        println!("not ok {} {name} # {}", self.n, one_line(reason));
        flush();
    }

    pub fn skip(&mut self, name: &str, reason: &str) {
        self.n += 1;
        self.skip += 1;
        println!("ok {} {name} # SKIP {}", self.n, one_line(reason));
        flush();
    }

    pub fn totals(&self) {
        println!(
            "# totals: pass:{} fail:{} xfail:0 xpass:0 skip:{} error:0",
            self.pass, self.fail, self.skip
        );
        flush();
    }
}

fn flush() {
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_stay_on_one_line() {
        assert_eq!(one_line("a\nb"), "a | b");
    }

    #[test]
    fn counters_follow_results() {
        let mut t = Tap::default();
        t.ok("a");
        t.not_ok("b", "why");
        t.skip("c", "needs two switches");
        assert_eq!((t.n, t.pass, t.fail, t.skip), (3, 1, 1, 1));
    }
}
