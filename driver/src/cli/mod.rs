//! The command line (clap) and its subcommands.

pub mod bind;
pub mod edu;
pub mod list;
pub mod ops;
pub mod submit;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bench::P2pPolicy;
use crate::queue::QueueMode;

#[derive(Debug, Parser)]
#[command(
    name = "phyr",
    version,
    about = "Userspace VFIO driver and integration suite for the phyr endpoint"
)]
pub struct Cli {
    /// sysfs root.
    #[arg(long, default_value = "/sys", global = true)]
    pub sysfs: PathBuf,
    /// Use only these endpoints (BDF, e.g. 0000:03:00.0); default: all bound to vfio-pci.
    #[arg(long = "endpoint", global = true)]
    pub endpoints: Vec<String>,
    /// How peer BARs are reached: as Linux decides (ACS counts) or by topology only.
    #[arg(long, value_enum, default_value_t = P2pPolicy::Linux, global = true)]
    pub p2p: P2pPolicy,
    /// Completion timeout per command, in milliseconds.
    #[arg(long, default_value_t = 10_000, global = true)]
    pub timeout_ms: u64,
    /// Print `# phyr-map/-queue/-cmd` lines for every mapping, queue and command.
    #[arg(long, global = true)]
    pub trace_lines: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Endpoints, BARs, IOMMU groups, switch topology and peer reachability.
    List {
        /// Only read sysfs; do not open the endpoints through VFIO.
        #[arg(long)]
        sysfs_only: bool,
    },
    /// COPY: --src SPEC --dst SPEC (SPEC: host:OFF+LEN | bar:EP:OFF+LEN[@bus|@iommu], comma-separated).
    Copy {
        #[arg(long)]
        src: String,
        #[arg(long)]
        dst: String,
        #[command(flatten)]
        op: ops::OpArgs,
    },
    /// FILL: --dst SPEC with the 8-byte --pattern.
    Fill {
        #[arg(long)]
        dst: String,
        #[arg(long, default_value = "0x0123456789abcdef", value_parser = ops::parse_size_arg)]
        pattern: u64,
        #[command(flatten)]
        op: ops::OpArgs,
    },
    /// CRC32C of --src SPEC, checked against the CPU's CRC32C of the same bytes.
    Crc {
        #[arg(long)]
        src: String,
        #[command(flatten)]
        op: ops::OpArgs,
    },
    /// COMPARE --src SPEC with --dst SPEC (both filled with the same pattern first).
    Compare {
        #[arg(long)]
        src: String,
        #[arg(long)]
        dst: String,
        #[command(flatten)]
        op: ops::OpArgs,
    },
    /// Submit a hand-written command and lists from a JSON file (see driver/README.md).
    Submit {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = QueueMode::Irq)]
        mode: QueueMode,
    },
    /// The integration suite, TAP output on stdout.
    Suite {
        /// Run only these cases (repeatable).
        #[arg(long = "case")]
        cases: Vec<String>,
        /// List the cases and exit.
        #[arg(long)]
        list: bool,
    },
    /// Randomized commands with faults injected while they run, every one checked; ends with
    /// `N commands, N faults injected, N corrupted bytes (seed S)` (`just soak` runs it).
    Soak(crate::soak::SoakArgs),
    /// Move endpoints between vfio-pci and the phyr kernel driver (driver_override, unbind, drivers_probe).
    Bind {
        /// Where to: `kernel` (phyr.ko, PCI driver "phyr") or `vfio` (vfio-pci).
        #[arg(value_enum)]
        target: bind::Target,
        /// Endpoints: ep0, 0, 0000:03:00.0 or 03:00.0 (default: every phyr endpoint).
        endpoints: Vec<String>,
    },
    /// The kernel-path suite through phyr.ko and /dev/phyr (docs/KERNEL-UAPI.md), TAP on stdout.
    Ksuite(crate::ksuite::Args),
    /// Exercise the VFIO plumbing on QEMU's edu device (1234:11e8): BAR mmap, DMA, MSI.
    EduCheck {
        /// BDF of the edu device (default: the first one found).
        bdf: Option<String>,
    },
}
