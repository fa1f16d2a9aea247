//! The options every command that boots a guest (or provisions for one) shares: where QEMU
//! and the kernel come from, and how the guest is booted.

use std::path::PathBuf;

use clap::Args;

use crate::launch::accel::AccelChoice;

/// Where QEMU and the guest kernel come from.
#[derive(Args, Clone)]
pub struct SourceOpts {
    /// Use this qemu-system-x86_64 (must be >= 10.1 with vfio-user-pci) instead of detecting one.
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    /// The guest kernel: backports (Debian trixie-backports' newest, with P2PDMA; the default),
    /// stable (Debian trixie's 6.12), a Debian version (7.3.4 or 7.3.4+deb13-amd64), a bzImage,
    /// or a kernel build directory (in-tree or `make O=` output) [default: backports]
    #[arg(long, value_name = "NAME|PATH|DIR")]
    pub kernel: Option<String>,
    /// The .config of --kernel (default: found in its build tree or /boot).
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub kernel_config: Option<PathBuf>,
    /// Modules of --kernel when VFIO is built as modules (default: its build tree or /lib/modules/VERSION).
    #[arg(long, value_name = "DIR", requires = "kernel")]
    pub modules_dir: Option<PathBuf>,
    /// A statically linked busybox for the initramfs instead of Debian's busybox-static.
    #[arg(long, value_name = "PATH")]
    pub busybox: Option<PathBuf>,
}

/// Options of every guest boot.
#[derive(Args, Clone)]
pub struct GuestOpts {
    #[command(flatten)]
    pub sources: SourceOpts,
    /// tcg, kvm, or auto (probe once whether KVM can boot a guest, cache the verdict).
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// The statically linked guest driver `phyr` [default: target/guest/x86_64-unknown-linux-gnu/release/phyr]
    #[arg(long, value_name = "PATH", env = "PHYR_GUEST_BIN")]
    pub phyr: Option<PathBuf>,
    /// The phyr-device binary [default: phyr-device next to phyr-harness]
    #[arg(long, value_name = "PATH", env = "PHYR_DEVICE_BIN")]
    pub device_bin: Option<PathBuf>,
    /// Where run directories go.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Where recipes live [default: ./qemu-configs, else next to the harness's source tree]
    #[arg(long, value_name = "DIR")]
    pub recipes_dir: Option<PathBuf>,
    /// Extra guest kernel command line.
    #[arg(long, value_name = "ARGS")]
    pub append: Option<String>,
    /// No phyr-device: QEMU's built-in `edu` device stands in for each endpoint (guest VFIO plumbing tests).
    #[arg(long)]
    pub no_device: bool,
    /// BAR2 size of each endpoint in bytes (passed to phyr-device).
    #[arg(long, value_name = "BYTES")]
    pub bar2_size: Option<u64>,
    /// Do not record a CRC32C of the bytes of every DMA in the traces (cheaper tracing; the
    /// test cross-check then compares lengths and addresses but not data CRCs).
    #[arg(long)]
    pub no_trace_crc: bool,
    /// Stop the guest after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Build this out-of-tree module directory (Kbuild/Makefile with `obj-m`) for the guest
    /// kernel and load it at boot; repeatable. ./kernel (phyr's driver) is built when present.
    #[arg(long, value_name = "DIR")]
    pub module_src: Vec<PathBuf>,
    /// Load this prebuilt module file (.ko, .ko.xz, .ko.zst) at boot; repeatable.
    #[arg(long, value_name = "FILE")]
    pub module: Vec<PathBuf>,
    /// Do not build and load ./kernel (phyr's kernel driver) even though it exists.
    #[arg(long)]
    pub no_kernel_driver: bool,
    /// Guest kernel modules to load at boot (with their dependencies), comma-separated.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub modules: Vec<String>,
    /// Share a host directory, read-write at /mnt/host in the guest (9p over virtio).
    #[arg(long, value_name = "DIR")]
    pub share: Option<PathBuf>,
}

impl GuestOpts {
    /// The recipes directory: --recipes-dir, ./qemu-configs, or the source tree's.
    pub fn recipes_dir(&self) -> PathBuf {
        if let Some(d) = &self.recipes_dir {
            return d.clone();
        }
        let here = PathBuf::from("qemu-configs");
        if here.is_dir() {
            return here;
        }
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../qemu-configs"))
    }
}
