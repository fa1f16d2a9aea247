//! `phyr-harness trace`: inspect device-side DMA traces (issue 6).

use std::path::Path;

/// Command-line arguments of `phyr-harness trace`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {}

/// Runs `phyr-harness trace`; `runs_root` is where run directories live.
pub fn run(_args: TraceArgs, _runs_root: &Path) -> anyhow::Result<()> {
    anyhow::bail!("phyr-harness trace: not implemented yet (issue 6)")
}
