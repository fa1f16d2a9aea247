//! Property tests: every line prints text that parses back to the same line, a command of any
//! size survives render -> parse_log (its lists merged), and no input makes a parser panic.

use std::sync::atomic::AtomicU32;

use dma_range::{AddrSpace, ListKind, Opcode, Status};
use phyr_report::*;
use proptest::prelude::*;

fn space() -> impl Strategy<Value = AddrSpace> {
    prop_oneof![Just(AddrSpace::Iova), Just(AddrSpace::Bus)]
}

fn span() -> impl Strategy<Value = Span> {
    (space(), any::<u64>(), any::<u64>(), prop_oneof![Just(1u64), 2..5000u64]).prop_map(|(space, addr, len, reps)| {
        Span {
            reps,
            ..Span::new(space, addr, len)
        }
    })
}

/// Segments as a driver hands them out: small, often contiguous or repeated (so merging has
/// work to do).
fn segments() -> impl Strategy<Value = Vec<Span>> {
    prop::collection::vec((space(), 0..4u64, 1..0x3000u64), 0..300).prop_map(|v| {
        let mut at = 0x10_0000u64;
        v.into_iter()
            .map(|(space, step, len)| {
                // 0: contiguous, 1: the same range again, else a gap.
                match step {
                    0 => {}
                    1 => at -= len.min(at),
                    _ => at += step * 0x1_0000,
                }
                let s = Span::new(space, at, len);
                at += len;
                s
            })
            .collect()
    })
}

fn op() -> impl Strategy<Value = Op> {
    any::<u8>().prop_map(Op::from_code)
}

fn status() -> impl Strategy<Value = CmdStatus> {
    prop_oneof![
        prop::sample::select(Status::ALL.to_vec()).prop_map(CmdStatus::Known),
        any::<u16>().prop_map(CmdStatus::from_code)
    ]
}

fn fault() -> impl Strategy<Value = Option<Fault>> {
    prop::option::of(
        (
            prop_oneof![Just(ListKind::Src), Just(ListKind::Dst)],
            any::<u32>(),
            any::<u64>(),
        )
            .prop_map(|(list, segment, addr)| Fault { list, segment, addr }),
    )
}

prop_compose! {
    fn cmd()(ep in any::<u32>(), q in any::<u32>(), id in any::<u16>(), op in op(), status in status(),
             result in any::<u64>(), bytes in any::<u64>(), crc32c in any::<Option<u32>>(),
             src in segments(), dst in segments(), lists in segments(), fault in fault()) -> Cmd {
        Cmd { ep, q, id, op, status, result, bytes, crc32c, src, dst, lists, fault }
    }
}

fn map_type() -> impl Strategy<Value = MapType> {
    prop::sample::select(MapType::ALL.to_vec())
}

fn kernel_seg() -> impl Strategy<Value = KernelSeg> {
    (
        (space(), any::<u64>(), any::<u64>()).prop_map(|(s, a, l)| Span::new(s, a, l)),
        map_type(),
        any::<u64>(),
        prop::option::of(prop::sample::select(KernelCall::ALL.to_vec())),
        any::<Option<u32>>(),
    )
        .prop_map(|(dma, map, phys, call, entry)| KernelSeg {
            dma,
            map,
            phys,
            call,
            entry,
        })
}

fn line() -> impl Strategy<Value = Line> {
    let window = || (any::<u64>(), any::<u64>()).prop_map(|(addr, len)| Window { addr, len });
    let one = || (space(), any::<u64>(), any::<u64>()).prop_map(|(s, a, l)| Span::new(s, a, l));
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            window(),
            window(),
            any::<Option<u32>>(),
            any::<Option<u64>>()
        )
            .prop_map(
                |(index, endpoint_id, switch_id, bar0, bar2, iommu_group, bar2_phys)| Line::Endpoint(EndpointLine {
                    index,
                    bdf: format!("0000:{:02x}:00.{}", index % 256, index % 8),
                    endpoint_id,
                    switch_id,
                    bar0,
                    bar2,
                    iommu_group,
                    bar2_phys
                })
            ),
        (
            prop::option::of((any::<u32>(), any::<u8>(), any::<u64>())),
            window(),
            any::<bool>()
        )
            .prop_map(|(bar, iova, rw)| Line::Map(MapLine {
                target: bar.map_or(MapTarget::Host, |(ep, bar, offset)| MapTarget::Bar { ep, bar, offset }),
                iova,
                perm: if rw { Perm::ReadWrite } else { Perm::Read },
            })),
        (
            any::<u32>(),
            any::<u32>(),
            prop::sample::select(QueueMode::ALL.to_vec()),
            any::<u32>(),
            any::<u32>(),
            one(),
            one(),
            prop::option::of(one())
        )
            .prop_map(|(ep, q, mode, size, vector, sq, cq, shadow)| Line::Queue(QueueLine {
                ep,
                q,
                mode,
                size,
                vector,
                sq,
                cq,
                shadow
            })),
        (cmd(), any::<u32>()).prop_map(|(c, n)| Line::Cmd(c.lines_with(&AtomicU32::new(n)).0)),
        (any::<u32>(), 1..10u32, 0..10u32, prop::collection::vec(span(), 0..20)).prop_map(|(n, part, more, spans)| {
            Line::Ranges(RangesLine {
                n,
                part,
                parts: part + more,
                spans,
            })
        }),
        (any::<u32>(), any::<bool>()).prop_map(|(ep, vfio)| Line::Reset(ResetLine {
            ep,
            kind: if vfio { ResetKind::Vfio } else { ResetKind::Ctrl }
        })),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            0..3u8,
            any::<u32>(),
            prop::collection::vec(kernel_seg(), 0..20),
            prop::option::of(prop::sample::select(KernelPath::ALL.to_vec())),
            prop::option::of(prop::sample::select(MapState::ALL.to_vec()))
        )
            .prop_map(|(ep, q, id, list, first, segs, path, state)| Line::Kmap(KmapLine {
                ep,
                q,
                id,
                list: ListKind::from_u8(list).unwrap(),
                first,
                segs,
                path,
                state,
            })),
        (
            any::<u32>(),
            any::<u32>(),
            any::<Option<u32>>(),
            prop::sample::select(P2pDecision::ALL.to_vec())
        )
            .prop_map(|(client, provider, distance, decision)| Line::P2p(P2pLine {
                client,
                provider,
                distance,
                decision
            })),
        (
            (any::<u32>(), any::<u64>(), any::<bool>(), any::<u64>()),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>()
            )
        )
            .prop_map(
                |((guest, seed, end, t), (commands, faults, corrupted, wrong, lost, inherited))| Line::Soak(SoakLine {
                    guest,
                    seed,
                    state: if end { SoakState::End } else { SoakState::Running },
                    t,
                    commands,
                    faults,
                    corrupted,
                    wrong,
                    lost,
                    inherited
                })
            ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_line_parses_back_to_itself(l in line()) {
        let text = l.to_string();
        prop_assert!(!text.contains('\n'));
        prop_assert_eq!(text.parse::<Line>(), Ok(l.clone()));
        prop_assert_eq!(Line::find(&format!("[   1.000000] phyr: {text}")), Some(Ok(l)));
    }

    #[test]
    fn a_command_survives_render_and_parse_with_its_lists_merged(c in cmd(), first_ref in 1..1000u32) {
        let text = c.render_with(&AtomicU32::new(first_ref));
        let log = parse_log(&format!("noise\n{text}\nok 1 done\n"));
        prop_assert!(log.problems.is_empty(), "{:?}", log.problems);
        prop_assert_eq!(log.cmds.len(), 1);
        let want = Cmd { src: merge(c.src.clone()), dst: merge(c.dst.clone()), lists: merge(c.lists.clone()), ..c };
        prop_assert_eq!(&log.cmds[0].cmd, &want);
        let mut lines = text.lines();
        prop_assert!(lines.next().is_some_and(|l| l.len() <= MAX_CMD_LINE));
        prop_assert!(lines.all(|l| l.len() < MAX_RANGES_LINE));
    }

    #[test]
    fn kmap_lines_split_short_and_put_back_together(
        segs in prop::collection::vec(kernel_seg(), 0..300),
        path in prop::sample::select(KernelPath::ALL.to_vec()),
        state in prop::sample::select(MapState::ALL.to_vec()),
    ) {
        let head = KmapLine { ep: 1, q: 2, id: 3, list: ListKind::Dst, first: 0, segs: Vec::new(), path: Some(path), state: Some(state) };
        let lines = KmapLine::split(&head, &segs);
        let mut log: String = lines.iter().map(|l| format!("{l}\n")).collect();
        for l in &lines {
            prop_assert!(l.segs.len() <= 1 || l.to_string().len() <= MAX_RANGES_LINE, "{}", l);
        }
        log.push_str("# phyr-cmd ep=1 q=2 id=3 op=NOP status=SUCCESS result=0x0 bytes=0 crc32c=- src=[] dst=[] lists=[] fault=-\n");
        let p = parse_log(&log);
        prop_assert!(p.problems.is_empty(), "{:?}", p.problems);
        let k = &p.cmds[0].kmap[&ListKind::Dst];
        prop_assert_eq!((&k.segs, k.path, k.state), (&segs, Some(path), Some(state)));
    }

    #[test]
    fn merging_twice_changes_nothing(s in segments()) {
        let once = merge(s);
        prop_assert_eq!(merge(once.clone()), once);
    }

    #[test]
    fn no_console_line_makes_the_parser_panic(text in "(# phyr-(cmd|ranges|kmap|reset|map|queue|endpoint|p2p|soak) )?[ -~]{0,200}") {
        let _ = Line::find(&text);
        let _ = parse_log(&text);
    }

    #[test]
    fn mangled_report_lines_make_no_panic(c in cmd(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut text = c.render_with(&AtomicU32::new(1)).into_bytes();
        let i = cut.index(text.len());
        text[i] = byte;
        let _ = parse_log(&String::from_utf8_lossy(&text));
    }
}

#[test]
fn opcode_names_and_numbers_parse_to_the_same_op() {
    assert_eq!("COPY".parse::<Op>(), Ok(Op::Known(Opcode::Copy)));
    assert_eq!("0x1".parse::<Op>(), Ok(Op::Known(Opcode::Copy)));
    assert_eq!("0x7".parse::<Op>(), Ok(Op::Unknown(7)));
    assert!("copy".parse::<Op>().is_err());
    assert_eq!("0x40".parse::<CmdStatus>(), Ok(CmdStatus::Known(Status::ABORTED_RESET)));
}
