//! Peer-to-peer reachability, decided exactly as Linux's `pci_p2pdma_map_type()` decides it
//! (drivers/pci/p2pdma.c, read from the 7.3 tree the backports kernel is built from; its
//! warnings are in that kernel's image). `pci_p2pdma_map_type()` returns NOT_SUPPORTED for a
//! provider without P2PDMA state and otherwise `calc_map_type_and_dist()`, mirrored by
//! [`decide`]:
//!
//! 1. walk `a` up from the provider (the provider itself first, then `pci_upstream_bridge()`
//!    until the root bus); count `a` if `pci_bridge_has_acs_redir(a)` (ACS control RR, CR or
//!    EC set), *then* look for `a` among the client and its upstream bridges. So the common
//!    upstream device's own ACS bits count, on the provider's side;
//! 2. found: walk `bb` up from the client to (not including) the common device, counting ACS
//!    redirects there too (`check_b_path_acs`). `dist` = hops up from each side. No redirect:
//!    `BUS_ADDR`. Any redirect: the TLPs go up to the root complex, so on to step 4;
//! 3. not found (they meet only at the host bridge): `dist` = both chains' lengths; step 4;
//! 4. `map_through_host_bridge`: `THRU_HOST_BRIDGE` if `cpu_supports_p2pdma()` (x86 CPU 0 is
//!    AMD with family >= 0x17, i.e. Zen or newer) or `host_bridge_whitelist()` allows it, else
//!    `NOT_SUPPORTED`.
//!
//! `host_bridge_whitelist()` looks at the first device on each host bridge's root bus
//! (`pci_host_bridge_dev()`: used if its devfn is 00.0 or it is a PCIe root port) and takes the
//! first entry of `pci_p2pdma_whitelist[]` that matches its vendor and device; entries marked
//! `REQ_SAME_HOST_BRIDGE` only allow P2P under one host bridge. QEMU's q35 host bridge
//! (8086:29c0) is not listed, and TCG's default CPU (qemu64: AuthenticAMD family 15) is not Zen,
//! so two endpoints on different root ports are NOT_SUPPORTED unless the guest CPU is e.g.
//! `-cpu EPYC` (family 0x17).
//!
//! A userspace VFIO driver is not bound by these rules: through VFIO type1 it can always map a
//! peer BAR into the IOMMU and hand the device an IOVA, as QEMU does for P2P between assigned
//! devices. So `THRU_HOST_BRIDGE` and `NOT_SUPPORTED` both become "IOVA through the IOMMU" in the
//! mapping layer; the Linux verdict is still reported.

use std::path::Path;
use std::sync::OnceLock;

use crate::sysfs::{self, PciFunction};

/// Linux's `enum pci_p2pdma_map_type`, minus UNKNOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// Same switch (or same device): the device may use the peer's PCI bus address.
    BusAddr,
    /// Traffic must cross the host bridge: use an IOVA the IOMMU translates to the BAR.
    ThruHostBridge,
    /// Linux refuses (host bridge not allowed); VFIO can still go through the IOMMU.
    NotSupported,
}

impl MapType {
    pub fn name(self) -> &'static str {
        match self {
            Self::BusAddr => "BUS_ADDR",
            Self::ThruHostBridge => "THRU_HOST_BRIDGE",
            Self::NotSupported => "NOT_SUPPORTED",
        }
    }
}

/// The decision for one (provider, client) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub map_type: MapType,
    /// Hops up from both sides to the meeting point (Linux's `dist`).
    pub distance: usize,
    /// The common upstream bridge (or device), if they meet below the host bridge.
    pub common: Option<String>,
    /// Functions whose ACS redirect bits forced the traffic upstream (provider side first).
    pub acs_redirects: Vec<String>,
    /// Why the host bridge may or may not carry the traffic, when the decision needed it.
    pub host_bridge: Option<String>,
}

/// What Linux's `map_through_host_bridge` test concludes for a pair: whether the root complex
/// may route P2P between them, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBridge {
    pub allowed: bool,
    pub why: String,
}

/// Decides for `provider` and `client`, given each one's chain of BDFs from the top down to
/// itself (as `sysfs::PciFunction::path`), as `calc_map_type_and_dist()` does. `acs_redir(bdf)`
/// says whether a function has ACS redirect bits set; `host_bridge` is consulted only when the
/// traffic has to cross the root complex.
pub fn decide(
    provider: &[String],
    client: &[String],
    acs_redir: impl Fn(&str) -> bool,
    host_bridge: impl FnOnce() -> HostBridge,
) -> Decision {
    let mut acs = Vec::new();
    let mut meet = None;
    // `a` walks up from the provider (provider = last element of its chain).
    for (dist_a, a) in provider.iter().rev().enumerate() {
        if acs_redir(a) {
            acs.push(a.clone());
        }
        if let Some(dist_b) = client.iter().rev().position(|b| b == a) {
            meet = Some((a.clone(), dist_a + dist_b));
            break;
        }
    }
    let (common, distance) = match meet {
        Some((common, distance)) => {
            // check_b_path_acs: the client's side, up to but not including the common device.
            for bb in client.iter().rev().take_while(|bb| **bb != common) {
                if acs_redir(bb) {
                    acs.push(bb.clone());
                }
            }
            if acs.is_empty() {
                return Decision {
                    map_type: MapType::BusAddr,
                    distance,
                    common: Some(common),
                    acs_redirects: acs,
                    host_bridge: None,
                };
            }
            (Some(common), distance)
        }
        // No common upstream device: Linux counted ACS bits on the way up but does not use
        // them on this path; leave them out of the report.
        None => {
            acs.clear();
            (None, provider.len() + client.len())
        }
    };
    let hb = host_bridge();
    Decision {
        map_type: if hb.allowed {
            MapType::ThruHostBridge
        } else {
            MapType::NotSupported
        },
        distance,
        common,
        acs_redirects: acs,
        host_bridge: Some(hb.why),
    }
}

/// Decides for `provider`'s BAR as seen by `client` from the sysfs tree at `sys` and this
/// machine's CPU (`/proc/cpuinfo`). ACS control words come from each function's `config` (only
/// if `use_acs`; unreadable config counts as no redirect).
pub fn decide_from_sysfs(sys: &Path, provider: &PciFunction, client: &PciFunction, use_acs: bool) -> Decision {
    decide_from_sysfs_with(sys, host_cpu_supports_p2pdma(), provider, client, use_acs)
}

/// [`decide_from_sysfs`] with the CPU rule given (`cpu_supports_p2pdma()`'s answer).
pub fn decide_from_sysfs_with(
    sys: &Path,
    cpu_p2p: bool,
    provider: &PciFunction,
    client: &PciFunction,
    use_acs: bool,
) -> Decision {
    let acs = |bdf: &str| use_acs && sysfs::acs_redirect(sys, bdf) == Some(true);
    decide(&provider.path, &client.path, acs, || {
        host_bridge_verdict(sys, cpu_p2p, provider, client)
    })
}

/// `!cpu_supports_p2pdma() && !host_bridge_whitelist(provider, client)` -> not allowed.
pub fn host_bridge_verdict(sys: &Path, cpu_p2p: bool, provider: &PciFunction, client: &PciFunction) -> HostBridge {
    if cpu_p2p {
        return HostBridge {
            allowed: true,
            why: "CPU is AMD family >= 0x17 (cpu_supports_p2pdma)".into(),
        };
    }
    let same = provider.host_bridge == client.host_bridge;
    let mut whys = Vec::new();
    let mut allowed = true;
    let hosts: &[&str] = if same {
        &[&provider.host_bridge]
    } else {
        &[&provider.host_bridge, &client.host_bridge]
    };
    for host in hosts {
        let (ok, why) = match host_bridge_dev(sys, host) {
            None => (
                false,
                format!("{host}: no 00.0 device or root port first on its root bus"),
            ),
            Some((bdf, vendor, device)) => {
                let ok = whitelisted(vendor, device, same);
                let verdict = if ok {
                    "whitelisted"
                } else {
                    "not in pci_p2pdma_whitelist"
                };
                (ok, format!("host bridge {bdf} {vendor:04x}:{device:04x} {verdict}"))
            }
        };
        allowed &= ok;
        whys.push(why);
    }
    if !same {
        whys.push("different host bridges".into());
    }
    HostBridge {
        allowed,
        why: whys.join("; "),
    }
}

/// `pci_p2pdma_whitelist[]` of drivers/pci/p2pdma.c: (vendor, device or None for any,
/// REQ_SAME_HOST_BRIDGE). The first entry matching vendor and device decides.
const WHITELIST: &[(u16, Option<u16>, bool)] = &[
    // Intel Xeon E5/Core i7
    (0x8086, Some(0x3c00), true),
    (0x8086, Some(0x3c01), true),
    // Intel Xeon E7 v3/Xeon E5 v3/Core i7
    (0x8086, Some(0x2f00), true),
    (0x8086, Some(0x2f01), true),
    // Intel Skylake-E
    (0x8086, Some(0x2030), false),
    (0x8086, Some(0x2031), false),
    (0x8086, Some(0x2032), false),
    (0x8086, Some(0x2033), false),
    (0x8086, Some(0x2020), false),
    (0x8086, Some(0x09a2), false),
    // DSA SPR0, IAX SPR0, DSA GNRD, DSA DMR, IAA DMR (include/linux/pci_ids.h)
    (0x8086, Some(0x0b25), false),
    (0x8086, Some(0x0cfe), false),
    (0x8086, Some(0x11fb), false),
    (0x8086, Some(0x1212), false),
    (0x8086, Some(0x1216), false),
    // QAT 4xxx, 401xx, 402xx, 420xx, 6xxx
    (0x8086, Some(0x4940), false),
    (0x8086, Some(0x4942), false),
    (0x8086, Some(0x4944), false),
    (0x8086, Some(0x4946), false),
    (0x8086, Some(0x4948), false),
    // Google SoCs
    (0x1ae0, None, false),
    // Nvidia CPUs
    (0x10de, Some(0x2f95), false),
    (0x10de, Some(0x2f96), false),
    (0x10de, Some(0x2f97), false),
    (0x10de, Some(0x2f98), false),
    // Zhaoxin KX-6000/KH-40000/KX-6000G/KX-7000/KH-50000
    (0x1d17, Some(0x1003), true),
    (0x1d17, Some(0x1005), true),
    (0x1d17, Some(0x1006), true),
    (0x1d17, Some(0x1007), true),
    (0x1d17, Some(0x1008), false),
];

/// `__host_bridge_whitelist()` for a host bridge device `vendor:device`; `same_host_bridge`
/// when provider and client sit under the same host bridge.
pub fn whitelisted(vendor: u16, device: u16, same_host_bridge: bool) -> bool {
    WHITELIST
        .iter()
        .find(|(v, d, _)| *v == vendor && d.is_none_or(|d| d == device))
        .is_some_and(|(_, _, req_same)| !req_same || same_host_bridge)
}

/// `pci_host_bridge_dev()`: the first device on the host bridge's root bus (the kernel adds
/// them in scan order, lowest devfn first), if its devfn is 00.0 or it is a PCIe root port.
/// Returns its BDF, vendor and device.
pub fn host_bridge_dev(sys: &Path, host_bridge: &str) -> Option<(String, u16, u16)> {
    let dom_bus = host_bridge.strip_prefix("pci")?;
    let first = sysfs::scan(sys)
        .ok()?
        .into_iter()
        .filter(|f| f.host_bridge == host_bridge && f.path.len() == 1 && f.bdf.starts_with(dom_bus))
        .min_by(|a, b| a.bdf.cmp(&b.bdf))?;
    let devfn0 = first.bdf.ends_with(":00.0");
    (devfn0 || pcie_type(sys, &first.bdf) == Some(PCI_EXP_TYPE_ROOT_PORT)).then_some((
        first.bdf,
        first.vendor,
        first.device,
    ))
}

/// PCIe capability ID and the Root Port device/port type (PCI_EXP_FLAGS bits 7:4).
const PCI_CAP_ID_EXP: u8 = 0x10;
const PCI_EXP_TYPE_ROOT_PORT: u8 = 0x4;

/// The PCIe device/port type from a function's config space (`None` without a PCIe
/// capability, or when the capability list cannot be read).
pub fn pcie_type(sys: &Path, bdf: &str) -> Option<u8> {
    let cfg = std::fs::read(sys.join("bus/pci/devices").join(bdf).join("config")).ok()?;
    pcie_type_in(&cfg)
}

/// Walks the capability list (status bit 4, pointer at 0x34) of config bytes `cfg`.
pub fn pcie_type_in(cfg: &[u8]) -> Option<u8> {
    const PCI_STATUS_CAP_LIST: u8 = 0x10;
    if cfg.get(0x06)? & PCI_STATUS_CAP_LIST == 0 {
        return None;
    }
    let mut pos = usize::from(*cfg.get(0x34)? & !3);
    // At most 48 capabilities fit in 256 bytes: a loop limit against a cyclic list.
    for _ in 0..48 {
        if pos < 0x40 {
            return None;
        }
        let id = *cfg.get(pos)?;
        if id == PCI_CAP_ID_EXP {
            return Some((cfg.get(pos + 2)? >> 4) & 0xf);
        }
        pos = usize::from(*cfg.get(pos + 1)? & !3);
    }
    None
}

/// `cpu_supports_p2pdma()` from the text of /proc/cpuinfo: CPU 0 (the first block) is
/// `AuthenticAMD` with `cpu family` >= 0x17.
pub fn cpuinfo_supports_p2pdma(cpuinfo: &str) -> bool {
    let first = cpuinfo.split("\n\n").next().unwrap_or("");
    let field = |name: &str| {
        first.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let amd = field("vendor_id").as_deref() == Some("AuthenticAMD");
    let family = field("cpu family").and_then(|f| f.parse::<u32>().ok()).unwrap_or(0);
    amd && family >= 0x17
}

/// `cpu_supports_p2pdma()` for the machine this runs on (read once).
pub fn host_cpu_supports_p2pdma() -> bool {
    static CPU: OnceLock<bool> = OnceLock::new();
    *CPU.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| cpuinfo_supports_p2pdma(&s))
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const RP: &str = "0000:00:02.0";
    const USP: &str = "0000:01:00.0";

    fn allowed() -> HostBridge {
        HostBridge {
            allowed: true,
            why: "test".into(),
        }
    }

    fn refused() -> HostBridge {
        HostBridge {
            allowed: false,
            why: "test".into(),
        }
    }

    fn switch_pair() -> (Vec<String>, Vec<String>) {
        (
            p(&[RP, USP, "0000:02:00.0", "0000:03:00.0"]),
            p(&[RP, USP, "0000:02:01.0", "0000:04:00.0"]),
        )
    }

    #[test]
    fn same_switch_is_bus_addr_through_the_upstream_port() {
        let (a, b) = switch_pair();
        let d = decide(&a, &b, |_| false, refused);
        assert_eq!(d.map_type, MapType::BusAddr);
        assert_eq!(d.common.as_deref(), Some(USP));
        assert_eq!(d.distance, 4);
        assert_eq!(d.host_bridge, None, "the host bridge is not consulted for BUS_ADDR");
    }

    #[test]
    fn own_bar_is_bus_addr_at_distance_zero() {
        let (a, _) = switch_pair();
        assert_eq!(decide(&a, &a, |_| false, refused).map_type, MapType::BusAddr);
        // The provider's own ACS bits count in Linux's walk too (endpoints have none here).
        let d = decide(&a, &a, |_| true, refused);
        assert_eq!((d.map_type, d.distance), (MapType::NotSupported, 0));
        assert_eq!(decide(&a, &a, |_| true, allowed).map_type, MapType::ThruHostBridge);
    }

    #[test]
    fn acs_redirect_needs_the_host_bridge_too() {
        let (a, b) = switch_pair();
        // Redirect on the provider's downstream port: through the root complex, which q35
        // without a Zen CPU does not allow.
        let d = decide(&a, &b, |bdf| bdf == "0000:02:00.0", refused);
        assert_eq!(d.map_type, MapType::NotSupported);
        assert_eq!(d.acs_redirects, ["0000:02:00.0"]);
        assert_eq!(d.common.as_deref(), Some(USP));
        assert_eq!(d.distance, 4);
        let d = decide(&a, &b, |bdf| bdf == "0000:02:00.0", allowed);
        assert_eq!(d.map_type, MapType::ThruHostBridge);
        assert_eq!(d.host_bridge.as_deref(), Some("test"));
    }

    #[test]
    fn acs_redirect_on_the_client_side_counts_up_to_the_common_port() {
        let (a, b) = switch_pair();
        // check_b_path_acs: the client's downstream port counts...
        let d = decide(&a, &b, |bdf| bdf == "0000:02:01.0", allowed);
        assert_eq!(
            (d.map_type, d.acs_redirects),
            (MapType::ThruHostBridge, p(&["0000:02:01.0"]))
        );
        // ...the common upstream port counts once, from the provider's walk...
        let d = decide(&a, &b, |bdf| bdf == USP, allowed);
        assert_eq!((d.map_type, d.acs_redirects), (MapType::ThruHostBridge, p(&[USP])));
        // ...and a port above the common one does not count at all.
        let d = decide(&a, &b, |bdf| bdf == RP, refused);
        assert_eq!((d.map_type, d.acs_redirects.len()), (MapType::BusAddr, 0));
        // Both sides redirecting: provider's side first, as Linux lists them.
        let d = decide(&a, &b, |bdf| bdf.starts_with("0000:02:"), allowed);
        assert_eq!(d.acs_redirects, p(&["0000:02:00.0", "0000:02:01.0"]));
    }

    #[test]
    fn two_functions_under_one_root_port_meet_at_the_port() {
        let a = p(&[RP, "0000:03:00.0"]);
        let b = p(&[RP, "0000:03:00.1"]);
        let d = decide(&a, &b, |_| false, refused);
        assert_eq!(
            (d.map_type, d.distance, d.common.as_deref()),
            (MapType::BusAddr, 2, Some(RP))
        );
        // The common root port's redirect bits count (the provider's walk checks it first).
        assert_eq!(decide(&a, &b, |bdf| bdf == RP, refused).map_type, MapType::NotSupported);
    }

    #[test]
    fn different_root_ports_meet_only_at_the_host_bridge() {
        let (a, _) = switch_pair();
        let b = p(&["0000:00:03.0", "0000:05:00.0", "0000:06:00.0", "0000:07:00.0"]);
        let d = decide(&a, &b, |_| true, refused);
        assert_eq!((d.map_type, d.distance, d.common), (MapType::NotSupported, 8, None));
        assert!(d.acs_redirects.is_empty(), "ACS is irrelevant without a common bridge");
        let d = decide(&a, &b, |_| false, allowed);
        assert_eq!((d.map_type, d.distance), (MapType::ThruHostBridge, 8));
        // Endpoints straight below two root ports.
        let d = decide(
            &p(&[RP, "0000:03:00.0"]),
            &p(&["0000:00:03.0", "0000:04:00.0"]),
            |_| false,
            refused,
        );
        assert_eq!((d.map_type, d.distance), (MapType::NotSupported, 4));
    }

    #[test]
    fn whitelist_first_match_and_same_host_bridge_rule() {
        assert!(!whitelisted(0x8086, 0x29c0, true), "q35's host bridge is not listed");
        assert!(whitelisted(0x8086, 0x2030, false));
        assert!(whitelisted(0x8086, 0x2f00, true));
        assert!(!whitelisted(0x8086, 0x2f00, false), "REQ_SAME_HOST_BRIDGE");
        assert!(whitelisted(0x1ae0, 0x1234, false), "Google: any device");
        assert!(!whitelisted(0x1d17, 0x1003, false));
        assert!(whitelisted(0x1d17, 0x1008, false));
        assert!(
            !whitelisted(0x1022, 0x1480, true),
            "AMD root complexes go by the CPU rule"
        );
    }

    #[test]
    fn cpu_rule_is_amd_family_0x17_or_newer_on_cpu_0() {
        let cpu = |vendor: &str, family: u32| {
            format!("processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 1\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n")
        };
        assert!(cpuinfo_supports_p2pdma(&cpu("AuthenticAMD", 23)), "EPYC (Zen)");
        assert!(cpuinfo_supports_p2pdma(&cpu("AuthenticAMD", 25)));
        assert!(
            !cpuinfo_supports_p2pdma(&cpu("AuthenticAMD", 15)),
            "qemu64 is AMD family 15"
        );
        assert!(!cpuinfo_supports_p2pdma(&cpu("GenuineIntel", 6)));
        assert!(
            !cpuinfo_supports_p2pdma(&cpu("HygonGenuine", 24)),
            "Hygon is not X86_VENDOR_AMD"
        );
        assert!(!cpuinfo_supports_p2pdma(""));
        assert!(!cpuinfo_supports_p2pdma("vendor_id : AuthenticAMD\ncpu family : zen\n"));
    }

    #[test]
    fn pcie_type_walks_the_capability_list_and_survives_a_cycle() {
        let mut cfg = vec![0u8; 256];
        cfg[0x06] = 0x10;
        cfg[0x34] = 0x40;
        // PM at 0x40 -> PCIe at 0x60 (flags: v2, root port).
        cfg[0x40..0x42].copy_from_slice(&[0x01, 0x60]);
        cfg[0x60..0x64].copy_from_slice(&[PCI_CAP_ID_EXP, 0x00, 0x42, 0x00]);
        assert_eq!(pcie_type_in(&cfg), Some(PCI_EXP_TYPE_ROOT_PORT));
        cfg[0x62] = 0x02; // endpoint
        assert_eq!(pcie_type_in(&cfg), Some(0));
        // A capability pointing at itself: no PCIe capability, no hang.
        cfg[0x60..0x62].copy_from_slice(&[0x05, 0x60]);
        assert_eq!(pcie_type_in(&cfg), None);
        // No capability list at all, or config space cut short (not root).
        assert_eq!(pcie_type_in(&[0u8; 64]), None);
        assert_eq!(pcie_type_in(&cfg[..0x30]), None);
    }

    /// A fake sysfs tree in a temp dir: `devices/pci0000:00/...` nodes with `vendor`,
    /// `device`, `class`, `resource` (and `config` with an ACS capability where asked), and
    /// `bus/pci/devices/BDF` symlinks to them, as the kernel lays it out.
    struct FakeSys(std::path::PathBuf);

    impl FakeSys {
        fn new(name: &str) -> Self {
            let root = std::env::temp_dir().join(format!("phyr-driver-test-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("bus/pci/devices")).unwrap();
            Self(root)
        }

        /// Adds the function at the end of `chain` (BDFs from the root port down).
        fn add(&self, hb: &str, chain: &[&str], vendor_device: (u16, u16), acs_ctrl: Option<u16>) {
            let mut dir = self.0.join("devices").join(hb);
            for c in chain {
                dir = dir.join(c);
            }
            std::fs::create_dir_all(&dir).unwrap();
            let w = |n: &str, s: String| std::fs::write(dir.join(n), s).unwrap();
            w("vendor", format!("{:#06x}\n", vendor_device.0));
            w("device", format!("{:#06x}\n", vendor_device.1));
            w("class", "0x060400\n".into());
            w(
                "resource",
                "0x00000000fe000000 0x00000000fe003fff 0x0000000000040200\n".into(),
            );
            if let Some(ctrl) = acs_ctrl {
                let mut cfg = vec![0u8; 4096];
                cfg[0x100..0x104].copy_from_slice(&(0xDu32 | 1 << 16).to_le_bytes());
                cfg[0x106..0x108].copy_from_slice(&ctrl.to_le_bytes());
                std::fs::write(dir.join("config"), cfg).unwrap();
            }
            let bdf = chain.last().unwrap();
            std::os::unix::fs::symlink(&dir, self.0.join("bus/pci/devices").join(bdf)).unwrap();
        }

        fn func(&self, bdf: &str) -> PciFunction {
            sysfs::read_function(&self.0, bdf).unwrap()
        }

        fn decide(&self, cpu: bool, provider: &str, client: &str) -> Decision {
            decide_from_sysfs_with(&self.0, cpu, &self.func(provider), &self.func(client), true)
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const EP: (u16, u16) = (0x1234, 0x7068);

    /// q35-like: host bridge 00:00.0, switch A under root port 00:02.0 with endpoints 03:00.0
    /// and 04:00.0, switch B under root port 00:03.0 with endpoint 07:00.0. `dsp_acs` is the
    /// ACS control word of switch A's first downstream port.
    fn fabric(name: &str, host_bridge: (u16, u16), dsp_acs: u16) -> FakeSys {
        let s = FakeSys::new(name);
        let hb = "pci0000:00";
        s.add(hb, &["0000:00:00.0"], host_bridge, None);
        s.add(hb, &[RP], (0x1b36, 0x000c), Some(0));
        s.add(hb, &[RP, USP], (0x1b36, 0x000d), Some(0));
        s.add(hb, &[RP, USP, "0000:02:00.0"], (0x1b36, 0x000e), Some(dsp_acs));
        s.add(hb, &[RP, USP, "0000:02:01.0"], (0x1b36, 0x000e), Some(0));
        s.add(hb, &[RP, USP, "0000:02:00.0", "0000:03:00.0"], EP, None);
        s.add(hb, &[RP, USP, "0000:02:01.0", "0000:04:00.0"], EP, None);
        let rp2 = "0000:00:03.0";
        s.add(hb, &[rp2], (0x1b36, 0x000c), Some(0));
        s.add(hb, &[rp2, "0000:05:00.0"], (0x1b36, 0x000d), Some(0));
        s.add(hb, &[rp2, "0000:05:00.0", "0000:06:00.0"], (0x1b36, 0x000e), Some(0));
        s.add(hb, &[rp2, "0000:05:00.0", "0000:06:00.0", "0000:07:00.0"], EP, None);
        s
    }

    const Q35: (u16, u16) = (0x8086, 0x29c0);
    const RR_CR: u16 = crate::sysfs::PCI_ACS_RR | crate::sysfs::PCI_ACS_CR;

    #[test]
    fn sysfs_tree_same_switch_is_bus_addr_other_switch_not_supported() {
        let s = fabric("plain", Q35, 0);
        assert_eq!(s.func("0000:03:00.0").path, [RP, USP, "0000:02:00.0", "0000:03:00.0"]);
        let d = s.decide(false, "0000:03:00.0", "0000:04:00.0");
        assert_eq!(
            (d.map_type, d.common.as_deref(), d.distance),
            (MapType::BusAddr, Some(USP), 4)
        );
        assert_eq!(
            s.decide(false, "0000:04:00.0", "0000:03:00.0").map_type,
            MapType::BusAddr
        );
        assert_eq!(
            s.decide(false, "0000:03:00.0", "0000:03:00.0").map_type,
            MapType::BusAddr
        );
        let d = s.decide(false, "0000:07:00.0", "0000:03:00.0");
        assert_eq!((d.map_type, d.common), (MapType::NotSupported, None));
        assert_eq!(
            d.host_bridge.as_deref(),
            Some("host bridge 0000:00:00.0 8086:29c0 not in pci_p2pdma_whitelist")
        );
    }

    #[test]
    fn sysfs_tree_zen_cpu_routes_between_root_ports() {
        let s = fabric("zen", Q35, 0);
        let d = s.decide(true, "0000:07:00.0", "0000:03:00.0");
        assert_eq!((d.map_type, d.distance), (MapType::ThruHostBridge, 8));
        assert!(d.host_bridge.unwrap().contains("cpu_supports_p2pdma"));
    }

    #[test]
    fn sysfs_tree_acs_redirect_goes_through_the_host_bridge_unless_ignored() {
        let s = fabric("acs", Q35, RR_CR);
        let d = s.decide(true, "0000:03:00.0", "0000:04:00.0");
        assert_eq!(
            (d.map_type, d.acs_redirects.clone()),
            (MapType::ThruHostBridge, vec!["0000:02:00.0".to_string()])
        );
        // Without a Zen CPU or a whitelisted host bridge, the redirect makes it NOT_SUPPORTED.
        assert_eq!(
            s.decide(false, "0000:03:00.0", "0000:04:00.0").map_type,
            MapType::NotSupported
        );
        // The client's side counts too (check_b_path_acs).
        assert_eq!(
            s.decide(false, "0000:04:00.0", "0000:03:00.0").map_type,
            MapType::NotSupported
        );
        // `--p2p topology` ignores ACS.
        let (a, b) = (s.func("0000:03:00.0"), s.func("0000:04:00.0"));
        assert_eq!(
            decide_from_sysfs_with(&s.0, false, &a, &b, false).map_type,
            MapType::BusAddr
        );
        // Egress control counts as redirect too; other ACS bits (e.g. source validation) do not.
        let s = fabric("acs-ec", Q35, crate::sysfs::PCI_ACS_EC);
        assert_eq!(
            s.decide(false, "0000:03:00.0", "0000:04:00.0").map_type,
            MapType::NotSupported
        );
        let s = fabric("acs-sv", Q35, 0x0001);
        assert_eq!(
            s.decide(false, "0000:03:00.0", "0000:04:00.0").map_type,
            MapType::BusAddr
        );
    }

    #[test]
    fn sysfs_tree_whitelisted_host_bridge_routes_between_root_ports() {
        let s = fabric("whitelist", (0x8086, 0x2030), 0);
        let d = s.decide(false, "0000:07:00.0", "0000:03:00.0");
        assert_eq!((d.map_type, d.distance), (MapType::ThruHostBridge, 8));
        // A REQ_SAME_HOST_BRIDGE entry is fine under one host bridge.
        let s = fabric("whitelist-same", (0x8086, 0x2f00), RR_CR);
        assert_eq!(
            s.decide(false, "0000:03:00.0", "0000:04:00.0").map_type,
            MapType::ThruHostBridge
        );
    }

    #[test]
    fn sysfs_tree_host_bridge_device_must_be_00_0_or_a_root_port() {
        // No 00.0 device: the first device on the root bus is a root port without a readable
        // PCIe capability (fake config), so pci_host_bridge_dev() finds nothing.
        let s = FakeSys::new("no-00.0");
        let hb = "pci0000:00";
        s.add(hb, &[RP], (0x8086, 0x2030), Some(0));
        s.add(hb, &[RP, "0000:03:00.0"], EP, None);
        s.add(hb, &["0000:00:03.0"], (0x1b36, 0x000c), Some(0));
        s.add(hb, &["0000:00:03.0", "0000:04:00.0"], EP, None);
        let d = s.decide(false, "0000:03:00.0", "0000:04:00.0");
        assert_eq!(d.map_type, MapType::NotSupported);
        assert!(d.host_bridge.unwrap().contains("no 00.0 device or root port"));
        // Once it reads as a root port (PCIe flags type 4), its ID is looked up.
        let mut cfg = vec![0u8; 4096];
        cfg[0x06] = 0x10;
        cfg[0x34] = 0x40;
        cfg[0x40..0x44].copy_from_slice(&[PCI_CAP_ID_EXP, 0x00, 0x42, 0x00]);
        std::fs::write(s.0.join("bus/pci/devices").join(RP).join("config"), cfg).unwrap();
        assert_eq!(host_bridge_dev(&s.0, hb), Some((RP.to_string(), 0x8086, 0x2030)));
        assert_eq!(
            s.decide(false, "0000:03:00.0", "0000:04:00.0").map_type,
            MapType::ThruHostBridge
        );
    }
}
