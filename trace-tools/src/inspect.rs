//! The trace tools' entry points, for the thin `phyr-harness trace` CLI: list and/or
//! summarise, export, or follow the traces of a run, with one [`Filter`].
//!
//! Damage never hides data: every readable record is shown, then the [`Outcome`] names the
//! files that ended in a torn tail or without the device's close record (warnings) or could
//! not be read past a corrupt frame (errors, with the file offset); the CLI prints both and
//! fails on the latter.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::export::{JsonlWriter, PerfettoWriter};
use crate::filter::Filter;
use crate::follow::{FollowError, Follower};
use crate::listing::{write_header, write_line, Style};
use crate::merge::{FileReport, Item, MergedReader};
use crate::run_dir::TraceFile;
use crate::summary::Summary;

/// What `inspect` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Views {
    pub list: bool,
    pub summary: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Chrome/Perfetto trace-event JSON.
    Perfetto,
    /// One JSON record per line.
    Jsonl,
}

/// What a tool run saw besides its output.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Records read (before filtering).
    pub records: u64,
    /// Records that passed the filter.
    pub shown: u64,
    /// Files that ended early but were read up to their last complete record, and files the
    /// device did not close (killed, or still running), with where their records end.
    pub warnings: Vec<String>,
    /// Files that could not be read (bad header) or not past a corrupt frame.
    pub errors: Vec<String>,
    pub files: Vec<FileReport>,
}

impl Outcome {
    fn finish(&mut self, files: &[FileReport]) {
        for f in files {
            if let Some(tail) = f.tail.filter(|t| !t.is_clean()) {
                self.warnings.push(format!(
                    "{}: {tail}; showing the {} complete records",
                    f.path.display(),
                    f.records
                ));
            }
            if let Some(c) = f.closure.filter(|c| !c.is_closed()) {
                self.warnings.push(format!("{}: {c}", f.path.display()));
            }
        }
        self.files = files.to_vec();
    }
}

/// Reads `files` in time order, calling `each` on every record that passes `filter`.
fn scan(files: &[TraceFile], filter: &Filter, mut each: impl FnMut(&Item) -> io::Result<()>) -> io::Result<Outcome> {
    let mut out = Outcome::default();
    let mut merged = MergedReader::open(files);
    for item in merged.by_ref() {
        match item {
            Ok(item) => {
                out.records += 1;
                if filter.matches(&item.record) {
                    out.shown += 1;
                    each(&item)?;
                }
            }
            Err(e) => out.errors.push(e.to_string()),
        }
    }
    out.finish(merged.reports());
    Ok(out)
}

/// The listing and/or summary of `files`.
pub fn inspect(
    files: &[TraceFile],
    filter: &Filter,
    views: Views,
    style: Style,
    w: &mut impl Write,
) -> io::Result<Outcome> {
    let mut summary = Summary::default();
    if views.list {
        write_header(w, style)?;
    }
    let out = scan(files, filter, |item| {
        if views.summary {
            summary.add(item.ts_ns, &item.record);
        }
        if views.list {
            write_line(w, item.ts_ns, &item.record, style)?;
        }
        Ok(())
    })?;
    if views.summary {
        if views.list {
            writeln!(w)?;
        }
        summary.write(w, &out.files, style)?;
        if *filter != Filter::default() {
            writeln!(w, "(filtered: {} of {} records)", out.shown, out.records)?;
        }
    }
    w.flush()?;
    Ok(out)
}

/// Exports the records of `files` that pass `filter`.
pub fn export(files: &[TraceFile], filter: &Filter, format: ExportFormat, w: &mut impl Write) -> io::Result<Outcome> {
    match format {
        ExportFormat::Perfetto => {
            let mut p = PerfettoWriter::new(w)?;
            let out = scan(files, filter, |i| p.add(i.ts_ns, &i.record))?;
            p.finish()?;
            Ok(out)
        }
        ExportFormat::Jsonl => {
            let mut j = JsonlWriter::new(w);
            let out = scan(files, filter, |i| j.add(i.ts_ns, &i.record))?;
            j.finish()?;
            Ok(out)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FollowRunError {
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("writing output failed")]
    Output(#[from] io::Error),
}

/// Prints records as they are appended under `path` (a run or trace directory), polling every
/// `interval`, until `keep_going` returns false. Returns the number of lines printed.
pub fn follow(
    path: &Path,
    filter: &Filter,
    style: Style,
    interval: Duration,
    w: &mut impl Write,
    mut keep_going: impl FnMut() -> bool,
) -> Result<u64, FollowRunError> {
    let mut f = Follower::new(path);
    let mut shown = 0;
    write_header(w, style)?;
    w.flush()?;
    loop {
        for item in f.poll()? {
            if filter.matches(&item.record) {
                write_line(w, item.ts_ns, &item.record, style)?;
                shown += 1;
            }
        }
        w.flush()?;
        if !keep_going() {
            return Ok(shown);
        }
        std::thread::sleep(interval);
    }
}

/// The trace directory follow mode should watch for a run directory (its `trace/`, which may
/// not exist yet), or `path` itself for a trace directory or file.
pub fn follow_target(run_or_trace: &Path) -> PathBuf {
    let sub = run_or_trace.join("trace");
    if run_or_trace.is_dir() && (sub.is_dir() || !has_trace_files(run_or_trace)) {
        sub
    } else {
        run_or_trace.to_owned()
    }
}

fn has_trace_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "phyrtrace"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::trace_files;
    use crate::StatusFilter;
    use phyr_trace::testutil::{sample_records, temp_dir};
    use phyr_trace::{Recorder, TraceClock, TraceConfig};

    fn run_with_trace(tag: &str) -> PathBuf {
        let run = temp_dir(tag);
        let rec = Recorder::create(&run.join("trace"), 1, &TraceConfig::default(), &TraceClock::new()).unwrap();
        for r in sample_records() {
            rec.record(r);
        }
        drop(rec);
        run
    }

    #[test]
    fn list_and_summary_of_a_run() {
        let run = run_with_trace("inspect");
        let files = trace_files(&run).unwrap();
        let mut out = Vec::new();
        let o = inspect(
            &files,
            &Filter::default(),
            Views {
                list: true,
                summary: true,
            },
            Style::plain(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(o.records as usize, sample_records().len() + 1, "and the Closed record");
        assert!(o.warnings.is_empty() && o.errors.is_empty());
        assert!(text.contains("endpoint 1") && text.contains("IOMMU_FAULT"), "{text}");
        assert!(
            text.contains(&format!("ep1.phyrtrace  {} records", sample_records().len() + 1))
                && text.contains("complete, closed by the device"),
            "{text}"
        );
        std::fs::remove_dir_all(run).unwrap();
    }

    #[test]
    fn truncated_file_warns_and_shows_what_is_there() {
        let run = run_with_trace("inspect-trunc");
        let path = run.join("trace/ep1.phyrtrace");
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut out = Vec::new();
        let o = inspect(
            &trace_files(&run).unwrap(),
            &Filter::default(),
            Views {
                list: true,
                summary: false,
            },
            Style::plain(),
            &mut out,
        )
        .unwrap();
        // The cut took the Closed record: every sample record is there, the file reads as
        // truncated and as not closed, with where its records end.
        assert_eq!(o.records as usize, sample_records().len());
        assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
        assert!(o.warnings[0].contains("truncated"), "{:?}", o.warnings);
        assert!(
            o.warnings[1].contains("ends without a close record: the device was killed or is still running; last record at 0.000048 ms, offset "),
            "{:?}",
            o.warnings
        );
        assert!(o.errors.is_empty());
        std::fs::remove_dir_all(run).unwrap();
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_offset_after_showing_the_prefix() {
        let run = run_with_trace("inspect-corrupt");
        let path = run.join("trace/ep1.phyrtrace");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[64 + 72 + 30] ^= 0xff; // inside the second frame
        std::fs::write(&path, bytes).unwrap();
        let mut out = Vec::new();
        let o = export(
            &trace_files(&run).unwrap(),
            &Filter::default(),
            ExportFormat::Jsonl,
            &mut out,
        )
        .unwrap();
        assert_eq!(o.shown, 1);
        assert_eq!(o.errors.len(), 1);
        assert!(o.errors[0].contains("offset 136"), "{:?}", o.errors);
        std::fs::remove_dir_all(run).unwrap();
    }

    #[test]
    fn filtered_perfetto_export_parses() {
        let run = run_with_trace("inspect-export");
        let filter = Filter {
            status: Some(StatusFilter::Error),
            ..Filter::default()
        };
        let mut out = Vec::new();
        let o = export(&trace_files(&run).unwrap(), &filter, ExportFormat::Perfetto, &mut out).unwrap();
        assert_eq!(o.shown, 2);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "FAULT IOMMU_FAULT"));
        std::fs::remove_dir_all(run).unwrap();
    }

    #[test]
    fn follow_prints_appended_records_then_stops() {
        let run = temp_dir("inspect-follow");
        let rec = Recorder::create(&run.join("trace"), 0, &TraceConfig::default(), &TraceClock::new()).unwrap();
        let mut polls = 0;
        let mut out = Vec::new();
        let n = follow(
            &follow_target(&run),
            &Filter::default(),
            Style::plain(),
            Duration::from_millis(1),
            &mut out,
            || {
                polls += 1;
                if polls <= 3 {
                    rec.record(sample_records()[0].clone());
                    rec.flush().unwrap();
                }
                polls < 5
            },
        )
        .unwrap();
        assert_eq!(n, 3);
        std::fs::remove_dir_all(run).unwrap();
    }
}
