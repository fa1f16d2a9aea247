//! A private APT configuration for fetching Debian trixie packages into the cache.
//!
//! Everything apt reads or writes lives under one directory: its own state (package lists),
//! its own download cache, an empty dpkg status file (so the whole dependency closure is
//! downloaded, never compared with the host's installed packages), its own sources and no
//! configuration fragments from /etc/apt. Packages are only downloaded and unpacked with
//! `dpkg-deb -x`; nothing is ever installed on the host. Works as root or as a normal user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The Debian archive and keyring used for trixie packages.
const MIRROR: &str = "http://deb.debian.org/debian";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

pub struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    /// Creates (or reuses) the private configuration under `root`.
    pub fn new(root: &Path) -> Result<Self> {
        for tool in ["apt-get", "apt-cache", "dpkg-deb"] {
            if which(tool).is_none() {
                bail!(
                    "`{tool}` not found: provisioning QEMU and the guest kernel downloads Debian packages with apt/dpkg. \
                     On a non-Debian host install QEMU >= 10.1 (with vfio-user-pci) yourself and pass --qemu, --kernel and --busybox, \
                     or run on Debian/Ubuntu."
                );
            }
        }
        if !Path::new(KEYRING).exists() {
            bail!(
                "{KEYRING} is missing; it holds the keys that verify Debian's archive (package debian-archive-keyring)"
            );
        }
        for d in [
            "state/lists/partial",
            "cache/archives/partial",
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/sources.list.d",
        ] {
            std::fs::create_dir_all(root.join(d)).with_context(|| format!("creating {}", root.join(d).display()))?;
        }
        let status = root.join("state/status");
        if !status.exists() {
            std::fs::write(&status, "").with_context(|| format!("writing {}", status.display()))?;
        }
        std::fs::write(root.join("etc/sources.list.d/trixie.sources"), sources_file())?;
        std::fs::write(root.join("apt.conf"), apt_conf(root, crate::sys::is_root()))?;
        Ok(PrivateApt {
            root: root.to_path_buf(),
        })
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", self.root.join("apt.conf"))
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    /// `apt-get update` against the private sources.
    pub fn update(&self) -> Result<()> {
        run_logged(
            self.cmd("apt-get").args(["-q", "update"]),
            &self.root.join("update.log"),
        )
        .context("apt-get update (private trixie sources) failed; is deb.debian.org reachable?")
    }

    /// Downloads `package` from `release` with its whole dependency closure; returns the .deb files.
    pub fn download_closure(&self, package: &str, release: &str) -> Result<Vec<PathBuf>> {
        let archives = self.root.join("cache/archives");
        run_logged(
            self.cmd("apt-get")
                .args(["-q", "-y", "install", "--download-only", "-t", release, package]),
            &self.root.join(format!("download-{package}.log")),
        )
        .with_context(|| format!("downloading {package} from {release} with its dependencies"))?;
        debs_in(&archives)
    }

    /// Downloads single packages (no dependencies) into `dest`; returns the .deb files there.
    pub fn download(&self, packages: &[&str], dest: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dest)?;
        let mut c = self.cmd("apt-get");
        c.args(["-q", "download"]).args(packages).current_dir(dest);
        run_logged(&mut c, &self.root.join("download.log"))
            .with_context(|| format!("apt-get download {}", packages.join(" ")))?;
        debs_in(dest)
    }

    /// The output of `apt-cache ARGS` (e.g. `policy P`, `show P=V`) against the private lists.
    pub fn query(&self, args: &[&str]) -> Result<String> {
        let out = self
            .cmd("apt-cache")
            .args(args)
            .output()
            .with_context(|| format!("running apt-cache {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "apt-cache {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Package names known to the private lists that start with `prefix`.
    pub fn names_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let out = self
            .cmd("apt-cache")
            .args(["pkgnames", prefix])
            .output()
            .context("running apt-cache pkgnames")?;
        if !out.status.success() {
            bail!(
                "apt-cache pkgnames {prefix} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

/// Unpacks a .deb's files into `dest` (like installing it into a private prefix, minus scripts).
pub fn extract_deb(deb: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest)?;
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dest)
        .stderr(Stdio::piped())
        .output()?;
    if !out.status.success() {
        bail!(
            "dpkg-deb -x {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn debs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    v.sort();
    Ok(v)
}

/// Runs a command with its output in `log`; on failure the error quotes the log's last lines.
fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = cmd
        .stdout(file.try_clone()?)
        .stderr(file)
        .stdin(Stdio::null())
        .status()?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!("{status}; last lines of {}:\n  {}", log.display(), tail.join("\n  "));
    }
    Ok(())
}

fn sources_file() -> String {
    format!("Types: deb\nURIs: {MIRROR}\nSuites: trixie trixie-backports\nComponents: main\nSigned-By: {KEYRING}\n")
}

fn apt_conf(root: &Path, root_user: bool) -> String {
    let r = root.display();
    let mut s = format!(
        "// Private apt configuration written by phyr-harness. It never touches the host's packages.\n\
         Dir::State \"{r}/state\";\n\
         Dir::State::status \"{r}/state/status\";\n\
         Dir::Cache \"{r}/cache\";\n\
         Dir::Etc::SourceList \"/dev/null\";\n\
         Dir::Etc::SourceParts \"{r}/etc/sources.list.d\";\n\
         Dir::Etc::Parts \"{r}/etc/apt.conf.d\";\n\
         Dir::Etc::Preferences \"/dev/null\";\n\
         Dir::Etc::PreferencesParts \"{r}/etc/preferences.d\";\n\
         Dir::Log \"{r}/log\";\n\
         APT::Default-Release \"trixie\";\n\
         APT::Install-Recommends \"false\";\n\
         APT::Install-Suggests \"false\";\n\
         APT::Architecture \"amd64\";\n\
         APT::Architectures {{ \"amd64\"; }};\n\
         Acquire::Languages \"none\";\n"
    );
    if root_user {
        // As root apt hands downloads to the `_apt` user, who may not be able to enter the cache.
        s.push_str("APT::Sandbox::User \"root\";\n");
    }
    s
}

/// The first `name` on PATH that is an executable file.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_fully_private() {
        let conf = apt_conf(Path::new("/c/apt"), false);
        for key in [
            "Dir::State \"/c/apt/state\"",
            "Dir::Cache \"/c/apt/cache\"",
            "Dir::Etc::Parts \"/c/apt/etc/apt.conf.d\"",
            "SourceList \"/dev/null\"",
        ] {
            assert!(conf.contains(key), "missing {key}");
        }
        assert!(!conf.contains("Sandbox"));
        assert!(apt_conf(Path::new("/c"), true).contains("APT::Sandbox::User \"root\""));
        assert!(sources_file().contains("trixie trixie-backports"));
    }
}
