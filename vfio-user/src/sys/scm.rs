//! UNIX stream socket I/O with SCM_RIGHTS fd passing.
//!
//! `send_all` writes a whole message (header + payload slices) and attaches fds to its first
//! byte. `recv_some` reads into a buffer and collects any fds that came along; the framing
//! layer (framing.rs) calls it until it has a whole message, so messages split by the kernel
//! are fine.

use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most fds accepted in one `recvmsg`; more than this sets MSG_CTRUNC and is reported.
pub const MAX_RECV_FDS: usize = 64;
/// Most fds the kernel passes in one message (SCM_MAX_FD).
pub const MAX_SEND_FDS: usize = 253;
/// iovecs `send_all` keeps on the stack.
const INLINE_IOV: usize = 4;
/// u64 words of the stack control buffer `recv_some` passes: room for one SCM_RIGHTS header
/// (16 bytes on 64-bit Linux) and `MAX_RECV_FDS` fds, with slack for alignment.
const RECV_CONTROL_WORDS: usize = (MAX_RECV_FDS * mem::size_of::<RawFd>() + 64) / 8;

/// Result of one `recvmsg`.
pub struct Received {
    /// Bytes read; 0 means the peer closed the connection.
    pub bytes: usize,
    /// The control data was truncated (the peer sent more fds than `MAX_RECV_FDS`).
    pub fds_truncated: bool,
}

/// Sends every byte of `bufs`, attaching `fds` to the first `sendmsg`.
pub fn send_all(sock: BorrowedFd<'_>, bufs: &[&[u8]], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_SEND_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many fds for one message",
        ));
    }
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut sent = 0usize;
    let mut first = true;
    // Messages have a header and one or two payload parts: their iovecs live on the stack
    // (no allocation per message); longer lists take a Vec.
    let mut inline = [IoSlice::new(&[]); INLINE_IOV];
    let mut spill: Vec<IoSlice<'_>> = Vec::new();
    while sent < total || (first && !fds.is_empty()) {
        // Rebuild the iovec list from the first unsent byte.
        let mut skip = sent;
        let mut n_iov = 0usize;
        spill.clear();
        for b in bufs {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            let part = IoSlice::new(&b[skip..]);
            skip = 0;
            if bufs.len() <= INLINE_IOV {
                inline[n_iov] = part;
                n_iov += 1;
            } else {
                spill.push(part);
            }
        }
        let iov: &[IoSlice<'_>] = if bufs.len() <= INLINE_IOV {
            &inline[..n_iov]
        } else {
            &spill
        };
        let n = sendmsg(sock, iov, if first { fds } else { &[] })?;
        first = false;
        sent += n;
        if total == 0 {
            break;
        }
    }
    Ok(())
}

fn sendmsg(sock: BorrowedFd<'_>, iov: &[IoSlice<'_>], fds: &[RawFd]) -> io::Result<usize> {
    let fd_bytes = mem::size_of_val(fds);
    let space = if fds.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE only computes a size from an integer; it touches no memory.
        let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) };
        space as usize
    };
    // u64 storage keeps the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is a plain C struct; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len();
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` bytes, enough for one header carrying
        // fd_bytes (CMSG_SPACE above), so CMSG_FIRSTHDR is non-null and CMSG_DATA has room.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), fd_bytes);
        }
    }
    loop {
        // SAFETY: msg points at live iovecs (IoSlice is ABI-compatible with iovec) and control.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// One `recvmsg` into `buf`; received fds are appended to `fds` (owned, close-on-exec).
pub fn recv_some(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<Received> {
    // SAFETY: CMSG_SPACE only computes a size from an integer; it touches no memory.
    let space = unsafe { libc::CMSG_SPACE((MAX_RECV_FDS * mem::size_of::<RawFd>()) as u32) } as usize;
    // On the stack, no allocation per read; u64 words keep it aligned for cmsghdr. The length
    // passed to the kernel never exceeds the buffer.
    let mut control = [0u64; RECV_CONTROL_WORDS];
    let space = space.min(mem::size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is a plain C struct; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    let n = loop {
        // SAFETY: msg points at a live iovec over `buf` and a live control buffer of `space` bytes.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR/NXTHDR walk only
    // within msg_controllen, and each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 fds
    // that now belong to us.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data_len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let count = data_len / mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned(data.add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Received {
        bytes: n,
        fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn fds_travel_with_the_first_byte() {
        let (a, b) = UnixStream::pair().unwrap();
        let e = crate::sys::fd::eventfd().unwrap();
        send_all(a.as_fd(), &[b"head", b"tail"], &[e.as_raw_fd()]).unwrap();
        let mut buf = [0u8; 8];
        let mut fds = Vec::new();
        let r = recv_some(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(r.bytes, 8);
        assert_eq!(&buf, b"headtail");
        assert_eq!(fds.len(), 1);
        assert!(!r.fds_truncated);
    }
}
