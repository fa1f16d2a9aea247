//! Writes seed inputs for every fuzz target into `DIR/<target>/`, built with the project's own
//! encoders the way its tests build their inputs: chained and hostile dma_range lists, a real
//! trace file and its truncations, register sequences that enable queues and ring doorbells,
//! and vfio-user sessions as QEMU opens them.
//!
//! Usage: `phyr-fuzz-seeds DIR`

use std::path::{Path, PathBuf};

use dma_range::regs::*;
use dma_range::{encode_chained, AddrSpace, DmaRange, ENTRY_SIZE, RANGE_CHAIN};
use phyr_trace::{Direction, DmaRecord, Event, Payload, Recorder, Space, Target, TraceClock, TraceConfig};
use vfio_user::wire::{Command, DmaMap, Header, RegionAccess, SetIrqs, Version, FLAG_NO_REPLY, HEADER_SIZE};

/// Where the list_walk target places its two memories (see fuzz_targets/list_walk.rs).
const IOVA_BASE: u64 = 0x1000;
const BUS_BASE: u64 = 0xf400_0000;
/// Bytes of each memory in a list_walk seed.
const WALK_MEM: usize = 4096;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("corpus directory");
    std::fs::write(d.join(format!("seed-{name}")), bytes).expect("seed file");
}

/// A list_walk input: head, limits, IOVA memory, bus memory.
fn walk_input(head: DmaRange, max_entries_div4: u8, max_chain: u8, iova: &[u8], bus: &[u8]) -> Vec<u8> {
    let mut v = head.to_bytes().to_vec();
    v.extend([max_entries_div4, max_chain]);
    let mut a = iova.to_vec();
    a.resize(WALK_MEM, 0);
    let mut b = bus.to_vec();
    b.resize(WALK_MEM, 0);
    v.extend(a);
    v.extend(b);
    v
}

fn list_walk(dir: &Path) {
    let segs: Vec<DmaRange> = (0..20u64)
        .map(|i| {
            let space = if i % 3 == 0 { AddrSpace::Bus } else { AddrSpace::Iova };
            DmaRange::segment(space, 0x10_0000 + i * 0x1000, 0x800 + i as u32)
        })
        .collect();
    // Chained blocks of 4 entries, alternating between the two memories.
    let place = |i: usize| {
        if i % 2 == 0 {
            (AddrSpace::Iova, IOVA_BASE + (i * 256) as u64)
        } else {
            (AddrSpace::Bus, BUS_BASE + (i * 256) as u64)
        }
    };
    let (head, blocks) = encode_chained(&segs, 4, place);
    let (mut iova, mut bus) = (vec![0u8; WALK_MEM], vec![0u8; WALK_MEM]);
    for (i, b) in blocks.iter().enumerate() {
        let (space, addr) = place(i);
        let (mem, base) = if space == AddrSpace::Iova {
            (&mut iova, IOVA_BASE)
        } else {
            (&mut bus, BUS_BASE)
        };
        let at = (addr - base) as usize;
        mem[at..at + b.len()].copy_from_slice(b);
    }
    write(dir, "list_walk", "chained", &walk_input(head, 16, 16, &iova, &bus));
    // One block, one segment.
    let one = DmaRange::segment(AddrSpace::Iova, 0x2000, 4096).to_bytes();
    let head1 = DmaRange::segment(AddrSpace::Iova, IOVA_BASE, ENTRY_SIZE as u32);
    write(dir, "list_walk", "single", &walk_input(head1, 1, 0, &one, &[]));
    // A chain back to its own block (cycle).
    let cyc = DmaRange::chain(AddrSpace::Iova, IOVA_BASE, ENTRY_SIZE as u32).to_bytes();
    write(dir, "list_walk", "cycle", &walk_input(head1, 1, 8, &cyc, &[]));
    // A chain entry that is not last, unknown flags, a zero length, an overflowing address.
    let mut bad = Vec::new();
    bad.extend(DmaRange::chain(AddrSpace::Bus, BUS_BASE, 32).to_bytes());
    bad.extend(
        DmaRange {
            addr: 1,
            len: 1,
            flags: 0x80 | RANGE_CHAIN,
        }
        .to_bytes(),
    );
    bad.extend(DmaRange::segment(AddrSpace::Iova, 5, 0).to_bytes());
    bad.extend(DmaRange::segment(AddrSpace::Iova, u64::MAX, 2).to_bytes());
    let head4 = DmaRange::segment(AddrSpace::Iova, IOVA_BASE, bad.len() as u32);
    write(dir, "list_walk", "hostile", &walk_input(head4, 4, 4, &bad, &[]));
}

/// One record of each kind a device writes for a command: map, list fetch, data, completion.
fn trace_payloads() -> Vec<Payload> {
    let dma = |direction, space, addr, len, target, status, crc32c| {
        Payload::Dma(DmaRecord {
            endpoint: 0,
            queue: 1,
            command_id: 7,
            opcode: 1,
            segment: 0,
            list: 0,
            direction,
            space,
            addr,
            len,
            target,
            status,
            crc32c,
            dur_ns: 100,
        })
    };
    let event = |event| Payload::Event { endpoint: 0, event };
    vec![
        event(Event::Connected),
        event(Event::DmaMap {
            iova: 0x10_0000,
            size: 0x1000,
            readable: true,
            writable: true,
            has_fd: true,
            fd_offset: Some(0x10_0000),
        }),
        dma(
            Direction::Read,
            Space::Iova,
            0x10_0000,
            16,
            Target::GuestMemory {
                mapping: 0,
                offset: 0x10_0000,
            },
            0,
            Some(0xa290_020e),
        ),
        dma(
            Direction::Write,
            Space::Bus,
            0xf400_0000,
            4096,
            Target::PeerBar {
                endpoint: 1,
                bar: 2,
                offset: 0,
            },
            0,
            Some(0x5ad4_f4e5),
        ),
        dma(Direction::Read, Space::Message, 0x8_0000, 64, Target::None, 0x10, None),
        event(Event::CommandDone {
            queue: 1,
            command_id: 7,
            opcode: 1,
            status: 0,
            result: 4096,
        }),
        event(Event::Interrupt { vector: 1 }),
        event(Event::DmaUnmap {
            iova: 0,
            size: 0,
            all: true,
        }),
        event(Event::Error { message: "seed".into() }),
        event(Event::Dropped { records: 3 }),
        event(Event::Disconnected),
        event(Event::Closed),
    ]
}

fn trace_reader(dir: &Path, scratch: &Path) {
    let clock = TraceClock::new();
    let rec = Recorder::create(scratch, 0, &TraceConfig::default(), &clock).expect("a trace file");
    for p in trace_payloads() {
        rec.record_now(p);
    }
    rec.flush().expect("trace flush");
    drop(rec);
    let file = scratch.join(phyr_trace::trace_file_name(0));
    let bytes = std::fs::read(&file).expect("the trace file");
    // The target's first byte says where to cut: whole, half, and just past the header.
    for (cut, name) in [(255u8, "whole"), (128, "half"), (8, "header")] {
        let mut v = vec![cut];
        v.extend(&bytes);
        write(dir, "trace_reader", name, &v);
    }
}

/// One regfile operation (see fuzz_targets/regfile.rs): kind 4 = write, 0 = read.
fn reg_op(out: &mut Vec<u8>, write: bool, off: u64, size_code: u8, value: u64) {
    out.push(if write { 4 } else { 0 });
    out.extend((off as u16).to_le_bytes());
    out.push(size_code);
    out.extend(value.to_le_bytes());
}

fn regfile(dir: &Path) {
    const W4: u8 = 2; // size code of a 32-bit access
    const W8: u8 = 3;
    let mut v = vec![4u8]; // four queues
    reg_op(&mut v, false, REG_ID, W4, 0);
    reg_op(&mut v, true, REG_SCRATCH, W4, 0x1234_5678);
    reg_op(&mut v, false, REG_SCRATCH, W4, 0);
    reg_op(&mut v, true, REG_CTRL, W4, u64::from(CTRL_ENABLE));
    for q in 0..2 {
        reg_op(&mut v, true, queue_reg(q, Q_SQ_BASE), W8, 0x10_0000);
        reg_op(&mut v, true, queue_reg(q, Q_CQ_BASE), W8, 0x11_0000);
        reg_op(&mut v, true, queue_reg(q, Q_SQ_SIZE), W4, 64);
        reg_op(&mut v, true, queue_reg(q, Q_CQ_SIZE), W4, 64);
        reg_op(&mut v, true, queue_reg(q, Q_SHADOW_BASE), W8, 0x12_0000);
        reg_op(&mut v, true, queue_reg(q, Q_MSIX_VECTOR), W4, 1);
        let ctrl = if q == 0 {
            QCTRL_ENABLE | QCTRL_IRQ
        } else {
            QCTRL_ENABLE | QCTRL_POLL
        };
        reg_op(&mut v, true, queue_reg(q, Q_CTRL), W4, u64::from(ctrl));
        reg_op(&mut v, true, doorbell(q, DB_SQ_TAIL), W4, 3);
        reg_op(&mut v, true, doorbell(q, DB_CQ_HEAD), W4, 2);
        reg_op(&mut v, false, queue_reg(q, Q_STATUS), W4, 0);
        reg_op(&mut v, true, queue_reg(q, Q_CTRL), W4, 0);
    }
    reg_op(&mut v, true, REG_IRQ_TEST, W4, 3);
    reg_op(&mut v, true, REG_CTRL, W4, u64::from(CTRL_RESET));
    write(dir, "regfile", "queues", &v);
}

/// A request as it goes on the wire.
fn msg(id: u16, command: Command, flags: u32, payload: &[u8]) -> Vec<u8> {
    let h = Header {
        msg_id: id,
        command: command as u16,
        msg_size: (HEADER_SIZE + payload.len()) as u32,
        flags,
        error: 0,
    };
    let mut v = h.encode().to_vec();
    v.extend_from_slice(payload);
    v
}

/// A vfio_user_stream chunk: `[len: u16][flags: u8][bytes]`; flag 1 attaches fds.
fn chunk(out: &mut Vec<u8>, with_fds: bool, bytes: &[u8]) {
    out.extend((bytes.len() as u16).to_le_bytes());
    out.push(u8::from(with_fds));
    out.extend_from_slice(bytes);
}

fn vfio_user_stream(dir: &Path) {
    use vfio_bindings::bindings::vfio as v;
    let version = Version {
        major: 0,
        minor: 0,
        caps: vfio_user::wire::Capabilities::ours(),
    }
    .encode();
    let info_req = |index: u32| {
        let mut p = vec![0u8; 32];
        p[0..4].copy_from_slice(&32u32.to_le_bytes());
        p[8..12].copy_from_slice(&index.to_le_bytes());
        p
    };
    let map = DmaMap {
        flags: v::VFIO_DMA_MAP_FLAG_READ | v::VFIO_DMA_MAP_FLAG_WRITE,
        offset: 0,
        iova: 0x10_0000,
        size: 0x1_0000,
    }
    .encode();
    let mut s = Vec::new();
    chunk(&mut s, false, &msg(1, Command::Version, 0, &version));
    chunk(&mut s, true, &msg(2, Command::DmaMap, 0, &map));
    chunk(
        &mut s,
        false,
        &msg(3, Command::DeviceGetInfo, 0, &{
            let mut p = vec![0u8; 16];
            p[0..4].copy_from_slice(&16u32.to_le_bytes());
            p
        }),
    );
    for (id, index) in [(4u16, 0u32), (5, 2), (6, 7)] {
        chunk(
            &mut s,
            false,
            &msg(id, Command::DeviceGetRegionInfo, 0, &info_req(index)),
        );
    }
    chunk(
        &mut s,
        false,
        &msg(7, Command::RegionRead, 0, &RegionAccess::encode(0, 0, 4, &[])),
    );
    let cmd = (0x0006u16).to_le_bytes();
    chunk(
        &mut s,
        false,
        &msg(8, Command::RegionWrite, 0, &RegionAccess::encode(4, 7, 2, &cmd)),
    );
    let sq = 0x10_0000u64.to_le_bytes();
    chunk(
        &mut s,
        false,
        &msg(
            9,
            Command::RegionWrite,
            FLAG_NO_REPLY,
            &RegionAccess::encode(queue_reg(0, Q_SQ_BASE), 0, 8, &sq),
        ),
    );
    let irqs = SetIrqs::encode(
        v::VFIO_IRQ_SET_DATA_EVENTFD | v::VFIO_IRQ_SET_ACTION_TRIGGER,
        2,
        0,
        1,
        &[],
    );
    chunk(&mut s, true, &msg(10, Command::DeviceSetIrqs, 0, &irqs));
    chunk(&mut s, false, &msg(11, Command::DeviceReset, 0, &[]));
    write(dir, "vfio_user_stream", "qemu-like", &s);
    let mut hello = Vec::new();
    chunk(&mut hello, false, &msg(1, Command::Version, 0, &version));
    write(dir, "vfio_user_stream", "version-only", &hello);
}

/// The report grammar's own documented examples (docs/REPORT.md): each line that starts with
/// `# phyr-` is a seed, and all of them together make a console log seed.
fn report_line(dir: &Path) {
    const DOC: &str = include_str!("../../../docs/REPORT.md");
    let examples: Vec<&str> = DOC.lines().filter(|l| l.starts_with("# phyr-")).collect();
    for (i, l) in examples.iter().enumerate() {
        write(dir, "report_line", &format!("doc-{i}"), l.as_bytes());
    }
    let console = examples.join("\n[   12.345678] phyr 0000:03:00.0: ");
    write(dir, "report_line", "console", console.as_bytes());
}

/// The submit file example the driver documents (the JSON block of cli/submit.rs's module doc)
/// and a few shapes of its own tests.
fn submit_json(dir: &Path) {
    const DOC: &str = include_str!("../../../driver/src/cli/submit.rs");
    if let Some(block) = DOC.split("//! ```json").nth(1).and_then(|b| b.split("//! ```").next()) {
        let json: String = block
            .lines()
            .map(|l| l.trim_start_matches("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        write(dir, "submit_json", "documented", json.as_bytes());
    }
    let own = [
        r#"{"command":{"opcode":"nop"}}"#,
        r#"{"buffers":[{"name":"a","size":"4K","init":"byte:0x5a"}],"command":{"opcode":"fill","dst":{"addr":"buf:a","len":4096},"pattern":"0x0123"}}"#,
        r#"{"lists":[{"name":"l","at":"bar:1:0x1000","entries":[{"addr":"bus:0+0x10","len":16},{"addr":"list:l","flags":"chain"}]}],"command":{"opcode":"crc32c","src":"list:l"}}"#,
    ];
    for (i, j) in own.iter().enumerate() {
        write(dir, "submit_json", &format!("own-{i}"), j.as_bytes());
    }
}

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: phyr-fuzz-seeds DIR (writes DIR/<target>/seed-*)");
        std::process::exit(2);
    };
    let scratch = std::env::temp_dir().join(format!("phyr-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    list_walk(&dir);
    trace_reader(&dir, &scratch);
    regfile(&dir);
    vfio_user_stream(&dir);
    report_line(&dir);
    submit_json(&dir);
    let _ = std::fs::remove_dir_all(&scratch);
    println!("seeds written to {}", dir.display());
}
