//! Which guest-physical address did an IOVA access touch? The device side of the kernel-path
//! oracle (issue 15): the kernel driver reports, per segment, the physical address it mapped;
//! the device's trace says which IOVA it accessed and, through the mapping that IOVA fell in,
//! which offset of the guest RAM file (the memfd QEMU passed with DMA_MAP); the recipe's memory
//! layout turns that offset into a guest-physical address.
//!
//! - [`RamLayout`]: QEMU 11.1's q35 RAM split, read from the recipe (`-m`, `-machine
//!   max-ram-below-4g=`, the memory backend's `size=`). QEMU's `pc_q35_init()`: `lowmem` is
//!   0x80000000 if the RAM size is at least 0xb0000000, else 0xb0000000, capped by
//!   max-ram-below-4g; `pc_memory_init()` maps RAM offsets `[0, lowmem)` at guest-physical 0
//!   ("ram-below-4g") and the rest at 4 GiB ("ram-above-4g", `above_4g_mem_start`).
//! - [`GuestPhys`]: each endpoint's DMA mappings over time, replayed from the trace's `DmaMap`
//!   / `DmaUnmap` / `Connected` / `Disconnected` events (format version 2 records each
//!   mapping's fd offset), and [`GuestPhys::resolve`] for one DMA record: the mapping the access
//!   fell in is the one starting at `addr - target offset` (the record's `GuestMemory` target)
//!   that was live while the access ran.
//!
//! An answer is refused, with the reason, rather than guessed: for an access that failed or
//! was not to guest memory, a mapping QEMU passed without an fd (anonymous RAM, a BAR reached
//! through QEMU), a version 1 trace (no fd offsets), a trace that dropped records, no mapping
//! or two candidate mappings (an unmap and remap of the same IOVA while the access ran), and
//! RAM offsets past the recipe's RAM.

use std::collections::BTreeMap;

use phyr_trace::{DmaRecord, Event, Payload, Record, Space, Target};

use crate::launch::recipe::{Opt, Recipe};

const GIB: u64 = 1 << 30;
/// q35 puts RAM above the low-memory split here (`x86ms->above_4g_mem_start`).
const ABOVE_4G_START: u64 = 4 * GIB;
/// QEMU's default RAM size on x86 when a recipe names none.
const DEFAULT_RAM: u64 = 128 << 20;
/// QEMU moves RAM above 4 GiB to 1 TiB on AMD guests whose highest address (RAM top plus the
/// 64-bit PCI hole, 32 GiB by default on q35) would reach the HyperTransport range at
/// 1012 GiB (`x86_update_above_4g_mem_start()`); that layout is not modelled.
const AMD_HT_START: u64 = 0xfd_0000_0000;
const Q35_PCI_HOLE64_DEFAULT: u64 = 32 * GIB;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("recipe {recipe}: machine {machine:?} is not q35; only q35's RAM layout is modelled")]
    NotQ35 { recipe: String, machine: String },
    #[error("recipe {recipe}: {what}")]
    Bad { recipe: String, what: String },
    #[error(
        "recipe {recipe}: -m is {m:#x} bytes but memory backend {backend:?} has size={size:#x}; QEMU refuses that"
    )]
    SizeMismatch {
        recipe: String,
        m: u64,
        backend: String,
        size: u64,
    },
    #[error("recipe {recipe}: {size:#x} bytes of RAM reach the AMD HyperTransport hole, where QEMU moves RAM above 1 TiB; that layout is not modelled")]
    TooLarge { recipe: String, size: u64 },
}

/// Where the guest RAM file lies in guest-physical space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamLayout {
    /// RAM size (the memfd's size).
    pub size: u64,
    /// Bytes at guest-physical 0 (`below_4g_mem_size`); the rest starts at 4 GiB.
    pub below_4g: u64,
}

impl RamLayout {
    /// q35 with `ram` bytes of RAM and an optional `max-ram-below-4g` (QEMU's default: 4 GiB).
    pub fn q35(ram: u64, max_ram_below_4g: Option<u64>) -> RamLayout {
        let mut lowmem: u64 = if ram >= 0xb000_0000 { 0x8000_0000 } else { 0xb000_0000 };
        if let Some(max) = max_ram_below_4g.filter(|&m| m != 0) {
            lowmem = lowmem.min(max);
        }
        RamLayout {
            size: ram,
            below_4g: ram.min(lowmem),
        }
    }

    /// The layout of a recipe's machine.
    pub fn from_recipe(r: &Recipe) -> Result<RamLayout, LayoutError> {
        layout_of(&r.name, &r.opts)
    }

    /// The guest-physical ranges `(address, length)` holding `len` bytes from `offset` of the RAM
    /// file: one range, or two when they straddle the low-memory split.
    pub fn gpa_ranges(&self, offset: u64, len: u64) -> Result<Vec<(u64, u64)>, Unresolved> {
        let end = offset.checked_add(len).filter(|&e| e <= self.size);
        let Some(end) = end else {
            return Err(Unresolved::PastRam {
                offset,
                len,
                ram: self.size,
            });
        };
        let place = |o: u64| {
            if o < self.below_4g {
                o
            } else {
                ABOVE_4G_START + (o - self.below_4g)
            }
        };
        if offset < self.below_4g && end > self.below_4g {
            Ok(vec![
                (offset, self.below_4g - offset),
                (ABOVE_4G_START, end - self.below_4g),
            ])
        } else {
            Ok(vec![(place(offset), len)])
        }
    }
}

fn layout_of(recipe: &str, opts: &[Opt]) -> Result<RamLayout, LayoutError> {
    let bad = |what: String| LayoutError::Bad {
        recipe: recipe.to_owned(),
        what,
    };
    let value = |flags: &[&str]| {
        // The last one wins, as in QEMU.
        opts.iter()
            .rev()
            .filter(|o| flags.contains(&o.flag.as_str()))
            .find_map(|o| o.value.as_deref())
    };
    let machine = value(&["-machine", "-M"]).unwrap_or("pc");
    let props = split_props(machine);
    let mtype = props
        .iter()
        .find_map(|(k, v)| match (k, v) {
            (k, None) => Some(*k),
            (&"type", Some(t)) => Some(*t),
            _ => None,
        })
        .unwrap_or("pc");
    if mtype != "q35" && !mtype.starts_with("pc-q35-") {
        return Err(LayoutError::NotQ35 {
            recipe: recipe.to_owned(),
            machine: mtype.to_owned(),
        });
    }
    let prop = |name: &str| props.iter().find(|(k, _)| *k == name).and_then(|(_, v)| *v);
    let max_below = prop("max-ram-below-4g")
        .map(|v| parse_size(v, 1).map_err(|e| bad(format!("-machine max-ram-below-4g={v}: {e}"))))
        .transpose()?;
    let m = value(&["-m"])
        .map(|v| {
            let size = split_props(v)
                .iter()
                .find_map(|(k, val)| match (k, val) {
                    (s, None) => Some(*s),
                    (&"size", Some(s)) => Some(*s),
                    _ => None,
                })
                .ok_or_else(|| bad(format!("-m {v}: no size")))?;
            parse_size(size, 1 << 20).map_err(|e| bad(format!("-m {v}: {e}")))
        })
        .transpose()?;
    let backend = match prop("memory-backend") {
        None => None,
        Some(id) => {
            let obj = opts
                .iter()
                .filter(|o| o.flag == "-object")
                .filter_map(|o| o.value.as_deref())
                .map(split_props)
                .find(|p| p.contains(&("id", Some(id))))
                .ok_or_else(|| bad(format!("-machine memory-backend={id}: no -object with id={id}")))?;
            let size = obj
                .iter()
                .find(|(k, _)| *k == "size")
                .and_then(|(_, v)| *v)
                .ok_or_else(|| bad(format!("memory backend {id:?} has no size=")))?;
            let bytes = parse_size(size, 1).map_err(|e| bad(format!("memory backend {id:?} size={size}: {e}")))?;
            Some((id.to_owned(), bytes))
        }
    };
    let ram = match (m, backend) {
        (Some(m), Some((backend, size))) if m != size => {
            return Err(LayoutError::SizeMismatch {
                recipe: recipe.to_owned(),
                m,
                backend,
                size,
            })
        }
        (Some(m), _) => m,
        (None, Some((_, size))) => size,
        (None, None) => DEFAULT_RAM,
    };
    if ram == 0 {
        return Err(bad("the RAM size is 0".into()));
    }
    let layout = RamLayout::q35(ram, max_below);
    let top = ABOVE_4G_START + (ram - layout.below_4g) + Q35_PCI_HOLE64_DEFAULT;
    if top >= AMD_HT_START {
        return Err(LayoutError::TooLarge {
            recipe: recipe.to_owned(),
            size: ram,
        });
    }
    Ok(layout)
}

/// `a,b=c,d` -> [("a", None), ("b", Some("c")), ("d", None)] (QEMU's option syntax without
/// `,,` escapes, which no recipe needs here).
fn split_props(s: &str) -> Vec<(&str, Option<&str>)> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        })
        .collect()
}

/// A QEMU size: digits with an optional K/M/G/T suffix (powers of 1024, any case, optional
/// `B` after it); plain numbers are in units of `unit` (MiB for `-m`, bytes elsewhere).
pub fn parse_size(s: &str, unit: u64) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mul = match suffix.to_ascii_uppercase().trim_end_matches('B') {
        "" if suffix.is_empty() => unit,
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{s:?} is not a size (suffixes: K, M, G, T)")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("{s:?} overflows 64 bits"))
}

/// Why an access has no guest-physical answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    #[error("not an IOVA access (space {0:?})")]
    NotIova(Space),
    #[error("the access reached no guest memory (failed, or a peer BAR)")]
    NoGuestMemory,
    #[error("endpoint {endpoint}: no DMA mapping at IOVA {iova:#x} was live at {t_ns} ns")]
    NoMapping { endpoint: u16, iova: u64, t_ns: u64 },
    #[error("endpoint {endpoint}: IOVA {iova:#x} was unmapped and mapped again while the access ran ({t_ns} ns + {dur_ns} ns): either mapping may have served it")]
    Ambiguous {
        endpoint: u16,
        iova: u64,
        t_ns: u64,
        dur_ns: u32,
    },
    #[error("the mapping at IOVA {iova:#x} came without an fd (anonymous RAM, or a BAR reached through QEMU): its guest-physical address is QEMU's to know")]
    NoFd { iova: u64 },
    #[error(
        "the mapping at IOVA {iova:#x} has an fd but the trace did not record its offset (trace format version 1)"
    )]
    FdOffsetNotRecorded { iova: u64 },
    #[error("{len:#x} bytes at offset {offset:#x} run past the mapping at IOVA {iova:#x} ({size:#x} bytes)")]
    PastMapping {
        iova: u64,
        size: u64,
        offset: u64,
        len: u64,
    },
    #[error("RAM file offset {offset:#x} + {len:#x} bytes is past the guest RAM ({ram:#x} bytes): the fd is not guest RAM, or the recipe's layout is wrong")]
    PastRam { offset: u64, len: u64, ram: u64 },
    #[error("endpoint {endpoint}'s trace dropped {records} records: its mapping history is incomplete")]
    Incomplete { endpoint: u16, records: u64 },
}

/// The answer for one access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPhysAccess {
    /// Offset of the access's first byte in the guest RAM file.
    pub ram_offset: u64,
    /// Guest-physical `(address, length)` ranges it covered (two if it straddles 4 GiB's split).
    pub ranges: Vec<(u64, u64)>,
}

impl GuestPhysAccess {
    /// The guest-physical address of the first byte.
    #[cfg(test)]
    pub fn gpa(&self) -> u64 {
        self.ranges[0].0
    }
}

/// One DMA mapping of one endpoint and when it was live (event times, ns).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    iova: u64,
    size: u64,
    has_fd: bool,
    fd_offset: Option<u64>,
    mapped: u64,
    /// `None`: still mapped when the trace ended.
    unmapped: Option<u64>,
}

/// Every endpoint's mapping history, and the RAM layout to place fd offsets with.
#[derive(Debug, Clone)]
pub struct GuestPhys {
    layout: RamLayout,
    /// Per endpoint, by IOVA start: the spans of mappings that began there, in time order.
    spans: BTreeMap<u16, BTreeMap<u64, Vec<Span>>>,
    dropped: BTreeMap<u16, u64>,
}

impl GuestPhys {
    /// Replays the mapping events of `records` (any order; ties keep their order).
    pub fn from_records<'a>(layout: RamLayout, records: impl IntoIterator<Item = &'a Record>) -> GuestPhys {
        let mut events: Vec<(u64, u16, &Event)> = records
            .into_iter()
            .filter_map(|r| match &r.payload {
                Payload::Event { endpoint, event } => Some((r.t_ns, *endpoint, event)),
                Payload::Dma(_) => None,
            })
            .collect();
        events.sort_by_key(|(t, _, _)| *t);
        let mut g = GuestPhys {
            layout,
            spans: BTreeMap::new(),
            dropped: BTreeMap::new(),
        };
        // Open spans per endpoint: IOVA start -> index in `g.spans[ep][iova]`.
        let mut open: BTreeMap<u16, BTreeMap<u64, usize>> = BTreeMap::new();
        for (t, ep, event) in events {
            let spans = g.spans.entry(ep).or_default();
            let live = open.entry(ep).or_default();
            let close = |spans: &mut BTreeMap<u64, Vec<Span>>, iova: u64, idx: usize| {
                if let Some(s) = spans.get_mut(&iova).and_then(|v| v.get_mut(idx)) {
                    s.unmapped = Some(t);
                }
            };
            match event {
                Event::DmaMap {
                    iova,
                    size,
                    has_fd,
                    fd_offset,
                    ..
                } => {
                    if let Some(idx) = live.remove(iova) {
                        // A map over a live one cannot happen in vfio-user; end the old span.
                        close(spans, *iova, idx);
                    }
                    let v = spans.entry(*iova).or_default();
                    v.push(Span {
                        iova: *iova,
                        size: *size,
                        has_fd: *has_fd,
                        fd_offset: *fd_offset,
                        mapped: t,
                        unmapped: None,
                    });
                    live.insert(*iova, v.len() - 1);
                }
                Event::DmaUnmap { iova, size, all } => {
                    let end = iova.saturating_add(*size);
                    let gone: Vec<(u64, usize)> = live
                        .iter()
                        .filter(|(start, _)| *all || (**start >= *iova && **start < end))
                        .map(|(s, i)| (*s, *i))
                        .collect();
                    for (start, idx) in gone {
                        live.remove(&start);
                        close(spans, start, idx);
                    }
                }
                // A session ends (or starts): its DmaSpace, with every mapping, is gone.
                Event::Connected | Event::Disconnected => {
                    for (start, idx) in std::mem::take(live) {
                        close(spans, start, idx);
                    }
                }
                Event::Dropped { records } => {
                    *g.dropped.entry(ep).or_default() += records;
                }
                _ => {}
            }
        }
        g
    }

    /// Reads every endpoint's trace under `trace_dir` (a run directory or its `trace/`). (The
    /// cross-check builds it from the records it read anyway.)
    #[cfg(test)]
    pub fn from_trace_dir(layout: RamLayout, trace_dir: &std::path::Path) -> Result<GuestPhys, String> {
        let files = phyr_trace_tools::trace_files(trace_dir).map_err(|e| e.to_string())?;
        let mut records = Vec::new();
        for f in files {
            let mut reader = phyr_trace::TraceReader::open(&f.path).map_err(|e| e.to_string())?;
            while let Some((_, rec)) = reader.next_record().map_err(|e| format!("{}: {e}", f.path.display()))? {
                if matches!(rec.payload, Payload::Event { .. }) {
                    records.push(rec);
                }
            }
        }
        Ok(GuestPhys::from_records(layout, &records))
    }

    /// The layout fd offsets are placed with.
    pub fn layout(&self) -> RamLayout {
        self.layout
    }

    /// The guest-physical address(es) the DMA record `d`, stamped `t_ns`, touched.
    pub fn resolve(&self, t_ns: u64, d: &DmaRecord) -> Result<GuestPhysAccess, Unresolved> {
        if !matches!(d.space, Space::Iova | Space::Message) {
            return Err(Unresolved::NotIova(d.space));
        }
        let Target::GuestMemory { offset, .. } = d.target else {
            return Err(Unresolved::NoGuestMemory);
        };
        if let Some(&records) = self.dropped.get(&d.endpoint) {
            return Err(Unresolved::Incomplete {
                endpoint: d.endpoint,
                records,
            });
        }
        let iova = d.addr.wrapping_sub(offset);
        let end = t_ns.saturating_add(u64::from(d.dur_ns));
        let candidates: Vec<&Span> = self
            .spans
            .get(&d.endpoint)
            .and_then(|m| m.get(&iova))
            .map(|v| {
                v.iter()
                    .filter(|s| s.mapped <= end && s.unmapped.is_none_or(|u| u >= t_ns))
                    .collect()
            })
            .unwrap_or_default();
        let s = match candidates.as_slice() {
            [] => {
                return Err(Unresolved::NoMapping {
                    endpoint: d.endpoint,
                    iova,
                    t_ns,
                })
            }
            [s] => *s,
            _ => {
                return Err(Unresolved::Ambiguous {
                    endpoint: d.endpoint,
                    iova,
                    t_ns,
                    dur_ns: d.dur_ns,
                })
            }
        };
        let len = u64::from(d.len);
        if offset.checked_add(len).is_none_or(|e| e > s.size) {
            return Err(Unresolved::PastMapping {
                iova,
                size: s.size,
                offset,
                len,
            });
        }
        let base = match (s.has_fd, s.fd_offset) {
            (_, Some(o)) => o,
            (true, None) => return Err(Unresolved::FdOffsetNotRecorded { iova }),
            (false, None) => return Err(Unresolved::NoFd { iova }),
        };
        let ram_offset = base.checked_add(offset).ok_or(Unresolved::PastRam {
            offset: base,
            len,
            ram: self.layout.size,
        })?;
        Ok(GuestPhysAccess {
            ram_offset,
            ranges: self.layout.gpa_ranges(ram_offset, len)?,
        })
    }
}

#[cfg(test)]
#[path = "guest_phys_tests.rs"]
mod tests;
