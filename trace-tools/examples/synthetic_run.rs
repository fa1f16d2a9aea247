//! Writes a synthetic run directory with traces of two endpoints, for trying the trace tools
//! without QEMU: `cargo run -p phyr-trace --example synthetic_run -- /tmp/run` then
//! `phyr-harness trace /tmp/run`. The records imitate what the device's DMA engine records
//! (COPY commands: list fetch, source reads, destination writes, completion, interrupt; one
//! peer-to-peer copy over the bus; one IOMMU fault); they are made up, not measured.

use std::path::PathBuf;

use phyr_trace::{Direction, DmaRecord, Event, Payload, Record, Recorder, Space, Target, TraceClock, TraceConfig};

struct Cmd<'a> {
    rec: &'a Recorder,
    ep: u16,
    t: &'a mut u64,
}

impl Cmd<'_> {
    /// `access` = (direction, space, address, length).
    fn dma(&mut self, cmd: u16, list: u8, seg: u32, access: (Direction, Space, u64, u32), target: Target, status: u16) {
        let (dir, space, addr, len) = access;
        let dur = 200 + len / 8;
        let crc = (status == 0).then(|| phyr_kernels::crc32c::crc32c(&addr.to_le_bytes()));
        self.rec.record(Record {
            t_ns: *self.t,
            payload: Payload::Dma(DmaRecord {
                endpoint: self.ep,
                queue: 0,
                command_id: cmd,
                opcode: 1,
                segment: seg,
                list,
                direction: dir,
                space,
                addr,
                len,
                target,
                status,
                crc32c: crc,
                dur_ns: dur,
            }),
        });
        *self.t += u64::from(dur) + 50;
    }

    fn event(&mut self, event: Event) {
        self.rec.record(Record {
            t_ns: *self.t,
            payload: Payload::Event {
                endpoint: self.ep,
                event,
            },
        });
        *self.t += 300;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run: PathBuf = std::env::args().nth(1).ok_or("usage: synthetic_run RUN_DIR")?.into();
    let trace = run.join("trace");
    let clock = TraceClock::new();
    let cfg = TraceConfig::default();
    for ep in 0..2u16 {
        let rec = Recorder::create(&trace, ep, &cfg, &clock)?;
        let mut t = 1_000 + u64::from(ep) * 700;
        let mut c = Cmd {
            rec: &rec,
            ep,
            t: &mut t,
        };
        c.event(Event::Connected);
        c.event(Event::DmaMap {
            iova: 0x10_0000,
            size: 0x40_0000,
            readable: true,
            writable: true,
            has_fd: true,
            fd_offset: Some(0x10_0000),
        });
        let mem = |off| Target::GuestMemory {
            mapping: 0,
            offset: off,
        };
        for cmd in 0..8u16 {
            let base = 0x10_0000 + u64::from(cmd) * 0x2_0000;
            c.dma(
                cmd,
                3,
                0,
                (Direction::Read, Space::Iova, 0x8000 + u64::from(cmd) * 64, 64),
                mem(0x8000),
                0,
            );
            c.dma(cmd, 2, 0, (Direction::Read, Space::Iova, 0x9000, 32), mem(0x9000), 0);
            for seg in 0..2u32 {
                let off = base + u64::from(seg) * 0x8000;
                c.dma(
                    cmd,
                    0,
                    seg,
                    (Direction::Read, Space::Iova, off, 0x8000),
                    mem(off - 0x10_0000),
                    0,
                );
                c.dma(
                    cmd,
                    1,
                    seg,
                    (Direction::Write, Space::Iova, off + 0x1_0000, 0x8000),
                    mem(off - 0x10_0000 + 0x1_0000),
                    0,
                );
            }
            c.dma(
                cmd,
                3,
                0,
                (Direction::Write, Space::Iova, 0xa000 + u64::from(cmd) * 32, 32),
                mem(0xa000),
                0,
            );
            c.event(Event::CommandDone {
                queue: 0,
                command_id: cmd,
                opcode: 1,
                status: 0,
                result: 0x1_0000,
            });
            c.event(Event::Interrupt { vector: 0 });
        }
        if ep == 0 {
            c.dma(
                8,
                1,
                0,
                (Direction::Write, Space::Bus, 0xfe00_0000, 0x1000),
                Target::PeerBar {
                    endpoint: 1,
                    bar: 2,
                    offset: 0,
                },
                0,
            );
            c.event(Event::CommandDone {
                queue: 0,
                command_id: 8,
                opcode: 1,
                status: 0,
                result: 0x1000,
            });
            c.dma(
                9,
                0,
                0,
                (Direction::Read, Space::Iova, 0xdead_0000, 0x1000),
                Target::None,
                0x10,
            );
            c.event(Event::CommandDone {
                queue: 0,
                command_id: 9,
                opcode: 1,
                status: 0x10,
                result: 0,
            });
            c.event(Event::Interrupt { vector: 0 });
        }
        c.event(Event::DmaUnmap {
            iova: 0x10_0000,
            size: 0x40_0000,
            all: false,
        });
        c.event(Event::Reset);
        rec.flush()?;
    }
    println!("wrote {}", trace.display());
    Ok(())
}
