//! `--share DIR`: a host directory, read-write at /mnt/host in the guest, over virtio-9p
//! (QEMU's built-in 9p server: no host daemon, unlike virtiofs). Files the guest creates
//! belong to the user running QEMU (`security_model=none`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The 9p mount tag init looks for.
pub const TAG: &str = "phyr-host";
/// The guest modules 9p over virtio needs (dependencies follow from `.modinfo`).
pub const MODULES: &[&str] = &["9pnet_virtio", "9p"];

/// A checked, absolute share directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub dir: PathBuf,
}

impl Share {
    pub fn new(dir: &Path) -> Result<Share> {
        let meta = std::fs::metadata(dir).with_context(|| {
            format!(
                "--share {}: no such directory (create it first: mkdir -p {})",
                dir.display(),
                dir.display()
            )
        })?;
        if !meta.is_dir() {
            bail!(
                "--share {}: not a directory; share the directory that holds it",
                dir.display()
            );
        }
        let dir = dir
            .canonicalize()
            .with_context(|| format!("--share {}", dir.display()))?;
        if dir.to_str().is_none() {
            bail!(
                "--share {}: the path is not UTF-8, which QEMU's option syntax cannot carry",
                dir.display()
            );
        }
        Ok(Share { dir })
    }

    /// QEMU options: a 9p file system device and its virtio-pci transport.
    pub fn qemu_args(&self) -> Vec<String> {
        // QEMU's option syntax doubles a comma inside a value.
        let path = self.dir.display().to_string().replace(',', ",,");
        vec![
            "-fsdev".into(),
            format!("local,id=phyrshare,path={path},security_model=none"),
            "-device".into(),
            format!("virtio-9p-pci,fsdev=phyrshare,mount_tag={TAG}"),
        ]
    }
}

/// The kernel config options 9p over virtio needs (each `y` or `m`).
pub fn missing_config(config: &str) -> Vec<&'static str> {
    [
        "CONFIG_NET_9P",
        "CONFIG_NET_9P_VIRTIO",
        "CONFIG_9P_FS",
        "CONFIG_VIRTIO_PCI",
    ]
    .into_iter()
    .filter(|o| !matches!(crate::kernel::kconfig::config_value(config, o), Some("y" | "m")))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_gets_a_9p_device_with_commas_escaped() {
        let s = Share {
            dir: PathBuf::from("/tmp/a,b"),
        };
        assert_eq!(
            s.qemu_args(),
            vec![
                "-fsdev",
                "local,id=phyrshare,path=/tmp/a,,b,security_model=none",
                "-device",
                "virtio-9p-pci,fsdev=phyrshare,mount_tag=phyr-host"
            ]
        );
    }

    #[test]
    fn missing_or_non_directories_are_refused() {
        let e = Share::new(Path::new("/nonexistent/phyr-share"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such directory") && e.contains("mkdir -p"), "{e}");
        let e = Share::new(Path::new("/proc/self/status")).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        let s = Share::new(Path::new(".")).unwrap();
        assert!(s.dir.is_absolute());
    }

    #[test]
    fn config_needs_9p_over_virtio() {
        let ok = "CONFIG_NET_9P=m\nCONFIG_NET_9P_VIRTIO=m\nCONFIG_9P_FS=y\nCONFIG_VIRTIO_PCI=y\n";
        assert!(missing_config(ok).is_empty());
        assert_eq!(
            missing_config(&ok.replace("CONFIG_9P_FS=y", "# CONFIG_9P_FS is not set")),
            vec!["CONFIG_9P_FS"]
        );
    }
}
