//! The mapping layer, in the spirit of the phyr/dma_range proposal: physical ranges in (host
//! buffers, endpoint BAR2 ranges), dma_range lists out.
//!
//! For each range that lives in a peer's BAR, the route is decided as Linux's
//! `pci_p2pdma_map_type()` would (see `p2p`): BUS_ADDR -> the BAR's bus address with the
//! BUS_ADDR flag; otherwise the BAR (its VFIO mmap) is mapped into the IOMMU and the segment
//! carries that IOVA. Host ranges always carry their IOVA. Every range is split so no segment
//! is longer than the caller's limit, and at IOVA-window boundaries of BAR mappings.
//! Lists are then encoded into chained blocks placed in host memory or in a BAR2.

use dma_range::{encode_chained, split_range, AddrSpace, DmaRange, ENTRY_SIZE};

use crate::error::{DriverError, Result};
use crate::hostmem::HostMem;
use crate::p2p::MapType;
use crate::session::Session;
use crate::vfio::DmaPerm;

/// Where bytes live, as the driver sees them.
#[derive(Clone, Copy)]
pub enum Loc<'a> {
    /// Host memory mapped at an IOVA.
    Host { mem: &'a HostMem, offset: u64 },
    /// BAR2 ("peer memory") of endpoint `ep` (possibly the executing endpoint itself).
    Bar { ep: usize, offset: u64 },
}

/// How a BAR range should be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// As the P2P decision says.
    Auto,
    /// Bus address, whatever the decision (to test the device's routing).
    Bus,
    /// IOVA through the IOMMU, whatever the decision.
    Iommu,
}

/// A physical range to map.
#[derive(Clone, Copy)]
pub struct PhysRange<'a> {
    pub loc: Loc<'a>,
    pub len: u64,
    pub route: Route,
}

impl<'a> PhysRange<'a> {
    pub fn host(mem: &'a HostMem, offset: u64, len: u64) -> Self {
        Self { loc: Loc::Host { mem, offset }, len, route: Route::Auto }
    }

    pub fn bar(ep: usize, offset: u64, len: u64, route: Route) -> Self {
        Self { loc: Loc::Bar { ep, offset }, len, route }
    }
}

/// How one segment reaches its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    HostIova,
    PeerBus { ep: usize },
    PeerIova { ep: usize },
    /// Given verbatim by the user (`phyr submit`) or a negative test.
    Raw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub range: DmaRange,
    pub via: Via,
}

/// Maps `ranges` for the device `client` into segments of at most `max_seg` bytes.
pub fn map_ranges(s: &mut Session, client: usize, ranges: &[PhysRange], max_seg: u32) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    for r in ranges {
        if r.len == 0 {
            return Err(DriverError::Usage("a range of length 0 cannot be mapped".into()));
        }
        match r.loc {
            Loc::Host { mem, offset } => {
                check_bounds("host buffer", offset, r.len, mem.len())?;
                out.extend(split_range(AddrSpace::Iova, mem.at(offset), r.len, max_seg).map(|range| Segment { range, via: Via::HostIova }));
            }
            Loc::Bar { ep, offset } => {
                let e = s.ep(ep)?;
                check_bounds(&format!("endpoint {ep} BAR2"), offset, r.len, e.bar2_len())?;
                let bus = e.bar2_bus();
                let use_bus = match r.route {
                    Route::Bus => true,
                    Route::Iommu => false,
                    Route::Auto => s.p2p_decision(ep, client)?.map_type == MapType::BusAddr,
                };
                if use_bus {
                    let segs = split_range(AddrSpace::Bus, bus + offset, r.len, max_seg);
                    out.extend(segs.map(|range| Segment { range, via: Via::PeerBus { ep } }));
                } else {
                    let mut done = 0;
                    while done < r.len {
                        let (iova, contig) = s.bar_iova(ep, offset + done)?;
                        let take = contig.min(r.len - done);
                        let segs = split_range(AddrSpace::Iova, iova, take, max_seg);
                        out.extend(segs.map(|range| Segment { range, via: Via::PeerIova { ep } }));
                        done += take;
                    }
                }
            }
        }
    }
    Ok(out)
}

fn check_bounds(what: &str, offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DriverError::Usage(format!("{what}: range {offset:#x}+{len:#x} is outside its {size:#x} bytes"))),
    }
}

/// Where list blocks are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListAt {
    /// Fresh host memory, addressed by IOVA.
    Host,
    /// Endpoint `ep`'s BAR2 from `offset` on, addressed as the P2P decision says for the
    /// executing endpoint (bus address or IOVA).
    Bar { ep: usize, offset: u64 },
}

/// An encoded list ready to be named by a command.
pub struct BuiltList {
    pub head: DmaRange,
    pub segments: Vec<Segment>,
    /// Each block's address space, address and size, in chain order.
    pub blocks: Vec<(AddrSpace, u64, u32)>,
    /// Keeps host-memory blocks mapped while the list is in use.
    pub storage: Option<HostMem>,
}

impl BuiltList {
    pub fn total_len(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.range.len)).sum()
    }

    pub fn ranges(&self) -> Vec<DmaRange> {
        self.segments.iter().map(|s| s.range).collect()
    }
}

/// Encodes `segments` into chained blocks of at most `block_entries` entries at `at`, for
/// the executing endpoint `client`.
pub fn build_list(s: &mut Session, client: usize, segments: Vec<Segment>, block_entries: usize, at: ListAt) -> Result<BuiltList> {
    if segments.is_empty() {
        return Err(DriverError::Usage("a list needs at least one segment".into()));
    }
    let per = block_entries.max(2);
    let stride = (per * ENTRY_SIZE) as u64;
    let nblocks = dma_range::blocks_needed(segments.len(), per) as u64;
    let ranges: Vec<DmaRange> = segments.iter().map(|s| s.range).collect();
    match at {
        ListAt::Host => {
            let mem = s.alloc_host(nblocks * stride, DmaPerm::ReadOnly)?;
            let base = mem.iova;
            let (head, blocks) = encode_chained(&ranges, per, |i| (AddrSpace::Iova, base + i as u64 * stride));
            let mut placed = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                mem.buf.write(i as u64 * stride, b)?;
                placed.push((AddrSpace::Iova, base + i as u64 * stride, b.len() as u32));
            }
            Ok(BuiltList { head, segments, blocks: placed, storage: Some(mem) })
        }
        ListAt::Bar { ep, offset } => {
            let e = s.ep(ep)?;
            check_bounds(&format!("list in endpoint {ep} BAR2"), offset, nblocks * stride, e.bar2_len())?;
            let (space, base) = if s.p2p_decision(ep, client)?.map_type == MapType::BusAddr {
                (AddrSpace::Bus, s.ep(ep)?.bar2_bus() + offset)
            } else {
                let (iova, contig) = s.bar_iova(ep, offset)?;
                if contig < nblocks * stride {
                    return Err(DriverError::Usage(format!("list of {:#x} bytes crosses a BAR IOVA window", nblocks * stride)));
                }
                (AddrSpace::Iova, iova)
            };
            let (head, blocks) = encode_chained(&ranges, per, |i| (space, base + i as u64 * stride));
            let e = s.ep(ep)?;
            let mut placed = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                e.bar2.write(offset + i as u64 * stride, b)?;
                placed.push((space, base + i as u64 * stride, b.len() as u32));
            }
            Ok(BuiltList { head, segments, blocks: placed, storage: None })
        }
    }
}
