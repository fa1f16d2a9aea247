//! Finding a QEMU that can run phyr: the system one when it is new enough and has
//! `vfio-user-pci`, otherwise the private one unpacked into the cache (see `provision`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::provision::version::{device_help_lists, parse_qemu_version, Version, QEMU_MIN};

/// How to start `qemu-system-x86_64`: a program, arguments that come before QEMU's own, and
/// environment. A private prefix runs through its own dynamic loader, so the host's libc is
/// never involved.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub program: PathBuf,
    pub pre_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `-L DIR` firmware search paths (private prefix only).
    pub firmware_args: Vec<String>,
    pub version: Version,
    /// `-device help` lists virtio-9p-pci (needed by `--share`).
    pub virtio_9p: bool,
    /// Human description: "/usr/bin/qemu-system-x86_64" or "private QEMU in ...".
    pub origin: String,
    /// The private prefix it was unpacked into (`None` for a system QEMU).
    pub prefix: Option<PathBuf>,
}

/// What a probe of one QEMU binary found.
#[derive(Debug)]
pub enum Probe {
    Usable(Qemu),
    TooOld { origin: String, version: Version },
    NoVfioUser { origin: String, version: Version },
}

impl Qemu {
    /// A `Command` for this QEMU with loader, environment and firmware paths set.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.pre_args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(&self.firmware_args);
        c
    }

    /// The full argv (program first) for logs and `--dry-run`.
    pub fn argv_prefix(&self) -> Vec<String> {
        let mut v = vec![self.program.display().to_string()];
        v.extend(self.pre_args.iter().cloned());
        v.extend(self.firmware_args.iter().cloned());
        v
    }

    /// A QEMU from PATH (or `None` when there is none).
    pub fn system() -> Option<Qemu> {
        let program = crate::provision::apt::which("qemu-system-x86_64")?;
        Some(Qemu {
            origin: program.display().to_string(),
            program,
            pre_args: vec![],
            env: vec![],
            firmware_args: vec![],
            version: Version::new(0, 0, 0),
            virtio_9p: false,
            prefix: None,
        })
    }

    /// A QEMU unpacked from Debian packages into `prefix`.
    pub fn in_prefix(prefix: &Path) -> Qemu {
        let lib = prefix.join("usr/lib/x86_64-linux-gnu");
        Qemu {
            program: lib.join("ld-linux-x86-64.so.2"),
            pre_args: vec![
                "--library-path".into(),
                lib.display().to_string(),
                prefix.join("usr/bin/qemu-system-x86_64").display().to_string(),
            ],
            env: vec![("QEMU_MODULE_DIR".into(), lib.join("qemu").display().to_string())],
            firmware_args: vec![
                "-L".into(),
                prefix.join("usr/share/qemu").display().to_string(),
                "-L".into(),
                prefix.join("usr/share/seabios").display().to_string(),
            ],
            version: Version::new(0, 0, 0),
            virtio_9p: false,
            origin: format!("private QEMU in {}", prefix.display()),
            prefix: Some(prefix.to_path_buf()),
        }
    }

    /// Runs `-version` and `-device help` and says whether this QEMU can attach vfio-user endpoints.
    pub fn probe(mut self) -> Result<Probe> {
        let out = self.capture(&["-version"])?;
        let version = parse_qemu_version(&out).with_context(|| {
            format!(
                "{}: could not read a version from `-version` output: {:?}",
                self.origin,
                out.trim()
            )
        })?;
        self.version = version;
        if version < QEMU_MIN {
            return Ok(Probe::TooOld {
                origin: self.origin,
                version,
            });
        }
        // `-device help` needs a machine that does not try to open a display.
        let help = self.capture(&["-machine", "none", "-device", "help"])?;
        if !device_help_lists(&help, "vfio-user-pci") {
            return Ok(Probe::NoVfioUser {
                origin: self.origin,
                version,
            });
        }
        self.virtio_9p = device_help_lists(&help, "virtio-9p-pci");
        Ok(Probe::Usable(self))
    }

    fn capture(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} {}", self.origin, args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "{} {} failed ({}): {}",
                self.origin,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(s)
    }
}

impl Probe {
    /// Why this QEMU cannot be used, for the "provisioning ..." message.
    pub fn reason(&self) -> String {
        match self {
            Probe::Usable(q) => format!("QEMU {} at {} is usable", q.version, q.origin),
            Probe::TooOld { origin, version } => {
                format!(
                    "QEMU {version} found at {origin}; vfio-user-pci needs >= {}.{}",
                    QEMU_MIN.major, QEMU_MIN.minor
                )
            }
            Probe::NoVfioUser { origin, version } => {
                format!("QEMU {version} found at {origin}, but its `-device help` does not list vfio-user-pci")
            }
        }
    }
}
