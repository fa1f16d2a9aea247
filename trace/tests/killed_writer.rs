//! A writer process killed with SIGKILL mid-recording leaves a file readable up to its last
//! complete record. The test re-runs its own binary as the child (`PHYR_TRACE_CHILD_DIR`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use phyr_trace::{
    Direction, DmaRecord, Payload, Record, Recorder, Space, Target, TraceClock, TraceConfig, TraceReader,
};

const CHILD_ENV: &str = "PHYR_TRACE_CHILD_DIR";

fn record(i: u64) -> Record {
    Record {
        t_ns: i,
        payload: Payload::Dma(DmaRecord {
            endpoint: 0,
            queue: 0,
            command_id: i as u16,
            opcode: 1,
            segment: i as u32,
            list: 0,
            direction: Direction::Write,
            space: Space::Iova,
            addr: i * 4096,
            len: 4096,
            target: Target::GuestMemory {
                mapping: 0,
                offset: i * 4096,
            },
            status: 0,
            crc32c: Some(i as u32),
            dur_ns: 10,
        }),
    }
}

/// The child: records forever (until killed), a few records at a time.
#[test]
#[ignore = "run as the child of sigkill_leaves_a_readable_file"]
fn child_records_until_killed() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let cfg = TraceConfig {
        flush_interval: Duration::from_millis(10),
        ..TraceConfig::default()
    };
    let rec = Recorder::create(Path::new(&dir), 0, &cfg, &TraceClock::new()).unwrap();
    for i in 0.. {
        rec.record(record(i));
        if i % 64 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

#[test]
fn sigkill_leaves_a_readable_file() {
    let dir = std::env::temp_dir().join(format!("phyr-trace-killed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ep0.phyrtrace");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_records_until_killed", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &dir)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&path).map_or(0, |m| m.len()) < 200_000 {
        assert!(Instant::now() < deadline, "child never wrote 200 kB");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let mut reader = TraceReader::open(&path).unwrap();
    let mut n = 0u64;
    while let Some((_, rec)) = reader.next_record().unwrap() {
        assert_eq!(rec, record(n), "record {n} damaged");
        n += 1;
    }
    assert!(n > 2000, "only {n} records survived");
    // No Closed record: the reader says the file was not closed, and where its records end.
    let closure = reader.closure();
    assert!(
        matches!(closure, phyr_trace::Closure::Open { last: Some((t, _)) } if t == n - 1),
        "{closure:?}"
    );
    eprintln!(
        "{n} records survived SIGKILL; tail: {}; {closure}",
        reader.tail().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
