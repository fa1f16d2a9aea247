//! `phyr`: the guest-side userspace VFIO driver for the phyr endpoint and its integration
//! suite. See driver/README.md for the CLI and the suite's output format.

mod bench;
mod cli;
mod data;
mod endpoint;
mod error;
mod exec;
mod hostmem;
mod iova;
mod ksuite;
mod mapping;
mod p2p;
mod queue;
mod soak;
mod spec;
mod suite;
mod sysfs;
mod vfio;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use dma_range::Opcode;

use bench::Bench;
use cli::{Cli, Cmd};

fn open(cli: &Cli) -> Result<Bench> {
    let mut s = Bench::open(&cli.sysfs, &cli.endpoints).context("opening the phyr endpoints")?;
    s.policy = cli.p2p;
    s.timeout = Duration::from_millis(cli.timeout_ms);
    s.trace_lines = cli.trace_lines;
    Ok(s)
}

fn run(cli: Cli) -> Result<bool> {
    match &cli.cmd {
        Cmd::List { sysfs_only } => {
            let s = if *sysfs_only {
                None
            } else {
                match open(&cli) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        eprintln!("phyr: cannot open endpoints through VFIO ({e:#}); showing sysfs only");
                        None
                    }
                }
            };
            cli::list::run(&cli.sysfs, &cli.endpoints, s.as_ref())?;
            Ok(true)
        }
        Cmd::Copy { src, dst, op } => cli::ops::run(&mut open(&cli)?, op, Opcode::Copy, Some(src), Some(dst), 0),
        Cmd::Fill { dst, pattern, op } => cli::ops::run(&mut open(&cli)?, op, Opcode::Fill, None, Some(dst), *pattern),
        Cmd::Crc { src, op } => cli::ops::run(&mut open(&cli)?, op, Opcode::Crc32c, Some(src), None, 0),
        Cmd::Compare { src, dst, op } => cli::ops::run(&mut open(&cli)?, op, Opcode::Compare, Some(src), Some(dst), 0),
        Cmd::Submit { file, mode } => cli::submit::run(&mut open(&cli)?, file, *mode),
        Cmd::Suite { cases, list } => {
            if *list {
                suite::list();
                return Ok(true);
            }
            let mut s = match open(&cli) {
                Ok(s) => s,
                Err(e) => {
                    // Still speak TAP so the harness sees a failure, not silence.
                    println!(
                        "TAP version 13\n1..1\nnot ok 1 open-endpoints # {}",
                        format!("{e:#}").replace('\n', " | ")
                    );
                    println!("# totals: pass:0 fail:1 xfail:0 xpass:0 skip:0 error:0");
                    return Ok(false);
                }
            };
            s.trace_lines = true;
            suite::run(&mut s, cases)
        }
        Cmd::Soak(args) => {
            let mut s = open(&cli)?;
            s.trace_lines = true;
            soak::run(s, args)
        }
        Cmd::EduCheck { bdf } => cli::edu::run(&cli.sysfs, bdf.as_deref()),
        Cmd::Bind { target, endpoints } => cli::bind::run(&cli.sysfs, *target, endpoints),
        Cmd::Ksuite(a) => ksuite::run(&cli.sysfs, a),
    }
}

/// Back to the default action for SIGPIPE (the Rust runtime ignores it, and `println!` then
/// panics on a closed pipe): `phyr list | head` ends quietly, like any other Unix tool.
fn default_sigpipe() {
    // SAFETY: signal() with SIG_DFL installs no handler, so no Rust code runs in signal
    // context; it is called once, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    default_sigpipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("phyr: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
