//! The kernel path's oracle: for a command a kernel driver ran (its `# phyr-kmap` lines,
//! docs/REPORT.md), did the device do exactly what the kernel's DMA mapping said?
//!
//! For every data access the device made on a list the kernel mapped (its trace records):
//! - **space**: the access reached the device in the space the kernel chose for that list entry
//!   (a bus address for `bus_addr` pieces, an IOVA otherwise), and a piece of the entry the
//!   device names covers it (no access outside what the kernel handed out);
//! - **translation**: an IOVA access to guest RAM landed on the guest-physical address the
//!   kernel reported for that byte (`guest_phys.rs` replays the device's DMA mappings and places
//!   the RAM file offset with the recipe's layout);
//! - **BAR offset**: an access the device routed to a BAR hit the endpoint and offset the
//!   kernel's physical address stands for (by the `bar2_phys` of the `# phyr-endpoint` lines);
//! - **nothing after an unmap**: a list whose mapping was torn down (`state=unmapped`) moved no
//!   byte, and through an IOMMU the command ended in `IOMMU_FAULT` at that list's first entry
//!   and address, which the device's trace shows failing; and the other way round, no IOMMU
//!   fault on an address the kernel reports mapped.
//!
//! And every piece lies inside the command's ranges of its list, in the space its type implies.
//! What cannot be placed is counted by reason, not guessed: an IOVA mapping QEMU passed without
//! an fd (a peer BAR through the host bridge, anonymous guest RAM) has no guest-physical
//! address the device could know.

use std::collections::BTreeMap;

use dma_range::{AddrSpace, ListKind, Status};
use phyr_report::{CmdStatus, EndpointLine, KernelList, KernelSeg, MapType, P2pLine, ReportedCmd};
use phyr_trace::{DmaRecord, Space, Target};

use crate::results::expected::Expected;
use crate::results::guest_phys::{GuestPhys, Unresolved};

/// What the oracle checked, for the cross-check's summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KernelStats {
    /// Commands with `# phyr-kmap` lines.
    pub commands: usize,
    /// Their pieces.
    pub pieces: usize,
    /// Parts of IOVA accesses found at the guest-physical address the kernel mapped.
    pub iova_at_phys: usize,
    /// Parts of accesses to a BAR found at the endpoint and offset the kernel mapped.
    pub bar_at_offset: usize,
    /// Commands over an unmapped list that faulted at its first entry and moved none of it.
    pub after_unmap: usize,
    /// `# phyr-p2p` decisions that are what the recipe says its machine forces.
    pub p2p_as_expected: usize,
    /// Access parts whose target could not be placed, by reason.
    pub unresolved: BTreeMap<String, usize>,
}

impl KernelStats {
    /// One phrase for the summary line (empty without kernel commands).
    pub fn summary(&self) -> String {
        if self.commands == 0 && self.p2p_as_expected == 0 {
            return String::new();
        }
        let mut s = format!(
            "kernel path: {} commands, {} pieces; {} IOVA accesses at the guest-physical address the kernel \
             mapped, {} BAR accesses at the offset it mapped, {} uses after unmap faulted without moving a byte, \
             {} P2P decisions as the recipe forces",
            self.commands, self.pieces, self.iova_at_phys, self.bar_at_offset, self.after_unmap, self.p2p_as_expected
        );
        let unresolved: usize = self.unresolved.values().sum();
        if unresolved > 0 {
            s.push_str(&format!("; {unresolved} accesses not placed ("));
            let why: Vec<String> = self.unresolved.iter().map(|(k, n)| format!("{n}: {k}")).collect();
            s.push_str(&why.join("; "));
            s.push(')');
        }
        s
    }
}

/// What the oracle knows about the run besides one command.
pub struct Oracle<'a> {
    /// The device's mapping history and the recipe's RAM layout, or why there is none.
    pub guest_phys: &'a Result<GuestPhys, String>,
    /// `# phyr-endpoint` lines by ENDPOINT_ID.
    pub endpoints: &'a BTreeMap<u32, EndpointLine>,
}

/// One device access with its time stamp (ns).
pub type TimedDma = (u64, DmaRecord);

fn record_space(s: Space) -> AddrSpace {
    // A DMA_READ/DMA_WRITE message (memory without an fd) carries an IOVA too.
    match s {
        Space::Iova | Space::Message => AddrSpace::Iova,
        Space::Bus => AddrSpace::Bus,
    }
}

fn space_name(s: AddrSpace) -> &'static str {
    phyr_report::space_name(s)
}

/// The kernel's `# phyr-p2p` decisions against the outcome the recipe's machine forces
/// (`# phyr: p2p=A-B:DECISION`, both directions). Nothing to check without p2p lines (a
/// kernel without P2PDMA, or the topology case not run).
pub fn check_p2p(expected: &Expected, seen: &[P2pLine], stats: &mut KernelStats, problems: &mut Vec<String>) {
    if seen.is_empty() {
        return;
    }
    for e in &expected.p2p {
        for (client, provider) in [(e.a, e.b), (e.b, e.a)] {
            let said: Vec<&P2pLine> = seen
                .iter()
                .filter(|l| (l.client, l.provider) == (client, provider))
                .collect();
            if said.is_empty() {
                problems.push(format!(
                    "P2P: the kernel suite reported no decision for client ep{client} provider ep{provider}; recipe {} \
                     forces {}",
                    expected.recipe, e.decision
                ));
            }
            for l in said {
                if l.decision == e.decision {
                    stats.p2p_as_expected += 1;
                } else {
                    problems.push(format!(
                        "P2P: the kernel decided {} for client ep{client} provider ep{provider} (distance {}), recipe {} \
                         forces {} (`# phyr: p2p=`; qemu-configs/README.md says why)",
                        l.decision,
                        l.distance.map_or_else(|| "-1".to_string(), |d| d.to_string()),
                        expected.recipe,
                        e.decision
                    ));
                }
            }
        }
    }
}

/// Checks one command that has `# phyr-kmap` lines; `what` names it in problems.
pub fn check_command(
    o: &Oracle<'_>,
    d: &ReportedCmd,
    dma: &[TimedDma],
    what: &str,
    stats: &mut KernelStats,
    problems: &mut Vec<String>,
) {
    if d.kmap.is_empty() {
        return;
    }
    stats.commands += 1;
    for (list, k) in &d.kmap {
        stats.pieces += k.segs.len();
        check_pieces_inside(d, *list, k, what, problems);
    }
    for (t, rec) in dma {
        let Some(list) = ListKind::from_u8(rec.list) else {
            continue;
        };
        let Some(k) = d.kmap.get(&list) else {
            continue;
        };
        let at = format!(
            "{what}: the device's {:?} of {} {:#x}+{:#x} ({} entry {})",
            rec.direction,
            space_name(record_space(rec.space)),
            rec.addr,
            rec.len,
            list.name(),
            rec.segment
        );
        if k.unmapped() {
            if rec.status == 0 {
                problems.push(format!(
                    "{at}: use after unmap: the kernel tore this list's mapping down before the command, yet the access \
                     succeeded"
                ));
            }
            continue;
        }
        if rec.status == 0 {
            check_access(o, *t, rec, k, &at, stats, problems);
        } else if rec.status == Status::IOMMU_FAULT as u16 && covered(k, rec) {
            problems.push(format!(
                "{at}: the IOMMU refused it (IOMMU_FAULT), yet the kernel reports that address mapped for this list"
            ));
        }
    }
    check_unmapped(d, dma, what, stats, problems);
}

/// Each piece lies inside the command's ranges of its list, in the space its type implies.
fn check_pieces_inside(d: &ReportedCmd, list: ListKind, k: &KernelList, what: &str, problems: &mut Vec<String>) {
    for (i, s) in k.segs.iter().enumerate() {
        let dma = s.dma;
        if dma.space != s.map.space() {
            problems.push(format!(
                "{what}: kernel {} piece {i} is {dma} but mapped {} (its address belongs in {})",
                list.name(),
                s.map.name(),
                space_name(s.map.space())
            ));
        } else if !d
            .cmd
            .ranges(list)
            .iter()
            .any(|r| r.covers(dma.space, dma.addr, dma.len))
        {
            problems.push(format!(
                "{what}: kernel {} piece {i} {dma} is not among the command's {} ranges",
                list.name(),
                list.name()
            ));
        }
    }
}

/// The piece of `k` holding address `at` in `space`, preferring one of list entry `entry`.
fn piece_at(k: &KernelList, space: AddrSpace, at: u64, entry: u32) -> Option<&KernelSeg> {
    let mut holding = k
        .segs
        .iter()
        .filter(|s| s.dma.space == space && at >= s.dma.addr && at - s.dma.addr < s.dma.len);
    let first = holding.clone().next();
    holding.find(|s| s.entry.is_none_or(|e| e == entry)).or(first)
}

/// Whether a piece of the entry `rec` names covers its first address, in its space.
fn covered(k: &KernelList, rec: &DmaRecord) -> bool {
    piece_at(k, record_space(rec.space), rec.addr, rec.segment)
        .is_some_and(|p| p.entry.is_none_or(|e| e == rec.segment))
}

/// One successful access of a live list: covered piece by piece, each part at its target.
fn check_access(
    o: &Oracle<'_>,
    t: u64,
    rec: &DmaRecord,
    k: &KernelList,
    at: &str,
    stats: &mut KernelStats,
    problems: &mut Vec<String>,
) {
    let space = record_space(rec.space);
    let Some(end) = rec.addr.checked_add(u64::from(rec.len)) else {
        problems.push(format!("{at}: the access wraps past 2^64"));
        return;
    };
    let mut cur = rec.addr;
    while cur < end {
        let Some(p) = piece_at(k, space, cur, rec.segment) else {
            let of_entry: Vec<&KernelSeg> = k.segs.iter().filter(|s| s.entry == Some(rec.segment)).collect();
            match of_entry.first() {
                Some(s) if of_entry.iter().all(|s| s.dma.space != space) => problems.push(format!(
                    "{at}: wrong space: {} {cur:#x} reached the device as {}, but the kernel mapped entry {} as {} ({})",
                    space_name(space),
                    space_name(space),
                    rec.segment,
                    s.map.name(),
                    space_name(s.dma.space)
                )),
                _ => problems.push(format!(
                    "{at}: {} {cur:#x} is outside every piece the kernel mapped for this list",
                    space_name(space)
                )),
            }
            return;
        };
        if let Some(e) = p.entry.filter(|&e| e != rec.segment) {
            problems.push(format!(
                "{at}: {} {cur:#x} belongs to entry {e} of the kernel's list, the device took it from entry {}",
                space_name(space),
                rec.segment
            ));
        }
        // Console values are not trusted: nothing here may overflow.
        let part_end = end.min(p.dma.addr.saturating_add(p.dma.len));
        let want = p.phys.wrapping_add(cur - p.dma.addr);
        check_target(o, t, rec, cur, part_end - cur, want, at, stats, problems);
        cur = part_end;
    }
}

/// Where the part `[cur, cur + len)` of access `rec` landed, against physical address `want`.
#[allow(clippy::too_many_arguments)]
fn check_target(
    o: &Oracle<'_>,
    t: u64,
    rec: &DmaRecord,
    cur: u64,
    len: u64,
    want: u64,
    at: &str,
    stats: &mut KernelStats,
    problems: &mut Vec<String>,
) {
    let into = cur - rec.addr;
    let mut unresolved = |why: &str| *stats.unresolved.entry(why.to_owned()).or_default() += 1;
    match rec.target {
        Target::GuestMemory { .. } => {
            let gp = match o.guest_phys {
                Ok(gp) => gp,
                Err(e) => return unresolved(e),
            };
            let access = match gp.resolve(t, rec) {
                Ok(a) => a,
                Err(
                    e @ (Unresolved::NoFd { .. }
                    | Unresolved::FdOffsetNotRecorded { .. }
                    | Unresolved::Incomplete { .. }
                    | Unresolved::Ambiguous { .. }),
                ) => return unresolved(reason(&e)),
                Err(e) => {
                    problems.push(format!("{at}: IOVA {cur:#x} has no place in guest memory: {e}"));
                    return;
                }
            };
            let placed = gp.layout().gpa_ranges(access.ram_offset.saturating_add(into), len);
            match placed {
                Ok(ranges) => {
                    let mut expect = want;
                    for (gpa, n) in ranges {
                        if gpa != expect {
                            problems.push(format!(
                                "{at}: wrong translation: IOVA {:#x} reached guest-physical {gpa:#x}, the kernel mapped it \
                                 to {expect:#x}",
                                cur.wrapping_add(expect.wrapping_sub(want))
                            ));
                            return;
                        }
                        expect = expect.wrapping_add(n);
                    }
                    stats.iova_at_phys += 1;
                }
                Err(e) => problems.push(format!("{at}: IOVA {cur:#x}: {e}")),
            }
        }
        Target::PeerBar { endpoint, bar, offset } => {
            let got = (u32::from(endpoint), bar, offset.wrapping_add(into));
            let known: Vec<&EndpointLine> = o.endpoints.values().filter(|e| e.bar2_phys.is_some()).collect();
            if known.is_empty() {
                return unresolved("no `# phyr-endpoint` line with bar2_phys");
            }
            let owner = known.iter().find_map(|e| {
                let base = e.bar2_phys?;
                (want >= base && want - base < e.bar2.len).then(|| (e.endpoint_id, 2u8, want - base))
            });
            match owner {
                Some(w) if w == got => stats.bar_at_offset += 1,
                Some((ep, b, off)) => problems.push(format!(
                    "{at}: wrong BAR offset: {} {cur:#x} hit ep{} BAR{} + {:#x}, the kernel mapped physical {want:#x} = \
                     ep{ep} BAR{b} + {off:#x}",
                    space_name(record_space(rec.space)),
                    got.0,
                    got.1,
                    got.2
                )),
                None => problems.push(format!(
                    "{at}: {} {cur:#x} hit ep{} BAR{} + {:#x}, but the kernel mapped physical {want:#x}, which is in no \
                     endpoint's BAR2",
                    space_name(record_space(rec.space)),
                    got.0,
                    got.1,
                    got.2
                )),
            }
        }
        Target::None => unresolved("a successful access without a target"),
    }
}

/// The reason an access could not be placed, without its addresses (the counts group by it).
fn reason(e: &Unresolved) -> &'static str {
    match e {
        Unresolved::NoFd { .. } => {
            "IOVA mapped by QEMU without an fd: a peer BAR via the host bridge, or anonymous RAM"
        }
        Unresolved::FdOffsetNotRecorded { .. } => "a version 1 trace without fd offsets",
        Unresolved::Incomplete { .. } => "the trace dropped records",
        Unresolved::Ambiguous { .. } => "the IOVA was unmapped and mapped again while the access ran",
        _ => "other",
    }
}

/// Whether the pieces of `k` went through a translating IOMMU: some piece that is not a bus
/// address has a DMA address other than its physical one.
fn translated(k: &KernelList) -> bool {
    k.segs.iter().any(|s| s.map != MapType::BusAddr && s.dma.addr != s.phys)
}

/// A command over an unmapped list: IOMMU_FAULT at that list's first entry and address, and
/// the device's trace shows that access failing.
fn check_unmapped(d: &ReportedCmd, dma: &[TimedDma], what: &str, stats: &mut KernelStats, problems: &mut Vec<String>) {
    let stale: Vec<(ListKind, &KernelList)> = d
        .kmap
        .iter()
        .filter(|(_, k)| k.unmapped())
        .map(|(l, k)| (*l, k))
        .collect();
    if stale.is_empty() {
        return;
    }
    if !stale.iter().all(|(_, k)| translated(k)) {
        *stats
            .unresolved
            .entry("a use after unmap without IOMMU translation (the addresses are physical)".into())
            .or_default() += 1;
        return;
    }
    let c = &d.cmd;
    let expected: Vec<String> = stale
        .iter()
        .filter_map(|(l, k)| {
            k.segs
                .first()
                .map(|s| format!("{} entry {} address {:#x}", l.name(), s.entry.unwrap_or(0), s.dma.addr))
        })
        .collect();
    let fault_ok = c.status == CmdStatus::Known(Status::IOMMU_FAULT)
        && c.fault.is_some_and(|f| {
            stale.iter().any(|(l, k)| {
                k.segs
                    .first()
                    .is_some_and(|s| f.list == *l && f.segment == s.entry.unwrap_or(0) && f.addr == s.dma.addr)
            })
        });
    if !fault_ok {
        problems.push(format!(
            "{what}: use after unmap: the command ended {} with fault {}, expected IOMMU_FAULT at {}",
            c.status,
            c.fault.map_or_else(|| "-".to_string(), |f| f.to_string()),
            expected.join(" or ")
        ));
        return;
    }
    let Some(f) = c.fault else { return };
    let seen = dma.iter().any(|(_, r)| {
        r.status == Status::IOMMU_FAULT as u16
            && ListKind::from_u8(r.list) == Some(f.list)
            && r.segment == f.segment
            && r.addr == f.addr
    });
    if seen {
        stats.after_unmap += 1;
    } else {
        problems.push(format!(
            "{what}: use after unmap: the driver reports IOMMU_FAULT at {f}, the device's trace has no access failing there"
        ));
    }
}

#[cfg(test)]
#[path = "kernel_oracle_tests.rs"]
mod tests;
