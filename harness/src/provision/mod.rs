//! Stage 1, provisioning: what the host lacks, fetched privately into the cache and verified
//! before use. Nothing is installed on the host.
//!
//! - `cache`: the cache directory, its lock and the `READY` stamps.
//! - `apt`: a private APT configuration for Debian trixie packages, unpacked with `dpkg-deb -x`.
//! - `provisioner`: [`provisioner::Provisioner`]: QEMU (system or private) and busybox.
//! - `qemu`: finding and probing a QEMU that can run phyr.
//! - `wrap`, `elf`: running trixie's dynamically linked tools on an older host through the
//!   prefix's own loader, decided by reading the ELF files.
//! - `version`: version numbers as QEMU and kernels print them.

pub mod apt;
pub mod cache;
pub mod elf;
pub mod provisioner;
pub mod qemu;
pub mod version;
pub mod wrap;
