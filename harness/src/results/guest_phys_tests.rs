//! Tests of `guest_phys.rs`: the q35 layout rule, recipe parsing, and the mapping replay.

use super::*;
use phyr_trace::Direction;
use std::path::Path;

const MIB: u64 = 1 << 20;

fn recipe(text: &str) -> Result<RamLayout, LayoutError> {
    let full = format!("# phyr: endpoints=1 memory=anon\n{text}\n-device {{\"driver\":\"vfio-user-pci\",\"socket\":{{\"type\":\"unix\",\"path\":\"@SOCKET_DIR@/ep0.sock\"}}}}\n");
    RamLayout::from_recipe(&Recipe::parse("t", Path::new("t.args"), &full).unwrap())
}

#[test]
fn q35_splits_ram_at_2g_from_0xb0000000_up_else_at_0xb0000000() {
    assert_eq!(RamLayout::q35(GIB, None).below_4g, GIB);
    assert_eq!(RamLayout::q35(0xafff_ffff, None).below_4g, 0xafff_ffff);
    assert_eq!(RamLayout::q35(0xb000_0000, None).below_4g, 0x8000_0000);
    assert_eq!(RamLayout::q35(4 * GIB, None).below_4g, 2 * GIB);
    // max-ram-below-4g only lowers the split (0 means unset, as in QEMU).
    assert_eq!(RamLayout::q35(4 * GIB, Some(GIB)).below_4g, GIB);
    assert_eq!(RamLayout::q35(GIB, Some(512 * MIB)).below_4g, 512 * MIB);
    assert_eq!(RamLayout::q35(4 * GIB, Some(3 * GIB)).below_4g, 2 * GIB);
    assert_eq!(RamLayout::q35(4 * GIB, Some(0)).below_4g, 2 * GIB);
}

#[test]
fn ram_offsets_map_below_and_above_4g_and_straddle_in_two_ranges() {
    let l = RamLayout::q35(4 * GIB, None);
    assert_eq!(l.gpa_ranges(0x1234, 8), Ok(vec![(0x1234, 8)]));
    assert_eq!(l.gpa_ranges(2 * GIB, 0x1000), Ok(vec![(4 * GIB, 0x1000)]));
    assert_eq!(l.gpa_ranges(3 * GIB + 5, 1), Ok(vec![(5 * GIB + 5, 1)]));
    assert_eq!(
        l.gpa_ranges(2 * GIB - 0x800, 0x1000),
        Ok(vec![(2 * GIB - 0x800, 0x800), (4 * GIB, 0x800)])
    );
    assert_eq!(
        l.gpa_ranges(4 * GIB - 4, 8),
        Err(Unresolved::PastRam {
            offset: 4 * GIB - 4,
            len: 8,
            ram: 4 * GIB
        })
    );
    assert!(matches!(l.gpa_ranges(u64::MAX, 2), Err(Unresolved::PastRam { .. })));
}

#[test]
fn shipped_recipes_have_the_layouts_measured_in_their_guests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-configs");
    let load = |n: &str| RamLayout::from_recipe(&Recipe::load(n, &dir).unwrap()).unwrap();
    // /proc/iomem: 00100000-3ffdffff System RAM (1 GiB, all below 4 GiB).
    assert_eq!(
        load("default"),
        RamLayout {
            size: GIB,
            below_4g: GIB
        }
    );
    // /proc/iomem: 00100000-7ffdffff and 100000000-17fffffff System RAM.
    let big = load("bar2-8g");
    assert_eq!(
        big,
        RamLayout {
            size: 4 * GIB,
            below_4g: 2 * GIB
        }
    );
    assert_eq!(big.gpa_ranges(4 * GIB - 1, 1), Ok(vec![(0x1_7fff_ffff, 1)]));
    // Anonymous RAM has no fd, but its layout is the same.
    assert_eq!(load("anon-ram").size, GIB);
}

#[test]
fn recipe_sizes_come_from_m_or_the_backend() {
    assert_eq!(recipe("-machine q35\n-m 2048").unwrap().size, 2 * GIB);
    assert_eq!(
        recipe("-machine pc-q35-11.1\n-m size=3G,slots=2,maxmem=8G")
            .unwrap()
            .size,
        3 * GIB
    );
    assert_eq!(recipe("-M type=q35").unwrap().size, DEFAULT_RAM);
    let l = recipe("-machine q35,memory-backend=m0,max-ram-below-4g=1G\n-object memory-backend-memfd,id=m0,size=4294967296,share=on").unwrap();
    assert_eq!(
        l,
        RamLayout {
            size: 4 * GIB,
            below_4g: GIB
        }
    );
}

#[test]
fn recipe_layout_errors_name_the_problem() {
    assert!(matches!(recipe("-m 1G"), Err(LayoutError::NotQ35 { machine, .. }) if machine == "pc"));
    assert!(matches!(
        recipe("-machine microvm\n-m 1G"),
        Err(LayoutError::NotQ35 { .. })
    ));
    let e = recipe("-machine q35,memory-backend=mem\n-object memory-backend-memfd,id=mem,size=2G\n-m 1G").unwrap_err();
    assert_eq!(
        e,
        LayoutError::SizeMismatch {
            recipe: "t".into(),
            m: GIB,
            backend: "mem".into(),
            size: 2 * GIB
        }
    );
    let e = recipe("-machine q35,memory-backend=nope\n-m 1G").unwrap_err();
    assert!(e.to_string().contains("no -object with id=nope"), "{e}");
    let e = recipe("-machine q35,memory-backend=mem\n-object memory-backend-memfd,id=mem,share=on").unwrap_err();
    assert!(e.to_string().contains("has no size="), "{e}");
    assert!(recipe("-machine q35\n-m 1X").unwrap_err().to_string().contains("-m 1X"));
    assert!(recipe("-machine q35\n-m 0")
        .unwrap_err()
        .to_string()
        .contains("RAM size is 0"));
    assert!(matches!(
        recipe("-machine q35\n-m 1000G"),
        Err(LayoutError::TooLarge { .. })
    ));
    assert!(recipe("-machine q35\n-m 900G").is_ok());
    let e = recipe("-machine q35,max-ram-below-4g=lots\n-m 1G").unwrap_err();
    assert!(e.to_string().contains("max-ram-below-4g=lots"), "{e}");
}

#[test]
fn sizes_parse_like_qemus() {
    assert_eq!(parse_size("1G", MIB), Ok(GIB));
    assert_eq!(parse_size("1024", MIB), Ok(GIB));
    assert_eq!(parse_size("1024", 1), Ok(1024));
    assert_eq!(parse_size("512m", 1), Ok(512 * MIB));
    assert_eq!(parse_size("2GB", 1), Ok(2 * GIB));
    assert_eq!(parse_size("1T", 1), Ok(1 << 40));
    assert_eq!(parse_size("8k", MIB), Ok(8192));
    for bad in ["", "G", "1.5G", "1Q", "-1", "0x10"] {
        assert!(parse_size(bad, 1).is_err(), "{bad:?}");
    }
    assert!(parse_size("99999999999999T", 1).unwrap_err().contains("overflows"));
}

fn ev(t_ns: u64, endpoint: u16, event: Event) -> Record {
    Record {
        t_ns,
        payload: Payload::Event { endpoint, event },
    }
}

fn map(t: u64, iova: u64, size: u64, fd_offset: Option<u64>) -> Record {
    ev(
        t,
        0,
        Event::DmaMap {
            iova,
            size,
            readable: true,
            writable: true,
            has_fd: fd_offset.is_some(),
            fd_offset,
        },
    )
}

fn unmap(t: u64, iova: u64, size: u64) -> Record {
    ev(t, 0, Event::DmaUnmap { iova, size, all: false })
}

/// A successful IOVA access of `len` bytes at `addr`, `offset` into its mapping.
fn access(addr: u64, offset: u64, len: u32, dur_ns: u32) -> DmaRecord {
    DmaRecord {
        endpoint: 0,
        queue: 0,
        command_id: 1,
        opcode: 1,
        segment: 0,
        list: 0,
        direction: Direction::Read,
        space: Space::Iova,
        addr,
        len,
        target: Target::GuestMemory { mapping: 0, offset },
        status: 0,
        crc32c: None,
        dur_ns,
    }
}

const L1G: RamLayout = RamLayout {
    size: GIB,
    below_4g: GIB,
};
const L4G: RamLayout = RamLayout {
    size: 4 * GIB,
    below_4g: 2 * GIB,
};

#[test]
fn an_access_resolves_through_its_mappings_fd_offset() {
    let recs = [
        ev(1, 0, Event::Connected),
        map(10, 0xfffe_c000, 0x1000, Some(0x29b_4000)),
    ];
    let g = GuestPhys::from_records(L1G, &recs);
    let a = g.resolve(20, &access(0xfffe_c005, 5, 0xffb, 300)).unwrap();
    assert_eq!(a.ram_offset, 0x29b_4005);
    assert_eq!((a.gpa(), a.ranges.len()), (0x29b_4005, 1));
    // Above the split of a 4 GiB guest.
    let recs = [map(10, 0x10_0000, 0x1000, Some(0x9000_0000))];
    let g = GuestPhys::from_records(L4G, &recs);
    assert_eq!(
        g.resolve(20, &access(0x10_0010, 0x10, 16, 0)).unwrap().gpa(),
        0x1_1000_0010
    );
}

#[test]
fn a_reused_iova_resolves_to_the_mapping_live_at_the_time() {
    let recs = [
        map(10, 0x5000, 0x1000, Some(0x1000)),
        unmap(30, 0x5000, 0x1000),
        map(40, 0x5000, 0x1000, Some(0x7000)),
    ];
    // Records in any order: the replay sorts by time.
    let g = GuestPhys::from_records(L1G, recs.iter().rev());
    assert_eq!(g.resolve(20, &access(0x5000, 0, 8, 5)).unwrap().gpa(), 0x1000);
    assert_eq!(g.resolve(30, &access(0x5008, 8, 8, 0)).unwrap().gpa(), 0x1008);
    assert_eq!(g.resolve(50, &access(0x5000, 0, 8, 5)).unwrap().gpa(), 0x7000);
    assert_eq!(
        g.resolve(35, &access(0x5000, 0, 8, 1)),
        Err(Unresolved::NoMapping {
            endpoint: 0,
            iova: 0x5000,
            t_ns: 35
        })
    );
    // Started under the first mapping, still running when the second appeared.
    assert_eq!(
        g.resolve(25, &access(0x5000, 0, 8, 20)),
        Err(Unresolved::Ambiguous {
            endpoint: 0,
            iova: 0x5000,
            t_ns: 25,
            dur_ns: 20
        })
    );
    // Another endpoint has its own mappings.
    let mut other = access(0x5000, 0, 8, 0);
    other.endpoint = 1;
    assert!(matches!(
        g.resolve(20, &other),
        Err(Unresolved::NoMapping { endpoint: 1, .. })
    ));
}

#[test]
fn sessions_and_unmap_all_end_every_mapping() {
    let recs = [
        map(10, 0x1000, 0x1000, Some(0)),
        map(11, 0x2000, 0x1000, Some(0x1000)),
        ev(20, 0, Event::Disconnected),
        ev(30, 0, Event::Connected),
        map(40, 0x3000, 0x1000, Some(0x2000)),
        ev(
            50,
            0,
            Event::DmaUnmap {
                iova: 0,
                size: 0,
                all: true,
            },
        ),
    ];
    let g = GuestPhys::from_records(L1G, &recs);
    assert!(g.resolve(15, &access(0x2000, 0, 4, 0)).is_ok());
    assert!(matches!(
        g.resolve(25, &access(0x2000, 0, 4, 0)),
        Err(Unresolved::NoMapping { .. })
    ));
    assert!(g.resolve(45, &access(0x3000, 0, 4, 0)).is_ok());
    assert!(matches!(
        g.resolve(55, &access(0x3000, 0, 4, 0)),
        Err(Unresolved::NoMapping { .. })
    ));
    // A range unmap removes every mapping that starts inside it.
    let recs = [
        map(10, 0x1000, 0x1000, Some(0)),
        map(11, 0x2000, 0x1000, Some(0x1000)),
        unmap(20, 0x1000, 0x2000),
    ];
    let g = GuestPhys::from_records(L1G, &recs);
    assert!(matches!(
        g.resolve(25, &access(0x2000, 0, 4, 0)),
        Err(Unresolved::NoMapping { .. })
    ));
}

#[test]
fn accesses_without_a_guest_physical_answer_say_why() {
    let recs = [
        map(10, 0x1000, 0x1000, Some(GIB - 0x800)),
        map(10, 0x8000, 0x1000, None),
        ev(
            10,
            0,
            Event::DmaMap {
                iova: 0x9000,
                size: 0x1000,
                readable: true,
                writable: false,
                has_fd: true,
                fd_offset: None,
            },
        ),
    ];
    let g = GuestPhys::from_records(L1G, &recs);
    let mut bus = access(0xf400_0000, 0, 8, 0);
    bus.space = Space::Bus;
    assert_eq!(g.resolve(20, &bus), Err(Unresolved::NotIova(Space::Bus)));
    let mut failed = access(0x1000, 0, 8, 0);
    failed.target = Target::None;
    assert_eq!(g.resolve(20, &failed), Err(Unresolved::NoGuestMemory));
    let mut msg = access(0x8000, 0, 8, 0);
    msg.space = Space::Message;
    assert_eq!(g.resolve(20, &msg), Err(Unresolved::NoFd { iova: 0x8000 }));
    assert_eq!(
        g.resolve(20, &access(0x9000, 0, 8, 0)),
        Err(Unresolved::FdOffsetNotRecorded { iova: 0x9000 })
    );
    assert!(matches!(
        g.resolve(20, &access(0x1ff0, 0xff0, 0x20, 0)),
        Err(Unresolved::PastMapping { .. })
    ));
    // The mapping's fd offset puts the access past the RAM: not guest RAM, or a wrong layout.
    assert!(matches!(
        g.resolve(20, &access(0x1900, 0x900, 8, 0)),
        Err(Unresolved::PastRam { .. })
    ));
    assert!(g.resolve(20, &access(0x1000, 0, 0x800, 0)).is_ok());
}

#[test]
fn a_trace_that_dropped_records_is_not_trusted() {
    let recs = [
        map(10, 0x1000, 0x1000, Some(0)),
        ev(99, 0, Event::Dropped { records: 3 }),
    ];
    let g = GuestPhys::from_records(L1G, &recs);
    assert_eq!(
        g.resolve(20, &access(0x1000, 0, 8, 0)),
        Err(Unresolved::Incomplete {
            endpoint: 0,
            records: 3
        })
    );
}

#[test]
fn mappings_round_trip_through_real_trace_files() {
    use phyr_trace::{Recorder, TraceClock, TraceConfig};
    let dir = std::env::temp_dir().join(format!("phyr-guest-phys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for ep in [0u16, 1] {
        let r = Recorder::create(&dir, ep, &TraceConfig::default(), &TraceClock::new()).unwrap();
        r.record(Record {
            t_ns: 10,
            payload: Payload::Event {
                endpoint: ep,
                event: Event::DmaMap {
                    iova: 0x10_0000,
                    size: 0x1000,
                    readable: true,
                    writable: true,
                    has_fd: true,
                    fd_offset: Some(0x8000_0000 + u64::from(ep) * 0x1000),
                },
            },
        });
        r.flush().unwrap();
    }
    let g = GuestPhys::from_trace_dir(L4G, &dir).unwrap();
    let mut a = access(0x10_0004, 4, 4, 0);
    assert_eq!(g.resolve(20, &a).unwrap().gpa(), 4 * GIB + 4);
    a.endpoint = 1;
    assert_eq!(g.resolve(20, &a).unwrap().gpa(), 4 * GIB + 0x1004);
    assert!(GuestPhys::from_trace_dir(L4G, &dir.join("nope")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
