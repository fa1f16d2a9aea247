//! `Channel`: one vfio-user connection, shared by the server and the client.
//!
//! Framing: a message is read whole (header, then exactly `msg_size - 16` payload bytes,
//! however the kernel splits them) with the fds that came along. A header whose size field
//! cannot be trusted (below 16, above [`MAX_MESSAGE_SIZE`]) destroys framing: the caller
//! closes the connection. So does a message carrying more than [`MAX_FDS_PER_MESSAGE`] fds
//! (checked after every `recvmsg`, so a message split into many sendmsgs cannot pile up fds),
//! and a message whose fds come after its first byte: the payload is read without a control
//! buffer (less kernel work per message), so such fds are closed by the kernel (MSG_CTRUNC).
//! Sending takes a mutex so concurrent senders (the request thread replying, device threads
//! issuing DMA messages) never interleave bytes.
//! Requests we send register a waiter under their message id before they go out; the reader
//! thread hands the reply to it. A reply nobody waits for is logged and dropped.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};

use crate::errno::Errno;
use crate::sys::scm::{recv_plain, recv_some, send_all};
use crate::wire::{Header, FLAG_ERROR, HEADER_SIZE, MAX_MESSAGE_SIZE, MAX_MSG_FDS, TYPE_COMMAND, TYPE_REPLY};

/// Most fds one message may carry, however many `recvmsg` calls it takes: the most either
/// side ever offers in VERSION (the negotiated limit is the smaller of the two offers and is
/// enforced per command with EINVAL). Beyond this the stream is hostile (a client splitting
/// one message into many sendmsgs, each with fds, would otherwise fill our fd table), so the
/// fds are closed and the connection is dropped.
const MAX_FDS_PER_MESSAGE: usize = MAX_MSG_FDS as usize;

/// A whole message as read from the socket.
#[derive(Debug)]
pub struct Message {
    pub header: Header,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// Why the stream cannot be read any further.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("peer closed the connection")]
    Closed,
    #[error("peer closed the connection in the middle of a message ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    #[error("header msg_size {msg_size} is smaller than the header")]
    SizeBelowHeader { msg_size: u32 },
    #[error("header msg_size {msg_size} exceeds the maximum {max}")]
    SizeTooLarge { msg_size: u32, max: usize },
    #[error("peer sent more fds than fit in one message")]
    FdsTruncated,
    #[error("peer attached more than {max} fds to one message")]
    TooManyFds { max: usize },
}

pub(crate) struct Channel {
    sock: UnixStream,
    write_lock: Mutex<()>,
    pending: Mutex<HashMap<u16, Sender<Message>>>,
    next_id: AtomicU16,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Channel {
    pub(crate) fn new(sock: UnixStream) -> Channel {
        Channel {
            sock,
            write_lock: Mutex::new(()),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU16::new(0),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends one message; `header.msg_size` is filled in here.
    pub(crate) fn send(&self, header: Header, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
        self.send_parts(header, &[payload], fds)
    }

    /// Sends one message whose payload is the concatenation of `parts` (no copying).
    pub(crate) fn send_parts(&self, mut header: Header, parts: &[&[u8]], fds: &[RawFd]) -> io::Result<()> {
        let total = HEADER_SIZE + parts.iter().map(|p| p.len()).sum::<usize>();
        header.msg_size =
            u32::try_from(total).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
        let h = header.encode();
        let _g = lock(&self.write_lock);
        // The header and up to two payload parts go out without building a list on the heap.
        match parts {
            [] => send_all(self.sock.as_fd(), &[&h[..]], fds),
            [a] => send_all(self.sock.as_fd(), &[&h[..], *a], fds),
            [a, b] => send_all(self.sock.as_fd(), &[&h[..], *a, *b], fds),
            _ => {
                let mut bufs: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
                bufs.push(&h);
                bufs.extend_from_slice(parts);
                send_all(self.sock.as_fd(), &bufs, fds)
            }
        }
    }

    /// Sends raw bytes (tests of hostile framing).
    pub(crate) fn send_bytes(&self, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let _g = lock(&self.write_lock);
        send_all(self.sock.as_fd(), &[bytes], fds)
    }

    /// Replies to `req` with a success payload.
    pub(crate) fn reply(&self, req: &Header, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let h = Header {
            msg_id: req.msg_id,
            command: req.command,
            msg_size: 0,
            flags: TYPE_REPLY,
            error: 0,
        };
        self.send(h, payload, fds)
    }

    /// Replies to `req` with an error.
    pub(crate) fn reply_error(&self, req: &Header, errno: Errno) -> io::Result<()> {
        let h = Header {
            msg_id: req.msg_id,
            command: req.command,
            msg_size: 0,
            flags: TYPE_REPLY | FLAG_ERROR,
            error: errno.raw() as u32,
        };
        self.send(h, &[], &[])
    }

    /// Sends a request and returns its id and the receiver its reply will arrive on.
    pub(crate) fn request(
        &self,
        command: u16,
        flags: u32,
        payload: &[u8],
        fds: &[RawFd],
    ) -> io::Result<(u16, Receiver<Message>)> {
        self.request_parts(command, flags, &[payload], fds)
    }

    /// `request` with the payload given in pieces (sent with one sendmsg, no copying).
    pub(crate) fn request_parts(
        &self,
        command: u16,
        flags: u32,
        parts: &[&[u8]],
        fds: &[RawFd],
    ) -> io::Result<(u16, Receiver<Message>)> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let id = {
            let mut p = lock(&self.pending);
            if p.len() >= u16::MAX as usize / 2 {
                return Err(io::Error::new(io::ErrorKind::WouldBlock, "too many requests in flight"));
            }
            let mut id = self.next_id.fetch_add(1, Ordering::Relaxed);
            while p.contains_key(&id) {
                id = self.next_id.fetch_add(1, Ordering::Relaxed);
            }
            p.insert(id, tx);
            id
        };
        if self.is_closed() {
            self.forget(id);
            return Err(io::Error::new(io::ErrorKind::NotConnected, "connection closed"));
        }
        let h = Header {
            msg_id: id,
            command,
            msg_size: 0,
            flags: TYPE_COMMAND | flags,
            error: 0,
        };
        if let Err(e) = self.send_parts(h, parts, fds) {
            self.forget(id);
            return Err(e);
        }
        Ok((id, rx))
    }

    /// Drops the waiter of request `id` (after a timeout).
    pub(crate) fn forget(&self, id: u16) {
        lock(&self.pending).remove(&id);
    }

    /// Hands a reply to its waiter; `false` if nobody asked for it.
    pub(crate) fn route_reply(&self, msg: Message) -> bool {
        let tx = lock(&self.pending).remove(&msg.header.msg_id);
        match tx {
            Some(tx) => {
                let _ = tx.send(msg);
                true
            }
            None => false,
        }
    }

    /// Closes the connection both ways and fails every waiter.
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        lock(&self.pending).clear();
    }

    /// Reads one whole message. Only the connection's reader thread calls this.
    pub(crate) fn read_message(&self) -> Result<Message, FrameError> {
        let mut fds = Vec::new();
        let mut hdr = [0u8; HEADER_SIZE];
        self.read_exact(&mut hdr, &mut fds, true)?;
        let header = Header::parse(&hdr);
        if (header.msg_size as usize) < HEADER_SIZE {
            return Err(FrameError::SizeBelowHeader {
                msg_size: header.msg_size,
            });
        }
        if header.msg_size as usize > MAX_MESSAGE_SIZE {
            return Err(FrameError::SizeTooLarge {
                msg_size: header.msg_size,
                max: MAX_MESSAGE_SIZE,
            });
        }
        let mut payload = vec![0u8; header.msg_size as usize - HEADER_SIZE];
        self.read_exact(&mut payload, &mut fds, false)?;
        Ok(Message { header, payload, fds })
    }

    /// Reads all of `buf`. The header (`at_start`) is read with room for fds: a sender
    /// attaches them to a message's first byte. The payload is read without: fds attached to
    /// a later part of a message are closed by the kernel and end the connection.
    fn read_exact(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>, at_start: bool) -> Result<(), FrameError> {
        let mut got = 0;
        while got < buf.len() {
            let r = if at_start {
                recv_some(self.sock.as_fd(), &mut buf[got..], fds)?
            } else {
                recv_plain(self.sock.as_fd(), &mut buf[got..])?
            };
            if r.fds_truncated {
                fds.clear();
                return Err(FrameError::FdsTruncated);
            }
            if fds.len() > MAX_FDS_PER_MESSAGE {
                fds.clear();
                return Err(FrameError::TooManyFds {
                    max: MAX_FDS_PER_MESSAGE,
                });
            }
            if r.bytes == 0 {
                return Err(if got == 0 && at_start {
                    FrameError::Closed
                } else {
                    FrameError::Truncated { got, want: buf.len() }
                });
            }
            got += r.bytes;
        }
        Ok(())
    }
}
