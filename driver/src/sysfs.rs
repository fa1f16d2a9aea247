//! The guest's PCI topology as sysfs shows it: functions, their upstream chain of bridges,
//! BAR resources (bus addresses), IOMMU groups, bound drivers and ACS control bits.
//!
//! Every function takes the sysfs root (normally `/sys`) so tests can run on a fake tree.

use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {why}")]
    Parse { path: PathBuf, why: String },
}

pub type Result<T> = std::result::Result<T, SysfsError>;

/// One BAR (or other resource) line of sysfs `resource`: CPU physical start/end (inclusive)
/// and flags. On x86 the bus address equals the CPU physical address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resource {
    pub start: u64,
    pub end: u64,
    pub flags: u64,
}

impl Resource {
    pub fn size(&self) -> u64 {
        if self.end == 0 && self.start == 0 {
            0
        } else {
            self.end - self.start + 1
        }
    }

    #[cfg(test)]
    pub fn contains(&self, addr: u64) -> bool {
        self.size() != 0 && addr >= self.start && addr <= self.end
    }
}

/// A PCI function in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    /// "0000:03:00.0"
    pub bdf: String,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    /// Host bridge node, e.g. "pci0000:00".
    pub host_bridge: String,
    /// BDFs from the top (below the host bridge) down to this function, inclusive.
    pub path: Vec<String>,
    pub resources: Vec<Resource>,
    pub iommu_group: Option<u32>,
    pub driver: Option<String>,
}

impl PciFunction {
    pub fn bar(&self, index: usize) -> Option<Resource> {
        self.resources.get(index).copied().filter(|r| r.size() != 0)
    }
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| SysfsError::Read {
        path: path.into(),
        source,
    })
}

fn parse_hex(path: &Path, s: &str) -> Result<u64> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    u64::from_str_radix(t, 16).map_err(|e| SysfsError::Parse {
        path: path.into(),
        why: format!("{s:?}: {e}"),
    })
}

/// Parses the text of a sysfs `resource` file.
pub fn parse_resources(path: &Path, text: &str) -> Result<Vec<Resource>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            return Err(SysfsError::Parse {
                path: path.into(),
                why: format!("line {line:?}"),
            });
        }
        out.push(Resource {
            start: parse_hex(path, f[0])?,
            end: parse_hex(path, f[1])?,
            flags: parse_hex(path, f[2])?,
        });
    }
    Ok(out)
}

/// Splits a canonical device path (".../devices/pci0000:00/0000:00:02.0/0000:01:00.0") into
/// the host bridge and the chain of BDFs.
pub fn split_device_path(p: &Path) -> Option<(String, Vec<String>)> {
    let comps: Vec<String> = p
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let hb = comps.iter().position(|c| c.starts_with("pci") && c.contains(':'))?;
    let chain: Vec<String> = comps[hb + 1..].iter().filter(|c| is_bdf(c)).cloned().collect();
    Some((comps[hb].clone(), chain))
}

/// "dddd:bb:dd.f"
pub fn is_bdf(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars().filter(|c| c.is_ascii_hexdigit()).count() == 9
}

/// Reads one function's sysfs node.
pub fn read_function(sys: &Path, bdf: &str) -> Result<PciFunction> {
    let node = sys.join("bus/pci/devices").join(bdf);
    let canon = fs::canonicalize(&node).map_err(|source| SysfsError::Read {
        path: node.clone(),
        source,
    })?;
    let (host_bridge, path) = split_device_path(&canon).ok_or_else(|| SysfsError::Parse {
        path: canon.clone(),
        why: "no pciDDDD:BB component".into(),
    })?;
    let hex = |name: &str| -> Result<u64> {
        let p = node.join(name);
        parse_hex(&p, &read(&p)?)
    };
    let rpath = node.join("resource");
    let resources = parse_resources(&rpath, &read(&rpath)?)?;
    let link_name = |name: &str| {
        fs::read_link(node.join(name))
            .ok()
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    Ok(PciFunction {
        bdf: bdf.to_string(),
        vendor: hex("vendor")? as u16,
        device: hex("device")? as u16,
        class: hex("class")? as u32,
        host_bridge,
        path,
        resources,
        iommu_group: link_name("iommu_group").and_then(|g| g.parse().ok()),
        driver: link_name("driver"),
    })
}

/// A 1 MiB-aligned bus address above every BAR of every PCI function: nothing decodes it, nor
/// the window above it.
pub fn undecoded_bus_addr(sys: &Path) -> Result<u64> {
    let top = scan(sys)?
        .iter()
        .flat_map(|f| f.resources.iter())
        .filter(|r| r.size() != 0)
        .map(|r| r.end)
        .max()
        .unwrap_or(0);
    top.checked_add(1 + 0xF_FFFF)
        .map(|a| a & !0xF_FFFF)
        .ok_or_else(|| SysfsError::Parse {
            path: sys.join("bus/pci/devices"),
            why: format!("a BAR ends at {top:#x}: no bus address above every BAR"),
        })
}

/// Every PCI function, sorted by BDF.
pub fn scan(sys: &Path) -> Result<Vec<PciFunction>> {
    let dir = sys.join("bus/pci/devices");
    let rd = fs::read_dir(&dir).map_err(|source| SysfsError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut bdfs: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_bdf(n))
        .collect();
    bdfs.sort();
    bdfs.iter().map(|b| read_function(sys, b)).collect()
}

/// PCIe extended capability ID of Access Control Services.
const PCI_EXT_CAP_ID_ACS: u16 = 0x000D;
/// ACS control register offset within the capability.
const PCI_ACS_CTRL: usize = 6;
/// ACS control bits Linux's p2pdma treats as "redirect": Request Redirect, Completion
/// Redirect, Egress Control.
pub const PCI_ACS_RR: u16 = 0x0004;
pub const PCI_ACS_CR: u16 = 0x0008;
pub const PCI_ACS_EC: u16 = 0x0020;

/// Finds the ACS control word in a function's config space bytes (extended capabilities
/// start at 0x100; needs the 4 KiB config space, i.e. root).
pub fn acs_ctrl(config: &[u8]) -> Option<u16> {
    let rd16 = |o: usize| config.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let rd32 = |o: usize| {
        config
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut pos = 0x100usize;
    for _ in 0..64 {
        let hdr = rd32(pos)?;
        if hdr == 0 || hdr == 0xffff_ffff {
            return None;
        }
        if hdr as u16 == PCI_EXT_CAP_ID_ACS {
            return rd16(pos + PCI_ACS_CTRL);
        }
        let next = (hdr >> 20) as usize & 0xffc;
        if next < 0x100 {
            return None;
        }
        pos = next;
    }
    None
}

/// Whether `bdf` has ACS redirect bits set (the test `pci_bridge_has_acs_redir` makes).
/// `None` when its extended config space cannot be read.
pub fn acs_redirect(sys: &Path, bdf: &str) -> Option<bool> {
    let cfg = fs::read(sys.join("bus/pci/devices").join(bdf).join("config")).ok()?;
    if cfg.len() <= 0x100 {
        return None;
    }
    Some(acs_ctrl(&cfg).is_some_and(|c| c & (PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC) != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_bar0_and_bar2() {
        let t = "0x00000000fe000000 0x00000000fe003fff 0x0000000000040200\n\
                 0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                 0x0000000800000000 0x0000000803ffffff 0x000000000014220c\n";
        let r = parse_resources(Path::new("x"), t).unwrap();
        assert_eq!(r[0].size(), 0x4000);
        assert_eq!(r[1].size(), 0);
        assert_eq!(r[2].start, 0x8_0000_0000);
        assert_eq!(r[2].size(), 64 << 20);
        assert!(r[2].contains(0x8_03ff_ffff));
        assert!(!r[2].contains(0x8_0400_0000));
    }

    #[test]
    fn device_path_splits_into_host_bridge_and_chain() {
        let p = Path::new("/sys/devices/pci0000:00/0000:00:02.0/0000:01:00.0/0000:02:01.0/0000:04:00.0");
        let (hb, chain) = split_device_path(p).unwrap();
        assert_eq!(hb, "pci0000:00");
        assert_eq!(chain, ["0000:00:02.0", "0000:01:00.0", "0000:02:01.0", "0000:04:00.0"]);
    }

    #[test]
    fn bdf_recognises_only_full_addresses() {
        assert!(is_bdf("0000:00:1f.2"));
        assert!(!is_bdf("pci0000:00"));
        assert!(!is_bdf("0000:00:1f"));
    }

    #[test]
    fn acs_ctrl_walks_the_extended_capability_list() {
        let mut cfg = vec![0u8; 4096];
        // AER (id 1) at 0x100 -> next 0x148; ACS (id 0xD) at 0x148, ctrl = RR|CR.
        cfg[0x100..0x104].copy_from_slice(&(1u32 | 1 << 16 | 0x148 << 20).to_le_bytes());
        cfg[0x148..0x14C].copy_from_slice(&(0xDu32 | 1 << 16).to_le_bytes());
        cfg[0x14E..0x150].copy_from_slice(&(PCI_ACS_RR | PCI_ACS_CR).to_le_bytes());
        assert_eq!(acs_ctrl(&cfg), Some(PCI_ACS_RR | PCI_ACS_CR));
        assert_eq!(acs_ctrl(&[0u8; 4096]), None);
    }
}
