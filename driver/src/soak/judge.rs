//! Checking one command after it ran: its completion must be one of the outcomes its plan
//! allows, each exactly (status, list, segment, fault address, `result` as docs/ABI.md §6 pins
//! it), and its destination must hold exactly what that outcome implies: the first `result`
//! bytes in transfer order written, none after. Without a completion (lost in a reset), the
//! destination must still be such a prefix. Every byte compared goes into the shadow.

use std::collections::BTreeMap;

use anyhow::Result;
use dma_range::{Completion, Opcode, Status, FAULT_LIST_NONE, NO_SEGMENT};

use super::arena::{Arenas, Damage};
use super::expect::{self, Spans};
use super::plan::{starts, Plan};
use crate::bench::Bench;

/// What the check concluded.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The status name, or `lost` without a completion.
    pub outcome: String,
    /// Destination bytes the command wrote, in transfer order.
    pub moved: u64,
    pub damage: Damage,
    /// The completion was none of the allowed outcomes.
    pub wrong: Option<String>,
}

/// How far the command can get: the bad segment's start, COMPARE's first difference, or the
/// total.
fn limit(p: &Plan, diff: Option<u64>) -> u64 {
    let total = p.total();
    p.det.map_or(total, |d| d.pos).min(diff.unwrap_or(total))
}

/// Checks `c` (or its absence) against `p`; returns the bytes written it implies.
fn outcome(p: &Plan, c: &Completion, diff: Option<u64>, crc: Option<u32>) -> std::result::Result<u64, String> {
    let total = p.total();
    let written = |n: u64| if p.writes() { n } else { 0 };
    let status = Status::from_u16(c.status);
    let plain = c.fault_list == FAULT_LIST_NONE && c.segment == NO_SEGMENT && c.fault_addr == 0;
    // The bad segment on purpose, exactly.
    if let Some(d) = p.det {
        if status == Some(d.status) && c.fault_list == d.list && c.segment == d.segment && c.fault_addr == d.addr {
            return match c.result == d.pos {
                true => Ok(written(d.pos)),
                false => Err(format!(
                    "{}: result {:#x}, expected {:#x}",
                    d.status.name(),
                    c.result,
                    d.pos
                )),
            };
        }
    } else {
        match (status, p.op) {
            (Some(Status::SUCCESS), _) if !plain => return Err("SUCCESS with fault fields set".into()),
            (Some(Status::SUCCESS), Opcode::Copy | Opcode::Fill) if c.result == total => return Ok(total),
            (Some(Status::SUCCESS), Opcode::Crc32c) if Some(c.result) == crc.map(u64::from) => return Ok(0),
            (Some(Status::SUCCESS), Opcode::Compare) if diff == Some(total) && c.result == total => return Ok(0),
            (Some(Status::COMPARE_MISMATCH), Opcode::Compare) if diff.is_some_and(|d| d < total) => {
                return match Some(c.result) == diff {
                    true => Ok(0),
                    false => Err(format!(
                        "COMPARE_MISMATCH at {:#x}, the data differ first at {:#x}",
                        c.result,
                        diff.unwrap_or(0)
                    )),
                };
            }
            _ => {}
        }
    }
    let lim = limit(p, diff);
    // A fault where an address went away while the command ran, consistent with its list.
    if let Some(st) = status.filter(|st| p.allow.gone.iter().any(|g| g.statuses.contains(st))) {
        return gone_fault(p, c, st, lim).map(written);
    }
    // An abort by the reset or disable injected while it ran.
    if status.is_some() && status == p.allow.abort {
        if !plain {
            return Err(format!("{}: fault fields set", c.status));
        }
        if c.result > lim {
            return Err(format!(
                "aborted after {:#x} bytes, but it cannot get past {lim:#x}",
                c.result
            ));
        }
        return Ok(written(c.result));
    }
    Err(format!(
        "{} (list {} segment {} addr {:#x} result {:#x}) is none of the outcomes allowed: {}{}{}",
        status.map_or_else(|| format!("status {:#x}", c.status), |s| s.name().to_owned()),
        c.fault_list,
        c.segment,
        c.fault_addr,
        c.result,
        p.det.map_or_else(
            || "success".to_owned(),
            |d| format!(
                "{} at list {} segment {} addr {:#x}",
                d.status.name(),
                d.list,
                d.segment,
                d.addr
            )
        ),
        if p.allow.gone.is_empty() {
            ""
        } else {
            ", a fault where an address went away"
        },
        p.allow.abort.map_or(String::new(), |s| format!(", {}", s.name())),
    ))
}

/// A fault `st` at an address that went away while `p` ran: in a data segment (`result` is
/// the transfer offset of the fault address, or up to 64 KiB below it for memory moved by
/// DMA messages), or in a list block (`result` 0, `segment` the index the block's first entry
/// would have). Returns the bytes moved.
fn gone_fault(p: &Plan, c: &Completion, st: Status, lim: u64) -> std::result::Result<u64, String> {
    let fa = c.fault_addr;
    let gone = |space: dma_range::AddrSpace| {
        p.allow
            .gone
            .iter()
            .find(|g| g.space == space && g.statuses.contains(&st) && fa >= g.lo && fa < g.hi)
    };
    let name = st.name();
    let Some(list) = p.list(c.fault_list) else {
        return Err(format!(
            "{name} names list {}, which this command has not",
            c.fault_list
        ));
    };
    let built = match c.fault_list {
        dma_range::FAULT_LIST_SRC => p.src_list.as_ref(),
        _ => p.dst_list.as_ref(),
    };
    // A list block that could not be read.
    if let Some(b) = built {
        let mut first = 0u64;
        for (i, &(space, addr, len)) in b.blocks.iter().enumerate() {
            let entries = u64::from(len) / 16;
            if fa >= addr && fa < addr + u64::from(len) && gone(space).is_some() {
                return match c.result == 0 && u64::from(c.segment) == first {
                    true => Ok(0),
                    false => Err(format!(
                        "{name} reading list block {i} at {fa:#x}: segment {} result {:#x}, expected segment {first} result 0",
                        c.segment, c.result
                    )),
                };
            }
            first += entries - u64::from(i + 1 < b.blocks.len());
        }
    }
    let Some(seg) = list.get(c.segment as usize) else {
        return Err(format!(
            "{name} names segment {} of a {}-segment list",
            c.segment,
            list.len()
        ));
    };
    let r = seg.range;
    if fa < r.addr || fa >= r.addr + seg.len() {
        return Err(format!(
            "{name} at {fa:#x} is not in segment {} ({:#x}+{:#x})",
            c.segment, r.addr, r.len
        ));
    }
    let Some(g) = gone(r.space()) else {
        return Err(format!("{name} at {fa:#x}, where nothing went away"));
    };
    let start = starts(list)[c.segment as usize];
    let at = start + (fa - r.addr);
    // Where the device may stop, by the kind of memory (docs/ABI.md §5, §6): at the first
    // byte that failed (IOVA memory it maps), up to 64 KiB before it (memory it reaches by
    // DMA messages), or anywhere in the segment when the fault names the entry's address (a
    // bus-address segment whose BAR stopped decoding after part of it moved: its route is
    // checked again before every piece).
    let (lo, hi) = match (r.space(), g.message) {
        (dma_range::AddrSpace::Bus, _) if fa == r.addr => (start, start + seg.len()),
        (dma_range::AddrSpace::Bus, _) => {
            return Err(format!("{name} at {fa:#x}, not the entry's address {:#x}", r.addr))
        }
        (_, true) => (at.saturating_sub(0xFFFF), at),
        (_, false) => (at, at),
    };
    if c.result < lo || c.result > hi || c.result > lim {
        return Err(format!(
            "{name} at transfer offset {at:#x} (limit {lim:#x}) but result {:#x}",
            c.result
        ));
    }
    Ok(c.result)
}

/// Lays painted `pieces` (arena offset, bytes) over `want`, the arena's bytes from `x` on.
fn overlay(want: &mut [u8], x: u64, pieces: Option<&Vec<(u64, Vec<u8>)>>) {
    let y = x + want.len() as u64;
    for (o, bytes) in pieces.into_iter().flatten() {
        let (o, end) = (*o, *o + bytes.len() as u64);
        if end <= x || o >= y {
            continue;
        }
        let (lo, hi) = (o.max(x), end.min(y));
        want[(lo - x) as usize..(hi - x) as usize].copy_from_slice(&bytes[(lo - o) as usize..(hi - o) as usize]);
    }
}

/// The destination bytes `0..moved` (in transfer order) written, per arena: `(offset, bytes)`
/// pieces, each arena byte once (the last write to it wins: painted from the end).
fn painted(p: &Plan, a: &Arenas, moved: u64) -> BTreeMap<usize, Vec<(u64, Vec<u8>)>> {
    let (ss, ds) = (starts(&p.src), starts(&p.dst));
    let mut done: BTreeMap<usize, Spans> = BTreeMap::new();
    let mut out: BTreeMap<usize, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    for (i, seg) in p.dst.iter().enumerate().rev() {
        let (t0, Some((id, off))) = (ds[i], seg.at) else {
            continue;
        };
        if t0 >= moved {
            continue;
        }
        let w = seg.len().min(moved - t0);
        for (x, y) in done.entry(id).or_default().claim(off, off + w) {
            let bytes = expect::new_bytes(p, a, &ss, t0 + (x - off), y - x);
            out.entry(id).or_default().push((x, bytes));
        }
    }
    out
}

/// Without a completion: how many bytes (in transfer order) the destination shows written,
/// reading each destination byte once, at its first place in the stream.
fn moved_prefix(s: &Bench, p: &Plan, a: &Arenas) -> Result<u64> {
    if !p.writes() {
        return Ok(0);
    }
    let (ss, ds) = (starts(&p.src), starts(&p.dst));
    let stop = limit(p, None);
    let mut seen: BTreeMap<usize, Spans> = BTreeMap::new();
    for (i, seg) in p.dst.iter().enumerate() {
        let t0 = ds[i];
        let Some((id, off)) = seg.at.filter(|_| t0 < stop) else {
            return Ok(t0.min(stop));
        };
        let w = seg.len().min(stop - t0);
        for (x, y) in seen.entry(id).or_default().claim(off, off + w) {
            let got = a.list[id].read(s, x, y - x)?;
            let want = expect::new_bytes(p, a, &ss, t0 + (x - off), y - x);
            if let Some(k) = got.iter().zip(&want).position(|(g, w)| g != w) {
                return Ok(t0 + (x - off) + k as u64);
            }
        }
    }
    // Every destination byte holds the new data: all of it (a long command's later passes
    // rewrite the same bytes).
    Ok(p.total().min(stop))
}

/// Checks command `p` after it ended with `c` (or without a completion), and brings the
/// shadows of its destination up to date.
pub fn judge(s: &Bench, a: &mut Arenas, p: &Plan, c: Option<&Completion>) -> Result<Verdict> {
    let diff = (p.op == Opcode::Compare).then(|| expect::first_difference(p, a));
    let crc = (p.op == Opcode::Crc32c)
        .then(|| expect::stream_crc(a, &p.src))
        .flatten();
    let mut v = Verdict::default();
    let moved = match c {
        Some(c) => {
            v.outcome = Status::from_u16(c.status).map_or_else(|| format!("{:#x}", c.status), |s| s.name().to_owned());
            match outcome(p, c, diff, crc) {
                Ok(m) => m,
                Err(why) => {
                    v.wrong = Some(why);
                    moved_prefix(s, p, a)?
                }
            }
        }
        None => {
            v.outcome = "lost".into();
            if !p.allow.may_vanish {
                v.wrong = Some("no completion".into());
            }
            moved_prefix(s, p, a)?
        }
    };
    v.moved = moved;
    // Memory moved by DMA messages: after an abort, a fault or a lost completion, up to 64 KiB
    // past `result` may be written too (a reply the device waited for when it stopped).
    let exact = c.is_some_and(|c| {
        c.status == Status::SUCCESS as u16
            || p.det.is_some_and(|d| {
                d.status as u16 == c.status
                    && d.list == c.fault_list
                    && d.segment == c.segment
                    && d.addr == c.fault_addr
            })
    });
    let slack = (p.message() && p.writes() && !exact).then(|| painted(p, a, (moved + 0x1_0000).min(limit(p, None))));
    // Compare every destination byte (written or not) with what it must hold now.
    let paint = painted(p, a, moved);
    let mut ranges: BTreeMap<usize, Vec<(u64, u64)>> = BTreeMap::new();
    for seg in &p.dst {
        if let Some((id, off)) = seg.at {
            ranges.entry(id).or_default().push((off, off + seg.len()));
        }
    }
    for (id, mut rs) in ranges {
        rs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (x, y) in rs {
            match merged.last_mut() {
                Some(last) if x <= last.1 => last.1 = last.1.max(y),
                _ => merged.push((x, y)),
            }
        }
        for (x, y) in merged {
            let mut want = a.list[id].shadow[x as usize..y as usize].to_vec();
            overlay(&mut want, x, paint.get(&id));
            let got = a.list[id].read(s, x, y - x)?;
            if let Some(alt) = &slack {
                let mut also = a.list[id].shadow[x as usize..y as usize].to_vec();
                overlay(&mut also, x, alt.get(&id));
                for ((w, g), o) in want.iter_mut().zip(&got).zip(&also) {
                    if g == o {
                        *w = *o;
                    }
                }
            }
            let name = a.describe(id);
            let first = v.damage.first.is_none();
            v.damage.add(&name, x, &got, &want);
            if let (true, Some(k)) = (first, got.iter().zip(&want).position(|(g, w)| g != w)) {
                // Say what the byte held before and what the command would have written.
                let old = a.list[id].shadow[(x as usize) + k];
                let off = x + k as u64;
                let (ss, ds) = (starts(&p.src), starts(&p.dst));
                let new = p.dst.iter().enumerate().find_map(|(i, seg)| match seg.at {
                    Some((sid, so)) if sid == id && off >= so && off < so + seg.len() => {
                        let t = ds[i] + (off - so);
                        Some((t, expect::new_bytes(p, a, &ss, t, 1)[0]))
                    }
                    _ => None,
                });
                if let Some(f) = v.damage.first.as_mut() {
                    f.push_str(&format!(
                        " (held {old:#04x} before; {} after {moved:#x} bytes moved)",
                        new.map_or("not a destination byte".to_owned(), |(t, b)| format!(
                            "transfer offset {t:#x}, where the command writes {b:#04x},"
                        ))
                    ));
                }
            }
            a.list[id].shadow[x as usize..y as usize].copy_from_slice(&got);
        }
    }
    Ok(v)
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
