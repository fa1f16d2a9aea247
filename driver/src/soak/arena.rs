//! The memory the soak hands to the device and what every byte of it must hold.
//!
//! An *arena* is a region whose bytes commands may use: a host buffer mapped at an IOVA
//! (read-write, or read-only for WRITE_READ_ONLY faults), or 1 MiB of an endpoint's BAR2
//! inside one 2 MiB IOMMU window. Each keeps a *shadow*, the bytes it must hold: CPU writes
//! and every checked command update it, so "no byte changed that nobody wrote" is
//! `arena == shadow`, checked at every sweep. Around every arena is a guard nobody is ever
//! handed: 16 KiB at each end of a host buffer (inside the IOMMU mapping, so a stray write
//! would land there, not fault), and for BAR2 everything outside the arenas, filled with a
//! pattern computed from the seed (so a second guest can check what the first left behind).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use super::rng::{mix, Rng};
use crate::bench::{Bench, BAR_WINDOW};
use crate::hostmem::HostMem;
use crate::mapping::Place;
use crate::vfio::DmaPerm;

/// Bytes of a host arena handed out, and of the guard at each of its ends.
pub const HOST_ARENA: u64 = 1 << 20;
pub const HOST_GUARD: u64 = 16 << 10;
/// A smaller read-only host arena: the source of reads, the target of refused writes.
pub const RO_ARENA: u64 = 256 << 10;
/// Bytes of a BAR2 arena; arenas per endpoint.
pub const BAR_ARENA: u64 = 1 << 20;
pub const BAR_ARENAS_PER_EP: usize = 3;
/// Background bytes next to a BAR2 arena checked at every sweep (all of BAR2 at the start of
/// a second guest and at the end).
pub const BAR_BAND: u64 = 64 << 10;

/// Where an arena's bytes live.
pub enum Home {
    Host { mem: HostMem, perm: DmaPerm },
    Bar { ep: usize, offset: u64 },
}

pub struct Arena {
    pub home: Home,
    /// Bytes handed out: `[0, len)`.
    pub len: u64,
    /// What those bytes must hold.
    pub shadow: Vec<u8>,
}

impl Arena {
    pub fn writable(&self) -> bool {
        !matches!(
            self.home,
            Home::Host {
                perm: DmaPerm::ReadOnly,
                ..
            }
        )
    }

    /// What the mapping layer needs for bytes `off..` of the arena.
    pub fn place(&self, off: u64) -> Place {
        match &self.home {
            Home::Host { mem, .. } => Place::Host {
                iova: mem.iova,
                size: mem.len(),
                offset: HOST_GUARD + off,
            },
            Home::Bar { ep, offset } => Place::Bar {
                ep: *ep,
                offset: offset + off,
            },
        }
    }

    /// Reads the arena's bytes `off..off + len` as the CPU sees them now.
    pub fn read(&self, s: &Bench, off: u64, len: u64) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len as usize];
        match &self.home {
            Home::Host { mem, .. } => mem.buf.read(HOST_GUARD + off, &mut v)?,
            Home::Bar { ep, offset } => s.ep(*ep)?.bar2.read(offset + off, &mut v)?,
        }
        Ok(v)
    }

    /// Writes `data` at `off` from the CPU, shadow included.
    pub fn write(&mut self, s: &Bench, off: u64, data: &[u8]) -> Result<()> {
        match &self.home {
            Home::Host { mem, .. } => mem.buf.write(HOST_GUARD + off, data)?,
            Home::Bar { ep, offset } => s.ep(*ep)?.bar2.write(offset + off, data)?,
        }
        self.shadow[off as usize..off as usize + data.len()].copy_from_slice(data);
        Ok(())
    }

    /// The IOMMU mapping an unmap fault takes away: (IOVA, size, process address, permission).
    pub fn mapping(&self, s: &mut Bench) -> Result<(u64, u64, u64, DmaPerm)> {
        match &self.home {
            Home::Host { mem, perm } => Ok((mem.iova, mem.len(), mem.buf.vaddr(), *perm)),
            Home::Bar { ep, offset } => {
                let base = offset & !(BAR_WINDOW - 1);
                let (iova, len) = s.bar_iova(*ep, base)?;
                Ok((iova, len, s.ep(*ep)?.bar2.vaddr() + base, DmaPerm::ReadWrite))
            }
        }
    }
}

/// Every arena of the run and the seed their guards come from.
pub struct Arenas {
    pub list: Vec<Arena>,
    seed: u64,
}

/// Corrupted bytes found by a comparison: how many, and a description of the first.
#[derive(Debug, Default)]
pub struct Damage {
    pub bytes: u64,
    pub first: Option<String>,
}

impl Damage {
    pub fn add(&mut self, where_: &str, base: u64, got: &[u8], want: &[u8]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            if g != w {
                self.bytes += 1;
                if self.first.is_none() {
                    self.first = Some(format!(
                        "{where_} offset {:#x}: {g:#04x}, expected {w:#04x}",
                        base + i as u64
                    ));
                }
            }
        }
    }
}

/// The background byte pattern of BAR2 of endpoint `ep` (by BAR offset) or the guards of host
/// arena `id` (by buffer offset): a function of the seed only.
fn pattern(seed: u64, key: u64, start: u64, len: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len as usize + 16);
    let first = start / 8;
    let mut w = first;
    while (v.len() as u64) < len + (start - first * 8) {
        v.extend_from_slice(&mix(seed ^ key.rotate_left(40) ^ w).to_le_bytes());
        w += 1;
    }
    let skip = (start - first * 8) as usize;
    v.drain(..skip);
    v.truncate(len as usize);
    v
}

fn host_key(id: usize) -> u64 {
    0x4057_0000 | id as u64
}

fn bar_key(ep: usize) -> u64 {
    0xBA20_0000 | ep as u64
}

impl Arenas {
    /// Arenas without a bench (BAR homes only, shadows as given), for the pure logic's tests.
    #[cfg(test)]
    pub fn detached(list: Vec<Arena>) -> Self {
        Self { list, seed: 0 }
    }

    /// Allocates and maps the host arenas (`rw` read-write, one read-only), lays out the BAR2
    /// arenas of every endpoint from the seed, and writes the guards. The first guest
    /// (`fresh`) fills all of BAR2 with its background; a later one checks what is there
    /// first (`check_background`). Every arena then gets random bytes.
    pub fn create(s: &mut Bench, seed: u64, rw: usize) -> Result<Self> {
        let mut list = Vec::new();
        for i in 0..=rw {
            let (len, perm) = if i < rw {
                (HOST_ARENA, DmaPerm::ReadWrite)
            } else {
                (RO_ARENA, DmaPerm::ReadOnly)
            };
            let mem = s
                .alloc_host(len + 2 * HOST_GUARD, perm)
                .context("allocating a host arena")?;
            list.push(Arena {
                home: Home::Host { mem, perm },
                len,
                shadow: vec![0; len as usize],
            });
        }
        for ep in 0..s.endpoints.len() {
            let bar2_len = s.ep(ep)?.bar2_len();
            let layout = bar_layout(seed, ep, bar2_len);
            if layout.is_empty() {
                bail!(
                    "ep{ep}'s BAR2 is {bar2_len:#x} bytes; the soak needs at least {BAR_WINDOW:#x} (one IOMMU window \
                     for an arena and its bands): run phyr-device with a larger --bar2-size"
                );
            }
            for offset in layout {
                list.push(Arena {
                    home: Home::Bar { ep, offset },
                    len: BAR_ARENA,
                    shadow: vec![0; BAR_ARENA as usize],
                });
            }
        }
        let a = Self { list, seed };
        for id in 0..a.list.len() {
            if let Home::Host { mem, .. } = &a.list[id].home {
                let total = mem.len();
                mem.buf.write(0, &pattern(seed, host_key(id), 0, HOST_GUARD))?;
                let top = HOST_GUARD + a.list[id].len;
                mem.buf.write(top, &pattern(seed, host_key(id), top, total - top))?;
            }
        }
        Ok(a)
    }

    /// Fills all of BAR2 of every endpoint with its background pattern (the first guest).
    pub fn fill_background(&self, s: &Bench) -> Result<()> {
        const CHUNK: u64 = 1 << 20;
        for ep in 0..s.endpoints.len() {
            let e = s.ep(ep)?;
            let len = e.bar2_len();
            let mut off = 0;
            while off < len {
                let n = CHUNK.min(len - off);
                e.bar2.write(off, &pattern(self.seed, bar_key(ep), off, n))?;
                off += n;
            }
        }
        Ok(())
    }

    /// Gives every arena fresh random bytes (its shadow too).
    pub fn randomize(&mut self, s: &Bench, rng: &mut Rng) -> Result<()> {
        for a in &mut self.list {
            let mut v = vec![0u8; a.len as usize];
            rng.fill(&mut v);
            a.write(s, 0, &v)?;
        }
        Ok(())
    }

    /// Compares every arena with its shadow and every guard with its pattern; the BAR2
    /// background only in bands next to the arenas, unless `full` (all of it). A difference
    /// is counted, described, and taken into the shadow (so it is reported once).
    pub fn sweep(&mut self, s: &Bench, full: bool) -> Result<(Damage, u64)> {
        let mut d = Damage::default();
        let mut checked = 0u64;
        for id in 0..self.list.len() {
            let a = &self.list[id];
            let got = a.read(s, 0, a.len)?;
            let what = self.describe(id);
            d.add(&what, 0, &got, &a.shadow);
            checked += a.len;
            if let Home::Host { mem, .. } = &a.home {
                let total = mem.len();
                let top = HOST_GUARD + a.len;
                for (start, len) in [(0, HOST_GUARD), (top, total - top)] {
                    let got = mem.buf.to_vec(start, len as usize)?;
                    let want = pattern(self.seed, host_key(id), start, len);
                    if got != want {
                        d.add(&format!("guard of {what}, buffer"), start, &got, &want);
                        mem.buf.write(start, &want)?;
                    }
                    checked += len;
                }
            }
            if got != self.list[id].shadow {
                self.list[id].shadow = got;
            }
        }
        let (bg, n) = self.background(s, full)?;
        d.bytes += bg.bytes;
        d.first = d.first.or(bg.first);
        Ok((d, checked + n))
    }

    /// Checks the BAR2 background of every endpoint: the bands next to the arenas, or, when
    /// `full`, everything outside them. Returns the damage and the bytes checked.
    pub fn background(&self, s: &Bench, full: bool) -> Result<(Damage, u64)> {
        let mut d = Damage::default();
        let mut checked = 0;
        for ep in 0..s.endpoints.len() {
            let bar_len = s.ep(ep)?.bar2_len();
            let taken = self.bar_arenas(ep);
            let spans: Vec<(u64, u64)> = if full {
                gaps(&taken, bar_len)
            } else {
                taken
                    .iter()
                    .flat_map(|&(o, l)| {
                        [
                            (o.saturating_sub(BAR_BAND), o.min(BAR_BAND)),
                            (o + l, BAR_BAND.min(bar_len - (o + l))),
                        ]
                    })
                    .collect()
            };
            checked += self.check_background(s, ep, &spans, &mut d)?;
        }
        Ok((d, checked))
    }

    /// Checks BAR2 `spans` (offset, length) of `ep` against the background pattern; returns
    /// the bytes checked. A difference is rewritten, so it is reported once.
    fn check_background(&self, s: &Bench, ep: usize, spans: &[(u64, u64)], d: &mut Damage) -> Result<u64> {
        const CHUNK: u64 = 1 << 20;
        let e = s.ep(ep)?;
        let mut checked = 0;
        for &(start, len) in spans {
            let mut off = start;
            while off < start + len {
                let n = CHUNK.min(start + len - off);
                let mut got = vec![0u8; n as usize];
                e.bar2.read(off, &mut got)?;
                let want = pattern(self.seed, bar_key(ep), off, n);
                if got != want {
                    d.add(&format!("ep{ep} BAR2 outside the arenas, BAR"), off, &got, &want);
                    e.bar2.write(off, &want)?;
                }
                checked += n;
                off += n;
            }
        }
        Ok(checked)
    }

    /// The BAR2 arenas of `ep` as (BAR offset, length), sorted.
    fn bar_arenas(&self, ep: usize) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .list
            .iter()
            .filter_map(|a| match a.home {
                Home::Bar { ep: e, offset } if e == ep => Some((offset, a.len)),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// `host2`, `host-ro4`, `ep1.bar2+0x400000`: how messages name arena `id`.
    pub fn describe(&self, id: usize) -> String {
        match &self.list[id].home {
            Home::Host {
                perm: DmaPerm::ReadOnly,
                ..
            } => format!("host-ro{id}"),
            Home::Host { .. } => format!("host{id}"),
            Home::Bar { ep, offset } => format!("ep{ep}.bar2+{offset:#x}"),
        }
    }
}

/// Where the BAR2 arenas of `ep` sit: distinct 2 MiB windows, a 4 KiB-aligned offset inside
/// each that keeps a band of background on both sides, all from the seed alone (both guests
/// of a run agree on it).
pub fn bar_layout(seed: u64, ep: usize, bar2_len: u64) -> Vec<u64> {
    let mut rng = Rng::fork(seed, 0xBA5E_0000 + ep as u64);
    // Only whole windows: a BAR2 smaller than one gets no arena (the soak refuses it).
    let windows = bar2_len / BAR_WINDOW;
    let mut chosen = BTreeMap::new();
    let want = BAR_ARENAS_PER_EP.min(windows as usize);
    while chosen.len() < want {
        let w = rng.below(windows);
        let slack = (BAR_WINDOW - BAR_ARENA - 2 * BAR_BAND) / 4096;
        chosen.entry(w).or_insert(BAR_BAND + rng.below(slack + 1) * 4096);
    }
    chosen.into_iter().map(|(w, inner)| w * BAR_WINDOW + inner).collect()
}

/// The parts of `0..len` outside the sorted, disjoint `taken` spans.
fn gaps(taken: &[(u64, u64)], len: u64) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    let mut at = 0;
    for &(o, l) in taken {
        if o > at {
            v.push((at, o - at));
        }
        at = at.max(o + l);
    }
    if at < len {
        v.push((at, len - at));
    }
    v
}

/// Which bytes of which arena the commands of one step use: no two commands share a byte, so
/// each command's outcome can be predicted alone.
#[derive(Default)]
pub struct Occupancy {
    taken: BTreeMap<usize, Vec<(u64, u64)>>,
}

impl Occupancy {
    /// A free `len`-byte span of `arena` (of `size` bytes) at a random offset, taken; `None`
    /// after a few tries.
    pub fn take(&mut self, arena: usize, size: u64, len: u64, rng: &mut Rng) -> Option<u64> {
        if len == 0 || len > size {
            return None;
        }
        for _ in 0..12 {
            let off = rng.below(size - len + 1);
            if self.free(arena, off, len) {
                self.taken.entry(arena).or_default().push((off, len));
                return Some(off);
            }
        }
        None
    }

    fn free(&self, arena: usize, off: u64, len: u64) -> bool {
        self.taken
            .get(&arena)
            .is_none_or(|v| v.iter().all(|&(o, l)| off + len <= o || o + l <= off))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_agree_on_any_sub_range() {
        let whole = pattern(5, 9, 0, 100);
        for start in 0..20 {
            assert_eq!(pattern(5, 9, start, 37), whole[start as usize..start as usize + 37]);
        }
        assert_ne!(pattern(5, 9, 0, 16), pattern(5, 10, 0, 16));
    }

    #[test]
    fn bar_layout_is_disjoint_banded_and_seeded() {
        let v = bar_layout(42, 1, 64 << 20);
        assert_eq!(v, bar_layout(42, 1, 64 << 20));
        assert_eq!(v.len(), BAR_ARENAS_PER_EP);
        for w in v.windows(2) {
            assert!(w[0] + BAR_ARENA + 2 * BAR_BAND <= w[1]);
        }
        for &o in &v {
            let inner = o % BAR_WINDOW;
            assert!(inner >= BAR_BAND && inner + BAR_ARENA + BAR_BAND <= BAR_WINDOW && o % 4096 == 0);
        }
    }

    #[test]
    fn bar_layout_fits_any_bar2_or_gives_none() {
        for len in [0u64, 4096, BAR_WINDOW - 1] {
            assert!(bar_layout(7, 0, len).is_empty(), "{len:#x}");
        }
        for len in [BAR_WINDOW, 2 * BAR_WINDOW, 3 * BAR_WINDOW + 4096, 8 << 30] {
            let v = bar_layout(7, 0, len);
            assert_eq!(v.len(), BAR_ARENAS_PER_EP.min((len / BAR_WINDOW) as usize));
            assert!(v.iter().all(|&o| o + BAR_ARENA + BAR_BAND <= len), "{len:#x}: {v:x?}");
        }
    }

    #[test]
    fn gaps_are_the_complement() {
        assert_eq!(gaps(&[(10, 5), (20, 5)], 30), vec![(0, 10), (15, 5), (25, 5)]);
        assert_eq!(gaps(&[(0, 30)], 30), vec![]);
    }

    #[test]
    fn occupancy_never_hands_out_a_byte_twice() {
        let mut o = Occupancy::default();
        let mut rng = Rng::new(3);
        let mut got = Vec::new();
        for _ in 0..200 {
            if let Some(off) = o.take(0, 1000, 37, &mut rng) {
                got.push(off);
            }
        }
        got.sort_unstable();
        for w in got.windows(2) {
            assert!(w[0] + 37 <= w[1]);
        }
        assert!(o.take(0, 10, 11, &mut rng).is_none());
        assert!(o.take(1, 10, 0, &mut rng).is_none());
        assert_eq!(o.take(2, 10, 10, &mut rng), Some(0));
        assert!(o.take(2, 10, 1, &mut rng).is_none());
    }
}
