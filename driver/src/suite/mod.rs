//! `phyr suite`: the integration suite. Named cases run against the real endpoints through
//! VFIO; each checks data byte for byte and by the device's CRC32C, or (negative cases) the
//! exact status, list, segment index and fault address. Output is TAP on stdout, with a
//! `# phyr-...` line for every mapping, queue and command (docs/REPORT.md).

mod case;
mod cases_data;
mod cases_fault;
mod cases_queue;
mod cases_rules;
mod check;
mod tap;

use anyhow::Result;
use phyr_report::{EndpointLine, Window};

use crate::bench::Bench;
pub use case::{Case, Outcome};
pub use tap::Tap;

pub fn all_cases() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(cases_queue::cases_first());
    v.extend(cases_data::cases());
    v.extend(cases_queue::cases());
    v.extend(cases_fault::cases());
    v.extend(cases_rules::cases());
    v
}

pub fn list() {
    for c in all_cases() {
        println!("{:32} {}", c.name, c.about);
    }
}

/// Runs the selected cases (all if `only` is empty); returns whether all passed.
pub fn run(s: &mut Bench, only: &[String]) -> Result<bool> {
    let cases = all_cases();
    for n in only {
        if !cases.iter().any(|c| c.name == n) {
            anyhow::bail!("no case named {n:?} (see `phyr suite --list`)");
        }
    }
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|n| n == c.name))
        .collect();
    let mut tap = Tap::default();
    tap.header(selected.len());
    for e in &s.endpoints {
        let bar0 = e.pci.bar(0);
        let line = EndpointLine {
            index: e.index as u32,
            bdf: e.pci.bdf.clone(),
            endpoint_id: e.id.endpoint_id,
            switch_id: e.id.switch_id,
            bar0: Window {
                addr: bar0.map_or(0, |r| r.start),
                len: bar0.map_or(0, |r| r.size()),
            },
            bar2: Window {
                addr: e.bar2_bus(),
                len: e.bar2_len(),
            },
            iommu_group: e.pci.iommu_group,
            // The CPU's view of BAR2, from sysfs.
            bar2_phys: e.pci.bar(2).map(|r| r.start),
        };
        Tap::report(&line);
    }
    for c in selected {
        Tap::diag(&format!("case {}: {}", c.name, c.about));
        let t0 = std::time::Instant::now();
        let r = (c.run)(s);
        let ms = t0.elapsed().as_millis();
        match r {
            Ok(Outcome::Pass) => {
                Tap::diag(&format!("{} took {ms} ms", c.name));
                tap.ok(c.name)
            }
            Ok(Outcome::Skip(why)) => tap.skip(c.name, &why),
            Err(e) => {
                let msg = format!("{e:#}");
                tap.not_ok(c.name, &msg);
                // Leave the endpoints in a known state for the next case.
                for ep in 0..s.endpoints.len() {
                    if let Err(e) = s.reset_endpoint(ep) {
                        Tap::diag(&format!("re-initialising endpoint {ep} after the failure: {e}"));
                    }
                }
            }
        }
    }
    tap.totals();
    Ok(tap.fail == 0)
}
