//! Version numbers as QEMU and kernels print them, and comparisons against minimums.

use std::fmt;

/// `major.minor.patch`; missing parts read as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version { major, minor, patch }
    }

    /// Parses the leading `X[.Y[.Z]]` of `s`; trailing text such as `-rc1` or `+ds` is ignored.
    pub fn parse_prefix(s: &str) -> Option<Version> {
        let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let mut parts = s[..end].split('.').filter(|p| !p.is_empty()).map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next().transpose().ok()?.unwrap_or(0);
        let patch = parts.next().transpose().ok()?.unwrap_or(0);
        Some(Version { major, minor, patch })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The first QEMU with the `vfio-user-pci` client device.
pub const QEMU_MIN: Version = Version::new(10, 1, 0);

/// Reads the version from `qemu-system-x86_64 -version` output
/// (`QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1~bpo13+1)`).
pub fn parse_qemu_version(output: &str) -> Option<Version> {
    let line = output.lines().find(|l| l.contains("QEMU emulator version"))?;
    let rest = line.split("QEMU emulator version").nth(1)?.trim_start();
    Version::parse_prefix(rest)
}

/// Whether `qemu-system-x86_64 -device help` output lists a device by exact name.
pub fn device_help_lists(output: &str, device: &str) -> bool {
    let needle = format!("name \"{device}\"");
    output.lines().any(|l| l.trim_start().starts_with(&needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_backports_qemu() {
        let out = "QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1~bpo13+1)\nCopyright (c) 2003-2026";
        assert_eq!(parse_qemu_version(out), Some(Version::new(11, 1, 3)));
        assert!(parse_qemu_version(out).unwrap() >= QEMU_MIN);
    }

    #[test]
    fn old_qemu_is_below_minimum() {
        let v = parse_qemu_version("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u7)").unwrap();
        assert_eq!(v, Version::new(7, 2, 15));
        assert!(v < QEMU_MIN);
        let v = parse_qemu_version("QEMU emulator version 10.0.2").unwrap();
        assert!(v < QEMU_MIN);
        assert!(parse_qemu_version("QEMU emulator version 10.1.0-rc2").unwrap() >= QEMU_MIN);
    }

    #[test]
    fn garbage_is_none_not_panic() {
        assert_eq!(parse_qemu_version(""), None);
        assert_eq!(parse_qemu_version("QEMU emulator version "), None);
        assert_eq!(parse_qemu_version("QEMU emulator version x.y"), None);
        assert_eq!(parse_qemu_version("QEMU emulator version 99999999999999.1"), None);
        assert_eq!(
            Version::parse_prefix("6.12.117+deb13-amd64"),
            Some(Version::new(6, 12, 117))
        );
    }

    #[test]
    fn device_help_matches_whole_names() {
        let help = "name \"vfio-pci\", bus PCI\nname \"vfio-user-pci\", bus PCI, desc \"VFIO over socket\"\n";
        assert!(device_help_lists(help, "vfio-user-pci"));
        assert!(!device_help_lists("name \"vfio-pci\", bus PCI", "vfio-user-pci"));
        assert!(!device_help_lists("name \"vfio-user-pci-x\"", "vfio-user-pci"));
    }
}
