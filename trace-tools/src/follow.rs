//! Follow mode: read what the device appended since the last poll, while a guest runs.
//!
//! Each poll re-lists the trace files (endpoints may appear late), reads every file from the
//! end of its last complete frame, and returns the new records in time order. A frame still
//! being written is left for the next poll. A file that shrank or is a different inode was
//! recreated (a new run behind `runs/latest`) and is read again from its start.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::merge::Item;
use crate::run_dir::{trace_files, LocateError};
use phyr_trace::format::{Header, HEADER_LEN};
use phyr_trace::{FileError, ReadError, TraceReader};

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Locate(#[from] LocateError),
    #[error(transparent)]
    File(#[from] FileError),
}

struct Followed {
    index: usize,
    /// (device, inode): a different file at the same path is a new run.
    id: (u64, u64),
    header: Option<Header>,
    offset: u64,
}

/// Tails the trace files under a run directory, trace directory or single file.
pub struct Follower {
    path: PathBuf,
    files: BTreeMap<PathBuf, Followed>,
    base_start_ns: Option<u64>,
}

impl Follower {
    pub fn new(path: &Path) -> Self {
        Follower {
            path: path.to_owned(),
            files: BTreeMap::new(),
            base_start_ns: None,
        }
    }

    /// Paths seen so far, indexed by [`Item::file`].
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<(usize, PathBuf)> = self.files.iter().map(|(p, f)| (f.index, p.clone())).collect();
        v.sort();
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// New complete records since the last poll, in time order. No trace files yet is not an
    /// error (the device may not have started, the directory may not exist yet); a damaged file is.
    pub fn poll(&mut self) -> Result<Vec<Item>, FollowError> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let files = match trace_files(&self.path) {
            Ok(f) => f,
            Err(LocateError::NoTraces { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut items = Vec::new();
        for f in files {
            let next_index = self.files.len();
            let st = self.files.entry(f.path.clone()).or_insert(Followed {
                index: next_index,
                id: (0, 0),
                header: None,
                offset: 0,
            });
            read_new(&f.path, st, &mut self.base_start_ns, &mut items).map_err(|source| FileError {
                path: f.path.clone(),
                source,
            })?;
        }
        items.sort_by_key(|i| (i.ts_ns, i.file, i.offset));
        Ok(items)
    }
}

fn read_new(path: &Path, st: &mut Followed, base: &mut Option<u64>, out: &mut Vec<Item>) -> Result<(), ReadError> {
    let at = st.offset;
    let io = |source| ReadError::Io { offset: at, source };
    let meta = std::fs::metadata(path).map_err(io)?;
    let len = meta.len();
    let id = (meta.dev(), meta.ino());
    if len < HEADER_LEN as u64 || (st.header.is_some() && len <= st.offset && id == st.id) {
        return Ok(()); // nothing new (or no header yet)
    }
    let mut file = File::open(path).map_err(io)?;
    let header = TraceReader::new(BufReader::new(&mut file))?.header().clone();
    // A different file, a shorter one, or another header at the same path: a new run.
    if id != st.id || len < st.offset || st.header.as_ref() != Some(&header) {
        st.id = id;
        st.header = Some(header.clone());
        st.offset = HEADER_LEN as u64;
    }
    if len <= st.offset {
        return Ok(());
    }
    let base_ns = *base.get_or_insert(header.start_unix_ns);
    let shift = header.start_unix_ns.saturating_sub(base_ns);
    file.seek(SeekFrom::Start(st.offset)).map_err(io)?;
    let mut r = TraceReader::resume(BufReader::new(file), header, st.offset);
    while let Some((offset, record)) = r.next_record()? {
        out.push(Item {
            file: st.index,
            offset,
            ts_ns: shift.saturating_add(record.t_ns),
            record,
        });
    }
    st.offset = r.offset();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use phyr_trace::testutil::{dma, temp_dir};
    use phyr_trace::{Recorder, TraceClock, TraceConfig};

    #[test]
    fn picks_up_appended_records_and_late_files() {
        let dir = temp_dir("follow");
        let mut f = Follower::new(&dir);
        assert!(f.poll().unwrap().is_empty(), "no files yet is not an error");
        let clock = TraceClock::new();
        let a = Recorder::create(&dir, 0, &TraceConfig::default(), &clock).unwrap();
        a.record(dma(1, 0, 1, 0, 8, 0));
        a.flush().unwrap();
        assert_eq!(f.poll().unwrap().len(), 1);
        assert!(f.poll().unwrap().is_empty());
        a.record(dma(3, 0, 2, 0, 8, 0));
        let b = Recorder::create(&dir, 1, &TraceConfig::default(), &clock).unwrap();
        b.record(dma(2, 1, 3, 0, 8, 0));
        a.flush().unwrap();
        b.flush().unwrap();
        let got: Vec<u64> = f.poll().unwrap().iter().map(|i| i.record.t_ns).collect();
        assert_eq!(got, [2, 3]);
        assert_eq!(f.paths().len(), 2);
        drop((a, b));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn partial_frame_waits_for_the_next_poll() {
        let dir = temp_dir("follow-partial");
        let path = dir.join("ep0.phyrtrace");
        let h = Header {
            endpoint: 0,
            frame_crc: true,
            data_crc: false,
            start_unix_ns: 0,
            max_bytes: 1 << 20,
        };
        let mut bytes = h.encode().to_vec();
        phyr_trace::format::encode_frame(&dma(1, 0, 1, 0, 8, 0), true, &mut bytes);
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let mut f = Follower::new(&dir);
        assert!(f.poll().unwrap().is_empty());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(f.poll().unwrap().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn recreated_file_is_read_from_its_start() {
        let dir = temp_dir("follow-recreated");
        let clock = TraceClock::new();
        let a = Recorder::create(&dir, 0, &TraceConfig::default(), &clock).unwrap();
        a.record(dma(1, 0, 1, 0, 8, 0));
        drop(a);
        let mut f = Follower::new(&dir);
        assert_eq!(f.poll().unwrap().len(), 2, "the record and the Closed record");
        // A new run: a different file, longer than the old one.
        std::fs::remove_file(dir.join("ep0.phyrtrace")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Recorder::create(&dir, 0, &TraceConfig::default(), &TraceClock::new()).unwrap();
        for t in 0..3 {
            b.record(dma(t, 0, 2, 0, 8, 0));
        }
        drop(b);
        assert_eq!(f.poll().unwrap().len(), 4);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
