//! The `phyr-device` binary killed with SIGKILL in the middle of a COPY: its trace stays
//! readable up to its last complete record, has no close record, and the reader says so and
//! where the records end (the words `just trace` prints). The SIGTERM counterpart, a trace
//! that ends with the close record, is in binary.rs.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dma_range::{AddrSpace, Command, Opcode};
use phyr_trace::{Closure, Event, Payload, TraceReader};
use vfio_user::{Client, MmapRegion};

const BIN: &str = env!("CARGO_BIN_EXE_phyr-device");

/// The COPY's command id.
const ID: u16 = 9;

/// DMA records of the COPY's destination and whether the device completed it, in the trace
/// as it is on disk now (the writer may be mid-frame: the reader stops at the last whole one).
fn copy_progress(path: &std::path::Path) -> (usize, bool) {
    let Ok(bytes) = std::fs::read(path) else {
        return (0, false);
    };
    let Ok(t) = phyr_trace::read_bytes(&bytes) else {
        return (0, false);
    };
    let mut writes = 0;
    let mut done = false;
    for (_, r) in &t.records {
        match &r.payload {
            Payload::Dma(d) if d.command_id == ID && d.list == 1 && d.status == 0 => writes += 1,
            Payload::Event {
                event: Event::CommandDone { command_id: ID, .. },
                ..
            } => done = true,
            _ => {}
        }
    }
    (writes, done)
}

#[test]
fn sigkill_mid_copy_leaves_a_readable_trace_that_says_it_was_not_closed() {
    let dir = tmpdir("killed");
    let trace = dir.join("trace");
    let mut child = Proc::new(BIN)
        .args(["--socket-dir", dir.to_str().unwrap(), "--endpoints", "1"])
        .args(["--bar2-size", "64M", "--trace-dir", trace.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("phyr-device: ready: 1 endpoints"), "{line}");

    let client = Client::connect(dir.join("ep0.sock")).unwrap();
    let ram_fd = vfio_user::memfd("ram", 16 << 20).unwrap();
    client
        .dma_map(RAM_IOVA, 16 << 20, ram_fd.as_fd(), 0, true, true)
        .unwrap();
    let ram = MmapRegion::map(ram_fd.as_fd(), 0, 16 << 20, true, true).unwrap();
    let e = Ep {
        index: 0,
        client,
        ram_fd,
        ram,
        ram_size: 16 << 20,
    };
    e.program_bars();
    // 4096 x (the first half of BAR2 -> the second half, by bus address): 128 GiB, far more
    // than the device moves before the kill.
    let half = 32u64 << 20;
    let n = 4096u32;
    let src: Vec<_> = (0..n).map(|_| bus(bar2_bus(0), half as u32)).collect();
    let dst: Vec<_> = (0..n).map(|_| bus(bar2_bus(0) + half, half as u32)).collect();
    let src_head = e.list(lists(0), &src);
    let dst_head = e.list(lists(0x10_0000), &dst);
    assert_eq!(src_head, Command::list_head(AddrSpace::Iova, lists(0), n));
    let mut q = QueueDrv::new(&e, 0, 4, 0);
    q.submit(&e, &Command::new(Opcode::Copy, ID, src_head, dst_head));

    // Kill once the trace file shows the COPY writing (records reach it every 100 ms).
    let path = trace.join("ep0.phyrtrace");
    let t = Instant::now();
    loop {
        let (writes, done) = copy_progress(&path);
        assert!(!done, "the 128 GiB COPY completed before the kill");
        if writes >= 3 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no COPY writes in the trace");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    drop(e);

    // Every complete record reads back, nothing is corrupt, and the last one is no close.
    let mut reader = TraceReader::open(&path).unwrap();
    let (mut n_records, mut writes, mut last) = (0u64, 0u64, None);
    while let Some((offset, rec)) = reader.next_record().unwrap() {
        n_records += 1;
        if let Payload::Dma(d) = &rec.payload {
            if d.command_id == ID && d.list == 1 {
                assert_eq!(d.status, 0, "a write of the COPY failed: {d:?}");
                writes += 1;
            }
        }
        assert!(
            !matches!(
                rec.payload,
                Payload::Event {
                    event: Event::Closed,
                    ..
                }
            ),
            "a killed device wrote a close record"
        );
        last = Some((rec.t_ns, offset));
    }
    assert!(writes >= 3, "{writes} COPY writes survived");
    let closure = reader.closure();
    assert_eq!(closure, Closure::Open { last });
    let (t_ns, offset) = last.unwrap();
    let msg = closure.to_string();
    assert_eq!(
        msg,
        format!(
            "ends without a close record: the device was killed or is still running; last record at {}.{:06} ms, offset {offset}",
            t_ns / 1_000_000,
            t_ns % 1_000_000
        )
    );
    eprintln!(
        "{n_records} records ({writes} COPY writes) after SIGKILL; tail: {}; {msg}",
        reader.tail().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
