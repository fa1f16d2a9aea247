//! `phyr-harness run`: one guest boot with the phyr endpoints, an interactive shell on its
//! console or one command (`--guest-cmd`), and how it ended.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::image::initramfs::GuestMode;
use crate::image::share::Share;
use crate::launch::boot::{self, BootOptions};
use crate::launch::guest_run::{self, Console};
use crate::launch::options::GuestOpts;
use crate::launch::prepare;
use crate::launch::recipe::Recipe;
use crate::launch::rundir::{self, RunDir};
use crate::progress::say;
use crate::provision::cache::Cache;
use crate::sys;

#[derive(Args)]
pub struct RunArgs {
    /// Recipe name in qemu-configs/ (or a path to an .args file).
    #[arg(long, short, default_value = "default")]
    pub recipe: String,
    /// Run this command in the guest (after binding the endpoints), print its output, power off.
    #[arg(long, value_name = "CMD")]
    pub guest_cmd: Option<String>,
    #[command(flatten)]
    pub guest: GuestOpts,
}

/// `run`: boots one guest with the recipe, a shell on its console or `--guest-cmd`; returns the
/// exit code (the guest command's own, when there is one).
pub fn run(cache: &Cache, a: RunArgs) -> Result<i32> {
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
