//! phyr-harness: provisions QEMU and the guest, boots guests with phyr endpoints attached,
//! runs the guest suite and collects results, and inspects DMA traces.

mod accel;
mod apt;
mod boot;
mod cache;
mod cargo_test;
mod cpio;
mod crosscheck;
mod debian_kernel;
mod elf;
mod guest_run;
mod ikconfig;
mod initramfs;
mod junit;
mod kconfig;
mod kernel;
mod kernel_pins;
mod kernel_spec;
mod kernel_tree;
mod kmod;
mod modbuild;
mod options;
mod prepare;
mod progress;
mod provision;
mod qemu;
mod recipe;
mod rundir;
mod share;
mod shell;
mod sys;
mod tap;
mod test_cmd;
mod toolchain;
mod trace_cmd;
mod version;
mod wrap;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::boot::BootOptions;
use crate::cache::Cache;
use crate::guest_run::Console;
use crate::initramfs::GuestMode;
use crate::options::{GuestOpts, SourceOpts};
use crate::progress::say;
use crate::recipe::Recipe;
use crate::rundir::RunDir;
use crate::share::Share;

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
    /// Inspect device-side DMA traces of the last run (or a given run directory).
    Trace(trace_cmd::TraceArgs),
    /// Re-check a suite run's device traces against the driver's `# phyr-cmd` lines.
    Crosscheck {
        /// A session directory holding serial.log and trace/ (e.g. runs/latest/default), or a test run.
        dir: PathBuf,
    },
}

#[derive(Args)]
struct ProvisionArgs {
    #[command(flatten)]
    sources: SourceOpts,
    /// Ask apt again which kernels `backports` and `stable` mean, and move their pins to the
    /// newest (a warm cache otherwise keeps the kernel it has).
    #[arg(long)]
    refresh: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Recipe name in qemu-configs/ (or a path to an .args file).
    #[arg(long, short, default_value = "default")]
    recipe: String,
    /// Run this command in the guest (after binding the endpoints), print its output, power off.
    #[arg(long, value_name = "CMD")]
    guest_cmd: Option<String>,
    #[command(flatten)]
    guest: GuestOpts,
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
        Cmd::Run(a) => run_cmd(&cache()?, a),
        Cmd::Test(a) => test_cmd::run(&cache()?, a),
        Cmd::Trace(args) => trace_cmd::run(args, Path::new("runs")).map(|()| 0),
        Cmd::Crosscheck { dir } => crosscheck_cmd(&dir),
    }
}

/// `crosscheck DIR`: one session directory (serial.log + trace/), or a `test` run holding one
/// per recipe.
fn crosscheck_cmd(dir: &Path) -> Result<i32> {
    let sessions: Vec<PathBuf> = if dir.join("serial.log").is_file() {
        vec![dir.to_owned()]
    } else {
        let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("serial.log").is_file())
            .collect();
        subs.sort();
        subs
    };
    if sessions.is_empty() {
        bail!("{} holds no serial.log (nor recipe directories with one): pass a run directory such as runs/latest/default", dir.display());
    }
    let mut failed = false;
    for s in &sessions {
        let serial = std::fs::read_to_string(s.join("serial.log"))
            .with_context(|| format!("reading {}", s.join("serial.log").display()))?;
        let c = crosscheck::check(&serial, &s.join("trace"));
        for p in &c.problems {
            println!("{}: {p}", s.display());
        }
        println!("{}: {}", s.display(), c.counts());
        failed |= !c.problems.is_empty();
    }
    Ok(i32::from(failed))
}

fn run_cmd(cache: &Cache, a: RunArgs) -> Result<i32> {
    let recipe = Recipe::load(&a.recipe, &a.guest.recipes_dir())?;
    rundir::check_future_socket_paths(&a.guest.runs_dir, None, recipe.endpoints)?;
    let share = a.guest.share.as_deref().map(Share::new).transpose()?;
    let spec = prepare::kernel_spec(&a.guest.sources)?;
    let parts = prepare::prepare(cache, &a.guest, false, &[spec], &[], false)?
        .pop()
        .context("no kernel prepared")?;
    let run = RunDir::create(&a.guest.runs_dir)?.session(None)?;
    if a.guest_cmd.is_none() && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        say("note: standard input is not a terminal; the guest shell reads its commands from it (use --guest-cmd CMD to run one command)");
    }
    let (mode, console) = match &a.guest_cmd {
        Some(c) => (GuestMode::Command(c.clone()), Console::Captured),
        None => (GuestMode::Shell, Console::Interactive),
    };
    say(format!("run directory: {}", run.path.display()));
    say(format!(
        "booting {} under {} with recipe {} ({}){}",
        parts.kernel.description,
        parts.accel.name().to_uppercase(),
        recipe.name,
        recipe.description,
        if a.guest.no_device {
            "; --no-device: QEMU's edu device instead of phyr endpoints"
        } else {
            ""
        }
    ));
    let _term = sys::TerminalGuard::save();
    let opts = BootOptions {
        recipe: &recipe,
        mode,
        console,
        no_device: a.guest.no_device,
        append: a.guest.append.as_deref(),
        bar2_size: a.guest.bar2_size,
        trace_crc: !a.guest.no_trace_crc,
        timeout: a.guest.timeout.map(Duration::from_secs),
        modules: &a.guest.modules,
        share: share.as_ref(),
        share_probe: None,
    };
    let outcome = boot::boot(&parts, &run, &opts)?;
    drop(_term);
    let code = guest_run::report_ending(&run, &outcome);
    let serial = std::fs::read_to_string(run.file("serial.log")).unwrap_or_default();
    let errors = serial.lines().filter(|l| l.contains("phyr-init: ERROR")).count();
    if errors > 0 {
        say(format!(
            "the guest's init reported {errors} problem(s) (the `phyr-init: ERROR` lines in {})",
            run.file("serial.log").display()
        ));
    }
    if let (Some(t), true) = (outcome.ready_after, a.guest_cmd.is_some()) {
        say(format!(
            "guest ready (devices bound) {:.1} s after start",
            t.as_secs_f64()
        ));
    }
    if code != 0 || a.guest_cmd.is_none() {
        return Ok(code);
    }
    // The guest command's own exit status.
    match serial
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("=== phyr guest-cmd end: exit "))
    {
        Some(rest) => {
            let st: i32 = rest.trim_end_matches(" ===").trim().parse().unwrap_or(1);
            say(format!("guest command exited with status {st}"));
            Ok(st)
        }
        None => {
            say(format!(
                "the guest command did not finish; see {}",
                run.file("serial.log").display()
            ));
            Ok(1)
        }
    }
}
