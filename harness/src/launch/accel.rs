//! TCG or KVM, decided by a real probe: /dev/kvm must open, and a tiny guest must boot under
//! KVM (nested, paravirtual KVM can exist and still fail with "KVM internal error"). The
//! verdict is cached per QEMU version, host kernel and guest kernel: one line per guest kernel
//! in `CACHE/accel-verdicts`, so alternating kernels do not probe again.

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::image::cpio::CpioWriter;
use crate::progress::say;
use crate::provision::cache::Cache;
use crate::provision::qemu::Qemu;
use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// Probe: KVM if a test guest boots under it, else TCG.
    Auto,
    Tcg,
    Kvm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    /// QEMU arguments. intel-iommu with intremap=on needs a split irqchip under KVM.
    pub fn args(self) -> Vec<String> {
        match self {
            Accel::Tcg => vec!["-accel".into(), "tcg".into()],
            Accel::Kvm => vec![
                "-accel".into(),
                "kvm,kernel-irqchip=split".into(),
                "-cpu".into(),
                "host".into(),
            ],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

const MARKER: &str = "PHYR-KVM-PROBE-OK";
const PROBE_TIMEOUT: Duration = Duration::from_secs(25);

pub fn choose(choice: AccelChoice, cache: &Cache, qemu: &Qemu, kernel: &Path, busybox: &Path) -> Result<Accel> {
    match choice {
        AccelChoice::Tcg => return Ok(Accel::Tcg),
        AccelChoice::Kvm => return Ok(Accel::Kvm),
        AccelChoice::Auto => {}
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        say(format!("accelerator: TCG (/dev/kvm: {e})"));
        return Ok(Accel::Tcg);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = format!("qemu {} host {} guest {}", qemu.version, host.trim(), kernel.display());
    let verdict_file = cache.dir("accel-verdicts");
    let known = std::fs::read_to_string(&verdict_file).unwrap_or_default();
    if let Some(accel) = cached_verdict(&known, &key) {
        say(format!(
            "accelerator: {} (cached probe result for this kernel in {}; --accel overrides)",
            accel.name(),
            verdict_file.display()
        ));
        return Ok(accel);
    }
    say("probing KVM: booting a test guest under -accel kvm (once per guest kernel; the result is cached) ...");
    let t = Instant::now();
    let accel = match probe_kvm(cache, qemu, kernel, busybox) {
        Ok(()) => Accel::Kvm,
        Err(e) => {
            say(format!("  KVM is not usable here ({e:#}); using TCG"));
            Accel::Tcg
        }
    };
    say(format!(
        "accelerator: {} (probe took {:.1} s)",
        accel.name(),
        t.elapsed().as_secs_f64()
    ));
    std::fs::write(&verdict_file, with_verdict(&known, &key, accel))?;
    Ok(accel)
}

/// The cached verdict for `key` in the verdict file's text (`kvm|tcg<TAB>key` lines).
fn cached_verdict(text: &str, key: &str) -> Option<Accel> {
    text.lines().find_map(|l| match l.split_once('\t') {
        Some(("kvm", k)) if k == key => Some(Accel::Kvm),
        Some(("tcg", k)) if k == key => Some(Accel::Tcg),
        _ => None,
    })
}

/// The verdict file with `key`'s line replaced (other kernels' lines kept, at most 32).
fn with_verdict(text: &str, key: &str, accel: Accel) -> String {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_once('\t').is_some_and(|(_, k)| k != key))
        .collect();
    let skip = lines.len().saturating_sub(31);
    lines.drain(..skip);
    let mut s: String = lines.iter().map(|l| format!("{l}\n")).collect();
    s.push_str(&format!("{}\t{key}\n", accel.name()));
    s
}

fn probe_kvm(cache: &Cache, qemu: &Qemu, kernel: &Path, busybox: &Path) -> Result<()> {
    let initrd = cache.dir("kvm-probe.cpio");
    let mut w = CpioWriter::new(std::io::BufWriter::new(std::fs::File::create(&initrd)?));
    w.dir("bin", 0o755)?;
    w.dir("dev", 0o755)?;
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.file("bin/busybox", 0o755, &std::fs::read(busybox)?)?;
    w.symlink("bin/sh", "busybox")?;
    w.file(
        "init",
        0o755,
        format!("#!/bin/sh\n/bin/busybox echo {MARKER}\n/bin/busybox poweroff -f\n").as_bytes(),
    )?;
    w.finish()?;
    let mut cmd = qemu.command();
    cmd.args(Accel::Kvm.args())
        .args([
            "-machine",
            "q35",
            "-m",
            "256M",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sys::child_dies_with_parent(&mut cmd, true);
    let mut child = cmd.spawn().context("starting QEMU for the KVM probe")?;
    let mut out = child.stdout.take().context("no stdout")?;
    let err = child.stderr.take().context("no stderr")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    // A nested KVM that cannot run the guest prints "KVM internal error" and pauses the VM
    // instead of exiting: watch stderr and stop at once rather than waiting for the timeout.
    let failed_early = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = failed_early.clone();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("KVM internal error") || line.contains("failed to initialize kvm") {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        let early = failed_early.load(std::sync::atomic::Ordering::SeqCst);
        if early || start.elapsed() > PROBE_TIMEOUT || sys::pending_signal().is_some() {
            sys::kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let _ = std::fs::remove_file(&initrd);
    if out.contains(MARKER) {
        return Ok(());
    }
    let first_err = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no error output");
    match status {
        None if failed_early.load(std::sync::atomic::Ordering::SeqCst) => {
            anyhow::bail!("the test guest stopped: {first_err}")
        }
        None => anyhow::bail!(
            "the test guest did not finish within {} s ({first_err})",
            PROBE_TIMEOUT.as_secs()
        ),
        Some(st) => anyhow::bail!("the test guest failed ({st}; {first_err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_verdict_per_guest_kernel() {
        let a = with_verdict("", "qemu 11.1.3 host h guest /k/backports", Accel::Tcg);
        let b = with_verdict(&a, "qemu 11.1.3 host h guest /k/stable", Accel::Kvm);
        assert_eq!(
            cached_verdict(&b, "qemu 11.1.3 host h guest /k/backports"),
            Some(Accel::Tcg)
        );
        assert_eq!(
            cached_verdict(&b, "qemu 11.1.3 host h guest /k/stable"),
            Some(Accel::Kvm)
        );
        assert_eq!(cached_verdict(&b, "qemu 11.1.3 host h guest /k/other"), None);
        // Re-probing one kernel replaces its line only.
        let c = with_verdict(&b, "qemu 11.1.3 host h guest /k/stable", Accel::Tcg);
        assert_eq!(c.lines().count(), 2);
        assert_eq!(
            cached_verdict(&c, "qemu 11.1.3 host h guest /k/stable"),
            Some(Accel::Tcg)
        );
        // Garbage and the old one-verdict format are ignored, not trusted.
        assert_eq!(
            cached_verdict("kvm\nqemu 1 host h guest /k\n", "qemu 1 host h guest /k"),
            None
        );
        let mut many = String::new();
        for i in 0..40 {
            many = with_verdict(&many, &format!("k{i}"), Accel::Tcg);
        }
        assert_eq!(many.lines().count(), 32);
        assert!(cached_verdict(&many, "k39").is_some() && cached_verdict(&many, "k0").is_none());
    }
}
