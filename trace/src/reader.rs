//! Streaming reader of `.phyrtrace` files.
//!
//! Returns every complete record, in file order, with its file offset. A tail cut short (a
//! writer killed mid-write, or a file still being written) ends iteration and is *reported*
//! through [`TraceReader::tail`]; a damaged frame with data after it is an error naming the
//! offset, because then the damage is not explained by an interrupted append.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::format::{decode_body, get32, FormatError, Header, FRAME_HEADER_LEN, HEADER_LEN, MAX_BODY};
use crate::record::{Event, Payload, Record};

/// How a file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// At a frame boundary: nothing was lost.
    Clean,
    /// The last frame is cut short: `bytes` bytes of it start at `offset`.
    Truncated { offset: u64, bytes: u64 },
    /// The last frame is whole but fails its CRC and nothing follows it (a torn write).
    TornFrame { offset: u64, bytes: u64 },
    /// From `offset` on the file holds only zeros (the size grew, the data never landed).
    ZeroFilled { offset: u64, bytes: u64 },
}

impl Tail {
    pub fn is_clean(&self) -> bool {
        matches!(self, Tail::Clean)
    }
}

impl std::fmt::Display for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tail::Clean => write!(f, "complete"),
            Tail::Truncated { offset, bytes } => {
                write!(
                    f,
                    "truncated: an incomplete record of {bytes} bytes at offset {offset} was ignored"
                )
            }
            Tail::TornFrame { offset, bytes } => {
                write!(
                    f,
                    "torn: the last record ({bytes} bytes at offset {offset}) fails its CRC and was ignored"
                )
            }
            Tail::ZeroFilled { offset, bytes } => write!(f, "{bytes} zero bytes from offset {offset} were ignored"),
        }
    }
}

/// Whether the writer closed the file (its last record is `Event::Closed`, FORMAT.md), and
/// where the records end when it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closure {
    /// The writer shut down in an orderly way: the last record is `Closed`.
    Closed { t_ns: u64, offset: u64 },
    /// No `Closed` record: the writer was killed (SIGKILL, a crash, power loss) or is still
    /// recording. `last` is the last complete record's `t_ns` and frame offset, if any.
    Open { last: Option<(u64, u64)> },
}

impl Closure {
    pub fn is_closed(&self) -> bool {
        matches!(self, Closure::Closed { .. })
    }
}

impl std::fmt::Display for Closure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = "ends without a close record: the device was killed or is still running";
        match self {
            Closure::Closed { .. } => write!(f, "closed by the device"),
            Closure::Open { last: None } => write!(f, "{open}; no records"),
            Closure::Open {
                last: Some((t_ns, offset)),
            } => write!(
                f,
                "{open}; last record at {}.{:06} ms, offset {offset}",
                t_ns / 1_000_000,
                t_ns % 1_000_000
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("I/O error at offset {offset}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// A read error with the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: ReadError,
}

/// Iterates over the records of a trace stream.
pub struct TraceReader<R> {
    src: R,
    header: Header,
    offset: u64,
    tail: Option<Tail>,
    failed: bool,
    body: Vec<u8>,
    /// The last complete record's `t_ns` and frame offset, and whether it is `Closed`.
    last: Option<(u64, u64, bool)>,
}

impl TraceReader<BufReader<File>> {
    /// Opens a trace file and reads its header.
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let wrap = |source| FileError {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(|source| wrap(ReadError::Io { offset: 0, source }))?;
        TraceReader::new(BufReader::with_capacity(1 << 16, file)).map_err(wrap)
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads the header from `src`, which must be positioned at the start of a file.
    pub fn new(mut src: R) -> Result<Self, ReadError> {
        let mut h = [0u8; HEADER_LEN];
        let got = fill(&mut src, &mut h, 0)?;
        let header = Header::decode(&h[..got])?;
        Ok(Self::resume(src, header, HEADER_LEN as u64))
    }

    /// Continues reading at frame offset `offset` of a file whose header is `header`; `src`
    /// must be positioned there (follow mode re-opens a growing file this way).
    pub fn resume(src: R, header: Header, offset: u64) -> Self {
        TraceReader {
            src,
            header,
            offset,
            tail: None,
            failed: false,
            body: Vec::with_capacity(128),
            last: None,
        }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Offset just past the last complete frame returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How the stream ended; `None` until iteration has reached the end.
    pub fn tail(&self) -> Option<Tail> {
        self.tail
    }

    /// Whether the records read so far end with the writer's `Closed` record (meaningful once
    /// iteration has reached the end).
    pub fn closure(&self) -> Closure {
        match self.last {
            Some((t_ns, offset, true)) => Closure::Closed { t_ns, offset },
            Some((t_ns, offset, false)) => Closure::Open {
                last: Some((t_ns, offset)),
            },
            None => Closure::Open { last: None },
        }
    }

    /// The next record and its frame offset; `Ok(None)` at the end (see [`Self::tail`]).
    pub fn next_record(&mut self) -> Result<Option<(u64, Record)>, ReadError> {
        if self.tail.is_some() || self.failed {
            return Ok(None);
        }
        let r = self.read_frame();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn read_frame(&mut self) -> Result<Option<(u64, Record)>, ReadError> {
        let at = self.offset;
        let mut fh = [0u8; FRAME_HEADER_LEN];
        let got = fill(&mut self.src, &mut fh, at)?;
        if got == 0 {
            self.tail = Some(Tail::Clean);
            return Ok(None);
        }
        if got < FRAME_HEADER_LEN {
            return self.end_with(self.tail_of(&fh[..got], at)?);
        }
        let len = get32(&fh, 0);
        let stored = get32(&fh, 4);
        if len == 0 || len > MAX_BODY {
            if fh.iter().all(|&b| b == 0) {
                if let Some(zeros) = self.rest_is_zero(at + FRAME_HEADER_LEN as u64)? {
                    return self.end_with(Tail::ZeroFilled {
                        offset: at,
                        bytes: FRAME_HEADER_LEN as u64 + zeros,
                    });
                }
            }
            return Err(FormatError::BadFrameLength { offset: at, len }.into());
        }
        self.body.resize(len as usize, 0);
        let got = fill(&mut self.src, &mut self.body, at)?;
        if got < len as usize {
            let bytes = (FRAME_HEADER_LEN + got) as u64;
            return self.end_with(Tail::Truncated { offset: at, bytes });
        }
        if self.header.frame_crc {
            let computed = phyr_kernels::crc32c::crc32c(&self.body);
            if computed != stored {
                let mut probe = [0u8; 1];
                if fill(&mut self.src, &mut probe, at)? == 0 {
                    let bytes = FRAME_HEADER_LEN as u64 + u64::from(len);
                    return self.end_with(Tail::TornFrame { offset: at, bytes });
                }
                return Err(FormatError::FrameCrc {
                    offset: at,
                    stored,
                    computed,
                }
                .into());
            }
        }
        let rec = decode_body(&self.body, at)?;
        self.offset = at + FRAME_HEADER_LEN as u64 + u64::from(len);
        let closed = matches!(
            rec.payload,
            Payload::Event {
                event: Event::Closed,
                ..
            }
        );
        self.last = Some((rec.t_ns, at, closed));
        Ok(Some((at, rec)))
    }

    /// Classifies a partial frame that reaches end of file.
    fn tail_of(&self, bytes: &[u8], at: u64) -> Result<Tail, ReadError> {
        let n = bytes.len() as u64;
        if bytes.iter().all(|&b| b == 0) {
            return Ok(Tail::ZeroFilled { offset: at, bytes: n });
        }
        if bytes.len() >= 4 {
            let len = get32(bytes, 0);
            if len == 0 || len > MAX_BODY {
                return Err(FormatError::BadFrameLength { offset: at, len }.into());
            }
        }
        Ok(Tail::Truncated { offset: at, bytes: n })
    }

    fn end_with(&mut self, tail: Tail) -> Result<Option<(u64, Record)>, ReadError> {
        self.tail = Some(tail);
        Ok(None)
    }

    /// Reads to end of file; `Some(count)` if every byte was zero.
    fn rest_is_zero(&mut self, offset: u64) -> Result<Option<u64>, ReadError> {
        let mut buf = [0u8; 4096];
        let mut total = 0u64;
        loop {
            let got = fill(&mut self.src, &mut buf, offset + total)?;
            if buf[..got].iter().any(|&b| b != 0) {
                return Ok(None);
            }
            total += got as u64;
            if got < buf.len() {
                return Ok(Some(total));
            }
        }
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<(u64, Record), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Reads until `buf` is full or end of file; returns the count read.
fn fill(src: &mut impl Read, buf: &mut [u8], offset: u64) -> Result<usize, ReadError> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ReadError::Io { offset, source }),
        }
    }
    Ok(got)
}

/// Everything in one trace file.
#[derive(Debug)]
pub struct TraceContents {
    pub header: Header,
    pub records: Vec<(u64, Record)>,
    pub tail: Tail,
    pub closure: Closure,
}

/// Reads a whole in-memory trace (tests, small files).
pub fn read_bytes(bytes: &[u8]) -> Result<TraceContents, ReadError> {
    let mut r = TraceReader::new(bytes)?;
    let mut records = Vec::new();
    while let Some(rec) = r.next_record()? {
        records.push(rec);
    }
    let tail = r.tail().unwrap_or(Tail::Clean);
    let closure = r.closure();
    Ok(TraceContents {
        header: r.header,
        records,
        tail,
        closure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_frame;
    use crate::testutil::sample_records;

    fn file(frame_crc: bool) -> (Vec<u8>, Vec<u64>) {
        let h = Header {
            endpoint: 1,
            frame_crc,
            data_crc: true,
            start_unix_ns: 5,
            max_bytes: 1 << 20,
        };
        let mut b = h.encode().to_vec();
        let mut ends = vec![b.len() as u64];
        for rec in sample_records() {
            encode_frame(&rec, frame_crc, &mut b);
            ends.push(b.len() as u64);
        }
        (b, ends)
    }

    #[test]
    fn reads_every_record_with_offsets() {
        let (b, ends) = file(true);
        let c = read_bytes(&b).unwrap();
        assert_eq!(c.tail, Tail::Clean);
        let recs: Vec<_> = c.records.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(recs, sample_records());
        let offsets: Vec<u64> = c.records.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, ends[..ends.len() - 1]);
    }

    #[test]
    fn file_cut_at_every_byte_offset_yields_the_complete_prefix() {
        for crc in [true, false] {
            let (b, ends) = file(crc);
            for cut in 0..=b.len() {
                match read_bytes(&b[..cut]) {
                    Err(ReadError::Format(FormatError::HeaderTruncated { len })) => {
                        assert!(cut < HEADER_LEN && len == cut)
                    }
                    Err(e) => panic!("cut at {cut}: unexpected error {e}"),
                    Ok(c) => {
                        let complete = ends.iter().filter(|&&e| e <= cut as u64).count() - 1;
                        assert_eq!(c.records.len(), complete, "cut at {cut}");
                        let at_boundary = ends.contains(&(cut as u64));
                        assert_eq!(c.tail.is_clean(), at_boundary, "cut at {cut}: {:?}", c.tail);
                    }
                }
            }
        }
    }

    #[test]
    fn corrupt_middle_record_is_an_error_with_its_offset() {
        let (mut b, ends) = file(true);
        let victim = ends[2] as usize;
        b[victim + FRAME_HEADER_LEN + 20] ^= 0xff;
        let err = read_bytes(&b).unwrap_err();
        assert!(
            matches!(err, ReadError::Format(FormatError::FrameCrc { offset, .. }) if offset == victim as u64),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("offset {victim}")));
    }

    #[test]
    fn corrupt_last_record_is_reported_as_torn_tail() {
        let (mut b, ends) = file(true);
        let last = ends[ends.len() - 2] as usize;
        let n = b.len();
        b[n - 1] ^= 0x01;
        let c = read_bytes(&b).unwrap();
        assert_eq!(c.records.len(), sample_records().len() - 1);
        assert_eq!(
            c.tail,
            Tail::TornFrame {
                offset: last as u64,
                bytes: (n - last) as u64
            }
        );
    }

    #[test]
    fn zero_filled_tail_is_reported_not_fatal() {
        let (mut b, _) = file(true);
        let n = b.len();
        b.resize(n + 5000, 0);
        let c = read_bytes(&b).unwrap();
        assert_eq!(c.records.len(), sample_records().len());
        assert_eq!(
            c.tail,
            Tail::ZeroFilled {
                offset: n as u64,
                bytes: 5000
            }
        );
    }

    #[test]
    fn rejects_frame_with_huge_length_in_the_middle() {
        let (mut b, ends) = file(false);
        let victim = ends[1] as usize;
        b[victim..victim + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = read_bytes(&b).unwrap_err();
        assert!(
            matches!(err, ReadError::Format(FormatError::BadFrameLength { offset, len: u32::MAX }) if offset == victim as u64)
        );
    }

    #[test]
    fn rejects_zero_length_frame_followed_by_data() {
        let (mut b, ends) = file(false);
        let victim = ends[1] as usize;
        b[victim..victim + 8].fill(0);
        assert!(matches!(
            read_bytes(&b),
            Err(ReadError::Format(FormatError::BadFrameLength { len: 0, .. }))
        ));
    }

    #[test]
    fn a_file_without_a_closed_record_says_where_its_records_end() {
        let (b, ends) = file(true);
        let c = read_bytes(&b).unwrap();
        let last = *ends.iter().rev().nth(1).unwrap();
        let t_ns = sample_records().last().unwrap().t_ns;
        assert_eq!(
            c.closure,
            Closure::Open {
                last: Some((t_ns, last))
            }
        );
        assert_eq!(t_ns, 48);
        assert_eq!(
            c.closure.to_string(),
            format!(
                "ends without a close record: the device was killed or is still running; last record at 0.000048 ms, offset {last}"
            )
        );
        let empty = read_bytes(&b[..HEADER_LEN]).unwrap();
        assert_eq!(empty.closure, Closure::Open { last: None });
        // The same file with the writer's Closed record appended.
        let mut closed = b.clone();
        let rec = Record {
            t_ns: 1_234_567_890,
            payload: Payload::Event {
                endpoint: 1,
                event: Event::Closed,
            },
        };
        encode_frame(&rec, true, &mut closed);
        let c = read_bytes(&closed).unwrap();
        assert_eq!(
            c.closure,
            Closure::Closed {
                t_ns: 1_234_567_890,
                offset: b.len() as u64
            }
        );
        assert_eq!(c.closure.to_string(), "closed by the device");
        // A Closed record cut short at the end is no close: the records end before it.
        let c = read_bytes(&closed[..closed.len() - 3]).unwrap();
        assert_eq!(
            c.closure,
            Closure::Open {
                last: Some((t_ns, last))
            }
        );
        assert!(!c.tail.is_clean());
    }

    #[test]
    fn rejects_garbage_that_is_not_a_trace() {
        let junk = vec![0x41u8; 200];
        assert!(matches!(
            read_bytes(&junk),
            Err(ReadError::Format(FormatError::BadMagic { .. }))
        ));
        assert!(matches!(
            read_bytes(&[]),
            Err(ReadError::Format(FormatError::HeaderTruncated { len: 0 }))
        ));
    }

    #[test]
    fn errors_stop_iteration() {
        let (mut b, ends) = file(true);
        b[ends[1] as usize + 12] ^= 1;
        let mut r = TraceReader::new(&b[..]).unwrap();
        assert!(r.next().unwrap().is_ok());
        assert!(r.next().unwrap().is_err());
        assert!(r.next().is_none());
    }
}
