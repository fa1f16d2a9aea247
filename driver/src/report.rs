//! The machine-readable lines the driver prints (prefixed "# " so they are TAP diagnostics)
//! for the harness to cross-check against the device's DMA traces. One line per fact:
//!
//! ```text
//! # phyr-map kind=host iova=0x100000+0x10000 perm=rw
//! # phyr-map kind=bar ep=1 bar=2 offset=0x0 iova=0x200000+0x200000 perm=rw
//! # phyr-queue ep=0 q=0 mode=irq size=64 vector=0 sq=iova:0x...+0x1000 cq=iova:0x...+0x1000 [shadow=iova:..+..]
//! # phyr-cmd ep=0 q=0 id=17 op=COPY status=SUCCESS result=0x10000 bytes=65536 crc32c=0x1a2b3c4d
//!     src=[iova:0x100000+0x8000,bus:0xfe000000+0x8000] dst=[...] lists=[iova:0x...+0x20] fault=-
//! ```
//! (the phyr-cmd line is one line.) Fields:
//! - `ep`: the endpoint's ENDPOINT_ID register (the device's numbering, as in `trace/epN.phyrtrace`);
//!   `# phyr-endpoint` lines map it to the BDF and the driver's index; `q`: queue; `id`: command id.
//! - `op`: NOP/COPY/FILL/CRC32C/COMPARE (or `0x..` for raw opcodes); `status`: the completion
//!   status name (or `0x..`); `result`: the completion's result.
//! - `bytes`: total length of the data the command was asked to move (src for CRC32C and
//!   COMPARE, dst for COPY/FILL). `crc32c`: CRC32C of those bytes as the driver expects them
//!   (`-` if it does not know, e.g. for failed commands or `phyr submit`).
//! - `src`/`dst`: the data segments in list order as `space:addr+len` (`iova` or `bus`); the
//!   device's per-segment DMA records must fall inside them.
//! - `lists`: every list block the device was told to read (head and chained).
//! - `fault`: `-` or `list=src|dst,seg=N,addr=0x..` from the completion.

use std::fmt::Write;

use dma_range::{AddrSpace, Completion, DmaRange, Opcode, Status, FAULT_LIST_DST, FAULT_LIST_SRC};

pub fn space_name(s: AddrSpace) -> &'static str {
    match s {
        AddrSpace::Iova => "iova",
        AddrSpace::Bus => "bus",
    }
}

pub fn ranges_text(r: &[DmaRange]) -> String {
    let mut s = String::from("[");
    for (i, x) in r.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{}:{:#x}+{:#x}", space_name(x.space()), x.addr, x.len);
    }
    s.push(']');
    s
}

pub fn blocks_text(b: &[(AddrSpace, u64, u32)]) -> String {
    let r: Vec<DmaRange> = b.iter().map(|(s, a, l)| DmaRange::segment(*s, *a, *l)).collect();
    ranges_text(&r)
}

pub fn opcode_name(op: u8) -> String {
    Opcode::from_u8(op).map_or_else(|| format!("{op:#x}"), |o| o.name().to_string())
}

pub fn status_name(code: u16) -> String {
    Status::from_u16(code).map_or_else(|| format!("{code:#x}"), |s| s.name().to_string())
}

pub fn fault_text(c: &Completion) -> String {
    let list = match c.fault_list {
        FAULT_LIST_SRC => "src",
        FAULT_LIST_DST => "dst",
        _ => return "-".into(),
    };
    format!("list={list},seg={},addr={:#x}", c.segment, c.fault_addr)
}

/// Everything a phyr-cmd line says.
pub struct CmdLine<'a> {
    pub ep: usize,
    pub q: u32,
    pub opcode: u8,
    pub completion: &'a Completion,
    pub bytes: u64,
    pub crc32c: Option<u32>,
    pub src: &'a [DmaRange],
    pub dst: &'a [DmaRange],
    pub lists: &'a [(AddrSpace, u64, u32)],
}

impl CmdLine<'_> {
    pub fn render(&self) -> String {
        let c = self.completion;
        let crc = self.crc32c.map_or_else(|| "-".into(), |v| format!("{v:#010x}"));
        format!(
            "# phyr-cmd ep={} q={} id={} op={} status={} result={:#x} bytes={} crc32c={crc} src={} dst={} lists={} fault={}",
            self.ep,
            self.q,
            c.command_id,
            opcode_name(self.opcode),
            status_name(c.status),
            c.result,
            self.bytes,
            ranges_text(self.src),
            ranges_text(self.dst),
            blocks_text(self.lists),
            fault_text(c),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmd_line_is_one_parseable_line() {
        let c = Completion { segment: 2, fault_list: FAULT_LIST_DST, fault_addr: 0x80000, ..Completion::ok(17, Status::IOMMU_FAULT, 0x2000) };
        let src = [DmaRange::segment(AddrSpace::Iova, 0x100000, 0x1000), DmaRange::segment(AddrSpace::Bus, 0xfe000000, 0x10)];
        let line = CmdLine { ep: 0, q: 1, opcode: 1, completion: &c, bytes: 4112, crc32c: None, src: &src, dst: &[], lists: &[(AddrSpace::Iova, 0x5000, 32)] }.render();
        assert_eq!(
            line,
            "# phyr-cmd ep=0 q=1 id=17 op=COPY status=IOMMU_FAULT result=0x2000 bytes=4112 crc32c=- \
             src=[iova:0x100000+0x1000,bus:0xfe000000+0x10] dst=[] lists=[iova:0x5000+0x20] fault=list=dst,seg=2,addr=0x80000"
        );
        assert!(!line.contains('\n'));
    }
}
