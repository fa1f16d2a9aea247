//! `phyr edu-check`: exercises the VFIO plumbing (container, group, device fd, region info,
//! BAR mmap, DMA map/unmap incl. read-only, MSI eventfd) on QEMU's `edu` device (1234:11e8),
//! which has DMA and MSI, so the driver's lowest layer can be tested without phyr-device.
//! Register map from QEMU docs/specs/edu.rst.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::iova::{IovaAllocator, PAGE};
use crate::vfio::{self, Container, DmaBuffer, DmaPerm, EventFd, MmioRegion};

const EDU_ID: u64 = 0x00;
const EDU_LIVENESS: u64 = 0x04;
const EDU_IRQ_STATUS: u64 = 0x24;
const EDU_IRQ_RAISE: u64 = 0x60;
const EDU_IRQ_ACK: u64 = 0x64;
const EDU_DMA_SRC: u64 = 0x80;
const EDU_DMA_DST: u64 = 0x88;
const EDU_DMA_COUNT: u64 = 0x90;
const EDU_DMA_CMD: u64 = 0x98;
const DMA_START: u32 = 1;
const DMA_TO_RAM: u32 = 2;
const DMA_IRQ: u32 = 4;
const DMA_IRQ_BIT: u32 = 0x100;
/// The edu device's internal DMA buffer, in its own address space.
const EDU_BUF: u64 = 0x40000;
/// VFIO_PCI_MSI_IRQ_INDEX.
const MSI_INDEX: u32 = 1;

fn step(name: &str, r: Result<String>) -> bool {
    match r {
        Ok(detail) => {
            println!("ok   {name}: {detail}");
            true
        }
        Err(e) => {
            println!("FAIL {name}: {e:#}");
            false
        }
    }
}

fn dma(bar: &MmioRegion, src: u64, dst: u64, len: u32, cmd: u32) -> Result<()> {
    bar.write32(EDU_DMA_SRC, src as u32)?;
    bar.write32(EDU_DMA_DST, dst as u32)?;
    bar.write32(EDU_DMA_COUNT, len)?;
    bar.write32(EDU_DMA_CMD, cmd | DMA_START)?;
    let t0 = Instant::now();
    while bar.read32(EDU_DMA_CMD)? & DMA_START != 0 {
        if t0.elapsed() > Duration::from_secs(5) {
            bail!("edu DMA still running after 5 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

pub fn run(sys: &Path, bdf: Option<&str>) -> Result<bool> {
    let all = crate::sysfs::scan(sys)?;
    let f = all
        .iter()
        .find(|f| f.vendor == 0x1234 && f.device == 0x11e8 && bdf.is_none_or(|b| f.bdf.ends_with(b)))
        .context("no edu device (1234:11e8) in sysfs")?;
    println!("edu at {} driver={:?} iommu_group={:?}", f.bdf, f.driver, f.iommu_group);
    let group = f.iommu_group.context("edu has no IOMMU group (is intel_iommu=on?)")?;
    let mut c = Container::open()?;
    c.add_group(group)?;
    println!(
        "ok   container: IOMMU {} pgsizes {:#x}",
        c.iommu_type_name(),
        c.iova_pgsizes()?
    );
    let dev = c.open_device(group, &f.bdf)?;
    println!(
        "ok   device fd: pci={} reset={} regions={} irqs={}",
        dev.is_pci(),
        dev.supports_reset(),
        dev.num_regions(),
        dev.num_irqs()
    );
    let r0 = dev.region_info(vfio::VFIO_PCI_BAR0_REGION_INDEX)?;
    let cfg = dev.region_info(vfio::VFIO_PCI_CONFIG_REGION_INDEX)?;
    let mut ids = [0u8; 4];
    dev.region_read(&cfg, 0, &mut ids)?;
    println!(
        "ok   config: vendor:device {:02x}{:02x}:{:02x}{:02x}",
        ids[1], ids[0], ids[3], ids[2]
    );
    let bar = dev.map_region(&r0)?;
    println!("ok   bus master: COMMAND now {:#06x}", dev.enable_bus_master()?);
    let mut all_ok = true;
    all_ok &= step(
        "BAR0 mmap + ID",
        (|| {
            let id = bar.read32(EDU_ID)?;
            ensure!(id & 0xff == 0xed, "ID register {id:#x}, expected ..ed");
            bar.write32(EDU_LIVENESS, 0x1234_5678)?;
            let inv = bar.read32(EDU_LIVENESS)?;
            ensure!(inv == !0x1234_5678u32, "liveness returned {inv:#x}");
            Ok(format!("ID {id:#010x}, liveness inverts"))
        })(),
    );
    let ev = EventFd::new()?;
    all_ok &= step(
        "MSI eventfd",
        (|| {
            dev.set_irq_eventfds(MSI_INDEX, &[ev.raw()])?;
            bar.write32(EDU_IRQ_RAISE, 0x1)?;
            let n = ev.wait(Duration::from_secs(3))?;
            let st = bar.read32(EDU_IRQ_STATUS)?;
            bar.write32(EDU_IRQ_ACK, 0x1)?;
            ensure!(n > 0, "no MSI within 3 s of raising IRQ (status {st:#x})");
            Ok("raised and received".into())
        })(),
    );
    let mut iova = IovaAllocator::default();
    let (a, b, ro) = (DmaBuffer::new(4096)?, DmaBuffer::new(4096)?, DmaBuffer::new(4096)?);
    let (ia, ib, iro) = (
        iova.alloc(PAGE, PAGE).unwrap(),
        iova.alloc(PAGE, PAGE).unwrap(),
        iova.alloc(PAGE, PAGE).unwrap(),
    );
    c.map_dma(a.vaddr(), ia, 4096, DmaPerm::ReadWrite)?;
    c.map_dma(b.vaddr(), ib, 4096, DmaPerm::ReadWrite)?;
    c.map_dma(ro.vaddr(), iro, 4096, DmaPerm::ReadOnly)?;
    let pattern = crate::data::pattern(7, 4096);
    a.write(0, &pattern)?;
    ro.write(0, &[0xEE; 4096])?;
    all_ok &= step(
        "DMA RAM -> edu -> RAM",
        (|| {
            ev.take();
            dma(&bar, ia, EDU_BUF, 4096, DMA_IRQ)?;
            dma(&bar, EDU_BUF, ib, 4096, DMA_TO_RAM | DMA_IRQ)?;
            let got = b.to_vec(0, 4096)?;
            if let Some(off) = crate::data::first_diff(&got, &pattern) {
                bail!("byte {off}: got {:#04x}, expected {:#04x}", got[off], pattern[off]);
            }
            let n = ev.wait(Duration::from_secs(1))? + ev.take();
            bar.write32(EDU_IRQ_ACK, DMA_IRQ_BIT)?;
            ensure!(n > 0, "no MSI for the DMA completions");
            Ok(format!("4096 bytes via IOVA {ia:#x} and {ib:#x} match; {n} MSI(s)"))
        })(),
    );
    all_ok &= step(
        "read-only mapping blocks device writes",
        (|| {
            dma(&bar, EDU_BUF, iro, 4096, DMA_TO_RAM)?;
            let got = ro.to_vec(0, 4096)?;
            ensure!(
                got.iter().all(|&x| x == 0xEE),
                "the device wrote through a read-only IOVA mapping"
            );
            Ok(format!("IOVA {iro:#x} unchanged (expect a DMAR fault in dmesg)"))
        })(),
    );
    all_ok &= step(
        "DMA unmap",
        (|| {
            let n = c.unmap_dma(ib, 4096)?;
            ensure!(n == 4096, "unmapped {n} bytes");
            b.write(0, &[0u8; 4096])?;
            dma(&bar, EDU_BUF, ib, 4096, DMA_TO_RAM)?;
            ensure!(
                b.to_vec(0, 4096)?.iter().all(|&x| x == 0),
                "the device wrote to an unmapped IOVA"
            );
            Ok("unmapped IOVA no longer reaches the buffer".into())
        })(),
    );
    let _ = dev.set_irq_eventfds(MSI_INDEX, &[]);
    all_ok &= step(
        "device reset",
        dev.reset().map(|_| "VFIO_DEVICE_RESET".to_string()).map_err(Into::into),
    );
    println!("edu-check: {}", if all_ok { "all steps passed" } else { "FAILED" });
    Ok(all_ok)
}
