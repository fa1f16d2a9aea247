//! `Errno`: the positive errno value every vfio-user error reply carries.
//!
//! QEMU negates the value it receives and treats 0 as success, so an error reply must never
//! carry 0. [`Errno::new`] maps 0 (and negative values) to `EIO` to make that impossible.

use std::fmt;

/// A positive errno value (`EINVAL`, `ENOTSUP`, `EFAULT`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const E2BIG: Errno = Errno(libc::E2BIG);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    pub const EFAULT: Errno = Errno(libc::EFAULT);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    pub const ENOTSUP: Errno = Errno(libc::ENOTSUP);
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
    pub const ENOTCONN: Errno = Errno(libc::ENOTCONN);
    pub const EPROTO: Errno = Errno(libc::EPROTO);

    /// Wraps a raw errno; 0 or negative values become `EIO` so the peer never reads success.
    pub fn new(raw: i32) -> Errno {
        if raw > 0 {
            Errno(raw)
        } else {
            Errno::EIO
        }
    }

    /// The positive value, as written on the wire.
    pub fn raw(self) -> i32 {
        self.0
    }

    /// The errno of an `io::Error`, `EIO` if it has none.
    pub fn from_io(err: &std::io::Error) -> Errno {
        Errno::new(err.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({} {})", self.0, std::io::Error::from_raw_os_error(self.0))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", std::io::Error::from_raw_os_error(self.0), self.0)
    }
}

impl std::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_never_an_errno() {
        assert_eq!(Errno::new(0), Errno::EIO);
        assert_eq!(Errno::new(-5), Errno::EIO);
        assert_eq!(Errno::new(libc::EINVAL).raw(), libc::EINVAL);
    }
}
