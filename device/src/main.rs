//! `phyr-device`: serves N phyr endpoints over vfio-user from one process.
//!
//! ```text
//! phyr-device --socket-dir DIR --endpoints N [--topology 0,0,1,1] [--bar2-size 64M] [--queues 4]
//!             [--trace-dir DIR] [--trace-crc on|off]
//! ```
//! Prints `phyr-device: ready: N endpoints in DIR` once every socket listens; SIGTERM/SIGINT
//! stop it cleanly (commands aborted, traces flushed, sockets removed).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use phyr_device::{parse_size, parse_topology, Fleet, FleetConfig, TermSignals, TraceSettings, VfioEndpoint};

#[derive(Parser, Debug)]
#[command(name = "phyr-device", about = "phyr PCIe endpoint fabric served over vfio-user")]
struct Args {
    /// Directory for the endpoint sockets (ep0.sock, ep1.sock, ...); created if missing.
    #[arg(long)]
    socket_dir: PathBuf,
    /// Number of endpoints.
    #[arg(long, default_value_t = 1)]
    endpoints: u16,
    /// Switch index per endpoint, comma-separated (default: all behind switch 0).
    #[arg(long)]
    topology: Option<String>,
    /// BAR2 (peer memory) size per endpoint: a power of two, K/M/G suffixes allowed.
    #[arg(long, default_value = "64M")]
    bar2_size: String,
    /// Queue pairs per endpoint.
    #[arg(long, default_value_t = 4)]
    queues: u32,
    /// Record DMA traces to DIR/ep<N>.phyrtrace.
    #[arg(long)]
    trace_dir: Option<PathBuf>,
    /// Record a CRC32C of the bytes each transaction moved (with --trace-dir).
    #[arg(long, default_value = "on")]
    trace_crc: String,
    /// Size cap of each endpoint's trace file (K/M/G suffixes allowed); at the cap the device
    /// stops recording and leaves a `Dropped` marker with the count of records not written.
    #[arg(long, default_value = "256M")]
    trace_max: String,
}

fn config(a: &Args) -> Result<FleetConfig> {
    let bar2_size = parse_size(&a.bar2_size)
        .with_context(|| format!("--bar2-size {:?} is not a size (examples: 64M, 1G, 65536)", a.bar2_size))?;
    let topology = match &a.topology {
        Some(t) => parse_topology(t)
            .with_context(|| format!("--topology {t:?} is not a comma-separated list of switch indices"))?,
        None => Vec::new(),
    };
    let data_crc = match a.trace_crc.as_str() {
        "on" => true,
        "off" => false,
        other => bail!("--trace-crc must be on or off, got {other:?}"),
    };
    let max_bytes = parse_size(&a.trace_max)
        .with_context(|| format!("--trace-max {:?} is not a size (examples: 256M, 4G)", a.trace_max))?;
    if max_bytes < 1 << 20 {
        bail!(
            "--trace-max {:?} is below 1M: too small to hold a useful trace",
            a.trace_max
        );
    }
    let trace = a.trace_dir.clone().map(|dir| TraceSettings {
        dir,
        data_crc,
        max_bytes,
    });
    Ok(FleetConfig {
        endpoints: a.endpoints,
        topology,
        bar2_size,
        queues: a.queues,
        trace,
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("phyr-device: error: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = config(&args)?;
    // Before any thread exists, so every thread inherits the blocked mask.
    let signals = TermSignals::block().context("blocking SIGTERM/SIGINT")?;
    let fleet = Fleet::new(&cfg)?;
    std::fs::create_dir_all(&args.socket_dir)
        .with_context(|| format!("creating socket directory {}", args.socket_dir.display()))?;
    let mut servers = Vec::new();
    let mut paths = Vec::new();
    for ep in &fleet.endpoints {
        let path = args.socket_dir.join(format!("ep{}.sock", ep.index()));
        let server = vfio_user::Server::new(&path, Arc::new(VfioEndpoint::new(ep.clone())))
            .with_context(|| format!("listening on {}", path.display()))?;
        servers.push(
            server
                .spawn()
                .with_context(|| format!("starting the server of {}", path.display()))?,
        );
        paths.push(path);
    }
    println!(
        "phyr-device: ready: {} endpoints in {}",
        fleet.endpoints.len(),
        args.socket_dir.display()
    );
    let sig = signals.wait();
    tracing::info!(signal = sig, "shutting down");
    // Servers first: each disconnects its client (the endpoint resets, aborting commands in
    // flight) and removes its socket; then the workers stop and the traces are flushed.
    for s in servers {
        if let Err(e) = s.stop() {
            tracing::warn!("stopping a server: {e}");
        }
    }
    fleet.shutdown();
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
