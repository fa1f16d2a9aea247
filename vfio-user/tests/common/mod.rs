//! A small test device and helpers shared by the integration tests.
#![allow(dead_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vfio_user::{
    memfd, pci_irq, pci_region, ClientHandles, Device, DeviceInfo, Errno, IrqInfo, MappingInfo, MmapRegion, RegionInfo,
    RegionMmap, Server, ServerHandle, ServerOptions, DEVICE_FLAG_PCI, DEVICE_FLAG_RESET, IRQ_INFO_EVENTFD,
    IRQ_INFO_MASKABLE, IRQ_INFO_NORESIZE, REGION_FLAG_READ, REGION_FLAG_WRITE,
};

pub const BAR0_SIZE: u64 = 4096;
pub const BAR2_SIZE: u64 = 64 * 1024;
pub const CONFIG_SIZE: u64 = 4096;
pub const MSIX_VECTORS: u32 = 8;
/// A BAR0 offset whose write makes the device read guest memory from the request thread.
pub const DMA_FROM_REQUEST_THREAD: u64 = 0x800;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected,
    Disconnected,
    Reset,
    Mapped(MappingInfo),
    Unmapped(u64, u64),
}

/// BAR0: 4 KiB of plain registers (REGION_READ/WRITE only). BAR2: 64 KiB memfd, mmap-able
/// in two sparse areas. BAR4: read-only 16 bytes. Config: 4 KiB. MSI-X: 8 vectors, INTx: 1.
pub struct TestDevice {
    pub bar0: Mutex<Vec<u8>>,
    pub bar2_fd: Arc<OwnedFd>,
    pub bar2: MmapRegion,
    pub config: Mutex<Vec<u8>>,
    pub events: Mutex<Vec<Event>>,
    pub client: Mutex<Option<ClientHandles>>,
    pub resets: AtomicUsize,
    /// Result of the last DMA attempted from the request thread.
    pub request_thread_dma: Mutex<Option<Result<(), vfio_user::DmaError>>>,
}

impl TestDevice {
    pub fn new() -> Arc<TestDevice> {
        let fd = memfd("bar2", BAR2_SIZE).unwrap();
        let bar2 = MmapRegion::map(fd.as_fd(), 0, BAR2_SIZE, true, true).unwrap();
        let mut config = vec![0; CONFIG_SIZE as usize];
        config[0..4].copy_from_slice(&0x7068_1234u32.to_le_bytes()); // vendor 0x1234, device 0x7068
        config[0x0b] = 0xff; // class: unassigned
        config[0x18] = 0x0; // BAR2: 32-bit memory
        Arc::new(TestDevice {
            bar0: Mutex::new(vec![0; BAR0_SIZE as usize]),
            bar2_fd: Arc::new(fd),
            bar2,
            config: Mutex::new(config),
            events: Mutex::new(Vec::new()),
            client: Mutex::new(None),
            resets: AtomicUsize::new(0),
            request_thread_dma: Mutex::new(None),
        })
    }

    pub fn client(&self) -> ClientHandles {
        self.client.lock().unwrap().clone().expect("a client is connected")
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn buf(&self, index: u32) -> Option<&Mutex<Vec<u8>>> {
        match index {
            pci_region::BAR0 => Some(&self.bar0),
            pci_region::CONFIG => Some(&self.config),
            _ => None,
        }
    }
}

impl Device for TestDevice {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            flags: DEVICE_FLAG_PCI | DEVICE_FLAG_RESET,
            num_regions: pci_region::COUNT,
            num_irqs: pci_irq::COUNT,
        }
    }

    fn region_info(&self, index: u32) -> Option<RegionInfo> {
        let rw = REGION_FLAG_READ | REGION_FLAG_WRITE;
        Some(match index {
            pci_region::BAR0 => RegionInfo::io(BAR0_SIZE, rw),
            pci_region::BAR2 => RegionInfo {
                size: BAR2_SIZE,
                flags: rw,
                mmap: Some(RegionMmap {
                    fd: Arc::clone(&self.bar2_fd),
                    file_offset: 0,
                    sparse_areas: vec![(0, 0x4000), (0x8000, 0x8000)],
                }),
            },
            pci_region::BAR4 => RegionInfo::io(16, REGION_FLAG_READ),
            pci_region::CONFIG => RegionInfo::io(CONFIG_SIZE, rw),
            _ => RegionInfo::io(0, 0),
        })
    }

    fn region_read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if index == pci_region::BAR2 {
            self.bar2
                .slice(offset as usize, buf.len())
                .ok_or(Errno::EINVAL)?
                .copy_to(buf);
            return Ok(());
        }
        if index == pci_region::BAR4 {
            buf.fill(0x44);
            return Ok(());
        }
        let b = self.buf(index).ok_or(Errno::EINVAL)?.lock().unwrap();
        buf.copy_from_slice(&b[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }

    fn region_write(&self, index: u32, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if index == pci_region::BAR0 && offset == DMA_FROM_REQUEST_THREAD {
            let s = self.client();
            let mut b = [0u8; 4];
            let iova = u64::from(u32::from_le_bytes(data[..4].try_into().unwrap_or([0; 4])));
            *self.request_thread_dma.lock().unwrap() = Some(s.dma.read(iova, &mut b));
            return Ok(());
        }
        if index == pci_region::BAR2 {
            self.bar2
                .slice(offset as usize, data.len())
                .ok_or(Errno::EINVAL)?
                .copy_from(data)
                .map_err(|_| Errno::EIO)?;
            return Ok(());
        }
        let mut b = self.buf(index).ok_or(Errno::EINVAL)?.lock().unwrap();
        b[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn irq_info(&self, index: u32) -> Option<IrqInfo> {
        match index {
            pci_irq::INTX => Some(IrqInfo {
                count: 1,
                flags: IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE,
            }),
            pci_irq::MSIX => Some(IrqInfo {
                count: MSIX_VECTORS,
                flags: IRQ_INFO_EVENTFD | IRQ_INFO_NORESIZE,
            }),
            _ => Some(IrqInfo { count: 0, flags: 0 }),
        }
    }

    fn reset(&self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
        self.events.lock().unwrap().push(Event::Reset);
    }

    fn connected(&self, client: ClientHandles) {
        *self.client.lock().unwrap() = Some(client);
        self.events.lock().unwrap().push(Event::Connected);
    }

    fn disconnected(&self) {
        *self.client.lock().unwrap() = None;
        self.events.lock().unwrap().push(Event::Disconnected);
    }

    fn dma_mapped(&self, m: &MappingInfo) {
        self.events.lock().unwrap().push(Event::Mapped(*m));
    }

    fn dma_unmapped(&self, iova: u64, size: u64) {
        self.events.lock().unwrap().push(Event::Unmapped(iova, size));
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh socket path under the temp dir.
pub fn sock_path() -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("vfio-user-test-{}-{n}.sock", std::process::id()))
}

/// A running server with a test device.
pub fn start() -> (Arc<TestDevice>, ServerHandle) {
    start_with(ServerOptions::default())
}

pub fn start_with(opts: ServerOptions) -> (Arc<TestDevice>, ServerHandle) {
    let dev = TestDevice::new();
    let server = Server::with_options(sock_path(), dev.clone(), opts).unwrap();
    (dev, server.spawn().unwrap())
}

/// Polls `f` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    f()
}

// ---- helpers of the hostile-client tests (malformed.rs, malformed_commands.rs) ----

/// Sends a raw request and returns the errno of the (error) reply.
pub fn errno_of(
    c: &vfio_user::Client,
    command: u16,
    payload: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> vfio_user::Errno {
    let r = c.call_raw(command, 0, payload, fds).expect("a reply");
    assert!(r.header.is_error(), "command {command} unexpectedly succeeded");
    assert!(r.payload.is_empty(), "error replies carry no payload");
    vfio_user::Errno::new(r.header.error as i32)
}

/// The session still answers a plain register round trip.
pub fn still_works(c: &vfio_user::Client) {
    c.region_write(vfio_user::pci_region::BAR0, 0, &[0xab]).unwrap();
    assert_eq!(c.region_read(vfio_user::pci_region::BAR0, 0, 1).unwrap(), vec![0xab]);
}

/// A test device, its server, and a client that has negotiated the version.
pub fn connected() -> (std::sync::Arc<TestDevice>, vfio_user::ServerHandle, vfio_user::Client) {
    let (dev, srv) = start();
    let c = vfio_user::Client::connect(srv.path()).unwrap();
    (dev, srv, c)
}

/// The VERSION payload a well-behaved client sends.
pub fn version_payload() -> Vec<u8> {
    vfio_user::wire::Version {
        major: 0,
        minor: 0,
        caps: vfio_user::wire::Capabilities::ours(),
    }
    .encode()
}

/// A new client connects and works: the server survived what the last one did.
pub fn server_accepts_next(srv: &vfio_user::ServerHandle) {
    let c = vfio_user::Client::connect(srv.path()).unwrap();
    still_works(&c);
}
