//! The rules of docs/ABI.md a driver author can trip over, end to end through the guest's
//! IOMMU (which maps host buffers page by page): a bus segment is bounded by the BAR that
//! decodes its start and checked whole (nothing lands in a neighbouring BAR), unused list
//! heads must be all zero, COPY's source and destination may not overlap, and a list block
//! that fails part way reports its first unreadable byte.

use anyhow::{ensure, Result};
use dma_range::{AddrSpace, Command, DmaRange, Opcode, Status, FAULT_LIST_DST, FAULT_LIST_SRC, NO_SEGMENT};
use phyr_kernels::crc32c;

use super::case::{Case, Outcome};
use super::check::{self, expect_fault, expect_success, Fault, Opts};
use super::tap::Tap;
use crate::bench::Bench;
use crate::data;
use crate::exec::Job;
use crate::hostmem::HostMem;
use crate::mapping::{self, BuiltList, ListAt, Loc, PhysRange, Segment, Via};
use crate::vfio::DmaPerm;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "rule-bus-segment-checked-whole",
            about: "COPY into a bus segment running past its BAR2 (into the adjacent BAR2 if any): BUS_PAST_BAR_END, nothing written",
            run: bus_segment_whole,
        },
        Case {
            name: "rule-unused-list-head",
            about: "FILL with a leftover src head, NOP with a dst head at unmapped memory: INVALID_FIELD, nothing written",
            run: unused_head,
        },
        Case {
            name: "rule-overlapping-copy",
            about: "COPY whose src and dst overlap across an IOMMU page, up and down: LIST_OVERLAP, nothing moved",
            run: overlapping_copy,
        },
        Case {
            name: "rule-list-block-part-way",
            about: "a list block running from a mapped page into unmapped IOVA: IOMMU_FAULT at its first unreadable byte",
            run: block_part_way,
        },
    ]
}

fn host(s: &mut Bench, len: u64) -> Result<HostMem> {
    Ok(s.alloc_host(len, DmaPerm::ReadWrite)?)
}

/// A list of raw segments (exactly as given) in host memory.
fn raw_list(s: &mut Bench, segs: &[DmaRange]) -> Result<BuiltList> {
    let segs = segs.iter().map(|&range| Segment { range, via: Via::Raw }).collect();
    Ok(mapping::build_list(s, 0, segs, 16, ListAt::Host)?)
}

fn list_for(s: &mut Bench, r: &[PhysRange]) -> Result<BuiltList> {
    check::list_for(s, r, &Opts::default(), ListAt::Host)
}

fn bus_segment_whole(s: &mut Bench) -> Result<Outcome> {
    // Endpoints endpoint 0 reaches by bus address: its own and those behind its switch.
    let sw = s.ep(0)?.id.switch_id;
    let reach: Vec<(usize, u64, u64)> = s
        .endpoints
        .iter()
        .filter(|e| e.id.switch_id == sw)
        .map(|e| (e.index, e.bar2_bus(), e.bar2_len()))
        .collect();
    // Prefer a BAR2 whose end is where another endpoint's BAR2 starts.
    let next = |end: u64| s.endpoints.iter().find(|e| e.bar2_bus() == end).map(|e| e.index);
    let &(owner, base, len) = reach
        .iter()
        .find(|&&(_, b, l)| next(b + l).is_some())
        .or(reach.first())
        .ok_or_else(|| anyhow::anyhow!("no endpoint reachable by bus address"))?;
    let end = base + len;
    let neighbour = next(end);
    Tap::diag(&format!(
        "segment from ep{owner}'s BAR2 end {end:#x} - 4 KiB, 8 KiB long; {}",
        neighbour.map_or("no BAR2 follows".to_string(), |n| format!("ep{n}'s BAR2 follows"))
    ));
    let marker = vec![0x5A; 4096];
    data::write(
        s,
        Loc::Bar {
            ep: owner,
            offset: len - 4096,
        },
        &marker,
    )?;
    if let Some(n) = neighbour {
        data::write(s, Loc::Bar { ep: n, offset: 0 }, &marker)?;
    }
    // The source is two IOMMU pages: two pieces, the second starting where the segment
    // leaves the BAR.
    let a = host(s, 8192)?;
    data::write(s, Loc::Host { mem: &a, offset: 0 }, &data::pattern(41, 8192))?;
    let src = list_for(s, &[PhysRange::host(&a, 0, 8192)])?;
    let dst = raw_list(s, &[DmaRange::segment(AddrSpace::Bus, end - 4096, 8192)])?;
    let c = Job::new(0, Opcode::Copy, Some(&src), Some(&dst)).run(s)?;
    expect_fault(
        &c,
        Fault {
            status: Status::BUS_PAST_BAR_END,
            list: FAULT_LIST_DST,
            segment: 0,
            addr: end,
            result: Some(0),
        },
    )?;
    ensure!(
        data::read(
            s,
            Loc::Bar {
                ep: owner,
                offset: len - 4096
            },
            4096
        )? == marker,
        "the last 4 KiB of ep{owner}'s BAR2 were written by a rejected segment"
    );
    if let Some(n) = neighbour {
        ensure!(
            data::read(s, Loc::Bar { ep: n, offset: 0 }, 4096)? == marker,
            "ep{n}'s BAR2 was written through ep{owner}'s"
        );
    }
    Ok(Outcome::Pass)
}

fn unused_head(s: &mut Bench) -> Result<Outcome> {
    let (a, b) = (host(s, 4096)?, host(s, 4096)?);
    data::write(s, Loc::Host { mem: &b, offset: 0 }, &[0x5A; 256])?;
    let src = list_for(s, &[PhysRange::host(&a, 0, 256)])?;
    let dst = list_for(s, &[PhysRange::host(&b, 0, 256)])?;
    let mut fill = Job::new(0, Opcode::Fill, Some(&src), Some(&dst));
    fill.cmd.pattern = 0x1111_2222_3333_4444;
    let c = fill.run(s)?;
    expect_fault(
        &c,
        Fault {
            status: Status::INVALID_FIELD,
            list: FAULT_LIST_SRC,
            segment: NO_SEGMENT,
            addr: src.head.addr,
            result: Some(0),
        },
    )?;
    ensure!(
        data::read(s, Loc::Host { mem: &b, offset: 0 }, 256)? == vec![0x5A; 256],
        "a FILL rejected for its source head wrote its destination"
    );
    let x = s.unmapped_iova();
    let mut nop = Job::new(0, Opcode::Nop, None, None);
    nop.cmd.dst = Command::list_head(AddrSpace::Iova, x, 1);
    nop.extra_lists.push((AddrSpace::Iova, x, 16));
    let c = nop.run(s)?;
    expect_fault(
        &c,
        Fault {
            status: Status::INVALID_FIELD,
            list: FAULT_LIST_DST,
            segment: NO_SEGMENT,
            addr: x,
            result: Some(0),
        },
    )?;
    // The same FILL without the leftover head runs.
    let mut fill = Job::new(0, Opcode::Fill, None, Some(&dst));
    fill.cmd.pattern = 0x1111_2222_3333_4444;
    let want = data::fill_bytes(fill.cmd.pattern, 256);
    let c = fill.crc(crc32c::crc32c(&want)).run(s)?;
    expect_success(&c, 256)?;
    ensure!(data::read(s, Loc::Host { mem: &b, offset: 0 }, 256)? == want);
    Ok(Outcome::Pass)
}

fn overlapping_copy(s: &mut Bench) -> Result<Outcome> {
    let a = host(s, 8192)?;
    let before = data::pattern(42, 8192);
    data::write(s, Loc::Host { mem: &a, offset: 0 }, &before)?;
    // 1 KiB moved 16 bytes up, then 16 bytes down, across the page boundary at 4 KiB.
    for (so, d) in [(0xF00u64, 0xF10u64), (0xF10, 0xF00)] {
        let src = raw_list(s, &[DmaRange::segment(AddrSpace::Iova, a.iova + so, 0x400)])?;
        let dst = raw_list(s, &[DmaRange::segment(AddrSpace::Iova, a.iova + d, 0x400)])?;
        let c = Job::new(0, Opcode::Copy, Some(&src), Some(&dst)).run(s)?;
        expect_fault(
            &c,
            Fault {
                status: Status::LIST_OVERLAP,
                list: FAULT_LIST_DST,
                segment: 0,
                addr: a.iova + 0xF10,
                result: Some(0),
            },
        )?;
        ensure!(
            data::read(s, Loc::Host { mem: &a, offset: 0 }, 8192)? == before,
            "an overlapping COPY ({so:#x} -> {d:#x}) moved data"
        );
    }
    Ok(Outcome::Pass)
}

fn block_part_way(s: &mut Bench) -> Result<Outcome> {
    // One page with a guard after it: a 2-entry block in its last 16 bytes.
    let b = host(s, 4096)?;
    let at = b.iova + 4096 - 16;
    let entry = DmaRange::segment(AddrSpace::Iova, b.iova, 16);
    data::write(
        s,
        Loc::Host {
            mem: &b,
            offset: 4096 - 16,
        },
        &entry.to_bytes(),
    )?;
    let mut job = Job::new(0, Opcode::Crc32c, None, None);
    job.cmd.src = Command::list_head(AddrSpace::Iova, at, 2);
    job.extra_lists.push((AddrSpace::Iova, at, 32));
    let c = job.run(s)?;
    expect_fault(
        &c,
        Fault {
            status: Status::IOMMU_FAULT,
            list: FAULT_LIST_SRC,
            segment: 0,
            addr: b.iova + 4096,
            result: Some(0),
        },
    )?;
    Ok(Outcome::Pass)
}
