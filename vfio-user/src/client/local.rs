//! Client-side memory for fd-less DMA mappings: the client answers the server's DMA_READ /
//! DMA_WRITE from these buffers, as QEMU does from guest RAM that is not shared.

use std::os::fd::AsFd;
use std::sync::{Arc, RwLock};

use crate::channel::{Channel, Message};
use crate::errno::Errno;
use crate::sys::fd::memfd;
use crate::sys::mem::{MemSlice, MmapRegion};
use crate::wire::{Command, DmaRwLayout, DmaRwReply, DmaRwRequest, MAX_DATA_XFER};

/// A buffer the client serves DMA messages from (backed by a private memfd mapping).
#[derive(Debug, Clone)]
pub struct LocalMemory {
    iova: u64,
    mem: Arc<MmapRegion>,
    readable: bool,
    writable: bool,
}

impl LocalMemory {
    pub(crate) fn new(iova: u64, size: u64, readable: bool, writable: bool) -> std::io::Result<LocalMemory> {
        let fd = memfd("vfio-user-client-local", size)?;
        // Our own view is always read-write; the permissions apply to the server's messages.
        let mem = Arc::new(MmapRegion::map(fd.as_fd(), 0, size, true, true)?);
        Ok(LocalMemory {
            iova,
            mem,
            readable,
            writable,
        })
    }

    pub fn iova(&self) -> u64 {
        self.iova
    }

    pub fn len(&self) -> usize {
        self.mem.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// The whole buffer (for the test to fill or inspect).
    pub fn slice(&self) -> MemSlice<'_> {
        self.mem.as_slice()
    }

    /// Copies out `len` bytes at `offset` (from the buffer start).
    pub fn read(&self, offset: usize, len: usize) -> Option<Vec<u8>> {
        let s = self.mem.slice(offset, len)?;
        let mut v = vec![0u8; len];
        s.copy_to(&mut v);
        Some(v)
    }

    /// Copies `data` in at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Option<()> {
        self.mem.slice(offset, data.len())?.copy_from(data).ok().map(|_| ())
    }
}

/// The set of local buffers, shared with the client's reader thread.
#[derive(Default)]
pub(crate) struct LocalMaps {
    maps: RwLock<Vec<LocalMemory>>,
}

impl LocalMaps {
    pub(crate) fn add(&self, m: LocalMemory) {
        self.maps.write().unwrap_or_else(|p| p.into_inner()).push(m);
    }

    pub(crate) fn remove_range(&self, iova: u64, size: u64) {
        let last = iova.saturating_add(size.saturating_sub(1));
        self.maps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|m| !(m.iova >= iova && m.iova.saturating_add(m.len() as u64 - 1) <= last));
    }

    pub(crate) fn clear(&self) {
        self.maps.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn find(&self, addr: u64, len: u64) -> Option<(LocalMemory, usize)> {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        let m = maps.iter().find(|m| addr >= m.iova && addr - m.iova < m.len() as u64)?;
        let off = addr - m.iova;
        let end = off.checked_add(len)?;
        if end > m.len() as u64 {
            return None;
        }
        Some((m.clone(), off as usize))
    }

    /// Serves a DMA_READ / DMA_WRITE request from the server.
    pub(crate) fn serve(&self, chan: &Channel, msg: &Message, layout: DmaRwLayout) -> std::io::Result<()> {
        let write = msg.header.command == Command::DmaWrite as u16;
        let req = match DmaRwRequest::parse(&msg.payload, write, layout, MAX_DATA_XFER) {
            Ok(r) => r,
            Err(e) => return chan.reply_error(&msg.header, e.errno()),
        };
        let Some((m, off)) = self.find(req.addr, req.count as u64) else {
            return chan.reply_error(&msg.header, Errno::EFAULT);
        };
        if write {
            if !m.writable {
                return chan.reply_error(&msg.header, Errno::EPERM);
            }
            m.write(off, &req.data);
            chan.reply(&msg.header, &[], &[])
        } else {
            if !m.readable {
                return chan.reply_error(&msg.header, Errno::EPERM);
            }
            let data = m.read(off, req.count as usize).unwrap_or_default();
            chan.reply(&msg.header, &DmaRwReply::encode_read(req.addr, &data, layout), &[])
        }
    }
}
