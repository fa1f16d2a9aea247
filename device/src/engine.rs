//! The DMA engine: executes one command. It validates the command, walks and validates the
//! whole list(s) first (`dma_range::walk_into`, limits from the registers), then moves data in
//! steps that never cross a segment boundary (and are at most `STEP` bytes), checking for an
//! abort (reset, queue disable) before each step. Every transaction goes through the
//! recording hook. Faults become completions with status, list, segment index, the first
//! failing address, and the bytes done before the fault.

use dma_range::{
    walk_into, Command, Completion, DmaRange, ListLimits, Opcode, ReadFault, Status, WalkedList, FAULT_LIST_DST,
    FAULT_LIST_NONE, FAULT_LIST_SRC, NO_SEGMENT,
};
use phyr_kernels::crc32c;
use phyr_trace::Target;

use crate::bus::{plain_space, trace_space, AccessError, Bus};
use crate::hook::{CmdTag, Data, Hook, ListKind, Txn};
use crate::mem::{Dir, Piece};
use crate::raw::RawPiece;

/// Largest amount of data moved between two abort checks.
pub const STEP: u64 = 4 << 20;
/// Bounce buffer size for message-backed pieces.
const BOUNCE: usize = 64 << 10;

/// A command failure: what to put in the completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub status: Status,
    pub list: u8,
    pub segment: u32,
    pub addr: u64,
}

impl Failure {
    fn plain(status: Status) -> Self {
        Self {
            status,
            list: FAULT_LIST_NONE,
            segment: NO_SEGMENT,
            addr: 0,
        }
    }
}

/// A command's walked source and destination lists. A queue keeps one between commands so
/// that the walks reuse its vectors: no allocation per command while list blocks hold up to 16
/// entries (what that gains: `cargo bench -p phyr-device -- rate`, figures in device/README.md).
#[derive(Debug, Default)]
pub struct Lists {
    src: WalkedList,
    dst: WalkedList,
    /// COPY's overlap check (`overlap::first_overlap`).
    intervals: Vec<crate::overlap::Interval>,
}

/// Everything one command execution needs.
pub struct Exec<'a> {
    pub bus: Bus<'a>,
    pub limits: ListLimits,
    pub hook: &'a Hook,
    pub tag: CmdTag,
    /// Polled before every step: `Some(status)` aborts the command with that status.
    pub abort: &'a dyn Fn() -> Option<Status>,
}

/// One segment of a walked list, as completions and trace records name it: the list (source
/// or destination), the segment's index in it, and the entry itself.
#[derive(Debug, Clone, Copy)]
struct Seg<'r> {
    list: ListKind,
    index: usize,
    range: &'r DmaRange,
}

impl<'r> Seg<'r> {
    fn src(index: usize, range: &'r DmaRange) -> Self {
        Seg {
            list: ListKind::Src,
            index,
            range,
        }
    }

    fn dst(index: usize, range: &'r DmaRange) -> Self {
        Seg {
            list: ListKind::Dst,
            index,
            range,
        }
    }

    /// An access to `piece` at `addr` in this segment.
    fn access<'a>(self, dir: Dir, piece: Piece<'a>, addr: u64, target: Target) -> Access<'a>
    where
        'r: 'a,
    {
        Access {
            seg: self,
            dir,
            piece,
            addr,
            target,
        }
    }

    /// The completion's `fault_list` for a fault in this segment.
    fn fault_list(&self) -> u8 {
        match self.list {
            ListKind::Dst => FAULT_LIST_DST,
            _ => FAULT_LIST_SRC,
        }
    }
}

/// One step of a two-list operation: `len` bytes on each side, inside one source and one
/// destination segment.
#[derive(Debug, Clone, Copy)]
struct Step<'r> {
    src: Seg<'r>,
    /// Where the step starts in `src`.
    src_addr: u64,
    dst: Seg<'r>,
    /// Where the step starts in `dst`.
    dst_addr: u64,
    len: u64,
    /// Bytes of the whole transfer before this step.
    off: u64,
}

/// One access to a piece of a segment, as the trace records it.
#[derive(Clone, Copy)]
struct Access<'a> {
    seg: Seg<'a>,
    dir: Dir,
    piece: Piece<'a>,
    addr: u64,
    target: Target,
}

/// What `Exec::zip_raw` hands each pair of directly addressable pieces to: source, destination
/// (valid only during the call), offset in the step, and their trace targets.
type PairFn<'f> = dyn FnMut(RawPiece<'_>, RawPiece<'_>, u64, (Target, Target)) -> Result<(), ()> + 'f;

/// How a zero-copy walk over one step ended (see `Exec::zip_raw`).
enum Walk {
    /// Every byte of the step went through the callback.
    Done,
    /// A DMA-message piece begins at this offset in the step: finish through a bounce buffer.
    Bounce(u64),
    /// The callback stopped the walk.
    Stopped,
    /// A source or destination fault.
    Failed(Failure),
}

fn shift(t: Target, by: u64) -> Target {
    match t {
        Target::None => Target::None,
        Target::GuestMemory { mapping, offset } => Target::GuestMemory {
            mapping,
            offset: offset.wrapping_add(by),
        },
        Target::PeerBar { endpoint, bar, offset } => Target::PeerBar {
            endpoint,
            bar,
            offset: offset.wrapping_add(by),
        },
    }
}

fn seg_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(NO_SEGMENT)
}

/// The trace's data CRC of bytes that passed through a local buffer (list blocks, message-backed
/// pieces, bounce buffers), when the trace wants one: the CRC of exactly the bytes the device
/// read or wrote, without touching guest memory again.
pub(crate) fn local_crc(hook: &Hook, bytes: &[u8]) -> Option<Data> {
    hook.wants_crc().then(|| Data::Crc(crc32c::crc32c(bytes)))
}

impl Exec<'_> {
    /// Executes `cmd` and returns its completion (phase and sq_head are the queue's business).
    /// `lists` is scratch space for the walked lists.
    pub fn run(&self, cmd: &Command, lists: &mut Lists) -> Completion {
        let mut done = 0u64;
        let mut outcome = self.dispatch(cmd, &mut done, lists);
        if let Some(s) = (self.abort)() {
            // A command that ends while a reset or disable is under way reports the abort: a
            // fault then is its consequence (the VMM refusing DMA of a device being reset, say),
            // and a command whose last DMA message was still in flight when the stop returned
            // must not complete with SUCCESS after it (ABI §3; `phyr soak` saw one do so).
            outcome = Err(Failure::plain(s));
        }
        match outcome {
            Ok((status, result)) => Completion::ok(cmd.command_id, status, result),
            Err(f) => Completion {
                command_id: cmd.command_id,
                status: f.status as u16,
                sq_head: 0,
                fault_list: f.list,
                phase: false,
                segment: f.segment,
                result: done,
                fault_addr: f.addr,
            },
        }
    }

    fn dispatch(&self, cmd: &Command, done: &mut u64, lists: &mut Lists) -> Result<(Status, u64), Failure> {
        let Some(op) = Opcode::from_u8(cmd.opcode) else {
            return Err(Failure::plain(Status::INVALID_OPCODE));
        };
        if cmd.flags != 0 || cmd.reserved0 != 0 || cmd.reserved1 != 0 || cmd.reserved2 != 0 {
            return Err(Failure::plain(Status::INVALID_FIELD));
        }
        // A list head the opcode does not use is a reserved field (ABI §4).
        let unused = |head: DmaRange, list: u8| match head == DmaRange::default() {
            true => Ok(()),
            false => Err(Failure {
                status: Status::INVALID_FIELD,
                list,
                segment: NO_SEGMENT,
                addr: head.addr,
            }),
        };
        if !op.uses_src() {
            unused(cmd.src, FAULT_LIST_SRC)?;
        }
        if !op.uses_dst() {
            unused(cmd.dst, FAULT_LIST_DST)?;
        }
        match op {
            Opcode::Nop => Ok((Status::SUCCESS, 0)),
            Opcode::Copy | Opcode::Compare => {
                self.walk_list(cmd.src, FAULT_LIST_SRC, &mut lists.src)?;
                self.walk_list(cmd.dst, FAULT_LIST_DST, &mut lists.dst)?;
                let (src, dst) = (&lists.src, &lists.dst);
                if src.total_len != dst.total_len {
                    // Not about one list or entry: fault_list 0xFF, segment 0xFFFFFFFF, fault_addr 0.
                    return Err(Failure::plain(Status::LIST_LENGTH_MISMATCH));
                }
                if op == Opcode::Copy {
                    if let Some((i, addr)) =
                        crate::overlap::first_overlap(&src.segments, &dst.segments, &mut lists.intervals)
                    {
                        return Err(Failure {
                            status: Status::LIST_OVERLAP,
                            list: FAULT_LIST_DST,
                            segment: seg_index(i),
                            addr,
                        });
                    }
                    self.copy(&src.segments, &dst.segments, done)?;
                    Ok((Status::SUCCESS, *done))
                } else {
                    match self.compare(&src.segments, &dst.segments, done)? {
                        Some(at) => Ok((Status::COMPARE_MISMATCH, at)),
                        None => Ok((Status::SUCCESS, *done)),
                    }
                }
            }
            Opcode::Fill => {
                self.walk_list(cmd.dst, FAULT_LIST_DST, &mut lists.dst)?;
                self.fill(&lists.dst.segments, cmd.pattern, done)?;
                Ok((Status::SUCCESS, *done))
            }
            Opcode::Crc32c => {
                self.walk_list(cmd.src, FAULT_LIST_SRC, &mut lists.src)?;
                let crc = self.crc(&lists.src.segments, done)?;
                Ok((Status::SUCCESS, u64::from(crc)))
            }
        }
    }

    fn walk_list(&self, head: DmaRange, list: u8, out: &mut WalkedList) -> Result<(), Failure> {
        let read = |space, addr, buf: &mut [u8]| {
            let t0 = self.hook.start();
            let hook = self.hook;
            let tag = self.tag;
            let r = self.bus.read_with(space, addr, buf, &mut |a, p, target, bytes| {
                hook.dma(&Txn {
                    tag,
                    segment: NO_SEGMENT,
                    list: ListKind::Descriptor,
                    dir: Dir::Read,
                    space: trace_space(space, p),
                    addr: a,
                    len: p.len() as u64,
                    target,
                    status: 0,
                    data: local_crc(hook, bytes).unwrap_or(Data::None),
                    t0,
                });
            });
            match r {
                Ok(()) => Ok(()),
                Err(AccessError::Fault { status, addr }) => {
                    self.hook.dma(&Txn {
                        tag,
                        segment: NO_SEGMENT,
                        list: ListKind::Descriptor,
                        dir: Dir::Read,
                        space: plain_space(space),
                        addr,
                        len: 0,
                        target: Target::None,
                        status: status as u16,
                        data: Data::None,
                        t0,
                    });
                    Err(ReadFault { status, addr })
                }
                Err(AccessError::Stopped) => Err(ReadFault {
                    status: Status::IOMMU_FAULT,
                    addr,
                }),
            }
        };
        walk_into(head, self.limits, read, out).map_err(|f| Failure {
            status: f.status,
            list,
            segment: f.segment,
            addr: f.addr,
        })
    }

    fn check_abort(&self) -> Result<(), Failure> {
        match (self.abort)() {
            Some(status) => Err(Failure::plain(status)),
            None => Ok(()),
        }
    }

    /// Records a failed transaction in `seg` and builds the failure.
    fn fault(&self, seg: Seg<'_>, dir: Dir, status: Status, addr: u64) -> Failure {
        self.hook.dma(&Txn {
            tag: self.tag,
            segment: seg_index(seg.index),
            list: seg.list,
            dir,
            space: plain_space(seg.range.space()),
            addr,
            len: 0,
            target: Target::None,
            status: status as u16,
            data: Data::None,
            t0: self.hook.start(),
        });
        Failure {
            status,
            list: seg.fault_list(),
            segment: seg_index(seg.index),
            addr,
        }
    }

    /// Records the read of `src` and the write of `dst` (a piece moved), with the CRC of the
    /// bytes moved (computed by the copy itself) for both, and one end time.
    fn record_pair(&self, src: &Access<'_>, dst: &Access<'_>, t0: u64, crc: Option<u32>) {
        if !self.hook.enabled() {
            return;
        }
        let crc = Some(crc.map_or(Data::None, Data::Crc));
        self.hook.dma_pair(&self.txn(src, t0, crc), &self.txn(dst, t0, crc));
    }

    /// Records one access.
    fn record(&self, a: &Access<'_>, t0: u64, data: Option<Data>) {
        self.hook.dma(&self.txn(a, t0, data));
    }

    fn txn(&self, a: &Access<'_>, t0: u64, data: Option<Data>) -> Txn {
        Txn {
            tag: self.tag,
            segment: seg_index(a.seg.index),
            list: a.seg.list,
            dir: a.dir,
            space: trace_space(a.seg.range.space(), &a.piece),
            addr: a.addr,
            len: a.piece.len() as u64,
            target: a.target,
            status: 0,
            data: data.unwrap_or(Data::None),
            t0,
        }
    }

    /// Calls `f` for each step of a two-list transfer (lists of equal total length).
    fn steps<'r>(
        &self,
        src: &'r [DmaRange],
        dst: &'r [DmaRange],
        mut f: impl FnMut(Step<'r>) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let (mut si, mut so, mut di, mut dof, mut off) = (0usize, 0u64, 0usize, 0u64, 0u64);
        while si < src.len() && di < dst.len() {
            self.check_abort()?;
            let (s, d) = (&src[si], &dst[di]);
            let len = (u64::from(s.len) - so).min(u64::from(d.len) - dof).min(STEP);
            f(Step {
                src: Seg::src(si, s),
                src_addr: s.addr + so,
                dst: Seg::dst(di, d),
                dst_addr: d.addr + dof,
                len,
                off,
            })?;
            so += len;
            dof += len;
            off += len;
            if so == u64::from(s.len) {
                si += 1;
                so = 0;
            }
            if dof == u64::from(d.len) {
                di += 1;
                dof = 0;
            }
        }
        Ok(())
    }

    /// Calls `f(segment, addr, len, offset)` for each step over one list of kind `kind`.
    fn steps1<'r>(
        &self,
        kind: ListKind,
        list: &'r [DmaRange],
        mut f: impl FnMut(Seg<'r>, u64, u64, u64) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let mut off = 0u64;
        for (i, r) in list.iter().enumerate() {
            let seg = Seg {
                list: kind,
                index: i,
                range: r,
            };
            let mut so = 0u64;
            while so < u64::from(r.len) {
                self.check_abort()?;
                let len = (u64::from(r.len) - so).min(STEP);
                f(seg, r.addr + so, len, off)?;
                so += len;
                off += len;
            }
        }
        Ok(())
    }

    /// Walks one step's source and destination pieces in lockstep while both sides are
    /// directly addressable, handing each pair to `f(src, dst, offset in step, targets)`;
    /// `dst_dir` is how the destination is accessed (COPY writes it, COMPARE reads it). The walk
    /// stops where a DMA-message piece begins, so a message is never sent while an fd-backed
    /// piece is held in use: the caller finishes the step through a bounce buffer.
    fn zip_raw(&self, step: &Step<'_>, dst_dir: Dir, f: &mut PairFn<'_>) -> Walk {
        let (src, dst) = (step.src.range, step.dst.range);
        let mut fail: Option<Failure> = None;
        let mut bounce: Option<u64> = None;
        let mut src_off = 0u64;
        let r = self.bus.segment_pieces(
            src,
            step.src_addr - src.addr,
            step.len,
            Dir::Read,
            &mut |src_piece, src_target| {
                if src_piece.is_message() {
                    bounce = Some(src_off);
                    return Err(());
                }
                let mut inner = 0usize;
                let r2 = self.bus.segment_pieces(
                    dst,
                    step.dst_addr - dst.addr + src_off,
                    src_piece.len() as u64,
                    dst_dir,
                    &mut |dst_piece, dst_target| {
                        let (Piece::Raw(s), Piece::Raw(d)) = (src_piece.sub(inner, dst_piece.len()), dst_piece) else {
                            bounce = Some(src_off + inner as u64);
                            return Err(());
                        };
                        f(
                            s,
                            d,
                            src_off + inner as u64,
                            (shift(src_target, inner as u64), dst_target),
                        )?;
                        inner += dst_piece.len();
                        Ok(())
                    },
                );
                match r2 {
                    Ok(()) => {}
                    Err(AccessError::Stopped) => return Err(()),
                    Err(AccessError::Fault { status, addr }) => {
                        fail = Some(self.fault(step.dst, dst_dir, status, addr));
                        return Err(());
                    }
                }
                src_off += src_piece.len() as u64;
                Ok(())
            },
        );
        match r {
            Ok(()) => Walk::Done,
            Err(AccessError::Fault { status, addr }) => Walk::Failed(self.fault(step.src, Dir::Read, status, addr)),
            Err(AccessError::Stopped) => match (fail, bounce) {
                (Some(f), _) => Walk::Failed(f),
                (None, Some(from)) => Walk::Bounce(from),
                (None, None) => Walk::Stopped,
            },
        }
    }

    fn copy(&self, src: &[DmaRange], dst: &[DmaRange], done: &mut u64) -> Result<(), Failure> {
        self.steps(src, dst, |step| {
            let walk = self.zip_raw(
                &step,
                Dir::Write,
                &mut |src_piece, dst_piece, at, (src_target, dst_target)| {
                    let t0 = self.hook.start();
                    let crc = if self.hook.wants_crc() {
                        Some(RawPiece::copy_crc32c(src_piece, dst_piece).1)
                    } else {
                        RawPiece::copy(src_piece, dst_piece);
                        None
                    };
                    let read = step
                        .src
                        .access(Dir::Read, Piece::Raw(src_piece), step.src_addr + at, src_target);
                    let write = step
                        .dst
                        .access(Dir::Write, Piece::Raw(dst_piece), step.dst_addr + at, dst_target);
                    self.record_pair(&read, &write, t0, crc);
                    *done += dst_piece.len() as u64;
                    Ok(())
                },
            );
            match walk {
                Walk::Done => Ok(()),
                Walk::Bounce(from) => self.copy_bounced(&step, from, done),
                Walk::Failed(f) => Err(f),
                // The copy callback never stops the walk.
                Walk::Stopped => Err(Failure::plain(Status::IOMMU_FAULT)),
            }
        })
    }

    fn compare(&self, src: &[DmaRange], dst: &[DmaRange], done: &mut u64) -> Result<Option<u64>, Failure> {
        let mut mismatch = None;
        let r = self.steps(src, dst, |step| {
            let walk = self.zip_raw(
                &step,
                Dir::Read,
                &mut |src_piece, dst_piece, at, (src_target, dst_target)| {
                    let t0 = self.hook.start();
                    // With data CRCs, both pieces are read to the end and checksummed from the
                    // copies compared.
                    let (diff, crcs) = RawPiece::compare(src_piece, dst_piece, self.hook.wants_crc());
                    if self.hook.enabled() {
                        let (ca, cb) = crcs.map_or((None, None), |(x, y)| (Some(Data::Crc(x)), Some(Data::Crc(y))));
                        let read_src =
                            step.src
                                .access(Dir::Read, Piece::Raw(src_piece), step.src_addr + at, src_target);
                        let read_dst =
                            step.dst
                                .access(Dir::Read, Piece::Raw(dst_piece), step.dst_addr + at, dst_target);
                        self.record(&read_src, t0, ca);
                        self.record(&read_dst, t0, cb);
                    }
                    if let Some(i) = diff {
                        mismatch = Some(step.off + at + i as u64);
                        return Err(());
                    }
                    *done += dst_piece.len() as u64;
                    Ok(())
                },
            );
            match walk {
                Walk::Done => Ok(()),
                Walk::Bounce(from) => match self.compare_bounced(&step, from, done)? {
                    Some(at) => {
                        mismatch = Some(at);
                        Err(Failure::plain(Status::COMPARE_MISMATCH))
                    }
                    None => Ok(()),
                },
                Walk::Failed(f) => Err(f),
                // A mismatch stopped the walk: end the steps with a marker failure.
                Walk::Stopped => Err(Failure::plain(Status::COMPARE_MISMATCH)),
            }
        });
        match (r, mismatch) {
            (Err(f), Some(at)) if f.status == Status::COMPARE_MISMATCH => Ok(Some(at)),
            (Err(f), _) => Err(f),
            (Ok(()), _) => Ok(None),
        }
    }

    fn fill(&self, dst: &[DmaRange], pattern: u64, done: &mut u64) -> Result<(), Failure> {
        self.steps1(ListKind::Dst, dst, |seg, addr, len, off| {
            let r = seg.range;
            let mut fail = None;
            let mut p_off = 0u64;
            let res = self
                .bus
                .segment_pieces(r, addr - r.addr, len, Dir::Write, &mut |p, tgt| {
                    let t0 = self.hook.start();
                    let phase = ((off + p_off) % 8) as usize;
                    let data = match p {
                        // The CRC of the pattern bytes written, not a read back of guest memory.
                        Piece::Raw(raw) => raw.fill(pattern, phase, self.hook.wants_crc()).map(Data::Crc),
                        Piece::Message { iova, len } => {
                            let pat = pattern.to_le_bytes();
                            let mut sent_crc = 0u32;
                            let mut o = 0;
                            while o < len {
                                if let Some(s) = (self.abort)() {
                                    *done += o as u64;
                                    fail = Some(Failure::plain(s));
                                    return Err(());
                                }
                                let k = (len - o).min(BOUNCE);
                                let buf: Vec<u8> = (0..k).map(|j| pat[(phase + o + j) % 8]).collect();
                                if let Err(m) = self.bus.iova.message_write(iova + o as u64, &buf) {
                                    *done += o as u64;
                                    fail = Some(self.fault(seg, Dir::Write, m.status(), m.addr));
                                    return Err(());
                                }
                                if self.hook.wants_crc() {
                                    sent_crc = crc32c::crc32c_append(sent_crc, &buf);
                                }
                                o += k;
                            }
                            self.hook.wants_crc().then_some(Data::Crc(sent_crc))
                        }
                    };
                    if self.hook.enabled() {
                        let write = seg.access(Dir::Write, p, addr + p_off, tgt);
                        self.record(&write, t0, data);
                    }
                    p_off += p.len() as u64;
                    *done += p.len() as u64;
                    Ok(())
                });
            match res {
                Ok(()) => Ok(()),
                Err(AccessError::Stopped) => Err(fail.unwrap_or(Failure::plain(Status::IOMMU_FAULT))),
                Err(AccessError::Fault { status, addr }) => Err(self.fault(seg, Dir::Write, status, addr)),
            }
        })
    }

    fn crc(&self, src: &[DmaRange], done: &mut u64) -> Result<u32, Failure> {
        let mut crc = 0u32;
        self.steps1(ListKind::Src, src, |seg, addr, len, _off| {
            let r = seg.range;
            let mut fail = None;
            let mut p_off = 0u64;
            let res = self
                .bus
                .segment_pieces(r, addr - r.addr, len, Dir::Read, &mut |p, tgt| {
                    let t0 = self.hook.start();
                    let mut data = None;
                    match p {
                        // With data CRCs on, the piece's own CRC goes to the trace and is combined
                        // into the result: the bytes are read once.
                        Piece::Raw(raw) if self.hook.wants_crc() => {
                            let own = raw.crc32c(0);
                            crc = crc32c::crc32c_combine(crc, own, raw.len() as u64);
                            data = Some(Data::Crc(own));
                        }
                        Piece::Raw(raw) => crc = raw.crc32c(crc),
                        // Read in bounce-sized messages: a failed one loses at most 64 KiB of
                        // progress (`result`, ABI §6), and an abort is seen between them.
                        Piece::Message { iova, len } => {
                            let mut buf = vec![0u8; len.min(BOUNCE)];
                            let (mut own, mut o) = (0u32, 0usize);
                            while o < len {
                                if let Some(s) = (self.abort)() {
                                    fail = Some(Failure::plain(s));
                                    return Err(());
                                }
                                let k = (len - o).min(BOUNCE);
                                if let Err(m) = self.bus.iova.message_read(iova + o as u64, &mut buf[..k]) {
                                    fail = Some(self.fault(seg, Dir::Read, m.status(), m.addr));
                                    return Err(());
                                }
                                own = crc32c::crc32c_append(own, &buf[..k]);
                                *done += k as u64;
                                o += k;
                            }
                            crc = crc32c::crc32c_combine(crc, own, len as u64);
                            data = self.hook.wants_crc().then_some(Data::Crc(own));
                        }
                    }
                    if self.hook.enabled() {
                        let read = seg.access(Dir::Read, p, addr + p_off, tgt);
                        self.record(&read, t0, data);
                    }
                    p_off += p.len() as u64;
                    if !p.is_message() {
                        *done += p.len() as u64;
                    }
                    Ok(())
                });
            match res {
                Ok(()) => Ok(()),
                Err(AccessError::Stopped) => Err(fail.unwrap_or(Failure::plain(Status::IOMMU_FAULT))),
                Err(AccessError::Fault { status, addr }) => Err(self.fault(seg, Dir::Read, status, addr)),
            }
        })?;
        Ok(crc)
    }
}

mod bounce;
#[cfg(test)]
mod tests;
