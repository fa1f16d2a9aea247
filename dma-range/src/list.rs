//! dma_range lists: walking (validating) a list the way the device does, and building
//! one the way a driver does.
//!
//! A list is one or more *blocks* of 16-byte entries. A command names the first block with a
//! list head `{addr, len = block bytes, flags}`; a CHAIN entry, which must be the last entry
//! of its block, names the next block the same way. Data entries carry the segments.
//! The walk validates the whole list before any data moves: bad flags, zero lengths,
//! `addr + len` overflows, block sizes, a bound on entries, a bound on chain links and a
//! check against cycles (a block address visited twice).

use crate::completion::Status;
use crate::entry::{AddrSpace, DmaRange, ENTRY_SIZE, RANGE_FLAGS_KNOWN};

/// Largest length one entry may carry (4 GiB - 1).
pub const MAX_SEGMENT_LEN: u32 = u32::MAX;

/// Limits a walk enforces (the device exposes them as MAX_LIST_ENTRIES and MAX_CHAIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLimits {
    pub max_entries: u32,
    pub max_chain: u32,
}

impl Default for ListLimits {
    fn default() -> Self {
        Self {
            max_entries: crate::regs::DEFAULT_MAX_LIST_ENTRIES,
            max_chain: crate::regs::DEFAULT_MAX_CHAIN,
        }
    }
}

/// Why a list was rejected: the status, the index of the data entry concerned (counting
/// across chained blocks from 0) and the address concerned (the entry's `addr`, or the
/// address whose read failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{status} at segment {segment}, address {addr:#x}")]
pub struct ListFault {
    pub status: Status,
    pub segment: u32,
    pub addr: u64,
}

/// A failure to read a list block: the status to report and the faulting address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFault {
    pub status: Status,
    pub addr: u64,
}

/// A validated list: its data segments in order and their total length.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WalkedList {
    pub segments: Vec<DmaRange>,
    pub total_len: u64,
    /// The blocks read, in order (space, address, bytes), for tracing.
    pub blocks: Vec<(AddrSpace, u64, u32)>,
}

fn check_block(entry: &DmaRange, limits: &ListLimits, segment: u32) -> Result<(), ListFault> {
    let fault = |status| ListFault {
        status,
        segment,
        addr: entry.addr,
    };
    if entry.flags & !RANGE_FLAGS_KNOWN != 0 {
        return Err(fault(Status::LIST_BAD_FLAGS));
    }
    let max_bytes = u64::from(limits.max_entries) * ENTRY_SIZE as u64 + ENTRY_SIZE as u64;
    if entry.len == 0 || entry.len as usize & (ENTRY_SIZE - 1) != 0 || u64::from(entry.len) > max_bytes {
        return Err(fault(Status::LIST_BAD_BLOCK));
    }
    if entry.end().is_none() {
        return Err(fault(Status::LIST_ADDR_OVERFLOW));
    }
    Ok(())
}

/// Blocks up to this size are read into a stack buffer by [`walk_into`] (longer ones allocate).
const SMALL_BLOCK: usize = 16 * ENTRY_SIZE;

/// Walks and validates the list whose first block `head` names. `read` fetches a block's
/// bytes from the given address space (the device's DMA path); its failures are reported
/// with the index of the entry being read.
pub fn walk(
    head: DmaRange,
    limits: ListLimits,
    read: impl FnMut(AddrSpace, u64, &mut [u8]) -> Result<(), ReadFault>,
) -> Result<WalkedList, ListFault> {
    let mut out = WalkedList::default();
    walk_into(head, limits, read, &mut out)?;
    Ok(out)
}

/// [`walk`] into `out`, reusing its vectors (a device walks two lists per command; keeping
/// their capacity saves the allocations). `out` is cleared first; after an error it holds the
/// part walked so far.
pub fn walk_into(
    head: DmaRange,
    limits: ListLimits,
    mut read: impl FnMut(AddrSpace, u64, &mut [u8]) -> Result<(), ReadFault>,
    out: &mut WalkedList,
) -> Result<(), ListFault> {
    out.segments.clear();
    out.blocks.clear();
    out.total_len = 0;
    let mut chains = 0u32;
    let mut block = head;
    check_block(&block, &limits, 0)?;
    // Short blocks (the common case: a few entries) are read into the stack, longer ones into
    // one heap buffer: no allocation per walk for small commands.
    let mut small = [0u8; SMALL_BLOCK];
    let mut large = Vec::new();
    loop {
        let seg_now = out.segments.len() as u32;
        // The blocks read so far (at most MAX_CHAIN + 1, so a scan beats hashing).
        if out
            .blocks
            .iter()
            .any(|&(space, addr, _)| (space, addr) == (block.space(), block.addr))
        {
            return Err(ListFault {
                status: Status::LIST_CHAIN_CYCLE,
                segment: seg_now,
                addr: block.addr,
            });
        }
        let buf: &mut [u8] = match small.get_mut(..block.len as usize) {
            Some(b) => b,
            None => {
                large.resize(block.len as usize, 0);
                &mut large
            }
        };
        read(block.space(), block.addr, buf).map_err(|f| ListFault {
            status: f.status,
            segment: seg_now,
            addr: f.addr,
        })?;
        out.blocks.push((block.space(), block.addr, block.len));
        out.segments.reserve(buf.len() / ENTRY_SIZE);
        let n = buf.len() / ENTRY_SIZE;
        let mut next = None;
        for (i, raw) in buf.chunks_exact(ENTRY_SIZE).enumerate() {
            let mut b = [0u8; ENTRY_SIZE];
            b.copy_from_slice(raw);
            let e = DmaRange::from_bytes(&b);
            let segment = out.segments.len() as u32;
            let fault = |status| ListFault {
                status,
                segment,
                addr: e.addr,
            };
            if e.flags & !RANGE_FLAGS_KNOWN != 0 {
                return Err(fault(Status::LIST_BAD_FLAGS));
            }
            if e.is_chain() {
                if i + 1 != n {
                    return Err(fault(Status::LIST_CHAIN_NOT_LAST));
                }
                chains += 1;
                if chains > limits.max_chain {
                    return Err(fault(Status::LIST_CHAIN_TOO_LONG));
                }
                check_block(&e, &limits, segment)?;
                next = Some(e);
                break;
            }
            if e.len == 0 {
                return Err(fault(Status::LIST_ZERO_LENGTH));
            }
            if e.end().is_none() {
                return Err(fault(Status::LIST_ADDR_OVERFLOW));
            }
            if segment >= limits.max_entries {
                return Err(fault(Status::LIST_TOO_MANY_ENTRIES));
            }
            out.total_len += u64::from(e.len);
            out.segments.push(e);
        }
        match next {
            Some(e) => block = e,
            None => return Ok(()),
        }
    }
}

/// Splits `[addr, addr + len)` into entries of at most `max_len` bytes (`max_len` > 0).
pub fn split_range(space: AddrSpace, addr: u64, len: u64, max_len: u32) -> impl Iterator<Item = DmaRange> {
    let max_len = u64::from(max_len.max(1));
    let mut done = 0u64;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let this = (len - done).min(max_len);
        let r = DmaRange::segment(space, addr.wrapping_add(done), this as u32);
        done += this;
        Some(r)
    })
}

/// How many blocks a list of `segments` data entries takes when each block holds at most
/// `block_entries` entries (>= 2; one slot of every block but the last holds the CHAIN).
pub fn blocks_needed(segments: usize, block_entries: usize) -> usize {
    let per = block_entries.max(2);
    if segments <= per {
        return 1;
    }
    // Every block but the last carries per-1 data entries.
    1 + (segments - per).div_ceil(per - 1)
}

/// Encodes `segments` into chained blocks of at most `block_entries` entries; `place(i)`
/// says where block `i` will live (block 0 is the list head's target). Returns each block's
/// bytes and the list head to put in the command.
pub fn encode_chained(
    segments: &[DmaRange],
    block_entries: usize,
    place: impl Fn(usize) -> (AddrSpace, u64),
) -> (DmaRange, Vec<Vec<u8>>) {
    let per = block_entries.max(2);
    let nblocks = blocks_needed(segments.len(), per);
    let mut blocks = Vec::with_capacity(nblocks);
    let mut rest = segments;
    for i in 0..nblocks {
        let last = i + 1 == nblocks;
        let take = if last { rest.len() } else { per - 1 };
        let (now, later) = rest.split_at(take);
        rest = later;
        let mut bytes = Vec::with_capacity((take + 1) * ENTRY_SIZE);
        for s in now {
            bytes.extend_from_slice(&s.to_bytes());
        }
        if !last {
            let (space, addr) = place(i + 1);
            let next_entries = if i + 2 == nblocks { rest.len() } else { per };
            let chain = DmaRange::chain(space, addr, (next_entries * ENTRY_SIZE) as u32);
            bytes.extend_from_slice(&chain.to_bytes());
        }
        blocks.push(bytes);
    }
    let (space, addr) = place(0);
    (DmaRange::segment(space, addr, blocks[0].len() as u32), blocks)
}

#[cfg(test)]
mod tests;
