//! The guest initramfs: busybox and its applet links, the modules init loads (VFIO, 9p for
//! `--share`, extra ones by name, out-of-tree ones the harness built), the static `phyr`
//! driver, `/etc/phyr.conf` and `/init` (harness/guest/init.sh), as an uncompressed newc cpio.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::image::cpio::CpioWriter;
use crate::kernel::kmod::Module;
use crate::provision::elf::elf_has_interp;
use crate::shell::sh_quote;

const INIT_SCRIPT: &str = include_str!("../../guest/init.sh");

/// What the guest does once its devices are bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMode {
    /// An interactive shell on the serial console.
    Shell,
    /// `phyr suite`, TAP on the console between markers, then power off.
    Suite,
    /// `phyr ksuite --bind` (the endpoints moved to phyr.ko), TAP between the same markers,
    /// then power off.
    KernelSuite,
    /// One shell command between markers, then power off.
    Command(String),
}

pub struct InitramfsSpec<'a> {
    pub busybox: &'a Path,
    pub modules: &'a [Module],
    /// The static guest driver binary, when there is one.
    pub phyr: Option<&'a Path>,
    pub mode: GuestMode,
    /// `vendor:device` pairs (as sysfs prints them, `0x1234:0x7068`) handed to vfio-pci.
    pub bind: Vec<String>,
    /// `--share`: the host directory (for messages) mounted at /mnt/host over 9p.
    pub share: Option<String>,
    /// With `share`: init reads `/mnt/host/<probe>.in` and writes `uname -r` and what it read
    /// to `/mnt/host/<probe>.out` (the test run's check that the share works both ways).
    pub share_probe: Option<String>,
}

/// Writes the archive to `out` and returns its size in bytes.
pub fn build(spec: &InitramfsSpec<'_>, out: &Path) -> Result<u64> {
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = CpioWriter::new(BufWriter::new(file));
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "root",
        "lib",
        "lib/modules",
    ] {
        w.dir(d, 0o755)?;
    }
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.char_dev("dev/null", 0o666, 1, 3)?;

    let busybox = std::fs::read(spec.busybox).with_context(|| format!("reading {}", spec.busybox.display()))?;
    w.file("bin/busybox", 0o755, &busybox)?;
    for applet in busybox_applets(spec.busybox)? {
        if applet != "busybox" {
            w.symlink(&format!("bin/{applet}"), "busybox")?;
        }
    }

    let mut names = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for m in spec.modules {
        let file_name = m
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .context("module path without a file name")?;
        if !seen.insert(file_name.to_owned()) {
            bail!(
                "two modules named {file_name} ({}); rename one of them",
                m.path.display()
            );
        }
        let data = std::fs::read(&m.path).with_context(|| format!("reading {}", m.path.display()))?;
        w.file(&format!("lib/modules/{file_name}"), 0o644, &data)?;
        names.push(file_name.to_owned());
    }

    if let Some(phyr) = spec.phyr {
        let data = std::fs::read(phyr).with_context(|| format!("reading {}", phyr.display()))?;
        if elf_has_interp(&data) {
            bail!(
                "{} is dynamically linked; the guest has no libc. Build it statically: \
                 RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p phyr-driver --target x86_64-unknown-linux-gnu",
                phyr.display()
            );
        }
        w.file("bin/phyr", 0o755, &data)?;
    }

    w.file("etc/phyr.conf", 0o644, phyr_conf(spec, &names).as_bytes())?;
    w.file("init", 0o755, INIT_SCRIPT.as_bytes())?;
    let mut inner = w.finish()?;
    std::io::Write::flush(&mut inner)?;
    Ok(std::fs::metadata(out)?.len())
}

fn phyr_conf(spec: &InitramfsSpec<'_>, modules: &[String]) -> String {
    let (mode, cmd) = match &spec.mode {
        GuestMode::Shell => ("shell", ""),
        GuestMode::Suite => ("test", ""),
        GuestMode::KernelSuite => ("ktest", ""),
        GuestMode::Command(c) => ("cmd", c.as_str()),
    };
    let check: Vec<&str> = spec
        .modules
        .iter()
        .filter(|m| m.out_of_tree)
        .map(|m| m.name.as_str())
        .collect();
    format!(
        "# written by phyr-harness\nPHYR_MODE={}\nPHYR_MODULES={}\nPHYR_CHECK_MODULES={}\nPHYR_BIND={}\nPHYR_GUEST_CMD={}\n\
         PHYR_SHARE={}\nPHYR_SHARE_HOST={}\nPHYR_SHARE_PROBE={}\n",
        mode,
        sh_quote(&modules.join(" ")),
        sh_quote(&check.join(" ")),
        sh_quote(&spec.bind.join(" ")),
        sh_quote(cmd),
        sh_quote(if spec.share.is_some() { crate::image::share::TAG } else { "" }),
        sh_quote(spec.share.as_deref().unwrap_or_default()),
        sh_quote(spec.share_probe.as_deref().unwrap_or_default()),
    )
}

/// The applet names a busybox binary provides (`busybox --list`; it is static, so it runs here).
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    if !out.status.success() {
        bail!("{} --list failed", busybox.display());
    }
    let list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_.[".contains(c)))
        .map(str::to_owned)
        .collect();
    for needed in ["sh", "mount", "insmod", "poweroff", "setsid", "cttyhack"] {
        if !list.iter().any(|a| a == needed) {
            bail!(
                "{} has no `{needed}` applet; use Debian's busybox-static",
                busybox.display()
            );
        }
    }
    Ok(list)
}

const GUEST_BIN: &str = "guest/x86_64-unknown-linux-gnu/release/phyr";

/// The default location of the statically linked guest driver: `target/guest/...` under the
/// current directory, else next to the harness's own target directory (`<target>/release/..`).
pub fn default_phyr_binary() -> PathBuf {
    let here = PathBuf::from("target").join(GUEST_BIN);
    if here.is_file() {
        return here;
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(GUEST_BIN)))
        .filter(|p| p.is_file());
    beside.unwrap_or(here)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_carries_mode_modules_and_bind_list() {
        let spec = InitramfsSpec {
            busybox: Path::new("/bin/busybox"),
            modules: &[],
            phyr: None,
            mode: GuestMode::Command("phyr list".into()),
            bind: vec!["0x1234:0x7068".into()],
            share: Some("/home/me/x".into()),
            share_probe: None,
        };
        let conf = phyr_conf(&spec, &["vfio.ko.xz".into(), "vfio-pci.ko.xz".into()]);
        assert!(conf.contains("PHYR_MODE=cmd\n"));
        assert!(conf.contains("PHYR_SHARE='phyr-host'\nPHYR_SHARE_HOST='/home/me/x'\nPHYR_SHARE_PROBE=''\n"));
        assert!(conf.contains("PHYR_CHECK_MODULES=''\n"));
        assert!(conf.contains("PHYR_MODULES='vfio.ko.xz vfio-pci.ko.xz'\n"));
        assert!(conf.contains("PHYR_BIND='0x1234:0x7068'\n"));
        assert!(conf.contains("PHYR_GUEST_CMD='phyr list'\n"));
    }

    #[test]
    fn init_script_has_the_markers_the_harness_parses() {
        for marker in [
            "READY:",
            "=== phyr suite begin ===",
            "=== phyr suite end: exit",
            "phyr ksuite --bind",
            "poweroff -f",
            "vermagic mismatch",
            "mount -t 9p",
        ] {
            assert!(INIT_SCRIPT.contains(marker), "{marker}");
        }
    }
}
