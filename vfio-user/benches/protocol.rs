//! Protocol benchmarks through a real UNIX socket (run with `cargo bench -p vfio-user`):
//! REGION_READ round-trip latency, DMA_READ throughput over the message fallback, and the
//! zero-copy path over an fd-backed mapping next to a plain memcpy for scale.

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vfio_user::{
    memfd, pci_region, Client, ClientHandles, Device, DeviceInfo, Errno, IrqInfo, MmapRegion, RegionInfo, Server,
    DEVICE_FLAG_PCI, REGION_FLAG_READ, REGION_FLAG_WRITE,
};

struct BenchDevice {
    client: Mutex<Option<ClientHandles>>,
}

impl Device for BenchDevice {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            flags: DEVICE_FLAG_PCI,
            num_regions: pci_region::COUNT,
            num_irqs: 0,
        }
    }
    fn region_info(&self, index: u32) -> Option<RegionInfo> {
        Some(RegionInfo::io(
            if index == 0 { 4096 } else { 0 },
            REGION_FLAG_READ | REGION_FLAG_WRITE,
        ))
    }
    fn region_read(&self, _index: u32, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        buf.fill(offset as u8);
        Ok(())
    }
    fn region_write(&self, _index: u32, _offset: u64, _data: &[u8]) -> Result<(), Errno> {
        Ok(())
    }
    fn irq_info(&self, _index: u32) -> Option<IrqInfo> {
        None
    }
    fn reset(&self) {}
    fn connected(&self, client: ClientHandles) {
        *self.client.lock().unwrap() = Some(client);
    }
    fn disconnected(&self) {
        *self.client.lock().unwrap() = None;
    }
}

/// On-CPU nanoseconds of this process's server threads (named `vfio-user:SOCKET`), from
/// `/proc/self/task/TID/schedstat`.
fn server_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("vfio-user:")))
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn throughput(label: &str, bytes_per_iter: usize, mut f: impl FnMut()) {
    f(); // warm up (page faults)
    let start = Instant::now();
    let mut iters = 0u64;
    while start.elapsed() < Duration::from_secs(1) || iters < 3 {
        f();
        iters += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let mib = (bytes_per_iter as f64 * iters as f64) / (1024.0 * 1024.0);
    println!(
        "{label:<52} {:>10.1} MiB/s  ({iters} x {} KiB)",
        mib / secs,
        bytes_per_iter / 1024
    );
}

fn main() {
    // `cargo test --benches` passes --bench-less args; run quickly when not benchmarking.
    let quick = !std::env::args().any(|a| a == "--bench");
    let dev = Arc::new(BenchDevice {
        client: Mutex::new(None),
    });
    let path = std::env::temp_dir().join(format!("vfio-user-bench-{}.sock", std::process::id()));
    let srv = Server::new(&path, dev.clone()).unwrap().spawn().unwrap();
    let c = Client::connect(&path).unwrap();

    // REGION_READ round trip.
    let n = if quick { 200 } else { 20_000 };
    for _ in 0..n / 10 {
        c.region_read(0, 0x10, 4).unwrap();
    }
    let mut lat = Vec::with_capacity(n);
    let cpu0 = server_cpu_ns();
    for _ in 0..n {
        let t = Instant::now();
        c.region_read(0, 0x10, 4).unwrap();
        lat.push(t.elapsed());
    }
    let server_cpu = (server_cpu_ns() - cpu0) as f64 / n as f64 / 1e3;
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / n as u32;
    println!(
        "{:<52} mean {:>6.1} us  p50 {:>6.1} us  p99 {:>6.1} us  server CPU {server_cpu:>4.1} us/request  ({n} reads)",
        "REGION_READ 4 B round trip",
        mean.as_secs_f64() * 1e6,
        percentile(&lat, 0.5).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6
    );
    if quick {
        return;
    }

    let client = dev.client.lock().unwrap().clone().unwrap();
    let size: usize = 16 << 20;

    // DMA_READ over messages (fd-less mapping served by the client's reader thread).
    let local = c.dma_map_local(0x1000_0000, size as u64, true, true).unwrap();
    local.slice().fill(0x5a).unwrap();
    let mut buf = vec![0u8; size];
    throughput("DMA_READ messages (fd-less map, 1 MiB per message)", size, || {
        client.dma.read(0x1000_0000, &mut buf).unwrap();
    });
    throughput("DMA_WRITE messages (fd-less map, 1 MiB per message)", size, || {
        client.dma.write(0x1000_0000, &buf).unwrap();
    });

    // Zero-copy over an fd-backed mapping split into 4 KiB maps (as behind an IOMMU).
    let ram = memfd("bench-ram", 2 * size as u64).unwrap();
    for i in 0..(2 * size / 4096) as u64 {
        c.dma_map(0x4000_0000 + i * 4096, 4096, ram.as_fd(), i * 4096, true, true)
            .unwrap();
    }
    throughput("device read, fd-backed, 4 KiB maps (zero-copy)", size, || {
        client.dma.read(0x4000_0000, &mut buf).unwrap();
    });
    throughput("device copy within space, 4 KiB maps (zero-copy)", size, || {
        vfio_user::DmaSpace::copy(
            &client.dma,
            0x4000_0000,
            &client.dma,
            0x4000_0000 + size as u64,
            size as u64,
        )
        .unwrap();
    });
    let view = MmapRegion::map(ram.as_fd(), 0, 2 * size as u64, true, true).unwrap();
    let (a, b) = (view.slice(0, size).unwrap(), view.slice(size, size).unwrap());
    throughput("plain memcpy between two halves of the memfd", size, || {
        b.copy_from_mem(&a).unwrap();
    });
    drop(c);
    srv.stop().unwrap();
}
