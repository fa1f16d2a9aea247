//! Tests of the line types and the log parser; `tests/round_trip.rs` has the property tests.

use std::sync::atomic::{AtomicU32, Ordering};

use dma_range::{AddrSpace, Completion, DmaRange, ListKind, Opcode, Status, FAULT_LIST_DST};

use super::*;

fn iova(a: u64, l: u32) -> Span {
    Span::from(&DmaRange::segment(AddrSpace::Iova, a, l))
}

/// A command as the driver builds one from a completion.
fn cmd(c: &Completion, op: Opcode, bytes: u64, crc32c: Option<u32>) -> Cmd {
    Cmd {
        ep: 0,
        q: 0,
        id: c.command_id,
        op: Op::Known(op),
        status: CmdStatus::from_code(c.status),
        result: c.result,
        bytes,
        crc32c,
        src: vec![],
        dst: vec![],
        lists: vec![],
        fault: Fault::of(c),
    }
}

#[test]
fn cmd_line_is_one_parseable_line() {
    let c = Completion {
        segment: 2,
        fault_list: FAULT_LIST_DST,
        fault_addr: 0x80000,
        ..Completion::ok(17, Status::IOMMU_FAULT, 0x2000)
    };
    let line = Cmd {
        q: 1,
        src: vec![iova(0x100000, 0x1000), Span::new(AddrSpace::Bus, 0xfe000000, 0x10)],
        lists: vec![iova(0x5000, 32)],
        ..cmd(&c, Opcode::Copy, 4112, None)
    }
    .render();
    assert_eq!(
        line,
        "# phyr-cmd ep=0 q=1 id=17 op=COPY status=IOMMU_FAULT result=0x2000 bytes=4112 crc32c=- \
         src=[iova:0x100000+0x1000,bus:0xfe000000+0x10] dst=[] lists=[iova:0x5000+0x20] fault=list=dst,seg=2,addr=0x80000"
    );
    let parsed = parse_log(&line);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    let f = parsed.cmds[0].cmd.fault.unwrap();
    assert_eq!((f.list, f.segment, f.addr), (ListKind::Dst, 2, 0x80000));
}

/// A max-length list of contiguous segments collapses to one range.
#[test]
fn four_thousand_contiguous_segments_print_one_range() {
    let c = Completion::ok(3, Status::SUCCESS, 4096 * 64);
    let line = Cmd {
        ep: 1,
        src: (0..4096).map(|i| iova(0x10_0000 + i * 64, 64)).collect(),
        lists: (0..64).map(|i| iova(0x80_0000 + i * 0x410, 0x410)).collect(),
        ..cmd(&c, Opcode::Crc32c, 4096 * 64, Some(1))
    }
    .render();
    assert!(
        line.ends_with("src=[iova:0x100000+0x40000] dst=[] lists=[iova:0x800000+0x10400] fault=-"),
        "{line}"
    );
}

#[test]
fn a_list_naming_the_same_bytes_4096_times_prints_one_range_with_a_count() {
    let c = Completion::ok(3, Status::ABORTED_RESET, 0x80_0000);
    let src = vec![Span::new(AddrSpace::Bus, 0xe000_0000, 0x200_0000); 4096];
    let line = Cmd {
        src,
        ..cmd(&c, Opcode::Copy, 4096 << 25, None)
    }
    .render();
    assert!(line.contains(" src=[bus:0xe0000000+0x2000000*4096] "), "{line}");
    let p = parse_log(&line);
    assert_eq!(
        p.cmds[0].cmd.src,
        [Span {
            reps: 4096,
            ..Span::new(AddrSpace::Bus, 0xe000_0000, 0x200_0000)
        }]
    );
}

#[test]
fn long_lists_move_to_phyr_ranges_lines_and_round_trip() {
    let c = Completion::ok(9, Status::SUCCESS, 0);
    // 4096 scattered segments (every other 64-byte slot): nothing merges.
    let src: Vec<Span> = (0..4096).map(|i| iova(0x10_0000 + i * 128, 64)).collect();
    let refs = AtomicU32::new(7);
    let want = Cmd {
        q: 2,
        src: src.clone(),
        dst: vec![iova(0x90_0000, 4096 * 64)],
        lists: vec![Span::new(AddrSpace::Bus, 0xfe00_0000, 0x100), iova(0x5000, 0x20)],
        ..cmd(&c, Opcode::Copy, 4096 * 64, Some(0xbad))
    };
    let out = want.render_with(&refs);
    let first = out.lines().next().unwrap();
    assert!(first.len() <= MAX_CMD_LINE);
    assert!(
        first
            .contains(" src=@7/4096 dst=[iova:0x900000+0x40000] lists=[bus:0xfe000000+0x100,iova:0x5000+0x20] fault=-"),
        "{first}"
    );
    assert!(out.lines().skip(1).all(|l| l.starts_with("# phyr-ranges 7 ")));
    assert!(out.lines().skip(1).all(|l| l.len() < MAX_RANGES_LINE));
    assert!(out.len() < 4096 * 30, "{} bytes", out.len());
    let p = parse_log(&out);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.cmds[0].cmd, want);
    assert_eq!(refs.load(Ordering::Relaxed), 8);
}

#[test]
fn two_long_lists_get_two_references() {
    let c = Completion::ok(1, Status::SUCCESS, 0);
    let refs = AtomicU32::new(1);
    let want = Cmd {
        src: (0..200).map(|i| iova(i * 128, 64)).collect(),
        dst: (0..150)
            .map(|i| Span::new(AddrSpace::Bus, 0xfe00_0000 + i * 128, 64))
            .collect(),
        ..cmd(&c, Opcode::Copy, 0, None)
    };
    let out = want.render_with(&refs);
    assert!(
        out.lines().next().unwrap().contains("src=@1/200 dst=@2/150 lists=[] "),
        "{out}"
    );
    assert_eq!(parse_log(&out).cmds[0].cmd, want);
}

#[test]
fn range_references_are_resolved_from_phyr_ranges_lines() {
    let log = "# phyr-cmd ep=0 q=2 id=5 op=COPY status=SUCCESS result=0x80 bytes=128 crc32c=0x0badf00d \
src=@7/3 dst=[iova:0x900000+0x80] lists=@8/1 fault=-
# phyr-ranges 7 1/2 iova:0x100000+0x40 iova:0x100080+0x20
# phyr-ranges 7 2/2 bus:0xfe010000+0x20
# phyr-ranges 8 1/1 iova:0x5000+0x30
ok 1 something";
    let p = parse_log(log);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.cmds.len(), 1);
    let c = &p.cmds[0].cmd;
    assert_eq!(c.src.len(), 3);
    assert_eq!(c.src[2], Span::new(AddrSpace::Bus, 0xfe010000, 0x20));
    assert_eq!(c.lists, [iova(0x5000, 0x30)]);
}

#[test]
fn lost_phyr_ranges_line_is_a_problem() {
    let head = "# phyr-cmd ep=0 q=2 id=5 op=COPY status=SUCCESS result=0x80 bytes=128 crc32c=- \
src=@7/3 dst=[iova:0x900000+0x80] lists=[] fault=-";
    let p = parse_log(&format!(
        "{head}\n# phyr-ranges 7 1/2 iova:0x100000+0x40 iova:0x100080+0x20"
    ));
    assert_eq!(p.cmds[0].cmd.src.len(), 2);
    assert!(p.problems[0].contains("@7/3"), "{:?}", p.problems);
    // The first part lost: the second arrives out of order.
    let p = parse_log(&format!(
        "{head}\n# phyr-ranges 7 2/2 iova:0x100000+0x40 iova:0x100080+0x20 iova:0+0x1"
    ));
    assert!(p.problems[0].contains("out of order"), "{:?}", p.problems);
    // The phyr-cmd line lost: nobody waits for its ranges.
    let p = parse_log("# phyr-ranges 7 1/1 iova:0x100000+0x40");
    assert!(
        p.problems[0].contains("no phyr-cmd line is waiting"),
        "{:?}",
        p.problems
    );
}

#[test]
fn a_report_line_that_does_not_parse_is_a_problem_naming_the_line() {
    let p = parse_log("noise\n# phyr-cmd ep=x q=0\n# phyr-reset ep=0 kind=warm\n# phyr-other a=b\n");
    assert!(p.cmds.is_empty());
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    assert!(
        p.problems[0].starts_with("console line 2: field `ep=x`"),
        "{:?}",
        p.problems
    );
    assert!(p.problems[1].contains("`kind=warm`"), "{:?}", p.problems);
}

#[test]
fn reset_lines_count_per_endpoint() {
    let nop = |id| {
        format!("# phyr-cmd ep=0 q=0 id={id} op=NOP status=SUCCESS result=0x0 bytes=0 crc32c=- src=[] dst=[] lists=[] fault=-")
    };
    let log = format!(
        "# phyr-reset ep=1 kind=ctrl\n{}\n# phyr-reset ep=0 kind=vfio\n{}\n",
        nop(1),
        nop(2)
    );
    let p = parse_log(&log);
    assert!(p.problems.is_empty());
    assert_eq!((p.cmds[0].resets, p.cmds[1].resets), (0, 1));
}

#[test]
fn kernel_lines_with_a_printk_prefix_are_found() {
    let k = "[   12.345678] phyr 0000:03:00.0: # phyr-kmap ep=0 q=1 id=17 list=src first=0 \
segs=[iova:0x100000+0x1000=none:0x7f3a0000,bus:0xf4000000+0x10000=bus_addr:0xf4000000]";
    let Some(Ok(Line::Kmap(l))) = Line::find(k) else {
        panic!("{:?}", Line::find(k))
    };
    assert_eq!(l.segs[1].map, MapType::BusAddr);
    assert_eq!(l.segs[1].dma.space, l.segs[1].map.space());
    assert_eq!(l.segs[0].phys, 0x7f3a_0000);
    // Not a marker: glued to a word, or an unknown kind.
    assert_eq!(Line::find("echo x# phyr-cmd ep=0"), None);
    assert_eq!(Line::find("# phyr-cmdline ep=0"), None);
    assert_eq!(Line::find("# phyr: endpoints=2"), None);
}

#[test]
fn kmap_lines_attach_to_the_next_phyr_cmd_of_their_command() {
    let log = "# phyr-kmap ep=0 q=1 id=17 list=src first=0 segs=[iova:0x100000+0x1000=none:0x7f3a0000]
# phyr-kmap ep=0 q=1 id=17 list=src first=1 segs=[bus:0xf4000000+0x1000=bus_addr:0xf4000000]
# phyr-kmap ep=0 q=1 id=18 list=dst first=0 segs=[iova:0x200000+0x2000=thru_host_bridge:0xf5000000]
# phyr-cmd ep=0 q=1 id=17 op=CRC32C status=SUCCESS result=0x1 bytes=8192 crc32c=0x00000001 src=[iova:0x100000+0x1000,bus:0xf4000000+0x1000] dst=[] lists=[] fault=-
# phyr-kmap ep=0 q=1 id=18 list=dst first=2 segs=[iova:0x300000+0x2000=thru_host_bridge:0xf5002000]";
    let p = parse_log(log);
    assert_eq!(p.cmds.len(), 1);
    assert_eq!(p.cmds[0].kmap[&ListKind::Src].segs.len(), 2);
    assert!(
        !p.cmds[0].kmap.contains_key(&ListKind::Dst),
        "id 18's line is not id 17's"
    );
    assert!(
        p.problems.len() == 1 && p.problems[0].contains("starts at piece 2, after 1"),
        "{:?}",
        p.problems
    );
}

#[test]
fn a_kmap_list_whose_lines_disagree_on_path_or_state_is_a_problem() {
    let log = "# phyr-kmap ep=0 q=1 id=17 list=src first=0 segs=[iova:0x1000+0x1000=none:0x5000@0] path=iova state=mapped
# phyr-kmap ep=0 q=1 id=17 list=src first=1 segs=[iova:0x2000+0x1000=none:0x9000@0] path=iova state=unmapped
# phyr-cmd ep=0 q=1 id=17 op=CRC32C status=SUCCESS result=0x1 bytes=8192 crc32c=- src=[iova:0x1000+0x2000] dst=[] lists=[] fault=-";
    let p = parse_log(log);
    assert!(
        p.problems.len() == 1
            && p.problems[0].contains("says path=iova state=unmapped, its first line path=iova state=mapped"),
        "{:?}",
        p.problems
    );
    assert!(!p.cmds[0].kmap[&ListKind::Src].unmapped(), "the first line decides");
}

#[test]
fn endpoint_lines_are_kept_by_endpoint_id() {
    let e = |id: u32, phys: &str| {
        format!(
            "# phyr-endpoint index={id} bdf=0000:0{}:00.0 endpoint_id={id} switch_id=0 bar0=0xfe800000+0x4000 bar2=0xf4000000+0x4000000 iommu_group=-{phys}",
            id + 3
        )
    };
    let p = parse_log(&format!(
        "{}\n{}\n{}\n",
        e(0, ""),
        e(1, ""),
        e(0, " bar2_phys=0xf4000000")
    ));
    assert_eq!(p.endpoints.len(), 2);
    assert_eq!(
        p.endpoints[&0].bar2_phys,
        Some(0xf400_0000),
        "the last line of an endpoint wins"
    );
    assert_eq!(p.endpoints[&1].bar2_phys, None);
}

#[test]
fn every_line_kind_prints_what_it_parses() {
    for text in [
        "# phyr-endpoint index=0 bdf=0000:03:00.0 endpoint_id=0 switch_id=0 bar0=0xfe800000+0x4000 bar2=0xf4000000+0x4000000 iommu_group=4",
        "# phyr-endpoint index=1 bdf=0000:04:00.0 endpoint_id=1 switch_id=1 bar0=0x0+0x0 bar2=0x0+0x0 iommu_group=-",
        "# phyr-map kind=host iova=0x100000+0x10000 perm=r",
        "# phyr-map kind=bar ep=1 bar=2 offset=0x0 iova=0x200000+0x200000 perm=rw",
        "# phyr-queue ep=0 q=0 mode=irq size=64 vector=0 sq=iova:0x300000+0x1000 cq=iova:0x301000+0x800",
        "# phyr-queue ep=0 q=3 mode=poll size=8 vector=3 sq=iova:0x300000+0x1000 cq=iova:0x301000+0x800 shadow=iova:0x302000+0x1000",
        "# phyr-cmd ep=0 q=0 id=17 op=0x7 status=0x99 result=0x0 bytes=0 crc32c=- src=[] dst=[] lists=[] fault=-",
        "# phyr-ranges 7 2/3 iova:0x100000+0x40 bus:0xfe010000+0x40*3",
        "# phyr-reset ep=3 kind=vfio",
        "# phyr-kmap ep=0 q=1 id=17 list=list first=4 segs=[]",
        "# phyr-endpoint index=0 bdf=0000:03:00.0 endpoint_id=0 switch_id=0 bar0=0xfe800000+0x4000 bar2=0xf4000000+0x4000000 iommu_group=4 bar2_phys=0xf4000000",
        "# phyr-kmap ep=0 q=1 id=17 list=src first=0 segs=[iova:0xfffec005+0xffb=none:0x29b4005/sgtable@0,bus:0xf4001000+0x1388=bus_addr:0xf4001000/bus_addr_map@1] path=iova state=mapped",
        "# phyr-kmap ep=0 q=1 id=17 list=dst first=3 segs=[iova:0x1000+0x1000=thru_host_bridge:0xf4000000@7] state=unmapped",
        "# phyr-p2p client=0 provider=1 distance=4 decision=bus_addr",
        "# phyr-p2p client=2 provider=0 distance=- decision=not_supported",
    ] {
        let line: Line = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(line.to_string(), text);
        assert_eq!(Line::find(&format!("  {text}\r")), Some(Ok(line)));
    }
}

#[test]
fn hostile_lines_are_errors_not_panics() {
    for text in [
        "# phyr-cmd",
        "# phyr-cmd ep=0 q=0 id=70000 op=NOP status=SUCCESS result=0x0 bytes=0 crc32c=- src=[] dst=[] lists=[] fault=-",
        "# phyr-cmd ep=0 ep=0",
        "# phyr-cmd ep=0 q=0 id=1 op=NOP status=SUCCESS result=0x0 bytes=0 crc32c=- src=[] dst=[] lists=[] fault=list=queue",
        "# phyr-ranges",
        "# phyr-ranges 7 0/2",
        "# phyr-ranges 7 3/2",
        "# phyr-ranges x 1/1",
        "# phyr-endpoint index=0 bdf=zz endpoint_id=0 switch_id=0 bar0=0x0+0x0 bar2=0x0+0x0 iommu_group=-",
        "# phyr-map kind=rom iova=0x0+0x1 perm=rw",
        "# phyr-soak",
        "# phyr-soak guest=1 seed=0x1 state=paused t=1 commands=1 faults=0 corrupted=0 wrong=0 lost=0 inherited=0",
        "# phyr-soak guest=1 seed=0x1 state=end t=1 commands=-1 faults=0 corrupted=0 wrong=0 lost=0 inherited=0",
        "# phyr-soak guest=1 seed=0x1 state=end t=1 commands=1 faults=0 corrupted=0 wrong=0 lost=0",
        "# phyr-soak guest=4294967296 seed=0x1 state=end t=1 commands=1 faults=0 corrupted=0 wrong=0 lost=0 inherited=0",
        "# phyr-map kind=host iova=0x0 perm=rw",
        "# phyr-queue ep=0 q=0 mode=irq size=64 vector=0 sq=mmio:0x0+0x1 cq=iova:0x0+0x1",
        "# phyr-kmap ep=0 q=0 id=1 list=queue first=0 segs=[]",
        "# phyr-kmap ep=0 q=0 id=1 list=src first=0 segs=[iova:0x0+0x1=p2p:0x0]",
        "# phyr-kmap ep=0 q=0 id=1 list=src first=0 segs=[iova:0x0+0x1*2=none:0x0]",
        "# phyr-kmap ep=0 q=0 id=1 list=src first=0 segs=[iova:0x0+0x1]",
        "# phyr-kmap ep=0 q=0 id=1 list=src first=0 segs=[iova:0x0+0x1=none:0x0/dma_map_sg]",
        "# phyr-kmap ep=0 q=0 id=1 list=src first=0 segs=[iova:0x0+0x1=none:0x0@-1]",
        "# phyr-kmap ep=0 q=0 id=1 list=src first=0 segs=[iova:0x0+0x1=none:0x0@0/sgtable]",
        "# phyr-kmap ep=0 q=0 id=1 list=src first=0 segs=[] path=dma",
        "# phyr-kmap ep=0 q=0 id=1 list=src first=0 segs=[] state=gone",
        "# phyr-endpoint index=0 bdf=0000:03:00.0 endpoint_id=0 switch_id=0 bar0=0x0+0x0 bar2=0x0+0x0 iommu_group=- bar2_phys=-",
        "# phyr-p2p client=0 provider=1 distance=-1 decision=bus_addr",
        "# phyr-p2p client=0 provider=1 distance=4 decision=none",
        "# phyr-p2p client=0 provider=1 distance=4",
        "# phyr-nonsense",
        "phyr-cmd ep=0",
    ] {
        assert!(text.parse::<Line>().is_err(), "{text}");
    }
}

#[test]
fn report_line_cut_by_a_kernel_message_at_its_end_is_put_back_together() {
    // Seen on the serial console of a real run (anon-ram recipe, DMAR fault during a fault case).
    let log = "# phyr-map kind=host iova=0x103c000+0x1000 perm=rw[   11.984075] DMAR: [DMA Read NO_PASID] Request \
device [0000:03:00.0] fault addr 0x103a000 [fault reason 0x06] PTE Read access is not set\n\n# phyr-reset ep=0 kind=ctrl\n";
    let p = parse_log(log);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
}

#[test]
fn report_line_cut_mid_field_by_two_kernel_lines_is_put_back_together() {
    let whole =
        "# phyr-cmd ep=0 q=0 id=3 op=NOP status=SUCCESS result=0x0 bytes=0 crc32c=- src=[] dst=[] lists=[] fault=-";
    let (a, b) = whole.split_at(25);
    let log =
        format!("{a}[    7.000001] DMAR: DRHD: handling fault status reg 2\n[    7.000002] DMAR: second line\n{b}\n");
    let p = parse_log(&log);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.cmds.len(), 1);
    assert_eq!(p.cmds[0].cmd.id, 3);
}

#[test]
fn report_line_cut_twice_by_kernel_messages_is_put_back_together() {
    // Seen on the serial console of `just soak` (two DMAR messages during one phyr-cmd line):
    // the continuation of the first cut was itself cut at its end.
    let whole = "# phyr-cmd ep=0 q=0 id=245 op=COPY status=IOMMU_FAULT result=0x90000 bytes=4096 crc32c=- \
                 src=[iova:0x128a10c+0x1000] dst=[bus:0xfac44175+0x1000] lists=[iova:0x1d25b0+0x20] \
                 fault=list=src,seg=0,addr=0x131a10c";
    let (a, b) = whole.split_at(15);
    let log = format!(
        "{a}[   72.643285] DMAR: DRHD: handling fault status reg 2\r\n{b}[   72.643379] DMAR: [DMA Read NO_PASID] \
         Request device [0000:04:00.0] fault addr 0x1369000 [fault reason 0x06] PTE Read access is not set\r\n\r\n\
         # phyr-reset ep=0 kind=ctrl\n"
    );
    let p = parse_log(&log);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.cmds.len(), 1);
    assert_eq!(p.cmds[0].cmd.id, 245);
}

#[test]
fn kernel_report_lines_with_a_timestamp_at_the_start_are_not_cut() {
    let log = "[   12.345678] phyr 0000:03:00.0: # phyr-reset ep=0 kind=ctrl\n";
    assert!(parse_log(log).problems.is_empty());
}
