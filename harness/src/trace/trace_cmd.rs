//! `phyr-harness trace`: inspect device-side DMA traces.
//!
//! A thin shell over `phyr_trace_tools`: parse the arguments, find the run, pick the view, print
//! warnings for torn tails and fail (after showing everything readable) on corrupt files.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use phyr_trace::Space;
use phyr_trace_tools::{AddrRange, ExportFormat, Filter, Outcome, StatusFilter, Style, Views};

/// Command-line arguments of `phyr-harness trace`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Without --list, --export or --follow it prints the summary; \
filters alone imply --list.\nExamples:\n  just trace --status error --list\n  \
just trace --cmd 7 --endpoint 1\n  just trace --export perfetto -o trace.json   (open in ui.perfetto.dev)\n  \
just trace --export jsonl | jq 'select(.payload.type == \"dma\")'")]
pub struct TraceArgs {
    /// Run directory (default: runs/latest), its trace/ directory, or one .phyrtrace file.
    pub run_dir: Option<PathBuf>,
    /// Bytes and counts per endpoint, space and direction; errors with their causes.
    #[arg(long)]
    pub summary: bool,
    /// One line per record.
    #[arg(long)]
    pub list: bool,
    /// Only this command id (DMA records and its completion).
    #[arg(long = "cmd", value_name = "ID", value_parser = parse_u16)]
    pub cmd: Option<u16>,
    /// Only accesses overlapping START (one byte) or START-END (END exclusive); hex with 0x.
    #[arg(long, value_name = "START[-END]", value_parser = parse_addr)]
    pub addr: Option<AddrRange>,
    /// Only DMA in this address space.
    #[arg(long, value_name = "iova|bus|message", value_parser = parse_space)]
    pub space: Option<Space>,
    /// Only this outcome: ok, error, a status code, or a name like IOMMU_FAULT.
    #[arg(long, value_name = "ok|error|CODE", value_parser = parse_status)]
    pub status: Option<StatusFilter>,
    /// Only this endpoint.
    #[arg(long, value_name = "N")]
    pub endpoint: Option<u16>,
    /// Keep printing records as the device appends them (Ctrl-C to stop).
    #[arg(long, conflicts_with_all = ["export", "summary"])]
    pub follow: bool,
    /// Export instead of printing: Perfetto/Chrome trace JSON or JSON Lines.
    #[arg(long, value_name = "perfetto|jsonl", value_parser = parse_export)]
    pub export: Option<ExportFormat>,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// No ANSI colours (also off when output is not a terminal or NO_COLOR is set).
    #[arg(long)]
    pub no_color: bool,
}

fn parse_u16(s: &str) -> Result<u16, String> {
    let n = phyr_trace_tools::parse_u64(s).map_err(|e| e.to_string())?;
    u16::try_from(n).map_err(|_| format!("{s} does not fit in 16 bits"))
}
fn parse_addr(s: &str) -> Result<AddrRange, String> {
    s.parse().map_err(|e: phyr_trace_tools::FilterError| e.to_string())
}
fn parse_space(s: &str) -> Result<Space, String> {
    phyr_trace_tools::parse_space(s).map_err(|e| e.to_string())
}
fn parse_status(s: &str) -> Result<StatusFilter, String> {
    s.parse().map_err(|e: phyr_trace_tools::FilterError| e.to_string())
}
fn parse_export(s: &str) -> Result<ExportFormat, String> {
    match s.to_ascii_lowercase().as_str() {
        "perfetto" | "chrome" | "json" => Ok(ExportFormat::Perfetto),
        "jsonl" | "jsonlines" | "ndjson" => Ok(ExportFormat::Jsonl),
        _ => Err(format!("`{s}` is not an export format (expected perfetto or jsonl)")),
    }
}

/// Runs `phyr-harness trace`; `runs_root` is where run directories live.
pub fn run(args: TraceArgs, runs_root: &Path) -> anyhow::Result<()> {
    let filter = Filter {
        endpoint: args.endpoint,
        command_id: args.cmd,
        addr: args.addr,
        space: args.space,
        status: args.status,
    };
    let run_dir = phyr_trace_tools::resolve_run_dir(args.run_dir.as_deref(), runs_root)?;
    let (run_dir, note) = phyr_trace_tools::pick_recipe_run(&run_dir);
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let to_terminal = args.output.is_none() && io::stdout().is_terminal();
    let style = Style {
        color: to_terminal && !args.no_color && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };

    if args.follow {
        let target = phyr_trace_tools::follow_target(&run_dir);
        eprintln!("following {} (Ctrl-C to stop)", target.display());
        let r = phyr_trace_tools::follow(&target, &filter, style, Duration::from_millis(200), &mut out, || true);
        return match r {
            Err(phyr_trace_tools::FollowRunError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        };
    }

    let files = phyr_trace_tools::trace_files(&run_dir)?;
    let result = match args.export {
        Some(format) => phyr_trace_tools::export(&files, &filter, format, &mut out),
        None => {
            let filtered = filter != Filter::default();
            let list = args.list || (filtered && !args.summary);
            let views = Views {
                list,
                summary: args.summary || !list,
            };
            phyr_trace_tools::inspect(&files, &filter, views, style, &mut out)
        }
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(e).context("writing trace output"),
    };
    drop(out);
    report(&outcome, args.export.is_some().then_some(args.output.as_deref()))
}

/// Prints warnings and errors to stderr; fails if any file was damaged.
fn report(o: &Outcome, exported_to: Option<Option<&Path>>) -> anyhow::Result<()> {
    for w in &o.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(dest) = exported_to {
        let dest = dest.map_or("standard output".to_owned(), |p| p.display().to_string());
        eprintln!("exported {} of {} records to {dest}", o.shown, o.records);
    }
    if !o.errors.is_empty() {
        for e in &o.errors {
            eprintln!("error: {e}");
        }
        bail!(
            "{} trace file(s) are damaged; everything readable was shown",
            o.errors.len()
        );
    }
    Ok(())
}
