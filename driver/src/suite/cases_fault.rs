//! Negative cases: each expects the exact status, list, segment index and fault address the
//! ABI prescribes (list-structure faults are predicted with `dma_range::walk`, the same walk
//! the device runs, over the bytes the driver wrote).

use anyhow::{ensure, Result};
use dma_range::{
    AddrSpace, Command, DmaRange, ListLimits, Opcode, ReadFault, Status, FAULT_LIST_DST, FAULT_LIST_SRC, NO_SEGMENT,
};
use phyr_kernels::crc32c;

use super::case::{Case, Outcome};
use super::check::{self, expect_fault, expect_status, peer, Fault, Opts};
use super::tap::Tap;
use crate::bench::Bench;
use crate::exec::Job;
use crate::hostmem::HostMem;
use crate::mapping::{self, BuiltList, ListAt, PhysRange, Segment, Via};
use crate::vfio::DmaPerm;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "fault-unmapped-iova",
            about: "src segment 2 at an unmapped IOVA: IOMMU_FAULT, exact address and bytes moved",
            run: unmapped,
        },
        Case {
            name: "fault-iova-past-buffer-end",
            about: "a dst segment running off its mapping faults at the first unmapped byte",
            run: past_buffer_end,
        },
        Case {
            name: "fault-list-block-unmapped",
            about: "a list head at an unmapped IOVA: IOMMU_FAULT on the list read",
            run: list_unmapped,
        },
        Case {
            name: "fault-bus-no-target",
            about: "BUS_ADDR nobody decodes: BUS_NO_TARGET",
            run: bus_no_target,
        },
        Case {
            name: "fault-bus-cross-switch",
            about: "BUS_ADDR of an endpoint behind another switch: BUS_CROSS_SWITCH",
            run: bus_cross_switch,
        },
        Case {
            name: "fault-bus-bar0-target-abort",
            about: "BUS_ADDR of a BAR0 (registers): BUS_TARGET_ABORT",
            run: bus_bar0,
        },
        Case {
            name: "fault-bus-past-bar-end",
            about: "BUS_ADDR segment running past BAR2's end: BUS_PAST_BAR_END",
            run: past_bar_end,
        },
        Case {
            name: "fault-write-read-only",
            about: "dst in a read-only IOVA mapping: WRITE_READ_ONLY (reading it works)",
            run: write_read_only,
        },
        Case {
            name: "fault-chain-cycle",
            about: "a CHAIN back to the first block: LIST_CHAIN_CYCLE",
            run: chain_cycle,
        },
        Case {
            name: "fault-too-many-entries",
            about: "MAX_LIST_ENTRIES + 1 segments: LIST_TOO_MANY_ENTRIES",
            run: too_many,
        },
        Case {
            name: "fault-length-mismatch",
            about: "COPY with src/dst totals differing by one byte: LIST_LENGTH_MISMATCH",
            run: length_mismatch,
        },
        Case {
            name: "invalid-command",
            about: "unknown opcode: INVALID_OPCODE; nonzero flags: INVALID_FIELD",
            run: invalid_command,
        },
    ]
}

fn host(s: &mut Bench, len: u64) -> Result<HostMem> {
    Ok(s.alloc_host(len, DmaPerm::ReadWrite)?)
}

/// A list of raw segments (exactly as given) in host memory.
fn raw_list(s: &mut Bench, segs: &[DmaRange], block_entries: usize) -> Result<BuiltList> {
    let segs = segs.iter().map(|&range| Segment { range, via: Via::Raw }).collect();
    Ok(mapping::build_list(s, 0, segs, block_entries, ListAt::Host)?)
}

fn list_for(s: &mut Bench, r: &[PhysRange]) -> Result<BuiltList> {
    check::list_for(s, r, &Opts::default(), ListAt::Host)
}

fn seg(space: AddrSpace, addr: u64, len: u32) -> DmaRange {
    DmaRange::segment(space, addr, len)
}

fn unmapped(s: &mut Bench) -> Result<Outcome> {
    let (a, b) = (host(s, 8192)?, host(s, 12288)?);
    let x = s.unmapped_iova();
    let src = raw_list(
        s,
        &[
            seg(AddrSpace::Iova, a.iova, 4096),
            seg(AddrSpace::Iova, a.iova + 4096, 4096),
            seg(AddrSpace::Iova, x, 4096),
        ],
        16,
    )?;
    let dst = list_for(s, &[PhysRange::host(&b, 0, 12288)])?;
    let c = Job::new(0, Opcode::Copy, Some(&src), Some(&dst)).run(s)?;
    expect_fault(
        &c,
        Fault {
            status: Status::IOMMU_FAULT,
            list: FAULT_LIST_SRC,
            segment: 2,
            addr: x,
            result: Some(8192),
        },
    )?;
    Ok(Outcome::Pass)
}

fn past_buffer_end(s: &mut Bench) -> Result<Outcome> {
    let (a, b) = (host(s, 8192)?, host(s, 4096)?);
    // dst: 100 bytes fine, then 200 bytes starting 96 bytes before b's end (guard page after).
    let src = list_for(s, &[PhysRange::host(&a, 0, 300)])?;
    let dst = raw_list(
        s,
        &[
            seg(AddrSpace::Iova, b.iova, 100),
            seg(AddrSpace::Iova, b.iova + 4096 - 96, 200),
        ],
        16,
    )?;
    let c = Job::new(0, Opcode::Copy, Some(&src), Some(&dst)).run(s)?;
    // 100 bytes of segment 0 and the 96 bytes of segment 1 before the guard page.
    expect_fault(
        &c,
        Fault {
            status: Status::IOMMU_FAULT,
            list: FAULT_LIST_DST,
            segment: 1,
            addr: b.iova + 4096,
            result: Some(196),
        },
    )?;
    Ok(Outcome::Pass)
}

fn list_unmapped(s: &mut Bench) -> Result<Outcome> {
    let b = host(s, 4096)?;
    let x = s.unmapped_iova();
    let head = Command::list_head(AddrSpace::Iova, x, 4);
    let dst = list_for(s, &[PhysRange::host(&b, 0, 64)])?;
    let mut job = Job::new(0, Opcode::Copy, None, Some(&dst));
    job.cmd.src = head;
    job.extra_lists.push((AddrSpace::Iova, x, head.len));
    let c = job.run(s)?;
    expect_fault(
        &c,
        Fault {
            status: Status::IOMMU_FAULT,
            list: FAULT_LIST_SRC,
            segment: 0,
            addr: x,
            result: Some(0),
        },
    )?;
    Ok(Outcome::Pass)
}

fn bus_no_target(s: &mut Bench) -> Result<Outcome> {
    let (a, b) = (host(s, 8192)?, host(s, 4096)?);
    let x = crate::sysfs::undecoded_bus_addr(&s.sys)? + 0x100;
    Tap::diag(&format!("undecoded bus address {x:#x}"));
    let src = list_for(s, &[PhysRange::host(&a, 0, 4096 + 512)])?;
    let dst = raw_list(
        s,
        &[seg(AddrSpace::Iova, b.iova, 4096), seg(AddrSpace::Bus, x, 512)],
        16,
    )?;
    let c = Job::new(0, Opcode::Copy, Some(&src), Some(&dst)).run(s)?;
    expect_fault(
        &c,
        Fault {
            status: Status::BUS_NO_TARGET,
            list: FAULT_LIST_DST,
            segment: 1,
            addr: x,
            result: Some(4096),
        },
    )?;
    Ok(Outcome::Pass)
}

fn bus_cross_switch(s: &mut Bench) -> Result<Outcome> {
    let Some(p) = peer(s, 0, false) else {
        return Ok(Outcome::Skip("needs two switches".into()));
    };
    let a = host(s, 4096)?;
    let x = s.ep(p)?.bar2_bus() + 0x1000;
    let src = list_for(s, &[PhysRange::host(&a, 0, 256)])?;
    let dst = raw_list(s, &[seg(AddrSpace::Bus, x, 256)], 16)?;
    let c = Job::new(0, Opcode::Copy, Some(&src), Some(&dst)).run(s)?;
    expect_fault(
        &c,
        Fault {
            status: Status::BUS_CROSS_SWITCH,
            list: FAULT_LIST_DST,
            segment: 0,
            addr: x,
            result: Some(0),
        },
    )?;
    Ok(Outcome::Pass)
}

fn bus_bar0(s: &mut Bench) -> Result<Outcome> {
    let b = host(s, 4096)?;
    let x = s.ep(0)?.bar0_bus();
    let src = raw_list(s, &[seg(AddrSpace::Bus, x, 64)], 16)?;
    let dst = list_for(s, &[PhysRange::host(&b, 0, 64)])?;
    let c = Job::new(0, Opcode::Copy, Some(&src), Some(&dst)).run(s)?;
    expect_fault(
        &c,
        Fault {
            status: Status::BUS_TARGET_ABORT,
            list: FAULT_LIST_SRC,
            segment: 0,
            addr: x,
            result: Some(0),
        },
    )?;
    Ok(Outcome::Pass)
}

fn past_bar_end(s: &mut Bench) -> Result<Outcome> {
    let a = host(s, 4096)?;
    let e = s.ep(0)?;
    let end = e.bar2_bus() + e.bar2_len();
    let src = list_for(s, &[PhysRange::host(&a, 0, 200)])?;
    let dst = raw_list(s, &[seg(AddrSpace::Bus, end - 100, 200)], 16)?;
    let c = Job::new(0, Opcode::Copy, Some(&src), Some(&dst)).run(s)?;
    expect_status(&c, Status::BUS_PAST_BAR_END)?;
    Tap::diag(&format!(
        "fault_addr {:#x} (segment start {:#x}, BAR end {end:#x}), result {}",
        c.fault_addr,
        end - 100,
        c.result
    ));
    expect_fault(
        &c,
        Fault {
            status: Status::BUS_PAST_BAR_END,
            list: FAULT_LIST_DST,
            segment: 0,
            addr: end,
            result: None,
        },
    )?;
    Ok(Outcome::Pass)
}

fn write_read_only(s: &mut Bench) -> Result<Outcome> {
    let ro = s.alloc_host(8192, DmaPerm::ReadOnly)?;
    let a = host(s, 16384)?;
    let bytes = crate::data::pattern(501, 8192);
    ro.buf.write(0, &bytes)?;
    // Reading through the read-only mapping works.
    let rl = list_for(s, &[PhysRange::host(&ro, 0, 8192)])?;
    let want = crc32c::crc32c(&bytes);
    let c = Job::new(0, Opcode::Crc32c, Some(&rl), None).crc(want).run(s)?;
    check::expect_status(&c, Status::SUCCESS)?;
    ensure!(
        c.result as u32 == want,
        "CRC32C through a read-only mapping {:#x}, expected {want:#x}",
        c.result
    );
    // Writing does not. (The first 16 bytes land past the source: COPY may not overlap.)
    let src = list_for(s, &[PhysRange::host(&a, 0, 8192)])?;
    let dst = raw_list(
        s,
        &[
            seg(AddrSpace::Iova, a.iova + 8192, 16),
            seg(AddrSpace::Iova, ro.iova + 8, 8176),
        ],
        16,
    )?;
    let c = Job::new(0, Opcode::Copy, Some(&src), Some(&dst)).run(s)?;
    expect_fault(
        &c,
        Fault {
            status: Status::WRITE_READ_ONLY,
            list: FAULT_LIST_DST,
            segment: 1,
            addr: ro.iova + 8,
            result: Some(16),
        },
    )?;
    ensure!(ro.buf.to_vec(0, 8192)? == bytes, "the read-only buffer was modified");
    Ok(Outcome::Pass)
}

/// The fault `dma_range::walk` predicts for a list in `mem` (IOVA addresses only).
fn predict(head: DmaRange, limits: ListLimits, mems: &[&HostMem]) -> Option<dma_range::ListFault> {
    let read = |space: AddrSpace, addr: u64, buf: &mut [u8]| {
        let m = mems
            .iter()
            .find(|m| space == AddrSpace::Iova && addr >= m.iova && addr + buf.len() as u64 <= m.iova + m.len());
        match m {
            Some(m) => m.buf.read(addr - m.iova, buf).map_err(|_| ReadFault {
                status: Status::IOMMU_FAULT,
                addr,
            }),
            None => Err(ReadFault {
                status: Status::IOMMU_FAULT,
                addr,
            }),
        }
    };
    dma_range::walk(head, limits, read).err()
}

fn limits(s: &Bench) -> Result<ListLimits> {
    let e = s.ep(0)?;
    Ok(ListLimits {
        max_entries: e.id.max_list_entries,
        max_chain: e.id.max_chain,
    })
}

fn chain_cycle(s: &mut Bench) -> Result<Outcome> {
    let (a, b) = (host(s, 8192)?, host(s, 8192)?);
    let blocks = host(s, 4096)?;
    let (b0, b1) = (blocks.iova, blocks.iova + 1024);
    let mut block0 = Vec::new();
    block0.extend(seg(AddrSpace::Iova, a.iova, 100).to_bytes());
    block0.extend(seg(AddrSpace::Iova, a.iova + 200, 100).to_bytes());
    block0.extend(DmaRange::chain(AddrSpace::Iova, b1, 32).to_bytes());
    let mut block1 = Vec::new();
    block1.extend(seg(AddrSpace::Iova, a.iova + 400, 100).to_bytes());
    block1.extend(DmaRange::chain(AddrSpace::Iova, b0, 48).to_bytes());
    blocks.buf.write(0, &block0)?;
    blocks.buf.write(1024, &block1)?;
    let head = Command::list_head(AddrSpace::Iova, b0, 3);
    let want = predict(head, limits(s)?, &[&blocks]).expect("a cycle is a fault");
    ensure!(
        want.status == Status::LIST_CHAIN_CYCLE,
        "case bug: walk predicts {want}"
    );
    let dst = list_for(s, &[PhysRange::host(&b, 0, 300)])?;
    let mut job = Job::new(0, Opcode::Copy, None, Some(&dst));
    job.cmd.src = head;
    job.extra_lists = vec![(AddrSpace::Iova, b0, 48), (AddrSpace::Iova, b1, 32)];
    let c = job.run(s)?;
    expect_fault(
        &c,
        Fault {
            status: want.status,
            list: FAULT_LIST_SRC,
            segment: want.segment,
            addr: want.addr,
            result: Some(0),
        },
    )?;
    Ok(Outcome::Pass)
}

fn too_many(s: &mut Bench) -> Result<Outcome> {
    let e = s.ep(0)?;
    let n = e.id.max_list_entries as usize + 1;
    let per = n.div_ceil(e.id.max_chain.max(1) as usize) + 2;
    let a = host(s, n as u64 * 16)?;
    let segs: Vec<DmaRange> = (0..n as u64)
        .map(|i| seg(AddrSpace::Iova, a.iova + i * 16, 16))
        .collect();
    let src = raw_list(s, &segs, per)?;
    let mem = src.storage.as_ref().expect("host list");
    let want = predict(src.head, limits(s)?, &[mem, &a]).expect("too many entries is a fault");
    ensure!(
        want.status == Status::LIST_TOO_MANY_ENTRIES,
        "case bug: walk predicts {want}"
    );
    let c = Job::new(0, Opcode::Crc32c, Some(&src), None).run(s)?;
    expect_fault(
        &c,
        Fault {
            status: want.status,
            list: FAULT_LIST_SRC,
            segment: want.segment,
            addr: want.addr,
            result: Some(0),
        },
    )?;
    Ok(Outcome::Pass)
}

fn length_mismatch(s: &mut Bench) -> Result<Outcome> {
    let (a, b) = (host(s, 8192)?, host(s, 8192)?);
    let src = list_for(s, &[PhysRange::host(&a, 0, 4096)])?;
    let dst = list_for(s, &[PhysRange::host(&b, 0, 4095)])?;
    let c = Job::new(0, Opcode::Copy, Some(&src), Some(&dst)).run(s)?;
    expect_status(&c, Status::LIST_LENGTH_MISMATCH)?;
    ensure!(c.segment == NO_SEGMENT, "segment {}, expected NO_SEGMENT", c.segment);
    ensure!(c.result == 0, "{} bytes moved by a rejected command", c.result);
    Ok(Outcome::Pass)
}

fn invalid_command(s: &mut Bench) -> Result<Outcome> {
    let mut job = Job::new(0, Opcode::Nop, None, None);
    job.cmd.opcode = 0x7F;
    let c = job.run(s)?;
    expect_status(&c, Status::INVALID_OPCODE)?;
    let mut job = Job::new(0, Opcode::Nop, None, None);
    job.cmd.flags = 1;
    let c = job.run(s)?;
    expect_status(&c, Status::INVALID_FIELD)?;
    Ok(Outcome::Pass)
}
