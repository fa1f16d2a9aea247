//! SIGTERM / SIGINT as a synchronous event: block them in the main thread before any other
//! thread exists (threads inherit the mask), then wait for one with `sigwait`.

/// The termination signals, blocked in the calling thread.
pub struct TermSignals {
    set: libc::sigset_t,
}

impl TermSignals {
    /// Blocks SIGTERM and SIGINT in the calling thread (and every thread it spawns later).
    pub fn block() -> std::io::Result<Self> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned by this frame; the signal numbers are valid.
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(Self { set })
    }

    /// Waits for SIGTERM or SIGINT and returns its number.
    pub fn wait(&self) -> i32 {
        let mut sig = 0;
        loop {
            // SAFETY: `self.set` was initialised in `block`; `sig` is a valid out pointer.
            let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
            if rc == 0 {
                return sig;
            }
        }
    }
}
