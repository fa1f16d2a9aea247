//! Provisioning: QEMU and busybox, each cached and verified before use (the guest kernels:
//! kernel/debian.rs; compilers for their modules: kernel/toolchain.rs).
//! Progress goes to stderr as `phyr: ...` lines (`progress.rs`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::progress::say;
use crate::provision::apt::{extract_deb, PrivateApt};
use crate::provision::cache::Cache;
use crate::provision::elf::elf_has_interp;
use crate::provision::qemu::{Probe, Qemu};

pub struct Provisioner<'a> {
    pub(crate) cache: &'a Cache,
    apt: Option<PrivateApt>,
}

impl<'a> Provisioner<'a> {
    pub fn new(cache: &'a Cache) -> Self {
        Provisioner { cache, apt: None }
    }

    /// The private apt, created and updated on first use.
    pub(crate) fn apt(&mut self) -> Result<&PrivateApt> {
        if self.apt.is_none() {
            let t = Instant::now();
            say("updating the private Debian trixie package lists (apt-get update, private config) ...");
            let apt = PrivateApt::new(&self.cache.dir("apt"))?;
            apt.update()?;
            say(format!("  package lists ready ({:.1} s)", t.elapsed().as_secs_f64()));
            self.apt = Some(apt);
        }
        Ok(self.apt.as_ref().expect("set above"))
    }

    /// A QEMU that has vfio-user-pci: `explicit` if given, else the system one, else a private one.
    pub fn qemu(&mut self, explicit: Option<&Path>) -> Result<Qemu> {
        if let Some(path) = explicit {
            let mut q = Qemu::system().unwrap_or_else(|| Qemu::in_prefix(Path::new("/")));
            q.program = path.to_path_buf();
            q.pre_args.clear();
            q.env.clear();
            q.firmware_args.clear();
            q.origin = path.display().to_string();
            return match q.probe()? {
                Probe::Usable(q) => Ok(q),
                other => bail!(
                    "{}; drop --qemu to let phyr-harness provision a private QEMU",
                    other.reason()
                ),
            };
        }
        let why = match Qemu::system() {
            Some(q) => match q.probe() {
                Ok(Probe::Usable(q)) => {
                    say(format!("using the system QEMU {} at {}", q.version, q.origin));
                    return Ok(q);
                }
                Ok(other) => other.reason(),
                Err(e) => format!("the system QEMU does not run ({e:#})"),
            },
            None => "no qemu-system-x86_64 on PATH".to_owned(),
        };
        let prefix = self.cache.dir("qemu").join("prefix");
        if self.cache.ready("qemu").is_some() {
            match Qemu::in_prefix(&prefix).probe() {
                Ok(Probe::Usable(q)) => {
                    say(format!(
                        "using QEMU {} cached in {} ({why})",
                        q.version,
                        prefix.display()
                    ));
                    return Ok(q);
                }
                Ok(other) => say(format!(
                    "cached QEMU unusable ({}); provisioning it again",
                    other.reason()
                )),
                Err(e) => say(format!("cached QEMU does not run ({e:#}); provisioning it again")),
            }
        }
        let t = Instant::now();
        say(format!(
            "{why}; provisioning QEMU 11.1 from Debian trixie-backports into {} ...",
            prefix.display()
        ));
        self.cache.clear("qemu")?;
        let debs = self
            .apt()
            .and_then(|apt| apt.download_closure("qemu-system-x86", "trixie-backports"))
            .with_context(|| format!("{why}, and provisioning QEMU 11.1 from Debian trixie-backports failed"))?;
        say(format!(
            "  downloaded {} packages; unpacking (nothing is installed on the host) ...",
            debs.len()
        ));
        for deb in &debs {
            extract_deb(deb, &prefix)?;
        }
        for deb in &debs {
            let _ = std::fs::remove_file(deb);
        }
        match Qemu::in_prefix(&prefix).probe()? {
            Probe::Usable(q) => {
                self.cache.mark_ready("qemu", &format!("QEMU {}\n", q.version))?;
                say(format!(
                    "  QEMU {} ready, vfio-user-pci present ({:.1} s)",
                    q.version,
                    t.elapsed().as_secs_f64()
                ));
                Ok(q)
            }
            other => bail!(
                "the provisioned QEMU cannot be used: {}. Debian's trixie-backports may have changed; \
                 install QEMU >= 10.1 with vfio-user-pci and pass --qemu PATH",
                other.reason()
            ),
        }
    }

    /// The static busybox from Debian's `busybox-static`.
    pub fn busybox(&mut self, explicit: Option<&Path>) -> Result<PathBuf> {
        if let Some(path) = explicit {
            check_static_elf(path).with_context(|| format!("--busybox {}", path.display()))?;
            return Ok(path.to_path_buf());
        }
        let bin = self.cache.dir("busybox").join("root/usr/bin/busybox");
        if self.cache.ready("busybox").is_some() && bin.is_file() {
            return Ok(bin);
        }
        let t = Instant::now();
        say(format!(
            "provisioning busybox-static into {} ...",
            self.cache.dir("busybox").display()
        ));
        self.cache.clear("busybox")?;
        let dl = self.cache.dir("busybox").join("download");
        let debs = self.apt()?.download(&["busybox-static"], &dl)?;
        for deb in &debs {
            extract_deb(deb, &self.cache.dir("busybox").join("root"))?;
        }
        std::fs::remove_dir_all(&dl)?;
        check_static_elf(&bin)?;
        self.cache.mark_ready("busybox", "busybox-static\n")?;
        say(format!("  busybox ready ({:.1} s)", t.elapsed().as_secs_f64()));
        Ok(bin)
    }
}

/// Busybox must be a static x86-64 ELF: the initramfs has no libc.
pub fn check_static_elf(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        bail!("{} is not an ELF executable", path.display());
    }
    if elf_has_interp(&bytes) {
        bail!(
            "{} is dynamically linked; the guest initramfs has no libc and needs a static binary",
            path.display()
        );
    }
    Ok(())
}
