//! What every kernel-suite case uses: the open device, its endpoints, buffers and maps that
//! free themselves, commands that print their `# phyr-cmd` line (driver/src/report.rs), and
//! the checks of a map's pieces against the endpoints' BARs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, ensure, Context, Result};
use dma_range::{AddrSpace, Completion, DmaRange, Opcode, Status};

use super::kdev::{KDev, KErr, KResult, Mapped};
use super::uapi::{self, EpInfo, Info, MapSeg, Path, Submit};
use crate::report::{self, CmdLine};
use crate::suite::Tap;

pub struct Ctx {
    pub dev: KDev,
    pub info: Info,
    pub eps: Vec<EpInfo>,
    pub sysfs: PathBuf,
    seed: AtomicU64,
}

impl Ctx {
    pub fn open(dev: &std::path::Path, sysfs: PathBuf) -> Result<Self> {
        let kdev = KDev::open(dev).with_context(|| {
            format!(
                "opening {} (is phyr.ko loaded? `insmod phyr.ko`, then `phyr ksuite --bind`)",
                dev.display()
            )
        })?;
        let info = kdev.info()?;
        ensure!(
            info.uapi_version >> 16 == uapi::UAPI_MAJOR,
            "phyr.ko speaks uapi {:#x}, this phyr expects major {}",
            info.uapi_version,
            uapi::UAPI_MAJOR
        );
        let n = (info.nr_endpoints as usize).min(uapi::MAX_ENDPOINTS);
        let eps = info.endpoints[..n]
            .iter()
            .map(|&e| kdev.ep_info(e))
            .collect::<KResult<Vec<_>>>()?;
        Ok(Self {
            dev: kdev,
            info,
            eps,
            sysfs,
            seed: AtomicU64::new(0x5eed),
        })
    }

    pub fn has(&self, path: Path) -> bool {
        self.info.caps & (1 << path as u32) != 0
    }

    pub fn paths(&self) -> Vec<Path> {
        Path::ALL.into_iter().filter(|&p| self.has(p)).collect()
    }

    pub fn p2pdma(&self) -> bool {
        self.info.caps & uapi::CAP_P2PDMA != 0
    }

    pub fn seed(&self) -> u64 {
        self.seed.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Two endpoints behind the same switch (executing, peer), if there are.
    pub fn same_switch_pair(&self) -> Option<(EpInfo, EpInfo)> {
        for a in &self.eps {
            for b in &self.eps {
                if a.ep != b.ep && a.switch_id == b.switch_id {
                    return Some((*a, *b));
                }
            }
        }
        None
    }

    /// The endpoint whose BAR2 holds CPU physical address `phys`.
    pub fn bar_owner(&self, phys: u64) -> Option<&EpInfo> {
        self.eps
            .iter()
            .find(|e| phys >= e.bar2_phys && phys - e.bar2_phys < e.bar2_size)
    }

    pub fn alloc(&self, kind: u32, ep: u32, len: u64) -> Result<KBuf<'_>> {
        self.alloc_at(kind, ep, len, 0)
    }

    pub fn alloc_at(&self, kind: u32, ep: u32, len: u64, bar_offset: u64) -> Result<KBuf<'_>> {
        let a = self.dev.buf_alloc(kind, ep, len, bar_offset)?;
        if kind == uapi::BUF_P2PMEM || kind == uapi::BUF_BAR {
            // freed on drop whatever the check says
            let b = KBuf {
                dev: &self.dev,
                id: a.buf,
                len,
                phys: a.phys,
                bar_offset: a.bar_offset,
            };
            let owner = self
                .eps
                .iter()
                .find(|e| e.ep == ep)
                .context("provider not in EP_INFO")?;
            ensure!(
                b.phys == owner.bar2_phys + b.bar_offset && b.bar_offset + len <= owner.bar2_size,
                "buffer at phys {:#x}, BAR offset {:#x}: not inside ep{}'s BAR2 {:#x}+{:#x}",
                b.phys,
                b.bar_offset,
                ep,
                owner.bar2_phys,
                owner.bar2_size
            );
            return Ok(b);
        }
        Ok(KBuf {
            dev: &self.dev,
            id: a.buf,
            len,
            phys: a.phys,
            bar_offset: a.bar_offset,
        })
    }

    /// Maps `segs` for `ep` and prints the map and its pieces.
    pub fn map(&self, ep: &EpInfo, path: Path, dir: u32, segs: &[MapSeg]) -> Result<KMap<'_>> {
        let m = self
            .dev
            .map(ep.ep, path, dir, segs)
            .with_context(|| format!("mapping {} segment(s) for ep{} via {}", segs.len(), ep.ep, path.name()))?;
        print_map(ep.ep, path, &m);
        check_pieces(self, segs, &m).with_context(|| format!("map {} via {}", m.id, path.name()))?;
        Ok(KMap { dev: &self.dev, m })
    }

    /// Submits `c` and prints its phyr-cmd line; `bytes`/`crc` are what the command should
    /// move (for the trace cross-check). Fails only if the call fails.
    pub fn submit(&self, ep: &EpInfo, c: &Cmd<'_>, bytes: u64, crc: Option<u32>) -> Result<Submit> {
        let mut s = self.submit_raw(ep, c)?;
        print_cmd(ep.ep, c, &mut s, bytes, crc);
        if s.out_flags & uapi::SUBMIT_TIMED_OUT != 0 {
            Tap::diag("the completion above came from stopping the queue after the timeout");
        }
        Ok(s)
    }

    pub fn submit_raw(&self, ep: &EpInfo, c: &Cmd<'_>) -> KResult<Submit> {
        let mut s = Submit {
            ep: ep.ep,
            queue: c.queue,
            opcode: c.op as u32,
            flags: c.flags,
            src_map: c.src.map_or(0, |m| m.m.id),
            dst_map: c.dst.map_or(0, |m| m.m.id),
            block_entries: c.block_entries,
            timeout_ms: c.timeout_ms,
            pattern: c.pattern,
            ..Default::default()
        };
        self.dev.submit(&mut s)?;
        Ok(s)
    }

    /// Writes `data` across `segs` (in order) through BUF_WRITE.
    pub fn write_segs(&self, segs: &[MapSeg], data: &[u8]) -> Result<()> {
        let mut off = 0usize;
        for s in segs {
            let n = usize::try_from(s.len)?;
            self.dev.buf_write(s.buf, s.offset, &data[off..off + n])?;
            off += n;
        }
        Ok(())
    }

    pub fn read_segs(&self, segs: &[MapSeg]) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        for s in segs {
            let mut b = vec![0u8; usize::try_from(s.len)?];
            self.dev.buf_read(s.buf, s.offset, &mut b)?;
            v.extend_from_slice(&b);
        }
        Ok(v)
    }
}

/// A buffer freed when dropped.
pub struct KBuf<'a> {
    dev: &'a KDev,
    pub id: u32,
    pub len: u64,
    pub phys: u64,
    pub bar_offset: u64,
}

impl KBuf<'_> {
    pub fn seg(&self, offset: u64, len: u64) -> MapSeg {
        MapSeg {
            buf: self.id,
            reserved: 0,
            offset,
            len,
        }
    }

    pub fn all(&self) -> MapSeg {
        self.seg(0, self.len)
    }
}

impl Drop for KBuf<'_> {
    fn drop(&mut self) {
        let _ = self.dev.buf_free(self.id);
    }
}

/// A map unmapped (id dropped) when dropped.
pub struct KMap<'a> {
    dev: &'a KDev,
    pub m: Mapped,
}

impl KMap<'_> {
    pub fn dma_ranges(&self) -> Vec<DmaRange> {
        self.m
            .ranges
            .iter()
            .map(|r| DmaRange {
                addr: r.addr,
                len: r.len,
                flags: r.flags,
            })
            .collect()
    }
}

impl Drop for KMap<'_> {
    fn drop(&mut self) {
        let _ = self.dev.unmap(self.m.id, 0);
    }
}

/// One command: opcode, lists, queue and options.
pub struct Cmd<'a> {
    pub op: Opcode,
    pub queue: u32,
    pub src: Option<&'a KMap<'a>>,
    pub dst: Option<&'a KMap<'a>>,
    pub block_entries: u32,
    pub pattern: u64,
    pub flags: u32,
    pub timeout_ms: u32,
}

impl<'a> Cmd<'a> {
    pub fn new(op: Opcode, queue: u32) -> Self {
        Self {
            op,
            queue,
            src: None,
            dst: None,
            block_entries: 0,
            pattern: 0,
            flags: 0,
            timeout_ms: 0,
        }
    }

    pub fn src(mut self, m: &'a KMap<'a>) -> Self {
        self.src = Some(m);
        self
    }

    pub fn dst(mut self, m: &'a KMap<'a>) -> Self {
        self.dst = Some(m);
        self
    }

    pub fn blocks(mut self, n: u32) -> Self {
        self.block_entries = n;
        self
    }

    pub fn pattern(mut self, p: u64) -> Self {
        self.pattern = p;
        self
    }
}

pub fn completion(s: &Submit) -> Completion {
    Completion {
        command_id: s.cqe.command_id,
        status: s.cqe.status,
        sq_head: s.cqe.sq_head,
        fault_list: s.cqe.fault_list,
        phase: s.cqe.phase & 1 != 0,
        segment: s.cqe.segment,
        result: s.cqe.result,
        fault_addr: s.cqe.fault_addr,
    }
}

fn print_cmd(ep: u32, c: &Cmd<'_>, s: &mut Submit, bytes: u64, crc: Option<u32>) {
    let src = c.src.map(KMap::dma_ranges).unwrap_or_default();
    let dst = c.dst.map(KMap::dma_ranges).unwrap_or_default();
    let lists = if s.list_bytes > 0 {
        vec![(AddrSpace::Iova, s.list_dma, s.list_bytes)]
    } else {
        Vec::new()
    };
    let comp = completion(s);
    let line = CmdLine {
        ep: ep as usize,
        q: c.queue,
        opcode: c.op as u8,
        completion: &comp,
        bytes,
        crc32c: crc.filter(|_| comp.status == Status::SUCCESS as u16),
        src: &src,
        dst: &dst,
        lists: &lists,
    };
    println!("{}", line.render());
}

fn print_map(ep: u32, path: Path, m: &Mapped) {
    const SHOWN: usize = 16;
    let mut line = format!(
        "phyr-kmap ep={ep} id={} path={} bytes={} ranges={} pieces={}",
        m.id,
        path.name(),
        m.total_len,
        m.ranges.len(),
        m.pieces.len()
    );
    for p in m.pieces.iter().take(SHOWN) {
        let r = &m.ranges[p.range as usize];
        let space = if r.flags & uapi::RANGE_BUS_ADDR != 0 {
            "bus"
        } else {
            "iova"
        };
        line.push_str(&format!(
            "\nphyr-kpiece map={} seg={} off={:#x} phys={:#x}+{:#x} dma={space}:{:#x} range={} type={} how={}{}",
            m.id,
            p.seg,
            p.buf_offset,
            p.phys,
            p.len,
            p.dma_addr,
            p.range,
            uapi::map_type_name(p.map_type),
            uapi::how_name(p.how),
            if p.flags & uapi::PIECE_FALLBACK != 0 {
                " fallback"
            } else {
                ""
            }
        ));
    }
    if m.pieces.len() > SHOWN {
        line.push_str(&format!(
            "\nphyr-kpiece map={} ... {} more",
            m.id,
            m.pieces.len() - SHOWN
        ));
    }
    Tap::diag(&line);
}

/// What a map must satisfy whatever the path: pieces in input order and contiguous within
/// each segment, each inside its range, lengths adding up, the bus flag exactly on
/// bus-address pieces, and every bus address the owning endpoint's BAR2 bus address at the
/// piece's offset in that BAR.
pub fn check_pieces(ctx: &Ctx, segs: &[MapSeg], m: &Mapped) -> Result<()> {
    let total: u64 = segs.iter().map(|s| s.len).sum();
    ensure!(
        m.total_len == total,
        "total_len {} for {} bytes of segments",
        m.total_len,
        total
    );
    let ranges: u64 = m.ranges.iter().map(|r| u64::from(r.len)).sum();
    ensure!(ranges == total, "ranges cover {ranges} bytes, segments {total}");
    let mut next = (0u32, segs.first().map_or(0, |s| s.offset));
    let mut sum = 0u64;
    for (i, p) in m.pieces.iter().enumerate() {
        if p.seg != next.0 {
            ensure!(p.seg == next.0 + 1, "piece {i} jumps to segment {}", p.seg);
            next = (p.seg, segs[p.seg as usize].offset);
        }
        ensure!(
            p.buf_offset == next.1,
            "piece {i} starts at {:#x}, expected {:#x}",
            p.buf_offset,
            next.1
        );
        next.1 += u64::from(p.len);
        sum += u64::from(p.len);
        let r = m.ranges.get(p.range as usize).context("piece names a missing range")?;
        ensure!(
            p.dma_addr >= r.addr && p.dma_addr + u64::from(p.len) <= r.addr + u64::from(r.len),
            "piece {i} ({:#x}+{:#x}) outside its range {:#x}+{:#x}",
            p.dma_addr,
            p.len,
            r.addr,
            r.len
        );
        let bus = r.flags & uapi::RANGE_BUS_ADDR != 0;
        ensure!(
            bus == (p.map_type == uapi::MAP_BUS_ADDR),
            "piece {i}: bus flag and map type disagree"
        );
        if bus {
            let e = ctx.bar_owner(p.phys).context("bus piece outside every BAR2")?;
            let want = e.bar2_bus + (p.phys - e.bar2_phys);
            ensure!(
                p.dma_addr == want,
                "piece {i}: bus address {:#x}, BAR2 of ep{} says {want:#x}",
                p.dma_addr,
                e.ep
            );
        }
    }
    ensure!(sum == total, "pieces cover {sum} bytes, segments {total}");
    Ok(())
}

/// The call must fail with exactly `errno`.
pub fn expect_errno<T>(what: &str, r: KResult<T>, errno: i32) -> Result<()> {
    match r {
        Err(KErr { errno: e, .. }) if e == errno => Ok(()),
        Err(e) => bail!("{what}: {e}, expected {}", super::kdev::errno_name(errno)),
        Ok(_) => bail!("{what}: succeeded, expected {}", super::kdev::errno_name(errno)),
    }
}

/// The completion must carry `status`.
pub fn expect_status(what: &str, s: &Submit, status: Status) -> Result<()> {
    ensure!(
        s.cqe.status == status as u16,
        "{what}: {} (result {:#x}, segment {}, fault {:#x}), expected {}",
        report::status_name(s.cqe.status),
        s.cqe.result,
        s.cqe.segment as i32,
        s.cqe.fault_addr,
        status.name()
    );
    Ok(())
}
