//! `phyr ksuite`: the kernel-path suite. The endpoints are driven by the guest kernel
//! driver `phyr.ko` (kernel/, docs/KERNEL-UAPI.md) instead of VFIO: buffers are mapped by
//! Linux's own DMA API (scatterlists, the IOVA API, dma_map_phys, dma_map_resource) and the
//! kernel's P2PDMA decisions, and the device checks every segment. Output is TAP on stdout
//! as in `phyr suite`, with report lines (docs/REPORT.md) the harness cross-checks against the
//! device's traces: a `# phyr-endpoint` line per endpoint, and per command a `# phyr-kmap` line
//! per list (every piece's DMA address, the kernel's P2P decision, physical address, kernel
//! call, list entry; whether the mapping was torn down) and its `# phyr-cmd` line.

mod cases_data;
mod cases_fault;
mod cases_paths;
mod cases_queue;
mod ctx;
mod kdev;
mod uapi;

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::suite::Tap;
use ctx::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run only these cases (repeatable).
    #[arg(long = "case")]
    pub cases: Vec<String>,
    /// List the cases and exit.
    #[arg(long)]
    pub list: bool,
    /// First give every phyr endpoint to phyr.ko (which must be loaded), as `phyr bind kernel` does.
    #[arg(long)]
    pub bind: bool,
    /// The driver's device node.
    #[arg(long, default_value = "/dev/phyr")]
    pub dev: PathBuf,
}

pub enum Outcome {
    Pass,
    Skip(String),
}

pub struct Case {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&Ctx) -> Result<Outcome>,
}

fn all_cases() -> Vec<Case> {
    let mut v = cases_data::cases();
    v.extend(cases_paths::cases());
    v.extend(cases_fault::cases());
    v.extend(cases_queue::cases());
    v
}

/// Runs the suite; returns whether every selected case passed.
pub fn run(sysfs: &Path, args: &Args) -> Result<bool> {
    let cases = all_cases();
    if args.list {
        for c in &cases {
            println!("{:24} {}", c.name, c.about);
        }
        return Ok(true);
    }
    for n in &args.cases {
        if !cases.iter().any(|c| c.name == n) {
            anyhow::bail!("no case named {n:?} (see `phyr ksuite --list`)");
        }
    }
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|c| args.cases.is_empty() || args.cases.iter().any(|n| n == c.name))
        .collect();
    let mut tap = Tap::default();
    let opened = (|| -> Result<Ctx> {
        if args.bind {
            for m in crate::cli::bind::bind(sysfs, Path::new("/proc"), crate::cli::bind::Target::Kernel, &[])? {
                Tap::diag(&m.to_string());
            }
        }
        Ctx::open(&args.dev, sysfs.to_path_buf())
    })();
    let ctx = match opened {
        Ok(c) => c,
        Err(e) => {
            // Still speak TAP so a harness sees the failure, not silence.
            tap.header(1);
            tap.not_ok("open-phyr-ko", &format!("{e:#}"));
            tap.totals();
            return Ok(false);
        }
    };
    tap.header(selected.len());
    ctx.print_endpoints();
    for c in selected {
        Tap::diag(&format!("case {}: {}", c.name, c.about));
        let t0 = std::time::Instant::now();
        match (c.run)(&ctx) {
            Ok(Outcome::Pass) => {
                Tap::diag(&format!("{} took {} ms", c.name, t0.elapsed().as_millis()));
                tap.ok(c.name);
            }
            Ok(Outcome::Skip(why)) => tap.skip(c.name, &why),
            Err(e) => tap.not_ok(c.name, &format!("{e:#}")),
        }
    }
    tap.totals();
    Ok(tap.fail == 0)
}
