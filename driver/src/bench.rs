//! The bench: the VFIO container, the phyr endpoints in it, the IOVA space, the peer-BAR
//! windows mapped through the IOMMU, and the queues. Everything the commands and the suite
//! work with hangs off this struct.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

pub use phyr_report::ResetKind;
use phyr_report::{MapLine, MapTarget, Perm, ResetLine, Window};

use crate::endpoint::{self, Endpoint};
use crate::error::{DriverError, Result};
use crate::hostmem::HostMem;
use crate::iova::{IovaAllocator, PAGE};
use crate::p2p::{self, Decision};
use crate::queue::{Queue, QueueMem, QueueMode};
use crate::vfio::{Container, DmaBuffer, DmaPerm};

/// Peer BAR windows are mapped into the IOMMU lazily, this many bytes at a time (aligned).
pub const BAR_WINDOW: u64 = 2 << 20;

/// How the mapping layer picks between bus address and IOMMU for a peer BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum P2pPolicy {
    /// As Linux's pci_p2pdma_map_type (ACS redirect bits on the path force the IOMMU).
    Linux,
    /// Topology only: same switch -> bus address, ignoring ACS redirect bits.
    Topology,
}

/// A peer BAR window mapped through the IOMMU.
#[derive(Debug, Clone, Copy)]
struct BarWindow {
    ep: usize,
    offset: u64,
    iova: u64,
}

/// The phyr endpoints this guest opened, as one test bench: one VFIO container (one IOMMU
/// domain), the IOVA space it hands out, the peer-BAR windows and the queues.
pub struct Bench {
    pub container: Rc<Container>,
    pub endpoints: Vec<Endpoint>,
    pub sys: PathBuf,
    pub policy: P2pPolicy,
    /// Print a `# phyr-map` / `# phyr-cmd` line for every mapping and command.
    pub trace_lines: bool,
    pub timeout: Duration,
    iova: IovaAllocator,
    windows: Vec<BarWindow>,
    queues: BTreeMap<(usize, u32), Queue>,
}

impl Bench {
    /// Opens every phyr endpoint bound to vfio-pci (or only those in `only`) in one container.
    pub fn open(sys: &Path, only: &[String]) -> Result<Self> {
        let funcs = endpoint::find(sys, only)?;
        let funcs: Vec<_> = funcs
            .into_iter()
            .filter(|f| f.driver.as_deref() == Some("vfio-pci"))
            .collect();
        if funcs.is_empty() {
            return Err(DriverError::NoEndpoints(sys.display().to_string()));
        }
        let mut container = Container::open()?;
        let mut endpoints = Vec::new();
        for (i, f) in funcs.into_iter().enumerate() {
            endpoints.push(Endpoint::open(&mut container, i, f)?);
        }
        let s = Self {
            container: Rc::new(container),
            endpoints,
            sys: sys.to_path_buf(),
            policy: P2pPolicy::Linux,
            trace_lines: false,
            timeout: Duration::from_secs(10),
            iova: IovaAllocator::default(),
            windows: Vec::new(),
            queues: BTreeMap::new(),
        };
        for ep in &s.endpoints {
            ep.reset_and_enable(s.timeout)?;
        }
        Ok(s)
    }

    pub fn ep(&self, i: usize) -> Result<&Endpoint> {
        self.endpoints
            .get(i)
            .ok_or_else(|| DriverError::Usage(format!("no endpoint {i} (this guest has {})", self.endpoints.len())))
    }

    /// Allocates `len` bytes of host memory and maps it at a fresh IOVA.
    pub fn alloc_host(&mut self, len: u64, perm: DmaPerm) -> Result<HostMem> {
        let buf = DmaBuffer::new(len as usize)?;
        let iova = self
            .iova
            .alloc(buf.len(), PAGE)
            .ok_or(DriverError::IovaExhausted { len })?;
        self.container.map_dma(buf.vaddr(), iova, buf.len(), perm)?;
        if self.trace_lines {
            let line = MapLine {
                target: MapTarget::Host,
                iova: Window {
                    addr: iova,
                    len: buf.len(),
                },
                perm: report_perm(perm),
            };
            println!("{line}");
        }
        Ok(HostMem::new(buf, iova, perm, self.container.clone()))
    }

    /// An IOVA no mapping will ever cover while the bench is open.
    pub fn unmapped_iova(&self) -> u64 {
        self.iova.never_mapped()
    }

    /// The IOVA at which byte `offset` of endpoint `ep`'s BAR2 is reachable through the IOMMU,
    /// and how many bytes from there stay contiguous in IOVA space (to the window's end).
    pub fn bar_iova(&mut self, ep: usize, offset: u64) -> Result<(u64, u64)> {
        let e = self.ep(ep)?;
        if offset >= e.bar2_len() {
            return Err(DriverError::Usage(format!(
                "offset {offset:#x} is past endpoint {ep}'s BAR2 ({:#x})",
                e.bar2_len()
            )));
        }
        let base = offset & !(BAR_WINDOW - 1);
        let win_len = BAR_WINDOW.min(e.bar2_len() - base);
        let w = match self.windows.iter().find(|w| w.ep == ep && w.offset == base) {
            Some(w) => *w,
            None => {
                let vaddr = e.bar2.vaddr() + base;
                let dev_ep = e.id.endpoint_id;
                let iova = self
                    .iova
                    .alloc(win_len, BAR_WINDOW)
                    .ok_or(DriverError::IovaExhausted { len: win_len })?;
                self.container.map_dma(vaddr, iova, win_len, DmaPerm::ReadWrite)?;
                if self.trace_lines {
                    let line = MapLine {
                        target: MapTarget::Bar {
                            ep: dev_ep,
                            bar: 2,
                            offset: base,
                        },
                        iova: Window {
                            addr: iova,
                            len: win_len,
                        },
                        perm: Perm::ReadWrite,
                    };
                    println!("{line}");
                }
                let w = BarWindow { ep, offset: base, iova };
                self.windows.push(w);
                w
            }
        };
        Ok((w.iova + (offset - base), base + win_len - offset))
    }

    /// How endpoint `client` should reach endpoint `provider`'s BAR.
    pub fn p2p_decision(&self, provider: usize, client: usize) -> Result<Decision> {
        let p = &self.ep(provider)?.pci;
        let c = &self.ep(client)?.pci;
        Ok(p2p::decide_from_sysfs(&self.sys, p, c, self.policy == P2pPolicy::Linux))
    }

    /// The queue `q` of endpoint `ep` in `mode`, created (or re-created in another mode) on demand.
    pub fn queue(&mut self, ep: usize, q: u32, mode: QueueMode) -> Result<&mut Queue> {
        let num = self.ep(ep)?.id.num_queues;
        if q >= num {
            return Err(DriverError::Usage(format!(
                "endpoint {ep} has {num} queues; no queue {q}"
            )));
        }
        let stale = self.queues.get(&(ep, q)).is_some_and(|x| x.mode != mode);
        if stale {
            if let Some(old) = self.queues.remove(&(ep, q)) {
                old.disable(&self.endpoints[ep])?;
            }
        }
        if !self.queues.contains_key(&(ep, q)) {
            let size = 64u32.min(self.endpoints[ep].id.max_queue_entries);
            let sq = self.alloc_host(u64::from(size) * dma_range::COMMAND_SIZE as u64, DmaPerm::ReadWrite)?;
            let cq = self.alloc_host(u64::from(size) * dma_range::COMPLETION_SIZE as u64, DmaPerm::ReadWrite)?;
            let shadow = match mode {
                QueueMode::Poll => Some(self.alloc_host(PAGE, DmaPerm::ReadWrite)?),
                _ => None,
            };
            let mem = QueueMem { sq, cq, shadow };
            let queue = Queue::create(&self.endpoints[ep], q, size, mode, mem, self.trace_lines)?;
            self.queues.insert((ep, q), queue);
        }
        Ok(self.queues.get_mut(&(ep, q)).expect("inserted above"))
    }

    /// Forgets every queue (after a device reset disabled them all).
    pub fn drop_queues(&mut self, ep: usize) {
        self.queues.retain(|k, _| k.0 != ep);
    }

    /// Takes queue `q` of endpoint `ep` out of the bench (to disable it and collect what it
    /// posted); the next use creates a fresh one.
    pub fn take_queue(&mut self, ep: usize, q: u32) -> Option<Queue> {
        self.queues.remove(&(ep, q))
    }

    /// Resets endpoint `ep` (CTRL.RESET) and enables it again; its queues are gone.
    pub fn reset_endpoint(&mut self, ep: usize) -> Result<()> {
        self.drop_queues(ep);
        let t = self.timeout;
        let e = self.ep(ep)?;
        e.dev.enable_bus_master()?;
        e.w32(dma_range::regs::REG_CTRL, dma_range::regs::CTRL_RESET)?;
        self.note_reset(ep, ResetKind::Ctrl);
        self.ep(ep)?.enable(t)
    }

    /// CTRL.RESET only (the endpoint stays disabled, the driver's queue state is kept until
    /// `reset_endpoint`/`drop_queues`).
    pub fn ctrl_reset(&self, ep: usize) -> Result<()> {
        self.ep(ep)?
            .w32(dma_range::regs::REG_CTRL, dma_range::regs::CTRL_RESET)?;
        self.note_reset(ep, ResetKind::Ctrl);
        Ok(())
    }

    /// VFIO_DEVICE_RESET (Linux clears Bus Master around it and restores config space).
    pub fn vfio_reset(&self, ep: usize) -> Result<()> {
        self.ep(ep)?.dev.reset()?;
        self.note_reset(ep, ResetKind::Vfio);
        Ok(())
    }

    /// Prints the `# phyr-reset` line (docs/REPORT.md) for a reset of `ep` that has returned.
    fn note_reset(&self, ep: usize, kind: ResetKind) {
        if self.trace_lines {
            if let Ok(e) = self.ep(ep) {
                let ep = e.id.endpoint_id;
                println!("{}", ResetLine { ep, kind });
            }
        }
    }

    pub fn endpoint_and_queue(&mut self, ep: usize, q: u32, mode: QueueMode) -> Result<(&Endpoint, &mut Queue)> {
        self.queue(ep, q, mode)?;
        let e = &self.endpoints[ep];
        let queue = self.queues.get_mut(&(ep, q)).expect("created above");
        Ok((e, queue))
    }
}

fn report_perm(p: DmaPerm) -> Perm {
    match p {
        DmaPerm::ReadOnly => Perm::Read,
        DmaPerm::ReadWrite => Perm::ReadWrite,
    }
}
