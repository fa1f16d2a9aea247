//! Positive data-movement cases: every route (host IOVA, own BAR, peer BAR by bus address and
//! through the IOMMU), mixed lists, odd and page-crossing segments, chained and maximum-length
//! lists, lists stored in BAR2, FILL, COMPARE and CRC32C.

use anyhow::{ensure, Result};
use dma_range::{Opcode, Status};
use phyr_kernels::crc32c;

use super::case::{Case, Outcome};
use super::check::{self, copy_and_check, expect_status, peer, Opts};
use super::tap::Tap;
use crate::bench::{Bench, BAR_WINDOW};
use crate::data;
use crate::exec::Job;
use crate::mapping::{ListAt, PhysRange, Route};
use crate::vfio::DmaPerm;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "host-to-host",
            about: "COPY 256 KiB between two host buffers (IOVA to IOVA)",
            run: host_to_host,
        },
        Case {
            name: "host-to-own-bar-and-back",
            about: "host -> own BAR2 (bus address) -> host",
            run: own_bar_bus,
        },
        Case {
            name: "own-bar-through-iommu",
            about: "host -> own BAR2 through the IOMMU -> host",
            run: own_bar_iommu,
        },
        Case {
            name: "peer-bar-by-bus-and-back",
            about: "host -> same-switch peer's BAR2 by bus address -> host",
            run: peer_bus,
        },
        Case {
            name: "peer-bar-through-iommu-and-back",
            about: "host -> peer's BAR2 mapped through the IOMMU -> host",
            run: peer_iommu,
        },
        Case {
            name: "peer-bar-auto-route",
            about: "host -> peer's BAR2 as the P2P decision routes it -> host",
            run: peer_auto,
        },
        Case {
            name: "other-switch-peer-auto",
            about: "peer behind another switch: the decision picks the IOMMU; data moves",
            run: other_switch,
        },
        Case {
            name: "mixed-list",
            about: "one COPY whose lists mix host IOVA, own BAR, peer bus and peer IOVA segments",
            run: mixed,
        },
        Case {
            name: "unaligned-odd-segments",
            about: "odd lengths at odd offsets on every route",
            run: unaligned,
        },
        Case {
            name: "page-crossing-segments",
            about: "segments straddling 4 KiB pages and BAR IOVA windows",
            run: page_crossing,
        },
        Case {
            name: "chained-list",
            about: "200 segments in 8-entry blocks (28 CHAIN links)",
            run: chained,
        },
        Case {
            name: "max-length-list",
            about: "MAX_LIST_ENTRIES segments in each list",
            run: max_length,
        },
        Case {
            name: "list-in-own-bar2",
            about: "src/dst lists stored in the own BAR2, named by bus address",
            run: list_own_bar,
        },
        Case {
            name: "list-in-peer-bar2",
            about: "src/dst lists stored in a peer's BAR2",
            run: list_peer_bar,
        },
        Case {
            name: "fill",
            about: "FILL an odd-length mixed list with an 8-byte pattern",
            run: fill,
        },
        Case {
            name: "compare-equal",
            about: "COMPARE two equal mixed lists",
            run: compare_equal,
        },
        Case {
            name: "compare-mismatch",
            about: "COMPARE reports the first differing offset",
            run: compare_mismatch,
        },
        Case {
            name: "crc32c-check-value",
            about: "CRC32C of \"123456789\" is 0xE3069283",
            run: crc_check_value,
        },
    ]
}

fn host(s: &mut Bench, len: u64) -> Result<crate::hostmem::HostMem> {
    Ok(s.alloc_host(len, DmaPerm::ReadWrite)?)
}

fn host_to_host(s: &mut Bench) -> Result<Outcome> {
    let (a, b) = (host(s, 256 << 10)?, host(s, 256 << 10)?);
    copy_and_check(
        s,
        &[PhysRange::host(&a, 0, 256 << 10)],
        &[PhysRange::host(&b, 0, 256 << 10)],
        Opts {
            seed: 11,
            ..Default::default()
        },
    )?;
    Ok(Outcome::Pass)
}

/// host A -> BAR2 of `ep` at `off` with `route` -> host B; both legs verified, the second leg
/// reads what the device wrote in the first.
fn round_trip(s: &mut Bench, bar_ep: usize, off: u64, len: u64, route: Route, seed: u64) -> Result<()> {
    let (a, b) = (host(s, len)?, host(s, len)?);
    let bar = [PhysRange::bar(bar_ep, off, len, route)];
    copy_and_check(
        s,
        &[PhysRange::host(&a, 0, len)],
        &bar,
        Opts {
            seed,
            ..Default::default()
        },
    )?;
    // Back: the source is the BAR as the device left it; same seed = same expected bytes.
    let p = check::prepare(
        s,
        &bar,
        &[PhysRange::host(&b, 0, len)],
        Opts {
            seed,
            keep_src: true,
            ..Default::default()
        },
    )?;
    let c = p.job().run(s)?;
    p.verify(s, &c)
}

fn own_bar_bus(s: &mut Bench) -> Result<Outcome> {
    let d = s.p2p_decision(0, 0)?;
    Tap::diag(&format!("own BAR: {} (distance {})", d.map_type.name(), d.distance));
    round_trip(s, 0, 0x1000, 128 << 10, Route::Bus, 21)?;
    Ok(Outcome::Pass)
}

fn own_bar_iommu(s: &mut Bench) -> Result<Outcome> {
    round_trip(s, 0, 0x4_0000, 128 << 10, Route::Iommu, 22)?;
    Ok(Outcome::Pass)
}

fn peer_bus(s: &mut Bench) -> Result<Outcome> {
    let Some(p) = peer(s, 0, true) else {
        return Ok(Outcome::Skip("needs a second endpoint behind the same switch".into()));
    };
    round_trip(s, p, 0x1000, 128 << 10, Route::Bus, 31)?;
    Ok(Outcome::Pass)
}

fn peer_iommu(s: &mut Bench) -> Result<Outcome> {
    let Some(p) = peer(s, 0, true).or_else(|| peer(s, 0, false)) else {
        return Ok(Outcome::Skip("needs a second endpoint".into()));
    };
    round_trip(s, p, 0x8_0000, 128 << 10, Route::Iommu, 32)?;
    Ok(Outcome::Pass)
}

fn peer_auto(s: &mut Bench) -> Result<Outcome> {
    let Some(p) = peer(s, 0, true).or_else(|| peer(s, 0, false)) else {
        return Ok(Outcome::Skip("needs a second endpoint".into()));
    };
    let d = s.p2p_decision(p, 0)?;
    Tap::diag(&format!(
        "ep0 -> ep{p} BAR2: {} distance {} common {} acs-redirect [{}] (policy {:?})",
        d.map_type.name(),
        d.distance,
        d.common.as_deref().unwrap_or("host bridge"),
        d.acs_redirects.join(","),
        s.policy
    ));
    round_trip(s, p, 0x10_0000, 64 << 10, Route::Auto, 33)?;
    Ok(Outcome::Pass)
}

fn other_switch(s: &mut Bench) -> Result<Outcome> {
    let Some(p) = peer(s, 0, false) else {
        return Ok(Outcome::Skip("needs two switches".into()));
    };
    let d = s.p2p_decision(p, 0)?;
    Tap::diag(&format!(
        "ep0 -> ep{p} BAR2: {} (common {})",
        d.map_type.name(),
        d.common.as_deref().unwrap_or("host bridge")
    ));
    ensure!(
        d.map_type != crate::p2p::MapType::BusAddr,
        "endpoints on different switches decided BUS_ADDR"
    );
    round_trip(s, p, 0x1000, 64 << 10, Route::Auto, 34)?;
    Ok(Outcome::Pass)
}

/// A peer for mixed lists: same switch if there is one, else any, else the own endpoint.
/// Its "bus" pieces use `Route::Auto`, so a peer behind another switch goes through the IOMMU.
fn any_peer(s: &Bench) -> usize {
    peer(s, 0, true).or_else(|| peer(s, 0, false)).unwrap_or(0)
}

fn mixed(s: &mut Bench) -> Result<Outcome> {
    let p = any_peer(s);
    let (a, b) = (host(s, 64 << 10)?, host(s, 64 << 10)?);
    let src = [
        PhysRange::host(&a, 0, 10_000),
        PhysRange::bar(0, 0x2000, 7_000, Route::Bus),
        PhysRange::bar(p, 0x3000, 5_003, Route::Auto),
        PhysRange::bar(p, 0x9000, 6_001, Route::Iommu),
        PhysRange::host(&a, 20_000, 333),
    ];
    let total = check::total(&src);
    let dst = [
        PhysRange::bar(p, 0x2_0000, 4_097, Route::Iommu),
        PhysRange::host(&b, 5, 9_000),
        PhysRange::bar(0, 0x2_0000, 8_111, Route::Iommu),
        PhysRange::bar(p, 0x3_0000, total - 4_097 - 9_000 - 8_111, Route::Auto),
    ];
    copy_and_check(
        s,
        &src,
        &dst,
        Opts {
            seed: 41,
            ..Default::default()
        },
    )?;
    Ok(Outcome::Pass)
}

fn unaligned(s: &mut Bench) -> Result<Outcome> {
    let p = any_peer(s);
    let (a, b) = (host(s, 64 << 10)?, host(s, 64 << 10)?);
    let lens = [1u64, 3, 5, 7, 13, 31, 127, 511, 1021, 4093];
    let mut src = Vec::new();
    let mut dst = Vec::new();
    let mut off = 1u64;
    for (i, &l) in lens.iter().enumerate() {
        src.push(PhysRange::host(&a, off, l));
        let bar_off = 0x4_0001 + off * 3;
        dst.push(match i % 4 {
            0 => PhysRange::host(&b, off + 7, l),
            1 => PhysRange::bar(0, bar_off, l, Route::Bus),
            2 => PhysRange::bar(p, bar_off, l, Route::Iommu),
            _ => PhysRange::bar(p, bar_off, l, Route::Auto),
        });
        off += l + 2;
    }
    copy_and_check(
        s,
        &src,
        &dst,
        Opts {
            seed: 51,
            ..Default::default()
        },
    )?;
    // And the other way round, so odd segments are also read from BARs.
    copy_and_check(
        s,
        &dst,
        &src,
        Opts {
            seed: 52,
            ..Default::default()
        },
    )?;
    Ok(Outcome::Pass)
}

fn page_crossing(s: &mut Bench) -> Result<Outcome> {
    let p = any_peer(s);
    let (a, b) = (host(s, 64 << 10)?, host(s, 64 << 10)?);
    let mut src = Vec::new();
    let mut dst = Vec::new();
    for i in 1..6u64 {
        src.push(PhysRange::host(&a, i * 8192 - 5, 4096 + 10));
        dst.push(match i % 3 {
            0 => PhysRange::host(&b, i * 8192 - 3, 4096 + 10),
            1 => PhysRange::bar(0, 0x6_0000 + i * 4096 - 7, 4096 + 10, Route::Bus),
            _ => PhysRange::bar(p, 0x6_0000 + i * 4096 - 7, 4096 + 10, Route::Auto),
        });
    }
    // One range straddles a BAR IOVA window: the mapping layer must split it there.
    src.push(PhysRange::host(&a, 50_000, 300));
    dst.push(PhysRange::bar(p, BAR_WINDOW - 100, 300, Route::Iommu));
    copy_and_check(
        s,
        &src,
        &dst,
        Opts {
            seed: 61,
            ..Default::default()
        },
    )?;
    Ok(Outcome::Pass)
}

fn chained(s: &mut Bench) -> Result<Outcome> {
    let (a, b) = (host(s, 128 << 10)?, host(s, 128 << 10)?);
    let o = Opts {
        seg_max: 512,
        block_entries: 8,
        seed: 71,
        ..Default::default()
    };
    let p = check::prepare(
        s,
        &[PhysRange::host(&a, 0, 100 << 10)],
        &[PhysRange::host(&b, 0, 100 << 10)],
        o,
    )?;
    ensure!(
        p.src.blocks.len() > 1,
        "expected a chained list, got {} block",
        p.src.blocks.len()
    );
    Tap::diag(&format!(
        "{} segments in {} blocks",
        p.src.segments.len(),
        p.src.blocks.len()
    ));
    let c = p.job().run(s)?;
    p.verify(s, &c)?;
    Ok(Outcome::Pass)
}

fn max_length(s: &mut Bench) -> Result<Outcome> {
    let e = s.ep(0)?;
    let n = u64::from(e.id.max_list_entries);
    let max_chain = e.id.max_chain as usize;
    let seg = 64u64;
    // Blocks as large as needed to stay within MAX_CHAIN links.
    let per = (n as usize).div_ceil(max_chain.max(1)).max(2) + 1;
    let (a, b) = (host(s, n * seg)?, host(s, n * seg)?);
    let o = Opts {
        seg_max: seg as u32,
        block_entries: per.min(n as usize + 1),
        seed: 81,
        ..Default::default()
    };
    let p = check::prepare(
        s,
        &[PhysRange::host(&a, 0, n * seg)],
        &[PhysRange::host(&b, 0, n * seg)],
        o,
    )?;
    ensure!(
        p.src.segments.len() as u64 == n,
        "built {} segments, wanted {n}",
        p.src.segments.len()
    );
    Tap::diag(&format!(
        "{n} segments of {seg} bytes in {} blocks per list",
        p.src.blocks.len()
    ));
    let c = p.job().run(s)?;
    p.verify(s, &c)?;
    Ok(Outcome::Pass)
}

fn list_in_bar(s: &mut Bench, list_ep: usize) -> Result<()> {
    let (a, b) = (host(s, 64 << 10)?, host(s, 64 << 10)?);
    let o = Opts {
        seg_max: 1024,
        block_entries: 16,
        list_at: ListAt::Bar {
            ep: list_ep,
            offset: 0x30_0000,
        },
        seed: 91,
        ..Default::default()
    };
    let p = check::prepare(
        s,
        &[PhysRange::host(&a, 0, 40_000)],
        &[PhysRange::host(&b, 3, 40_000)],
        o,
    )?;
    Tap::diag(&format!(
        "lists in ep{list_ep} BAR2: src blocks {:?}",
        p.src.blocks.first()
    ));
    let c = p.job().run(s)?;
    p.verify(s, &c)
}

fn list_own_bar(s: &mut Bench) -> Result<Outcome> {
    list_in_bar(s, 0)?;
    Ok(Outcome::Pass)
}

fn list_peer_bar(s: &mut Bench) -> Result<Outcome> {
    let Some(p) = peer(s, 0, true).or_else(|| peer(s, 0, false)) else {
        return Ok(Outcome::Skip("needs a second endpoint".into()));
    };
    list_in_bar(s, p)?;
    Ok(Outcome::Pass)
}

fn fill(s: &mut Bench) -> Result<Outcome> {
    let p = any_peer(s);
    let b = host(s, 64 << 10)?;
    let dst = [
        PhysRange::host(&b, 1, 10_001),
        PhysRange::bar(0, 0x7_0003, 3_333, Route::Bus),
        PhysRange::bar(p, 0x7_0005, 2_047, Route::Auto),
    ];
    check::write_ranges(s, &dst, &vec![0x5A; check::total(&dst) as usize])?;
    let o = Opts::default();
    let dl = check::list_for(s, &dst, &o, ListAt::Host)?;
    let pattern = 0x1122_3344_5566_7788u64;
    let expected = data::fill_bytes(pattern, check::total(&dst) as usize);
    let want = crc32c::crc32c(&expected);
    let mut job = Job::new(0, Opcode::Fill, None, Some(&dl)).crc(want);
    job.cmd.pattern = pattern;
    let c = job.run(s)?;
    check::expect_success(&c, expected.len() as u64)?;
    let got = check::read_ranges(s, &dst)?;
    if let Some(off) = data::first_diff(&got, &expected) {
        anyhow::bail!("FILL: byte {off} is {:#04x}, expected {:#04x}", got[off], expected[off]);
    }
    let cc = Job::new(0, Opcode::Crc32c, Some(&dl), None).crc(want).run(s)?;
    expect_status(&cc, Status::SUCCESS)?;
    ensure!(
        cc.result as u32 == want,
        "device CRC32C {:#010x}, expected {want:#010x}",
        cc.result
    );
    Ok(Outcome::Pass)
}

/// Two mixed lists with the same content; `flip` changes one byte of the second at that offset.
fn compare(s: &mut Bench, flip: Option<usize>) -> Result<()> {
    let p = any_peer(s);
    let (a, b) = (host(s, 64 << 10)?, host(s, 64 << 10)?);
    let one = [
        PhysRange::host(&a, 0, 20_000),
        PhysRange::bar(p, 0x8_0000, 5_000, Route::Auto),
    ];
    let two = [
        PhysRange::bar(0, 0x8_0001, 12_345, Route::Auto),
        PhysRange::host(&b, 7, 12_655),
    ];
    let bytes = data::pattern(101, 25_000);
    check::write_ranges(s, &one, &bytes)?;
    let mut other = bytes.clone();
    if let Some(off) = flip {
        other[off] ^= 0x40;
    }
    check::write_ranges(s, &two, &other)?;
    let o = Opts::default();
    let l1 = check::list_for(s, &one, &o, ListAt::Host)?;
    let l2 = check::list_for(s, &two, &o, ListAt::Host)?;
    let c = Job::new(0, Opcode::Compare, Some(&l1), Some(&l2))
        .crc(crc32c::crc32c(&bytes))
        .run(s)?;
    match flip {
        None => check::expect_success(&c, 25_000),
        Some(off) => {
            expect_status(&c, Status::COMPARE_MISMATCH)?;
            ensure!(
                c.result == off as u64,
                "COMPARE_MISMATCH at offset {}, expected {off}",
                c.result
            );
            Ok(())
        }
    }
}

fn compare_equal(s: &mut Bench) -> Result<Outcome> {
    compare(s, None)?;
    Ok(Outcome::Pass)
}

fn compare_mismatch(s: &mut Bench) -> Result<Outcome> {
    // Offset 12_346 is the first byte of the second segment of the second list.
    compare(s, Some(12_346))?;
    compare(s, Some(24_999))?;
    Ok(Outcome::Pass)
}

fn crc_check_value(s: &mut Bench) -> Result<Outcome> {
    let a = host(s, 4096)?;
    a.buf.write(100, b"123456789")?;
    let l = check::list_for(s, &[PhysRange::host(&a, 100, 9)], &Opts::default(), ListAt::Host)?;
    let c = Job::new(0, Opcode::Crc32c, Some(&l), None).crc(0xE306_9283).run(s)?;
    expect_status(&c, Status::SUCCESS)?;
    ensure!(
        c.result == 0xE306_9283,
        "CRC32C(\"123456789\") = {:#010x}, expected 0xe3069283",
        c.result
    );
    Ok(Outcome::Pass)
}
