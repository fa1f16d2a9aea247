//! Running one command: submit on a queue, wait for its completion, print the phyr-cmd line.

use std::time::Duration;

use dma_range::{Command, Completion, DmaRange, Opcode};
use phyr_report::{Cmd, CmdStatus, Fault, Op, Span};

use crate::bench::Bench;
use crate::error::Result;
use crate::mapping::BuiltList;
use crate::queue::QueueMode;

/// A command about to run, with what the driver knows about it (for the report line).
pub struct Job<'a> {
    pub ep: usize,
    pub q: u32,
    pub mode: QueueMode,
    pub cmd: Command,
    pub src: Option<&'a BuiltList>,
    pub dst: Option<&'a BuiltList>,
    /// CRC32C of the data the command moves, as the driver expects it.
    pub crc32c: Option<u32>,
    /// List blocks named by hand (raw heads) rather than through `src`/`dst`, for the report.
    pub extra_lists: Vec<(dma_range::AddrSpace, u64, u32)>,
}

impl<'a> Job<'a> {
    /// A command with list heads taken from the built lists.
    pub fn new(ep: usize, opcode: Opcode, src: Option<&'a BuiltList>, dst: Option<&'a BuiltList>) -> Self {
        let cmd = Command::new(
            opcode,
            0,
            src.map_or(DmaRange::default(), |l| l.head),
            dst.map_or(DmaRange::default(), |l| l.head),
        );
        Self {
            ep,
            q: 0,
            mode: QueueMode::Irq,
            cmd,
            src,
            dst,
            crc32c: None,
            extra_lists: Vec::new(),
        }
    }

    pub fn on(mut self, q: u32, mode: QueueMode) -> Self {
        self.q = q;
        self.mode = mode;
        self
    }

    pub fn crc(mut self, crc: u32) -> Self {
        self.crc32c = Some(crc);
        self
    }

    /// Submits the command; returns its id.
    pub fn submit(&self, s: &mut Bench) -> Result<u16> {
        let (e, queue) = s.endpoint_and_queue(self.ep, self.q, self.mode)?;
        queue.submit(e, self.cmd)
    }

    /// Waits for the completion of `cid` (from `submit`) and prints the phyr-cmd line.
    pub fn finish(&self, s: &mut Bench, cid: u16, timeout: Duration) -> Result<Completion> {
        let trace = s.trace_lines;
        let (e, queue) = s.endpoint_and_queue(self.ep, self.q, self.mode)?;
        let dev_ep = e.id.endpoint_id;
        let c = queue.wait(e, cid, timeout)?;
        if trace {
            println!("{}", self.line(dev_ep, &c));
        }
        Ok(c)
    }

    /// Submit and wait.
    pub fn run(&self, s: &mut Bench) -> Result<Completion> {
        let t = s.timeout;
        let cid = self.submit(s)?;
        self.finish(s, cid, t)
    }

    /// The phyr-cmd line (and its phyr-ranges lines, see docs/REPORT.md); `dev_ep` is the
    /// endpoint's ENDPOINT_ID register (the device's numbering, as in its trace file names).
    pub fn line(&self, dev_ep: u32, c: &Completion) -> String {
        let spans = |l: Option<&BuiltList>| l.map_or_else(Vec::new, |l| l.ranges().iter().map(Span::from).collect());
        let blocks = self
            .extra_lists
            .iter()
            .chain([self.src, self.dst].into_iter().flatten().flat_map(|l| &l.blocks));
        let op = Op::from_code(self.cmd.opcode);
        let status = CmdStatus::from_code(c.status);
        let bytes = match op.data_list() {
            Some(dma_range::ListKind::Dst) => self.dst.map_or(0, |l| l.total_len()),
            _ => self.src.map_or(0, |l| l.total_len()),
        };
        Cmd {
            ep: dev_ep,
            q: self.q,
            id: c.command_id,
            op,
            status,
            result: c.result,
            bytes,
            // The expected CRC only describes what a successful command moved.
            crc32c: self.crc32c.filter(|_| !status.is_failure()),
            src: spans(self.src),
            dst: spans(self.dst),
            lists: blocks
                .map(|&(space, addr, len)| Span::new(space, addr, u64::from(len)))
                .collect(),
            fault: Fault::of(c),
        }
        .render()
    }
}
