//! Plain in-process "guest memory" for the engine's unit tests (the host-side tests in
//! tests/ use the real vfio-user client instead): mappings backed by memfds, each read-only or
//! read-write, optionally reachable only "by message".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use phyr_trace::Target;

use crate::mem::{Dir, IovaMemory, MemFault, MemFaultKind, Piece, PieceFn};
use crate::peer_mem::PeerMem;

pub struct TestMap {
    pub iova: u64,
    pub mem: PeerMem,
    pub writable: bool,
    pub message: bool,
}

/// A watched range `(iova, len)` and the copies of it taken so far.
pub type Watch = (u64, usize, Vec<Vec<u8>>);

#[derive(Default)]
pub struct TestMem {
    pub maps: Vec<TestMap>,
    pub refuse_messages: AtomicBool,
    /// While true, DMA messages block (a stand-in for a slow VMM); `entered` tells a message waits.
    pub hold: Mutex<bool>,
    pub released: Condvar,
    pub entered: AtomicBool,
    /// Report held messages through `messages_in_flight` (as the real session does).
    pub report_in_flight: AtomicBool,
    pub waiting: AtomicBool,
    /// Every DMA_WRITE message in order (iova, bytes): the device's write order, observable.
    pub message_log: Mutex<Vec<(u64, Vec<u8>)>>,
    /// A watched range `(iova, len)` and the copies of it taken each time the device asks for
    /// write access into it (before the pieces are handed out): what memory held between the
    /// device's write passes.
    pub watch: Mutex<Option<Watch>>,
}

impl TestMem {
    fn wait_hold(&self) {
        let mut h = self.hold.lock().unwrap();
        while *h {
            self.entered.store(true, Ordering::SeqCst);
            self.waiting.store(true, Ordering::SeqCst);
            h = self.released.wait(h).unwrap();
        }
        self.waiting.store(false, Ordering::SeqCst);
    }

    pub fn set_hold(&self, on: bool) {
        *self.hold.lock().unwrap() = on;
        self.released.notify_all();
    }

    pub fn map(&mut self, iova: u64, size: u64, writable: bool, message: bool) {
        self.maps.push(TestMap {
            iova,
            mem: PeerMem::new("testmem", size).unwrap(),
            writable,
            message,
        });
    }

    fn find(&self, addr: u64) -> Option<(usize, &TestMap)> {
        self.maps
            .iter()
            .enumerate()
            .find(|(_, m)| addr >= m.iova && addr - m.iova < m.mem.size())
    }

    /// Writes `data` at `addr`, across adjacent mappings if need be.
    pub fn put(&self, addr: u64, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let at = addr + done as u64;
            let (_, m) = self.find(at).unwrap();
            let n = (data.len() - done).min((m.mem.size() - (at - m.iova)) as usize);
            assert!(m.mem.write(at - m.iova, &data[done..done + n]));
            done += n;
        }
    }

    /// Reads `len` bytes at `addr`, across adjacent mappings if need be.
    pub fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        let mut done = 0;
        while done < len {
            let at = addr + done as u64;
            let (_, m) = self.find(at).unwrap();
            let n = (len - done).min((m.mem.size() - (at - m.iova)) as usize);
            assert!(m.mem.read(at - m.iova, &mut b[done..done + n]));
            done += n;
        }
        b
    }
}

impl IovaMemory for TestMem {
    fn access(&self, iova: u64, len: u64, dir: Dir, f: &mut PieceFn<'_>) -> Result<(), MemFault> {
        let end = iova
            .checked_add(len)
            .ok_or(MemFault::new(MemFaultKind::NotMapped, iova))?;
        if dir == Dir::Write {
            let mut w = self.watch.lock().unwrap();
            if let Some((base, len, snaps)) = w.as_mut() {
                if iova < *base + *len as u64 && end > *base {
                    snaps.push(self.get(*base, *len));
                }
            }
        }
        let mut at = iova;
        while at < end {
            let (i, m) = self.find(at).ok_or(MemFault::new(MemFaultKind::NotMapped, at))?;
            if dir == Dir::Write && !m.writable {
                return Err(MemFault::new(MemFaultKind::Permission, at));
            }
            let off = at - m.iova;
            let n = (end - at).min(m.mem.size() - off);
            let piece = if m.message {
                Piece::Message {
                    iova: at,
                    len: n as usize,
                }
            } else {
                Piece::Raw(m.mem.piece(off, n).unwrap())
            };
            f(
                piece,
                Target::GuestMemory {
                    mapping: i as u32,
                    offset: off,
                },
            )
            .map_err(|()| MemFault::new(MemFaultKind::Stopped, at))?;
            at += n;
        }
        Ok(())
    }

    fn message_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), MemFault> {
        self.wait_hold();
        if self.refuse_messages.load(Ordering::Relaxed) {
            return Err(MemFault::new(MemFaultKind::Message, iova));
        }
        let (_, m) = self.find(iova).ok_or(MemFault::new(MemFaultKind::NotMapped, iova))?;
        if m.mem.read(iova - m.iova, buf) {
            Ok(())
        } else {
            Err(MemFault::new(MemFaultKind::NotMapped, iova))
        }
    }

    fn messages_in_flight(&self) -> bool {
        self.report_in_flight.load(Ordering::SeqCst) && self.waiting.load(Ordering::SeqCst)
    }

    fn message_write(&self, iova: u64, data: &[u8]) -> Result<(), MemFault> {
        if self.refuse_messages.load(Ordering::Relaxed) {
            return Err(MemFault::new(MemFaultKind::Message, iova));
        }
        self.message_log.lock().unwrap().push((iova, data.to_vec()));
        let (_, m) = self.find(iova).ok_or(MemFault::new(MemFaultKind::NotMapped, iova))?;
        if m.mem.write(iova - m.iova, data) {
            Ok(())
        } else {
            Err(MemFault::new(MemFaultKind::NotMapped, iova))
        }
    }
}
