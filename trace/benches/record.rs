//! Cost of `Recorder::record` on the DMA path (a plain bench binary: `cargo bench -p phyr-trace`).
//!
//! Prints ns per record for a disabled recorder, an enabled one (frame CRC on and off), and two
//! threads sharing one recorder; plus, for scale, a 64 KiB memcpy and a CRC32C over 64 KiB
//! (`phyr_kernels::crc32c`, the workspace's one CRC32C; the device's fused copy + CRC kernel:
//! see the "for scale" rows of `cargo bench -p phyr-device`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use phyr_kernels::crc32c::crc32c;
use phyr_trace::{Direction, DmaRecord, Payload, Record, Recorder, Space, Target, TraceClock, TraceConfig};

fn make(i: u64) -> Record {
    Record {
        t_ns: i,
        payload: Payload::Dma(DmaRecord {
            endpoint: 0,
            queue: 0,
            command_id: i as u16,
            opcode: 1,
            segment: 0,
            list: 0,
            direction: Direction::Read,
            space: Space::Iova,
            addr: i << 12,
            len: 65536,
            target: Target::GuestMemory {
                mapping: 0,
                offset: i << 12,
            },
            status: 0,
            crc32c: Some(0x1234_5678),
            dur_ns: 1000,
        }),
    }
}

fn per_op(iters: u64, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn bench_recorder(name: &str, rec: &Recorder, threads: u64) {
    const N: u64 = 500_000;
    let ns = per_op(N * threads, || {
        std::thread::scope(|s| {
            for _ in 0..threads {
                let rec = rec.clone();
                s.spawn(move || {
                    for i in 0..N {
                        rec.record(black_box(rec_at(&rec, i)));
                    }
                });
            }
        });
    });
    println!("{name:<44} {ns:>8.1} ns/record  (dropped {})", rec.dropped());
}

fn rec_at(rec: &Recorder, i: u64) -> Record {
    let mut r = make(i);
    r.t_ns = rec.now_ns();
    r
}

/// The design not taken, for comparison: send each `Record` over a bounded crossbeam channel
/// to a thread that encodes it. The producer pays a channel send (and wakeups) instead of a
/// mutex plus a 64-byte encode.
fn channel_alternative() {
    const N: u64 = 500_000;
    let (tx, rx) = crossbeam_channel::bounded::<Record>(65536);
    let consumer = std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(1 << 20);
        for r in rx {
            phyr_trace::format::encode_frame(&r, true, &mut buf);
            if buf.len() > (1 << 20) {
                black_box(&buf);
                buf.clear();
            }
        }
    });
    let clock = TraceClock::new();
    let ns = per_op(N, || {
        for i in 0..N {
            let mut r = make(i);
            r.t_ns = clock.now_ns();
            if tx.send(black_box(r)).is_err() {
                break;
            }
        }
    });
    drop(tx);
    let _ = consumer.join();
    println!(
        "{:<44} {ns:>8.1} ns/record",
        "alternative: crossbeam channel to an encoder"
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("phyr-trace-bench-{}", std::process::id()));
    let clock = TraceClock::new();
    let cfg = TraceConfig {
        max_bytes: 4 << 30,
        ..TraceConfig::default()
    };
    println!("phyr-trace record() cost");
    bench_recorder("disabled", &Recorder::disabled(), 1);
    let on = Recorder::create(&dir, 0, &cfg, &clock).expect("create trace");
    bench_recorder("enabled, frame CRC on, 1 thread", &on, 1);
    bench_recorder("enabled, frame CRC on, 2 threads (per record)", &on, 2);
    drop(on);
    let no_crc = TraceConfig {
        frame_crc: false,
        ..cfg.clone()
    };
    let off = Recorder::create(&dir, 1, &no_crc, &clock).expect("create trace");
    bench_recorder("enabled, frame CRC off (writer-side), 1 thread", &off, 1);
    drop(off);
    let full_cfg = TraceConfig { max_bytes: 4096, ..cfg };
    let full = Recorder::create(&dir, 2, &full_cfg, &clock).expect("create trace");
    bench_recorder("enabled, file full (counting only)", &full, 1);
    drop(full);

    channel_alternative();

    // Page-aligned buffers: glibc's memcpy on some CPUs (AMD Zen 3) runs at a tenth of its
    // speed into a destination that is not 32-byte aligned, which is not what we compare to.
    let mut backing = vec![0u8; 3 * 65536];
    let base = backing.as_ptr().align_offset(4096);
    let (src, dst) = backing[base..base + 2 * 65536].split_at_mut(65536);
    src.fill(0xa5);
    let src: &[u8] = src;
    let reps = 20_000u64;
    let copy = per_op(reps, || {
        for _ in 0..reps {
            dst.copy_from_slice(black_box(src));
            black_box(&dst);
        }
    });
    let crc = per_op(reps, || {
        for _ in 0..reps {
            black_box(crc32c(black_box(src)));
        }
    });
    let gbps = |ns: f64| 65536.0 / ns;
    println!(
        "{:<44} {copy:>8.1} ns  ({:.1} GB/s)",
        "for scale: memcpy 64 KiB",
        gbps(copy)
    );
    println!(
        "{:<44} {crc:>8.1} ns  ({:.1} GB/s)",
        "for scale: CRC32C of 64 KiB (phyr-kernels)",
        gbps(crc)
    );
    std::thread::sleep(Duration::from_millis(10));
    let _ = std::fs::remove_dir_all(&dir);
}
