//! One soak command, planned: its opcode, the segments of its lists with the arena bytes
//! behind each, where its list blocks live, the deterministic fault it must end with (a bad
//! segment on purpose), and which racing faults the step allows it. Shapes are drawn in
//! shape.rs.

use anyhow::Result;
use dma_range::{AddrSpace, DmaRange, Opcode, Status, FAULT_LIST_DST, FAULT_LIST_SRC};

use crate::bench::Bench;
use crate::exec::Job;
use crate::mapping::{BuiltList, Fabric};
use crate::queue::QueueMode;

/// A segment the device must fail on, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// An IOVA nothing maps (the guard page after a host arena, or below the IOVA window).
    Unmapped,
    /// A destination in the read-only host arena.
    ReadOnly,
    /// A bus address no BAR decodes.
    NoTarget,
    /// A bus address in the executing endpoint's BAR0 (registers: Completer Abort).
    TargetAbort,
    /// A bus-address segment that starts in BAR2 and runs past its end.
    PastBarEnd,
}

impl Bad {
    pub const ALL: [Bad; 5] = [
        Bad::Unmapped,
        Bad::ReadOnly,
        Bad::NoTarget,
        Bad::TargetAbort,
        Bad::PastBarEnd,
    ];

    pub fn status(self) -> Status {
        match self {
            Bad::Unmapped => Status::IOMMU_FAULT,
            Bad::ReadOnly => Status::WRITE_READ_ONLY,
            Bad::NoTarget => Status::BUS_NO_TARGET,
            Bad::TargetAbort => Status::BUS_TARGET_ABORT,
            Bad::PastBarEnd => Status::BUS_PAST_BAR_END,
        }
    }
}

/// One data entry of a list.
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    pub range: DmaRange,
    /// The arena and offset of the bytes behind it, when the device may move them.
    pub at: Option<(usize, u64)>,
    pub bad: Option<Bad>,
    /// A BAR reached through an IOMMU window: QEMU 11.1 maps such a window without an fd, so
    /// the device moves these bytes with DMA_READ/DMA_WRITE messages, and ABI §3 and §6 give
    /// `result` and aborts up to 64 KiB of slack there.
    pub message: bool,
}

impl Seg {
    pub fn len(&self) -> u64 {
        u64::from(self.range.len)
    }
}

/// The fault a bad segment must produce, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetFault {
    pub status: Status,
    pub list: u8,
    pub segment: u32,
    pub addr: u64,
    /// Transfer offset where the bad segment starts: the command's `result`.
    pub pos: u64,
}

/// Addresses that stop working while a command runs (an unmapped IOVA range, a BAR that
/// stops decoding during a VFIO reset of its endpoint), and how an access there fails.
#[derive(Debug, Clone)]
pub struct Gone {
    pub space: AddrSpace,
    pub lo: u64,
    pub hi: u64,
    pub statuses: Vec<Status>,
    /// Reached by DMA messages (64 KiB slack, ABI §6).
    pub message: bool,
}

/// Faults injected while the command runs that it may end with instead.
#[derive(Debug, Clone, Default)]
pub struct Allow {
    /// Addresses that go away while it runs: a fault there, consistent with its list.
    pub gone: Vec<Gone>,
    /// ABORTED_RESET or ABORTED_QUEUE_DISABLED.
    pub abort: Option<Status>,
    /// Its completion may never come (a reset or disable before it ran, or a VFIO reset,
    /// around which Linux clears Bus Master, dropping completions).
    pub may_vanish: bool,
}

pub struct Plan {
    pub ep: usize,
    pub q: u32,
    pub mode: QueueMode,
    pub op: Opcode,
    pub pattern: u64,
    pub src: Vec<Seg>,
    pub dst: Vec<Seg>,
    pub src_list: Option<BuiltList>,
    pub dst_list: Option<BuiltList>,
    pub det: Option<DetFault>,
    /// One source region repeated (a long command; dst repeats the same way).
    pub long: bool,
    pub allow: Allow,
    /// The CRC32C the data moved must have (for the report line), when known.
    pub crc: Option<u32>,
    /// Command id once submitted.
    pub cid: Option<u16>,
}

impl Plan {
    /// A plan before its lists are placed.
    pub fn new(ep: usize, q: u32, mode: QueueMode, op: Opcode, pattern: u64, src: Vec<Seg>, dst: Vec<Seg>) -> Plan {
        Plan {
            ep,
            q,
            mode,
            op,
            pattern,
            src,
            dst,
            src_list: None,
            dst_list: None,
            det: None,
            long: false,
            allow: Allow::default(),
            crc: None,
            cid: None,
        }
    }

    /// Bytes the command moves: the destination list for COPY and FILL, the source list
    /// otherwise (ABI §4: COPY and COMPARE have equal totals).
    pub fn total(&self) -> u64 {
        let l = if matches!(self.op, Opcode::Fill) {
            &self.dst
        } else {
            &self.src
        };
        l.iter().map(Seg::len).sum()
    }

    pub fn writes(&self) -> bool {
        matches!(self.op, Opcode::Copy | Opcode::Fill)
    }

    /// Some of its bytes move by DMA messages.
    pub fn message(&self) -> bool {
        self.src.iter().chain(&self.dst).any(|s| s.message)
    }

    /// The job `exec` runs and reports.
    pub fn job(&self) -> Job<'_> {
        let mut j = Job::new(self.ep, self.op, self.src_list.as_ref(), self.dst_list.as_ref()).on(self.q, self.mode);
        j.cmd.pattern = if self.op == Opcode::Fill { self.pattern } else { 0 };
        j.crc32c = self.crc;
        j
    }

    /// Segments of the list a completion's `fault_list` names.
    pub fn list(&self, code: u8) -> Option<&[Seg]> {
        match code {
            FAULT_LIST_SRC if self.op != Opcode::Fill => Some(&self.src),
            FAULT_LIST_DST if matches!(self.op, Opcode::Copy | Opcode::Fill | Opcode::Compare) => Some(&self.dst),
            _ => None,
        }
    }
}

/// Transfer offset of each segment's first byte.
pub fn starts(segs: &[Seg]) -> Vec<u64> {
    let mut at = 0;
    segs.iter()
        .map(|s| {
            let t = at;
            at += s.len();
            t
        })
        .collect()
}

/// Facts about the bench the generator needs, read once.
pub struct Limits {
    /// A bus address no BAR decodes.
    pub undecoded: u64,
    /// Per endpoint: BAR0 bus address and size, BAR2 bus address and size.
    pub bars: Vec<(u64, u64, u64, u64)>,
    pub max_entries: usize,
    pub max_chain: usize,
    pub queues: u32,
    /// `bus_ok[provider][client]`: the P2P decision lets `client` use `provider`'s BAR2 bus
    /// address (read from sysfs once: it costs config-space reads).
    pub bus_ok: Vec<Vec<bool>>,
}

impl Limits {
    pub fn read(s: &Bench) -> Result<Self> {
        let undecoded = crate::sysfs::undecoded_bus_addr(&s.sys)? + 0x1000;
        let bars = s
            .endpoints
            .iter()
            .map(|e| {
                let b0 = e.pci.bar(0).map_or((0, 0), |r| (r.start, r.size()));
                (b0.0, b0.1, e.bar2_bus(), e.bar2_len())
            })
            .collect();
        let n = s.endpoints.len();
        let mut bus_ok = vec![vec![false; n]; n];
        for (provider, row) in bus_ok.iter_mut().enumerate() {
            for (client, ok) in row.iter_mut().enumerate() {
                *ok = s.bus_addr_ok(provider, client)?;
            }
        }
        let e0 = s.ep(0)?;
        Ok(Self {
            bus_ok,
            undecoded,
            bars,
            max_entries: e0.id.max_list_entries.min(4096) as usize,
            max_chain: e0.id.max_chain.min(64) as usize,
            queues: s.endpoints.iter().map(|e| e.id.num_queues).min().unwrap_or(1),
        })
    }
}

/// The fault the first bad segment (in transfer order) must produce; a PastBarEnd fault's
/// address (the BAR's end) is filled in by [`det_fault_with_bars`].
pub fn det_fault(src: &[Seg], dst: &[Seg]) -> Option<DetFault> {
    let first = |segs: &[Seg], list: u8| {
        let st = starts(segs);
        segs.iter().enumerate().find_map(|(i, s)| {
            s.bad.map(|b| DetFault {
                status: b.status(),
                list,
                segment: i as u32,
                addr: s.range.addr,
                pos: st[i],
            })
        })
    };
    match (first(src, FAULT_LIST_SRC), first(dst, FAULT_LIST_DST)) {
        (Some(a), Some(b)) => Some(if b.pos < a.pos { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// [`det_fault`] with the BAR end of a PastBarEnd segment filled in.
pub fn det_fault_with_bars(src: &[Seg], dst: &[Seg], limits: &Limits, ep: usize) -> Option<DetFault> {
    let mut d = det_fault(src, dst)?;
    if d.status == Status::BUS_PAST_BAR_END {
        let (_, _, b2, b2_len) = limits.bars[ep];
        d.addr = b2 + b2_len;
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(len: u32, bad: Option<Bad>) -> Seg {
        Seg {
            range: DmaRange::segment(AddrSpace::Iova, 0x1000, len),
            at: None,
            bad,
            message: false,
        }
    }

    #[test]
    fn the_first_bad_segment_in_transfer_order_decides() {
        let src = [seg(100, None), seg(50, Some(Bad::Unmapped))];
        let dst = [seg(120, None), seg(30, Some(Bad::NoTarget))];
        let d = det_fault(&src, &dst).unwrap();
        assert_eq!(
            (d.status, d.list, d.segment, d.pos),
            (Status::IOMMU_FAULT, FAULT_LIST_SRC, 1, 100)
        );
        let dst = [seg(10, None), seg(140, Some(Bad::NoTarget))];
        let d = det_fault(&src, &dst).unwrap();
        assert_eq!(
            (d.status, d.list, d.segment, d.pos),
            (Status::BUS_NO_TARGET, FAULT_LIST_DST, 1, 10)
        );
        assert!(det_fault(&[seg(5, None)], &[]).is_none());
    }

    #[test]
    fn the_earlier_bad_segment_decides_and_a_tie_goes_to_the_source() {
        let src = [seg(10, None), seg(5, Some(Bad::Unmapped))];
        let dst = [seg(10, Some(Bad::ReadOnly)), seg(5, None)];
        let d = det_fault(&src, &dst).unwrap();
        assert_eq!((d.status, d.list, d.pos), (Status::WRITE_READ_ONLY, FAULT_LIST_DST, 0));
        let dst = [seg(10, None), seg(5, Some(Bad::ReadOnly))];
        let d = det_fault(&src, &dst).unwrap();
        assert_eq!((d.status, d.list, d.pos), (Status::IOMMU_FAULT, FAULT_LIST_SRC, 10));
    }

    #[test]
    fn past_bar_end_faults_at_the_end_of_the_executing_endpoints_bar2() {
        let limits = Limits {
            undecoded: 0,
            bars: vec![(0, 0, 0xf800_0000, 0x400_0000), (0, 0, 0xf400_0000, 0x400_0000)],
            max_entries: 4096,
            max_chain: 64,
            queues: 4,
            bus_ok: vec![vec![true; 2]; 2],
        };
        let over = [seg(3, None), seg(300, Some(Bad::PastBarEnd))];
        let d = det_fault_with_bars(&over, &[], &limits, 1).unwrap();
        assert_eq!((d.status, d.addr, d.pos), (Status::BUS_PAST_BAR_END, 0xf800_0000, 3));
        // Other kinds keep the segment's own address.
        let d = det_fault_with_bars(&[seg(3, Some(Bad::NoTarget))], &[], &limits, 1).unwrap();
        assert_eq!(d.addr, 0x1000);
    }

    fn plan(op: Opcode, src: Vec<Seg>, dst: Vec<Seg>) -> Plan {
        Plan::new(0, 0, QueueMode::Spin, op, 0, src, dst)
    }

    #[test]
    fn a_fault_list_code_names_only_a_list_the_opcode_has() {
        let (s, d) = (vec![seg(8, None)], vec![seg(8, None)]);
        let has = |op: Opcode| {
            let p = plan(op, s.clone(), d.clone());
            [FAULT_LIST_SRC, FAULT_LIST_DST, dma_range::FAULT_LIST_NONE, 2, 0x80].map(|code| p.list(code).is_some())
        };
        assert_eq!(has(Opcode::Copy), [true, true, false, false, false]);
        assert_eq!(has(Opcode::Compare), [true, true, false, false, false]);
        assert_eq!(has(Opcode::Fill), [false, true, false, false, false]);
        assert_eq!(has(Opcode::Crc32c), [true, false, false, false, false]);
    }

    #[test]
    fn total_counts_the_list_the_opcode_moves() {
        let p = plan(Opcode::Fill, vec![seg(1, None)], vec![seg(7, None), seg(9, None)]);
        assert_eq!(p.total(), 16);
        let p = plan(Opcode::Crc32c, vec![seg(7, None), seg(9, None)], vec![]);
        assert_eq!((p.total(), p.writes()), (16, false));
        assert_eq!(starts(&[seg(7, None), seg(9, None), seg(1, None)]), vec![0, 7, 16]);
        assert!(starts(&[]).is_empty());
    }
}
