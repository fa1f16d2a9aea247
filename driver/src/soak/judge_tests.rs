//! The judge's pure logic against completions a device could send: right ones, and every way
//! one can be wrong (a status, list, segment, address or `result` other than the plan allows,
//! codes no status has, indexes past the lists).

use dma_range::{AddrSpace, Completion, DmaRange, Opcode, Status, FAULT_LIST_DST, FAULT_LIST_SRC, NO_SEGMENT};

use super::*;
use crate::mapping::{self, BuiltList, Segment, Via};
use crate::queue::QueueMode;
use crate::soak::arena::{Arena, Home};
use crate::soak::plan::{det_fault, Allow, Bad, Gone, Seg};

const BAR: u64 = 0xf000_0000;

fn seg(space: AddrSpace, addr: u64, len: u32, at: Option<(usize, u64)>) -> Seg {
    Seg {
        range: DmaRange::segment(space, addr, len),
        at,
        bad: None,
        message: false,
    }
}

fn bad(space: AddrSpace, addr: u64, len: u32, b: Bad) -> Seg {
    Seg {
        bad: Some(b),
        ..seg(space, addr, len, None)
    }
}

fn plan(op: Opcode, src: Vec<Seg>, dst: Vec<Seg>) -> Plan {
    let det = det_fault(&src, &dst);
    Plan {
        ep: 0,
        q: 0,
        mode: QueueMode::Spin,
        op,
        pattern: 0x0807_0605_0403_0201,
        src,
        dst,
        src_list: None,
        dst_list: None,
        det,
        long: false,
        allow: Allow::default(),
        crc: None,
        cid: None,
    }
}

/// COPY of 0x300 bytes: two IOVA source segments (arena 0), one bus destination (arena 1).
fn copy() -> Plan {
    plan(
        Opcode::Copy,
        vec![
            seg(AddrSpace::Iova, 0x10000, 0x100, Some((0, 0))),
            seg(AddrSpace::Iova, 0x20000, 0x200, Some((0, 0x100))),
        ],
        vec![seg(AddrSpace::Bus, BAR, 0x300, Some((1, 0)))],
    )
}

fn done(status: Status, result: u64) -> Completion {
    Completion::ok(1, status, result)
}

fn fault(status: Status, list: u8, segment: u32, addr: u64, result: u64) -> Completion {
    Completion {
        fault_list: list,
        segment,
        fault_addr: addr,
        ..done(status, result)
    }
}

fn judged(p: &Plan, c: &Completion) -> std::result::Result<u64, String> {
    outcome(p, c, None, None)
}

fn wrong(p: &Plan, c: &Completion, words: &str) {
    match judged(p, c) {
        Ok(n) => panic!("{c:?} accepted ({n:#x} bytes), expected an error saying {words:?}"),
        Err(why) => assert!(why.contains(words), "{why:?} does not say {words:?}"),
    }
}

#[test]
fn success_with_the_exact_total_is_right() {
    assert_eq!(judged(&copy(), &done(Status::SUCCESS, 0x300)), Ok(0x300));
    let fill = plan(
        Opcode::Fill,
        vec![],
        vec![seg(AddrSpace::Iova, 0x10000, 0x40, Some((0, 0)))],
    );
    assert_eq!(judged(&fill, &done(Status::SUCCESS, 0x40)), Ok(0x40));
}

#[test]
fn success_with_a_short_long_or_huge_result_is_wrong() {
    for r in [0, 0x2ff, 0x301, u64::MAX] {
        wrong(
            &copy(),
            &done(Status::SUCCESS, r),
            "none of the outcomes allowed: success",
        );
    }
}

#[test]
fn success_with_fault_fields_set_is_wrong() {
    wrong(
        &copy(),
        &fault(Status::SUCCESS, FAULT_LIST_SRC, 0, 0, 0x300),
        "fault fields set",
    );
    let c = Completion {
        fault_addr: 0x10000,
        ..done(Status::SUCCESS, 0x300)
    };
    wrong(&copy(), &c, "fault fields set");
}

#[test]
fn a_status_code_no_status_has_is_named_and_wrong() {
    let c = Completion {
        status: 0xBEEF,
        ..done(Status::SUCCESS, 0x300)
    };
    wrong(&copy(), &c, "status 0xbeef");
}

#[test]
fn a_fault_nothing_caused_is_wrong() {
    wrong(
        &copy(),
        &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 1, 0x20000, 0x100),
        "none of the outcomes allowed",
    );
    wrong(&copy(), &done(Status::ABORTED_RESET, 0), "none of the outcomes allowed");
}

/// COPY whose source's second segment is unmapped on purpose (transfer offset 0x100).
fn copy_with_bad_source() -> Plan {
    plan(
        Opcode::Copy,
        vec![
            seg(AddrSpace::Iova, 0x10000, 0x100, Some((0, 0))),
            bad(AddrSpace::Iova, 0x8000, 0x80, Bad::Unmapped),
            seg(AddrSpace::Iova, 0x20000, 0x180, Some((0, 0x100))),
        ],
        vec![seg(AddrSpace::Bus, BAR, 0x300, Some((1, 0)))],
    )
}

#[test]
fn the_bad_segment_on_purpose_fails_exactly_there() {
    let p = copy_with_bad_source();
    assert_eq!(
        judged(&p, &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 1, 0x8000, 0x100)),
        Ok(0x100)
    );
}

#[test]
fn the_bad_segment_with_another_result_is_wrong() {
    let p = copy_with_bad_source();
    for r in [0, 0xff, 0x101, 0x300] {
        wrong(
            &p,
            &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 1, 0x8000, r),
            "IOMMU_FAULT: result",
        );
    }
}

#[test]
fn the_bad_segment_named_by_another_list_segment_address_or_status_is_wrong() {
    let p = copy_with_bad_source();
    for c in [
        fault(Status::IOMMU_FAULT, FAULT_LIST_DST, 1, 0x8000, 0x100),
        fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 0, 0x8000, 0x100),
        fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 1, 0x8001, 0x100),
        fault(Status::BUS_NO_TARGET, FAULT_LIST_SRC, 1, 0x8000, 0x100),
        fault(Status::IOMMU_FAULT, 0x7F, NO_SEGMENT, u64::MAX, u64::MAX),
        done(Status::SUCCESS, 0x300),
    ] {
        wrong(&p, &c, "IOMMU_FAULT at list 0 segment 1 addr 0x8000");
    }
}

#[test]
fn a_read_only_command_writes_nothing_even_at_its_fault() {
    let p = plan(
        Opcode::Crc32c,
        vec![
            seg(AddrSpace::Iova, 0x10000, 0x100, Some((0, 0))),
            bad(AddrSpace::Bus, 0x10_0000_0000, 0x10, Bad::NoTarget),
        ],
        vec![],
    );
    assert_eq!(
        judged(
            &p,
            &fault(Status::BUS_NO_TARGET, FAULT_LIST_SRC, 1, 0x10_0000_0000, 0x100)
        ),
        Ok(0)
    );
}

#[test]
fn an_abort_allowed_may_stop_anywhere_up_to_the_limit() {
    let mut p = copy();
    p.allow.abort = Some(Status::ABORTED_RESET);
    for r in [0, 1, 0x200, 0x300] {
        assert_eq!(judged(&p, &done(Status::ABORTED_RESET, r)), Ok(r));
    }
    wrong(&p, &done(Status::ABORTED_RESET, 0x301), "cannot get past 0x300");
    wrong(&p, &done(Status::ABORTED_RESET, u64::MAX), "cannot get past");
}

#[test]
fn an_abort_cannot_get_past_the_bad_segment() {
    let mut p = copy_with_bad_source();
    p.allow.abort = Some(Status::ABORTED_QUEUE_DISABLED);
    assert_eq!(judged(&p, &done(Status::ABORTED_QUEUE_DISABLED, 0x100)), Ok(0x100));
    wrong(
        &p,
        &done(Status::ABORTED_QUEUE_DISABLED, 0x101),
        "cannot get past 0x100",
    );
}

#[test]
fn an_abort_with_fault_fields_or_of_the_other_kind_is_wrong() {
    let mut p = copy();
    p.allow.abort = Some(Status::ABORTED_RESET);
    wrong(
        &p,
        &fault(Status::ABORTED_RESET, FAULT_LIST_SRC, 0, 0x10000, 0),
        "fault fields set",
    );
    wrong(
        &p,
        &done(Status::ABORTED_QUEUE_DISABLED, 0),
        "none of the outcomes allowed",
    );
}

/// `copy()` while the IOVA range 0x20000..0x21000 (its second source segment) is unmapped.
fn copy_unmapped(message: bool) -> Plan {
    let mut p = copy();
    p.allow.gone = vec![Gone {
        space: AddrSpace::Iova,
        lo: 0x20000,
        hi: 0x21000,
        statuses: vec![Status::IOMMU_FAULT, Status::DMA_MESSAGE_FAILED],
        message,
    }];
    p
}

#[test]
fn a_fault_where_memory_went_away_stops_at_that_byte() {
    let p = copy_unmapped(false);
    assert_eq!(
        judged(&p, &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 1, 0x20010, 0x110)),
        Ok(0x110)
    );
    for r in [0x10f, 0x111, 0] {
        wrong(
            &p,
            &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 1, 0x20010, r),
            "at transfer offset 0x110",
        );
    }
}

#[test]
fn memory_moved_by_messages_may_stop_up_to_64k_before_the_fault() {
    let mut p = copy_unmapped(true);
    p.src[1] = seg(AddrSpace::Iova, 0x20000, 0x1000, Some((0, 0x100)));
    p.dst = vec![seg(AddrSpace::Bus, BAR, 0x1100, Some((1, 0)))];
    let at = 0x100 + 0xff0;
    let c = |st, r| fault(st, FAULT_LIST_SRC, 1, 0x20ff0, r);
    for r in [0, 0x100, at] {
        assert_eq!(judged(&p, &c(Status::DMA_MESSAGE_FAILED, r)), Ok(r));
    }
    wrong(&p, &c(Status::DMA_MESSAGE_FAILED, at + 1), "but result");
}

#[test]
fn a_fault_outside_what_went_away_is_wrong() {
    let p = copy_unmapped(false);
    // Segment 0 is still mapped.
    wrong(
        &p,
        &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 0, 0x10010, 0x10),
        "where nothing went away",
    );
    // An address outside the segment it names.
    wrong(
        &p,
        &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 1, 0x10010, 0x10),
        "is not in segment 1",
    );
    wrong(
        &p,
        &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 1, u64::MAX, 0x10),
        "is not in segment 1",
    );
}

#[test]
fn a_fault_naming_a_list_or_segment_the_command_has_not_is_wrong() {
    let p = copy_unmapped(false);
    wrong(
        &p,
        &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 2, 0x20010, 0x110),
        "segment 2 of a 2-segment list",
    );
    wrong(
        &p,
        &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, NO_SEGMENT, 0x20010, 0x110),
        "of a 2-segment list",
    );
    wrong(
        &p,
        &fault(Status::IOMMU_FAULT, 0x7F, 1, 0x20010, 0x110),
        "names list 127",
    );
    // FILL has no source list.
    let mut fill = plan(
        Opcode::Fill,
        vec![],
        vec![seg(AddrSpace::Iova, 0x20000, 0x40, Some((0, 0)))],
    );
    fill.allow.gone = copy_unmapped(false).allow.gone;
    wrong(
        &fill,
        &fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, 0, 0x20010, 0x10),
        "names list 0",
    );
}

#[test]
fn a_bar_that_stops_decoding_fails_its_segment_at_the_entry_address() {
    let mut p = copy();
    p.allow.gone = vec![Gone {
        space: AddrSpace::Bus,
        lo: BAR,
        hi: BAR + (64 << 20),
        statuses: vec![Status::BUS_NO_TARGET],
        message: false,
    }];
    for r in [0, 0x123, 0x300] {
        assert_eq!(
            judged(&p, &fault(Status::BUS_NO_TARGET, FAULT_LIST_DST, 0, BAR, r)),
            Ok(r)
        );
    }
    wrong(
        &p,
        &fault(Status::BUS_NO_TARGET, FAULT_LIST_DST, 0, BAR + 0x10, 0x10),
        "not the entry's address",
    );
}

#[test]
fn a_list_block_that_went_away_fails_at_its_first_entry_with_nothing_moved() {
    let mut p = plan(
        Opcode::Crc32c,
        vec![
            seg(AddrSpace::Iova, 0x10000, 0x10, Some((0, 0))),
            seg(AddrSpace::Iova, 0x10010, 0x10, Some((0, 0x10))),
            seg(AddrSpace::Iova, 0x10020, 0x10, Some((0, 0x20))),
        ],
        vec![],
    );
    // Two entries a block: block 0 holds segment 0 and the chain, block 1 segments 1 and 2.
    let ranges: Vec<DmaRange> = p.src.iter().map(|s| s.range).collect();
    let l = mapping::layout(&ranges, 2, AddrSpace::Iova, 0x40000);
    assert_eq!(l.blocks.len(), 2);
    let block1 = l.blocks[1].1;
    p.src_list = Some(BuiltList {
        head: l.head,
        segments: ranges.iter().map(|&range| Segment { range, via: Via::Raw }).collect(),
        blocks: l.blocks.iter().map(|b| b.1).collect(),
        storage: None,
    });
    p.allow.gone = vec![Gone {
        space: AddrSpace::Iova,
        lo: block1.1,
        hi: block1.1 + u64::from(block1.2),
        statuses: vec![Status::IOMMU_FAULT],
        message: false,
    }];
    let c = |segment, result| fault(Status::IOMMU_FAULT, FAULT_LIST_SRC, segment, block1.1 + 8, result);
    assert_eq!(judged(&p, &c(1, 0)), Ok(0));
    wrong(&p, &c(0, 0), "expected segment 1 result 0");
    wrong(&p, &c(1, 0x10), "expected segment 1 result 0");
}

#[test]
fn compare_succeeds_or_mismatches_exactly_where_the_data_differ() {
    let p = plan(
        Opcode::Compare,
        vec![seg(AddrSpace::Iova, 0x10000, 0x100, Some((0, 0)))],
        vec![seg(AddrSpace::Iova, 0x20000, 0x100, Some((0, 0x100)))],
    );
    assert_eq!(outcome(&p, &done(Status::SUCCESS, 0x100), Some(0x100), None), Ok(0));
    assert_eq!(
        outcome(&p, &done(Status::COMPARE_MISMATCH, 0x80), Some(0x80), None),
        Ok(0)
    );
    let e = outcome(&p, &done(Status::COMPARE_MISMATCH, 0x81), Some(0x80), None).unwrap_err();
    assert!(e.contains("differ first at 0x80"), "{e}");
    // Equal data cannot mismatch; different data cannot succeed.
    assert!(outcome(&p, &done(Status::COMPARE_MISMATCH, 0x80), Some(0x100), None).is_err());
    assert!(outcome(&p, &done(Status::SUCCESS, 0x100), Some(0x80), None).is_err());
}

#[test]
fn crc32c_must_state_the_crc_of_the_data() {
    let p = plan(
        Opcode::Crc32c,
        vec![seg(AddrSpace::Iova, 0x10000, 0x100, Some((0, 0)))],
        vec![],
    );
    assert_eq!(outcome(&p, &done(Status::SUCCESS, 0xabcd), None, Some(0xabcd)), Ok(0));
    assert!(outcome(&p, &done(Status::SUCCESS, 0xabce), None, Some(0xabcd)).is_err());
    assert!(outcome(&p, &done(Status::SUCCESS, 0x1_0000_abcd), None, Some(0xabcd)).is_err());
    assert!(outcome(&p, &done(Status::SUCCESS, 0), None, None).is_err());
}

#[test]
fn the_limit_is_the_earlier_of_the_bad_segment_and_the_first_difference() {
    let p = copy_with_bad_source();
    assert_eq!(limit(&p, None), 0x100);
    assert_eq!(limit(&p, Some(0x40)), 0x40);
    assert_eq!(limit(&copy(), None), 0x300);
    assert_eq!(limit(&copy(), Some(u64::MAX)), 0x300);
}

#[test]
fn overlay_lays_only_the_bytes_inside_the_window() {
    let mut want = vec![0u8; 8];
    let pieces = vec![
        (2u64, vec![1u8, 2, 3]),
        (14, vec![9, 9, 9]),
        (6, vec![4, 5, 6, 7]),
        (0, vec![]),
    ];
    overlay(&mut want, 4, Some(&pieces));
    assert_eq!(want, [3, 0, 4, 5, 6, 7, 0, 0]);
    overlay(&mut want, 4, None);
    assert_eq!(want, [3, 0, 4, 5, 6, 7, 0, 0]);
}

fn arenas(src: Vec<u8>, dst_len: usize) -> Arenas {
    let bar = |offset, shadow: Vec<u8>| Arena {
        home: Home::Bar { ep: 0, offset },
        len: shadow.len() as u64,
        shadow,
    };
    Arenas::detached(vec![bar(0, src), bar(1 << 21, vec![0; dst_len])])
}

#[test]
fn destination_bytes_written_twice_hold_the_later_write() {
    let a = arenas((100..116).collect(), 12);
    // 16 bytes into two overlapping 8-byte destination segments: arena 1 bytes 0..8, then 4..12.
    let p = plan(
        Opcode::Copy,
        vec![seg(AddrSpace::Bus, BAR, 16, Some((0, 0)))],
        vec![
            seg(AddrSpace::Bus, BAR + (1 << 21), 8, Some((1, 0))),
            seg(AddrSpace::Bus, BAR + (1 << 21) + 4, 8, Some((1, 4))),
        ],
    );
    let mut got = vec![0u8; 12];
    overlay(&mut got, 0, painted(&p, &a, 16).get(&1));
    assert_eq!(got, [100, 101, 102, 103, 108, 109, 110, 111, 112, 113, 114, 115]);
    // After 10 bytes: the first segment whole, the second's first 2 bytes over it.
    let mut got = vec![0u8; 12];
    overlay(&mut got, 0, painted(&p, &a, 10).get(&1));
    assert_eq!(got, [100, 101, 102, 103, 108, 109, 106, 107, 0, 0, 0, 0]);
    assert!(painted(&p, &a, 0).is_empty());
}

#[test]
fn fill_paints_the_pattern_by_transfer_offset() {
    let a = arenas(vec![0; 4], 16);
    let p = plan(
        Opcode::Fill,
        vec![],
        vec![
            seg(AddrSpace::Bus, BAR + (1 << 21) + 8, 3, Some((1, 8))),
            seg(AddrSpace::Bus, BAR + (1 << 21), 5, Some((1, 0))),
        ],
    );
    let mut got = vec![0u8; 16];
    overlay(&mut got, 0, painted(&p, &a, 8).get(&1));
    assert_eq!(got, [4, 5, 6, 7, 8, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 0]);
}
