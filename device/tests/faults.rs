//! Every failure status through the real client, each test named after the hostile input it
//! rejects, asserting the status, the list, the segment index and the faulting address.

mod common;

use std::os::fd::AsFd;

use common::*;
use dma_range::{
    AddrSpace, Command, Completion, DmaRange, Opcode, Status, FAULT_LIST_DST, FAULT_LIST_NONE, FAULT_LIST_SRC,
    NO_SEGMENT,
};
use phyr_device::FleetConfig;

/// Runs one COPY on endpoint 0 of `r` with the given lists (written into guest RAM).
fn copy(r: &Rig, src: &[DmaRange], dst: &[DmaRange]) -> Completion {
    let e = &r.eps[0];
    let mut q = QueueDrv::new(e, 0, 4, 0);
    let s = e.list(lists(0), src);
    let d = e.list(lists(0x2_0000), dst);
    let c = q.run(e, &Command::new(Opcode::Copy, 0x5A5A, s, d));
    assert_eq!(c.command_id, 0x5A5A);
    c
}

fn fault(c: &Completion) -> (Option<Status>, u8, u32, u64) {
    (c.status(), c.fault_list, c.segment, c.fault_addr)
}

#[test]
fn unknown_opcode_completes_with_invalid_opcode() {
    let r = rig(1);
    let e = &r.eps[0];
    let mut q = QueueDrv::new(e, 0, 4, 0);
    let mut cmd = Command::new(Opcode::Nop, 3, DmaRange::default(), DmaRange::default());
    cmd.opcode = 0xEE;
    let c = q.run(e, &cmd);
    assert_eq!(
        (c.command_id, c.status(), c.fault_list, c.segment),
        (3, Some(Status::INVALID_OPCODE), FAULT_LIST_NONE, NO_SEGMENT)
    );
    assert_eq!(e.r64(dma_range::regs::REG_FAILED), 1);
}

#[test]
fn nonzero_reserved_field_completes_with_invalid_field() {
    let r = rig(1);
    let e = &r.eps[0];
    let mut q = QueueDrv::new(e, 0, 4, 0);
    let mut cmd = Command::new(Opcode::Nop, 3, DmaRange::default(), DmaRange::default());
    cmd.reserved1 = 0xFF;
    assert_eq!(q.run(e, &cmd).status(), Some(Status::INVALID_FIELD));
}

#[test]
fn unmapped_iova_in_second_source_segment_is_iommu_fault_at_first_unmapped_byte() {
    let r = rig(1);
    let end = RAM_IOVA + r.eps[0].ram_size;
    let c = copy(
        &r,
        &[iova(data(0), 4096), iova(end - 100, 200)],
        &[iova(data(0x1_0000), 4296)],
    );
    assert_eq!(fault(&c), (Some(Status::IOMMU_FAULT), FAULT_LIST_SRC, 1, end));
    assert_eq!(c.result, 4196, "bytes moved before the fault");
}

#[test]
fn write_through_read_only_mapping_is_write_read_only() {
    let r = rig(1);
    let e = &r.eps[0];
    e.client
        .dma_map(0x3_0000_0000, 0x1_0000, e.ram_fd.as_fd(), 0x80_0000, true, false)
        .unwrap();
    let c = copy(
        &r,
        &[iova(data(0), 8192)],
        &[iova(data(0x1_0000), 4096), iova(0x3_0000_0000 + 0x100, 4096)],
    );
    assert_eq!(
        fault(&c),
        (Some(Status::WRITE_READ_ONLY), FAULT_LIST_DST, 1, 0x3_0000_0100)
    );
    assert_eq!(c.result, 4096);
}

#[test]
fn dma_message_the_client_refuses_is_dma_message_failed() {
    let r = rig(1);
    let e = &r.eps[0];
    let _local = e.client.dma_map_local(0x4000_0000, 0x1_0000, true, true).unwrap();
    e.client.forget_local(0x4000_0000, 0x1_0000); // the client now answers EFAULT
    let c = copy(&r, &[iova(0x4000_0040, 64)], &[iova(data(0), 64)]);
    assert_eq!(
        fault(&c),
        (Some(Status::DMA_MESSAGE_FAILED), FAULT_LIST_SRC, 0, 0x4000_0040)
    );
}

#[test]
fn bus_address_nobody_decodes_is_bus_no_target() {
    let r = rig(1);
    let c = copy(&r, &[iova(data(0), 64)], &[iova(data(0x100), 32), bus(0x1234_5000, 32)]);
    assert_eq!(fault(&c), (Some(Status::BUS_NO_TARGET), FAULT_LIST_DST, 1, 0x1234_5000));
}

#[test]
fn bus_address_of_peer_behind_other_switch_is_bus_cross_switch() {
    let r = rig_with(
        FleetConfig {
            endpoints: 2,
            topology: vec![0, 1],
            bar2_size: 4 << 20,
            ..Default::default()
        },
        16 << 20,
    );
    let c = copy(&r, &[bus(bar2_bus(1) + 8, 64)], &[iova(data(0), 64)]);
    assert_eq!(
        fault(&c),
        (Some(Status::BUS_CROSS_SWITCH), FAULT_LIST_SRC, 0, bar2_bus(1) + 8)
    );
}

#[test]
fn bus_address_in_peer_registers_bar0_is_bus_target_abort() {
    let r = rig(2);
    let c = copy(&r, &[iova(data(0), 4)], &[bus(bar0_bus(1) + 0x40, 4)]);
    assert_eq!(
        fault(&c),
        (Some(Status::BUS_TARGET_ABORT), FAULT_LIST_DST, 0, bar0_bus(1) + 0x40)
    );
}

#[test]
fn segment_running_past_bar2_end_is_bus_past_bar_end_at_the_bar_end() {
    let r = rig(2);
    let end = bar2_bus(1) + (4 << 20);
    let c = copy(&r, &[iova(data(0), 8192)], &[bus(end - 4096, 8192)]);
    assert_eq!(fault(&c), (Some(Status::BUS_PAST_BAR_END), FAULT_LIST_DST, 0, end));
}

#[test]
fn bar_with_memory_decode_disabled_is_bus_no_target() {
    let r = rig(2);
    r.eps[1]
        .client
        .region_write(vfio_user::pci_region::CONFIG, 0x04, &0u16.to_le_bytes())
        .unwrap();
    let c = copy(&r, &[bus(bar2_bus(1), 64)], &[iova(data(0), 64)]);
    assert_eq!(fault(&c), (Some(Status::BUS_NO_TARGET), FAULT_LIST_SRC, 0, bar2_bus(1)));
}

#[test]
fn zero_length_entry_is_list_zero_length() {
    let r = rig(1);
    let c = copy(&r, &[iova(data(0), 64), iova(data(0x40), 0)], &[iova(data(0x100), 64)]);
    assert_eq!(
        fault(&c),
        (Some(Status::LIST_ZERO_LENGTH), FAULT_LIST_SRC, 1, data(0x40))
    );
}

#[test]
fn addr_plus_len_overflowing_is_list_addr_overflow() {
    let r = rig(1);
    let c = copy(&r, &[iova(data(0), 64)], &[iova(u64::MAX - 10, 64)]);
    assert_eq!(
        fault(&c),
        (Some(Status::LIST_ADDR_OVERFLOW), FAULT_LIST_DST, 0, u64::MAX - 10)
    );
}

#[test]
fn list_of_4097_entries_is_list_too_many_entries() {
    let r = rig(1);
    let segs: Vec<DmaRange> = (0..4097).map(|i| iova(data(i), 1)).collect();
    let c = copy(&r, &segs, &[iova(data(0x10_0000), 4097)]);
    assert_eq!(
        fault(&c),
        (Some(Status::LIST_TOO_MANY_ENTRIES), FAULT_LIST_SRC, 4096, data(4096))
    );
}

#[test]
fn chain_pointing_back_at_its_own_block_is_list_chain_cycle() {
    let r = rig(1);
    let c = copy(
        &r,
        &[iova(data(0), 16)],
        &[
            iova(data(0x100), 16),
            DmaRange::chain(AddrSpace::Iova, lists(0x2_0000), 32),
        ],
    );
    assert_eq!(
        fault(&c),
        (Some(Status::LIST_CHAIN_CYCLE), FAULT_LIST_DST, 1, lists(0x2_0000))
    );
}

#[test]
fn sixty_five_chain_links_is_list_chain_too_long() {
    let r = rig(1);
    let e = &r.eps[0];
    let mut q = QueueDrv::new(e, 0, 4, 0);
    // 66 blocks of [segment, chain]; the last one has only the segment.
    for i in 0..66u64 {
        let mut b = vec![iova(data(i), 1)];
        if i < 65 {
            b.push(DmaRange::chain(
                AddrSpace::Iova,
                lists(0x4_0000 + (i + 1) * 0x100),
                if i == 64 { 16 } else { 32 },
            ));
        }
        e.list(lists(0x4_0000 + i * 0x100), &b);
    }
    let src = Command::list_head(AddrSpace::Iova, lists(0x4_0000), 2);
    let dst = e.list(lists(0), &[iova(data(0x1000), 66)]);
    let c = q.run(e, &Command::new(Opcode::Copy, 1, src, dst));
    assert_eq!(
        (c.status(), c.fault_list, c.segment),
        (Some(Status::LIST_CHAIN_TOO_LONG), FAULT_LIST_SRC, 65)
    );
}

#[test]
fn undefined_entry_flag_is_list_bad_flags() {
    let r = rig(1);
    let bad = DmaRange {
        addr: data(0x40),
        len: 16,
        flags: 1 << 9,
    };
    let c = copy(&r, &[iova(data(0), 16), bad], &[iova(data(0x100), 32)]);
    assert_eq!(fault(&c), (Some(Status::LIST_BAD_FLAGS), FAULT_LIST_SRC, 1, data(0x40)));
}

#[test]
fn source_and_destination_totals_differing_is_list_length_mismatch() {
    let r = rig(1);
    let c = copy(&r, &[iova(data(0), 100)], &[iova(data(0x100), 99)]);
    assert_eq!(
        fault(&c),
        (Some(Status::LIST_LENGTH_MISMATCH), FAULT_LIST_NONE, NO_SEGMENT, 0)
    );
}

#[test]
fn list_head_of_24_bytes_is_list_bad_block() {
    let r = rig(1);
    let e = &r.eps[0];
    let mut q = QueueDrv::new(e, 0, 4, 0);
    e.list(lists(0), &[iova(data(0), 16), iova(data(0x10), 16)]);
    let src = DmaRange::segment(AddrSpace::Iova, lists(0), 24);
    let dst = e.list(lists(0x100), &[iova(data(0x100), 32)]);
    let c = q.run(e, &Command::new(Opcode::Copy, 1, src, dst));
    assert_eq!(fault(&c), (Some(Status::LIST_BAD_BLOCK), FAULT_LIST_SRC, 0, lists(0)));
}

#[test]
fn chain_entry_before_the_end_of_its_block_is_list_chain_not_last() {
    let r = rig(1);
    let c = copy(
        &r,
        &[DmaRange::chain(AddrSpace::Iova, lists(0x3_0000), 16), iova(data(0), 16)],
        &[iova(data(0x100), 16)],
    );
    assert_eq!(
        fault(&c),
        (Some(Status::LIST_CHAIN_NOT_LAST), FAULT_LIST_SRC, 0, lists(0x3_0000))
    );
}

#[test]
fn list_head_in_unmapped_iova_is_iommu_fault_on_the_descriptor_fetch() {
    let r = rig(1);
    let e = &r.eps[0];
    let mut q = QueueDrv::new(e, 0, 4, 0);
    let src = Command::list_head(AddrSpace::Iova, 0x7_0000_0000, 4);
    let dst = e.list(lists(0), &[iova(data(0), 64)]);
    let c = q.run(e, &Command::new(Opcode::Copy, 1, src, dst));
    assert_eq!(fault(&c), (Some(Status::IOMMU_FAULT), FAULT_LIST_SRC, 0, 0x7_0000_0000));
}

/// Maps `pages` 4 KiB pages of endpoint 0's guest RAM (from RAM offset `ram_off`) one DMA map
/// each at `iova`, as QEMU does behind an IOMMU: every page is a separate piece.
fn map_pages(e: &Ep, iova: u64, ram_off: u64, pages: u64) {
    for k in 0..pages {
        e.client
            .dma_map(iova + k * 4096, 4096, e.ram_fd.as_fd(), ram_off + k * 4096, true, true)
            .unwrap();
    }
}

const PAGES_IOVA: u64 = 0x3_0000_0000;

#[test]
fn bus_segment_running_from_a_bar2_into_the_adjacent_one_is_past_bar_end_and_writes_neither() {
    let r = rig(2);
    // Endpoint 1's BAR2 right after endpoint 0's (4 MiB each).
    let end0 = bar2_bus(0) + (4 << 20);
    r.eps[1].cfg_w32(0x18, end0 as u32);
    r.eps[1].cfg_w32(0x1C, (end0 >> 32) as u32);
    let (own, peer) = (r.eps[0].map_bar2(), r.eps[1].map_bar2());
    own.slice((4 << 20) - 4096, 4096).unwrap().fill(0x5A).unwrap();
    peer.slice(0, 4096).unwrap().fill(0x5A).unwrap();
    // A source of two 4 KiB IOVA pages: the second starts where the destination leaves BAR2.
    map_pages(&r.eps[0], PAGES_IOVA, DATA_AREA, 2);
    let c = copy(&r, &[iova(PAGES_IOVA, 8192)], &[bus(end0 - 4096, 8192)]);
    assert_eq!(fault(&c), (Some(Status::BUS_PAST_BAR_END), FAULT_LIST_DST, 0, end0));
    assert_eq!(c.result, 0);
    let mut b = vec![0u8; 4096];
    own.slice((4 << 20) - 4096, 4096).unwrap().copy_to(&mut b);
    assert_eq!(b, vec![0x5A; 4096], "own BAR2 written");
    peer.slice(0, 4096).unwrap().copy_to(&mut b);
    assert_eq!(b, vec![0x5A; 4096], "the adjacent BAR2 written");
}

#[test]
fn overlapping_copy_through_4k_page_mappings_is_list_overlap_and_moves_nothing() {
    let r = rig(1);
    let e = &r.eps[0];
    map_pages(e, PAGES_IOVA, DATA_AREA, 2);
    let before = pattern(8192, 4);
    e.put(data(0), &before);
    let mut q = QueueDrv::new(e, 0, 4, 0);
    // Upward and downward by 16 bytes, each crossing the page boundary at PAGES_IOVA + 4 KiB.
    for (s, d) in [(0xF00, 0xF10), (0xF10, 0xF00)] {
        let src = e.list(lists(0), &[iova(PAGES_IOVA + s, 0x400)]);
        let dst = e.list(lists(0x100), &[iova(PAGES_IOVA + d, 0x400)]);
        let c = q.run(e, &Command::new(Opcode::Copy, 1, src, dst));
        assert_eq!(
            fault(&c),
            (Some(Status::LIST_OVERLAP), FAULT_LIST_DST, 0, PAGES_IOVA + 0xF10)
        );
        assert_eq!(c.result, 0);
        assert_eq!(e.get(data(0), 8192), before, "an overlapping COPY moved data");
    }
}

#[test]
fn fill_carrying_a_leftover_source_head_is_invalid_field_and_writes_nothing() {
    let r = rig(1);
    let e = &r.eps[0];
    let mut q = QueueDrv::new(e, 0, 4, 0);
    e.put(data(0), &[0x5A; 64]);
    let mut cmd = Command::new(
        Opcode::Fill,
        4,
        e.list(lists(0), &[iova(data(0x100), 64)]),
        e.list(lists(0x100), &[iova(data(0), 64)]),
    );
    cmd.pattern = 0x1111_1111_1111_1111;
    let c = q.run(e, &cmd);
    assert_eq!(
        fault(&c),
        (Some(Status::INVALID_FIELD), FAULT_LIST_SRC, NO_SEGMENT, lists(0))
    );
    assert_eq!(e.get(data(0), 64), vec![0x5A; 64]);
}
