//! The dma_range list walker over arbitrary memory contents and chains.
//!
//! Input: a 16-byte list head, two limit bytes, then the bytes of two memories: the first
//! half is IOVA space at [`IOVA_BASE`], the second half bus space at [`BUS_BASE`]. Reads
//! outside them fail as the device's do. Checks: no panic, `walk` and `walk_into` (with a
//! dirty reused scratch) agree, and every accepted list keeps the walker's promises.
#![no_main]

use dma_range::{
    walk, walk_into, AddrSpace, DmaRange, ListLimits, ReadFault, Status, WalkedList, ENTRY_SIZE, RANGE_FLAGS_KNOWN,
};
use libfuzzer_sys::fuzz_target;

const IOVA_BASE: u64 = 0x1000;
const BUS_BASE: u64 = 0xf400_0000;

fn reader<'a>(iova: &'a [u8], bus: &'a [u8]) -> impl FnMut(AddrSpace, u64, &mut [u8]) -> Result<(), ReadFault> + 'a {
    move |space, addr, buf| {
        let (base, mem, status) = match space {
            AddrSpace::Iova => (IOVA_BASE, iova, Status::IOMMU_FAULT),
            AddrSpace::Bus => (BUS_BASE, bus, Status::BUS_NO_TARGET),
        };
        let fault = ReadFault { status, addr };
        let start = addr.checked_sub(base).ok_or(fault)?;
        let end = start.checked_add(buf.len() as u64).ok_or(fault)?;
        if end > mem.len() as u64 {
            return Err(fault);
        }
        buf.copy_from_slice(&mem[start as usize..end as usize]);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < ENTRY_SIZE + 2 {
        return;
    }
    let head = DmaRange::from_bytes(data[..ENTRY_SIZE].try_into().unwrap());
    let limits = ListLimits {
        max_entries: u32::from(data[ENTRY_SIZE]) * 4,
        max_chain: u32::from(data[ENTRY_SIZE + 1] % 80),
    };
    let mem = &data[ENTRY_SIZE + 2..];
    let (iova, bus) = mem.split_at(mem.len() / 2);

    let once = walk(head, limits, reader(iova, bus));
    // A scratch that held another list must not leak into this walk.
    let mut scratch = WalkedList {
        segments: vec![DmaRange::segment(AddrSpace::Bus, 1, 1); 3],
        total_len: 7,
        blocks: vec![(AddrSpace::Iova, 9, 16)],
    };
    let again = walk_into(head, limits, reader(iova, bus), &mut scratch);
    assert_eq!(once.as_ref().err(), again.as_ref().err(), "walk and walk_into disagree");

    if let Ok(list) = once {
        assert_eq!(list, scratch, "walk_into produced another list");
        assert!(list.segments.len() as u64 <= u64::from(limits.max_entries));
        assert!(list.blocks.len() as u64 <= u64::from(limits.max_chain) + 1);
        let mut total = 0u64;
        for s in &list.segments {
            assert!(s.len > 0 && !s.is_chain() && s.flags & !RANGE_FLAGS_KNOWN == 0);
            assert!(s.end().is_some());
            total += u64::from(s.len);
        }
        assert_eq!(total, list.total_len);
        for (i, b) in list.blocks.iter().enumerate() {
            assert!(b.2 > 0 && b.2 as usize % ENTRY_SIZE == 0);
            assert!(
                !list.blocks[..i].iter().any(|o| (o.0, o.1) == (b.0, b.1)),
                "a block was walked twice"
            );
        }
    }
});
