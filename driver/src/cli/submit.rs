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

use anyhow::{anyhow, bail, Context, Result};
use dma_range::{Command, DmaRange, Opcode, Status, ENTRY_SIZE, RANGE_BUS_ADDR, RANGE_CHAIN};
use phyr_kernels::crc32c;
use serde::Deserialize;

use crate::bench::Bench;
use crate::exec::Job;
use crate::hostmem::HostMem;
use crate::queue::QueueMode;
use crate::spec::parse_size;
use crate::vfio::DmaPerm;

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Val {
    Num(u64),
    Str(String),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Num(n) => n.to_string(),
            Val::Str(s) => s.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    endpoint: usize,
    #[serde(default)]
    queue: u32,
    #[serde(default)]
    buffers: Vec<Buffer>,
    #[serde(default)]
    lists: Vec<List>,
    command: Cmd,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Buffer {
    name: String,
    size: Val,
    #[serde(default)]
    perm: Option<String>,
    #[serde(default)]
    init: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct List {
    name: String,
    #[serde(default)]
    at: Option<String>,
    entries: Vec<Entry>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Entry {
    addr: Val,
    #[serde(default)]
    len: Option<Val>,
    #[serde(default)]
    flags: Option<Val>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Head {
    Name(String),
    Raw(Entry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cmd {
    opcode: Val,
    #[serde(default)]
    src: Option<Head>,
    #[serde(default)]
    dst: Option<Head>,
    #[serde(default)]
    pattern: Option<Val>,
    #[serde(default)]
    flags: Option<u8>,
    #[serde(default)]
    reserved0: Option<u32>,
}

/// Where a list block was placed: its address, the BUS_ADDR flag it needs, its size.
struct Placed {
    addr: u64,
    flags: u32,
    bytes: u32,
}

fn num(v: &Val, what: &str) -> Result<u64> {
    match v {
        Val::Num(n) => Ok(*n),
        Val::Str(s) => parse_size(s).ok_or_else(|| anyhow!("{what}: {s:?} is not a number")),
    }
}

fn flags(v: &Val) -> Result<u32> {
    if let Val::Str(s) = v {
        if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            let mut f = 0;
            for p in s.split('|') {
                f |= match p.trim() {
                    "bus" => RANGE_BUS_ADDR,
                    "chain" => RANGE_CHAIN,
                    other => bail!("unknown flag {other:?} (bus, chain, or a number)"),
                };
            }
            return Ok(f);
        }
    }
    Ok(num(v, "flags")? as u32)
}

struct Resolver<'a> {
    s: &'a mut Bench,
    bufs: &'a HashMap<String, HostMem>,
    lists: &'a HashMap<String, Placed>,
}

impl Resolver<'_> {
    /// Resolves an address expression: (address, implied flags, implied length).
    fn addr(&mut self, v: &Val) -> Result<(u64, u32, Option<u32>)> {
        let t = v.text();
        let (base, off) = match t.split_once('+') {
            Some((b, o)) => (b, parse_size(o).ok_or_else(|| anyhow!("bad offset in {t:?}"))?),
            None => (t.as_str(), 0),
        };
        if let Some(name) = base.strip_prefix("buf:") {
            let b = self.bufs.get(name).ok_or_else(|| anyhow!("no buffer {name:?}"))?;
            return Ok((b.iova + off, 0, None));
        }
        if let Some(ep) = base.strip_prefix("bus:") {
            let ep: usize = ep.parse().context("bus:EP")?;
            return Ok((self.s.ep(ep)?.bar2_bus() + off, RANGE_BUS_ADDR, None));
        }
        if let Some(ep) = base.strip_prefix("bar-iova:") {
            let ep: usize = ep.parse().context("bar-iova:EP")?;
            return Ok((self.s.bar_iova(ep, off)?.0, 0, None));
        }
        if let Some(name) = base.strip_prefix("list:") {
            let l = self.lists.get(name).ok_or_else(|| anyhow!("no list {name:?}"))?;
            return Ok((l.addr + off, l.flags, Some(l.bytes)));
        }
        Ok((num(v, "addr")?, 0, None))
    }

    fn entry(&mut self, e: &Entry) -> Result<DmaRange> {
        let (addr, implied, implied_len) = self.addr(&e.addr)?;
        // Named flags add to what the address implies; a number is taken verbatim.
        let flags = match &e.flags {
            Some(Val::Num(n)) => *n as u32,
            Some(f) => flags(f)? | implied,
            None => implied,
        };
        let len = match (&e.len, implied_len) {
            (Some(l), _) => num(l, "len")? as u32,
            (None, Some(l)) => l,
            (None, None) => bail!("entry at {} needs a len", e.addr.text()),
        };
        Ok(DmaRange { addr, len, flags })
    }
}

pub fn run(s: &mut Bench, path: &Path, mode: QueueMode) -> Result<bool> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let f: File = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut bufs = HashMap::new();
    for b in &f.buffers {
        let size = num(&b.size, "size")?;
        let perm = match b.perm.as_deref() {
            None | Some("rw") => DmaPerm::ReadWrite,
            Some("r") => DmaPerm::ReadOnly,
            Some(p) => bail!("buffer {}: perm {p:?} (r or rw)", b.name),
        };
        let m = s.alloc_host(size, perm)?;
        match b.init.as_deref() {
            None | Some("zero") => {}
            Some(i) if i.starts_with("pattern:") => m.buf.write(
                0,
                &crate::data::pattern(num(&Val::Str(i[8..].into()), "seed")?, size as usize),
            )?,
            Some(i) if i.starts_with("byte:") => m
                .buf
                .write(0, &vec![num(&Val::Str(i[5..].into()), "byte")? as u8; size as usize])?,
            Some(i) => bail!("buffer {}: init {i:?} (zero, pattern:SEED, byte:B)", b.name),
        }
        println!("buffer {:8} iova {:#x}+{:#x} {:?}", b.name, m.iova, size, perm);
        bufs.insert(b.name.clone(), m);
    }
    // Place every list first so entries can name any list (chains, cycles).
    let mut placed = HashMap::new();
    let mut storage = Vec::new();
    let mut bar_writes = Vec::new();
    for l in &f.lists {
        let bytes = (l.entries.len().max(1) * ENTRY_SIZE) as u32;
        let at = l.at.as_deref().unwrap_or("host");
        let p = if at == "host" {
            let m = s.alloc_host(u64::from(bytes), DmaPerm::ReadOnly)?;
            let p = Placed {
                addr: m.iova,
                flags: 0,
                bytes,
            };
            storage.push((l.name.clone(), m));
            p
        } else {
            let rest = at
                .strip_prefix("bar:")
                .ok_or_else(|| anyhow!("list {}: at {at:?} (host or bar:EP:OFF)", l.name))?;
            let (ep, off) = rest.split_once(':').ok_or_else(|| anyhow!("bar:EP:OFF"))?;
            let (ep, off): (usize, u64) = (ep.parse()?, parse_size(off).context("offset")?);
            bar_writes.push((l.name.clone(), ep, off));
            Placed {
                addr: s.ep(ep)?.bar2_bus() + off,
                flags: RANGE_BUS_ADDR,
                bytes,
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
    for l in &f.lists {
        let mut bytes = Vec::new();
        for e in &l.entries {
            let d = r.entry(e)?;
            println!("  {}: addr {:#x} len {:#x} flags {:#x}", l.name, d.addr, d.len, d.flags);
            bytes.extend(d.to_bytes());
        }
        encoded.insert(l.name.clone(), bytes);
    }
    let head = |r: &mut Resolver, h: &Option<Head>| -> Result<DmaRange> {
        Ok(match h {
            None => DmaRange::default(),
            Some(Head::Name(n)) => {
                let mut d = r.entry(&Entry {
                    addr: Val::Str(n.clone()),
                    len: None,
                    flags: None,
                })?;
                d.flags &= !RANGE_CHAIN;
                d
            }
            Some(Head::Raw(e)) => r.entry(e)?,
        })
    };
    let src = head(&mut r, &f.command.src)?;
    let dst = head(&mut r, &f.command.dst)?;
    for (name, m) in &storage {
        m.buf.write(0, &encoded[name])?;
    }
    for (name, ep, off) in &bar_writes {
        s.ep(*ep)?.bar2.write(*off, &encoded[name])?;
    }
    let opcode = match f.command.opcode.text().to_ascii_lowercase().as_str() {
        "nop" => Opcode::Nop as u8,
        "copy" => Opcode::Copy as u8,
        "fill" => Opcode::Fill as u8,
        "crc32c" | "crc" => Opcode::Crc32c as u8,
        "compare" => Opcode::Compare as u8,
        _ => num(&f.command.opcode, "opcode")? as u8,
    };
    let mut job = Job::new(f.endpoint, Opcode::Nop, None, None).on(f.queue, mode);
    job.cmd = Command {
        opcode,
        src,
        dst,
        ..Default::default()
    };
    job.cmd.pattern = f
        .command
        .pattern
        .as_ref()
        .map(|p| num(p, "pattern"))
        .transpose()?
        .unwrap_or(0);
    job.cmd.flags = f.command.flags.unwrap_or(0);
    job.cmd.reserved0 = f.command.reserved0.unwrap_or(0);
    println!(
        "command: opcode {opcode:#x} src {src:?} dst {dst:?} pattern {:#x}",
        job.cmd.pattern
    );
    let dev_ep = s.ep(f.endpoint)?.id.endpoint_id;
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
