//! The recording hook's sink: a [`Recorder`] per endpoint writing `<dir>/ep<N>.phyrtrace`
//! (writing rules, size cap and `Dropped` marker: `trace/FORMAT.md`).
//!
//! Cost model on the DMA path: [`Recorder::record`] encodes the frame on the stack (eight
//! words composed in registers), copies it into a shared in-memory buffer under an
//! uncontended mutex, and returns; timestamps come from [`TraceClock`] (the TSC where the
//! kernel's clocksource is the TSC). A writer thread per file swaps the buffer out, fills in
//! the frame CRCs (so they cost the DMA path nothing) and `write`s it whole, every
//! `flush_interval` or as soon as `flush_threshold` bytes are pending; dropping the last clone
//! flushes too. What this costs per command: `cargo bench -p phyr-device -- trace`, and
//! trace/README.md for a measured run.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
#[cfg(test)]
use std::time::Instant;

use crate::clock::TraceClock;
use crate::format::{
    command_done_frame, dma_frame, encode_frame, Header, CLOSED_FRAME_LEN, FRAME_HEADER_LEN, HEADER_LEN,
};
use crate::record::{Event, Payload, Record};

/// Size of the `Event::Dropped` marker frame (8-byte frame header + 24-byte body).
const MARKER_LEN: u64 = 32;
/// Room kept at the end of a file: a `Dropped` marker, then the `Closed` record.
const RESERVE: u64 = MARKER_LEN + CLOSED_FRAME_LEN as u64;

/// How a recorder writes.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// File size cap, header included (default 256 MiB).
    pub max_bytes: u64,
    /// Ask the device for a CRC32C of every successful transfer (default on).
    pub data_crc: bool,
    /// Protect each frame with a CRC32C of its body (default on).
    pub frame_crc: bool,
    /// Longest time a record waits in memory (default 100 ms).
    pub flush_interval: Duration,
    /// Pending bytes that wake the writer thread early (default 256 KiB).
    pub flush_threshold: usize,
    /// Pending bytes beyond which records are dropped instead of buffered (default 16 MiB).
    pub max_buffer: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            max_bytes: 256 << 20,
            data_crc: true,
            frame_crc: true,
            flush_interval: Duration::from_millis(100),
            flush_threshold: 256 << 10,
            max_buffer: 16 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create trace directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create trace file {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing trace file {} failed at offset {offset}; recording stopped", path.display())]
    Write {
        path: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("trace size cap {max_bytes} bytes is below the minimum of {min} bytes")]
    CapTooSmall { max_bytes: u64, min: u64 },
    #[error("cannot start the trace writer thread")]
    Spawn(#[source] io::Error),
}

/// The file name of endpoint `endpoint`'s trace inside a trace directory.
pub fn trace_file_name(endpoint: u16) -> String {
    format!("ep{endpoint}.phyrtrace")
}

/// Handle to one endpoint's trace file. Cheap to clone; the file is flushed and closed when
/// the last clone is dropped. [`Recorder::disabled`] records nothing and costs one branch.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Option<Arc<Handle>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => write!(f, "Recorder(disabled)"),
            Some(h) => write!(f, "Recorder({})", h.shared.path.display()),
        }
    }
}

struct Handle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    path: PathBuf,
    endpoint: u16,
    cfg: TraceConfig,
    clock: TraceClock,
    /// Full or failed: `record` only counts.
    stopped: AtomicBool,
    /// Records not written because the file is full (the marker's count).
    dropped: AtomicU64,
    /// Records not buffered because the writer fell behind, not yet reported in the file.
    lost: AtomicU64,
    state: Mutex<State>,
    wake: Condvar,
    sink: Mutex<Sink>,
}

struct State {
    buf: Vec<u8>,
    /// Bytes accepted so far (header + frames written or buffered): the next frame's offset.
    committed: u64,
    marker: Option<MarkerPos>,
    flush_wanted: bool,
    closing: bool,
    /// The `Closed` record is buffered or written: nothing more goes into the file.
    closed: bool,
}

#[derive(Clone, Copy)]
struct MarkerPos {
    offset: u64,
    t_ns: u64,
}

struct Sink {
    file: File,
    pos: u64,
    spare: Vec<u8>,
    marker_count: u64,
    error: Option<(u64, io::ErrorKind, String)>,
}

impl Recorder {
    /// A recorder that records nothing.
    pub fn disabled() -> Self {
        Recorder { inner: None }
    }

    /// Creates (truncating) `<dir>/ep<endpoint>.phyrtrace`, writes its header and starts the
    /// writer thread.
    pub fn create(dir: &Path, endpoint: u16, cfg: &TraceConfig, clock: &TraceClock) -> Result<Self, WriteError> {
        let min = HEADER_LEN as u64 + RESERVE;
        if cfg.max_bytes < min {
            return Err(WriteError::CapTooSmall {
                max_bytes: cfg.max_bytes,
                min,
            });
        }
        fs::create_dir_all(dir).map_err(|source| WriteError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(trace_file_name(endpoint));
        let mut file = File::create(&path).map_err(|source| WriteError::Create {
            path: path.clone(),
            source,
        })?;
        let header = Header {
            endpoint,
            frame_crc: cfg.frame_crc,
            data_crc: cfg.data_crc,
            start_unix_ns: clock.start_unix_ns(),
            max_bytes: cfg.max_bytes,
        };
        file.write_all(&header.encode()).map_err(|source| WriteError::Write {
            path: path.clone(),
            offset: 0,
            source,
        })?;
        let shared = Arc::new(Shared {
            path,
            endpoint,
            cfg: cfg.clone(),
            clock: clock.clone(),
            stopped: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            state: Mutex::new(State {
                buf: Vec::with_capacity(cfg.flush_threshold * 2),
                committed: HEADER_LEN as u64,
                marker: None,
                flush_wanted: false,
                closing: false,
                closed: false,
            }),
            wake: Condvar::new(),
            sink: Mutex::new(Sink {
                file,
                pos: HEADER_LEN as u64,
                spare: Vec::with_capacity(cfg.flush_threshold * 2),
                marker_count: 0,
                error: None,
            }),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("phyr-trace-ep{endpoint}"))
            .spawn(move || worker.run())
            .map_err(WriteError::Spawn)?;
        Ok(Recorder {
            inner: Some(Arc::new(Handle {
                shared,
                thread: Mutex::new(Some(thread)),
            })),
        })
    }

    /// True unless this is [`Recorder::disabled`]: build records only when this holds.
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether the device should compute a CRC32C of the bytes it moves (`phyr_kernels::crc32c`, or the device's fused copy + CRC kernel).
    #[inline]
    pub fn wants_crc(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|h| h.shared.cfg.data_crc && !h.shared.stopped.load(Relaxed))
    }

    /// Timestamp for a record (`t_ns`): nanoseconds on the shared [`TraceClock`]; 0 if disabled.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.inner.as_ref().map_or(0, |h| h.shared.clock.now_ns())
    }

    /// Appends a record. Never blocks on I/O and never fails: a full file or a failed write
    /// turns recording into counting (see [`Recorder::dropped`], [`Recorder::flush`]).
    #[inline]
    pub fn record(&self, rec: Record) {
        if let Some(h) = &self.inner {
            h.shared.record(&rec);
        }
    }

    /// Appends `payload` stamped with the current time.
    #[inline]
    pub fn record_now(&self, payload: Payload) {
        if let Some(h) = &self.inner {
            h.shared.record(&Record {
                t_ns: h.shared.clock.now_ns(),
                payload,
            });
        }
    }

    /// Writes everything recorded so far to the file (not to stable storage: a killed process
    /// keeps what the kernel has). Not async-signal-safe: call it from a thread, e.g. the one
    /// that noticed SIGTERM. Returns the first write error if recording stopped on one.
    pub fn flush(&self) -> Result<(), WriteError> {
        match &self.inner {
            Some(h) => h.shared.flush(),
            None => Ok(()),
        }
    }

    /// Ends the file in an orderly way: writes what is buffered, then the `Closed` record
    /// (FORMAT.md), so readers can tell this file from one whose writer was killed. Records
    /// after it are counted in [`Recorder::dropped`], not written. Dropping the last clone
    /// closes too; closing twice is harmless. Returns the first write error, as `flush`.
    pub fn close(&self) -> Result<(), WriteError> {
        match &self.inner {
            Some(h) => h.shared.close(),
            None => Ok(()),
        }
    }

    /// Records not written because the file reached its cap or the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |h| h.shared.dropped.load(Relaxed) + h.shared.lost.load(Relaxed))
    }

    /// The trace file's path, if enabled.
    pub fn path(&self) -> Option<&Path> {
        self.inner.as_ref().map(|h| h.shared.path.as_path())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // A failure is already kept in the sink; nobody is left to report it to.
        let _ = self.shared.close();
        {
            let mut st = self.shared.lock_state();
            st.closing = true;
            self.shared.wake.notify_one();
        }
        let thread = self.thread.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            // The thread's last act is a final flush; a panic in it has nothing left to tell us.
            let _ = t.join();
        }
    }
}

/// Fills in the frame CRCs of whole frames laid back to back (a swapped-out buffer, before
/// it is written). Frames are buffered without their CRC: computing it here, on the writer
/// thread, keeps it off the recording (DMA) path.
fn seal_frames(buf: &mut [u8]) {
    let mut at = 0;
    while at + FRAME_HEADER_LEN <= buf.len() {
        let body = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        debug_assert!(
            at + FRAME_HEADER_LEN + body <= buf.len(),
            "buffer holds whole frames only"
        );
        let end = (at + FRAME_HEADER_LEN + body).min(buf.len());
        let crc = phyr_kernels::crc32c::crc32c(&buf[at + FRAME_HEADER_LEN..end]);
        buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

thread_local! {
    /// Per-thread frame buffer for [`Shared::record`] (no allocation per record).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_sink(&self) -> MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, rec: &Record) {
        if self.stopped.load(Relaxed) {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        // Encode the frame before taking the lock, so the critical section is a copy; its CRC
        // is left to the writer thread (`seal_frames`). The hot paths (every transfer, every
        // command) build the whole frame on the stack.
        match &rec.payload {
            Payload::Dma(d) => return self.append(&dma_frame(rec.t_ns, d, false)),
            Payload::Event { endpoint, event } => {
                if let Some(f) = command_done_frame(rec.t_ns, *endpoint, event, false) {
                    return self.append(&f);
                }
            }
        }
        let encode = |frame: &mut Vec<u8>| {
            frame.clear();
            encode_frame(rec, false, frame);
            self.append_slice(frame);
        };
        let done = SCRATCH
            .try_with(|scratch| scratch.try_borrow_mut().map(|mut frame| encode(&mut frame)).is_ok())
            .unwrap_or(false);
        if !done {
            // Thread-local storage torn down (a record from a thread's exit path).
            encode(&mut Vec::new());
        }
    }

    /// Generic over the frame size so that the hot paths' copies have a constant length.
    fn append<const N: usize>(&self, frame: &[u8; N]) {
        self.append_slice(frame);
    }

    #[inline(always)]
    fn append_slice(&self, frame: &[u8]) {
        let mut st = self.lock_state();
        if self.stopped.load(Relaxed) {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        if st.buf.len() >= self.cfg.max_buffer {
            drop(st);
            self.lost.fetch_add(1, Relaxed);
            return;
        }
        let n = frame.len() as u64;
        if st.committed + n + RESERVE > self.cfg.max_bytes {
            self.stopped.store(true, Relaxed);
            self.dropped.fetch_add(1, Relaxed);
            let marker = MarkerPos {
                offset: st.committed,
                t_ns: self.clock.now_ns(),
            };
            encode_frame(&self.marker_record(marker, 1), false, &mut st.buf);
            st.committed += MARKER_LEN;
            st.marker = Some(marker);
            st.flush_wanted = true;
            self.wake.notify_one();
            return;
        }
        st.buf.extend_from_slice(frame);
        st.committed += n;
        if st.buf.len() >= self.cfg.flush_threshold && !st.flush_wanted {
            st.flush_wanted = true;
            self.wake.notify_one();
        }
    }

    fn marker_record(&self, m: MarkerPos, records: u64) -> Record {
        Record {
            t_ns: m.t_ns,
            payload: Payload::Event {
                endpoint: self.endpoint,
                event: Event::Dropped { records },
            },
        }
    }

    fn write_error(&self, sink: &Sink) -> Result<(), WriteError> {
        match &sink.error {
            None => Ok(()),
            Some((offset, kind, msg)) => Err(WriteError::Write {
                path: self.path.clone(),
                offset: *offset,
                source: io::Error::new(*kind, msg.clone()),
            }),
        }
    }

    /// Moves the buffer to the file. The sink lock is taken first and held across the write,
    /// so concurrent flushes write buffers in the order they were taken.
    fn flush(&self) -> Result<(), WriteError> {
        let mut sink = self.lock_sink();
        self.write_error(&sink)?;
        let spare = std::mem::take(&mut sink.spare);
        let (mut buf, marker) = {
            let mut st = self.lock_state();
            st.flush_wanted = false;
            let lost = self.lost.swap(0, Relaxed);
            if lost > 0 {
                if !self.stopped.load(Relaxed) && st.committed + MARKER_LEN + RESERVE <= self.cfg.max_bytes {
                    let m = MarkerPos {
                        offset: st.committed,
                        t_ns: self.clock.now_ns(),
                    };
                    let rec = self.marker_record(m, lost);
                    encode_frame(&rec, false, &mut st.buf);
                    st.committed += MARKER_LEN;
                } else {
                    self.dropped.fetch_add(lost, Relaxed);
                }
            }
            (std::mem::replace(&mut st.buf, spare), st.marker)
        };
        if self.cfg.frame_crc {
            seal_frames(&mut buf);
        }
        let result = sink.file.write_all(&buf);
        let at = sink.pos;
        let written = buf.len() as u64;
        buf.clear();
        sink.spare = buf;
        if let Err(e) = result {
            return self.fail(&mut sink, at, e);
        }
        sink.pos += written;
        if let Some(m) = marker {
            let count = self.dropped.load(Relaxed);
            if sink.pos >= m.offset + MARKER_LEN && count != sink.marker_count {
                let mut frame = Vec::with_capacity(MARKER_LEN as usize);
                encode_frame(&self.marker_record(m, count), self.cfg.frame_crc, &mut frame);
                // One small positioned write of a whole frame: the count is either the old or
                // the new one, never a mix, for a reader after a kill.
                if let Err(e) = sink.file.write_all_at(&frame, m.offset) {
                    return self.fail(&mut sink, m.offset, e);
                }
                sink.marker_count = count;
            }
        }
        Ok(())
    }

    /// Flushes, appends the `Closed` record (room for it is always kept), flushes again.
    fn close(&self) -> Result<(), WriteError> {
        // First what is pending, with a marker for records the writer could not keep up with.
        self.flush()?;
        {
            let mut st = self.lock_state();
            if st.closed {
                return Ok(());
            }
            st.closed = true;
            self.stopped.store(true, Relaxed);
            let rec = Record {
                t_ns: self.clock.now_ns(),
                payload: Payload::Event {
                    endpoint: self.endpoint,
                    event: Event::Closed,
                },
            };
            st.committed += encode_frame(&rec, false, &mut st.buf) as u64;
        }
        self.flush()
    }

    fn fail(&self, sink: &mut Sink, offset: u64, e: io::Error) -> Result<(), WriteError> {
        self.stopped.store(true, Relaxed);
        sink.error = Some((offset, e.kind(), e.to_string()));
        self.write_error(sink)
    }

    fn run(self: Arc<Self>) {
        loop {
            let closing = {
                let st = self.lock_state();
                let (st, _) = self
                    .wake
                    .wait_timeout_while(st, self.cfg.flush_interval, |s| !s.flush_wanted && !s.closing)
                    .unwrap_or_else(|e| e.into_inner());
                st.closing
            };
            // A failure is kept in the sink and reported by the next `Recorder::flush`.
            let _ = self.flush();
            if closing {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{read_bytes, Tail};
    use crate::testutil::{dma, sample_records, temp_dir};

    fn read(path: &Path) -> crate::reader::TraceContents {
        read_bytes(&fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn records_round_trip_through_a_file() {
        let dir = temp_dir("writer-rt");
        let rec = Recorder::create(&dir, 1, &TraceConfig::default(), &TraceClock::new()).unwrap();
        assert!(rec.is_enabled() && rec.wants_crc());
        for r in sample_records() {
            rec.clone().record(r);
        }
        let path = rec.path().unwrap().to_owned();
        assert_eq!(path, dir.join("ep1.phyrtrace"));
        drop(rec);
        let c = read(&path);
        assert_eq!(c.tail, Tail::Clean);
        assert_eq!(c.header.endpoint, 1);
        let mut got: Vec<Record> = c.records.into_iter().map(|(_, r)| r).collect();
        let last = got.pop().expect("a Closed record");
        assert!(
            matches!(
                last.payload,
                Payload::Event {
                    endpoint: 1,
                    event: Event::Closed
                }
            ),
            "{last:?}"
        );
        assert_eq!(got, sample_records());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn close_ends_the_file_with_a_closed_record_and_drops_later_records() {
        let dir = temp_dir("writer-close");
        let rec = Recorder::create(&dir, 4, &TraceConfig::default(), &TraceClock::new()).unwrap();
        rec.record(dma(1, 4, 1, 0x1000, 8, 0));
        let path = rec.path().unwrap().to_owned();
        assert!(!read(&path).closure.is_closed(), "open until closed");
        rec.close().unwrap();
        rec.record(dma(2, 4, 2, 0x2000, 8, 0));
        rec.close().unwrap();
        drop(rec);
        let c = read(&path);
        assert_eq!(c.tail, Tail::Clean);
        assert_eq!(c.records.len(), 2, "the record, then Closed; nothing after it");
        assert!(matches!(
            c.records[1].1.payload,
            Payload::Event {
                event: Event::Closed,
                ..
            }
        ));
        assert_eq!(c.closure.to_string(), "closed by the device");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sealing_fills_in_the_crc_of_every_frame() {
        let records = sample_records();
        for k in 0..=records.len() {
            let (mut open, mut sealed) = (Vec::new(), Vec::new());
            for r in &records[..k] {
                encode_frame(r, false, &mut open);
                encode_frame(r, true, &mut sealed);
            }
            seal_frames(&mut open);
            assert_eq!(open, sealed, "{k} frames");
        }
    }

    #[test]
    fn disabled_recorder_does_nothing() {
        let rec = Recorder::disabled();
        assert!(!rec.is_enabled() && !rec.wants_crc());
        rec.record(dma(1, 0, 0, 0, 1, 0));
        assert_eq!(rec.now_ns(), 0);
        assert!(rec.flush().is_ok());
        assert_eq!(rec.dropped(), 0);
    }

    #[test]
    fn writer_thread_flushes_within_the_interval_without_explicit_flush() {
        let dir = temp_dir("writer-interval");
        let cfg = TraceConfig {
            flush_interval: Duration::from_millis(20),
            ..TraceConfig::default()
        };
        let rec = Recorder::create(&dir, 0, &cfg, &TraceClock::new()).unwrap();
        rec.record_now(dma(0, 0, 1, 0x1000, 8, 0).payload);
        let path = rec.path().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(5);
        while read(&path).records.is_empty() {
            assert!(Instant::now() < deadline, "record never reached the file");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(rec);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn full_file_stops_at_the_cap_and_counts_drops_in_a_marker() {
        let dir = temp_dir("writer-cap");
        let cfg = TraceConfig {
            max_bytes: 1000,
            ..TraceConfig::default()
        };
        let rec = Recorder::create(&dir, 2, &cfg, &TraceClock::new()).unwrap();
        for i in 0..100 {
            rec.record(dma(i, 2, i as u16, 0x1000, 8, 0));
        }
        rec.flush().unwrap();
        let path = rec.path().unwrap().to_owned();
        // frames are 72 bytes; 32 + 24 bytes are kept for the marker and the Closed record:
        // (1000 - 64 - 56) / 72 = 12 fit.
        let fits = 12;
        assert_eq!(rec.dropped(), 100 - fits);
        assert!(!rec.wants_crc(), "a full recorder no longer asks for CRCs");
        let check = |expect_dropped: u64, closed: bool| {
            let c = read(&path);
            assert_eq!(c.tail, Tail::Clean);
            assert!(fs::metadata(&path).unwrap().len() <= 1000);
            assert_eq!(c.records.len() as u64, fits + 1 + u64::from(closed));
            assert_eq!(c.closure.is_closed(), closed);
            match &c.records[fits as usize].1.payload {
                Payload::Event {
                    event: Event::Dropped { records },
                    endpoint: 2,
                } => {
                    assert_eq!(*records, expect_dropped)
                }
                other => panic!("expected a Dropped marker, got {other:?}"),
            }
        };
        check(100 - fits, false);
        for i in 0..50 {
            rec.record(dma(i, 2, 0, 0, 8, 0));
        }
        drop(rec);
        // The marker keeps its place and count; the Closed record fits behind it.
        check(150 - fits, true);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_cap_smaller_than_header_plus_marker() {
        let dir = temp_dir("writer-tiny");
        let cfg = TraceConfig {
            max_bytes: 10,
            ..TraceConfig::default()
        };
        let err = Recorder::create(&dir, 0, &cfg, &TraceClock::new()).unwrap_err();
        assert!(matches!(
            err,
            WriteError::CapTooSmall {
                max_bytes: 10,
                min: 120
            }
        ));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writer_falling_behind_drops_and_reports_it() {
        let dir = temp_dir("writer-behind");
        let cfg = TraceConfig {
            max_buffer: 720,
            flush_threshold: 1 << 20,
            flush_interval: Duration::from_secs(3600),
            ..TraceConfig::default()
        };
        let rec = Recorder::create(&dir, 0, &cfg, &TraceClock::new()).unwrap();
        for i in 0..30 {
            rec.record(dma(i, 0, 0, 0, 8, 0));
        }
        assert_eq!(rec.dropped(), 20);
        rec.flush().unwrap();
        let c = read(rec.path().unwrap());
        assert_eq!(c.records.len(), 11);
        assert!(matches!(
            c.records[10].1.payload,
            Payload::Event {
                event: Event::Dropped { records: 20 },
                ..
            }
        ));
        drop(rec);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn many_threads_recording_concurrently_lose_nothing() {
        let dir = temp_dir("writer-threads");
        let cfg = TraceConfig {
            flush_threshold: 4096,
            ..TraceConfig::default()
        };
        let rec = Recorder::create(&dir, 0, &cfg, &TraceClock::new()).unwrap();
        let path = rec.path().unwrap().to_owned();
        std::thread::scope(|s| {
            for q in 0..4u16 {
                let rec = rec.clone();
                s.spawn(move || {
                    for i in 0..5000u16 {
                        let mut r = dma(rec.now_ns(), 0, i, 0, 8, 0);
                        if let Payload::Dma(d) = &mut r.payload {
                            d.queue = q;
                        }
                        rec.record(r);
                    }
                });
            }
        });
        drop(rec);
        let c = read(&path);
        assert_eq!(c.records.len(), 20_001, "every record, then Closed");
        assert!(c.closure.is_closed());
        for q in 0..4u16 {
            let ids: Vec<u16> = c
                .records
                .iter()
                .filter_map(|(_, r)| match &r.payload {
                    Payload::Dma(d) if d.queue == q => Some(d.command_id),
                    _ => None,
                })
                .collect();
            assert_eq!(ids, (0..5000).collect::<Vec<u16>>(), "queue {q} out of order");
        }
        fs::remove_dir_all(dir).unwrap();
    }
}
