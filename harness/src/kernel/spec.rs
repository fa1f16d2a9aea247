//! What `--kernel` names: a Debian channel (`backports`, the default, or `stable`), one Debian
//! kernel release (`7.3.4+deb13-amd64`, or just `7.3.4`), a bzImage file, or a kernel build
//! tree (a directory).

use std::fmt;
use std::path::{Path, PathBuf};

/// A Debian kernel channel: its suite in the private apt sources decides the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    /// trixie-backports' newest `linux-image-amd64`: CONFIG_PCI_P2PDMA, dma_iova_*, dma_map_phys.
    Backports,
    /// trixie's own `linux-image-amd64` (the 6.12 series).
    Stable,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Backports, Channel::Stable];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Backports => "backports",
            Channel::Stable => "stable",
        }
    }

    /// The apt suite (as `apt-cache policy` prints it, `SUITE/main`) that serves this channel.
    pub fn suite(self) -> &'static str {
        match self {
            Channel::Backports => "trixie-backports",
            Channel::Stable => "trixie",
        }
    }

    pub fn from_name(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parsed `--kernel` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    Channel(Channel),
    /// A Debian kernel by version: a full release (`7.3.4+deb13-amd64`) or a version (`7.3.4`).
    Debian(String),
    /// A bzImage (or any x86 boot image) file.
    Image(PathBuf),
    /// A kernel build tree, or the output directory of `make O=DIR`.
    Tree(PathBuf),
}

/// The default guest kernel: the P2PDMA-capable one.
pub const DEFAULT: KernelSpec = KernelSpec::Channel(Channel::Backports);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("--kernel \"\": an empty kernel name; pass backports, stable, a Debian version such as 7.3.4, a bzImage or a kernel build directory")]
    Empty,
    #[error("--kernel {0}: no such file or directory, and not a kernel name (backports, stable, or a Debian version such as 7.3.4 or 6.12.117+deb13-amd64)")]
    Unknown(String),
    #[error("--kernel {0}: {1}")]
    Unreadable(String, String),
}

impl KernelSpec {
    /// Names win over files of the same name (write `./stable` for a file called `stable`);
    /// an argument with a `/` is always a path.
    pub fn parse(arg: &str) -> Result<KernelSpec, SpecError> {
        let a = arg.trim();
        if a.is_empty() {
            return Err(SpecError::Empty);
        }
        if !a.contains('/') {
            if let Some(c) = Channel::from_name(a) {
                return Ok(KernelSpec::Channel(c));
            }
            if looks_like_debian_version(a) && !Path::new(a).exists() {
                return Ok(KernelSpec::Debian(a.to_owned()));
            }
        }
        let p = Path::new(a);
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => Ok(KernelSpec::Tree(p.to_path_buf())),
            Ok(_) => Ok(KernelSpec::Image(p.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SpecError::Unknown(a.to_owned())),
            Err(e) => Err(SpecError::Unreadable(a.to_owned(), e.to_string())),
        }
    }
}

impl fmt::Display for KernelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelSpec::Channel(c) => write!(f, "{c}"),
            KernelSpec::Debian(v) => write!(f, "Debian {v}"),
            KernelSpec::Image(p) | KernelSpec::Tree(p) => write!(f, "{}", p.display()),
        }
    }
}

/// `7.3.4`, `6.12.117+deb13-amd64`, `7.3` — digits and dots first, then an optional Debian
/// suffix of letters, digits, `+`, `-`, `.`, `~`.
fn looks_like_debian_version(s: &str) -> bool {
    let head = s.split(['+', '-']).next().unwrap_or_default();
    let parts: Vec<&str> = head.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.~".contains(c))
}

/// The release `uname -r` prints for a Debian amd64 kernel package version, or `None` when
/// `s` is a bare version (`7.3.4`) that has to be looked up.
pub fn full_release(s: &str) -> Option<&str> {
    (s.contains("+deb") && s.ends_with("-amd64")).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_files_and_directories() {
        assert_eq!(
            KernelSpec::parse("backports"),
            Ok(KernelSpec::Channel(Channel::Backports))
        );
        assert_eq!(KernelSpec::parse(" stable "), Ok(KernelSpec::Channel(Channel::Stable)));
        assert_eq!(KernelSpec::parse("7.3.4"), Ok(KernelSpec::Debian("7.3.4".into())));
        assert_eq!(
            KernelSpec::parse("6.12.117+deb13-amd64"),
            Ok(KernelSpec::Debian("6.12.117+deb13-amd64".into()))
        );
        let dir = std::env::temp_dir();
        assert_eq!(
            KernelSpec::parse(dir.to_str().unwrap()),
            Ok(KernelSpec::Tree(dir.clone()))
        );
        let file = dir.join(format!("phyr-spec-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            KernelSpec::parse(file.to_str().unwrap()),
            Ok(KernelSpec::Image(file.clone()))
        );
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn unknown_names_say_what_is_accepted() {
        let e = KernelSpec::parse("backport").unwrap_err().to_string();
        assert!(
            e.contains("not a kernel name") && e.contains("backports, stable"),
            "{e}"
        );
        assert_eq!(KernelSpec::parse(""), Err(SpecError::Empty));
        assert!(matches!(
            KernelSpec::parse("/nonexistent/bzImage"),
            Err(SpecError::Unknown(_))
        ));
        // A path that looks like a version is still a path.
        assert!(matches!(KernelSpec::parse("./7.3.4"), Err(SpecError::Unknown(_))));
        // Hostile input is refused, not interpreted.
        assert!(matches!(KernelSpec::parse("7.3; rm -rf /"), Err(SpecError::Unknown(_))));
    }

    #[test]
    fn versions_are_recognised() {
        for ok in ["7.3", "7.3.4", "6.12.117+deb13-amd64", "7.3.4-1~bpo13+1"] {
            assert!(looks_like_debian_version(ok), "{ok}");
        }
        for bad in ["7", "v7.3", "7..3", "7.3.x", "stable", "7.3/4", ""] {
            assert!(!looks_like_debian_version(bad), "{bad}");
        }
        assert_eq!(full_release("7.3.4+deb13-amd64"), Some("7.3.4+deb13-amd64"));
        assert_eq!(full_release("7.3.4"), None);
    }
}
