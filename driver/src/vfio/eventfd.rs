//! eventfd(2) for MSI-X vectors, with a poll(2)-based timed wait.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::error::{last_os, Result, VfioError};

#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(VfioError::Sys {
                op: "eventfd",
                source: last_os(),
            });
        }
        // SAFETY: eventfd returned a new fd that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Reads and clears the counter without blocking; returns how many signals arrived.
    pub fn take(&self) -> u64 {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a live u64; the fd is non-blocking.
        let n = unsafe { libc::read(self.raw(), (&mut v as *mut u64).cast(), 8) };
        if n == 8 {
            v
        } else {
            0
        }
    }

    /// Waits until the eventfd is signalled or `timeout` passes; returns the count read (0
    /// on timeout).
    pub fn wait(&self, timeout: Duration) -> Result<u64> {
        let mut pfd = libc::pollfd {
            fd: self.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one live pollfd, nfds = 1.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = last_os();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(VfioError::Sys {
                op: "poll(eventfd)",
                source: e,
            });
        }
        Ok(if r == 0 { 0 } else { self.take() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_times_out_then_sees_a_signal() {
        let e = EventFd::new().unwrap();
        assert_eq!(e.wait(Duration::from_millis(1)).unwrap(), 0);
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        unsafe { libc::write(e.raw(), (&one as *const u64).cast(), 8) };
        assert_eq!(e.wait(Duration::from_millis(100)).unwrap(), 1);
    }
}
