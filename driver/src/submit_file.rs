//! The `phyr submit` file: a hand-written command and its lists in JSON (format: driver/README.md
//! and `cli/submit.rs`), parsed and checked here without touching a device, so that every
//! malformed file gets one clear error before anything is allocated or submitted.
//!
//! [`Plan::parse`] turns the text into a checked plan: names unique, numbers in range for the
//! field that carries them (a `len` above 4 GiB - 1 is an error, never truncated), every init,
//! permission, placement and opcode spelled right. Addresses stay symbolic until
//! [`Entry::resolve`] asks a [`Resolve`] (the driver's session, or a test's) where buffers,
//! lists and BARs are; offsets that would overflow and names that do not exist are errors there.

use std::collections::HashSet;

use dma_range::{DmaRange, Opcode, ENTRY_SIZE, RANGE_BUS_ADDR, RANGE_CHAIN};
use serde::Deserialize;

use crate::size::parse_size;

/// Largest buffer a file may ask for (the guest's RAM is small; a typo of a suffix should not
/// try to pin gigabytes).
pub const MAX_BUFFER: u64 = 256 << 20;
/// Most entries one list may hold (the device's own limit is MAX_LIST_ENTRIES; a file may go
/// past it to test that limit, but not without bound).
pub const MAX_LIST_ENTRIES: usize = 1 << 16;

/// What is wrong with a submit file, said for its author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SubmitError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SubmitError> {
    Err(SubmitError(msg.into()))
}

#[derive(Deserialize, Clone, Debug)]
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

    fn num(&self, what: &str) -> Result<u64, SubmitError> {
        match self {
            Val::Num(n) => Ok(*n),
            Val::Str(s) => parse_size(s).ok_or_else(|| SubmitError(format!("{what}: {s:?} is not a number"))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    #[serde(default)]
    endpoint: usize,
    #[serde(default)]
    queue: u32,
    #[serde(default)]
    buffers: Vec<BufferJson>,
    #[serde(default)]
    lists: Vec<ListJson>,
    command: CmdJson,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BufferJson {
    name: String,
    size: Val,
    #[serde(default)]
    perm: Option<String>,
    #[serde(default)]
    init: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListJson {
    name: String,
    #[serde(default)]
    at: Option<String>,
    entries: Vec<EntryJson>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct EntryJson {
    addr: Val,
    #[serde(default)]
    len: Option<Val>,
    #[serde(default)]
    flags: Option<Val>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum HeadJson {
    Name(String),
    Raw(EntryJson),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CmdJson {
    opcode: Val,
    #[serde(default)]
    src: Option<HeadJson>,
    #[serde(default)]
    dst: Option<HeadJson>,
    #[serde(default)]
    pattern: Option<Val>,
    #[serde(default)]
    flags: Option<u8>,
    #[serde(default)]
    reserved0: Option<u32>,
}

/// An address expression, still symbolic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// `buf:NAME[+OFF]`: the buffer's IOVA.
    Buf { name: String, off: u64 },
    /// `bus:EP[+OFF]`: BAR2 of endpoint EP by bus address (implies BUS_ADDR).
    Bus { ep: usize, off: u64 },
    /// `bar-iova:EP[+OFF]`: BAR2 of endpoint EP mapped through the IOMMU.
    BarIova { ep: usize, off: u64 },
    /// `list:NAME[+OFF]`: the list's first block (implies its length and, in a BAR, BUS_ADDR).
    List { name: String, off: u64 },
    /// A plain number.
    Num(u64),
}

/// An entry's flags: names add to what the address implies, a number is taken verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flags {
    Added(u32),
    Verbatim(u32),
}

/// One list entry (or a raw list head).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub addr: Addr,
    pub len: Option<u32>,
    pub flags: Flags,
}

/// How a buffer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    Zero,
    Pattern(u64),
    Byte(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    pub name: String,
    pub size: u64,
    pub read_only: bool,
    pub init: Init,
}

/// Where a list's block lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Host,
    Bar { ep: usize, off: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub name: String,
    pub at: Place,
    pub entries: Vec<Entry>,
}

impl List {
    /// Bytes of its block (an empty list still takes one entry's worth).
    pub fn block_bytes(&self) -> u32 {
        (self.entries.len().max(1) * ENTRY_SIZE) as u32
    }
}

/// A command list head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Absent: an all-zero head.
    None,
    /// A list's name (`list:` prefix optional); its CHAIN flag is cleared.
    List(Entry),
    Raw(Entry),
}

/// A checked submit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub endpoint: usize,
    pub queue: u32,
    pub buffers: Vec<Buffer>,
    pub lists: Vec<List>,
    pub opcode: u8,
    pub src: Head,
    pub dst: Head,
    pub pattern: u64,
    pub flags: u8,
    pub reserved0: u32,
}

/// Where the symbolic names landed: the driver's session answers for real.
pub trait Resolve {
    /// A buffer's IOVA.
    fn buffer(&self, name: &str) -> Option<u64>;
    /// A list's block: (address, implied flags, bytes).
    fn list(&self, name: &str) -> Option<(u64, u32, u32)>;
    /// BAR2's bus address of endpoint `ep`.
    fn bus(&mut self, ep: usize) -> Result<u64, String>;
    /// The IOVA of BAR2 of endpoint `ep` at offset `off` (mapped on demand).
    fn bar_iova(&mut self, ep: usize, off: u64) -> Result<u64, String>;
}

fn parse_off(t: &str, o: &str) -> Result<u64, SubmitError> {
    parse_size(o).ok_or_else(|| SubmitError(format!("bad offset in {t:?}")))
}

fn parse_ep(t: &str, ep: &str) -> Result<usize, SubmitError> {
    ep.parse()
        .map_err(|_| SubmitError(format!("{t:?}: {ep:?} is not an endpoint index")))
}

fn parse_addr(v: &Val) -> Result<Addr, SubmitError> {
    let t = v.text();
    let (base, off) = match t.split_once('+') {
        Some((b, o)) => (b, parse_off(&t, o)?),
        None => (t.as_str(), 0),
    };
    Ok(if let Some(name) = base.strip_prefix("buf:") {
        Addr::Buf {
            name: name.to_owned(),
            off,
        }
    } else if let Some(ep) = base.strip_prefix("bus:") {
        Addr::Bus {
            ep: parse_ep(&t, ep)?,
            off,
        }
    } else if let Some(ep) = base.strip_prefix("bar-iova:") {
        Addr::BarIova {
            ep: parse_ep(&t, ep)?,
            off,
        }
    } else if let Some(name) = base.strip_prefix("list:") {
        Addr::List {
            name: name.to_owned(),
            off,
        }
    } else {
        Addr::Num(v.num("addr")?)
    })
}

fn parse_flags(v: &Option<Val>) -> Result<Flags, SubmitError> {
    match v {
        None => Ok(Flags::Added(0)),
        Some(Val::Str(s)) if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => {
            let mut f = 0;
            for p in s.split('|') {
                f |= match p.trim() {
                    "bus" => RANGE_BUS_ADDR,
                    "chain" => RANGE_CHAIN,
                    other => return err(format!("unknown flag {other:?} (bus, chain, or a number)")),
                };
            }
            Ok(Flags::Added(f))
        }
        Some(v) => {
            let n = v.num("flags")?;
            u32::try_from(n)
                .map(Flags::Verbatim)
                .map_err(|_| SubmitError(format!("flags {n:#x} do not fit the entry's 32 bits")))
        }
    }
}

fn parse_entry(e: &EntryJson) -> Result<Entry, SubmitError> {
    let len = match &e.len {
        None => None,
        Some(l) => {
            let n = l.num("len")?;
            Some(u32::try_from(n).map_err(|_| {
                SubmitError(format!(
                    "entry at {}: len {n:#x} does not fit an entry's 32-bit length (split it into several entries)",
                    e.addr.text()
                ))
            })?)
        }
    };
    Ok(Entry {
        addr: parse_addr(&e.addr)?,
        len,
        flags: parse_flags(&e.flags)?,
    })
}

fn parse_buffer(b: &BufferJson) -> Result<Buffer, SubmitError> {
    let size = b.size.num("size")?;
    if size == 0 || size > MAX_BUFFER {
        return err(format!(
            "buffer {}: size {size:#x} (1 byte to {} MiB)",
            b.name,
            MAX_BUFFER >> 20
        ));
    }
    let read_only = match b.perm.as_deref() {
        None | Some("rw") => false,
        Some("r") => true,
        Some(p) => return err(format!("buffer {}: perm {p:?} (r or rw)", b.name)),
    };
    let init = match b.init.as_deref() {
        None | Some("zero") => Init::Zero,
        Some(i) => match (i.strip_prefix("pattern:"), i.strip_prefix("byte:")) {
            (Some(seed), _) => Init::Pattern(Val::Str(seed.into()).num("pattern seed")?),
            (_, Some(b8)) => {
                let n = Val::Str(b8.into()).num("byte")?;
                Init::Byte(u8::try_from(n).map_err(|_| SubmitError(format!("init byte {n:#x} is not a byte")))?)
            }
            _ => return err(format!("buffer {}: init {i:?} (zero, pattern:SEED, byte:B)", b.name)),
        },
    };
    Ok(Buffer {
        name: b.name.clone(),
        size,
        read_only,
        init,
    })
}

fn parse_place(l: &ListJson) -> Result<Place, SubmitError> {
    let at = l.at.as_deref().unwrap_or("host");
    if at == "host" {
        return Ok(Place::Host);
    }
    let bad = || SubmitError(format!("list {}: at {at:?} (host or bar:EP:OFF)", l.name));
    let (ep, off) = at
        .strip_prefix("bar:")
        .and_then(|r| r.split_once(':'))
        .ok_or_else(bad)?;
    Ok(Place::Bar {
        ep: ep.parse().map_err(|_| bad())?,
        off: parse_size(off).ok_or_else(bad)?,
    })
}

fn parse_head(h: &Option<HeadJson>) -> Result<Head, SubmitError> {
    Ok(match h {
        None => Head::None,
        Some(HeadJson::Name(n)) => Head::List(Entry {
            addr: parse_addr(&Val::Str(n.clone()))?,
            len: None,
            flags: Flags::Added(0),
        }),
        Some(HeadJson::Raw(e)) => Head::Raw(parse_entry(e)?),
    })
}

fn parse_opcode(v: &Val) -> Result<u8, SubmitError> {
    Ok(match v.text().to_ascii_lowercase().as_str() {
        "nop" => Opcode::Nop as u8,
        "copy" => Opcode::Copy as u8,
        "fill" => Opcode::Fill as u8,
        "crc32c" | "crc" => Opcode::Crc32c as u8,
        "compare" => Opcode::Compare as u8,
        _ => {
            let n = v.num("opcode")?;
            u8::try_from(n).map_err(|_| {
                SubmitError(format!(
                    "opcode {n:#x} does not fit the command's 8 bits (nop, copy, fill, crc32c, compare or 0-255)"
                ))
            })?
        }
    })
}

fn unique<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<(), SubmitError> {
    let mut seen = HashSet::new();
    for n in names {
        if !seen.insert(n) {
            return err(format!("two {what}s are called {n:?}"));
        }
    }
    Ok(())
}

impl Plan {
    /// Parses and checks a submit file's text.
    pub fn parse(text: &str) -> Result<Plan, SubmitError> {
        let f: FileJson = serde_json::from_str(text).map_err(|e| SubmitError(format!("not a submit file: {e}")))?;
        unique("buffer", f.buffers.iter().map(|b| b.name.as_str()))?;
        unique("list", f.lists.iter().map(|l| l.name.as_str()))?;
        let buffers = f.buffers.iter().map(parse_buffer).collect::<Result<_, _>>()?;
        let mut lists = Vec::with_capacity(f.lists.len());
        for l in &f.lists {
            if l.entries.len() > MAX_LIST_ENTRIES {
                return err(format!(
                    "list {}: {} entries (at most {MAX_LIST_ENTRIES})",
                    l.name,
                    l.entries.len()
                ));
            }
            lists.push(List {
                name: l.name.clone(),
                at: parse_place(l)?,
                entries: l.entries.iter().map(parse_entry).collect::<Result<_, _>>()?,
            });
        }
        let c = &f.command;
        Ok(Plan {
            endpoint: f.endpoint,
            queue: f.queue,
            buffers,
            lists,
            opcode: parse_opcode(&c.opcode)?,
            src: parse_head(&c.src)?,
            dst: parse_head(&c.dst)?,
            pattern: c.pattern.as_ref().map(|p| p.num("pattern")).transpose()?.unwrap_or(0),
            flags: c.flags.unwrap_or(0),
            reserved0: c.reserved0.unwrap_or(0),
        })
    }
}

fn plus(base: u64, off: u64, what: &str) -> Result<u64, SubmitError> {
    base.checked_add(off)
        .ok_or_else(|| SubmitError(format!("{what} + {off:#x} overflows 64 bits")))
}

impl Entry {
    /// The entry as the device will read it.
    pub fn resolve(&self, r: &mut dyn Resolve) -> Result<DmaRange, SubmitError> {
        let (addr, implied, implied_len) = match &self.addr {
            Addr::Buf { name, off } => {
                let b = r
                    .buffer(name)
                    .ok_or_else(|| SubmitError(format!("no buffer {name:?}")))?;
                (plus(b, *off, &format!("buf:{name}"))?, 0, None)
            }
            Addr::Bus { ep, off } => {
                let b = r.bus(*ep).map_err(SubmitError)?;
                (plus(b, *off, &format!("bus:{ep}"))?, RANGE_BUS_ADDR, None)
            }
            Addr::BarIova { ep, off } => (r.bar_iova(*ep, *off).map_err(SubmitError)?, 0, None),
            Addr::List { name, off } => {
                let (a, f, bytes) = r.list(name).ok_or_else(|| SubmitError(format!("no list {name:?}")))?;
                (plus(a, *off, &format!("list:{name}"))?, f, Some(bytes))
            }
            Addr::Num(n) => (*n, 0, None),
        };
        let flags = match self.flags {
            Flags::Added(f) => f | implied,
            Flags::Verbatim(f) => f,
        };
        let len = match (self.len, implied_len) {
            (Some(l), _) | (None, Some(l)) => l,
            (None, None) => return err(format!("entry at {:?} needs a len", self.addr)),
        };
        Ok(DmaRange { addr, len, flags })
    }
}

impl Head {
    /// The command's list head (all zero when absent).
    pub fn resolve(&self, r: &mut dyn Resolve) -> Result<DmaRange, SubmitError> {
        Ok(match self {
            Head::None => DmaRange::default(),
            Head::List(e) => {
                let mut d = e.resolve(r)?;
                d.flags &= !RANGE_CHAIN;
                d
            }
            Head::Raw(e) => e.resolve(r)?,
        })
    }
}

#[cfg(test)]
mod tests;
