//! `cargo bench -p phyr-device --bench mmio`: one trapped 4-byte MMIO read — a REGION_READ of
//! a register — through a real vfio-user socket, as QEMU sends it for a guest `readl()` of
//! BAR0. For each server: the round trip as the client sees it (mean, p50, p99) and the
//! server's CPU time per request (its threads' on-CPU nanoseconds from
//! `/proc/PID/task/TID/schedstat`, summed over the run, divided by the requests).
//!
//! Servers measured:
//! - `phyr-device` in this process (the vfio-user server thread of one endpoint);
//! - the real `phyr-device` binary (all its threads);
//! - libvfio-user's `gpio-pci-idio-16` sample, when `PHYR_BENCH_GPIO` names a built binary
//!   (BAR2 offset 0, its 4-byte register): the reference server the issue compares with.
//!
//! The two separate processes run at once and are read in alternating rounds: each figure is
//! the median round, and the comparison the median of the per-round ratios.
//!
//! `PHYR_BENCH_CPU=N` pins the bench and the servers it starts to CPU N (as the comparison in
//! the issue was made); without it the scheduler places them.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vfio_user::{pci_region, Client};

/// On-CPU nanoseconds of the threads of `pid` whose name starts with `prefix` ("" for all).
fn cpu_ns(pid: u32, prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

struct Result {
    mean: Duration,
    p50: Duration,
    p99: Duration,
    server_cpu: Duration,
}

/// `n` REGION_READs of 4 bytes at `offset` of `region`, after a warm-up of `n / 10`.
fn measure(c: &Client, region: u32, offset: u64, n: usize, server_cpu: impl Fn() -> u64) -> Result {
    for _ in 0..n / 10 {
        c.region_read(region, offset, 4).unwrap();
    }
    let mut lat = Vec::with_capacity(n);
    let cpu0 = server_cpu();
    for _ in 0..n {
        let t = Instant::now();
        c.region_read(region, offset, 4).unwrap();
        lat.push(t.elapsed());
    }
    let cpu = server_cpu() - cpu0;
    lat.sort();
    Result {
        mean: lat.iter().sum::<Duration>() / n as u32,
        p50: lat[n / 2],
        p99: lat[n * 99 / 100],
        server_cpu: Duration::from_nanos(cpu / n as u64),
    }
}

fn print(label: &str, r: &Result) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{label:<44} mean {:>6.2} us  p50 {:>6.2} us  p99 {:>6.2} us  server CPU {:>5.2} us/request",
        us(r.mean),
        us(r.p50),
        us(r.p99),
        us(r.server_cpu)
    );
}

/// Starts `cmd` and waits for its socket to appear.
fn spawn_server(mut cmd: Proc, sock: &Path) -> Child {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let t = Instant::now();
    while !sock.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn stop(mut child: Child) {
    let _ = Proc::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is a plain bit set; all-zero is empty. CPU_SET writes inside it
    // (cpu is bounded by the set's size below), and sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 500 } else { 50_000 };
    let cpu = std::env::var("PHYR_BENCH_CPU")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(c) = cpu {
        pin(c);
    }
    println!(
        "MMIO round trip: REGION_READ of a 4-byte register, {n} reads per server ({})",
        cpu.map_or("not pinned".to_string(), |c| format!("all pinned to CPU {c}"))
    );

    // phyr-device in this process: the server thread of endpoint 0.
    let r = rig(1);
    let me = std::process::id();
    let res = measure(&r.eps[0].client, pci_region::BAR0, 0x02C, n, || {
        cpu_ns(me, "vfio-user:")
    });
    print("phyr-device in-process, BAR0 STATUS", &res);
    drop(r);

    // The real binary (all of its threads) and, if built, libvfio-user's gpio sample, both
    // running at once and read in alternating rounds, so that both see the same machine load.
    let dir = tmpdir("bench-mmio");
    let mut servers = Vec::new();
    let sock = dir.join("ep0.sock");
    let mut cmd = Proc::new(env!("CARGO_BIN_EXE_phyr-device"));
    cmd.args(["--socket-dir", dir.to_str().unwrap(), "--endpoints", "1"])
        .env("RUST_LOG", "warn");
    let mut child = spawn_server(cmd, &sock);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    servers.push((
        "phyr-device binary, BAR0 STATUS",
        child,
        Client::connect(&sock).unwrap(),
        pci_region::BAR0,
        0x02C,
    ));
    if let Ok(gpio) = std::env::var("PHYR_BENCH_GPIO") {
        let sock = dir.join("gpio.sock");
        let mut cmd = Proc::new(&gpio);
        cmd.arg(&sock);
        let child = spawn_server(cmd, &sock);
        servers.push((
            "libvfio-user gpio-pci-idio-16, BAR2 +0",
            child,
            Client::connect(&sock).unwrap(),
            pci_region::BAR2,
            0,
        ));
    }
    let rounds = 10;
    let mut results: Vec<Vec<Result>> = servers.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (_, child, c, region, offset)) in servers.iter().enumerate() {
            let pid = child.id();
            results[i].push(measure(c, *region, *offset, n / rounds, || cpu_ns(pid, "")));
        }
    }
    // Per server: the median round of each figure.
    let median = |v: &[Result], f: fn(&Result) -> Duration| {
        let mut x: Vec<Duration> = v.iter().map(f).collect();
        x.sort();
        x[x.len() / 2]
    };
    let summary: Vec<Result> = results
        .iter()
        .map(|v| Result {
            mean: median(v, |r| r.mean),
            p50: median(v, |r| r.p50),
            p99: median(v, |r| r.p99),
            server_cpu: median(v, |r| r.server_cpu),
        })
        .collect();
    for ((label, ..), r) in servers.iter().zip(&summary) {
        print(label, r);
    }
    if summary.len() == 2 {
        // Paired: the ratio of each round, then the median ratio.
        let paired = |f: fn(&Result) -> Duration| {
            let mut x: Vec<f64> = results[0]
                .iter()
                .zip(&results[1])
                .map(|(a, b)| f(a).as_secs_f64() / f(b).as_secs_f64())
                .collect();
            x.sort_by(f64::total_cmp);
            x[x.len() / 2]
        };
        println!(
            "phyr-device / libvfio-user, median of {rounds} paired rounds: round trip {:.2}x (mean), {:.2}x (p50); server CPU {:.2}x",
            paired(|r| r.mean),
            paired(|r| r.p50),
            paired(|r| r.server_cpu)
        );
    } else {
        println!("(set PHYR_BENCH_GPIO to a built libvfio-user gpio-pci-idio-16 to compare with the reference server)");
    }
    for (_, child, c, ..) in servers {
        drop(c);
        stop(child);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
