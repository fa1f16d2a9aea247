//! Faults injected while data moves: a long command starts, other commands beside it, and
//! once its destination changes (it is running) the guest takes a mapping it uses away
//! (VFIO_IOMMU_UNMAP_DMA), resets its endpoint (CTRL.RESET or VFIO_DEVICE_RESET) or disables
//! its queue. Each command may then end either way, and each way is checked exactly
//! (judge.rs); afterwards the mapping comes back, the endpoint is enabled again or the queue
//! is re-created.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dma_range::{regs, AddrSpace, Completion, Status};
use phyr_report::{MapLine, MapTarget, Perm, ResetKind, ResetLine, Window};

use super::arena::Home;
use super::plan::{Gone, Plan};
use super::Soak;
use crate::vfio::DmaPerm;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unmap,
    CtrlReset,
    VfioReset,
    QueueDisable,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Unmap, Kind::CtrlReset, Kind::VfioReset, Kind::QueueDisable];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Unmap => "unmap",
            Kind::CtrlReset => "ctrl-reset",
            Kind::VfioReset => "vfio-reset",
            Kind::QueueDisable => "queue-disable",
        }
    }
}

/// How long a fault step waits for the long command to start moving data.
const START_WAIT: Duration = Duration::from_millis(300);
/// Completion wait in a fault step (a long command the fault missed runs to its end).
const FAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Soak {
    /// One fault step: plans, submission, the injection, the checks, the recovery.
    pub fn fault_step(&mut self) -> Result<()> {
        let kind = Kind::ALL[self.rng.weighted(&[35, 20, 15, 30])];
        let neps = self.s.endpoints.len() as u64;
        let ep = self.rng.below(neps) as usize;
        let q = self.rng.below(u64::from(self.limits.queues)) as u32;
        let mode = self.mode(ep, q);
        let mut occ = super::arena::Occupancy::default();
        let target = (kind == Kind::Unmap).then(|| self.rng.below(self.a.list.len() as u64) as usize);
        let fill = self.rng.chance(30);
        let Some(long) = self.planner(&mut occ).long(ep, q, mode, fill, target)? else {
            return Ok(());
        };
        let mut plans = vec![long];
        for _ in 0..self.rng.range(0, 3) {
            let (e, qq) = self.pick_queue();
            let m = self.mode(e, qq);
            if let Some(p) = self.planner(&mut occ).normal(e, qq, m)? {
                plans.push(p);
            }
        }
        let unmapped = match target {
            Some(t) => Some(self.a.list[t].mapping(&mut self.s)?),
            None => None,
        };
        let gone = self.gone(kind, ep, target, unmapped)?;
        for p in &mut plans {
            match kind {
                Kind::Unmap => p.allow.gone = gone.clone(),
                Kind::VfioReset if p.ep != ep => p.allow.gone = gone.clone(),
                Kind::CtrlReset | Kind::VfioReset if p.ep == ep => {
                    p.allow.abort = Some(Status::ABORTED_RESET);
                    p.allow.may_vanish = true;
                }
                Kind::QueueDisable if p.ep == ep && p.q == q => {
                    p.allow.abort = Some(Status::ABORTED_QUEUE_DISABLED);
                    p.allow.may_vanish = true;
                }
                _ => {}
            }
        }
        if !self.prepare(&mut occ, &mut plans, target)? {
            return Ok(());
        }
        // The long command first on its queue, so it is the one running when the fault comes.
        for p in &mut plans {
            self.submit(p)?;
        }
        let before = self.watch(&plans[0]);
        let started = self.wait_for_start(&plans[0], &before)?;
        let extra = Duration::from_micros(self.rng.below(3000));
        std::thread::sleep(extra);
        let n = self.stats.faults + 1;
        let what = match (kind, target) {
            (Kind::Unmap, Some(t)) => format!(" target={}", self.a.describe(t)),
            (Kind::QueueDisable, _) => format!(" q={q}"),
            _ => String::new(),
        };
        println!(
            "# soak fault n={n} kind={} ep={ep}{what} cmds={} running={}",
            kind.name(),
            plans.len(),
            if started { "yes" } else { "unknown" }
        );
        self.stats.count_fault(kind.name());
        match kind {
            Kind::Unmap => {
                let (iova, len, vaddr, perm) = unmapped.context("an unmap step has a target")?;
                let t = target.context("an unmap step has a target")?;
                self.s.container.unmap_dma(iova, len)?;
                let done = self.collect(&mut plans, FAULT_TIMEOUT)?;
                self.s.container.map_dma(vaddr, iova, len, perm)?;
                self.note_map(t, iova, len, perm)?;
                for (p, c) in plans.iter().zip(done) {
                    self.check(p, c)?;
                }
            }
            Kind::CtrlReset | Kind::VfioReset => {
                let (hit, mut rest): (Vec<Plan>, Vec<Plan>) = plans.into_iter().partition(|p| p.ep == ep);
                let e = self.s.ep(ep)?;
                let reset_kind = if kind == Kind::CtrlReset {
                    e.w32(regs::REG_CTRL, regs::CTRL_RESET)?;
                    ResetKind::Ctrl
                } else {
                    e.dev.reset()?;
                    ResetKind::Vfio
                };
                // A register read returns after the reset has taken effect (ABI §7).
                e.r32(regs::REG_STATUS)?;
                let posted = self.harvest(ep, None)?;
                // Commands that completed before the reset are reported before its line, those
                // it aborted after it (docs/REPORT.md).
                let dev_ep = self.s.ep(ep)?.id.endpoint_id;
                let results: Vec<(&Plan, Option<Completion>)> = hit
                    .iter()
                    .map(|p| (p, p.cid.and_then(|id| posted.get(&(p.q, id)).copied())))
                    .collect();
                let aborted = |c: &Completion| c.status == Status::ABORTED_RESET as u16;
                for (p, c) in &results {
                    if let Some(c) = c.filter(|c| !aborted(c)) {
                        println!("{}", p.job().line(dev_ep, &c));
                    }
                }
                println!(
                    "{}",
                    ResetLine {
                        ep: dev_ep,
                        kind: reset_kind
                    }
                );
                for (p, c) in &results {
                    if let Some(c) = c.filter(|c| aborted(c)) {
                        println!("{}", p.job().line(dev_ep, &c));
                    }
                }
                let t = self.s.timeout;
                let e = self.s.ep(ep)?;
                e.dev.enable_bus_master()?;
                e.enable(t)?;
                self.forget_modes(ep, None);
                for (p, c) in results {
                    self.check(p, c)?;
                }
                let done = self.collect(&mut rest, FAULT_TIMEOUT)?;
                for (p, c) in rest.iter().zip(done) {
                    self.check(p, c)?;
                }
            }
            Kind::QueueDisable => {
                let (hit, mut rest): (Vec<Plan>, Vec<Plan>) = plans.into_iter().partition(|p| p.ep == ep && p.q == q);
                let posted = self.harvest(ep, Some(q))?;
                let dev_ep = self.s.ep(ep)?.id.endpoint_id;
                self.forget_modes(ep, Some(q));
                for p in &hit {
                    let c = p.cid.and_then(|id| posted.get(&(p.q, id)).copied());
                    if let Some(c) = &c {
                        println!("{}", p.job().line(dev_ep, c));
                    }
                    self.check(p, c)?;
                }
                let done = self.collect(&mut rest, FAULT_TIMEOUT)?;
                for (p, c) in rest.iter().zip(done) {
                    self.check(p, c)?;
                }
            }
        }
        self.sweep(false)
    }

    /// What stops working while the fault is under way, for commands it does not abort: the
    /// unmapped range; during a VFIO reset of `ep`, whose config space Linux disables around
    /// it (pci_dev_save_and_disable), its BAR2 by bus address (nothing decodes it) and through
    /// the IOMMU (QEMU refuses the DMA messages).
    fn gone(
        &mut self,
        kind: Kind,
        ep: usize,
        target: Option<usize>,
        unmapped: Option<(u64, u64, u64, DmaPerm)>,
    ) -> Result<Vec<Gone>> {
        let via_messages = vec![Status::IOMMU_FAULT, Status::DMA_MESSAGE_FAILED];
        Ok(match (kind, target, unmapped) {
            (Kind::Unmap, Some(t), Some((iova, len, _, _))) => {
                let bar = matches!(self.a.list[t].home, Home::Bar { .. });
                vec![Gone {
                    space: AddrSpace::Iova,
                    lo: iova,
                    hi: iova + len,
                    statuses: if bar { via_messages } else { vec![Status::IOMMU_FAULT] },
                    message: bar,
                }]
            }
            (Kind::VfioReset, _, _) => {
                let (_, _, bus, len) = self.limits.bars[ep];
                let mut v = vec![Gone {
                    space: AddrSpace::Bus,
                    lo: bus,
                    hi: bus + len,
                    statuses: vec![Status::BUS_NO_TARGET],
                    message: false,
                }];
                for id in 0..self.a.list.len() {
                    if matches!(self.a.list[id].home, Home::Bar { ep: e, .. } if e == ep) {
                        let (iova, len, _, _) = self.a.list[id].mapping(&mut self.s)?;
                        v.push(Gone {
                            space: AddrSpace::Iova,
                            lo: iova,
                            hi: iova + len,
                            statuses: via_messages.clone(),
                            message: true,
                        });
                    }
                }
                v
            }
            _ => Vec::new(),
        })
    }

    /// The first bytes of a long command's destination before it runs (its shadow: the
    /// bytes were refreshed before submission).
    fn watch(&self, p: &Plan) -> Vec<u8> {
        match p.dst.first().and_then(|d| d.at.map(|at| (at, d.len()))) {
            Some(((id, off), len)) => self.a.list[id].shadow[off as usize..(off + 64.min(len)) as usize].to_vec(),
            None => Vec::new(),
        }
    }

    /// Waits (at most START_WAIT) until the long command's destination changes.
    fn wait_for_start(&self, p: &Plan, before: &[u8]) -> Result<bool> {
        let Some((id, off)) = p.dst.first().and_then(|d| d.at) else {
            return Ok(false);
        };
        let t0 = Instant::now();
        while t0.elapsed() < START_WAIT {
            if self.a.list[id].read(&self.s, off, before.len() as u64)? != before {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(false)
    }

    /// After a reset (`q` = None: every queue of `ep`) or the disable of queue `q`: takes the
    /// queues out of the session and collects what the device posted, by (queue, id).
    fn harvest(&mut self, ep: usize, q: Option<u32>) -> Result<BTreeMap<(u32, u16), Completion>> {
        let mut taken = Vec::new();
        let queues: Vec<u32> = match q {
            Some(q) => vec![q],
            None => (0..self.s.ep(ep)?.id.num_queues).collect(),
        };
        for qq in queues {
            if let Some(queue) = self.s.take_queue(ep, qq) {
                taken.push(queue);
            }
        }
        if q.is_some() {
            for queue in &taken {
                queue.disable(self.s.ep(ep)?)?;
            }
        }
        let mut posted = BTreeMap::new();
        // Completions are posted before the reset or disable is taken; look twice anyway.
        for round in 0..2 {
            for queue in &mut taken {
                for c in queue.drain_posted()? {
                    posted.insert((queue.q, c.command_id), c);
                }
            }
            if round == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(posted)
    }

    /// The `# phyr-map` line of a mapping restored after an unmap fault.
    fn note_map(&self, arena: usize, iova: u64, len: u64, perm: DmaPerm) -> Result<()> {
        let target = match self.a.list[arena].home {
            Home::Host { .. } => MapTarget::Host,
            Home::Bar { ep, offset } => MapTarget::Bar {
                ep: self.s.ep(ep)?.id.endpoint_id,
                bar: 2,
                offset: offset & !(crate::bench::BAR_WINDOW - 1),
            },
        };
        let perm = match perm {
            DmaPerm::ReadOnly => Perm::Read,
            DmaPerm::ReadWrite => Perm::ReadWrite,
        };
        println!(
            "{}",
            MapLine {
                target,
                iova: Window { addr: iova, len },
                perm
            }
        );
        Ok(())
    }
}
