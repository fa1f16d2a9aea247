//! Bounded resources under churn: thousands of clients connecting and leaving, and storms of
//! DMA_MAP/DMA_UNMAP with fds, against a real endpoint served by a real vfio-user server in this
//! process. The process's open fds, threads and resident memory are sampled after a warm-up and
//! at the end; each test prints them (`cargo test -p phyr-device --test churn -- --nocapture`)
//! and fails if they grow.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dma_range::regs::{PHYR_ID, REG_ID};
use phyr_device::{Fleet, FleetConfig, VfioEndpoint};
use vfio_user::{memfd, pci_region, Client, Server, ServerHandle};

/// The samples are of the whole process: the tests in this file run one at a time.
fn alone() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the process holds: open fds, threads, resident KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    fds: usize,
    threads: usize,
    rss_kib: u64,
}

fn usage() -> Usage {
    let fds = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count();
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    Usage {
        fds,
        threads: field("Threads:") as usize,
        rss_kib: field("VmRSS:"),
    }
}

/// Samples until fds and threads come back to `base` (the server finishes tearing down the last
/// connection on its own thread), or the deadline passes; returns the last sample.
fn settle(base: Usage) -> Usage {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let u = usage();
        if (u.fds <= base.fds && u.threads <= base.threads) || Instant::now() > deadline {
            return u;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Resident memory may move by allocator caching, not by leaking per cycle: 8 MiB over
/// thousands of cycles is far below one leaked page per cycle (10,000 x 4 KiB = 39 MiB).
const RSS_SLACK_KIB: u64 = 8 * 1024;

fn report(what: &str, cycles: usize, base: Usage, end: Usage, took: Duration) {
    println!(
        "{what}: {cycles} cycles in {:.2} s: fds {} -> {}, threads {} -> {}, VmRSS {} -> {} KiB",
        took.as_secs_f64(),
        base.fds,
        end.fds,
        base.threads,
        end.threads,
        base.rss_kib,
        end.rss_kib
    );
    assert!(
        end.fds <= base.fds,
        "{what}: open fds grew from {} to {}",
        base.fds,
        end.fds
    );
    assert!(
        end.threads <= base.threads,
        "{what}: threads grew from {} to {}",
        base.threads,
        end.threads
    );
    assert!(
        end.rss_kib <= base.rss_kib + RSS_SLACK_KIB,
        "{what}: VmRSS grew from {} to {} KiB",
        base.rss_kib,
        end.rss_kib
    );
}

struct Served {
    fleet: Fleet,
    server: Option<ServerHandle>,
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.take();
        self.fleet.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn served(tag: &str) -> Served {
    let dir = std::env::temp_dir().join(format!("phyr-churn-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fleet = Fleet::new(&FleetConfig {
        endpoints: 1,
        bar2_size: 1 << 20,
        ..FleetConfig::default()
    })
    .unwrap();
    let path = dir.join("ep0.sock");
    let server = Server::new(&path, Arc::new(VfioEndpoint::new(fleet.endpoints[0].clone())))
        .unwrap()
        .spawn()
        .unwrap();
    Served {
        fleet,
        server: Some(server),
        dir,
        path,
    }
}

/// One client's life: negotiate, map a page of its RAM with an fd, read the ID register, leave.
fn one_client(s: &Served, ram: &std::os::fd::OwnedFd) {
    let c = Client::connect(&s.path).expect("the server accepts the next client");
    c.dma_map(0x10_0000, 4096, ram.as_fd(), 0, true, true).unwrap();
    let id = c.region_read(pci_region::BAR0, REG_ID, 4).unwrap();
    assert_eq!(id, PHYR_ID.to_le_bytes());
    c.close();
}

#[test]
fn ten_thousand_connect_disconnect_cycles_leave_fds_threads_and_rss_flat() {
    let _alone = alone();
    let s = served("connect");
    let ram = memfd("churn-ram", 4096).unwrap();
    for _ in 0..200 {
        one_client(&s, &ram);
    }
    let base = settle(usage());
    let t = Instant::now();
    const CYCLES: usize = 10_000;
    for _ in 0..CYCLES {
        one_client(&s, &ram);
    }
    let took = t.elapsed();
    report("connect/disconnect", CYCLES, base, settle(base), took);
}

#[test]
fn dma_map_unmap_storms_with_fds_leave_fds_threads_and_rss_flat() {
    let _alone = alone();
    let s = served("maps");
    let ram = memfd("churn-ram", 1 << 20).unwrap();
    let c = Client::connect(&s.path).unwrap();
    // One storm: 256 one-page maps (each its own fd passed and mmap-ed by the server), then
    // unmapped one by one, then mapped again and dropped with one UNMAP_ALL.
    let storm = || {
        for i in 0..256u64 {
            c.dma_map(0x1000_0000 + i * 4096, 4096, ram.as_fd(), i * 4096, true, i % 2 == 0)
                .unwrap();
        }
        for i in 0..256u64 {
            c.dma_unmap(0x1000_0000 + i * 4096, 4096).unwrap();
        }
        for i in 0..256u64 {
            c.dma_map(0x2000_0000 + i * 4096, 4096, ram.as_fd(), i * 4096, true, true)
                .unwrap();
        }
        c.dma_unmap_all().unwrap();
    };
    for _ in 0..4 {
        storm();
    }
    let base = settle(usage());
    let t = Instant::now();
    const STORMS: usize = 40; // 40 x 512 maps = 20,480 DMA_MAPs and as many unmaps
    for _ in 0..STORMS {
        storm();
    }
    let took = t.elapsed();
    report("DMA_MAP/UNMAP storm (512 maps each)", STORMS, base, settle(base), took);
    let id = c.region_read(pci_region::BAR0, REG_ID, 4).unwrap();
    assert_eq!(id, PHYR_ID.to_le_bytes(), "the endpoint still answers after the storms");
    c.close();
}
