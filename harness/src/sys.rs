//! The few operating-system calls std does not wrap: signals to process groups, a flag set by
//! SIGINT/SIGTERM/SIGHUP, the parent-death signal, and saving/restoring the terminal.
//! All of the crate's `unsafe` is in this file.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    PENDING_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set a flag instead of killing the harness, so it can tear
/// down its children first. Read the flag with [`pending_signal`].
pub fn catch_termination_signals() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `act` is zero-initialised (a valid sigaction), its handler is an
        // `extern "C" fn(c_int)` that only performs an atomic store, and sigaction copies it.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut act.sa_mask);
            act.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &act, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The last termination signal received, if any (e.g. `Some("SIGINT")`).
pub fn pending_signal() -> Option<&'static str> {
    match PENDING_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        libc::SIGHUP => Some("SIGHUP"),
        _ => Some("a signal"),
    }
}

/// Sends `sig` to every process of the group `pgid`. A group that is already gone is fine.
pub fn kill_group(pgid: u32, sig: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return };
    if pgid <= 1 {
        return; // never signal "all processes" or init's group
    }
    // SAFETY: kill has no memory-safety preconditions; the negative pid names one process group
    // that we created (pgid > 1 checked above).
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Whether a process group still has live (non-zombie) members, read from /proc.
/// (kill(-pgid, 0) would also count zombies waiting for a reaper.)
pub fn group_alive(pgid: u32) -> bool {
    if pgid <= 1 {
        return false;
    }
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("Z");
        let pgrp = f.nth(1).and_then(|p| p.parse::<u32>().ok());
        pgrp == Some(pgid) && state != "Z" && state != "X"
    })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Configures `cmd` so the child gets SIGKILL if the harness dies without cleaning up
/// (e.g. SIGKILL), and, with `new_group`, runs in a process group of its own.
pub fn child_dies_with_parent(cmd: &mut Command, new_group: bool) {
    if new_group {
        cmd.process_group(0);
    }
    // SAFETY: the closure runs between fork and exec and only calls prctl and getppid,
    // which are async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("harness exited before the child started"));
            }
            Ok(())
        });
    }
}

/// The terminal settings of stdin, restored on drop (QEMU puts the terminal in raw mode and
/// cannot restore it if it crashes).
pub struct TerminalGuard(Option<libc::termios>);

impl TerminalGuard {
    pub fn save() -> TerminalGuard {
        // SAFETY: termios is plain data; tcgetattr fills it or fails (then we keep None).
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::isatty(0) == 1 && libc::tcgetattr(0, &mut t) == 0 {
                TerminalGuard(Some(t))
            } else {
                TerminalGuard(None)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: `t` was filled by tcgetattr on the same fd.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

/// SIGTERM to one process.
pub fn term_pid(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; pid > 1 names one child of ours.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// Tries to take an exclusive advisory lock on `f` (released when the file is closed);
/// Ok(false) when someone else holds it.
pub fn try_flock_exclusive(f: &std::fs::File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the fd belongs to `f`, which outlives the call; flock touches no memory.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}
