//! The rules ABI.md states, one test per hostile input: bus segments bounded by the BAR that
//! decodes their start (checked whole, so never written into a neighbour), unused list heads,
//! overlapping COPY, the fault fields of LIST_LENGTH_MISMATCH and of a list block that fails
//! part way, and what `result` says after a fault on each memory path.

use super::*;
use dma_range::{FAULT_LIST_NONE, NO_SEGMENT};

const MIB: u64 = 1 << 20;

/// Moves endpoint 1's BAR2 right after endpoint 0's (both behind switch 0).
fn adjacent(r: &Rig, bar2_size: u64) {
    r.fabric.ports()[1].set_decode(BarDecode {
        memory_enabled: true,
        bar0: 0xFE01_0000,
        bar2: BAR2_0 + bar2_size,
    });
}

/// A rig whose two endpoints have 8 MiB BAR2s, back to back, the second the last BAR of all:
/// a segment can run a whole 4 MiB step to its BAR's end before it reaches the neighbour.
fn big_rig() -> Rig {
    let r = rig();
    let ports = (0..2u16)
        .map(|i| {
            let p = Port::new(i, 0, PeerMem::new("bar2", 8 * MIB).unwrap());
            p.set_decode(BarDecode {
                memory_enabled: true,
                bar0: 0xFE00_0000 + u64::from(i) * 0x10000,
                bar2: BAR2_0 + u64::from(i) * 8 * MIB,
            });
            Arc::new(p)
        })
        .collect();
    Rig {
        fabric: Fabric::new(ports),
        ..r
    }
}

fn fields(c: &Completion) -> (Option<Status>, u8, u32, u64, u64) {
    (c.status(), c.fault_list, c.segment, c.fault_addr, c.result)
}

fn fill_cmd(dst: DmaRange) -> Command {
    let mut c = Command::new(Opcode::Fill, 1, DmaRange::default(), dst);
    c.pattern = 0xA1A2_A3A4_A5A6_A7A8;
    c
}

#[test]
fn copy_into_a_bus_segment_running_past_its_bar_into_the_adjacent_bar_writes_neither() {
    let r = rig();
    adjacent(&r, MIB);
    // The source spans two IOVA mappings: two source pieces, split exactly where the
    // destination segment leaves endpoint 0's BAR2.
    r.mem.put(RAM + MIB - 4096, &pattern(8192, 3));
    r.peer(0, MIB - 4096, &[0x5A; 4096]);
    r.peer(1, 0, &[0x5A; 4096]);
    let src = r.list(RAM, &[iova(RAM + MIB - 4096, 8192)]);
    let dst = r.list(RAM + 0x100, &[bus(BAR2_0 + MIB - 4096, 8192)]);
    let c = r.run(&Command::new(Opcode::Copy, 1, src, dst));
    assert_eq!(
        fields(&c),
        (Some(Status::BUS_PAST_BAR_END), FAULT_LIST_DST, 0, BAR2_0 + MIB, 0)
    );
    assert_eq!(r.peer_get(0, MIB - 4096, 4096), vec![0x5A; 4096], "own BAR2 written");
    assert_eq!(r.peer_get(1, 0, 4096), vec![0x5A; 4096], "the neighbour's BAR2 written");
    // After a good first segment: result counts it, the bad segment moves nothing.
    let dst = r.list(RAM + 0x200, &[iova(RAM + 0x9000, 100), bus(BAR2_0 + MIB - 4096, 8092)]);
    let c = r.run(&Command::new(Opcode::Copy, 2, src, dst));
    assert_eq!(
        fields(&c),
        (Some(Status::BUS_PAST_BAR_END), FAULT_LIST_DST, 1, BAR2_0 + MIB, 100)
    );
    assert_eq!(r.peer_get(1, 0, 4096), vec![0x5A; 4096]);
}

#[test]
fn a_source_bus_segment_running_into_the_adjacent_bar_is_past_bar_end() {
    let r = rig();
    adjacent(&r, MIB);
    let src = r.list(RAM, &[bus(BAR2_0 + MIB - 16, 32)]);
    let dst = r.list(RAM + 0x100, &[iova(RAM + 0x9000, 32)]);
    r.mem.put(RAM + 0x9000, &[0x5A; 32]);
    let c = r.run(&Command::new(Opcode::Copy, 1, src, dst));
    assert_eq!(
        fields(&c),
        (Some(Status::BUS_PAST_BAR_END), FAULT_LIST_SRC, 0, BAR2_0 + MIB, 0)
    );
    assert_eq!(r.mem.get(RAM + 0x9000, 32), vec![0x5A; 32]);
}

#[test]
fn fill_and_crc_of_a_segment_longer_than_a_step_past_its_bar_into_the_adjacent_bar_fail_whole() {
    let r = big_rig();
    let (end0, seg) = (BAR2_0 + 8 * MIB, bus(BAR2_0 + 4 * MIB, (4 * MIB + 4096) as u32));
    r.peer(1, 0, &[0x5A; 4096]);
    let c = r.run(&fill_cmd(r.list(RAM, &[seg])));
    assert_eq!(fields(&c), (Some(Status::BUS_PAST_BAR_END), FAULT_LIST_DST, 0, end0, 0));
    assert_eq!(r.peer_get(0, 4 * MIB, 16), vec![0; 16], "the first 4 MiB step ran");
    assert_eq!(r.peer_get(0, 8 * MIB - 16, 16), vec![0; 16]);
    assert_eq!(r.peer_get(1, 0, 4096), vec![0x5A; 4096], "the neighbour's BAR2 written");
    let c = r.run(&Command::new(
        Opcode::Crc32c,
        2,
        r.list(RAM, &[seg]),
        DmaRange::default(),
    ));
    assert_eq!(fields(&c), (Some(Status::BUS_PAST_BAR_END), FAULT_LIST_SRC, 0, end0, 0));
}

#[test]
fn a_segment_running_past_the_last_bar_is_past_bar_end_not_no_target() {
    let r = big_rig();
    let end1 = BAR2_0 + 16 * MIB;
    let seg = bus(end1 - 4 * MIB, (4 * MIB + 64) as u32);
    let c = r.run(&fill_cmd(r.list(RAM, &[seg])));
    assert_eq!(fields(&c), (Some(Status::BUS_PAST_BAR_END), FAULT_LIST_DST, 0, end1, 0));
    assert_eq!(r.peer_get(1, 4 * MIB, 16), vec![0; 16]);
}

#[test]
fn a_list_block_at_a_bus_address_past_its_bar_end_is_past_bar_end() {
    let r = rig();
    adjacent(&r, MIB);
    let head = Command::list_head(AddrSpace::Bus, BAR2_0 + MIB - 16, 2);
    let c = r.run(&Command::new(Opcode::Crc32c, 1, head, DmaRange::default()));
    assert_eq!(
        fields(&c),
        (Some(Status::BUS_PAST_BAR_END), FAULT_LIST_SRC, 0, BAR2_0 + MIB, 0)
    );
}

#[test]
fn unused_list_heads_that_are_not_all_zero_are_invalid_field() {
    let r = rig();
    r.mem.put(RAM + 0x9000, &[0x5A; 64]);
    let dst = r.list(RAM + 0x100, &[iova(RAM + 0x9000, 64)]);
    // FILL carrying a leftover source head: nothing is written.
    let mut fill = fill_cmd(dst);
    fill.src = r.list(RAM, &[iova(RAM + 0x1000, 64)]);
    assert_eq!(
        fields(&r.run(&fill)),
        (Some(Status::INVALID_FIELD), FAULT_LIST_SRC, NO_SEGMENT, RAM, 0)
    );
    assert_eq!(r.mem.get(RAM + 0x9000, 64), vec![0x5A; 64]);
    // NOP with a destination head at unmapped memory.
    let nop = Command::new(
        Opcode::Nop,
        2,
        DmaRange::default(),
        Command::list_head(AddrSpace::Iova, 0x7000_0000, 1),
    );
    assert_eq!(
        fields(&r.run(&nop)),
        (Some(Status::INVALID_FIELD), FAULT_LIST_DST, NO_SEGMENT, 0x7000_0000, 0)
    );
    // CRC32C with a destination head; a head with only a flag set is not all zero either.
    let src = r.list(RAM, &[iova(RAM + 0x1000, 64)]);
    let flag_only = DmaRange {
        flags: dma_range::RANGE_BUS_ADDR,
        ..DmaRange::default()
    };
    for head in [dst, flag_only] {
        let c = r.run(&Command::new(Opcode::Crc32c, 3, src, head));
        assert_eq!(
            (c.status(), c.fault_list),
            (Some(Status::INVALID_FIELD), FAULT_LIST_DST)
        );
    }
}

#[test]
fn overlapping_copy_across_a_4k_page_is_list_overlap_and_moves_nothing() {
    let r = rig();
    let before = pattern(0x600, 5);
    r.mem.put(RAM + 0x1E00, &before);
    // Upward (destination above source) and downward, both crossing the page at RAM + 0x2000.
    for (s, d, first) in [
        (RAM + 0x1F00, RAM + 0x1F10, RAM + 0x1F10),
        (RAM + 0x1F10, RAM + 0x1F00, RAM + 0x1F10),
        (RAM + 0x1F00, RAM + 0x1F00, RAM + 0x1F00),
    ] {
        let src = r.list(RAM, &[iova(s, 0x400)]);
        let dst = r.list(RAM + 0x100, &[iova(RAM + 0x9000, 8), iova(d, 0x3F8)]);
        let c = r.run(&Command::new(Opcode::Copy, 1, src, dst));
        assert_eq!(fields(&c), (Some(Status::LIST_OVERLAP), FAULT_LIST_DST, 1, first, 0));
        assert_eq!(r.mem.get(RAM + 0x1E00, 0x600), before, "an overlapping COPY moved data");
    }
    // Through bus addresses in one BAR as well.
    let src = r.list(RAM, &[bus(BAR2_0 + 0x100, 64)]);
    let dst = r.list(RAM + 0x100, &[bus(BAR2_0 + 0x120, 64)]);
    let c = r.run(&Command::new(Opcode::Copy, 2, src, dst));
    assert_eq!(
        fields(&c),
        (Some(Status::LIST_OVERLAP), FAULT_LIST_DST, 0, BAR2_0 + 0x120, 0)
    );
    // Touching is not overlapping; COMPARE may read one range twice.
    let src = r.list(RAM, &[iova(RAM + 0x1F00, 0x100)]);
    let dst = r.list(RAM + 0x100, &[iova(RAM + 0x2000, 0x100)]);
    assert_eq!(
        r.run(&Command::new(Opcode::Copy, 3, src, dst)).status(),
        Some(Status::SUCCESS)
    );
    let c = r.run(&Command::new(Opcode::Compare, 4, src, src));
    assert_eq!((c.status(), c.result), (Some(Status::SUCCESS), 0x100));
}

#[test]
fn length_mismatch_names_no_list_segment_or_address() {
    let r = rig();
    let src = r.list(RAM, &[iova(RAM + 0x1000, 16)]);
    let dst = r.list(RAM + 0x100, &[iova(RAM + 0x2000, 17)]);
    for op in [Opcode::Copy, Opcode::Compare] {
        let c = r.run(&Command::new(op, 1, src, dst));
        assert_eq!(
            fields(&c),
            (Some(Status::LIST_LENGTH_MISMATCH), FAULT_LIST_NONE, NO_SEGMENT, 0, 0)
        );
    }
}

#[test]
fn a_list_block_that_fails_part_way_reports_its_first_unreadable_byte() {
    let r = rig();
    let end = RAM + 2 * MIB;
    // Two entries: the first readable, the second past the end of the mapping.
    r.mem.put(end - 16, &iova(RAM + 0x1000, 16).to_bytes());
    let head = Command::list_head(AddrSpace::Iova, end - 16, 2);
    let c = r.run(&Command::new(Opcode::Crc32c, 1, head, DmaRange::default()));
    assert_eq!(fields(&c), (Some(Status::IOMMU_FAULT), FAULT_LIST_SRC, 0, end, 0));
    // A chained block: segment is the index its first entry would have.
    let first = r.list(
        RAM,
        &[iova(RAM + 0x1000, 16), DmaRange::chain(AddrSpace::Iova, end - 16, 32)],
    );
    let c = r.run(&Command::new(Opcode::Crc32c, 2, first, DmaRange::default()));
    assert_eq!(fields(&c), (Some(Status::IOMMU_FAULT), FAULT_LIST_SRC, 1, end, 0));
}

#[test]
fn result_after_a_fault_on_fd_backed_iova_counts_every_byte_before_it() {
    let r = rig();
    let end = RAM + 2 * MIB;
    let c = r.run(&fill_cmd(r.list(RAM, &[iova(RAM + 0x1000, 20), iova(end - 48, 64)])));
    assert_eq!(fields(&c), (Some(Status::IOMMU_FAULT), FAULT_LIST_DST, 1, end, 68));
    // The pattern continues across segments: transfer offset 20 holds pattern byte 4.
    assert_eq!(r.mem.get(end - 48, 4), [0xA4, 0xA3, 0xA2, 0xA1]);
    let c = r.run(&Command::new(
        Opcode::Crc32c,
        2,
        r.list(RAM, &[iova(end - 48, 64)]),
        DmaRange::default(),
    ));
    assert_eq!(fields(&c), (Some(Status::IOMMU_FAULT), FAULT_LIST_SRC, 0, end, 48));
}

#[test]
fn result_after_a_fault_in_message_memory_drops_the_bounce_chunk_in_flight() {
    let r = rig();
    let msg_end = MSG + (64 << 10);
    let data = pattern(64 << 10, 8);
    r.mem.put(MSG, &data);
    r.mem.put(RAM + 0x1_0000, &vec![0x5A; (64 << 10) + 100]);
    // 64 KiB + 100 bytes from message memory that ends after 64 KiB: the first 64 KiB chunk
    // is written, the second (all 100 bytes past the end) faults.
    let src = r.list(RAM, &[iova(MSG, (64 << 10) + 100)]);
    let dst = r.list(RAM + 0x100, &[iova(RAM + 0x1_0000, (64 << 10) + 100)]);
    let c = r.run(&Command::new(Opcode::Copy, 1, src, dst));
    assert_eq!(
        fields(&c),
        (Some(Status::IOMMU_FAULT), FAULT_LIST_SRC, 0, msg_end, 64 << 10)
    );
    assert_eq!(r.mem.get(RAM + 0x1_0000, 64 << 10), data);
    assert_eq!(r.mem.get(RAM + 0x1_0000 + (64 << 10), 100), vec![0x5A; 100]);
    // A read of 100 readable bytes then the fault: nothing of the chunk moves.
    let src = r.list(RAM, &[iova(msg_end - 100, 300)]);
    let dst = r.list(RAM + 0x100, &[iova(RAM + 0x1_0000, 300)]);
    let c = r.run(&Command::new(Opcode::Copy, 2, src, dst));
    assert_eq!(fields(&c), (Some(Status::IOMMU_FAULT), FAULT_LIST_SRC, 0, msg_end, 0));
    assert_eq!(r.mem.get(RAM + 0x1_0000, 100), data[..100]);
    // CRC32C reads message memory in 64 KiB messages: the whole ones before the fault count.
    let src = r.list(RAM, &[iova(MSG, (64 << 10) + 100)]);
    let c = r.run(&Command::new(Opcode::Crc32c, 3, src, DmaRange::default()));
    assert_eq!(
        fields(&c),
        (Some(Status::IOMMU_FAULT), FAULT_LIST_SRC, 0, msg_end, 64 << 10)
    );
    // FILL generates its bytes, so it writes message memory up to the fault.
    let c = r.run(&fill_cmd(r.list(RAM, &[iova(msg_end - 100, 300)])));
    assert_eq!(fields(&c), (Some(Status::IOMMU_FAULT), FAULT_LIST_DST, 0, msg_end, 100));
}
