//! Serves one minimal PCI function on a socket so a real QEMU (`vfio-user-pci`) can be pointed
//! at it; logs what QEMU does and, once guest RAM is DMA-mapped, checks DMA_WRITE + DMA_READ
//! round trips through the chosen message layout.
//!
//! `cargo run -p vfio-user --example qemu_probe -- SOCKET [spec|packed] [IOVA]`

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use vfio_user::wire::DmaRwLayout;
use vfio_user::{
    memfd, pci_irq, pci_region, ClientHandles, Device, DeviceInfo, Errno, IrqInfo, MappingInfo, MmapRegion, RegionInfo,
    RegionMmap, Server, ServerOptions, DEVICE_FLAG_PCI, DEVICE_FLAG_RESET, REGION_FLAG_READ, REGION_FLAG_WRITE,
};

const BAR2_SIZE: u64 = 64 * 1024;

struct Probe {
    bar2_fd: Arc<OwnedFd>,
    bar2: MmapRegion,
    config: Mutex<Vec<u8>>,
    bar0: Mutex<Vec<u8>>,
    client: Mutex<Option<ClientHandles>>,
    probe_iova: u64,
}

impl Probe {
    /// Writes a pattern into guest memory and reads it back, from a worker thread.
    fn round_trip(&self) {
        let Some(s) = self.client.lock().unwrap().clone() else {
            return;
        };
        let iova = self.probe_iova;
        std::thread::spawn(move || {
            let pattern: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37).wrapping_add(1)).collect();
            let w = s.dma.write(iova, &pattern);
            let mut back = vec![0u8; 64];
            let r = s.dma.read(iova, &mut back);
            eprintln!("probe: DMA round trip at {iova:#x}: write {w:?} read {r:?}");
            eprintln!("probe: wrote {:02x?}", &pattern[..12]);
            eprintln!("probe: read  {:02x?}", &back[..12]);
            eprintln!(
                "probe: DMA ROUND TRIP {}",
                if back == pattern { "MATCHES" } else { "DIFFERS" }
            );
        });
    }
}

impl Device for Probe {
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
            pci_region::BAR0 => RegionInfo::io(4096, rw),
            pci_region::BAR2 => RegionInfo {
                size: BAR2_SIZE,
                flags: rw,
                mmap: Some(RegionMmap {
                    fd: Arc::clone(&self.bar2_fd),
                    file_offset: 0,
                    sparse_areas: vec![(0, BAR2_SIZE)],
                }),
            },
            pci_region::CONFIG => RegionInfo::io(4096, rw),
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
        let b = if index == pci_region::CONFIG {
            self.config.lock().unwrap()
        } else {
            self.bar0.lock().unwrap()
        };
        buf.copy_from_slice(&b[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn region_write(&self, index: u32, offset: u64, data: &[u8]) -> Result<(), Errno> {
        eprintln!("probe: region {index} write {offset:#x} {:02x?}", data);
        if index == pci_region::CONFIG {
            if offset == 4 && data.first().is_some_and(|b| b & 0x4 != 0) {
                self.round_trip();
            }
            return Ok(()); // read-only header for this probe
        }
        self.bar0.lock().unwrap()[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn irq_info(&self, _index: u32) -> Option<IrqInfo> {
        Some(IrqInfo { count: 0, flags: 0 })
    }
    fn reset(&self) {
        eprintln!("probe: DEVICE_RESET");
    }
    fn connected(&self, client: ClientHandles) {
        eprintln!("probe: connected");
        *self.client.lock().unwrap() = Some(client);
    }
    fn disconnected(&self) {
        eprintln!("probe: disconnected");
        *self.client.lock().unwrap() = None;
    }
    fn dma_mapped(&self, m: &MappingInfo) {
        eprintln!(
            "probe: DMA_MAP iova {:#x} size {:#x} r{} w{} fd_offset {:?}",
            m.iova, m.size, m.readable, m.writable, m.fd_offset
        );
    }

    fn dma_unmapped(&self, iova: u64, size: u64) {
        eprintln!("probe: DMA_UNMAP iova {iova:#x} size {size:#x}");
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: qemu_probe SOCKET [spec|packed] [IOVA]");
    let layout = match args.next().as_deref() {
        Some("packed") => DmaRwLayout::QemuPacked,
        _ => DmaRwLayout::Spec,
    };
    let probe_iova = args
        .next()
        .map(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap())
        .unwrap_or(0x800000);
    let mut config = vec![0u8; 4096];
    config[0..2].copy_from_slice(&0x1234u16.to_le_bytes()); // vendor
    config[2..4].copy_from_slice(&0x7068u16.to_le_bytes()); // device
    config[8] = 1; // revision
    config[9..12].copy_from_slice(&[0x00, 0x00, 0xff]); // class: unassigned
    let fd = memfd("probe-bar2", BAR2_SIZE).unwrap();
    let bar2 = MmapRegion::map(fd.as_fd(), 0, BAR2_SIZE, true, true).unwrap();
    bar2.slice(0, 8).unwrap().copy_from(b"BAR2MEM!").unwrap();
    let dev = Arc::new(Probe {
        bar2_fd: Arc::new(fd),
        bar2,
        config: Mutex::new(config),
        bar0: Mutex::new(vec![0; 4096]),
        client: Mutex::new(None),
        probe_iova,
    });
    let opts = ServerOptions {
        dma_layout: layout,
        ..Default::default()
    };
    eprintln!("probe: serving {path} with layout {layout:?}");
    Server::with_options(&path, dev, opts).unwrap().serve().unwrap();
}
