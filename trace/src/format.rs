//! The `.phyrtrace` binary file format, version 2 (version 1 files, whose `DmaMap` events have no fd offset, are read too): encoding and decoding of the header and
//! frames. The layout (every offset, field, tag and the writing and reading rules) is written
//! out once, in `trace/FORMAT.md`; the constants and `encode_*`/`decode_*` functions here are
//! its implementation, and the tests in `tests/format_props.rs` hold them to it.

use phyr_kernels::crc32c::{crc32c, crc32c_words};

use crate::record::{Direction, DmaRecord, Event, Payload, Record, Space, Target};

pub const MAGIC: [u8; 8] = *b"PHYRTRC\0";
pub const VERSION: u16 = 2;
/// The oldest version this reader reads (1: `DmaMap` events without the fd offset).
pub const MIN_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 64;
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest body a valid frame can have; anything longer is corruption.
pub const MAX_BODY: u32 = 4096;
/// Longest `Event::Error` message stored; the writer cuts longer ones at a char boundary.
pub const MAX_MESSAGE: usize = 1024;
pub const FLAG_FRAME_CRC: u32 = 1 << 0;
pub const FLAG_DATA_CRC: u32 = 1 << 1;
pub const CLOCK_MONOTONIC_SINCE_START: u32 = 1;

const KIND_DMA: u8 = 1;
const KIND_EVENT: u8 = 2;
/// Event tag of `CommandDone` (FORMAT.md).
const TAG_COMMAND_DONE: u8 = 5;
/// Event tag of `Closed` (FORMAT.md).
const TAG_CLOSED: u8 = 10;
/// Size of a `Closed` event's frame (header + 16-byte body): the room a writer keeps for it.
pub const CLOSED_FRAME_LEN: usize = FRAME_HEADER_LEN + EVENT_PREFIX_LEN;
const DMA_BODY_LEN: usize = 64;
const EVENT_PREFIX_LEN: usize = 16;

/// What went wrong decoding a header or a frame. Offsets are file offsets.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("file is {len} bytes, shorter than the {HEADER_LEN}-byte trace header")]
    HeaderTruncated { len: usize },
    #[error("not a phyr trace file (magic {found:02x?})")]
    BadMagic { found: [u8; 8] },
    #[error("trace format version {version} is not supported (this reader knows versions {MIN_VERSION} to {VERSION})")]
    UnsupportedVersion { version: u16 },
    #[error("header length {len} is not {HEADER_LEN}")]
    BadHeaderLen { len: u16 },
    #[error("header CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderCrc { stored: u32, computed: u32 },
    #[error("header has unknown flag bits {flags:#x}")]
    UnknownFlags { flags: u32 },
    #[error("frame at offset {offset}: body length {len} is out of range 1..={MAX_BODY}")]
    BadFrameLength { offset: u64, len: u32 },
    #[error("frame at offset {offset}: CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    FrameCrc { offset: u64, stored: u32, computed: u32 },
    #[error("frame at offset {offset}: unknown record kind {kind}")]
    UnknownKind { offset: u64, kind: u8 },
    #[error("frame at offset {offset}: unknown event tag {tag}")]
    UnknownEvent { offset: u64, tag: u8 },
    #[error("frame at offset {offset}: {what} body is {found} bytes, expected {expected}")]
    BodyLength {
        offset: u64,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("frame at offset {offset}: field `{field}` has invalid value {value}")]
    BadField {
        offset: u64,
        field: &'static str,
        value: u64,
    },
    #[error("frame at offset {offset}: error message is not valid UTF-8")]
    BadUtf8 { offset: u64 },
}

/// The decoded file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub endpoint: u16,
    /// Frames carry a CRC32C of their body.
    pub frame_crc: bool,
    /// DMA records carry a CRC32C of the bytes moved (when the access succeeded).
    pub data_crc: bool,
    /// Wall-clock time of t_ns = 0, in ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// The size cap the writer enforced.
    pub max_bytes: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        put16(&mut b, 8, VERSION);
        put16(&mut b, 10, HEADER_LEN as u16);
        let flags = if self.frame_crc { FLAG_FRAME_CRC } else { 0 } | if self.data_crc { FLAG_DATA_CRC } else { 0 };
        put32(&mut b, 12, flags);
        put16(&mut b, 16, self.endpoint);
        put32(&mut b, 20, CLOCK_MONOTONIC_SINCE_START);
        put64(&mut b, 24, self.start_unix_ns);
        put64(&mut b, 32, self.max_bytes);
        let crc = crc32c(&b[..60]);
        put32(&mut b, 60, crc);
        b
    }

    /// Decodes and validates a header from the first bytes of a file.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < HEADER_LEN {
            return Err(FormatError::HeaderTruncated { len: b.len() });
        }
        let mut found = [0u8; 8];
        found.copy_from_slice(&b[0..8]);
        if found != MAGIC {
            return Err(FormatError::BadMagic { found });
        }
        let version = get16(b, 8);
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion { version });
        }
        let len = get16(b, 10);
        if len as usize != HEADER_LEN {
            return Err(FormatError::BadHeaderLen { len });
        }
        let stored = get32(b, 60);
        let computed = crc32c(&b[..60]);
        if stored != computed {
            return Err(FormatError::HeaderCrc { stored, computed });
        }
        let flags = get32(b, 12);
        if flags & !(FLAG_FRAME_CRC | FLAG_DATA_CRC) != 0 {
            return Err(FormatError::UnknownFlags { flags });
        }
        Ok(Header {
            endpoint: get16(b, 16),
            frame_crc: flags & FLAG_FRAME_CRC != 0,
            data_crc: flags & FLAG_DATA_CRC != 0,
            start_unix_ns: get64(b, 24),
            max_bytes: get64(b, 32),
        })
    }
}

/// Appends one frame (length, CRC, body) holding `rec` to `out`; returns the frame's size.
pub fn encode_frame(rec: &Record, frame_crc: bool, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    encode_body(rec, out);
    let body_len = out.len() - start - FRAME_HEADER_LEN;
    let crc = if frame_crc {
        crc32c(&out[start + FRAME_HEADER_LEN..])
    } else {
        0
    };
    put32(&mut out[start..], 0, body_len as u32);
    put32(&mut out[start..], 4, crc);
    out.len() - start
}

/// Size of a DMA record's frame (header + 64-byte body).
pub const DMA_FRAME_LEN: usize = FRAME_HEADER_LEN + DMA_BODY_LEN;

/// The frame of a DMA record, built on the stack (the recorder's hot path; same bytes as
/// [`encode_frame`]). The body is composed as eight little-endian words in registers (storing
/// it field by field was slower, see trace/README.md), and with `frame_crc` checksummed from those words:
/// checksumming freshly stored bytes would stall on store-to-load forwarding. The recorder
/// itself passes `frame_crc = false` and leaves the CRC to its writer thread.
#[inline]
pub fn dma_frame(t_ns: u64, d: &DmaRecord, frame_crc: bool) -> [u8; DMA_FRAME_LEN] {
    words_frame(&dma_words(t_ns, d), frame_crc)
}

/// Size of a `CommandDone` event's frame (header + 32-byte body).
pub const COMMAND_DONE_FRAME_LEN: usize = FRAME_HEADER_LEN + 32;

/// The frame of a `CommandDone` event (once per command: the recorder's other hot path; same
/// bytes as [`encode_frame`]).
#[inline]
pub fn command_done_frame(
    t_ns: u64,
    endpoint: u16,
    done: &Event,
    frame_crc: bool,
) -> Option<[u8; COMMAND_DONE_FRAME_LEN]> {
    match *done {
        Event::CommandDone {
            queue,
            command_id,
            opcode,
            status,
            result,
        } => {
            let words = [
                u64::from(KIND_EVENT) | u64::from(TAG_COMMAND_DONE) << 8 | u64::from(endpoint) << 16,
                t_ns,
                u64::from(queue) | u64::from(command_id) << 16 | u64::from(opcode) << 32 | u64::from(status) << 48,
                result,
            ];
            Some(words_frame(&words, frame_crc))
        }
        _ => None,
    }
}

/// A frame whose body is `words` (little-endian), checksummed from the words (see
/// [`dma_frame`]). `F` must be 8 + 8 * words.len().
#[inline]
fn words_frame<const F: usize>(words: &[u64], frame_crc: bool) -> [u8; F] {
    debug_assert_eq!(F, FRAME_HEADER_LEN + 8 * words.len());
    let crc = if frame_crc { crc32c_words(words) } else { 0 };
    let mut f = [0u8; F];
    let body_len = (F - FRAME_HEADER_LEN) as u64;
    f[..8].copy_from_slice(&(body_len | u64::from(crc) << 32).to_le_bytes());
    for (chunk, w) in f[FRAME_HEADER_LEN..].chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    f
}

/// A DMA record's 64-byte body (FORMAT.md) as eight little-endian words.
#[inline]
fn dma_words(t_ns: u64, d: &DmaRecord) -> [u64; DMA_BODY_LEN / 8] {
    let direction: u64 = match d.direction {
        Direction::Read => 0,
        Direction::Write => 1,
    };
    let space: u64 = match d.space {
        Space::Iova => 0,
        Space::Bus => 1,
        Space::Message => 2,
    };
    // (target kind, bar, peer endpoint, mapping, offset)
    let (kind, bar, peer, mapping, offset): (u64, u64, u64, u64, u64) = match d.target {
        Target::None => (0, 0, 0, 0, 0),
        Target::GuestMemory { mapping, offset } => (1, 0, 0, mapping.into(), offset),
        Target::PeerBar { endpoint, bar, offset } => (2, bar.into(), endpoint.into(), 0, offset),
    };
    let (has_crc, crc): (u64, u64) = match d.crc32c {
        Some(c) => (1, c.into()),
        None => (0, 0),
    };
    [
        u64::from(KIND_DMA) | direction << 8 | space << 16 | kind << 24 | u64::from(d.dur_ns) << 32,
        t_ns,
        u64::from(d.endpoint)
            | u64::from(d.queue) << 16
            | u64::from(d.command_id) << 32
            | u64::from(d.opcode) << 48
            | u64::from(d.list) << 56,
        u64::from(d.segment) | u64::from(d.len) << 32,
        d.addr,
        u64::from(d.status) | has_crc << 16 | bar << 24 | crc << 32,
        peer | mapping << 32,
        offset,
    ]
}

fn encode_body(rec: &Record, out: &mut Vec<u8>) {
    match &rec.payload {
        Payload::Dma(d) => {
            for w in dma_words(rec.t_ns, d) {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        Payload::Event { endpoint, event } => {
            let mut p = [0u8; EVENT_PREFIX_LEN];
            p[0] = KIND_EVENT;
            put16(&mut p, 2, *endpoint);
            put64(&mut p, 8, rec.t_ns);
            let tag_at = out.len() + 1;
            out.extend_from_slice(&p);
            let tag = match event {
                Event::DmaMap {
                    iova,
                    size,
                    readable,
                    writable,
                    has_fd,
                    fd_offset,
                } => {
                    let flags = u8::from(*readable)
                        | u8::from(*writable) << 1
                        | u8::from(*has_fd) << 2
                        | u8::from(fd_offset.is_some()) << 3;
                    push_u64s(out, &[*iova, *size]);
                    out.extend_from_slice(&[flags, 0, 0, 0, 0, 0, 0, 0]);
                    push_u64s(out, &[fd_offset.unwrap_or(0)]);
                    1
                }
                Event::DmaUnmap { iova, size, all } => {
                    push_u64s(out, &[*iova, *size]);
                    out.extend_from_slice(&[u8::from(*all), 0, 0, 0, 0, 0, 0, 0]);
                    2
                }
                Event::Reset => 3,
                Event::Interrupt { vector } => {
                    out.extend_from_slice(&vector.to_le_bytes());
                    out.extend_from_slice(&[0u8; 6]);
                    4
                }
                Event::CommandDone {
                    queue,
                    command_id,
                    opcode,
                    status,
                    result,
                } => {
                    out.extend_from_slice(&queue.to_le_bytes());
                    out.extend_from_slice(&command_id.to_le_bytes());
                    out.extend_from_slice(&[*opcode, 0]);
                    out.extend_from_slice(&status.to_le_bytes());
                    out.extend_from_slice(&result.to_le_bytes());
                    TAG_COMMAND_DONE
                }
                Event::Connected => 6,
                Event::Disconnected => 7,
                Event::Error { message } => {
                    let msg = truncate_at_char(message, MAX_MESSAGE);
                    out.extend_from_slice(&(msg.len() as u16).to_le_bytes());
                    out.extend_from_slice(msg.as_bytes());
                    8
                }
                Event::Dropped { records } => {
                    out.extend_from_slice(&records.to_le_bytes());
                    9
                }
                Event::Closed => TAG_CLOSED,
            };
            out[tag_at] = tag;
        }
    }
}

/// Decodes one frame body; `offset` (the frame's file offset) only labels errors.
pub fn decode_body(b: &[u8], offset: u64) -> Result<Record, FormatError> {
    let kind = *b.first().ok_or(FormatError::BadFrameLength { offset, len: 0 })?;
    match kind {
        KIND_DMA => decode_dma(b, offset),
        KIND_EVENT => decode_event(b, offset),
        kind => Err(FormatError::UnknownKind { offset, kind }),
    }
}

fn decode_dma(b: &[u8], offset: u64) -> Result<Record, FormatError> {
    if b.len() != DMA_BODY_LEN {
        return Err(FormatError::BodyLength {
            offset,
            what: "DMA record",
            expected: DMA_BODY_LEN,
            found: b.len(),
        });
    }
    let bad = |field, value: u8| FormatError::BadField {
        offset,
        field,
        value: value.into(),
    };
    let direction = match b[1] {
        0 => Direction::Read,
        1 => Direction::Write,
        v => return Err(bad("direction", v)),
    };
    let space = match b[2] {
        0 => Space::Iova,
        1 => Space::Bus,
        2 => Space::Message,
        v => return Err(bad("space", v)),
    };
    let target = match b[3] {
        0 => Target::None,
        1 => Target::GuestMemory {
            mapping: get32(b, 52),
            offset: get64(b, 56),
        },
        2 => Target::PeerBar {
            endpoint: get16(b, 48),
            bar: b[43],
            offset: get64(b, 56),
        },
        v => return Err(bad("target kind", v)),
    };
    let crc32c = match b[42] {
        0 => None,
        1 => Some(get32(b, 44)),
        v => return Err(bad("has_crc", v)),
    };
    Ok(Record {
        t_ns: get64(b, 8),
        payload: Payload::Dma(DmaRecord {
            endpoint: get16(b, 16),
            queue: get16(b, 18),
            command_id: get16(b, 20),
            opcode: b[22],
            segment: get32(b, 24),
            list: b[23],
            direction,
            space,
            addr: get64(b, 32),
            len: get32(b, 28),
            target,
            status: get16(b, 40),
            crc32c,
            dur_ns: get32(b, 4),
        }),
    })
}

fn decode_event(b: &[u8], offset: u64) -> Result<Record, FormatError> {
    if b.len() < EVENT_PREFIX_LEN {
        return Err(FormatError::BodyLength {
            offset,
            what: "event",
            expected: EVENT_PREFIX_LEN,
            found: b.len(),
        });
    }
    let tag = b[1];
    let endpoint = get16(b, 2);
    let t_ns = get64(b, 8);
    let tail = &b[EVENT_PREFIX_LEN..];
    let need = |what: &'static str, n: usize| {
        if tail.len() == n {
            Ok(())
        } else {
            Err(FormatError::BodyLength {
                offset,
                what,
                expected: EVENT_PREFIX_LEN + n,
                found: b.len(),
            })
        }
    };
    let bool_at = |field, v: u8| match v {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(FormatError::BadField {
            offset,
            field,
            value: v.into(),
        }),
    };
    let event = match tag {
        1 => {
            // 48 bytes since version 2 (fd offset); version 1 files hold the 40-byte form.
            let (known, recorded) = match tail.len() {
                24 => (0b111, false),
                _ => {
                    need("DmaMap event", 32)?;
                    (0b1111, true)
                }
            };
            let flags = tail[16];
            let has_fd = flags & 4 != 0;
            let with_offset = flags & 8 != 0;
            if flags & !known != 0 || (with_offset && !has_fd) {
                return Err(FormatError::BadField {
                    offset,
                    field: "DmaMap flags",
                    value: flags.into(),
                });
            }
            let fd_offset = (recorded && with_offset).then(|| get64(tail, 24));
            if recorded && !with_offset && get64(tail, 24) != 0 {
                return Err(FormatError::BadField {
                    offset,
                    field: "DmaMap fd_offset without flag bit 3",
                    value: get64(tail, 24),
                });
            }
            Event::DmaMap {
                iova: get64(tail, 0),
                size: get64(tail, 8),
                readable: flags & 1 != 0,
                writable: flags & 2 != 0,
                has_fd,
                fd_offset,
            }
        }
        2 => {
            need("DmaUnmap event", 24)?;
            Event::DmaUnmap {
                iova: get64(tail, 0),
                size: get64(tail, 8),
                all: bool_at("DmaUnmap all", tail[16])?,
            }
        }
        3 => {
            need("Reset event", 0)?;
            Event::Reset
        }
        4 => {
            need("Interrupt event", 8)?;
            Event::Interrupt { vector: get16(tail, 0) }
        }
        TAG_COMMAND_DONE => {
            need("CommandDone event", 16)?;
            Event::CommandDone {
                queue: get16(tail, 0),
                command_id: get16(tail, 2),
                opcode: tail[4],
                status: get16(tail, 6),
                result: get64(tail, 8),
            }
        }
        6 => {
            need("Connected event", 0)?;
            Event::Connected
        }
        7 => {
            need("Disconnected event", 0)?;
            Event::Disconnected
        }
        8 => {
            if tail.len() < 2 {
                return Err(FormatError::BodyLength {
                    offset,
                    what: "Error event",
                    expected: EVENT_PREFIX_LEN + 2,
                    found: b.len(),
                });
            }
            let n = usize::from(get16(tail, 0));
            if n > MAX_MESSAGE {
                return Err(FormatError::BadField {
                    offset,
                    field: "Error message length",
                    value: n as u64,
                });
            }
            need("Error event", 2 + n)?;
            let message = std::str::from_utf8(&tail[2..]).map_err(|_| FormatError::BadUtf8 { offset })?;
            Event::Error {
                message: message.to_owned(),
            }
        }
        9 => {
            need("Dropped event", 8)?;
            Event::Dropped {
                records: get64(tail, 0),
            }
        }
        TAG_CLOSED => {
            need("Closed event", 0)?;
            Event::Closed
        }
        tag => return Err(FormatError::UnknownEvent { offset, tag }),
    };
    Ok(Record {
        t_ns,
        payload: Payload::Event { endpoint, event },
    })
}

fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn push_u64s(out: &mut Vec<u8>, vals: &[u64]) {
    for v in vals {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

// Fixed-layout helpers: every caller passes an offset inside a buffer whose length it checked.
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub(crate) fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn get64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::sample_records;

    #[test]
    fn stack_dma_and_command_done_frames_equal_encode_frame() {
        let (mut dma, mut done) = (0, 0);
        for rec in sample_records() {
            for crc in [false, true] {
                let mut v = Vec::new();
                encode_frame(&rec, crc, &mut v);
                match &rec.payload {
                    Payload::Dma(d) => {
                        assert_eq!(v, dma_frame(rec.t_ns, d, crc).to_vec());
                        dma += 1;
                    }
                    Payload::Event { endpoint, event } => match command_done_frame(rec.t_ns, *endpoint, event, crc) {
                        Some(f) => {
                            assert_eq!(v, f.to_vec());
                            done += 1;
                        }
                        None => assert!(!matches!(event, Event::CommandDone { .. })),
                    },
                }
            }
        }
        assert!(dma >= 4 && done >= 2, "{dma} {done}");
    }

    fn header() -> Header {
        Header {
            endpoint: 3,
            frame_crc: true,
            data_crc: true,
            start_unix_ns: 1_700_000_000_000_000_000,
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn header_round_trip() {
        let h = header();
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn every_sample_record_round_trips() {
        for (i, rec) in sample_records().into_iter().enumerate() {
            let mut buf = Vec::new();
            let n = encode_frame(&rec, true, &mut buf);
            assert_eq!(n, buf.len());
            assert_eq!(get32(&buf, 0) as usize, n - FRAME_HEADER_LEN);
            assert_eq!(
                decode_body(&buf[FRAME_HEADER_LEN..], 0).as_ref(),
                Ok(&rec),
                "sample {i}"
            );
        }
    }

    #[test]
    fn rejects_header_with_bad_magic() {
        let mut b = header().encode();
        b[0] = b'X';
        assert!(matches!(Header::decode(&b), Err(FormatError::BadMagic { .. })));
    }

    // Versions (2 written, 1 read, others refused): tests/format_versions.rs.

    #[test]
    fn rejects_header_with_flipped_bit() {
        let mut b = header().encode();
        b[30] ^= 0x40;
        assert!(matches!(Header::decode(&b), Err(FormatError::HeaderCrc { .. })));
    }

    #[test]
    fn rejects_header_shorter_than_64_bytes() {
        assert_eq!(
            Header::decode(&header().encode()[..63]),
            Err(FormatError::HeaderTruncated { len: 63 })
        );
    }

    #[test]
    fn rejects_dma_body_with_bad_direction_space_and_target() {
        let mut buf = Vec::new();
        encode_frame(&sample_records()[0], false, &mut buf);
        for (idx, field) in [(1, "direction"), (2, "space"), (3, "target kind"), (42, "has_crc")] {
            let mut body = buf[FRAME_HEADER_LEN..].to_vec();
            body[idx] = 7;
            assert_eq!(
                decode_body(&body, 100),
                Err(FormatError::BadField {
                    offset: 100,
                    field,
                    value: 7
                })
            );
        }
    }

    #[test]
    fn rejects_body_of_wrong_length_and_unknown_kind() {
        assert!(matches!(
            decode_body(&[1; 10], 8),
            Err(FormatError::BodyLength { offset: 8, .. })
        ));
        assert!(matches!(
            decode_body(&[2; 10], 8),
            Err(FormatError::BodyLength { offset: 8, .. })
        ));
        assert_eq!(
            decode_body(&[9; 64], 8),
            Err(FormatError::UnknownKind { offset: 8, kind: 9 })
        );
        let mut ev = [0u8; 16];
        ev[0] = 2;
        ev[1] = 200;
        assert_eq!(
            decode_body(&ev, 8),
            Err(FormatError::UnknownEvent { offset: 8, tag: 200 })
        );
    }

    #[test]
    fn rejects_error_event_with_invalid_utf8_or_lying_length() {
        let mut body = vec![2u8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&2u16.to_le_bytes());
        body.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(decode_body(&body, 0), Err(FormatError::BadUtf8 { offset: 0 }));
        body[16] = 5; // claims 5 bytes, has 2
        assert!(matches!(decode_body(&body, 0), Err(FormatError::BodyLength { .. })));
    }

    #[test]
    fn long_error_messages_are_cut_at_a_char_boundary() {
        let message = "é".repeat(MAX_MESSAGE); // 2 bytes per char
        let rec = Record {
            t_ns: 1,
            payload: Payload::Event {
                endpoint: 0,
                event: Event::Error { message },
            },
        };
        let mut buf = Vec::new();
        encode_frame(&rec, true, &mut buf);
        match decode_body(&buf[FRAME_HEADER_LEN..], 0).unwrap().payload {
            Payload::Event {
                event: Event::Error { message },
                ..
            } => assert_eq!(message.len(), MAX_MESSAGE),
            other => panic!("unexpected {other:?}"),
        }
    }
}
