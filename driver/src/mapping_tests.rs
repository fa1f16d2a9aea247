//! Host-side tests of the mapping layer: pure logic on a fake fabric, no VFIO.

use std::collections::HashMap;

use dma_range::{walk, ListLimits, ReadFault, Status, RANGE_BUS_ADDR};

use super::*;
use crate::bench::BAR_WINDOW;

/// Two endpoints with 8 MiB BAR2s; `bus_ok[provider][client]` is the P2P decision. BAR
/// windows get IOVAs far apart, so IOVA space is not contiguous across a window boundary.
struct Fake {
    bars: Vec<(u64, u64)>,
    bus_ok: [[bool; 2]; 2],
    windows: Vec<(usize, u64)>,
}

impl Fake {
    fn new(bus_ok: bool) -> Self {
        Self {
            bars: vec![(0xf000_0000, 8 << 20), (0xf800_0000, 8 << 20)],
            bus_ok: [[true, bus_ok], [bus_ok, true]],
            windows: vec![],
        }
    }

    fn window_iova(ep: usize, base: u64) -> u64 {
        0x1_0000_0000 + ep as u64 * 0x1000_0000 + base * 4
    }
}

impl Fabric for Fake {
    fn bar2(&self, ep: usize) -> Result<(u64, u64)> {
        self.bars
            .get(ep)
            .copied()
            .ok_or_else(|| DriverError::Usage(format!("no endpoint {ep}")))
    }

    fn bus_addr_ok(&self, provider: usize, client: usize) -> Result<bool> {
        Ok(self.bus_ok[provider][client])
    }

    fn bar_iova(&mut self, ep: usize, offset: u64) -> Result<(u64, u64)> {
        let (_, size) = self.bar2(ep)?;
        assert!(offset < size);
        let base = offset & !(BAR_WINDOW - 1);
        if !self.windows.contains(&(ep, base)) {
            self.windows.push((ep, base));
        }
        Ok((
            Self::window_iova(ep, base) + offset - base,
            base + BAR_WINDOW.min(size - base) - offset,
        ))
    }
}

fn seg(space: AddrSpace, addr: u64, len: u32, via: Via) -> Segment {
    Segment {
        range: DmaRange::segment(space, addr, len),
        via,
    }
}

fn host(iova: u64, size: u64, offset: u64, len: u64) -> (Place, u64, Route) {
    (Place::Host { iova, size, offset }, len, Route::Auto)
}

#[test]
fn host_ranges_become_iova_segments_split_at_max_seg() {
    let mut f = Fake::new(true);
    let segs = map_places(
        &mut f,
        0,
        &[
            host(0x10_0000, 0x1_0000, 0x100, 0x2345),
            host(0x20_0000, 0x1000, 0, 0x10),
        ],
        0x1000,
    )
    .unwrap();
    let io = |a, l| seg(AddrSpace::Iova, a, l, Via::HostIova);
    assert_eq!(
        segs,
        [
            io(0x10_0100, 0x1000),
            io(0x10_1100, 0x1000),
            io(0x10_2100, 0x345),
            io(0x20_0000, 0x10)
        ]
    );
    assert!(f.windows.is_empty());
}

#[test]
fn ranges_outside_their_memory_or_empty_are_refused() {
    let mut f = Fake::new(true);
    assert!(map_places(&mut f, 0, &[host(0x10_0000, 0x1000, 0xf00, 0x101)], 64).is_err());
    assert!(map_places(&mut f, 0, &[host(0x10_0000, 0x1000, 0, 0)], 64).is_err());
    assert!(map_places(&mut f, 0, &[host(0x10_0000, 0x1000, u64::MAX, 2)], 64).is_err());
    assert!(map_places(
        &mut f,
        0,
        &[(
            Place::Bar {
                ep: 1,
                offset: (8 << 20) - 4
            },
            5,
            Route::Bus
        )],
        64
    )
    .is_err());
    assert!(map_places(&mut f, 0, &[(Place::Bar { ep: 2, offset: 0 }, 5, Route::Bus)], 64).is_err());
    // Exactly to the end is fine.
    assert_eq!(
        map_places(&mut f, 0, &[host(0x10_0000, 0x1000, 0xf00, 0x100)], 64)
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn ranges_longer_than_a_segment_may_be_split_at_4_gib() {
    let mut f = Fake::new(true);
    let len = 10u64 << 30;
    let segs = map_places(&mut f, 0, &[host(0x1_0000_0000, len, 0, len)], u32::MAX).unwrap();
    assert_eq!(segs.len(), 3);
    assert_eq!(
        segs.iter().map(|s| u64::from(s.range.len)).collect::<Vec<_>>(),
        [0xffff_ffff, 0xffff_ffff, len - 2 * 0xffff_ffff]
    );
    assert_eq!(segs[1].range.addr, 0x1_0000_0000 + 0xffff_ffff);
    // Back to back: each starts where the previous one ended.
    assert!(segs.windows(2).all(|w| w[0].range.end() == Some(w[1].range.addr)));
}

#[test]
fn peer_bar_follows_the_p2p_decision_unless_the_route_is_forced() {
    let bar = |route| [(Place::Bar { ep: 1, offset: 0x1000 }, 0x800, route)];
    let bus = |a, l| seg(AddrSpace::Bus, a, l, Via::PeerBus { ep: 1 });
    let via_iommu = |a, l| seg(AddrSpace::Iova, a, l, Via::PeerIova { ep: 1 });
    let w0 = Fake::window_iova(1, 0);

    let mut same_switch = Fake::new(true);
    assert_eq!(
        map_places(&mut same_switch, 0, &bar(Route::Auto), 0x400).unwrap(),
        [bus(0xf800_1000, 0x400), bus(0xf800_1400, 0x400)]
    );
    assert_eq!(
        map_places(&mut same_switch, 0, &bar(Route::Iommu), 0x1000).unwrap(),
        [via_iommu(w0 + 0x1000, 0x800)]
    );

    let mut other_switch = Fake::new(false);
    assert_eq!(
        map_places(&mut other_switch, 0, &bar(Route::Auto), 0x1000).unwrap(),
        [via_iommu(w0 + 0x1000, 0x800)]
    );
    assert_eq!(other_switch.windows, [(1, 0)]);
    assert_eq!(
        map_places(&mut other_switch, 0, &bar(Route::Bus), 0x1000).unwrap(),
        [bus(0xf800_1000, 0x800)]
    );
    // The executing endpoint's own BAR: the fake's decision for (0, 0) is BUS_ADDR.
    let own = map_places(
        &mut other_switch,
        0,
        &[(Place::Bar { ep: 0, offset: 0 }, 16, Route::Auto)],
        64,
    )
    .unwrap();
    assert_eq!(own, [seg(AddrSpace::Bus, 0xf000_0000, 16, Via::PeerBus { ep: 0 })]);
}

#[test]
fn iova_segments_split_where_an_iommu_window_ends() {
    let mut f = Fake::new(false);
    let off = BAR_WINDOW - 0x100;
    let segs = map_places(
        &mut f,
        0,
        &[(Place::Bar { ep: 1, offset: off }, BAR_WINDOW + 0x300, Route::Auto)],
        u32::MAX,
    )
    .unwrap();
    let (w0, w1, w2) = (
        Fake::window_iova(1, 0),
        Fake::window_iova(1, BAR_WINDOW),
        Fake::window_iova(1, 2 * BAR_WINDOW),
    );
    let via = Via::PeerIova { ep: 1 };
    assert_eq!(
        segs,
        [
            seg(AddrSpace::Iova, w0 + off, 0x100, via),
            seg(AddrSpace::Iova, w1, BAR_WINDOW as u32, via),
            seg(AddrSpace::Iova, w2, 0x200, via)
        ]
    );
    assert_eq!(f.windows, [(1, 0), (1, BAR_WINDOW), (1, 2 * BAR_WINDOW)]);
}

/// Walks a laid-out list the way the device does, reading blocks from the layout.
fn walk_layout(l: &Layout) -> std::result::Result<dma_range::WalkedList, dma_range::ListFault> {
    let mem: HashMap<(AddrSpace, u64), &[u8]> = l
        .blocks
        .iter()
        .map(|(b, (sp, a, _))| ((*sp, *a), b.as_slice()))
        .collect();
    walk(l.head, ListLimits::default(), |sp, addr, buf| {
        let b = mem.get(&(sp, addr)).ok_or(ReadFault {
            status: Status::IOMMU_FAULT,
            addr,
        })?;
        buf.copy_from_slice(&b[..buf.len()]);
        Ok(())
    })
}

#[test]
fn chained_layout_puts_blocks_back_to_back_and_walks_to_the_same_segments() {
    let ranges: Vec<DmaRange> = (0..10)
        .map(|i| DmaRange::segment(AddrSpace::Iova, 0x10_0000 + i * 0x1000, 0x100 + i as u32))
        .collect();
    // 4 entries per block: 3 data + CHAIN, 3 data + CHAIN, 4 data.
    assert_eq!(list_footprint(10, 4), (3 * 64, 64));
    let l = layout(&ranges, 4, AddrSpace::Iova, 0x50_0000);
    let placed: Vec<_> = l.blocks.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        placed,
        [
            (AddrSpace::Iova, 0x50_0000, 64),
            (AddrSpace::Iova, 0x50_0040, 64),
            (AddrSpace::Iova, 0x50_0080, 64)
        ]
    );
    assert_eq!((l.head.addr, l.head.len, l.head.flags), (0x50_0000, 64, 0));
    let w = walk_layout(&l).unwrap();
    assert_eq!(w.segments, ranges);
    assert_eq!(w.blocks, placed);
    // The last block holds only what is left.
    let l = layout(&ranges[..8], 4, AddrSpace::Bus, 0xf000_0000);
    assert_eq!(l.blocks.iter().map(|(_, p)| p.2).collect::<Vec<_>>(), [64, 64, 32]);
    assert_eq!(l.head.flags, RANGE_BUS_ADDR);
    assert_eq!(walk_layout(&l).unwrap().segments, &ranges[..8]);
}

#[test]
fn one_block_when_everything_fits_and_max_length_lists_stay_within_the_limits() {
    let ranges: Vec<DmaRange> = (0..4).map(|i| DmaRange::segment(AddrSpace::Iova, i * 64, 64)).collect();
    let l = layout(&ranges, 4, AddrSpace::Iova, 0x1000);
    assert_eq!(l.blocks.len(), 1);
    assert_eq!(l.head.len, 64);
    // block_entries below 2 cannot chain; the layout uses 2.
    assert_eq!(layout(&ranges, 0, AddrSpace::Iova, 0x1000).blocks.len(), 3);
    // 4096 segments in blocks of 66 entries (as the max-length-list case picks) stay under
    // MAX_CHAIN = 64 links.
    let max: Vec<DmaRange> = (0..4096)
        .map(|i| DmaRange::segment(AddrSpace::Iova, i * 64, 64))
        .collect();
    let l = layout(&max, 66, AddrSpace::Iova, 0x100_0000);
    assert!(l.blocks.len() <= 65);
    assert_eq!(walk_layout(&l).unwrap().segments.len(), 4096);
}

#[test]
fn lists_in_a_bar_use_bus_addresses_or_an_iova_inside_one_window() {
    let mut same = Fake::new(true);
    assert_eq!(
        list_base_in_bar(&mut same, 0, 1, 0x30_0000, 0x1000).unwrap(),
        (AddrSpace::Bus, 0xf830_0000)
    );
    let mut other = Fake::new(false);
    assert_eq!(
        list_base_in_bar(&mut other, 0, 1, 0x30_0000, 0x1000).unwrap(),
        (AddrSpace::Iova, Fake::window_iova(1, BAR_WINDOW) + 0x10_0000)
    );
    assert!(
        list_base_in_bar(&mut other, 0, 1, BAR_WINDOW - 0x10, 0x20).is_err(),
        "crosses a window"
    );
    assert!(
        list_base_in_bar(&mut same, 0, 1, (8 << 20) - 0x10, 0x20).is_err(),
        "past the BAR"
    );
}
