//! Moving phyr endpoints between drivers through sysfs: `driver_override`, `unbind`,
//! `drivers_probe` (as the guest init does for vfio-pci).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub const KERNEL_DRIVER: &str = "phyr";

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn write(p: &Path, v: &str) -> Result<()> {
    std::fs::write(p, v).with_context(|| format!("writing {v:?} to {}", p.display()))
}

/// BDFs of every 1234:7068 function, sorted.
pub fn endpoints(sysfs: &Path) -> Result<Vec<String>> {
    let dir = sysfs.join("bus/pci/devices");
    let mut v = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let p = e?.path();
        let id = (read_trim(&p.join("vendor")), read_trim(&p.join("device")));
        if id == (Some("0x1234".into()), Some("0x7068".into())) {
            if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                v.push(n.to_string());
            }
        }
    }
    v.sort();
    Ok(v)
}

fn dev_dir(sysfs: &Path, bdf: &str) -> PathBuf {
    sysfs.join("bus/pci/devices").join(bdf)
}

/// The driver bound to `bdf`, if any.
pub fn driver_of(sysfs: &Path, bdf: &str) -> Option<String> {
    std::fs::read_link(dev_dir(sysfs, bdf).join("driver"))
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Unbinds `bdf` from whatever driver has it (no-op if none).
pub fn unbind(sysfs: &Path, bdf: &str) -> Result<()> {
    let dev = dev_dir(sysfs, bdf);
    if dev.join("driver").exists() {
        write(&dev.join("driver/unbind"), bdf)?;
    }
    Ok(())
}

/// Binds `bdf` to `driver` (unbinding it first), and checks that it took.
pub fn bind(sysfs: &Path, bdf: &str, driver: &str) -> Result<()> {
    if driver_of(sysfs, bdf).as_deref() == Some(driver) {
        return Ok(());
    }
    if !sysfs.join("bus/pci/drivers").join(driver).exists() {
        bail!("no PCI driver {driver:?} is registered (load it first: insmod phyr.ko)");
    }
    write(&dev_dir(sysfs, bdf).join("driver_override"), driver)?;
    unbind(sysfs, bdf)?;
    write(&sysfs.join("bus/pci/drivers_probe"), bdf)?;
    match driver_of(sysfs, bdf) {
        Some(d) if d == driver => Ok(()),
        other => bail!(
            "{bdf} did not bind to {driver} (it has {}); see the kernel log",
            other.as_deref().unwrap_or("no driver")
        ),
    }
}

/// Gives every phyr endpoint to the kernel driver; returns their BDFs.
pub fn bind_all_to_kernel(sysfs: &Path) -> Result<Vec<String>> {
    let eps = endpoints(sysfs)?;
    for bdf in &eps {
        bind(sysfs, bdf, KERNEL_DRIVER)?;
    }
    Ok(eps)
}

/// Sets (`on`) or clears the Bus Master Enable bit of `bdf`'s COMMAND register through its
/// sysfs config file (bit 2 of the 16-bit register at offset 4).
pub fn set_bus_master(sysfs: &Path, bdf: &str, on: bool) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let path = dev_dir(sysfs, bdf).join("config");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut cmd = [0u8; 2];
    f.seek(SeekFrom::Start(4))?;
    f.read_exact(&mut cmd)?;
    let mut v = u16::from_le_bytes(cmd);
    if on {
        v |= 1 << 2;
    } else {
        v &= !(1 << 2);
    }
    f.seek(SeekFrom::Start(4))?;
    f.write_all(&v.to_le_bytes())
        .with_context(|| format!("writing COMMAND of {bdf}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_dev(root: &Path, bdf: &str, vendor: &str, device: &str) {
        let d = root.join("bus/pci/devices").join(bdf);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
        std::fs::write(d.join("device"), format!("{device}\n")).unwrap();
    }

    #[test]
    fn endpoints_are_found_by_id_and_sorted() {
        let t = std::env::temp_dir().join(format!("phyr-bind-{}", std::process::id()));
        fake_dev(&t, "0000:04:00.0", "0x1234", "0x7068");
        fake_dev(&t, "0000:03:00.0", "0x1234", "0x7068");
        fake_dev(&t, "0000:05:00.0", "0x1234", "0x11e8");
        assert_eq!(endpoints(&t).unwrap(), ["0000:03:00.0", "0000:04:00.0"]);
        assert!(driver_of(&t, "0000:03:00.0").is_none());
        let e = bind(&t, "0000:03:00.0", KERNEL_DRIVER).unwrap_err();
        assert!(format!("{e:#}").contains("insmod phyr.ko"), "{e:#}");
        std::fs::remove_dir_all(&t).unwrap();
    }
}
