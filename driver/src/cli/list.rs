//! `phyr list`: endpoints, their identity registers, BARs, IOMMU groups, the switch topology
//! from sysfs, and how each endpoint would reach each peer's BAR2.

use std::path::Path;

use anyhow::Result;

use crate::bench::Bench;
use crate::endpoint;
use crate::sysfs;

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
    if let Some(s) = bench {
        println!("reachability of BAR2 (rows: executing endpoint, columns: BAR owner):");
        for c in 0..s.endpoints.len() {
            let mut row = format!("  ep{c}:");
            for p in 0..s.endpoints.len() {
                let d = s.p2p_decision(p, c)?;
                let via = match d.map_type {
                    crate::p2p::MapType::BusAddr => "bus",
                    _ => "iommu",
                };
                let common = d.common.as_deref().unwrap_or("host-bridge");
                row.push_str(&format!(
                    " ep{p}={via}({} dist={} via {common})",
                    d.map_type.name(),
                    d.distance
                ));
            }
            println!("{row}");
        }
        println!("container: IOMMU {}", s.container.iommu_type_name());
    }
    Ok(())
}
