//! The console report grammar (`report/`, docs/REPORT.md) over arbitrary console text.
//!
//! Input: any bytes, read as (lossy) UTF-8 console output. Checks: no panic in `Line::find` or
//! `parse_log`; every line that parses prints back to a line that parses to the same value (the
//! printed form is canonical: printing it again gives the same text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phyr_report::{parse_log, Line};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for console_line in text.lines() {
        if let Some(Ok(line)) = Line::find(console_line) {
            let printed = line.to_string();
            let again: Line = printed
                .parse()
                .unwrap_or_else(|e| panic!("{printed:?} does not parse back: {e}"));
            assert_eq!(again, line, "{printed:?} parses to another line");
            assert_eq!(again.to_string(), printed, "printing is not canonical");
        }
    }
    let _ = parse_log(&text);
});
