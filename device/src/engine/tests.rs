//! Engine unit tests over in-process memory (`testmem`) and a real two-endpoint fabric.

use std::sync::Arc;

use dma_range::{encode_chained, AddrSpace, Command, DmaRange, ListLimits, Opcode, Status};
use proptest::prelude::*;

use super::*;
use crate::config::BarDecode;
use crate::fabric::{Fabric, Port};
use crate::peer_mem::PeerMem;
use crate::testmem::TestMem;

const RAM: u64 = 0x10_0000;
const RO: u64 = 0x80_0000;
const MSG: u64 = 0x90_0000;
const BAR2_0: u64 = 0x40_0000_0000;
const BAR2_1: u64 = 0x40_0100_0000;

struct Rig {
    mem: TestMem,
    fabric: Fabric,
    hook: Hook,
    /// One scratch for all of a test's commands, as a queue keeps it.
    lists: std::cell::RefCell<Lists>,
}

fn rig() -> Rig {
    let mut mem = TestMem::default();
    mem.map(RAM, 1 << 20, true, false);
    mem.map(RAM + (1 << 20), 1 << 20, true, false); // adjacent mapping: ranges span both
    mem.map(RO, 64 << 10, false, false);
    mem.map(MSG, 64 << 10, true, true);
    let ports = (0..3u16)
        .map(|i| {
            let p = Port::new(i, u32::from(i / 2), PeerMem::new("bar2", 1 << 20).unwrap());
            p.set_decode(BarDecode {
                memory_enabled: true,
                bar0: 0xFE00_0000 + u64::from(i) * 0x10000,
                bar2: BAR2_0 + u64::from(i) * 0x100_0000,
            });
            Arc::new(p)
        })
        .collect();
    Rig {
        mem,
        fabric: Fabric::new(ports),
        hook: Hook::off(0),
        lists: Default::default(),
    }
}

impl Rig {
    fn run(&self, cmd: &Command) -> Completion {
        let none = || None;
        let exec = Exec {
            bus: Bus {
                iova: &self.mem,
                fabric: &self.fabric,
                me: &self.fabric.ports()[0],
            },
            limits: ListLimits {
                max_entries: 64,
                max_chain: 4,
            },
            hook: &self.hook,
            tag: CmdTag::default(),
            abort: &none,
        };
        exec.run(cmd, &mut self.lists.borrow_mut())
    }

    /// Writes a single-block list at `at` (IOVA) and returns its head.
    fn list(&self, at: u64, segs: &[DmaRange]) -> DmaRange {
        let bytes: Vec<u8> = segs.iter().flat_map(|s| s.to_bytes()).collect();
        self.mem.put(at, &bytes);
        Command::list_head(AddrSpace::Iova, at, segs.len() as u32)
    }

    fn peer(&self, ep: usize, off: u64, data: &[u8]) {
        assert!(self.fabric.ports()[ep].bar2.write(off, data));
    }

    fn peer_get(&self, ep: usize, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        assert!(self.fabric.ports()[ep].bar2.read(off, &mut b));
        b
    }
}

fn iova(addr: u64, len: u32) -> DmaRange {
    DmaRange::segment(AddrSpace::Iova, addr, len)
}
fn bus(addr: u64, len: u32) -> DmaRange {
    DmaRange::segment(AddrSpace::Bus, addr, len)
}
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn copy_mixing_iova_and_bus_segments_spanning_two_mappings() {
    let r = rig();
    let data = pattern(12288, 1);
    r.mem.put(RAM + (1 << 20) - 4096, &data[..8192]); // spans the two adjacent mappings
    r.peer(1, 0x100, &data[8192..]);
    let src = r.list(RAM, &[iova(RAM + (1 << 20) - 4096, 8192), bus(BAR2_1 + 0x100, 4096)]);
    let dst = r.list(RAM + 0x100, &[bus(BAR2_0 + 0x2000, 10000), iova(RAM + 0x8000, 2288)]);
    let c = r.run(&Command::new(Opcode::Copy, 7, src, dst));
    assert_eq!((c.status(), c.command_id, c.result), (Some(Status::SUCCESS), 7, 12288));
    assert_eq!(r.peer_get(0, 0x2000, 10000), data[..10000]);
    assert_eq!(r.mem.get(RAM + 0x8000, 2288), data[10000..]);
}

#[test]
fn a_short_list_after_a_long_one_moves_only_its_own_segments() {
    let r = rig();
    let data = pattern(4096, 9);
    let other = pattern(4096, 77);
    r.mem.put(RAM + 0x1000, &data);
    r.mem.put(RAM + 0x3000, &other);
    let long: Vec<DmaRange> = (0..32).map(|i| iova(RAM + 0x1000 + i * 128, 128)).collect();
    let src = r.list(RAM, &long);
    let dst = r.list(RAM + 0x400, &[iova(RAM + 0x4000, 4096)]);
    assert_eq!(
        r.run(&Command::new(Opcode::Copy, 1, src, dst)).status(),
        Some(Status::SUCCESS)
    );
    // A source walk that fails part way leaves a partial list behind.
    let bad = r.list(RAM + 0x600, &[iova(RAM + 0x2000, 64), iova(RAM + 0x2040, 0)]);
    let c = r.run(&Command::new(Opcode::Copy, 2, bad, dst));
    assert_eq!(c.status(), Some(Status::LIST_ZERO_LENGTH));
    assert_eq!(
        (c.fault_list, c.segment, c.fault_addr),
        (FAULT_LIST_SRC, 1, RAM + 0x2040)
    );
    // Then a destination walk fails after a good source walk.
    let short_src = r.list(RAM + 0x800, &[iova(RAM + 0x3000, 100)]);
    let c = r.run(&Command::new(Opcode::Copy, 3, short_src, bad));
    assert_eq!(
        (c.status(), c.fault_list),
        (Some(Status::LIST_ZERO_LENGTH), FAULT_LIST_DST)
    );
    let short_dst = r.list(RAM + 0x900, &[iova(RAM + 0x6000, 100)]);
    let c = r.run(&Command::new(Opcode::Copy, 4, short_src, short_dst));
    assert_eq!((c.status(), c.result), (Some(Status::SUCCESS), 100));
    assert_eq!(
        r.mem.get(RAM + 0x4000, 4096),
        data,
        "the long copy's destination is untouched"
    );
    assert_eq!(r.mem.get(RAM + 0x6000, 100), other[..100]);
    assert_eq!(
        r.mem.get(RAM + 0x6000 + 100, 28),
        vec![0u8; 28],
        "nothing past the short list"
    );
    // FILL refills only the destination; CRC32C then walks a source the scratch never held.
    let fill_dst = r.list(RAM + 0xA00, &[iova(RAM + 0x7000, 48)]);
    let mut fill = Command::new(Opcode::Fill, 5, DmaRange::default(), fill_dst);
    fill.pattern = 0x0102_0304_0506_0708;
    assert_eq!(r.run(&fill).result, 48);
    assert_eq!(r.mem.get(RAM + 0x7000, 8), 0x0102_0304_0506_0708u64.to_le_bytes());
    let crc_src = r.list(RAM + 0xB00, &[iova(RAM + 0x1000, 300)]);
    let crc = r.run(&Command::new(Opcode::Crc32c, 6, crc_src, DmaRange::default()));
    assert_eq!(crc.result, u64::from(crc32c::crc32c(&data[..300])));
}

#[test]
fn chained_list_in_bar2() {
    let r = rig();
    let data = pattern(600, 9);
    r.mem.put(RAM + 0x4000, &data);
    let segs: Vec<DmaRange> = (0..6).map(|i| iova(RAM + 0x4000 + i * 100, 100)).collect();
    let (head, blocks) = encode_chained(&segs, 4, |i| (AddrSpace::Bus, BAR2_0 + 0x1000 * i as u64));
    for (i, b) in blocks.iter().enumerate() {
        r.peer(0, 0x1000 * i as u64, b);
    }
    let dst = r.list(RAM, &[iova(RAM + 0x9000, 600)]);
    let c = r.run(&Command::new(Opcode::Copy, 1, head, dst));
    assert_eq!(c.status(), Some(Status::SUCCESS));
    assert_eq!(r.mem.get(RAM + 0x9000, 600), data);
}

#[test]
fn fill_crc_compare() {
    let r = rig();
    let dst = r.list(RAM, &[iova(RAM + 0x1003, 13), bus(BAR2_0 + 5, 19)]);
    let mut fill = Command::new(Opcode::Fill, 2, DmaRange::default(), dst);
    fill.pattern = 0x0807_0605_0403_0201;
    assert_eq!(r.run(&fill).result, 32);
    assert_eq!(r.mem.get(RAM + 0x1003, 13), [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5]);
    assert_eq!(r.peer_get(0, 5, 3), [6, 7, 8]);
    let mut expect = vec![];
    for i in 0..32 {
        expect.push((i % 8 + 1) as u8);
    }
    let c = r.run(&Command::new(Opcode::Crc32c, 3, dst, DmaRange::default()));
    assert_eq!(c.result, u64::from(crc32c::crc32c(&expect)));
    r.mem.put(RAM + 0x2000, &expect);
    let other = r.list(RAM + 0x200, &[iova(RAM + 0x2000, 32)]);
    let c = r.run(&Command::new(Opcode::Compare, 4, dst, other));
    assert_eq!((c.status(), c.result), (Some(Status::SUCCESS), 32));
    r.mem.put(RAM + 0x2000 + 20, &[0xEE]);
    let c = r.run(&Command::new(Opcode::Compare, 4, dst, other));
    assert_eq!((c.status(), c.result), (Some(Status::COMPARE_MISMATCH), 20));
}

#[test]
fn unknown_opcode_is_invalid_opcode() {
    let r = rig();
    let mut c = Command::new(Opcode::Nop, 9, DmaRange::default(), DmaRange::default());
    c.opcode = 0x77;
    let comp = r.run(&c);
    assert_eq!((comp.status(), comp.command_id), (Some(Status::INVALID_OPCODE), 9));
}

#[test]
fn nonzero_reserved_field_is_invalid_field() {
    let r = rig();
    let mut c = Command::new(Opcode::Nop, 9, DmaRange::default(), DmaRange::default());
    c.reserved2 = 1;
    assert_eq!(r.run(&c).status(), Some(Status::INVALID_FIELD));
    c.reserved2 = 0;
    c.flags = 0x80;
    assert_eq!(r.run(&c).status(), Some(Status::INVALID_FIELD));
}

#[test]
fn unmapped_iova_mid_list_is_iommu_fault_with_segment_and_exact_address() {
    let r = rig();
    // Segment 1 runs 16 bytes past the end of the second mapping.
    let end = RAM + (2 << 20);
    let src = r.list(RAM, &[iova(RAM + 0x1000, 100), iova(end - 48, 64)]);
    let dst = r.list(RAM + 0x100, &[iova(RAM + 0x3000, 164)]);
    let c = r.run(&Command::new(Opcode::Copy, 5, src, dst));
    assert_eq!(c.status(), Some(Status::IOMMU_FAULT));
    assert_eq!((c.fault_list, c.segment, c.fault_addr), (FAULT_LIST_SRC, 1, end));
    assert_eq!(c.result, 148, "bytes moved before the fault");
}

#[test]
fn write_through_read_only_mapping_is_write_read_only() {
    let r = rig();
    let src = r.list(RAM, &[iova(RAM + 0x1000, 64)]);
    let dst = r.list(RAM + 0x100, &[iova(RAM + 0x2000, 32), iova(RO + 0x10, 32)]);
    let c = r.run(&Command::new(Opcode::Copy, 5, src, dst));
    assert_eq!(c.status(), Some(Status::WRITE_READ_ONLY));
    assert_eq!(
        (c.fault_list, c.segment, c.fault_addr, c.result),
        (FAULT_LIST_DST, 1, RO + 0x10, 32)
    );
}

#[test]
fn fd_less_mapping_goes_through_messages() {
    let r = rig();
    let data = pattern(5000, 3);
    r.mem.put(MSG + 7, &data);
    let src = r.list(RAM, &[iova(MSG + 7, 5000)]);
    let dst = r.list(RAM + 0x100, &[iova(MSG + 0x8000, 5000)]);
    assert_eq!(
        r.run(&Command::new(Opcode::Copy, 5, src, dst)).status(),
        Some(Status::SUCCESS)
    );
    assert_eq!(r.mem.get(MSG + 0x8000, 5000), data);
    let c = r.run(&Command::new(Opcode::Crc32c, 5, src, DmaRange::default()));
    assert_eq!(c.result, u64::from(crc32c::crc32c(&data)));
}

#[test]
fn refused_dma_message_is_dma_message_failed() {
    let r = rig();
    r.mem.refuse_messages.store(true, std::sync::atomic::Ordering::Relaxed);
    let src = r.list(RAM, &[iova(RAM, 16)]);
    let dst = r.list(RAM + 0x100, &[iova(MSG + 0x40, 16)]);
    let c = r.run(&Command::new(Opcode::Copy, 5, src, dst));
    assert_eq!(
        (c.status(), c.fault_list, c.fault_addr),
        (Some(Status::DMA_MESSAGE_FAILED), FAULT_LIST_DST, MSG + 0x40)
    );
}

#[test]
fn bus_faults_carry_segment_and_address() {
    let r = rig();
    let src = r.list(RAM, &[iova(RAM + 0x1000, 4096)]);
    let cases = [
        (bus(0x1234_0000, 4096), Status::BUS_NO_TARGET, 0x1234_0000),
        (bus(0x40_0200_0000, 4096), Status::BUS_CROSS_SWITCH, 0x40_0200_0000), // ep2: switch 1
        (bus(0xFE01_0000, 4096), Status::BUS_TARGET_ABORT, 0xFE01_0000),
        (
            bus(BAR2_1 + (1 << 20) - 4000, 4096),
            Status::BUS_PAST_BAR_END,
            BAR2_1 + (1 << 20),
        ),
    ];
    for (seg, status, addr) in cases {
        let dst = r.list(RAM + 0x100, &[iova(RAM + 0x9000, 0), seg]);
        // The zero-length entry would be a list error: rebuild without it.
        let _ = dst;
        let dst = r.list(RAM + 0x100, &[seg]);
        let c = r.run(&Command::new(Opcode::Copy, 5, src, dst));
        assert_eq!(
            (c.status(), c.fault_list, c.segment, c.fault_addr),
            (Some(status), FAULT_LIST_DST, 0, addr)
        );
    }
}

#[test]
fn list_errors_report_list_segment_and_address() {
    let r = rig();
    let good = r.list(RAM + 0x300, &[iova(RAM, 16)]);
    let zero = r.list(RAM, &[iova(RAM, 16), iova(RAM + 0x40, 0)]);
    let c = r.run(&Command::new(Opcode::Copy, 5, good, zero));
    assert_eq!(
        (c.status(), c.fault_list, c.segment, c.fault_addr),
        (Some(Status::LIST_ZERO_LENGTH), FAULT_LIST_DST, 1, RAM + 0x40)
    );
    let ovf = r.list(RAM, &[iova(u64::MAX - 4, 16)]);
    assert_eq!(
        r.run(&Command::new(Opcode::Copy, 5, ovf, good)).status(),
        Some(Status::LIST_ADDR_OVERFLOW)
    );
    let cyc = r.list(RAM, &[iova(RAM, 16), DmaRange::chain(AddrSpace::Iova, RAM, 32)]);
    assert_eq!(
        r.run(&Command::new(Opcode::Copy, 5, cyc, good)).status(),
        Some(Status::LIST_CHAIN_CYCLE)
    );
    let big: Vec<DmaRange> = (0..65).map(|i| iova(RAM + i, 1)).collect();
    let many = r.list(RAM + 0x1000, &big);
    let c = r.run(&Command::new(Opcode::Crc32c, 5, many, DmaRange::default()));
    assert_eq!((c.status(), c.segment), (Some(Status::LIST_TOO_MANY_ENTRIES), 64));
    let mismatch = r.list(RAM + 0x400, &[iova(RAM, 17)]);
    let c = r.run(&Command::new(Opcode::Copy, 5, good, mismatch));
    assert_eq!(
        (c.status(), c.segment),
        (Some(Status::LIST_LENGTH_MISMATCH), NO_SEGMENT)
    );
    let unmapped_head = Command::list_head(AddrSpace::Iova, 0x7000_0000, 1);
    let c = r.run(&Command::new(Opcode::Crc32c, 5, unmapped_head, DmaRange::default()));
    assert_eq!(
        (c.status(), c.fault_list, c.fault_addr),
        (Some(Status::IOMMU_FAULT), FAULT_LIST_SRC, 0x7000_0000)
    );
}

#[test]
fn abort_before_a_step_stops_the_command() {
    let r = rig();
    let src = r.list(RAM, &[iova(RAM + 0x1000, 64)]);
    let dst = r.list(RAM + 0x100, &[iova(RAM + 0x2000, 64)]);
    let abort = || Some(Status::ABORTED_RESET);
    let exec = Exec {
        bus: Bus {
            iova: &r.mem,
            fabric: &r.fabric,
            me: &r.fabric.ports()[0],
        },
        limits: ListLimits::default(),
        hook: &r.hook,
        tag: CmdTag::default(),
        abort: &abort,
    };
    let c = exec.run(&Command::new(Opcode::Copy, 5, src, dst), &mut Lists::default());
    assert_eq!((c.status(), c.result), (Some(Status::ABORTED_RESET), 0));
}

proptest! {
    /// Any split of a transfer into IOVA and BUS segments, on both sides, copies the same bytes.
    #[test]
    fn resolution_of_arbitrary_splits_copies_exactly(
        cuts_s in proptest::collection::vec(1u32..700, 1..8),
        cuts_d in proptest::collection::vec(1u32..700, 1..8),
        bus_mask in any::<u16>(),
    ) {
        let r = rig();
        let total: u32 = cuts_s.iter().sum();
        let data = pattern(total as usize, 77);
        let mut src = vec![];
        let mut at = 0u64;
        for (i, c) in cuts_s.iter().enumerate() {
            if bus_mask & (1 << i) != 0 {
                r.peer(1, at, &data[at as usize..at as usize + *c as usize]);
                src.push(bus(BAR2_1 + at, *c));
            } else {
                r.mem.put(RAM + 0x10000 + at, &data[at as usize..at as usize + *c as usize]);
                src.push(iova(RAM + 0x10000 + at, *c));
            }
            at += u64::from(*c);
        }
        // Destination: the cuts of cuts_d, the rest in one last segment.
        let mut dst = vec![];
        let mut placed = 0u64;
        for (i, c) in cuts_d.iter().enumerate() {
            let c = u64::from(*c).min(u64::from(total) - placed);
            if c == 0 { break; }
            if bus_mask & (1 << (8 + i)) != 0 {
                dst.push(bus(BAR2_0 + 0x8_0000 + placed, c as u32));
            } else {
                dst.push(iova(RAM + 0x8_0000 + placed, c as u32));
            }
            placed += c;
        }
        if placed < u64::from(total) {
            dst.push(iova(RAM + 0x8_0000 + placed, (u64::from(total) - placed) as u32));
        }
        let sh = r.list(RAM, &src);
        let dh = r.list(RAM + 0x1000, &dst);
        let c = r.run(&Command::new(Opcode::Copy, 1, sh, dh));
        prop_assert_eq!(c.status(), Some(Status::SUCCESS));
        prop_assert_eq!(c.result, u64::from(total));
        let mut got = vec![];
        let mut off = 0u64;
        for d in &dst {
            let n = d.len as usize;
            if d.space() == AddrSpace::Bus {
                got.extend(r.peer_get(0, 0x8_0000 + off, n));
            } else {
                got.extend(r.mem.get(d.addr, n));
            }
            off += n as u64;
        }
        prop_assert_eq!(got, data);
    }
}

/// A rig whose hook records (data CRCs on, the default) into a fresh directory; returns it too.
fn traced_rig(tag: &str) -> (Rig, std::path::PathBuf) {
    use phyr_trace::{Recorder, TraceClock, TraceConfig};
    let dir = std::env::temp_dir().join(format!("phyr-engine-{tag}-{}", std::process::id()));
    let mut r = rig();
    let rec = Recorder::create(&dir, 0, &TraceConfig::default(), &TraceClock::new()).unwrap();
    r.hook = Hook::new(rec, 0);
    (r, dir)
}

/// Drops `r` (its hook holds the last recorder clone: the file is flushed), reads the trace
/// back and removes its directory.
fn finish_trace(r: Rig, dir: &std::path::Path) -> phyr_trace::TraceContents {
    drop(r);
    let path = dir.join(phyr_trace::trace_file_name(0));
    let trace = phyr_trace::read_bytes(&std::fs::read(path).unwrap()).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    trace
}

/// With data CRCs on, every recorded piece of a CRC32C or COPY command carries the CRC of
/// exactly its bytes (message-backed pieces and list fetches too), and the CRC32C result is
/// their combination.
#[test]
fn data_crcs_in_the_trace_match_the_bytes_of_every_piece() {
    use phyr_trace::{Payload, Space};
    let (r, dir) = traced_rig("data-crc");
    // Pieces: plain IOVA, a peer-BAR bus address, two adjacent mappings, a message-backed map.
    let (a, b, c, m) = (pattern(3000, 1), pattern(2000, 2), pattern(1000, 3), pattern(700, 4));
    r.mem.put(RAM + 0x3000, &a);
    r.peer(1, 100, &b);
    r.mem.put(RAM + (1 << 20) - 500, &c);
    r.mem.put(MSG + 0x100, &m);
    let segs = [
        iova(RAM + 0x3000, 3000),
        bus(BAR2_1 + 100, 2000),
        iova(RAM + (1 << 20) - 500, 1000),
        iova(MSG + 0x100, 700),
    ];
    let src = r.list(RAM, &segs);
    let all: Vec<u8> = [a.clone(), b.clone(), c.clone(), m.clone()].concat();
    let crc = r.run(&Command::new(Opcode::Crc32c, 1, src, DmaRange::default()));
    assert_eq!(
        (crc.status(), crc.result),
        (Some(Status::SUCCESS), u64::from(crc32c::crc32c(&all)))
    );
    let dst = r.list(RAM + 0x200, &[iova(RAM + 0x8_0000, all.len() as u32)]);
    let copy = r.run(&Command::new(Opcode::Copy, 2, src, dst));
    assert_eq!(copy.status(), Some(Status::SUCCESS));
    assert_eq!(r.mem.get(RAM + 0x8_0000, all.len()), all);
    // The list blocks as the device fetched them (4 and 1 entries).
    let (src_list, dst_list) = (r.mem.get(RAM, 64), r.mem.get(RAM + 0x200, 16));
    let trace = finish_trace(r, &dir);
    let (mut combined, mut pieces, mut copied, mut fetches) = (0u32, 0, 0, 0);
    for (_, rec) in trace.records {
        let Payload::Dma(d) = rec.payload else { continue };
        if d.list > 1 {
            // List fetches carry the CRC of the block read.
            let block = if d.addr == RAM { &src_list } else { &dst_list };
            assert_eq!(d.crc32c, Some(crc32c::crc32c(&block[..d.len as usize])), "{d:?}");
            fetches += 1;
            continue;
        }
        let at = |addr: u64| -> usize {
            match d.space {
                Space::Bus => 3000 + (addr - BAR2_1 - 100) as usize,
                _ if addr >= MSG => 6000 + (addr - MSG - 0x100) as usize,
                _ if addr >= RAM + (1 << 20) - 500 => 5000 + (addr + 500 - RAM - (1 << 20)) as usize,
                _ if addr >= RAM + 0x8_0000 => (addr - RAM - 0x8_0000) as usize,
                _ => (addr - RAM - 0x3000) as usize,
            }
        };
        let piece = &all[at(d.addr)..at(d.addr) + d.len as usize];
        // Message-backed pieces too: their bytes pass through a local buffer.
        assert_eq!(d.crc32c, Some(crc32c::crc32c(piece)), "{d:?}");
        // The CRC32C command ran first: its five source pieces come first in the file.
        if d.list == 0 && pieces < 5 {
            pieces += 1;
            combined = crc32c::crc32c_combine(combined, crc32c::crc32c(piece), piece.len() as u64);
        } else {
            copied += 1;
        }
    }
    // The adjacent mappings split the third segment: five source pieces, read and written by
    // the COPY too (its message piece through a bounce buffer, the rest zipped to the dst).
    assert_eq!(pieces, 5);
    assert!(copied >= 10, "{copied} copy records");
    assert_eq!(fetches, 3, "src list (CRC32C and COPY) and dst list");
    assert_eq!(u64::from(combined), crc.result);
}

/// With data CRCs on, FILL records the CRC of the pattern bytes it wrote and COMPARE the CRCs
/// of the bytes it compared (read to the end of the piece even past a difference).
#[test]
fn fill_and_compare_records_carry_the_crc_of_their_bytes() {
    use phyr_trace::Payload;
    let (r, dir) = traced_rig("fill-crc");
    let mut fill = Command::new(
        Opcode::Fill,
        1,
        DmaRange::default(),
        r.list(RAM, &[iova(RAM + 0x1_0000, 10_000)]),
    );
    fill.pattern = 0x0102_0304_0506_0708;
    assert_eq!(r.run(&fill).status(), Some(Status::SUCCESS));
    let filled = r.mem.get(RAM + 0x1_0000, 10_000);
    let mut other = filled.clone();
    other[7000] ^= 0xFF;
    r.mem.put(RAM + 0x4_0000, &other);
    let a = r.list(RAM + 0x100, &[iova(RAM + 0x1_0000, 10_000)]);
    let b = r.list(RAM + 0x200, &[iova(RAM + 0x4_0000, 10_000)]);
    let cmp = r.run(&Command::new(Opcode::Compare, 2, a, b));
    assert_eq!((cmp.status(), cmp.result), (Some(Status::COMPARE_MISMATCH), 7000));
    let trace = finish_trace(r, &dir);
    // (list, CRC) of the data records in order: FILL's write, COMPARE's two reads.
    let crcs: Vec<(u8, Option<u32>)> = trace
        .records
        .iter()
        .filter_map(|(_, rec)| match &rec.payload {
            Payload::Dma(d) if d.list < 2 => Some((d.list, d.crc32c)),
            _ => None,
        })
        .collect();
    let want = vec![
        (1, Some(crc32c::crc32c(&filled))),
        (0, Some(crc32c::crc32c(&filled))),
        (1, Some(crc32c::crc32c(&other))),
    ];
    assert_eq!(crcs, want);
}

mod rules;
