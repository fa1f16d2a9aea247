//! `phyr submit FILE`: a hand-written command and lists in JSON, so users can try their own
//! edge cases. Addresses are written symbolically and resolved by the driver:
//!
//! ```json
//! {
//!   "endpoint": 0, "queue": 0,
//!   "buffers": [ {"name": "a", "size": "64K", "perm": "rw", "init": "pattern:7"},
//!                {"name": "ro", "size": 4096, "perm": "r", "init": "byte:0xee"} ],
//!   "lists": [
//!     {"name": "s", "at": "host", "entries": [
//!        {"addr": "buf:a+0x10", "len": 100},
//!        {"addr": "bus:1+0x1000", "len": 4096},
//!        {"addr": "bar-iova:1+0x2000", "len": "4K"},
//!        {"addr": "0xdead0000", "len": 16, "flags": "bus"},
//!        {"addr": "list:t", "flags": "chain"} ]},
//!     {"name": "t", "at": "bar:0:0x300000", "entries": [ {"addr": "buf:a", "len": 1} ]} ],
//!   "command": {"opcode": "copy", "src": "list:s", "dst": {"addr": "list:t", "len": 16},
//!               "pattern": "0x0123456789abcdef", "flags": 0}
//! }
//! ```
//! Address forms: `buf:NAME[+OFF]` (the buffer's IOVA), `bus:EP[+OFF]` (BAR2 bus address of
//! endpoint EP; implies the BUS_ADDR flag), `bar-iova:EP[+OFF]` (BAR2 of EP
//! mapped through the IOMMU), `list:NAME` (the list's first block; as a head or CHAIN target
//! its length defaults to the block size; implies BUS_ADDR for lists in a BAR), or a plain
//! number. `flags`: names joined by `|` (`bus`, `chain`), added to the implied ones, or a
//! number, used verbatim (to clear an implied flag or set undefined bits). `opcode`: nop/copy/fill/crc32c/compare or a number. A list
//! head may be `"list:NAME"` or a raw `{addr, len, flags}` entry.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use dma_range::{Command, Opcode, Status, RANGE_BUS_ADDR};
use phyr_driver::submit_file::{Init, Place, Plan, Resolve};
use phyr_kernels::crc32c;

use crate::bench::Bench;
use crate::exec::Job;
use crate::hostmem::HostMem;
use crate::queue::QueueMode;
use crate::vfio::DmaPerm;

/// Where a list block was placed: its address, the BUS_ADDR flag it needs, its size.
struct Placed {
    addr: u64,
    flags: u32,
    bytes: u32,
}

/// The session answers where the file's names landed.
struct Resolver<'a> {
    s: &'a mut Bench,
    bufs: &'a HashMap<String, HostMem>,
    lists: &'a HashMap<String, Placed>,
}

impl Resolve for Resolver<'_> {
    fn buffer(&self, name: &str) -> Option<u64> {
        self.bufs.get(name).map(|b| b.iova)
    }
    fn list(&self, name: &str) -> Option<(u64, u32, u32)> {
        self.lists.get(name).map(|l| (l.addr, l.flags, l.bytes))
    }
    fn bus(&mut self, ep: usize) -> Result<u64, String> {
        self.s.ep(ep).map(|e| e.bar2_bus()).map_err(|e| e.to_string())
    }
    fn bar_iova(&mut self, ep: usize, off: u64) -> Result<u64, String> {
        self.s.bar_iova(ep, off).map(|m| m.0).map_err(|e| e.to_string())
    }
}

pub fn run(s: &mut Bench, path: &Path, mode: QueueMode) -> Result<bool> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let plan = Plan::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut bufs = HashMap::new();
    for b in &plan.buffers {
        let perm = if b.read_only {
            DmaPerm::ReadOnly
        } else {
            DmaPerm::ReadWrite
        };
        let m = s.alloc_host(b.size, perm)?;
        match b.init {
            Init::Zero => {}
            Init::Pattern(seed) => m.buf.write(0, &crate::data::pattern(seed, b.size as usize))?,
            Init::Byte(v) => m.buf.write(0, &vec![v; b.size as usize])?,
        }
        println!("buffer {:8} iova {:#x}+{:#x} {:?}", b.name, m.iova, b.size, perm);
        bufs.insert(b.name.clone(), m);
    }
    // Place every list first so entries can name any list (chains, cycles).
    let mut placed = HashMap::new();
    let mut storage = Vec::new();
    let mut bar_writes = Vec::new();
    for l in &plan.lists {
        let bytes = l.block_bytes();
        let p = match l.at {
            Place::Host => {
                let m = s.alloc_host(u64::from(bytes), DmaPerm::ReadOnly)?;
                let p = Placed {
                    addr: m.iova,
                    flags: 0,
                    bytes,
                };
                storage.push((l.name.clone(), m));
                p
            }
            Place::Bar { ep, off } => {
                bar_writes.push((l.name.clone(), ep, off));
                Placed {
                    addr: s
                        .ep(ep)?
                        .bar2_bus()
                        .checked_add(off)
                        .ok_or_else(|| anyhow!("list {}: bar:{ep}:{off:#x} overflows", l.name))?,
                    flags: RANGE_BUS_ADDR,
                    bytes,
                }
            }
        };
        println!(
            "list   {:8} at {:#x} ({} bytes){}",
            l.name,
            p.addr,
            p.bytes,
            if p.flags != 0 { " by bus address" } else { "" }
        );
        placed.insert(l.name.clone(), p);
    }
    let mut encoded = HashMap::new();
    let mut r = Resolver {
        s,
        bufs: &bufs,
        lists: &placed,
    };
    for l in &plan.lists {
        let mut bytes = Vec::new();
        for e in &l.entries {
            let d = e.resolve(&mut r)?;
            println!("  {}: addr {:#x} len {:#x} flags {:#x}", l.name, d.addr, d.len, d.flags);
            bytes.extend(d.to_bytes());
        }
        encoded.insert(l.name.clone(), bytes);
    }
    let src = plan.src.resolve(&mut r)?;
    let dst = plan.dst.resolve(&mut r)?;
    for (name, m) in &storage {
        m.buf.write(0, &encoded[name])?;
    }
    for (name, ep, off) in &bar_writes {
        s.ep(*ep)?.bar2.write(*off, &encoded[name])?;
    }
    let opcode = plan.opcode;
    let mut job = Job::new(plan.endpoint, Opcode::Nop, None, None).on(plan.queue, mode);
    job.cmd = Command {
        opcode,
        src,
        dst,
        ..Default::default()
    };
    job.cmd.pattern = plan.pattern;
    job.cmd.flags = plan.flags;
    job.cmd.reserved0 = plan.reserved0;
    println!(
        "command: opcode {opcode:#x} src {src:?} dst {dst:?} pattern {:#x}",
        job.cmd.pattern
    );
    let dev_ep = s.ep(plan.endpoint)?.id.endpoint_id;
    let c = job.run(s)?;
    if !s.trace_lines {
        println!("{}", job.line(dev_ep, &c));
    }
    let st = Status::from_u16(c.status);
    println!(
        "completion: id {} status {} sq_head {} fault_list {} segment {:#x} result {:#x} fault_addr {:#x}",
        c.command_id,
        st.map_or_else(|| format!("{:#x}", c.status), |x| x.to_string()),
        c.sq_head,
        c.fault_list,
        c.segment,
        c.result,
        c.fault_addr
    );
    let mut names: Vec<_> = bufs.keys().collect();
    names.sort();
    for n in names {
        let b = &bufs[n];
        let bytes = b.buf.to_vec(0, b.len() as usize)?;
        println!(
            "buffer {n:8} crc32c {:#010x} first bytes {:02x?}",
            crc32c::crc32c(&bytes),
            &bytes[..16.min(bytes.len())]
        );
    }
    Ok(st.is_some_and(|x| !x.is_failure()))
}
