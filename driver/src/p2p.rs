//! Peer-to-peer reachability, decided the way Linux's `pci_p2pdma_map_type()` does
//! (drivers/pci/p2pdma.c, `calc_map_type_and_dist`):
//!
//! - walk up from the provider (the device whose BAR is the target); for each ancestor `a`
//!   (the provider itself first) count it if it has ACS redirect bits set, then look for
//!   `a` among the client's ancestors (the client itself first);
//! - found (a common upstream bridge, or the same device): `BUS_ADDR` unless some bridge on
//!   the provider's side up to and including the common one redirects (ACS), in which case the
//!   TLPs go up to the root complex: `THRU_HOST_BRIDGE`;
//! - not found (they meet only at the host bridge): `THRU_HOST_BRIDGE` if the host bridge is
//!   known to forward P2P, else Linux says `NOT_SUPPORTED`.
//!
//! A userspace VFIO driver is not bound by Linux's host-bridge whitelist: through VFIO type1 it
//! can always map the peer BAR into the IOMMU and hand the device an IOVA, as QEMU does for
//! P2P between assigned devices. So `THRU_HOST_BRIDGE` and `NOT_SUPPORTED` both become
//! "IOVA through the IOMMU" in the mapping layer; the Linux verdict is still reported.

use std::path::Path;

use crate::sysfs::{self, PciFunction};

/// Linux's `enum pci_p2pdma_map_type`, minus UNKNOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// Same switch (or same device): the device may use the peer's PCI bus address.
    BusAddr,
    /// Traffic must cross the host bridge: use an IOVA the IOMMU translates to the BAR.
    ThruHostBridge,
    /// Linux would refuse (host bridge not whitelisted); VFIO can still go through the IOMMU.
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
    /// Bridges whose ACS redirect bits forced the traffic upstream.
    pub acs_redirects: Vec<String>,
}

/// Decides for `provider` and `client`, given each one's chain of BDFs from the top down to
/// itself (as `sysfs::PciFunction::path`). `acs_redir(bdf)` says whether a function has ACS
/// redirect enabled; `host_bridge_ok` whether the host bridge is known to route P2P.
pub fn decide(
    provider: &[String],
    client: &[String],
    acs_redir: impl Fn(&str) -> bool,
    host_bridge_ok: bool,
) -> Decision {
    let mut acs = Vec::new();
    // Walk a from the provider upwards (provider = last element).
    for (dist_a, a) in provider.iter().rev().enumerate() {
        if acs_redir(a) {
            acs.push(a.clone());
        }
        if let Some(dist_b) = client.iter().rev().position(|b| b == a) {
            let map_type = if acs.is_empty() {
                MapType::BusAddr
            } else {
                MapType::ThruHostBridge
            };
            return Decision {
                map_type,
                distance: dist_a + dist_b,
                common: Some(a.clone()),
                acs_redirects: acs,
            };
        }
    }
    let map_type = if host_bridge_ok {
        MapType::ThruHostBridge
    } else {
        MapType::NotSupported
    };
    Decision {
        map_type,
        distance: provider.len() + client.len(),
        common: None,
        acs_redirects: acs,
    }
}

/// Decides for `provider`'s BAR as seen by `client` from the sysfs tree at `sys`: ACS
/// control words from each function's `config` (only if `use_acs`; unreadable config counts
/// as no redirect), the host bridge's identity from function 00.0 of its root bus.
pub fn decide_from_sysfs(sys: &Path, provider: &PciFunction, client: &PciFunction, use_acs: bool) -> Decision {
    let acs = |bdf: &str| use_acs && sysfs::acs_redirect(sys, bdf) == Some(true);
    let hb_ok = provider
        .host_bridge
        .strip_prefix("pci")
        .and_then(|dom_bus| sysfs::read_function(sys, &format!("{dom_bus}:00.0")).ok())
        .is_some_and(|f| host_bridge_whitelisted(f.vendor, f.device));
    // Different host bridges never share a path; `decide` finds no common ancestor.
    decide(
        &provider.path,
        &client.path,
        acs,
        hb_ok && provider.host_bridge == client.host_bridge,
    )
}

/// Host bridges Linux's `pci_p2pdma_whitelist` trusts to route P2P between root ports
/// (Intel Xeon E5/E7 v3/v4 and Skylake-SP root complexes). QEMU's q35 (8086:29c0) is not
/// among them; nor is the AMD Zen CPU check relevant to a TCG guest.
pub fn host_bridge_whitelisted(vendor: u16, device: u16) -> bool {
    vendor == 0x8086
        && matches!(
            device,
            0x2f00 | 0x2f01 | 0x2030 | 0x2031 | 0x2032 | 0x2033 | 0x2020 | 0x09a2
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const RP: &str = "0000:00:02.0";
    const USP: &str = "0000:01:00.0";

    #[test]
    fn same_switch_is_bus_addr_through_the_upstream_port() {
        let a = p(&[RP, USP, "0000:02:00.0", "0000:03:00.0"]);
        let b = p(&[RP, USP, "0000:02:01.0", "0000:04:00.0"]);
        let d = decide(&a, &b, |_| false, false);
        assert_eq!(d.map_type, MapType::BusAddr);
        assert_eq!(d.common.as_deref(), Some(USP));
        assert_eq!(d.distance, 4);
    }

    #[test]
    fn own_bar_is_bus_addr_at_distance_zero() {
        let a = p(&[RP, USP, "0000:02:00.0", "0000:03:00.0"]);
        let d = decide(&a, &a, |_| true, false);
        // The provider's own ACS bits count in Linux's walk too (endpoints have none).
        assert_eq!(d.distance, 0);
        assert_eq!(d.map_type, MapType::ThruHostBridge);
        assert_eq!(decide(&a, &a, |_| false, false).map_type, MapType::BusAddr);
    }

    #[test]
    fn acs_redirect_on_a_downstream_port_forces_the_host_bridge() {
        let a = p(&[RP, USP, "0000:02:00.0", "0000:03:00.0"]);
        let b = p(&[RP, USP, "0000:02:01.0", "0000:04:00.0"]);
        let d = decide(&a, &b, |bdf| bdf == "0000:02:00.0", false);
        assert_eq!(d.map_type, MapType::ThruHostBridge);
        assert_eq!(d.acs_redirects, ["0000:02:00.0"]);
    }

    #[test]
    fn different_root_ports_meet_only_at_the_host_bridge() {
        let a = p(&[RP, USP, "0000:02:00.0", "0000:03:00.0"]);
        let b = p(&["0000:00:03.0", "0000:05:00.0", "0000:06:00.0", "0000:07:00.0"]);
        assert_eq!(decide(&a, &b, |_| false, false).map_type, MapType::NotSupported);
        let d = decide(&a, &b, |_| false, true);
        assert_eq!(d.map_type, MapType::ThruHostBridge);
        assert_eq!(d.common, None);
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

    #[test]
    fn sysfs_tree_same_switch_is_bus_addr_other_switch_not_supported() {
        let s = fabric("plain", Q35, 0);
        let (a, b, c) = (s.func("0000:03:00.0"), s.func("0000:04:00.0"), s.func("0000:07:00.0"));
        assert_eq!(a.path, [RP, USP, "0000:02:00.0", "0000:03:00.0"]);
        let d = decide_from_sysfs(&s.0, &a, &b, true);
        assert_eq!(
            (d.map_type, d.common.as_deref(), d.distance),
            (MapType::BusAddr, Some(USP), 4)
        );
        assert_eq!(decide_from_sysfs(&s.0, &b, &a, true).map_type, MapType::BusAddr);
        assert_eq!(decide_from_sysfs(&s.0, &a, &a, true).map_type, MapType::BusAddr);
        let d = decide_from_sysfs(&s.0, &c, &a, true);
        assert_eq!((d.map_type, d.common), (MapType::NotSupported, None));
    }

    #[test]
    fn sysfs_tree_acs_redirect_goes_through_the_host_bridge_unless_ignored() {
        let s = fabric("acs", Q35, crate::sysfs::PCI_ACS_RR | crate::sysfs::PCI_ACS_CR);
        let (a, b) = (s.func("0000:03:00.0"), s.func("0000:04:00.0"));
        // Provider a sits below the redirecting port: its TLPs go up to the root complex.
        let d = decide_from_sysfs(&s.0, &a, &b, true);
        assert_eq!(
            (d.map_type, d.acs_redirects.clone()),
            (MapType::ThruHostBridge, vec!["0000:02:00.0".to_string()])
        );
        // `--p2p topology` ignores ACS.
        assert_eq!(decide_from_sysfs(&s.0, &a, &b, false).map_type, MapType::BusAddr);
        // Linux only counts the provider's side of the walk.
        assert_eq!(decide_from_sysfs(&s.0, &b, &a, true).map_type, MapType::BusAddr);
        // Egress control counts as redirect too; other ACS bits (e.g. source validation) do not.
        let s = fabric("acs-ec", Q35, crate::sysfs::PCI_ACS_EC);
        assert_eq!(
            decide_from_sysfs(&s.0, &s.func("0000:03:00.0"), &s.func("0000:04:00.0"), true).map_type,
            MapType::ThruHostBridge
        );
        let s = fabric("acs-sv", Q35, 0x0001);
        assert_eq!(
            decide_from_sysfs(&s.0, &s.func("0000:03:00.0"), &s.func("0000:04:00.0"), true).map_type,
            MapType::BusAddr
        );
    }

    #[test]
    fn sysfs_tree_whitelisted_host_bridge_routes_between_root_ports() {
        let s = fabric("whitelist", (0x8086, 0x2030), 0);
        let d = decide_from_sysfs(&s.0, &s.func("0000:07:00.0"), &s.func("0000:03:00.0"), true);
        assert_eq!(d.map_type, MapType::ThruHostBridge);
        assert_eq!(d.distance, 8);
    }
}
