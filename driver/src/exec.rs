//! Running one command: submit on a queue, wait for its completion, print the phyr-cmd line.

use std::time::Duration;

use dma_range::{Command, Completion, DmaRange, Opcode, Status};

use crate::error::Result;
use crate::mapping::BuiltList;
use crate::queue::QueueMode;
use crate::report::CmdLine;
use crate::session::Session;

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
    pub fn submit(&self, s: &mut Session) -> Result<u16> {
        let (e, queue) = s.endpoint_and_queue(self.ep, self.q, self.mode)?;
        queue.submit(e, self.cmd)
    }

    /// Waits for the completion of `cid` (from `submit`) and prints the phyr-cmd line.
    pub fn finish(&self, s: &mut Session, cid: u16, timeout: Duration) -> Result<Completion> {
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
    pub fn run(&self, s: &mut Session) -> Result<Completion> {
        let t = s.timeout;
        let cid = self.submit(s)?;
        self.finish(s, cid, t)
    }

    /// The phyr-cmd line; `dev_ep` is the endpoint's ENDPOINT_ID register (the device's
    /// numbering, as in its trace file names).
    pub fn line(&self, dev_ep: u32, c: &Completion) -> String {
        let src = self.src.map(|l| l.ranges()).unwrap_or_default();
        let dst = self.dst.map(|l| l.ranges()).unwrap_or_default();
        let mut lists = self.extra_lists.clone();
        for l in [self.src, self.dst].into_iter().flatten() {
            lists.extend_from_slice(&l.blocks);
        }
        let bytes = match Opcode::from_u8(self.cmd.opcode) {
            Some(Opcode::Copy | Opcode::Fill) => self.dst.map_or(0, |l| l.total_len()),
            _ => self.src.map_or(0, |l| l.total_len()),
        };
        CmdLine {
            ep: dev_ep as usize,
            q: self.q,
            opcode: self.cmd.opcode,
            completion: c,
            bytes,
            // The expected CRC only describes what a successful command moved.
            crc32c: self
                .crc32c
                .filter(|_| Status::from_u16(c.status).is_some_and(|st| !st.is_failure())),
            src: &src,
            dst: &dst,
            lists: &lists,
        }
        .render()
    }
}
