//! `phyr soak`: the endpoints under a randomized workload for a while, with faults injected
//! while data moves, every command checked.
//!
//! Steps follow each other until the time is up. A normal step runs one to six commands at
//! once on random endpoints and queues (interrupt, polled or shadow-doorbell), each with
//! lists of random shape: one to 300 pieces of 1 byte to 64 KiB (at most 1 MiB a command) at
//! random offsets of the arenas (arena.rs), host memory by IOVA and BAR2 by bus address or
//! through the IOMMU, split at random segment sizes, chained in blocks of 2 to 4096 entries
//! stored in host memory or a BAR; one command in twelve has a bad segment on purpose. A fault step (one in
//! four) injects an unmap, a reset or a queue disable into a running command (faults.rs).
//! After every command its completion and its destination bytes are checked (judge.rs);
//! every few seconds, and after every fault, every arena and guard is compared with what it
//! must hold.
//!
//! Every command prints its `# phyr-cmd` line (docs/REPORT.md), so the harness can check it
//! against the device's trace. The soak's own lines, for the harness and for people:
//!
//! ```text
//! # soak begin seed=S guest=G seconds=T endpoints=E queues=Q
//! # soak fault n=N kind=unmap|ctrl-reset|vfio-reset|queue-disable ep=E [q=Q|target=ARENA] cmds=C running=yes|unknown
//! # soak lost ep=E q=Q id=I moved=0x..      (no completion; its bytes checked as a prefix)
//! # soak wrong ep=E q=Q id=I: WHY           (a completion none of the allowed outcomes)
//! # soak corrupt bytes=N: WHERE             (bytes that differ from what they must hold)
//! # soak end commands=N faults=N corrupted=N wrong=N checked=BYTES faults-by-kind=K:N,...
//! ```
//!
//! and, for the harness to add up, a `# phyr-soak` report line (docs/REPORT.md) every two
//! seconds, whenever the corrupted or wrong count changes, and at the end.

mod arena;
mod expect;
mod faults;
mod judge;
mod plan;
mod rng;
mod shape;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dma_range::{regs, Completion};
use phyr_report::{ResetKind, ResetLine, SoakLine, SoakState};

use crate::bench::Bench;
use crate::queue::QueueMode;
use arena::{Arenas, Occupancy};
use plan::{Limits, Plan};
use rng::Rng;
use shape::Planner;

/// `phyr soak` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Seed of every random choice (decimal or 0x-hex); default: from the clock, printed.
    #[arg(long, value_parser = parse_seed)]
    pub seed: Option<u64>,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 120)]
    pub seconds: u64,
    /// Which guest of a run this is: 2 and later check, first thing, that BAR2 outside the
    /// arenas still holds what guest 1 wrote (the harness kills guest 1's QEMU mid-run).
    #[arg(long, default_value_t = 1)]
    pub guest: u32,
    /// Host arenas of 1 MiB (besides the read-only one).
    #[arg(long, default_value_t = 4)]
    pub host_arenas: usize,
}

/// A seed: decimal or 0x-hex, 64 bits (not a size: `1K` is no seed).
fn parse_seed(s: &str) -> std::result::Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a seed: a decimal or 0x-hex 64-bit number"))
}

/// Host read-write arenas at most (IOVA space and guest memory are plenty; this bounds the
/// sweep's time).
const MAX_HOST_ARENAS: usize = 16;
/// A light sweep (arenas, guards, BAR2 bands) at least this often.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A progress line at least this often (the harness counts a killed guest from its last one).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct Stats {
    pub commands: u64,
    pub faults: u64,
    pub corrupted: u64,
    pub wrong: u64,
    pub lost: u64,
    pub checked: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn count_fault(&mut self, kind: &'static str) {
        self.faults += 1;
        *self.by_kind.entry(kind).or_default() += 1;
    }
}

pub struct Soak {
    s: Bench,
    a: Arenas,
    rng: Rng,
    limits: Limits,
    modes: BTreeMap<(usize, u32), QueueMode>,
    /// The next command id per (ep, q), kept across the queue's re-creations: ids stay unique
    /// for the whole run, so the trace cross-check never has to tell two commands apart by
    /// their reset epoch alone.
    next_id: BTreeMap<(usize, u32), u16>,
    stats: Stats,
    /// What the `# phyr-soak` lines carry besides the counts.
    seed: u64,
    guest: u32,
    started: Instant,
    /// BAR2 bytes checked as the guest before left them.
    inherited: u64,
}

/// Runs the soak; returns whether nothing was corrupted and every outcome was allowed.
pub fn run(mut s: Bench, args: &SoakArgs) -> Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let limits = Limits::read(&s)?;
    println!(
        "# soak begin seed={seed} guest={} seconds={} endpoints={} queues={}",
        args.guest,
        args.seconds,
        s.endpoints.len(),
        limits.queues
    );
    let mut rng = Rng::fork(seed, u64::from(args.guest));
    let a =
        Arenas::create(&mut s, seed, args.host_arenas.clamp(1, MAX_HOST_ARENAS)).context("setting up the arenas")?;
    let mut soak = Soak {
        s,
        a,
        rng: Rng::new(0),
        limits,
        modes: BTreeMap::new(),
        next_id: BTreeMap::new(),
        stats: Stats::default(),
        seed,
        guest: args.guest,
        started: Instant::now(),
        inherited: 0,
    };
    if args.guest > 1 {
        // What the guest before left in BAR2, its QEMU killed mid-command, must be intact.
        let (d, n) = soak.a.background(&soak.s, true)?;
        soak.stats.checked += n;
        soak.inherited = n;
        soak.report_damage(d);
        println!(
            "# soak checked {n} bytes of BAR2 outside the arenas, as guest {} left them",
            args.guest - 1
        );
    } else {
        soak.a.fill_background(&soak.s)?;
    }
    soak.a.randomize(&soak.s, &mut rng)?;
    soak.rng = rng;
    let t0 = Instant::now();
    soak.started = t0;
    let deadline = Duration::from_secs(args.seconds);
    let mut shown = (0, 0);
    let (mut last_sweep, mut last_progress) = (Instant::now(), Instant::now());
    while t0.elapsed() < deadline {
        if soak.rng.chance(25) {
            soak.fault_step()?;
            last_sweep = Instant::now();
        } else {
            soak.normal_step()?;
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            soak.sweep(false)?;
            last_sweep = Instant::now();
        }
        let now = (soak.stats.corrupted, soak.stats.wrong);
        if last_progress.elapsed() >= PROGRESS_EVERY || now != shown {
            soak.status(SoakState::Running);
            (last_progress, shown) = (Instant::now(), now);
        }
    }
    soak.sweep(true)?;
    soak.status(SoakState::End);
    let st = &soak.stats;
    let kinds: Vec<String> = st.by_kind.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    println!(
        "# soak end commands={} faults={} corrupted={} wrong={} lost={} checked={} faults-by-kind={}",
        st.commands,
        st.faults,
        st.corrupted,
        st.wrong,
        st.lost,
        st.checked,
        kinds.join(",")
    );
    println!(
        "{} commands, {} faults injected, {} corrupted bytes (seed {seed})",
        st.commands, st.faults, st.corrupted
    );
    Ok(st.corrupted == 0 && st.wrong == 0)
}

impl Soak {
    /// Prints the `# phyr-soak` line: where the soak stands.
    fn status(&self, state: SoakState) {
        let st = &self.stats;
        println!(
            "{}",
            SoakLine {
                guest: self.guest,
                seed: self.seed,
                state,
                t: self.started.elapsed().as_secs(),
                commands: st.commands,
                faults: st.faults,
                corrupted: st.corrupted,
                wrong: st.wrong,
                lost: st.lost,
                inherited: self.inherited,
            }
        );
    }

    /// The completion mode of (ep, q): chosen once, again after the queue was re-created.
    fn mode(&mut self, ep: usize, q: u32) -> QueueMode {
        let r = self.rng.weighted(&[50, 25, 25]);
        *self
            .modes
            .entry((ep, q))
            .or_insert([QueueMode::Irq, QueueMode::Spin, QueueMode::Poll][r])
    }

    fn forget_modes(&mut self, ep: usize, q: Option<u32>) {
        self.modes.retain(|&(e, qq), _| e != ep || q.is_some_and(|q| q != qq));
    }

    fn planner<'a>(&'a mut self, occ: &'a mut Occupancy) -> Planner<'a> {
        Planner {
            s: &mut self.s,
            a: &mut self.a,
            occ,
            rng: &mut self.rng,
            limits: &self.limits,
        }
    }

    fn pick_queue(&mut self) -> (usize, u32) {
        let ep = self.rng.below(self.s.endpoints.len() as u64) as usize;
        (ep, self.rng.below(u64::from(self.limits.queues)) as u32)
    }

    /// One to six commands at once, then each checked.
    fn normal_step(&mut self) -> Result<()> {
        let mut occ = Occupancy::default();
        let mut plans = Vec::new();
        for _ in 0..self.rng.range(1, 6) {
            let (ep, q) = self.pick_queue();
            let mode = self.mode(ep, q);
            if let Some(p) = self.planner(&mut occ).normal(ep, q, mode)? {
                plans.push(p);
            }
        }
        if !self.prepare(&mut occ, &mut plans, None)? {
            return Ok(());
        }
        for p in &mut plans {
            self.submit(p)?;
        }
        let done = self.collect(&mut plans, self.s.timeout)?;
        for (p, c) in plans.iter().zip(done) {
            self.check(p, c)?;
        }
        Ok(())
    }

    /// Fresh bytes in some sources and most destinations, list blocks written, expected
    /// CRCs; `false` if the arenas had no room for the lists this step.
    fn prepare(&mut self, occ: &mut Occupancy, plans: &mut [Plan], avoid: Option<usize>) -> Result<bool> {
        for p in plans.iter_mut() {
            // (A COMPARE's destination was made from its source when it was planned.)
            let compare = p.op == dma_range::Opcode::Compare;
            let fresh_src = !compare && self.rng.chance(30);
            let fresh_dst = !compare && (p.long || self.rng.chance(60));
            let segs: Vec<(usize, u64, u64)> = p
                .src
                .iter()
                .filter(|_| fresh_src)
                .chain(p.dst.iter().filter(|_| fresh_dst))
                .filter_map(|s| s.at.map(|(id, off)| (id, off, s.len())))
                .collect();
            let mut seen = std::collections::BTreeSet::new();
            for (id, off, len) in segs {
                if seen.insert((id, off, len)) {
                    let mut v = vec![0u8; len as usize];
                    self.rng.fill(&mut v);
                    self.a.list[id].write(&self.s, off, &v)?;
                }
            }
            if p.op != dma_range::Opcode::Fill {
                let Some(l) = self.planner(occ).place_list(p.ep, &p.src, avoid)? else {
                    return Ok(false);
                };
                p.src_list = Some(l);
            }
            if p.op != dma_range::Opcode::Crc32c {
                let Some(l) = self.planner(occ).place_list(p.ep, &p.dst, avoid)? else {
                    return Ok(false);
                };
                p.dst_list = Some(l);
            }
        }
        // After every write: the CRC describes the bytes as they are now.
        for p in plans.iter_mut() {
            p.crc = expect::expected_crc(p, &self.a);
        }
        Ok(true)
    }

    fn submit(&mut self, p: &mut Plan) -> Result<()> {
        let next = self.next_id.entry((p.ep, p.q)).or_insert(1);
        self.s.queue(p.ep, p.q, p.mode)?.set_next_id(*next);
        let id = p.job().submit(&mut self.s)?;
        *next = id.wrapping_add(1).max(1);
        p.cid = Some(id);
        Ok(())
    }

    /// Waits for every plan's completion (printing its report line). A command that gets
    /// none in time, or whose queue fails, is a wrong outcome: its endpoint is reset, and
    /// every command of that endpoint still waiting counts as lost (its bytes still checked).
    fn collect(&mut self, plans: &mut [Plan], timeout: Duration) -> Result<Vec<Option<Completion>>> {
        let mut out = Vec::new();
        let mut broken: Vec<usize> = Vec::new();
        for i in 0..plans.len() {
            let ep = plans[i].ep;
            if broken.contains(&ep) {
                out.push(None);
                continue;
            }
            let Some(cid) = plans[i].cid else {
                out.push(None);
                continue;
            };
            match plans[i].job().finish(&mut self.s, cid, timeout) {
                Ok(c) => out.push(Some(c)),
                Err(e) => {
                    let p = &plans[i];
                    println!("# soak wrong ep={} q={} id={cid}: {e}", p.ep, p.q);
                    self.stats.wrong += 1;
                    self.status(SoakState::Running);
                    broken.push(ep);
                    self.reset_endpoint(ep)?;
                    for p in plans.iter_mut().filter(|p| p.ep == ep) {
                        p.allow.may_vanish = true;
                    }
                    out.push(None);
                }
            }
        }
        Ok(out)
    }

    /// CTRL.RESET of `ep` (reported), its queues forgotten, enabled again.
    fn reset_endpoint(&mut self, ep: usize) -> Result<()> {
        let t = self.s.timeout;
        self.s.drop_queues(ep);
        let e = self.s.ep(ep)?;
        e.dev.enable_bus_master()?;
        e.w32(regs::REG_CTRL, regs::CTRL_RESET)?;
        e.r32(regs::REG_STATUS)?;
        println!(
            "{}",
            ResetLine {
                ep: e.id.endpoint_id,
                kind: ResetKind::Ctrl
            }
        );
        e.enable(t)?;
        self.forget_modes(ep, None);
        Ok(())
    }

    /// Judges one command and counts it.
    fn check(&mut self, p: &Plan, c: Option<Completion>) -> Result<()> {
        let v = judge::judge(&self.s, &mut self.a, p, c.as_ref())?;
        self.stats.commands += 1;
        if p.det.is_some() {
            // A bad segment on purpose counts as an injected fault.
            self.stats.count_fault("bad-segment");
        }
        let id = p.cid.unwrap_or(0);
        if c.is_none() {
            self.stats.lost += 1;
            println!(
                "# soak lost ep={} q={} id={id} {} moved={:#x}",
                p.ep,
                p.q,
                p.op.name(),
                v.moved
            );
        }
        if let Some(why) = &v.wrong {
            self.stats.wrong += 1;
            println!("# soak wrong ep={} q={} id={id} {}: {why}", p.ep, p.q, p.op.name());
            self.status(SoakState::Running);
        }
        if v.damage.bytes > 0 {
            println!(
                "# soak corrupt-command ep={} q={} id={id} {} {}",
                p.ep,
                p.q,
                p.op.name(),
                v.outcome
            );
        }
        self.report_damage(v.damage);
        Ok(())
    }

    fn report_damage(&mut self, d: arena::Damage) {
        if d.bytes > 0 {
            self.stats.corrupted += d.bytes;
            println!(
                "# soak corrupt bytes={}: first at {}",
                d.bytes,
                d.first.unwrap_or_default()
            );
            // At once: a guest whose QEMU is killed next still counts it.
            self.status(SoakState::Running);
        }
    }

    /// Every arena against its shadow, every guard against its pattern, and the BAR2
    /// background (in bands, or all of it when `full`).
    fn sweep(&mut self, full: bool) -> Result<()> {
        let (d, n) = self.a.sweep(&self.s, full)?;
        self.stats.checked += n;
        self.report_damage(d);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_seed;

    #[test]
    fn seeds_are_decimal_or_hex_64_bit_numbers_and_nothing_else() {
        assert_eq!(parse_seed("1796394553058652240"), Ok(1_796_394_553_058_652_240));
        assert_eq!(parse_seed("0x18EE13540b81f050"), Ok(0x18ee_1354_0b81_f050));
        for bad in [
            "",
            "1K",
            "-1",
            "0x",
            "0xzz",
            "18446744073709551616",
            "0x1_0000_0000_0000_0000",
        ] {
            assert!(parse_seed(bad).is_err(), "{bad:?}");
        }
    }
}
