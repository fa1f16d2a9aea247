//! The trace reader over arbitrary and truncated files.
//!
//! Input: arbitrary bytes, read whole and then cut at a point the input chooses. Checks: no
//! panic, and a cut file yields a prefix of what the whole file yields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phyr_trace::read_bytes;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, file)) = data.split_first() else {
        return;
    };
    let whole = read_bytes(file);
    let at = file.len() * usize::from(cut) / 255;
    let part = read_bytes(&file[..at]);
    if let (Ok(whole), Ok(part)) = (whole, part) {
        assert!(part.records.len() <= whole.records.len(), "a cut file has more records");
        assert_eq!(
            part.records[..],
            whole.records[..part.records.len()],
            "a cut file reads other records"
        );
    }
});
