//! Reading the trace files of one run together, merged in time order.
//!
//! Timestamps are aligned across files through each header's `start_unix_ns` (files written
//! by one device process share a clock, so this is exact for them). A file that cannot be
//! read past some point yields one error and leaves the merge; the others go on, so a tool
//! can show everything readable and still report the damage.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use crate::run_dir::TraceFile;
use phyr_trace::format::Header;
use phyr_trace::Record;
use phyr_trace::{Closure, FileError, Tail, TraceReader};

/// One record with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Index of the file in [`MergedReader::reports`].
    pub file: usize,
    /// File offset of the record's frame.
    pub offset: u64,
    /// Nanoseconds since the earliest file's start (the merge key).
    pub ts_ns: u64,
    pub record: Record,
}

/// What happened to one file, for summaries and warnings.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub header: Option<Header>,
    pub records: u64,
    /// How the file ended, once read to its end.
    pub tail: Option<Tail>,
    /// Whether the writer closed it (a `Closed` last record), once read to its end.
    pub closure: Option<Closure>,
    /// The error that stopped reading it, if any.
    pub error: Option<String>,
}

struct Source {
    reader: Option<TraceReader<BufReader<File>>>,
    head: Option<Item>,
    shift_ns: u64,
}

pub struct MergedReader {
    sources: Vec<Source>,
    reports: Vec<FileReport>,
    pending_errors: Vec<FileError>,
}

impl MergedReader {
    /// Opens every file; files whose header cannot be read are reported by the first calls
    /// to `next`.
    pub fn open(files: &[TraceFile]) -> Self {
        let mut sources = Vec::new();
        let mut reports = Vec::new();
        let mut pending_errors = Vec::new();
        for f in files {
            let mut report = FileReport {
                path: f.path.clone(),
                header: None,
                records: 0,
                tail: None,
                closure: None,
                error: None,
            };
            let reader = match TraceReader::open(&f.path) {
                Ok(r) => {
                    report.header = Some(r.header().clone());
                    Some(r)
                }
                Err(e) => {
                    report.error = Some(e.source.to_string());
                    pending_errors.push(e);
                    None
                }
            };
            sources.push(Source {
                reader,
                head: None,
                shift_ns: 0,
            });
            reports.push(report);
        }
        let min_start = reports
            .iter()
            .filter_map(|r| r.header.as_ref())
            .map(|h| h.start_unix_ns)
            .min()
            .unwrap_or(0);
        for (s, r) in sources.iter_mut().zip(&reports) {
            s.shift_ns = r.header.as_ref().map_or(0, |h| h.start_unix_ns - min_start);
        }
        let mut m = MergedReader {
            sources,
            reports,
            pending_errors,
        };
        for i in 0..m.sources.len() {
            m.refill(i);
        }
        m
    }

    pub fn reports(&self) -> &[FileReport] {
        &self.reports
    }

    fn refill(&mut self, i: usize) {
        let src = &mut self.sources[i];
        let Some(reader) = src.reader.as_mut() else { return };
        match reader.next_record() {
            Ok(Some((offset, record))) => {
                self.reports[i].records += 1;
                let ts_ns = src.shift_ns.saturating_add(record.t_ns);
                src.head = Some(Item {
                    file: i,
                    offset,
                    ts_ns,
                    record,
                });
            }
            Ok(None) => {
                self.reports[i].tail = reader.tail();
                self.reports[i].closure = Some(reader.closure());
                src.reader = None;
            }
            Err(source) => {
                self.reports[i].error = Some(source.to_string());
                self.pending_errors.push(FileError {
                    path: self.reports[i].path.clone(),
                    source,
                });
                src.reader = None;
            }
        }
    }
}

impl Iterator for MergedReader {
    type Item = Result<Item, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending_errors.pop() {
            return Some(Err(e));
        }
        let i = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head.as_ref().map(|h| (h.ts_ns, i)))
            .min()?
            .1;
        let item = self.sources[i].head.take()?;
        self.refill(i);
        Some(Ok(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phyr_trace::testutil::{dma, temp_dir};
    use phyr_trace::{Recorder, TraceClock, TraceConfig};

    #[test]
    fn merges_endpoints_in_time_order_and_reports_a_corrupt_file() {
        let dir = temp_dir("merge");
        let clock = TraceClock::new();
        let a = Recorder::create(&dir, 0, &TraceConfig::default(), &clock).unwrap();
        let b = Recorder::create(&dir, 1, &TraceConfig::default(), &clock).unwrap();
        for t in 0..10u64 {
            if t % 2 == 0 { &a } else { &b }.record(dma(t * 10, (t % 2) as u16, t as u16, 0, 8, 0));
        }
        drop((a, b));
        std::fs::write(
            dir.join("ep7.phyrtrace"),
            b"garbage that is not a trace header at all, no no no, definitely not 64",
        )
        .unwrap();
        let files = crate::run_dir::trace_files(&dir).unwrap();
        let mut m = MergedReader::open(&files);
        let mut ts = Vec::new();
        let (mut errors, mut closed) = (0, 0);
        for item in m.by_ref() {
            match item {
                Ok(it) if matches!(it.record.payload, phyr_trace::Payload::Dma(_)) => ts.push(it.record.t_ns),
                Ok(_) => closed += 1,
                Err(e) => {
                    errors += 1;
                    assert!(e.to_string().contains("ep7.phyrtrace"), "{e}");
                }
            }
        }
        assert_eq!(ts, (0..10).map(|t| t * 10).collect::<Vec<_>>());
        assert_eq!((errors, closed), (1, 2));
        assert_eq!(m.reports()[0].tail, Some(Tail::Clean));
        assert!(m.reports()[0].closure.is_some_and(|c| c.is_closed()));
        assert_eq!(m.reports()[1].records, 6, "5 and the Closed record");
        assert!(m.reports()[2].error.is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
