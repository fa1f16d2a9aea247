//! File descriptors the protocol needs: memfds (guest RAM, BAR backing) and eventfds (IRQs).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Creates a memfd named `name` of `size` bytes (zero-filled), close-on-exec, sealed
/// against shrinking and growing (as QEMU's memory-backend-memfd is) and against further seal
/// changes: whoever maps it, here or after receiving it, never sees SIGBUS from a later
/// truncate, and nobody can add F_SEAL_WRITE under a writable mapping.
pub fn memfd(name: &str, size: u64) -> io::Result<OwnedFd> {
    let cname = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in memfd name"))?;
    // SAFETY: cname is a valid NUL-terminated string for the duration of the call.
    let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this fd and nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    File::from(fd.try_clone()?).set_len(size)?;
    // SAFETY: plain fcntl on an fd we own, with integer arguments.
    if unsafe {
        libc::fcntl(
            fd.as_raw_fd(),
            libc::F_ADD_SEALS,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Whether `fd` carries F_SEAL_SHRINK (false for fds that do not support seals).
pub(crate) fn sealed_against_shrink(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: plain fcntl query on a borrowed fd; no memory is passed.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_SHRINK != 0
}

/// Creates a non-blocking, close-on-exec eventfd with counter 0.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall wrapper with constant flags.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: eventfd just returned this fd and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Checks that a client-supplied IRQ fd really is an eventfd and makes it non-blocking, so
/// that [`eventfd_signal`] can never block (a pipe, or a blocking eventfd whose counter is
/// at its maximum, would otherwise hang every thread that triggers an interrupt).
/// O_NONBLOCK lands on the open file description shared with the client, which is fine for
/// an eventfd (QEMU polls its irqfds non-blocking anyway).
pub(crate) fn prepare_irq_eventfd(fd: BorrowedFd<'_>) -> io::Result<()> {
    let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    if target.as_os_str() != "anon_inode:[eventfd]" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("IRQ fd is {} rather than an eventfd", target.display()),
        ));
    }
    // SAFETY: plain fcntl query on a borrowed fd; no memory is passed.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: plain fcntl on a borrowed fd with an integer flag argument.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Adds 1 to an eventfd's counter (signals it). A counter at its maximum stays signalled:
/// on a non-blocking eventfd the write fails with EAGAIN, which means the counter is already
/// nonzero, so the consumer will wake anyway; that counts as success.
pub fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live stack buffer to a borrowed fd.
    let n = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    if n == 8 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if n < 0 && err.kind() == io::ErrorKind::WouldBlock {
        return Ok(());
    }
    Err(if n < 0 {
        err
    } else {
        io::Error::new(io::ErrorKind::WriteZero, "short eventfd write")
    })
}

/// Reads and resets an eventfd's counter; `Ok(0)` if it was not signalled (non-blocking fd).
pub fn eventfd_take(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a live stack buffer from a borrowed fd.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n == 8 {
        return Ok(u64::from_ne_bytes(buf));
    }
    let err = io::Error::last_os_error();
    if n < 0 && err.kind() == io::ErrorKind::WouldBlock {
        return Ok(0);
    }
    Err(if n < 0 {
        err
    } else {
        io::Error::new(io::ErrorKind::UnexpectedEof, "short eventfd read")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn eventfd_counts_signals() {
        let fd = eventfd().unwrap();
        assert_eq!(eventfd_take(fd.as_fd()).unwrap(), 0);
        eventfd_signal(fd.as_fd()).unwrap();
        eventfd_signal(fd.as_fd()).unwrap();
        assert_eq!(eventfd_take(fd.as_fd()).unwrap(), 2);
    }

    #[test]
    fn memfd_has_requested_size() {
        let fd = memfd("x", 12345).unwrap();
        assert_eq!(File::from(fd).metadata().unwrap().len(), 12345);
    }
}
