//! Tests of `kernel_oracle.rs`, through the whole cross-check: a console log as `phyr ksuite`
//! prints it, and a device trace written with the real recorder. A correct run passes; a wrong
//! translation, a wrong space, an access outside the kernel's pieces, a wrong BAR offset, an
//! access after an unmap and a use after unmap that does not fault are each flagged with the
//! command, list entry and address.

use std::path::PathBuf;

use phyr_trace::{Direction, DmaRecord, Event, Payload, Record, Recorder, Space, Target, TraceClock, TraceConfig};

use crate::launch::recipe::P2pExpect;
use crate::results::crosscheck::{check, Report};
use crate::results::expected::Expected;
use crate::results::guest_phys::RamLayout;

const GIB: u64 = 1 << 30;
/// 1 GiB of RAM, all below 4 GiB: RAM file offset = guest-physical address.
const LAYOUT: RamLayout = RamLayout {
    size: GIB,
    below_4g: GIB,
};

fn expected() -> Expected {
    Expected {
        recipe: "t.args".into(),
        layout: Ok(LAYOUT),
        p2p: Vec::new(),
    }
}

const ENDPOINTS: &str = "# phyr-endpoint index=0 bdf=0000:03:00.0 endpoint_id=0 switch_id=0 bar0=0xfe800000+0x4000 \
bar2=0xf8000000+0x4000000 iommu_group=4 bar2_phys=0xf8000000
# phyr-endpoint index=1 bdf=0000:04:00.0 endpoint_id=1 switch_id=0 bar0=0xfe600000+0x4000 bar2=0xf4000000+0x4000000 \
iommu_group=5 bar2_phys=0xf4000000";

/// CRC32C over two entries: RAM (IOVA 0x10000, physical 0x2345000) and a page of ep1's BAR2 by
/// bus address (offset 0x1000).
const KMAP: &str = "# phyr-kmap ep=0 q=0 id=5 list=src first=0 \
segs=[iova:0x10000+0x1000=none:0x2345000/sgtable@0,bus:0xf4001000+0x1000=bus_addr:0xf4001000/sgtable@1] \
path=sgtable state=mapped";
const CMD: &str = "# phyr-cmd ep=0 q=0 id=5 op=CRC32C status=SUCCESS result=0x1234 bytes=8192 crc32c=- \
src=[iova:0x10000+0x1000,bus:0xf4001000+0x1000] dst=[] lists=[iova:0x90000+0x20] fault=-";

fn dma(list: u8, segment: u32, space: Space, addr: u64, len: u32, target: Target, status: u16) -> DmaRecord {
    DmaRecord {
        endpoint: 0,
        queue: 0,
        command_id: 5,
        opcode: 3,
        segment,
        list,
        direction: if list == 1 { Direction::Write } else { Direction::Read },
        space,
        addr,
        len,
        target,
        status,
        crc32c: None,
        dur_ns: 10,
    }
}

fn ram(segment: u32, addr: u64, offset: u64) -> DmaRecord {
    dma(
        0,
        segment,
        Space::Iova,
        addr,
        0x1000,
        Target::GuestMemory { mapping: 0, offset },
        0,
    )
}

fn bar(segment: u32, addr: u64, endpoint: u16, offset: u64) -> DmaRecord {
    let target = Target::PeerBar {
        endpoint,
        bar: 2,
        offset,
    };
    dma(0, segment, Space::Bus, addr, 0x1000, target, 0)
}

fn map(iova: u64, fd_offset: Option<u64>) -> Event {
    Event::DmaMap {
        iova,
        size: 0x1000,
        readable: true,
        writable: true,
        has_fd: fd_offset.is_some(),
        fd_offset,
    }
}

fn done(status: u16, result: u64) -> Event {
    Event::CommandDone {
        queue: 0,
        command_id: 5,
        opcode: 3,
        status,
        result,
    }
}

/// A trace directory for endpoint 0: the events and DMA records in order, 10 ns apart.
fn trace(tag: &str, items: Vec<Payload>) -> PathBuf {
    let dir = phyr_trace::testutil::temp_dir(&format!("oracle-{tag}"));
    let r = Recorder::create(&dir, 0, &TraceConfig::default(), &TraceClock::new()).unwrap();
    for (i, payload) in items.into_iter().enumerate() {
        r.record(Record {
            t_ns: 100 + 10 * i as u64,
            payload,
        });
    }
    r.flush().unwrap();
    dir
}

fn ev(e: Event) -> Payload {
    Payload::Event { endpoint: 0, event: e }
}

/// The list block fetch every command starts with, for a command of `opcode`.
fn list_fetch(opcode: u8) -> Payload {
    let target = Target::GuestMemory { mapping: 1, offset: 0 };
    Payload::Dma(DmaRecord {
        opcode,
        ..dma(2, 0, Space::Iova, 0x90000, 0x20, target, 0)
    })
}

/// Cross-checks `log` against a trace of `records` (after the RAM page's DMA_MAP at fd
/// offset 0x2345000 and the list block's).
fn run(tag: &str, log: &str, records: Vec<DmaRecord>, end: Event) -> Report {
    let opcode = match end {
        Event::CommandDone { opcode, .. } => opcode,
        _ => 0,
    };
    let mut items = vec![
        ev(map(0x10000, Some(0x2345000))),
        ev(map(0x90000, Some(0x700000))),
        list_fetch(opcode),
    ];
    items.extend(records.into_iter().map(Payload::Dma));
    items.push(ev(end));
    let dir = trace(tag, items);
    let r = check(&format!("{ENDPOINTS}\n{log}\n"), &dir, &expected());
    std::fs::remove_dir_all(&dir).unwrap();
    r
}

fn good_records() -> Vec<DmaRecord> {
    vec![ram(0, 0x10000, 0), bar(1, 0xf4001000, 1, 0x1000)]
}

/// The one problem of `r`, which must mention each of `words`.
fn one_problem(r: &Report, words: &[&str]) {
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
    for w in words {
        assert!(r.problems[0].contains(w), "{w:?} not in {:?}", r.problems[0]);
    }
}

#[test]
fn a_command_that_did_what_the_kernel_mapped_passes() {
    let r = run("good", &format!("{KMAP}\n{CMD}"), good_records(), done(0, 0x1234));
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    let k = &r.kernel;
    assert_eq!(
        (k.commands, k.pieces, k.iova_at_phys, k.bar_at_offset),
        (1, 2, 1, 1),
        "{k:?}"
    );
    assert!(r
        .kernel
        .summary()
        .contains("1 IOVA accesses at the guest-physical address the kernel mapped, 1 BAR"));
}

#[test]
fn a_wrong_translation_is_flagged_with_command_entry_and_address() {
    // The kernel says the page is at 0x2346000; the device's mapping put it at 0x2345000.
    let kmap = KMAP.replace("none:0x2345000", "none:0x2346000");
    let r = run(
        "translation",
        &format!("{kmap}\n{CMD}"),
        good_records(),
        done(0, 0x1234),
    );
    one_problem(
        &r,
        &[
            "ep0 q0 cmd 5 CRC32C",
            "src entry 0",
            "wrong translation: IOVA 0x10000 reached guest-physical 0x2345000, the kernel mapped it to 0x2346000",
        ],
    );
}

#[test]
fn a_wrong_space_is_flagged() {
    // The kernel mapped entry 1 through the host bridge (an IOVA); the device got a bus address.
    let kmap = KMAP.replace(
        "bus:0xf4001000+0x1000=bus_addr:0xf4001000/sgtable@1",
        "iova:0xf4001000+0x1000=thru_host_bridge:0xf4001000/sgtable@1",
    );
    let cmd = CMD.replace("bus:0xf4001000+0x1000]", "iova:0xf4001000+0x1000]");
    let r = run("space", &format!("{kmap}\n{cmd}"), good_records(), done(0, 0x1234));
    assert!(
        r.problems.iter().any(|p| p.contains("ep0 q0 cmd 5")
            && p.contains("src entry 1")
            && p.contains("wrong space: bus 0xf4001000 reached the device as bus, but the kernel mapped entry 1 as thru_host_bridge (iova)")),
        "{:#?}",
        r.problems
    );
}

#[test]
fn an_access_outside_the_kernels_pieces_is_flagged() {
    let mut recs = good_records();
    recs[0] = ram(0, 0x10800, 0x800);
    let r = run("outside", &format!("{KMAP}\n{CMD}"), recs, done(0, 0x1234));
    assert!(
        r.problems.iter().any(|p| p.contains("ep0 q0 cmd 5")
            && p.contains("iova 0x10800+0x1000 (src entry 0)")
            && p.contains("iova 0x11000 is outside every piece the kernel mapped")),
        "{:#?}",
        r.problems
    );
}

#[test]
fn a_wrong_bar_offset_is_flagged() {
    let mut recs = good_records();
    recs[1] = bar(1, 0xf4001000, 1, 0x2000);
    let r = run("bar", &format!("{KMAP}\n{CMD}"), recs, done(0, 0x1234));
    one_problem(
        &r,
        &[
            "ep0 q0 cmd 5",
            "src entry 1",
            "wrong BAR offset: bus 0xf4001000 hit ep1 BAR2 + 0x2000, the kernel mapped physical 0xf4001000 = ep1 BAR2 + 0x1000",
        ],
    );
    // The right offset of the wrong endpoint is wrong too.
    let mut recs = good_records();
    recs[1] = bar(1, 0xf4001000, 0, 0x1000);
    let r = run("bar-ep", &format!("{KMAP}\n{CMD}"), recs, done(0, 0x1234));
    one_problem(&r, &["hit ep0 BAR2 + 0x1000", "= ep1 BAR2 + 0x1000"]);
}

#[test]
fn an_access_from_the_wrong_list_entry_is_flagged() {
    let mut recs = good_records();
    recs[0] = ram(1, 0x10000, 0);
    let r = run("entry", &format!("{KMAP}\n{CMD}"), recs, done(0, 0x1234));
    one_problem(
        &r,
        &[
            "(src entry 1)",
            "iova 0x10000 belongs to entry 0 of the kernel's list, the device took it from entry 1",
        ],
    );
}

const STALE_KMAP: &str = "# phyr-kmap ep=0 q=0 id=5 list=dst first=0 \
segs=[iova:0x10000+0x1000=none:0x2345000/iova_link@0] path=iova state=unmapped";

fn fill_after_unmap(status: &str, fault: &str) -> String {
    format!(
        "{STALE_KMAP}\n# phyr-cmd ep=0 q=0 id=5 op=FILL status={status} result=0x0 bytes=0 crc32c=- src=[] \
         dst=[iova:0x10000+0x1000] lists=[iova:0x90000+0x20] fault={fault}"
    )
}

fn fill(rec: DmaRecord) -> DmaRecord {
    DmaRecord { opcode: 2, ..rec }
}

fn fill_done(status: u16) -> Event {
    Event::CommandDone {
        queue: 0,
        command_id: 5,
        opcode: 2,
        status,
        result: 0,
    }
}

#[test]
fn a_use_after_unmap_that_faults_where_it_must_passes() {
    let log = fill_after_unmap("IOMMU_FAULT", "list=dst,seg=0,addr=0x10000");
    let faulting = fill(dma(1, 0, Space::Iova, 0x10000, 0, Target::None, 0x10));
    let r = run("unmap-ok", &log, vec![faulting], fill_done(0x10));
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(r.kernel.after_unmap, 1);
}

#[test]
fn an_access_after_an_unmap_is_flagged() {
    // The device wrote the page although the kernel had torn the mapping down.
    let log = fill_after_unmap("IOMMU_FAULT", "list=dst,seg=0,addr=0x10000");
    let wrote = fill(dma(
        1,
        0,
        Space::Iova,
        0x10000,
        0x1000,
        Target::GuestMemory { mapping: 0, offset: 0 },
        0,
    ));
    let faulting = fill(dma(1, 0, Space::Iova, 0x10000, 0, Target::None, 0x10));
    let r = run("unmap-access", &log, vec![wrote, faulting], fill_done(0x10));
    one_problem(
        &r,
        &[
            "ep0 q0 cmd 5 FILL",
            "Write of iova 0x10000+0x1000 (dst entry 0)",
            "use after unmap: the kernel tore this list's mapping down before the command, yet the access succeeded",
        ],
    );
}

#[test]
fn a_use_after_unmap_that_completes_or_faults_elsewhere_is_flagged() {
    let r = run("unmap-success", &fill_after_unmap("SUCCESS", "-"), vec![], fill_done(0));
    assert!(
        r.problems.iter().any(|p| p.contains("ep0 q0 cmd 5 FILL")
            && p.contains("use after unmap: the command ended SUCCESS with fault -, expected IOMMU_FAULT at dst entry 0 address 0x10000")),
        "{:#?}",
        r.problems
    );
    // A fault at another address is not the fault a torn-down mapping makes.
    let log = fill_after_unmap("IOMMU_FAULT", "list=dst,seg=0,addr=0x10800");
    let faulting = fill(dma(1, 0, Space::Iova, 0x10800, 0, Target::None, 0x10));
    let r = run("unmap-elsewhere", &log, vec![faulting], fill_done(0x10));
    one_problem(
        &r,
        &["fault list=dst,seg=0,addr=0x10800, expected IOMMU_FAULT at dst entry 0 address 0x10000"],
    );
    // The driver's word alone is not enough: the device must have failed there.
    let log = fill_after_unmap("IOMMU_FAULT", "list=dst,seg=0,addr=0x10000");
    let r = run("unmap-untraced", &log, vec![], fill_done(0x10));
    one_problem(&r, &["the device's trace has no access failing there"]);
}

#[test]
fn a_host_bridge_iova_without_an_fd_is_counted_not_guessed() {
    // ep1's BAR through the IOMMU: QEMU maps it without an fd, the device reaches it by message.
    let kmap = KMAP.replace(
        "bus:0xf4001000+0x1000=bus_addr:0xf4001000/sgtable@1",
        "iova:0x20000+0x1000=thru_host_bridge:0xf4001000/sgtable@1",
    );
    let cmd = CMD.replace("bus:0xf4001000+0x1000]", "iova:0x20000+0x1000]");
    let msg = dma(
        0,
        1,
        Space::Message,
        0x20000,
        0x1000,
        Target::GuestMemory { mapping: 2, offset: 0 },
        0,
    );
    let mut items = vec![
        ev(map(0x10000, Some(0x2345000))),
        ev(map(0x90000, Some(0x700000))),
        ev(map(0x20000, None)),
        list_fetch(3),
    ];
    items.extend([ram(0, 0x10000, 0), msg].map(Payload::Dma));
    items.push(ev(done(0, 0x1234)));
    let dir = trace("no-fd", items);
    let r = check(&format!("{ENDPOINTS}\n{kmap}\n{cmd}\n"), &dir, &expected());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(r.kernel.iova_at_phys, 1);
    assert_eq!(r.kernel.unresolved.values().sum::<usize>(), 1);
    assert!(r
        .kernel
        .summary()
        .contains("1 accesses not placed (1: IOVA mapped by QEMU without an fd"));
}

#[test]
fn kernel_pieces_must_lie_inside_the_command_in_the_space_of_their_map_type() {
    for (kmap, want) in [
        (
            KMAP.replace("=bus_addr:", "=thru_host_bridge:"),
            "kernel src piece 1 is bus:0xf4001000+0x1000 but mapped thru_host_bridge (its address belongs in iova)",
        ),
        (
            KMAP.replace("iova:0x10000+0x1000=none", "iova:0x10800+0x1000=none"),
            "kernel src piece 0 iova:0x10800+0x1000 is not among the command's src ranges",
        ),
    ] {
        let r = run("inside", &format!("{kmap}\n{CMD}"), good_records(), done(0, 0x1234));
        assert!(r.problems.iter().any(|p| p.contains(want)), "{want}: {:#?}", r.problems);
    }
}

#[test]
fn without_the_recipes_layout_iova_accesses_are_counted_not_checked() {
    let dir = trace(
        "no-layout",
        [
            ev(map(0x10000, Some(0x2345000))),
            list_fetch(3),
            Payload::Dma(ram(0, 0x10000, 0)),
            Payload::Dma(bar(1, 0xf4001000, 1, 0x1000)),
            ev(done(0, 0x1234)),
        ]
        .into(),
    );
    let r = check(
        &format!("{ENDPOINTS}\n{KMAP}\n{CMD}\n"),
        &dir,
        &Expected::unknown("recipe x: not q35"),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!((r.kernel.iova_at_phys, r.kernel.bar_at_offset), (0, 1));
    assert_eq!(r.kernel.unresolved.get("recipe x: not q35"), Some(&1));
}

#[test]
fn p2p_decisions_are_held_to_the_recipes_outcome() {
    let line = |c, p, d: &str| format!("# phyr-p2p client={c} provider={p} distance=4 decision={d}");
    let log = [line(0, 1, "bus_addr"), line(1, 0, "bus_addr"), line(0, 0, "bus_addr")].join("\n");
    let mut e = expected();
    e.p2p = vec![P2pExpect {
        a: 0,
        b: 1,
        decision: phyr_report::P2pDecision::ThruHostBridge,
    }];
    let nop = Event::CommandDone {
        queue: 0,
        command_id: 5,
        opcode: 0,
        status: 0,
        result: 0,
    };
    let dir = trace("p2p", vec![ev(nop)]);
    let r = check(&format!("{log}\n# phyr-cmd ep=0 q=0 id=5 op=NOP status=SUCCESS result=0x0 bytes=0 crc32c=- src=[] dst=[] lists=[] fault=-\n"), &dir, &e);
    assert_eq!(r.problems.len(), 2, "{:#?}", r.problems);
    assert!(
        r.problems[0].contains("the kernel decided bus_addr for client ep0 provider ep1 (distance 4), recipe t.args forces thru_host_bridge"),
        "{}",
        r.problems[0]
    );
    // As forced, both directions count; a pair the suite never reported is a problem.
    e.p2p[0].decision = phyr_report::P2pDecision::BusAddr;
    e.p2p.push(P2pExpect {
        a: 0,
        b: 2,
        decision: phyr_report::P2pDecision::NotSupported,
    });
    let r = check(&format!("{log}\n# phyr-cmd ep=0 q=0 id=5 op=NOP status=SUCCESS result=0x0 bytes=0 crc32c=- src=[] dst=[] lists=[] fault=-\n"), &dir, &e);
    assert_eq!(r.kernel.p2p_as_expected, 2);
    assert_eq!(r.problems.len(), 2, "{:#?}", r.problems);
    assert!(r.problems[0].contains("reported no decision for client ep0 provider ep2"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_iommu_fault_on_an_address_the_kernel_mapped_is_flagged() {
    // The kernel says entry 0 is mapped; the device's IOMMU lookup failed there.
    let faulted = dma(0, 0, Space::Iova, 0x10000, 0, Target::None, 0x10);
    let cmd = CMD
        .replace("status=SUCCESS result=0x1234", "status=IOMMU_FAULT result=0x0")
        .replace("fault=-", "fault=list=src,seg=0,addr=0x10000");
    let r = run("fault-mapped", &format!("{KMAP}\n{cmd}"), vec![faulted], done(0x10, 0));
    one_problem(
        &r,
        &[
            "ep0 q0 cmd 5 CRC32C",
            "iova 0x10000+0x0 (src entry 0)",
            "the IOMMU refused it (IOMMU_FAULT), yet the kernel reports that address mapped",
        ],
    );
}

#[test]
fn hostile_kmap_numbers_are_problems_not_panics() {
    // Pieces at the very top of the address space, physical addresses that wrap.
    for kmap in [
        KMAP.replace(
            "iova:0x10000+0x1000=none:0x2345000",
            "iova:0x10000+0xffffffffffffffff=none:0xffffffffffffffff",
        ),
        KMAP.replace("none:0x2345000", "none:0xfffffffffffff800"),
        KMAP.replace("bus_addr:0xf4001000", "bus_addr:0xffffffffffffffff"),
    ] {
        let r = run("hostile", &format!("{kmap}\n{CMD}"), good_records(), done(0, 0x1234));
        assert!(!r.problems.is_empty(), "{kmap}");
    }
}
