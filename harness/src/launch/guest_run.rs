//! One guest run: start phyr-device, wait for its sockets, start QEMU, watch both, and
//! tear everything down on poweroff, Ctrl-C/SIGTERM, a crashed device or a crashed QEMU.
//! Each child runs in its own process group (except an interactive QEMU, which must own the
//! terminal) and dies with the harness (PR_SET_PDEATHSIG), so nothing is left behind.
//!
//! One device for several guests: [`DeviceProc::start`] it, run each guest with
//! [`run_with_device`] (the device keeps serving when a guest ends, even by a QEMU SIGKILLed
//! on purpose: [`Launch::kill_after_ready`]), then [`DeviceProc::stop`] it. [`run`] is that
//! for one guest.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::launch::rundir::RunDir;
use crate::progress::say;
use crate::provision::qemu::Qemu;
use crate::shell::shell_line;
use crate::sys;

const SOCKET_WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

/// How phyr-device is started.
pub struct DeviceLaunch {
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub sockets: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// The serial console is the user's terminal.
    Interactive,
    /// The console is captured (serial.log) and echoed to stdout.
    Captured,
    /// Captured; only init messages, TAP results, markers and kernel trouble are echoed.
    Summary,
}

pub struct Launch<'a> {
    pub run: &'a RunDir,
    pub qemu: &'a Qemu,
    pub qemu_args: Vec<String>,
    pub device: Option<DeviceLaunch>,
    pub console: Console,
    pub timeout: Option<Duration>,
    /// SIGKILL QEMU this long after the guest printed its READY marker (a VMM crash on
    /// purpose; captured consoles only): the session ends with [`Ending::QemuKilled`].
    pub kill_after_ready: Option<Duration>,
}

/// How the guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited by itself with status 0 (the guest powered off).
    PoweredOff,
    QemuFailed(String),
    DeviceCrashed(String),
    Interrupted(&'static str),
    TimedOut(Duration),
    /// QEMU was SIGKILLed as [`Launch::kill_after_ready`] asked, this long after READY.
    QemuKilled(Duration),
}

pub struct Outcome {
    pub ending: Ending,
    pub elapsed: Duration,
    /// When the guest printed its READY marker (captured console only).
    pub ready_after: Option<Duration>,
}

/// A running phyr-device, serving the sockets of one run directory while guests come and go.
pub struct DeviceProc {
    child: Child,
    /// Its sockets' directory, removed when it stops.
    socket_dir: PathBuf,
    stopped: bool,
}

impl DeviceProc {
    /// Starts phyr-device and waits until every socket listens.
    pub fn start(d: &DeviceLaunch, run: &RunDir) -> Result<Self> {
        let mut child = start_device(d, run)?;
        if let Err(e) = wait_for_sockets(&mut child, &d.sockets, run) {
            stop_group(&mut child, "phyr-device", Duration::from_secs(3));
            cleanup_sockets(run);
            return Err(e);
        }
        Ok(Self {
            child,
            socket_dir: run.socket_dir(),
            stopped: false,
        })
    }

    /// SIGTERM (SIGKILL after 3 s), reaped; the sockets are removed. Returns how it exited.
    pub fn stop(mut self, _run: &RunDir) -> Option<ExitStatus> {
        self.halt();
        self.child.try_wait().ok().flatten()
    }

    fn halt(&mut self) {
        if !std::mem::replace(&mut self.stopped, true) {
            stop_group(&mut self.child, "phyr-device", Duration::from_secs(3));
            remove_socket_dir(&self.socket_dir);
        }
    }
}

impl Drop for DeviceProc {
    /// A harness error between start and stop still stops the device and removes its sockets.
    fn drop(&mut self) {
        self.halt();
    }
}

/// Runs the session to its end: the device of `l.device` (if any) is started before QEMU and
/// stopped after it. Errors are for things that stop it from starting at all.
pub fn run(l: Launch<'_>) -> Result<Outcome> {
    let mut device = match &l.device {
        Some(d) => Some(DeviceProc::start(d, l.run)?),
        None => None,
    };
    let outcome = guest(&l, device.as_mut());
    match device {
        Some(d) => {
            d.stop(l.run);
        }
        None => cleanup_sockets(l.run),
    }
    outcome
}

/// Runs one guest against a device that was started before it and keeps running after it
/// (`l.device` is not used). A device that dies ends the session with
/// [`Ending::DeviceCrashed`], as in [`run`].
pub fn run_with_device(l: Launch<'_>, device: &mut DeviceProc) -> Result<Outcome> {
    guest(&l, Some(device))
}

/// QEMU from start to end, watching `device` too.
fn guest(l: &Launch<'_>, mut device: Option<&mut DeviceProc>) -> Result<Outcome> {
    let start = Instant::now();
    let mut qemu = start_qemu(l)?;
    let ready_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Duration>));
    let echo = qemu.stdout.take().map(|out| {
        let ready_at = ready_at.clone();
        let summary = l.console == Console::Summary;
        std::thread::spawn(move || echo_console(out, start, &ready_at, summary))
    });

    let ending = loop {
        if let Some(sig) = sys::pending_signal() {
            break Ending::Interrupted(sig);
        }
        if let Some(st) = qemu.try_wait()? {
            if st.success() {
                break Ending::PoweredOff;
            }
            // A device that died first usually takes QEMU down with it: blame the device.
            std::thread::sleep(POLL);
            if let Some(dst) = device.as_mut().and_then(|d| d.child.try_wait().ok().flatten()) {
                break Ending::DeviceCrashed(format!("{}; QEMU then exited too ({})", describe(dst), describe(st)));
            }
            break Ending::QemuFailed(describe(st));
        }
        if let Some(d) = device.as_mut() {
            if let Some(st) = d.child.try_wait()? {
                break Ending::DeviceCrashed(describe(st));
            }
        }
        if let Some(t) = l.timeout {
            if start.elapsed() > t {
                break Ending::TimedOut(t);
            }
        }
        let ready = *ready_at.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(after), Some(ready)) = (l.kill_after_ready, ready) {
            if start.elapsed() >= ready + after {
                // SIGKILL, as a crashing VMM dies: no chance to tell the device anything.
                let _ = qemu.kill();
                let st = qemu.wait()?;
                // QEMU may have ended on its own just before: only SIGKILL is the planned end.
                use std::os::unix::process::ExitStatusExt;
                break match st.signal() {
                    Some(libc::SIGKILL) => Ending::QemuKilled(start.elapsed().saturating_sub(ready)),
                    _ if st.success() => Ending::PoweredOff,
                    _ => Ending::QemuFailed(describe(st)),
                };
            }
        }
        std::thread::sleep(POLL);
    };

    let qemu_grace = Duration::from_secs(5);
    match l.console {
        Console::Captured | Console::Summary => stop_group(&mut qemu, "QEMU", qemu_grace),
        Console::Interactive => stop_pid(&mut qemu, qemu_grace),
    }
    if let Some(h) = echo {
        let _ = h.join();
    }
    let ready_after = *ready_at.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Outcome {
        ending,
        elapsed: start.elapsed(),
        ready_after,
    })
}

fn describe(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => st.to_string(),
    }
}

fn start_device(d: &DeviceLaunch, run: &RunDir) -> Result<Child> {
    if !d.binary.is_file() {
        bail!(
            "phyr-device not found at {}; run `cargo build --release -p phyr-device` (or pass --device-bin PATH)",
            d.binary.display()
        );
    }
    let log = std::fs::File::create(run.file("device.log"))?;
    let mut cmd = Command::new(&d.binary);
    // device.log is a file: no terminal colour codes in it.
    cmd.args(&d.args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    sys::child_dies_with_parent(&mut cmd, true);
    std::fs::write(
        run.file("device.cmdline"),
        shell_line(&d.binary.display().to_string(), &d.args),
    )?;
    cmd.spawn().with_context(|| format!("starting {}", d.binary.display()))
}

fn wait_for_sockets(child: &mut Child, sockets: &[PathBuf], run: &RunDir) -> Result<()> {
    let t = Instant::now();
    loop {
        if sockets
            .iter()
            .all(|s| std::fs::metadata(s).is_ok_and(|m| m.file_type().is_socket()))
        {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            bail!(
                "phyr-device exited early ({}) before creating its sockets; see {}{}",
                describe(st),
                run.file("device.log").display(),
                log_tail(&run.file("device.log"), 6)
            );
        }
        if sys::pending_signal().is_some() {
            bail!("interrupted while waiting for phyr-device's sockets");
        }
        if t.elapsed() > SOCKET_WAIT {
            let missing: Vec<String> = sockets
                .iter()
                .filter(|s| !s.exists())
                .map(|s| s.display().to_string())
                .collect();
            bail!(
                "phyr-device did not create {} within {} s; see {}",
                missing.join(", "),
                SOCKET_WAIT.as_secs(),
                run.file("device.log").display()
            );
        }
        std::thread::sleep(POLL);
    }
}

fn start_qemu(l: &Launch<'_>) -> Result<Child> {
    let log = std::fs::File::create(l.run.file("qemu.log"))?;
    let mut cmd = l.qemu.command();
    cmd.args(&l.qemu_args).stderr(log);
    match l.console {
        Console::Interactive => {
            // QEMU must stay in the terminal's foreground process group to read the keyboard.
            sys::child_dies_with_parent(&mut cmd, false);
        }
        Console::Captured | Console::Summary => {
            cmd.stdin(Stdio::null()).stdout(Stdio::piped());
            sys::child_dies_with_parent(&mut cmd, true);
        }
    }
    let mut argv = l.qemu.argv_prefix();
    argv.extend(l.qemu_args.iter().cloned());
    std::fs::write(l.run.file("qemu.cmdline"), shell_line(&argv[0], &argv[1..]))?;
    cmd.spawn().with_context(|| format!("starting {}", l.qemu.origin))
}

/// Copies the captured console to stdout, noting when the guest became ready.
fn echo_console(
    out: std::process::ChildStdout,
    start: Instant,
    ready_at: &std::sync::Mutex<Option<Duration>>,
    summary: bool,
) {
    let mut reader = BufReader::new(out);
    let mut line = Vec::new();
    let stdout = std::io::stdout();
    loop {
        line.clear();
        // A guest that prints without newlines is flushed every 64 KiB, never buffered forever.
        match (&mut reader).take(64 << 10).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.windows(17).any(|w| w == b"phyr-init: READY:") {
            if let Ok(mut r) = ready_at.lock() {
                r.get_or_insert(start.elapsed());
            }
        }
        if summary && !worth_echoing(&line) {
            continue;
        }
        let mut lock = stdout.lock();
        let _ = lock.write_all(&line);
        let _ = lock.flush();
    }
}

/// The console lines a summary shows: init messages, markers, TAP results, kernel trouble.
pub fn worth_echoing(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let t = text.trim_start();
    [
        "phyr-init:",
        "=== ",
        "ok ",
        "not ok ",
        "TAP version",
        "1..",
        "# totals",
        "# soak begin",
        "# soak checked",
        "# phyr-soak",
        "# soak wrong",
        "# soak corrupt",
        "# soak end",
    ]
    .iter()
    .any(|p| t.starts_with(p))
        || ["Kernel panic", "BUG:", "Oops", "WARNING:", "DMAR:"]
            .iter()
            .any(|k| t.contains(k) && !t.contains("DMAR: IOMMU enabled"))
}

/// SIGTERM to the child's process group, SIGKILL after `grace`, then reap.
fn stop_group(child: &mut Child, what: &str, grace: Duration) {
    let pgid = child.id();
    if matches!(child.try_wait(), Ok(None)) {
        sys::kill_group(pgid, libc::SIGTERM);
        if !wait_exit(child, grace) {
            say(format!(
                "{what} did not stop within {} s of SIGTERM; killing it",
                grace.as_secs()
            ));
            sys::kill_group(pgid, libc::SIGKILL);
            let _ = child.wait();
        }
    }
    // Anything the child left running in its group goes too.
    if sys::group_alive(pgid) {
        say(format!(
            "{what} left processes behind in its process group {pgid}; killing them"
        ));
        sys::kill_group(pgid, libc::SIGKILL);
    }
}

fn stop_pid(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(None)) {
        sys::term_pid(child.id());
        if !wait_exit(child, grace) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_exit(child: &mut Child, grace: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < grace {
        if !matches!(child.try_wait(), Ok(None)) {
            return true;
        }
        std::thread::sleep(POLL);
    }
    false
}

fn cleanup_sockets(run: &RunDir) {
    remove_socket_dir(&run.socket_dir());
}

fn remove_socket_dir(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Prints how a guest run ended (which side failed and where its log is); returns an exit code.
pub fn report_ending(run: &RunDir, o: &Outcome) -> i32 {
    let secs = o.elapsed.as_secs_f64();
    match &o.ending {
        Ending::PoweredOff => {
            let serial = std::fs::read_to_string(run.file("serial.log")).unwrap_or_default();
            if serial.contains("Kernel panic") {
                say(format!(
                    "the guest kernel panicked after {secs:.1} s; see {}",
                    run.file("serial.log").display()
                ));
                return 1;
            }
            say(format!(
                "guest powered off after {secs:.1} s; logs in {}",
                run.path.display()
            ));
            0
        }
        Ending::QemuFailed(st) => {
            say(format!(
                "QEMU failed ({st}) after {secs:.1} s; see {}{}",
                run.file("qemu.log").display(),
                log_tail(&run.file("qemu.log"), 5)
            ));
            1
        }
        Ending::DeviceCrashed(st) => {
            say(format!(
                "phyr-device died ({st}) after {secs:.1} s; QEMU was stopped. The logs stay in {}: \
                 device.log (last lines below), serial.log, qemu.log. What the device did up to its \
                 end: `just trace {}` (a trace that ends without a close record was cut by the death). \
                 Unless you killed it, this is a phyr-device bug: report it with device.log and \
                 device.cmdline (the command line that reruns the device alone){}",
                run.path.display(),
                run.path.display(),
                log_tail(&run.file("device.log"), 5)
            ));
            1
        }
        Ending::QemuKilled(after) => {
            say(format!(
                "QEMU killed with SIGKILL on purpose {:.1} s after the guest was ready; phyr-device \
                 kept serving; logs in {}",
                after.as_secs_f64(),
                run.path.display()
            ));
            0
        }
        Ending::Interrupted(sig) => {
            say(format!(
                "interrupted by {sig}; QEMU and phyr-device stopped, logs in {}",
                run.path.display()
            ));
            130
        }
        Ending::TimedOut(t) => {
            say(format!(
                "timed out after {} s; QEMU and phyr-device stopped; see {}",
                t.as_secs(),
                run.file("serial.log").display()
            ));
            1
        }
    }
}

/// The last `n` lines of a log, indented, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last lines:\n    {}", tail.join("\n    "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_group(script: &str) -> Child {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        sys::child_dies_with_parent(&mut c, true);
        c.spawn().unwrap()
    }

    #[test]
    fn stop_group_kills_a_child_that_ignores_sigterm_and_its_grandchildren() {
        // The shell ignores SIGTERM and leaves a grandchild running in the same group.
        let mut child = spawn_group("trap '' TERM; sleep 300 & sleep 300; wait");
        std::thread::sleep(Duration::from_millis(200));
        let pgid = child.id();
        assert!(sys::group_alive(pgid));
        let t = Instant::now();
        stop_group(&mut child, "test child", Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!sys::group_alive(pgid), "processes left in group {pgid}");
    }

    #[test]
    fn stop_group_on_an_exited_child_is_harmless() {
        let mut child = spawn_group("exit 3");
        assert_eq!(child.wait().unwrap().code(), Some(3));
        let pgid = child.id();
        let t = Instant::now();
        // A long grace: stopping a child that already exited must not wait for it.
        stop_group(&mut child, "test child", Duration::from_secs(5));
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "waited {:?} on an exited child",
            t.elapsed()
        );
        assert_eq!(
            child.try_wait().unwrap().and_then(|s| s.code()),
            Some(3),
            "exit status kept"
        );
        assert!(!sys::group_alive(pgid), "group {pgid} still has processes");
    }

    #[test]
    fn summary_echo_keeps_results_and_trouble_only() {
        assert!(worth_echoing(b"ok 3 copy-host-host\n"));
        assert!(worth_echoing(b"not ok 4 x # status 3\n"));
        assert!(worth_echoing(b"phyr-init: READY: 2 device(s) bound to vfio-pci\r\n"));
        assert!(worth_echoing(
            b"[    4.1] Kernel panic - not syncing: Attempted to kill init!\n"
        ));
        assert!(!worth_echoing(b"# phyr-map kind=host iova=0x1000+0x1000 perm=rw\n"));
        assert!(!worth_echoing(
            b"[    0.5] pci 0000:00:01.0: PCI bridge to [bus 01-04]\n"
        ));
    }
}
