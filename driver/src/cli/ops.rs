//! `phyr copy|fill|crc|compare`: one command on ranges given in the `spec` syntax, with the
//! data prepared and checked by the CPU (byte for byte) and by the device (CRC32C).

use anyhow::{Context, Result};
use dma_range::{Opcode, Status};
use phyr_kernels::crc32c;

use crate::bench::Bench;
use crate::data;
use crate::exec::Job;
use crate::hostmem::HostMem;
use crate::mapping::{self, ListAt, PhysRange};
use crate::queue::QueueMode;
use crate::spec::{self, Piece, PieceLoc};
use crate::vfio::DmaPerm;

#[derive(Debug, Clone, clap::Args)]
pub struct OpArgs {
    /// Executing endpoint (index as in `phyr list`).
    #[arg(long, default_value_t = 0)]
    pub ep: usize,
    #[arg(long, default_value_t = 0)]
    pub queue: u32,
    #[arg(long, value_enum, default_value_t = QueueMode::Irq)]
    pub mode: QueueMode,
    /// Longest segment the mapping layer may emit (bytes).
    #[arg(long, default_value = "64K", value_parser = parse_size_arg)]
    pub seg_max: u64,
    /// Entries per list block (chained beyond).
    #[arg(long, default_value_t = 256)]
    pub block_entries: usize,
    /// Where list blocks live: `host` or `bar:EP:OFF`.
    #[arg(long, default_value = "host")]
    pub list_at: String,
    /// Seed of the source data pattern.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn parse_size_arg(s: &str) -> std::result::Result<u64, String> {
    spec::parse_size(s).ok_or_else(|| format!("bad size {s:?}"))
}

fn list_at(s: &str) -> Result<ListAt> {
    if s == "host" {
        return Ok(ListAt::Host);
    }
    let rest = s.strip_prefix("bar:").context("--list-at must be host or bar:EP:OFF")?;
    let (ep, off) = rest.split_once(':').context("--list-at bar:EP:OFF")?;
    Ok(ListAt::Bar {
        ep: ep.parse()?,
        offset: spec::parse_size(off).context("bad offset")?,
    })
}

fn to_phys<'a>(pieces: &[Piece], host: Option<&'a HostMem>) -> Vec<PhysRange<'a>> {
    pieces
        .iter()
        .map(|p| match p.loc {
            PieceLoc::Host { offset } => {
                PhysRange::host(host.expect("host buffer allocated for host pieces"), offset, p.len)
            }
            PieceLoc::Bar { ep, offset } => PhysRange::bar(ep, offset, p.len, p.route),
        })
        .collect()
}

fn read_all(s: &Bench, r: &[PhysRange]) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    for p in r {
        v.extend(data::read(s, p.loc, p.len as usize)?);
    }
    Ok(v)
}

fn write_all(s: &Bench, r: &[PhysRange], bytes: &[u8]) -> Result<()> {
    let mut off = 0;
    for p in r {
        data::write(s, p.loc, &bytes[off..off + p.len as usize])?;
        off += p.len as usize;
    }
    Ok(())
}

fn total(r: &[PhysRange]) -> u64 {
    r.iter().map(|p| p.len).sum()
}

/// Runs `op` with `src`/`dst` specs; returns Ok(true) if everything checked out.
pub fn run(s: &mut Bench, a: &OpArgs, op: Opcode, src: Option<&str>, dst: Option<&str>, pattern: u64) -> Result<bool> {
    let sp = src.map(spec::parse_spec).transpose()?.unwrap_or_default();
    let dp = dst.map(spec::parse_spec).transpose()?.unwrap_or_default();
    let extent = spec::host_extent(&sp).max(spec::host_extent(&dp));
    let host = if extent > 0 {
        Some(s.alloc_host(extent, DmaPerm::ReadWrite)?)
    } else {
        None
    };
    let sr = to_phys(&sp, host.as_ref());
    let dr = to_phys(&dp, host.as_ref());
    let seg_max = u32::try_from(a.seg_max).unwrap_or(u32::MAX).max(1);
    let at = list_at(&a.list_at)?;
    // Prepare data: source gets the pattern, destination a different fill.
    let src_bytes = data::pattern(a.seed, total(&sr) as usize);
    if op == Opcode::Compare {
        write_all(s, &sr, &src_bytes)?;
        write_all(s, &dr, &src_bytes)?;
    } else {
        write_all(s, &dr, &vec![0xA5; total(&dr) as usize])?;
        write_all(s, &sr, &src_bytes)?;
    }
    let sl = if sr.is_empty() {
        None
    } else {
        let segs = mapping::map_ranges(s, a.ep, &sr, seg_max)?;
        Some(mapping::build_list(s, a.ep, segs, a.block_entries, at)?)
    };
    let dl = if dr.is_empty() {
        None
    } else {
        let segs = mapping::map_ranges(s, a.ep, &dr, seg_max)?;
        let at2 = match at {
            ListAt::Bar { ep, offset } => ListAt::Bar {
                ep,
                offset: offset + 0x10000,
            },
            h => h,
        };
        Some(mapping::build_list(s, a.ep, segs, a.block_entries, at2)?)
    };
    let expected: Vec<u8> = match op {
        Opcode::Fill => data::fill_bytes(pattern, total(&dr) as usize),
        _ => src_bytes.clone(),
    };
    let crc = crc32c::crc32c(&expected);
    let mut job = Job::new(a.ep, op, sl.as_ref(), dl.as_ref())
        .on(a.queue, a.mode)
        .crc(crc);
    job.cmd.pattern = pattern;
    let dev_ep = s.ep(a.ep)?.id.endpoint_id;
    let c = job.run(s)?;
    if !s.trace_lines {
        println!("{}", job.line(dev_ep, &c));
    }
    let status = Status::from_u16(c.status);
    println!(
        "{} -> {} result={:#x}",
        op.name(),
        status.map_or_else(|| format!("unknown status {:#x}", c.status), |st| st.to_string()),
        c.result
    );
    if status != Some(Status::SUCCESS) {
        if status.is_some_and(|st| st.is_failure()) {
            println!(
                "fault: list={} segment={} addr={:#x}",
                c.fault_list, c.segment, c.fault_addr
            );
        }
        return Ok(false);
    }
    let mut ok = true;
    match op {
        Opcode::Copy | Opcode::Fill => {
            let got = read_all(s, &dr)?;
            match data::first_diff(&got, &expected) {
                None => println!("destination matches byte for byte ({} bytes)", got.len()),
                Some(off) => {
                    ok = false;
                    println!(
                        "MISMATCH at destination byte {off}: got {:#04x}, expected {:#04x}",
                        got[off], expected[off]
                    );
                }
            }
            let dl = dl.as_ref().expect("copy/fill have a destination");
            let check = Job::new(a.ep, Opcode::Crc32c, Some(dl), None)
                .on(a.queue, a.mode)
                .crc(crc);
            let cc = check.run(s)?;
            if !s.trace_lines {
                println!("{}", check.line(dev_ep, &cc));
            }
            ok &= report_crc(cc.result as u32, crc);
        }
        Opcode::Crc32c => ok &= report_crc(c.result as u32, crc),
        Opcode::Compare => println!("lists equal ({} bytes compared)", c.result),
        Opcode::Nop => {}
    }
    Ok(ok)
}

fn report_crc(device: u32, expected: u32) -> bool {
    if device == expected {
        println!("device CRC32C {device:#010x} matches the expected data");
        true
    } else {
        println!("CRC MISMATCH: device says {device:#010x}, expected {expected:#010x}");
        false
    }
}
