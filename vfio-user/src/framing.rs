//! `FrameReader`: whole messages out of a UNIX stream socket, with the fds that came along,
//! in as few `recvmsg` calls as the kernel allows.
//!
//! Small messages (a trapped register access is a 32-byte REGION_READ) usually arrive whole
//! in one segment, so the reader asks for more than it needs — up to [`READ_AHEAD`] bytes —
//! and frames the header and payload from one `recvmsg`; what belongs to later messages waits
//! in the buffer. A payload that is not all there yet is completed with reads of exactly the
//! missing length straight into the message, so nothing past it is read.
//!
//! **Which message fds belong to.** The kernel attaches SCM_RIGHTS fds to the segment of the
//! `sendmsg` that carried them, and a `recvmsg` that picks them up returns at the latest at the
//! end of that segment (Linux's `unix_stream_read_generic` stops after a segment with fds). So
//! the last byte such a `recvmsg` returns was sent by the same `sendmsg` as the fds, and the
//! fds belong to the message holding that byte. A sender that writes each message with its own
//! `sendmsg`(s), as QEMU and libvfio-user do, gets its fds on exactly the message it sent them
//! with, on whichever part of that message they rode; one that writes several messages in one
//! `sendmsg` with fds gets them on the message holding the last byte read, which the request
//! handlers then refuse as unexpected fds (EINVAL) where they do not fit.
//!
//! **Limits.** A header whose size field cannot be trusted (below 16, above
//! [`MAX_MESSAGE_SIZE`]) destroys framing, as does a message carrying more than
//! [`MAX_FDS_PER_MESSAGE`] fds (checked after every `recvmsg`, so a message split into many
//! `sendmsg`s, each with fds, cannot pile them up) or a `recvmsg` with more fds than it has
//! room for (MSG_CTRUNC): the caller closes the connection. Fds waiting for a later message
//! come from the one read that completed the current message, so at most
//! [`MAX_RECV_FDS`](crate::sys::scm::MAX_RECV_FDS) of them wait.

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::channel::{FrameError, Message};
use crate::sys::scm::recv_some;
use crate::wire::{Header, HEADER_SIZE, MAX_MESSAGE_SIZE, MAX_MSG_FDS};

/// Most fds one message may carry, however many `recvmsg` calls it takes: the most either
/// side ever offers in VERSION (the negotiated limit is the smaller of the two offers and is
/// enforced per command with EINVAL). Beyond this the stream is hostile.
pub const MAX_FDS_PER_MESSAGE: usize = MAX_MSG_FDS as usize;

/// Bytes one buffered read asks for.
pub const READ_AHEAD: usize = 16 * 1024;

/// Fds that arrived with the stream byte at `pos` (the last byte of their `recvmsg`).
struct ArrivedFds {
    pos: u64,
    fds: Vec<OwnedFd>,
}

/// Frames messages out of one socket. Only one thread reads a connection.
pub(crate) struct FrameReader {
    buf: Box<[u8]>,
    /// `buf[start..end]` is read and not yet framed.
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    /// Fds not yet handed out with a message, in stream order.
    fds: Vec<ArrivedFds>,
}

impl FrameReader {
    pub(crate) fn new() -> FrameReader {
        FrameReader {
            buf: vec![0u8; READ_AHEAD].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            fds: Vec::new(),
        }
    }

    /// Reads one whole message from `sock`.
    pub(crate) fn read_message(&mut self, sock: BorrowedFd<'_>) -> Result<Message, FrameError> {
        // The header, with whatever follows it in the same reads.
        while self.end - self.start < HEADER_SIZE {
            let had = self.end - self.start;
            if self.fill(sock)? == 0 {
                return Err(if had == 0 {
                    FrameError::Closed
                } else {
                    FrameError::Truncated {
                        got: had,
                        want: HEADER_SIZE,
                    }
                });
            }
            self.check_fds(self.offset + HEADER_SIZE as u64)?;
        }
        let mut hdr = [0u8; HEADER_SIZE];
        hdr.copy_from_slice(&self.buf[self.start..self.start + HEADER_SIZE]);
        let header = Header::parse(&hdr);
        let size = header.msg_size as usize;
        if size < HEADER_SIZE {
            return Err(FrameError::SizeBelowHeader {
                msg_size: header.msg_size,
            });
        }
        if size > MAX_MESSAGE_SIZE {
            return Err(FrameError::SizeTooLarge {
                msg_size: header.msg_size,
                max: MAX_MESSAGE_SIZE,
            });
        }
        let msg_end = self.offset + size as u64;
        self.check_fds(msg_end)?;
        // The payload: what is buffered, then the rest read straight into it.
        let mut payload = vec![0u8; size - HEADER_SIZE];
        let buffered = (self.end - self.start).min(size);
        payload[..buffered - HEADER_SIZE].copy_from_slice(&self.buf[self.start + HEADER_SIZE..self.start + buffered]);
        self.consume(buffered);
        let mut got = buffered - HEADER_SIZE;
        while got < payload.len() {
            let mut fds = Vec::new();
            let r = recv_some(sock, &mut payload[got..], &mut fds)?;
            if r.fds_truncated {
                return Err(FrameError::FdsTruncated);
            }
            if r.bytes == 0 {
                return Err(FrameError::Truncated {
                    got,
                    want: payload.len(),
                });
            }
            got += r.bytes;
            self.offset += r.bytes as u64;
            if !fds.is_empty() {
                self.fds.push(ArrivedFds {
                    pos: self.offset - 1,
                    fds,
                });
            }
            self.check_fds(msg_end)?;
        }
        // Every fd that arrived with a byte of this message is its; the rest wait.
        let later = self.fds.iter().position(|a| a.pos >= msg_end).unwrap_or(self.fds.len());
        let fds = self.fds.drain(..later).flat_map(|a| a.fds).collect();
        Ok(Message { header, payload, fds })
    }

    /// One `recvmsg` into the free end of the buffer (moving the unread bytes to its front
    /// first); returns the bytes read, 0 at end of stream.
    fn fill(&mut self, sock: BorrowedFd<'_>) -> Result<usize, FrameError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut fds = Vec::new();
        let r = recv_some(sock, &mut self.buf[self.end..], &mut fds)?;
        if r.fds_truncated {
            return Err(FrameError::FdsTruncated);
        }
        self.end += r.bytes;
        if !fds.is_empty() && r.bytes > 0 {
            // The kernel passes fds only with data (without any, they are closed here).
            let pos = self.offset + (self.end - self.start) as u64 - 1;
            self.fds.push(ArrivedFds { pos, fds });
        }
        Ok(r.bytes)
    }

    /// Fails when the message starting at `self.offset` (and ending before `msg_end`, or
    /// not yet sized) holds more than [`MAX_FDS_PER_MESSAGE`] fds.
    fn check_fds(&mut self, msg_end: u64) -> Result<(), FrameError> {
        let n: usize = self
            .fds
            .iter()
            .take_while(|a| a.pos < msg_end)
            .map(|a| a.fds.len())
            .sum();
        if n > MAX_FDS_PER_MESSAGE {
            self.fds.clear();
            return Err(FrameError::TooManyFds {
                max: MAX_FDS_PER_MESSAGE,
            });
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::sys::scm::send_all;

    fn msg(id: u16, payload_len: usize) -> Vec<u8> {
        let mut m = Header {
            msg_id: id,
            command: 1,
            msg_size: (HEADER_SIZE + payload_len) as u32,
            ..Header::default()
        }
        .encode()
        .to_vec();
        m.extend((0..payload_len).map(|i| (i as u8) ^ (id as u8)));
        m
    }

    fn some_fd() -> OwnedFd {
        crate::sys::fd::eventfd().unwrap()
    }

    #[test]
    fn kernel_ends_a_read_with_the_segment_that_carried_fds() {
        // The property the attribution rule rests on (Linux's unix_stream_read_generic).
        let (a, b) = UnixStream::pair().unwrap();
        let fd = some_fd();
        let (m1, m2) = (msg(1, 40), msg(2, 24));
        send_all(a.as_fd(), &[&m1], &[fd.as_raw_fd()]).unwrap();
        send_all(a.as_fd(), &[&m2], &[]).unwrap();
        let mut buf = [0u8; 4096];
        let mut fds = Vec::new();
        let r = recv_some(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!((r.bytes, fds.len()), (m1.len(), 1));
    }

    #[test]
    fn kernel_joins_segments_without_fds_into_the_segment_with_them() {
        // ... and a read may start in earlier segments: the fds are the last segment's.
        let (a, b) = UnixStream::pair().unwrap();
        let fd = some_fd();
        let (m1, m2) = (msg(1, 40), msg(2, 24));
        send_all(a.as_fd(), &[&m1], &[]).unwrap();
        send_all(a.as_fd(), &[&m2], &[fd.as_raw_fd()]).unwrap();
        let mut buf = [0u8; 4096];
        let mut fds = Vec::new();
        let r = recv_some(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!((r.bytes, fds.len()), (m1.len() + m2.len(), 1));
    }

    #[test]
    fn messages_sent_together_are_framed_one_by_one_from_one_read() {
        let (a, b) = UnixStream::pair().unwrap();
        let all: Vec<u8> = [msg(1, 16), msg(2, 0), msg(3, 100)].concat();
        send_all(a.as_fd(), &[&all], &[]).unwrap();
        drop(a);
        let mut r = FrameReader::new();
        for (id, len) in [(1u16, 16usize), (2, 0), (3, 100)] {
            let m = r.read_message(b.as_fd()).unwrap();
            assert_eq!((m.header.msg_id, m.payload.len(), m.fds.len()), (id, len, 0));
            assert_eq!(m.payload, msg(id, len)[HEADER_SIZE..]);
        }
        assert!(matches!(r.read_message(b.as_fd()), Err(FrameError::Closed)));
    }

    #[test]
    fn fds_of_a_later_message_read_ahead_wait_for_it() {
        let (a, b) = UnixStream::pair().unwrap();
        let fd = some_fd();
        send_all(a.as_fd(), &[&msg(1, 8)], &[]).unwrap();
        send_all(a.as_fd(), &[&msg(2, 8)], &[fd.as_raw_fd(), fd.as_raw_fd()]).unwrap();
        let mut r = FrameReader::new();
        assert_eq!(r.read_message(b.as_fd()).unwrap().fds.len(), 0);
        let m = r.read_message(b.as_fd()).unwrap();
        assert_eq!((m.header.msg_id, m.fds.len()), (2, 2));
    }

    #[test]
    fn payload_larger_than_the_read_ahead_arrives_whole() {
        let (a, b) = UnixStream::pair().unwrap();
        let big = msg(4, 3 * READ_AHEAD + 5);
        let next = msg(5, 3);
        let (big2, next2) = (big.clone(), next.clone());
        let t = std::thread::spawn(move || {
            for piece in big2.chunks(1000) {
                send_all(a.as_fd(), &[piece], &[]).unwrap();
            }
            send_all(a.as_fd(), &[&next2], &[]).unwrap();
        });
        let mut r = FrameReader::new();
        assert_eq!(r.read_message(b.as_fd()).unwrap().payload, big[HEADER_SIZE..]);
        assert_eq!(r.read_message(b.as_fd()).unwrap().payload, next[HEADER_SIZE..]);
        t.join().unwrap();
    }

    #[test]
    fn header_cut_short_by_hangup_is_truncated() {
        let (a, b) = UnixStream::pair().unwrap();
        send_all(a.as_fd(), &[&msg(1, 8)[..10]], &[]).unwrap();
        drop(a);
        let e = FrameReader::new().read_message(b.as_fd()).unwrap_err();
        assert!(matches!(e, FrameError::Truncated { got: 10, want: 16 }), "{e}");
    }

    #[test]
    fn payload_cut_short_by_hangup_is_truncated() {
        let (a, b) = UnixStream::pair().unwrap();
        send_all(a.as_fd(), &[&msg(1, 64)[..HEADER_SIZE + 20]], &[]).unwrap();
        drop(a);
        let e = FrameReader::new().read_message(b.as_fd()).unwrap_err();
        assert!(matches!(e, FrameError::Truncated { got: 20, want: 64 }), "{e}");
    }

    #[test]
    fn fds_spread_over_many_reads_of_one_message_count_together() {
        let (a, b) = UnixStream::pair().unwrap();
        let fd = some_fd();
        let eight = [fd.as_raw_fd(); 8];
        let m = msg(1, 64);
        let t = std::thread::spawn(move || {
            send_all(a.as_fd(), &[&m[..HEADER_SIZE]], &eight).unwrap();
            for piece in m[HEADER_SIZE..].chunks(16) {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if send_all(a.as_fd(), &[piece], &eight).is_err() {
                    break;
                }
            }
        });
        let e = FrameReader::new().read_message(b.as_fd()).unwrap_err();
        assert!(
            matches!(
                e,
                FrameError::TooManyFds {
                    max: MAX_FDS_PER_MESSAGE
                }
            ),
            "{e}"
        );
        drop(b);
        t.join().unwrap();
    }

    #[test]
    fn size_field_below_the_header_destroys_framing() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut m = msg(1, 0);
        m[4..8].copy_from_slice(&8u32.to_le_bytes());
        send_all(a.as_fd(), &[&m], &[]).unwrap();
        let e = FrameReader::new().read_message(b.as_fd()).unwrap_err();
        assert!(matches!(e, FrameError::SizeBelowHeader { msg_size: 8 }), "{e}");
    }
}
