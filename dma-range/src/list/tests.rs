use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::entry::RANGE_CHAIN;

/// A toy address space for list blocks: (space, addr) -> bytes.
#[derive(Default)]
struct Mem(HashMap<(AddrSpace, u64), Vec<u8>>);

impl Mem {
    fn put(&mut self, space: AddrSpace, addr: u64, entries: &[DmaRange]) -> DmaRange {
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_bytes()).collect();
        let len = bytes.len() as u32;
        self.0.insert((space, addr), bytes);
        DmaRange::segment(space, addr, len)
    }

    fn walk(&self, head: DmaRange) -> Result<WalkedList, ListFault> {
        walk(
            head,
            ListLimits {
                max_entries: 64,
                max_chain: 4,
            },
            |space, addr, buf| match self.0.get(&(space, addr)) {
                Some(b) if b.len() >= buf.len() => {
                    buf.copy_from_slice(&b[..buf.len()]);
                    Ok(())
                }
                _ => Err(ReadFault {
                    status: Status::IOMMU_FAULT,
                    addr,
                }),
            },
        )
    }
}

fn seg(addr: u64, len: u32) -> DmaRange {
    DmaRange::segment(AddrSpace::Iova, addr, len)
}

#[test]
fn walks_a_chained_list_across_spaces() {
    let mut m = Mem::default();
    let tail = m.put(
        AddrSpace::Bus,
        0xfe00_0000,
        &[DmaRange::segment(AddrSpace::Bus, 0xfe00_1000, 100)],
    );
    let head = m.put(
        AddrSpace::Iova,
        0x1000,
        &[seg(0x10000, 4096), DmaRange::chain(AddrSpace::Bus, tail.addr, tail.len)],
    );
    let w = m.walk(head).unwrap();
    assert_eq!(w.segments.len(), 2);
    assert_eq!(w.total_len, 4196);
    assert_eq!(w.segments[1].space(), AddrSpace::Bus);
    assert_eq!(w.blocks.len(), 2);
}

#[test]
fn walk_into_replaces_what_the_scratch_held_and_reads_long_blocks() {
    let mut m = Mem::default();
    // 40 entries: longer than the stack buffer, read through the heap.
    let long: Vec<DmaRange> = (0..40).map(|i| seg(0x10_0000 * (i + 1), 512)).collect();
    let long_head = m.put(AddrSpace::Iova, 0x1000, &long);
    let short_head = m.put(AddrSpace::Iova, 0x9000, &[seg(0x7000, 3)]);
    let limits = ListLimits {
        max_entries: 64,
        max_chain: 4,
    };
    let read = |space, addr, buf: &mut [u8]| {
        let b = m.0.get(&(space, addr)).ok_or(ReadFault {
            status: Status::IOMMU_FAULT,
            addr,
        })?;
        buf.copy_from_slice(&b[..buf.len()]);
        Ok(())
    };
    let mut out = m.walk(short_head).unwrap();
    walk_into(long_head, limits, read, &mut out).unwrap();
    assert_eq!(out.segments, long);
    assert_eq!((out.total_len, out.blocks.len()), (40 * 512, 1));
    walk_into(short_head, limits, read, &mut out).unwrap();
    assert_eq!(out.segments, [seg(0x7000, 3)]);
    assert_eq!((out.total_len, out.blocks.len()), (3, 1));
    assert!(out.segments.capacity() >= 40, "the vectors are reused");
}

#[test]
fn zero_length_entry_is_rejected_with_its_index() {
    let mut m = Mem::default();
    let head = m.put(AddrSpace::Iova, 0x1000, &[seg(0x10000, 1), seg(0x20000, 0)]);
    let f = m.walk(head).unwrap_err();
    assert_eq!(
        f,
        ListFault {
            status: Status::LIST_ZERO_LENGTH,
            segment: 1,
            addr: 0x20000
        }
    );
}

#[test]
fn addr_plus_len_overflow_is_rejected() {
    let mut m = Mem::default();
    let head = m.put(AddrSpace::Iova, 0x1000, &[seg(u64::MAX - 10, 100)]);
    assert_eq!(m.walk(head).unwrap_err().status, Status::LIST_ADDR_OVERFLOW);
}

#[test]
fn undefined_flag_bits_are_rejected() {
    let mut m = Mem::default();
    let bad = DmaRange {
        addr: 0x5000,
        len: 8,
        flags: 1 << 7,
    };
    let head = m.put(AddrSpace::Iova, 0x1000, &[seg(0x10000, 1), bad]);
    let f = m.walk(head).unwrap_err();
    assert_eq!((f.status, f.segment, f.addr), (Status::LIST_BAD_FLAGS, 1, 0x5000));
}

#[test]
fn chain_cycle_is_rejected() {
    let mut m = Mem::default();
    let a = DmaRange::segment(AddrSpace::Iova, 0x1000, 32);
    let b = DmaRange::segment(AddrSpace::Iova, 0x2000, 32);
    m.put(
        AddrSpace::Iova,
        0x1000,
        &[seg(0x10000, 1), DmaRange::chain(AddrSpace::Iova, b.addr, b.len)],
    );
    m.put(
        AddrSpace::Iova,
        0x2000,
        &[seg(0x20000, 1), DmaRange::chain(AddrSpace::Iova, a.addr, a.len)],
    );
    let f = m.walk(a).unwrap_err();
    assert_eq!((f.status, f.segment, f.addr), (Status::LIST_CHAIN_CYCLE, 2, 0x1000));
}

#[test]
fn chain_to_itself_is_a_cycle() {
    let mut m = Mem::default();
    let head = m.put(AddrSpace::Iova, 0x1000, &[DmaRange::chain(AddrSpace::Iova, 0x1000, 16)]);
    assert_eq!(m.walk(head).unwrap_err().status, Status::LIST_CHAIN_CYCLE);
}

#[test]
fn chain_longer_than_max_chain_is_rejected() {
    let mut m = Mem::default();
    // 6 blocks, 5 chain links; the limit is 4.
    for i in 0..6u64 {
        let mut e = vec![seg(0x10000 * (i + 1), 1)];
        if i < 5 {
            e.push(DmaRange::chain(AddrSpace::Iova, 0x1000 * (i + 2), 32));
        }
        m.put(AddrSpace::Iova, 0x1000 * (i + 1), &e);
    }
    let head = DmaRange::segment(AddrSpace::Iova, 0x1000, 32);
    assert_eq!(m.walk(head).unwrap_err().status, Status::LIST_CHAIN_TOO_LONG);
}

#[test]
fn more_entries_than_max_entries_is_rejected() {
    let mut m = Mem::default();
    let entries: Vec<_> = (0..65).map(|i| seg(0x10000 + i * 16, 16)).collect();
    let head = m.put(AddrSpace::Iova, 0x1000, &entries);
    // 65 entries = 1040 bytes, more than a block may hold (64 + 1 slots) is fine here,
    // the entry count is what trips.
    let f = m.walk(head).unwrap_err();
    assert_eq!((f.status, f.segment), (Status::LIST_TOO_MANY_ENTRIES, 64));
}

#[test]
fn chain_entry_not_last_in_block_is_rejected() {
    let mut m = Mem::default();
    let head = m.put(
        AddrSpace::Iova,
        0x1000,
        &[DmaRange::chain(AddrSpace::Iova, 0x2000, 16), seg(0x10000, 1)],
    );
    assert_eq!(m.walk(head).unwrap_err().status, Status::LIST_CHAIN_NOT_LAST);
}

#[test]
fn head_block_of_odd_size_is_rejected() {
    let m = Mem::default();
    let f = m.walk(DmaRange::segment(AddrSpace::Iova, 0x1000, 17)).unwrap_err();
    assert_eq!((f.status, f.segment, f.addr), (Status::LIST_BAD_BLOCK, 0, 0x1000));
    assert_eq!(
        m.walk(DmaRange::segment(AddrSpace::Iova, 0x1000, 0))
            .unwrap_err()
            .status,
        Status::LIST_BAD_BLOCK
    );
}

#[test]
fn unreadable_block_reports_the_read_fault() {
    let m = Mem::default();
    let f = m.walk(DmaRange::segment(AddrSpace::Iova, 0xdead_0000, 16)).unwrap_err();
    assert_eq!((f.status, f.addr), (Status::IOMMU_FAULT, 0xdead_0000));
}

#[test]
fn split_range_caps_each_entry() {
    let v: Vec<_> = split_range(AddrSpace::Iova, 0x1000, 10_000, 4096).collect();
    assert_eq!(v.iter().map(|r| r.len).collect::<Vec<_>>(), vec![4096, 4096, 1808]);
    assert_eq!(v[2].addr, 0x1000 + 8192);
    let big: Vec<_> = split_range(AddrSpace::Bus, 0, 1 << 33, MAX_SEGMENT_LEN).collect();
    assert_eq!(big.len(), 3);
    assert!(big.iter().all(|r| r.space() == AddrSpace::Bus && r.len > 0));
}

#[test]
fn chain_flag_is_bit_1() {
    assert_eq!(RANGE_CHAIN, 2);
}

proptest! {
    /// Whatever a driver encodes, the device's walk gives back the same segments.
    #[test]
    fn encode_then_walk_round_trips(
        lens in proptest::collection::vec(1u32..100_000, 1..60),
        block_entries in 2usize..9,
        bus in any::<bool>(),
    ) {
        let segs: Vec<_> = lens.iter().enumerate()
            .map(|(i, &l)| seg(0x100_0000 * (i as u64 + 1), l)).collect();
        let space = if bus { AddrSpace::Bus } else { AddrSpace::Iova };
        let place = |i: usize| (space, 0x1000 * (i as u64 + 1));
        let (head, blocks) = encode_chained(&segs, block_entries, place);
        prop_assert_eq!(blocks.len(), blocks_needed(segs.len(), block_entries));
        let mut m = Mem::default();
        for (i, b) in blocks.iter().enumerate() {
            m.0.insert(place(i), b.clone());
        }
        let limits = ListLimits { max_entries: 64, max_chain: 64 };
        let w = walk(head, limits, |s, a, buf| {
            let b = m.0.get(&(s, a)).ok_or(ReadFault { status: Status::IOMMU_FAULT, addr: a })?;
            buf.copy_from_slice(&b[..buf.len()]);
            Ok(())
        }).unwrap();
        prop_assert_eq!(w.segments, segs);
        prop_assert_eq!(w.total_len, lens.iter().map(|&l| u64::from(l)).sum::<u64>());
    }

    /// Arbitrary bytes as a list block never panic the walk.
    #[test]
    fn walking_garbage_never_panics_and_a_used_scratch_walks_the_same(
        bytes in proptest::collection::vec(any::<u8>(), 16..512),
    ) {
        let n = bytes.len() / 16 * 16;
        let block = bytes[..n].to_vec();
        let head = DmaRange::segment(AddrSpace::Iova, 0x1000, n as u32);
        let read = |_, a, buf: &mut [u8]| {
            if a == 0x1000 { buf.copy_from_slice(&block[..buf.len()]); Ok(()) }
            else { Err(ReadFault { status: Status::IOMMU_FAULT, addr: a }) }
        };
        let fresh = walk(head, ListLimits::default(), read);
        // A scratch left by another walk: were its blocks kept, the head would look visited.
        let mut used = WalkedList {
            segments: vec![seg(0x5000, 1); 40],
            total_len: 40,
            blocks: vec![(AddrSpace::Iova, 0x1000, 16)],
        };
        match (fresh, walk_into(head, ListLimits::default(), read, &mut used)) {
            (Ok(w), Ok(())) => prop_assert_eq!(w, used),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "walk {:?} but walk_into {:?}", a, b),
        }
    }
}
