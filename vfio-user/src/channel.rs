//! `Channel`: one vfio-user connection, shared by the server and the client.
//!
//! Framing: a message is read whole with the fds that came along (framing.rs: buffered
//! reads, which message fds belong to, the limits that close a connection).
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
use crate::framing::FrameReader;
use crate::sys::scm::send_all;
use crate::wire::{Header, FLAG_ERROR, HEADER_SIZE, TYPE_COMMAND, TYPE_REPLY};

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
    #[error("peer sent more fds in one segment than a read takes")]
    FdsTruncated,
    #[error("peer attached more than {max} fds to one message")]
    TooManyFds { max: usize },
}

pub(crate) struct Channel {
    sock: UnixStream,
    write_lock: Mutex<()>,
    pending: Mutex<HashMap<u16, Sender<Message>>>,
    reader: Mutex<FrameReader>,
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
            reader: Mutex::new(FrameReader::new()),
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

    /// Reads one whole message (framing.rs). Only the connection's reader thread calls this.
    pub(crate) fn read_message(&self) -> Result<Message, FrameError> {
        lock(&self.reader).read_message(self.sock.as_fd())
    }
}
