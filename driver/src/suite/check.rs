//! Shared machinery of the cases: prepare a transfer (data in, lists built), run it, verify
//! the destination byte for byte and by the device's CRC32C; check a fault completion.

use anyhow::{bail, ensure, Result};
use dma_range::{Completion, Opcode, Status};
use phyr_kernels::crc32c;

use crate::bench::Bench;
use crate::data;
use crate::exec::Job;
use crate::mapping::{self, BuiltList, ListAt, PhysRange};
use crate::queue::QueueMode;

#[derive(Debug, Clone, Copy)]
pub struct Opts {
    pub ep: usize,
    pub q: u32,
    pub mode: QueueMode,
    pub seg_max: u32,
    pub block_entries: usize,
    pub list_at: ListAt,
    pub seed: u64,
    /// The source already holds `pattern(seed)` (written by an earlier command): leave it.
    pub keep_src: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            ep: 0,
            q: 0,
            mode: QueueMode::Irq,
            seg_max: 64 << 10,
            block_entries: 256,
            list_at: ListAt::Host,
            seed: 1,
            keep_src: false,
        }
    }
}

pub fn total(r: &[PhysRange]) -> u64 {
    r.iter().map(|p| p.len).sum()
}

pub fn write_ranges(s: &Bench, r: &[PhysRange], bytes: &[u8]) -> Result<()> {
    let mut off = 0;
    for p in r {
        data::write(s, p.loc, &bytes[off..off + p.len as usize])?;
        off += p.len as usize;
    }
    Ok(())
}

pub fn read_ranges(s: &Bench, r: &[PhysRange]) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(total(r) as usize);
    for p in r {
        v.extend(data::read(s, p.loc, p.len as usize)?);
    }
    Ok(v)
}

/// A COPY ready to run: source data written, destination pre-filled, lists built.
pub struct Prepared<'a> {
    pub src: BuiltList,
    pub dst: BuiltList,
    pub dst_ranges: Vec<PhysRange<'a>>,
    pub expected: Vec<u8>,
    pub o: Opts,
}

/// Lists for `ranges` as the mapping layer makes them for `o.ep`.
pub fn list_for(s: &mut Bench, ranges: &[PhysRange], o: &Opts, at: ListAt) -> Result<BuiltList> {
    let segs = mapping::map_ranges(s, o.ep, ranges, o.seg_max)?;
    Ok(mapping::build_list(s, o.ep, segs, o.block_entries, at)?)
}

pub fn prepare<'a>(s: &mut Bench, src: &[PhysRange<'a>], dst: &[PhysRange<'a>], o: Opts) -> Result<Prepared<'a>> {
    ensure!(
        total(src) == total(dst),
        "case bug: src {} bytes, dst {} bytes",
        total(src),
        total(dst)
    );
    let expected = data::pattern(o.seed, total(src) as usize);
    write_ranges(s, dst, &vec![0x5A; expected.len()])?;
    if !o.keep_src {
        write_ranges(s, src, &expected)?;
    }
    let src_at = o.list_at;
    let dst_at = match o.list_at {
        ListAt::Bar { ep, offset } => ListAt::Bar {
            ep,
            offset: offset + 0x10_0000,
        },
        h => h,
    };
    let src_l = list_for(s, src, &o, src_at)?;
    let dst_l = list_for(s, dst, &o, dst_at)?;
    Ok(Prepared {
        src: src_l,
        dst: dst_l,
        dst_ranges: dst.to_vec(),
        expected,
        o,
    })
}

impl Prepared<'_> {
    pub fn job(&self) -> Job<'_> {
        Job::new(self.o.ep, Opcode::Copy, Some(&self.src), Some(&self.dst))
            .on(self.o.q, self.o.mode)
            .crc(crc32c::crc32c(&self.expected))
    }

    /// Checks the completion of the COPY, the bytes, and the device's CRC32C of the
    /// destination list.
    pub fn verify(&self, s: &mut Bench, c: &Completion) -> Result<()> {
        expect_success(c, self.expected.len() as u64)?;
        let got = read_ranges(s, &self.dst_ranges)?;
        if let Some(off) = data::first_diff(&got, &self.expected) {
            bail!(
                "destination differs at byte {off} of {}: got {:#04x}, expected {:#04x}",
                got.len(),
                got[off],
                self.expected[off]
            );
        }
        let want = crc32c::crc32c(&self.expected);
        let crc = Job::new(self.o.ep, Opcode::Crc32c, Some(&self.dst), None)
            .on(self.o.q, self.o.mode)
            .crc(want);
        let cc = crc.run(s)?;
        expect_status(&cc, Status::SUCCESS)?;
        ensure!(
            cc.result as u32 == want,
            "device CRC32C of the destination {:#010x}, expected {want:#010x}",
            cc.result
        );
        ensure!(
            cc.result >> 32 == 0,
            "CRC32C result has high bits set: {:#x}",
            cc.result
        );
        Ok(())
    }
}

/// COPY `src` to `dst` and verify.
pub fn copy_and_check(s: &mut Bench, src: &[PhysRange], dst: &[PhysRange], o: Opts) -> Result<()> {
    let p = prepare(s, src, dst, o)?;
    let c = p.job().run(s)?;
    p.verify(s, &c)
}

pub fn status_text(c: &Completion) -> String {
    match Status::from_u16(c.status) {
        Some(st) => format!("{st}"),
        None => format!("unknown status {:#x}", c.status),
    }
}

pub fn expect_status(c: &Completion, want: Status) -> Result<()> {
    if c.status != want as u16 {
        bail!(
            "command {} completed with {}, expected {} (fault list {} segment {} addr {:#x}, result {:#x})",
            c.command_id,
            status_text(c),
            want.name(),
            c.fault_list,
            c.segment,
            c.fault_addr,
            c.result
        );
    }
    Ok(())
}

pub fn expect_success(c: &Completion, result: u64) -> Result<()> {
    expect_status(c, Status::SUCCESS)?;
    ensure!(c.result == result, "result {:#x}, expected {result:#x}", c.result);
    Ok(())
}

/// The exact fault a negative case expects.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub status: Status,
    pub list: u8,
    pub segment: u32,
    pub addr: u64,
    /// Bytes moved before the fault, when the case knows it.
    pub result: Option<u64>,
}

pub fn expect_fault(c: &Completion, f: Fault) -> Result<()> {
    expect_status(c, f.status)?;
    ensure!(
        c.fault_list == f.list && c.segment == f.segment && c.fault_addr == f.addr,
        "{}: fault at list {} segment {} addr {:#x}, expected list {} segment {} addr {:#x}",
        f.status.name(),
        c.fault_list,
        c.segment,
        c.fault_addr,
        f.list,
        f.segment,
        f.addr
    );
    if let Some(r) = f.result {
        ensure!(
            c.result == r,
            "{}: {:#x} bytes reported moved before the fault, expected {r:#x}",
            f.status.name(),
            c.result
        );
    }
    Ok(())
}

/// Index of an endpoint other than `ep` on the same switch / another switch.
pub fn peer(s: &Bench, ep: usize, same_switch: bool) -> Option<usize> {
    let sw = s.endpoints.get(ep)?.id.switch_id;
    s.endpoints
        .iter()
        .position(|e| e.index != ep && (e.id.switch_id == sw) == same_switch)
}
