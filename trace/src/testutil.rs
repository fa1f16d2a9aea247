//! Shared test builders: one record of every shape the format knows.

use crate::record::{Direction, DmaRecord, Event, Payload, Record, Space, Target};

pub fn dma(t_ns: u64, endpoint: u16, command_id: u16, addr: u64, len: u32, status: u16) -> Record {
    Record {
        t_ns,
        payload: Payload::Dma(DmaRecord {
            endpoint,
            queue: 0,
            command_id,
            opcode: 1,
            segment: 0,
            list: 0,
            direction: Direction::Read,
            space: Space::Iova,
            addr,
            len,
            target: Target::GuestMemory {
                mapping: 0,
                offset: addr,
            },
            status,
            crc32c: if status == 0 { Some(0xdead_beef) } else { None },
            dur_ns: 100,
        }),
    }
}

pub fn event(t_ns: u64, endpoint: u16, event: Event) -> Record {
    Record {
        t_ns,
        payload: Payload::Event { endpoint, event },
    }
}

pub fn sample_records() -> Vec<Record> {
    let mut peer = dma(20, 1, 7, 0xfe00_0000, 4096, 0);
    if let Payload::Dma(d) = &mut peer.payload {
        d.direction = Direction::Write;
        d.space = Space::Bus;
        d.target = Target::PeerBar {
            endpoint: 2,
            bar: 2,
            offset: 0x1000,
        };
        d.queue = 3;
        d.segment = 17;
        d.list = 1;
    }
    let mut msg = dma(30, 1, 8, 0x10_0000, 512, 0x10);
    if let Payload::Dma(d) = &mut msg.payload {
        d.space = Space::Message;
        d.target = Target::None;
    }
    vec![
        dma(10, 1, 5, 0x1000, 65536, 0),
        peer,
        msg,
        event(
            40,
            1,
            Event::DmaMap {
                iova: 0x1000,
                size: 0x10000,
                readable: true,
                writable: false,
                has_fd: true,
                fd_offset: Some(0x3fe_0000),
            },
        ),
        event(
            41,
            1,
            Event::DmaUnmap {
                iova: 0x1000,
                size: 0x10000,
                all: false,
            },
        ),
        event(42, 1, Event::Reset),
        event(43, 1, Event::Interrupt { vector: 3 }),
        event(
            44,
            1,
            Event::CommandDone {
                queue: 0,
                command_id: 5,
                opcode: 1,
                status: 0,
                result: 65536,
            },
        ),
        event(45, 1, Event::Connected),
        event(46, 1, Event::Disconnected),
        event(
            47,
            1,
            Event::Error {
                message: "IOVA 0x100000 not mapped".into(),
            },
        ),
        event(48, 1, Event::Dropped { records: 12 }),
    ]
}

/// A fresh empty directory under the system temp dir (removed by the caller if it cares).
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("phyr-trace-{tag}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
