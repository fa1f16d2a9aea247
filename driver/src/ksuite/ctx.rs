//! What every kernel-suite case uses: the open device, its endpoints, buffers and maps that
//! free themselves, commands that print their report lines (docs/REPORT.md: a `# phyr-kmap`
//! line per list with every piece the kernel mapped, then `# phyr-cmd`), and the checks of a
//! map's pieces against the endpoints' BARs.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, ensure, Context, Result};
use dma_range::{AddrSpace, Completion, DmaRange, ListKind, Opcode, Status};
use phyr_report::{self as report, CmdStatus, EndpointLine, Fault, KernelSeg, KmapLine, MapState, Op, Span, Window};

use super::kdev::{KDev, KErr, KResult, Mapped};
use super::uapi::{self, EpInfo, Info, MapSeg, Path, Submit};
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

    /// Prints a `# phyr-endpoint` line per endpoint (BAR0 and the IOMMU group from sysfs).
    pub fn print_endpoints(&self) {
        let pci = crate::endpoint::find(&self.sysfs, &[]).unwrap_or_default();
        for (index, e) in self.eps.iter().enumerate() {
            let bdf = e.bdf();
            let f = pci.iter().find(|f| f.bdf == bdf);
            let bar0 = f.and_then(|f| f.bar(0));
            Tap::report(&EndpointLine {
                index: index as u32,
                bdf,
                endpoint_id: e.ep,
                switch_id: e.switch_id,
                bar0: Window {
                    addr: bar0.map_or(0, |r| r.start),
                    len: bar0.map_or(0, |r| r.size()),
                },
                bar2: Window {
                    addr: e.bar2_bus,
                    len: e.bar2_size,
                },
                iommu_group: f.and_then(|f| f.iommu_group),
                bar2_phys: Some(e.bar2_phys),
            });
        }
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

    /// Maps `segs` for `ep` and checks the pieces (every command over the map reports them).
    pub fn map(&self, ep: &EpInfo, path: Path, dir: u32, segs: &[MapSeg]) -> Result<KMap<'_>> {
        let m = self
            .dev
            .map(ep.ep, path, dir, segs)
            .with_context(|| format!("mapping {} segment(s) for ep{} via {}", segs.len(), ep.ep, path.name()))?;
        let m = KMap {
            dev: &self.dev,
            m,
            path,
            unmapped: Cell::new(false),
        };
        check_pieces(self, segs, &m.m).with_context(|| format!("map {} via {}", m.m.id, path.name()))?;
        Ok(m)
    }

    /// Submits `c` and prints its report lines; `bytes`/`crc` are what the command should
    /// move (for the trace cross-check). Fails only if the call fails.
    pub fn submit(&self, ep: &EpInfo, c: &Cmd<'_>, bytes: u64, crc: Option<u32>) -> Result<Submit> {
        let s = self.submit_raw(ep, c)?;
        // One write: other threads' lines never come between a command's kmap and cmd lines.
        Tap::report(&report_lines(ep.ep, c, &s, bytes, crc));
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
    pub path: Path,
    /// Unmapped with KEEP: commands over it are uses after unmap.
    unmapped: Cell<bool>,
}

impl KMap<'_> {
    /// UNMAP with KEEP: the DMA mapping goes, the id and its ranges stay (a stale map).
    pub fn unmap_keep(&self) -> KResult<()> {
        self.dev.unmap(self.m.id, uapi::UNMAP_KEEP)?;
        self.unmapped.set(true);
        Ok(())
    }

    /// Every piece as the report grammar has it: the part of the list the device was given
    /// (in the space of its range), the kernel's decision, the physical address, the call,
    /// and the index of the range holding it.
    pub fn kernel_segs(&self) -> Vec<KernelSeg> {
        self.m
            .pieces
            .iter()
            .map(|p| {
                let bus = self
                    .m
                    .ranges
                    .get(p.range as usize)
                    .is_some_and(|r| r.flags & uapi::RANGE_BUS_ADDR != 0);
                let space = if bus { AddrSpace::Bus } else { AddrSpace::Iova };
                KernelSeg {
                    dma: Span::new(space, p.dma_addr, u64::from(p.len)),
                    // check_pieces refused unknown map types when the map was made
                    map: uapi::map_type(p.map_type).unwrap_or(report::MapType::None),
                    phys: p.phys,
                    call: uapi::call(p.how),
                    entry: Some(p.range),
                }
            })
            .collect()
    }

    /// The `# phyr-kmap` lines of this map as list `list` of command `(ep, q, id)`.
    pub fn kmap_lines(&self, ep: u32, q: u32, id: u16, list: ListKind) -> Vec<KmapLine> {
        let head = KmapLine {
            ep,
            q,
            id,
            list,
            first: 0,
            segs: Vec::new(),
            path: Some(self.path.report()),
            state: Some(if self.unmapped.get() {
                MapState::Unmapped
            } else {
                MapState::Mapped
            }),
        };
        KmapLine::split(&head, &self.kernel_segs())
    }

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

/// The report lines of a finished command: `# phyr-kmap` for each list the kernel mapped,
/// then `# phyr-cmd` (and its `# phyr-ranges`), one per line, without a final newline.
fn report_lines(ep: u32, c: &Cmd<'_>, s: &Submit, bytes: u64, crc: Option<u32>) -> String {
    let comp = completion(s);
    let mut out = String::new();
    for (list, m) in [(ListKind::Src, c.src), (ListKind::Dst, c.dst)] {
        for l in m
            .into_iter()
            .flat_map(|m| m.kmap_lines(ep, c.queue, comp.command_id, list))
        {
            out.push_str(&l.to_string());
            out.push('\n');
        }
    }
    let spans = |m: Option<&KMap<'_>>| m.map_or_else(Vec::new, |m| m.dma_ranges().iter().map(Span::from).collect());
    let cmd = report::Cmd {
        ep,
        q: c.queue,
        id: comp.command_id,
        op: Op::from_code(c.op as u8),
        status: CmdStatus::from_code(comp.status),
        result: comp.result,
        bytes,
        // The expected CRC only describes what a successful command moved.
        crc32c: crc.filter(|_| comp.status == Status::SUCCESS as u16),
        src: spans(c.src),
        dst: spans(c.dst),
        lists: if s.list_bytes > 0 {
            vec![Span::new(AddrSpace::Iova, s.list_dma, u64::from(s.list_bytes))]
        } else {
            Vec::new()
        },
        fault: Fault::of(&comp),
    };
    out.push_str(&cmd.render());
    out
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
        ensure!(
            uapi::map_type(p.map_type).is_some() && uapi::call(p.how).is_some(),
            "piece {i}: map type {} / call {} unknown",
            p.map_type,
            p.how
        );
        ensure!(
            p.flags & uapi::PIECE_FALLBACK == 0 || uapi::call(p.how) == Some(report::KernelCall::MapPhys),
            "piece {i}: a fallback piece not made by dma_map_phys()"
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
        CmdStatus::from_code(s.cqe.status),
        s.cqe.result,
        s.cqe.segment as i32,
        s.cqe.fault_addr,
        status.name()
    );
    Ok(())
}
