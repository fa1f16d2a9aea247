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
            let map_type = if acs.is_empty() { MapType::BusAddr } else { MapType::ThruHostBridge };
            return Decision { map_type, distance: dist_a + dist_b, common: Some(a.clone()), acs_redirects: acs };
        }
    }
    let map_type = if host_bridge_ok { MapType::ThruHostBridge } else { MapType::NotSupported };
    Decision { map_type, distance: provider.len() + client.len(), common: None, acs_redirects: acs }
}

/// Host bridges Linux's `pci_p2pdma_whitelist` trusts to route P2P between root ports
/// (Intel Xeon E5/E7 v3/v4 and Skylake-SP root complexes). QEMU's q35 (8086:29c0) is not
/// among them; nor is the AMD Zen CPU check relevant to a TCG guest.
pub fn host_bridge_whitelisted(vendor: u16, device: u16) -> bool {
    vendor == 0x8086 && matches!(device, 0x2f00 | 0x2f01 | 0x2030 | 0x2031 | 0x2032 | 0x2033 | 0x2020 | 0x09a2)
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
}
