//! phyr-harness: provisions QEMU and the guest, boots guests with phyr endpoints attached,
//! runs the guest suite and collects results, and inspects DMA traces.
//!
//! One folder per pipeline stage, each depending only on the ones before it:
//! `provision/` (QEMU, busybox, apt, the cache) -> `kernel/` (the guest kernel and its
//! modules) -> `image/` (the initramfs) -> `launch/` (options, run directories, recipes, one
//! boot, the device and QEMU processes; `provision` and `run`) -> `results/` (TAP, JUnit, the
//! trace cross-check; `test`, `crosscheck`); `trace/` (`trace`) stands apart. Beside them:
//! `progress` (the `phyr: ...` lines), `shell` (quoting), `sys` (the crate's only `unsafe`).

mod image;
mod kernel;
mod launch;
mod progress;
mod provision;
mod results;
mod shell;
mod sys;
mod trace;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::launch::prepare::{self, ProvisionArgs};
use crate::launch::run_cmd::{self, RunArgs};
use crate::provision::cache::Cache;
use crate::results::{crosscheck, soak_cmd, test_cmd};
use crate::trace::trace_cmd;

#[derive(Parser)]
#[command(
    name = "phyr-harness",
    version,
    about = "phyr test bench: provision QEMU and a guest, boot it with phyr endpoints, run the suite"
)]
struct Cli {
    /// Cache for QEMU, the guest kernel and busybox
    /// [default: $PHYR_CACHE_DIR, else $XDG_CACHE_HOME/phyr, else ~/.cache/phyr]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision (download and verify) QEMU, the guest kernel and busybox without booting.
    Provision(ProvisionArgs),
    /// Boot a guest with the phyr endpoints and open a shell on its console (or run one command).
    Run(RunArgs),
    /// Run the guest suite under several recipes; print `N passed, N failed`.
    Test(test_cmd::TestArgs),
    /// Randomized workload with faults injected, a QEMU killed mid-run and a second guest
    /// against the same device; ends `N commands, N faults injected, N corrupted bytes (seed S)`.
    Soak(soak_cmd::SoakArgs),
    /// Inspect device-side DMA traces of the last run (or a given run directory).
    Trace(trace_cmd::TraceArgs),
    /// Re-check a suite run's device traces against the driver's `# phyr-cmd` lines.
    Crosscheck {
        /// A session directory holding serial.log and trace/ (e.g. runs/latest/default), or a test run.
        dir: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("phyr-harness: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn real_main(cli: Cli) -> Result<i32> {
    // The trace tool reads files only: no cache, no signal handling of ours.
    let needs_cache = !matches!(cli.command, Cmd::Trace(_) | Cmd::Crosscheck { .. });
    if needs_cache {
        sys::catch_termination_signals().context("installing signal handlers")?;
    }
    let cache = || Cache::resolve(cli.cache_dir.as_deref());
    match cli.command {
        Cmd::Provision(ref a) => prepare::provision_all(&cache()?, &a.sources, a.refresh),
        Cmd::Run(a) => run_cmd::run(&cache()?, a),
        Cmd::Test(a) => test_cmd::run(&cache()?, a),
        Cmd::Soak(a) => soak_cmd::run(&cache()?, a),
        Cmd::Trace(args) => trace_cmd::run(args, Path::new("runs")).map(|()| 0),
        Cmd::Crosscheck { dir } => crosscheck::command(&dir),
    }
}
