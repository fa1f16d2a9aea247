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

use crate::bench::Bench;
use crate::error::{DriverError, Result};
use crate::hostmem::HostMem;
use crate::p2p::MapType;
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
        Self {
            loc: Loc::Host { mem, offset },
            len,
            route: Route::Auto,
        }
    }

    pub fn bar(ep: usize, offset: u64, len: u64, route: Route) -> Self {
        Self {
            loc: Loc::Bar { ep, offset },
            len,
            route,
        }
    }
}

/// How one segment reaches its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    HostIova,
    PeerBus {
        ep: usize,
    },
    PeerIova {
        ep: usize,
    },
    /// Given verbatim by the user (`phyr submit`) or a negative test.
    Raw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub range: DmaRange,
    pub via: Via,
}

/// What the mapping layer needs to know about the fabric (a `Bench` in the driver, a fake
/// in the tests): BAR2 bus addresses and sizes, the P2P decision, IOMMU windows on BARs.
pub trait Fabric {
    /// Endpoint `ep`'s BAR2: bus address and usable size.
    fn bar2(&self, ep: usize) -> Result<(u64, u64)>;
    /// Whether `client` may reach `provider`'s BAR by bus address (the P2P decision).
    fn bus_addr_ok(&self, provider: usize, client: usize) -> Result<bool>;
    /// The IOVA of byte `offset` of `ep`'s BAR2 through the IOMMU, and how many bytes stay
    /// contiguous in IOVA space from there.
    fn bar_iova(&mut self, ep: usize, offset: u64) -> Result<(u64, u64)>;
}

impl Fabric for Bench {
    fn bar2(&self, ep: usize) -> Result<(u64, u64)> {
        let e = self.ep(ep)?;
        Ok((e.bar2_bus(), e.bar2_len()))
    }

    fn bus_addr_ok(&self, provider: usize, client: usize) -> Result<bool> {
        Ok(self.p2p_decision(provider, client)?.map_type == MapType::BusAddr)
    }

    fn bar_iova(&mut self, ep: usize, offset: u64) -> Result<(u64, u64)> {
        Bench::bar_iova(self, ep, offset)
    }
}

/// A physical range reduced to what mapping needs: host memory as (IOVA, size), or a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Host { iova: u64, size: u64, offset: u64 },
    Bar { ep: usize, offset: u64 },
}

impl PhysRange<'_> {
    pub fn place(&self) -> Place {
        match self.loc {
            Loc::Host { mem, offset } => Place::Host {
                iova: mem.iova,
                size: mem.len(),
                offset,
            },
            Loc::Bar { ep, offset } => Place::Bar { ep, offset },
        }
    }
}

/// Maps `ranges` for the device `client` into segments of at most `max_seg` bytes.
pub fn map_ranges(s: &mut Bench, client: usize, ranges: &[PhysRange], max_seg: u32) -> Result<Vec<Segment>> {
    let places: Vec<(Place, u64, Route)> = ranges.iter().map(|r| (r.place(), r.len, r.route)).collect();
    map_places(s, client, &places, max_seg)
}

/// The mapping itself: each `(place, len, route)` becomes segments of at most `max_seg`
/// bytes, host ranges by IOVA, BAR ranges by bus address or IOVA as `route` and the P2P
/// decision say (IOVA ranges split again where an IOMMU window ends).
pub fn map_places(
    f: &mut impl Fabric,
    client: usize,
    places: &[(Place, u64, Route)],
    max_seg: u32,
) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    for &(place, len, route) in places {
        if len == 0 {
            return Err(DriverError::Usage("a range of length 0 cannot be mapped".into()));
        }
        match place {
            Place::Host { iova, size, offset } => {
                check_bounds("host buffer", offset, len, size)?;
                out.extend(
                    split_range(AddrSpace::Iova, iova + offset, len, max_seg).map(|range| Segment {
                        range,
                        via: Via::HostIova,
                    }),
                );
            }
            Place::Bar { ep, offset } => {
                let (bus, size) = f.bar2(ep)?;
                check_bounds(&format!("endpoint {ep} BAR2"), offset, len, size)?;
                let use_bus = match route {
                    Route::Bus => true,
                    Route::Iommu => false,
                    Route::Auto => f.bus_addr_ok(ep, client)?,
                };
                if use_bus {
                    let segs = split_range(AddrSpace::Bus, bus + offset, len, max_seg);
                    out.extend(segs.map(|range| Segment {
                        range,
                        via: Via::PeerBus { ep },
                    }));
                } else {
                    let mut done = 0;
                    while done < len {
                        let (iova, contig) = f.bar_iova(ep, offset + done)?;
                        let take = contig.min(len - done);
                        let segs = split_range(AddrSpace::Iova, iova, take, max_seg);
                        out.extend(segs.map(|range| Segment {
                            range,
                            via: Via::PeerIova { ep },
                        }));
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
        _ => Err(DriverError::Usage(format!(
            "{what}: range {offset:#x}+{len:#x} is outside its {size:#x} bytes"
        ))),
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

/// A list laid out in memory: the head for the command and each block's bytes and
/// (space, address, size), in chain order.
pub struct Layout {
    pub head: DmaRange,
    pub blocks: Vec<(Vec<u8>, (AddrSpace, u64, u32))>,
}

/// Bytes a list of `segments` needs with `block_entries` entries per block, and the stride
/// between blocks (blocks sit back to back, each at a multiple of the stride).
pub fn list_footprint(segments: usize, block_entries: usize) -> (u64, u64) {
    let per = block_entries.max(2);
    let stride = (per * ENTRY_SIZE) as u64;
    (dma_range::blocks_needed(segments, per) as u64 * stride, stride)
}

/// Encodes `ranges` into chained blocks of at most `block_entries` entries, block `i` at
/// `base + i * stride` in `space`.
pub fn layout(ranges: &[DmaRange], block_entries: usize, space: AddrSpace, base: u64) -> Layout {
    let per = block_entries.max(2);
    let (_, stride) = list_footprint(ranges.len(), per);
    let (head, bytes) = encode_chained(ranges, per, |i| (space, base + i as u64 * stride));
    let blocks = bytes
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let len = b.len() as u32;
            (b, (space, base + i as u64 * stride, len))
        })
        .collect();
    Layout { head, blocks }
}

/// Where in `client`'s view a list of `bytes` bytes stored at `offset` in `ep`'s BAR2 lives:
/// bus address if the P2P decision allows, else IOVA (which must not cross a window).
pub fn list_base_in_bar(
    f: &mut impl Fabric,
    client: usize,
    ep: usize,
    offset: u64,
    bytes: u64,
) -> Result<(AddrSpace, u64)> {
    let (bus, size) = f.bar2(ep)?;
    check_bounds(&format!("list in endpoint {ep} BAR2"), offset, bytes, size)?;
    if f.bus_addr_ok(ep, client)? {
        return Ok((AddrSpace::Bus, bus + offset));
    }
    let (iova, contig) = f.bar_iova(ep, offset)?;
    if contig < bytes {
        return Err(DriverError::Usage(format!(
            "list of {bytes:#x} bytes crosses a BAR IOVA window"
        )));
    }
    Ok((AddrSpace::Iova, iova))
}

/// Encodes `segments` into chained blocks of at most `block_entries` entries at `at`, for
/// the executing endpoint `client`.
pub fn build_list(
    s: &mut Bench,
    client: usize,
    segments: Vec<Segment>,
    block_entries: usize,
    at: ListAt,
) -> Result<BuiltList> {
    if segments.is_empty() {
        return Err(DriverError::Usage("a list needs at least one segment".into()));
    }
    let (bytes, _) = list_footprint(segments.len(), block_entries);
    let ranges: Vec<DmaRange> = segments.iter().map(|s| s.range).collect();
    match at {
        ListAt::Host => {
            let mem = s.alloc_host(bytes, DmaPerm::ReadOnly)?;
            let l = layout(&ranges, block_entries, AddrSpace::Iova, mem.iova);
            for (b, (_, addr, _)) in &l.blocks {
                mem.buf.write(addr - mem.iova, b)?;
            }
            let blocks = l.blocks.into_iter().map(|(_, p)| p).collect();
            Ok(BuiltList {
                head: l.head,
                segments,
                blocks,
                storage: Some(mem),
            })
        }
        ListAt::Bar { ep, offset } => {
            let (space, base) = list_base_in_bar(s, client, ep, offset, bytes)?;
            let l = layout(&ranges, block_entries, space, base);
            let e = s.ep(ep)?;
            for (b, (_, addr, _)) in &l.blocks {
                e.bar2.write(offset + (addr - base), b)?;
            }
            let blocks = l.blocks.into_iter().map(|(_, p)| p).collect();
            Ok(BuiltList {
                head: l.head,
                segments,
                blocks,
                storage: None,
            })
        }
    }
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
