//! `phyr list`: endpoints, their identity registers, BARs, IOMMU groups, the switch topology
//! from sysfs, and how each endpoint would reach each peer's BAR2.

use std::path::Path;

use anyhow::Result;

use crate::bench::Bench;
use crate::endpoint;
use crate::p2p;
use crate::sysfs;

/// The provider side of P2PDMA: `p2pmem/` appears once a kernel driver (phyr.ko) registers
/// BAR memory with pci_p2pdma_add_resource().
fn p2pmem(sys: &Path, bdf: &str) -> Option<String> {
    let dir = sys.join("bus/pci/devices").join(bdf).join("p2pmem");
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).ok().map(|s| s.trim().to_string());
    let size: u64 = read("size")?.parse().ok()?;
    let available: u64 = read("available").and_then(|s| s.parse().ok()).unwrap_or(0);
    let published = read("published").unwrap_or_default() == "1";
    Some(format!(
        "p2pmem: {size:#x} bytes registered, {available:#x} available, {}",
        if published { "published" } else { "not published" }
    ))
}

pub fn run(sys: &Path, only: &[String], bench: Option<&Bench>) -> Result<()> {
    let funcs = endpoint::find(sys, only)?;
    if funcs.is_empty() {
        println!(
            "no phyr endpoints (1234:7068) found under {}/bus/pci/devices",
            sys.display()
        );
        return Ok(());
    }
    println!("phyr endpoints: {}", funcs.len());
    for (i, f) in funcs.iter().enumerate() {
        let bar = |n: usize| {
            f.bar(n)
                .map_or_else(|| "-".to_string(), |r| format!("{:#x}+{:#x}", r.start, r.size()))
        };
        let group = f.iommu_group.map_or("-".into(), |g| g.to_string());
        let driver = f.driver.clone().unwrap_or_else(|| "-".into());
        println!(
            "ep{i} {} driver={driver} iommu_group={group} bar0={} bar2={}",
            f.bdf,
            bar(0),
            bar(2)
        );
        println!("    path: {} / {}", f.host_bridge, f.path.join(" / "));
        if let Some(p2pmem) = p2pmem(sys, &f.bdf) {
            println!("    {p2pmem}");
        }
        let acs: Vec<String> = f.path[..f.path.len().saturating_sub(1)]
            .iter()
            .filter(|b| sysfs::acs_redirect(sys, b) == Some(true))
            .cloned()
            .collect();
        if !acs.is_empty() {
            println!("    ACS redirect enabled on: {}", acs.join(", "));
        }
        if let Some(ep) = bench.and_then(|s| s.endpoints.iter().find(|e| e.pci.bdf == f.bdf)) {
            let id = &ep.id;
            println!(
                "    regs: endpoint_id={} switch_id={} version={:#x} queues={} max_queue_entries={} bar2_size={:#x} max_list_entries={} max_chain={} status={:#x}",
                id.endpoint_id,
                id.switch_id,
                id.version,
                id.num_queues,
                id.max_queue_entries,
                id.bar2_size,
                id.max_list_entries,
                id.max_chain,
                ep.status()
            );
        }
    }
    // Decided from sysfs alone, so endpoints bound to the phyr kernel driver get a row too.
    let use_acs = bench.is_none_or(|s| s.policy == crate::bench::P2pPolicy::Linux);
    let cpu = p2p::host_cpu_supports_p2pdma();
    println!("reachability of BAR2 as Linux's pci_p2pdma_map_type decides it (rows: executing endpoint, columns: BAR owner):");
    let mut reasons = Vec::new();
    for (c, client) in funcs.iter().enumerate() {
        let mut row = format!("  ep{c}:");
        for (p, provider) in funcs.iter().enumerate() {
            let d = p2p::decide_from_sysfs_with(sys, cpu, provider, client, use_acs);
            let via = match d.map_type {
                p2p::MapType::BusAddr => "bus",
                _ => "iommu",
            };
            let common = d.common.as_deref().unwrap_or("host-bridge");
            row.push_str(&format!(
                " ep{p}={via}({} dist={} via {common})",
                d.map_type.name(),
                d.distance
            ));
            if let Some(why) = d.host_bridge {
                if !reasons.contains(&why) {
                    reasons.push(why);
                }
            }
        }
        println!("{row}");
    }
    for why in reasons {
        println!("  root complex: {why}");
    }
    if let Some(s) = bench {
        println!("container: IOMMU {}", s.container.iommu_type_name());
    }
    Ok(())
}
