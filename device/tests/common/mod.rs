//! Shared host-side test rig: a real fleet of endpoints served by real vfio-user servers on
//! UNIX sockets, driven by the real vfio-user client with memfd "guest RAM" (one DMA map per
//! client unless a test maps differently). Nothing here is a mock: the client talks to the
//! server exactly as QEMU does, and the test plays the guest driver.
#![allow(dead_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dma_range::regs::*;
use dma_range::{AddrSpace, Command, Completion, DmaRange, COMMAND_SIZE, COMPLETION_SIZE};
use phyr_device::{Fleet, FleetConfig, VfioEndpoint};
use vfio_user::{pci_region, Client, MmapRegion, ServerHandle};

/// Where every client maps its guest RAM.
pub const RAM_IOVA: u64 = 0x1_0000_0000;
/// Bus addresses the rig programs: BAR0 of endpoint i at BAR0_BUS + i * 0x10_0000,
/// BAR2 at BAR2_BUS + i * 0x1_0000_0000.
pub const BAR0_BUS: u64 = 0xFE00_0000;
pub const BAR2_BUS: u64 = 0x80_0000_0000;

/// Guest RAM layout (offsets from RAM_IOVA) used by `QueueDrv`.
/// Queue q's rings: SQ at RING_AREA + q MiB (up to 256 KiB), CQ 256 KiB further (up to
/// 128 KiB), shadow doorbells in the queue's last page.
pub const RING_AREA: u64 = 0;
pub const LIST_AREA: u64 = 0x40_0000;
pub const DATA_AREA: u64 = 0x80_0000;

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "phyr-dev-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn bar0_bus(ep: usize) -> u64 {
    BAR0_BUS + ep as u64 * 0x10_0000
}
pub fn bar2_bus(ep: usize) -> u64 {
    BAR2_BUS + ep as u64 * 0x1_0000_0000
}

/// One endpoint as a client sees it, with its guest RAM.
pub struct Ep {
    pub index: usize,
    pub client: Client,
    pub ram_fd: OwnedFd,
    pub ram: MmapRegion,
    pub ram_size: u64,
}

impl Ep {
    pub fn w32(&self, off: u64, v: u32) {
        self.client
            .region_write(pci_region::BAR0, off, &v.to_le_bytes())
            .unwrap();
    }
    pub fn w64(&self, off: u64, v: u64) {
        self.client
            .region_write(pci_region::BAR0, off, &v.to_le_bytes())
            .unwrap();
    }
    pub fn r32(&self, off: u64) -> u32 {
        let b = self.client.region_read(pci_region::BAR0, off, 4).unwrap();
        u32::from_le_bytes(b.try_into().unwrap())
    }
    pub fn r64(&self, off: u64) -> u64 {
        let b = self.client.region_read(pci_region::BAR0, off, 8).unwrap();
        u64::from_le_bytes(b.try_into().unwrap())
    }
    pub fn cfg_w32(&self, off: u64, v: u32) {
        self.client
            .region_write(pci_region::CONFIG, off, &v.to_le_bytes())
            .unwrap();
    }
    pub fn cfg_r32(&self, off: u64) -> u32 {
        let b = self.client.region_read(pci_region::CONFIG, off, 4).unwrap();
        u32::from_le_bytes(b.try_into().unwrap())
    }

    /// Programs BAR0/BAR2 the way a guest does (sizing first), then enables memory decode.
    pub fn program_bars(&self) {
        for off in [0x10, 0x18, 0x1C] {
            self.cfg_w32(off, 0xFFFF_FFFF);
            self.cfg_r32(off);
        }
        self.cfg_w32(0x10, bar0_bus(self.index) as u32);
        self.cfg_w32(0x18, bar2_bus(self.index) as u32);
        self.cfg_w32(0x1C, (bar2_bus(self.index) >> 32) as u32);
        self.client
            .region_write(pci_region::CONFIG, 0x04, &0x0006u16.to_le_bytes())
            .unwrap();
    }

    /// Guest RAM at `iova` (must be inside this endpoint's RAM).
    pub fn put(&self, iova: u64, data: &[u8]) {
        let off = (iova - RAM_IOVA) as usize;
        self.ram.slice(off, data.len()).unwrap().copy_from(data).unwrap();
    }
    pub fn get(&self, iova: u64, len: usize) -> Vec<u8> {
        let off = (iova - RAM_IOVA) as usize;
        let mut v = vec![0u8; len];
        self.ram.slice(off, len).unwrap().copy_to(&mut v);
        v
    }

    /// Maps `size` bytes of `fd` at `iova` for DMA too (memory shared between rigs).
    #[allow(dead_code)] // used by the bench
    pub fn dma_map_fd(&self, iova: u64, size: u64, fd: std::os::fd::BorrowedFd<'_>) {
        self.client.dma_map(iova, size, fd, 0, true, true).unwrap();
    }

    /// Writes a single-block list into guest RAM and returns its head.
    pub fn list(&self, iova: u64, segs: &[DmaRange]) -> DmaRange {
        let bytes: Vec<u8> = segs.iter().flat_map(|s| s.to_bytes()).collect();
        self.put(iova, &bytes);
        Command::list_head(AddrSpace::Iova, iova, segs.len() as u32)
    }

    /// BAR2 of this endpoint as the guest CPU sees it (the sparse-mmap area).
    pub fn map_bar2(&self) -> MmapRegion {
        let (info, fd) = self.client.region_info(pci_region::BAR2).unwrap();
        let fd = fd.expect("BAR2 comes with an fd");
        Client::mmap_region(fd.as_fd(), &info, 0, info.size, true).unwrap()
    }
}

pub struct Rig {
    pub fleet: Fleet,
    pub servers: Vec<ServerHandle>,
    pub eps: Vec<Ep>,
    pub dir: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for e in self.eps.drain(..) {
            e.client.close();
        }
        self.servers.clear();
        self.fleet.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fleet of `n` endpoints (switch per endpoint from `topology`, or all 0), each with a
/// connected client, `ram` bytes of memfd guest RAM mapped at RAM_IOVA, and programmed BARs.
pub fn rig_with(cfg: FleetConfig, ram: u64) -> Rig {
    let dir = tmpdir("rig");
    let fleet = Fleet::new(&cfg).unwrap();
    let mut servers = Vec::new();
    let mut eps = Vec::new();
    for (i, ep) in fleet.endpoints.iter().enumerate() {
        let path = dir.join(format!("ep{i}.sock"));
        servers.push(
            vfio_user::Server::new(&path, Arc::new(VfioEndpoint::new(ep.clone())))
                .unwrap()
                .spawn()
                .unwrap(),
        );
        let client = Client::connect(&path).unwrap();
        let ram_fd = vfio_user::memfd("guest-ram", ram).unwrap();
        client.dma_map(RAM_IOVA, ram, ram_fd.as_fd(), 0, true, true).unwrap();
        let view = MmapRegion::map(ram_fd.as_fd(), 0, ram, true, true).unwrap();
        let e = Ep {
            index: i,
            client,
            ram_fd,
            ram: view,
            ram_size: ram,
        };
        e.program_bars();
        eps.push(e);
    }
    Rig {
        fleet,
        servers,
        eps,
        dir,
    }
}

pub fn rig(n: u16) -> Rig {
    rig_with(
        FleetConfig {
            endpoints: n,
            bar2_size: 4 << 20,
            ..Default::default()
        },
        16 << 20,
    )
}

/// A guest-side queue driver: SQ/CQ rings (and shadow doorbells) in the endpoint's RAM.
pub struct QueueDrv {
    pub q: u32,
    pub size: u32,
    pub sq: u64,
    pub cq: u64,
    pub shadow: u64,
    pub tail: u32,
    pub cq_head: u32,
    pub phase: bool,
    pub poll: bool,
}

impl QueueDrv {
    /// Programs queue `q` of `ep` (rings in the RING_AREA) and enables it and the device.
    pub fn new(ep: &Ep, q: u32, size: u32, ctrl: u32) -> QueueDrv {
        assert!(size <= 4096);
        let base = RAM_IOVA + RING_AREA + u64::from(q) * 0x10_0000;
        let d = QueueDrv {
            q,
            size,
            sq: base,
            cq: base + 0x4_0000,
            shadow: base + 0xF_F000,
            tail: 0,
            cq_head: 0,
            phase: true,
            poll: ctrl & QCTRL_POLL != 0,
        };
        ep.put(d.cq, &vec![0u8; size as usize * COMPLETION_SIZE]);
        ep.put(d.shadow, &[0u8; 8]);
        ep.w64(queue_reg(q, Q_SQ_BASE), d.sq);
        ep.w64(queue_reg(q, Q_CQ_BASE), d.cq);
        ep.w32(queue_reg(q, Q_SQ_SIZE), size);
        ep.w32(queue_reg(q, Q_CQ_SIZE), size);
        ep.w64(queue_reg(q, Q_SHADOW_BASE), d.shadow);
        ep.w32(queue_reg(q, Q_MSIX_VECTOR), q);
        ep.w32(REG_CTRL, CTRL_ENABLE);
        ep.w32(queue_reg(q, Q_CTRL), QCTRL_ENABLE | ctrl);
        assert_eq!(
            ep.r32(queue_reg(q, Q_STATUS)),
            QSTATUS_ENABLED,
            "queue {q} did not enable"
        );
        d
    }

    /// Writes `cmd` at the SQ tail and rings (doorbell, or shadow in POLL mode).
    pub fn submit(&mut self, ep: &Ep, cmd: &Command) {
        self.push(ep, cmd);
        self.ring(ep);
    }

    /// Writes `cmd` at the SQ tail without ringing.
    pub fn push(&mut self, ep: &Ep, cmd: &Command) {
        ep.put(self.sq + u64::from(self.tail) * COMMAND_SIZE as u64, &cmd.to_bytes());
        self.tail = (self.tail + 1) % self.size;
    }

    pub fn ring(&self, ep: &Ep) {
        // The entries must be visible before the new tail (a driver's wmb()).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if self.poll {
            ep.put(self.shadow, &self.tail.to_le_bytes());
        } else {
            ep.w32(doorbell(self.q, DB_SQ_TAIL), self.tail);
        }
    }

    /// The completion at the CQ head, if the device posted it (phase matches).
    pub fn peek(&self, ep: &Ep) -> Option<Completion> {
        let b = ep.get(
            self.cq + u64::from(self.cq_head) * COMPLETION_SIZE as u64,
            COMPLETION_SIZE,
        );
        let c = Completion::from_bytes(b.as_slice().try_into().unwrap());
        (c.phase == self.phase).then_some(c)
    }

    /// Consumes the completion at the head (and tells the device).
    pub fn pop(&mut self, ep: &Ep) -> Option<Completion> {
        let c = self.peek(ep)?;
        self.cq_head += 1;
        if self.cq_head == self.size {
            self.cq_head = 0;
            self.phase = !self.phase;
        }
        if self.poll {
            ep.put(self.shadow + 4, &self.cq_head.to_le_bytes());
        } else {
            ep.w32(doorbell(self.q, DB_CQ_HEAD), self.cq_head);
        }
        Some(c)
    }

    /// Waits (up to 10 s) for the next completion.
    pub fn wait(&mut self, ep: &Ep) -> Completion {
        let t = Instant::now();
        loop {
            if let Some(c) = self.pop(ep) {
                return c;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no completion on queue {}",
                self.q
            );
            std::thread::yield_now();
        }
    }

    /// Submits and waits.
    pub fn run(&mut self, ep: &Ep, cmd: &Command) -> Completion {
        self.submit(ep, cmd);
        self.wait(ep)
    }
}

pub fn iova(addr: u64, len: u32) -> DmaRange {
    DmaRange::segment(AddrSpace::Iova, addr, len)
}
pub fn bus(addr: u64, len: u32) -> DmaRange {
    DmaRange::segment(AddrSpace::Bus, addr, len)
}
/// Guest RAM address of the data area plus `off`.
pub fn data(off: u64) -> u64 {
    RAM_IOVA + DATA_AREA + off
}
/// Guest RAM address of the list area plus `off`.
pub fn lists(off: u64) -> u64 {
    RAM_IOVA + LIST_AREA + off
}
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| ((i * 131) as u8) ^ seed).collect()
}
