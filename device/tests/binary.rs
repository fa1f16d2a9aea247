//! The `phyr-device` binary itself: ready line, serving, traces, clean SIGTERM, bad arguments.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dma_range::{Command, Opcode, Status};
use phyr_kernels::crc32c;
use phyr_trace::{Payload, Space};
use vfio_user::{Client, MmapRegion};

const BIN: &str = env!("CARGO_BIN_EXE_phyr-device");

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "phyr-device did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn serves_two_endpoints_records_traces_and_exits_cleanly_on_sigterm() {
    let dir = tmpdir("bin");
    let trace = dir.join("trace");
    let mut child = Proc::new(BIN)
        .args([
            "--socket-dir",
            dir.to_str().unwrap(),
            "--endpoints",
            "2",
            "--topology",
            "0,0",
            "--bar2-size",
            "1M",
        ])
        .args([
            "--queues",
            "2",
            "--trace-dir",
            trace.to_str().unwrap(),
            "--trace-crc",
            "on",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        format!("phyr-device: ready: 2 endpoints in {}", dir.display())
    );
    {
        let mut eps = Vec::new();
        for i in 0..2 {
            let client = Client::connect(dir.join(format!("ep{i}.sock"))).unwrap();
            let ram_fd = vfio_user::memfd("ram", 16 << 20).unwrap();
            client
                .dma_map(RAM_IOVA, 16 << 20, ram_fd.as_fd(), 0, true, true)
                .unwrap();
            // A second, read-only window onto the same RAM, 0x3000 bytes into the fd.
            client
                .dma_map(RAM_IOVA + (64 << 20), 0x1000, ram_fd.as_fd(), 0x3000, true, false)
                .unwrap();
            let ram = MmapRegion::map(ram_fd.as_fd(), 0, 16 << 20, true, true).unwrap();
            let e = Ep {
                index: i,
                client,
                ram_fd,
                ram,
                ram_size: 16 << 20,
            };
            e.program_bars();
            eps.push(e);
        }
        let e = &eps[0];
        assert_eq!(e.r32(dma_range::regs::REG_NUM_QUEUES), 2);
        let mut q = QueueDrv::new(e, 1, 4, 0);
        e.put(data(0), &pattern(5000, 2));
        let src = e.list(lists(0), &[iova(data(0), 5000)]);
        let dst = e.list(lists(0x100), &[bus(bar2_bus(1) + 0x100, 5000)]);
        let c = q.run(e, &Command::new(Opcode::Copy, 77, src, dst));
        assert_eq!(c.status(), Some(Status::SUCCESS));
    }
    Proc::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(wait_exit(&mut child).success());
    assert!(
        !dir.join("ep0.sock").exists() && !dir.join("ep1.sock").exists(),
        "sockets removed"
    );
    // The trace of endpoint 0 holds the copy: a read from guest RAM, a write to ep1's BAR2.
    let t = phyr_trace::read_bytes(&std::fs::read(trace.join("ep0.phyrtrace")).unwrap()).unwrap();
    // An orderly shutdown closes every trace: the last record is the close record.
    for ep in 0..2 {
        let c = phyr_trace::read_bytes(&std::fs::read(trace.join(format!("ep{ep}.phyrtrace"))).unwrap()).unwrap();
        assert!(c.closure.is_closed(), "ep{ep}: {}", c.closure);
        assert!(matches!(
            c.records.last().unwrap().1.payload,
            Payload::Event {
                event: phyr_trace::Event::Closed,
                ..
            }
        ));
    }
    let dmas: Vec<_> = t
        .records
        .iter()
        .filter_map(|(_, r)| match &r.payload {
            Payload::Dma(d) if d.command_id == 77 && d.list < 2 => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert!(dmas
        .iter()
        .any(|d| d.space == Space::Iova && d.addr == data(0) && d.len == 5000 && d.crc32c.is_some()));
    let w = dmas.iter().find(|d| d.space == Space::Bus).expect("bus write recorded");
    assert_eq!((w.addr, w.len, w.queue), (bar2_bus(1) + 0x100, 5000, 1));
    assert_eq!(w.crc32c, Some(crc32c::crc32c(&pattern(5000, 2))));
    // DmaMap events carry the fd offset of each mapping (trace format version 2).
    let maps: Vec<_> = t
        .records
        .iter()
        .filter_map(|(_, r)| match &r.payload {
            Payload::Event {
                event:
                    phyr_trace::Event::DmaMap {
                        iova,
                        writable,
                        fd_offset,
                        ..
                    },
                ..
            } => Some((*iova, *writable, *fd_offset)),
            _ => None,
        })
        .collect();
    assert_eq!(
        maps,
        [(RAM_IOVA, true, Some(0)), (RAM_IOVA + (64 << 20), false, Some(0x3000))]
    );
    // Descriptor fetches (list 2) land in guest memory; SQ fetches and CQ writes are list 3.
    let all: Vec<_> = t
        .records
        .iter()
        .filter_map(|(_, r)| match &r.payload {
            Payload::Dma(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert!(all
        .iter()
        .any(|d| d.list == 2 && d.addr == lists(0) && matches!(d.target, phyr_trace::Target::GuestMemory { .. })));
    assert!(all
        .iter()
        .any(|d| d.list == 3 && d.direction == phyr_trace::Direction::Read));
    assert!(all
        .iter()
        .any(|d| d.list == 3 && d.direction == phyr_trace::Direction::Write));
    let _ = std::fs::remove_dir_all(&dir);
}

fn bad_args(args: &[&str], needle: &str) {
    let out = Proc::new(BIN).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn bar2_size_not_a_power_of_two_is_one_clear_error() {
    bad_args(&["--socket-dir", "/tmp/phyr-x", "--bar2-size", "3M"], "power of two");
}

#[test]
fn topology_shorter_than_endpoints_is_one_clear_error() {
    bad_args(
        &["--socket-dir", "/tmp/phyr-x", "--endpoints", "3", "--topology", "0,1"],
        "--topology names 2 endpoints",
    );
}

#[test]
fn garbage_size_and_trace_crc_are_one_clear_error() {
    bad_args(&["--socket-dir", "/tmp/phyr-x", "--bar2-size", "lots"], "--bar2-size");
    bad_args(
        &["--socket-dir", "/tmp/phyr-x", "--trace-crc", "maybe"],
        "--trace-crc must be on or off",
    );
    bad_args(
        &["--socket-dir", "/tmp/phyr-x", "--endpoints", "0"],
        "--endpoints must be between",
    );
}
