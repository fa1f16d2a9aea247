//! JSON Lines: one record per line, for jq.
//!
//! Each line is the serde form of [`Record`] plus `ts_ns` (run-relative time, aligned across
//! endpoints): `{"ts_ns":..,"t_ns":..,"payload":{"type":"dma","endpoint":0,...}}`.
//! Example: `jq 'select(.payload.type == "dma" and .payload.status != 0)'`.

use std::io::{self, Write};

use serde::Serialize;

use phyr_trace::Record;

#[derive(Serialize)]
struct Line<'a> {
    ts_ns: u64,
    #[serde(flatten)]
    record: &'a Record,
}

pub struct JsonlWriter<W: Write> {
    w: W,
    lines: u64,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(w: W) -> Self {
        JsonlWriter { w, lines: 0 }
    }

    pub fn add(&mut self, ts_ns: u64, record: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.w, &Line { ts_ns, record })?;
        self.w.write_all(b"\n")?;
        self.lines += 1;
        Ok(())
    }

    /// Flushes; returns the writer and the number of lines written.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.w.flush()?;
        Ok((self.w, self.lines))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phyr_trace::testutil::sample_records;

    #[test]
    fn every_line_parses_back_to_its_record() {
        let mut j = JsonlWriter::new(Vec::new());
        for r in sample_records() {
            j.add(r.t_ns + 5, &r).unwrap();
        }
        let (out, n) = j.finish().unwrap();
        assert_eq!(n as usize, sample_records().len());
        let text = String::from_utf8(out).unwrap();
        for (line, rec) in text.lines().zip(sample_records()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["ts_ns"], rec.t_ns + 5);
            let back: Record = serde_json::from_value(v).unwrap();
            assert_eq!(back, rec);
        }
    }
}
