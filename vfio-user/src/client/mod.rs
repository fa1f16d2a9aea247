//! `Client`: drives a vfio-user server the way QEMU does, for tests and benchmarks.
//!
//! A background reader thread routes replies to the waiting call and serves the server's
//! DMA_READ / DMA_WRITE from [`LocalMemory`] buffers (fd-less mappings).

mod local;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use local::LocalMaps;
pub use local::LocalMemory;

use crate::channel::{Channel, Message};
use crate::errno::Errno;
use crate::sys::mem::MmapRegion;
use crate::wire::{
    dma_flags, Capabilities, Command, DeviceInfoMsg, DmaMap, DmaRwLayout, DmaUnmap, Header, IrqInfoMsg, RegionAccess,
    RegionInfoMsg, SetIrqs, Version, WireError, WriteMulti, WriteOne, DEVICE_INFO_SIZE, FLAG_NO_REPLY, IRQ_INFO_SIZE,
    MULTI_DATA, REGION_INFO_SIZE,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error("{command} failed: {errno}")]
    Refused { command: &'static str, errno: Errno },
    #[error("malformed reply: {0}")]
    Wire(#[from] WireError),
    #[error("no reply to {command} within {timeout:?}")]
    Timeout { command: &'static str, timeout: Duration },
    #[error("connection closed while waiting for {command}")]
    Disconnected { command: &'static str },
}

impl ClientError {
    /// The errno of a refused request, if that is what this is.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            ClientError::Refused { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Tunables of a client.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    pub caps: Capabilities,
    pub dma_layout: DmaRwLayout,
    pub timeout: Duration,
    /// Send VERSION on connect (tests of pre-VERSION behaviour turn this off).
    pub negotiate: bool,
    /// Send DEVICE_GET_REGION_INFO with the whole `argsz` reply buffer as its payload, as
    /// libvfio-user's client library does, instead of the 32-byte fixed part QEMU sends.
    pub whole_buffer_requests: bool,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            caps: Capabilities::ours(),
            dma_layout: DmaRwLayout::default(),
            timeout: Duration::from_secs(10),
            negotiate: true,
            whole_buffer_requests: false,
        }
    }
}

/// A reply as received, for raw tests.
pub type Reply = Message;

pub struct Client {
    chan: Arc<Channel>,
    local: Arc<LocalMaps>,
    reader: Option<JoinHandle<()>>,
    opts: ClientOptions,
    server_caps: Option<Capabilities>,
}

impl Client {
    /// Connects and negotiates VERSION.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        Client::connect_with(path, ClientOptions::default())
    }

    pub fn connect_with(path: impl AsRef<Path>, opts: ClientOptions) -> Result<Client, ClientError> {
        let sock = UnixStream::connect(path)?;
        let chan = Arc::new(Channel::new(sock));
        let local = Arc::new(LocalMaps::default());
        let reader = {
            let chan = Arc::clone(&chan);
            let local = Arc::clone(&local);
            let layout = opts.dma_layout;
            std::thread::Builder::new()
                .name("vfio-user-client".into())
                .spawn(move || reader_loop(&chan, &local, layout))?
        };
        let mut c = Client {
            chan,
            local,
            reader: Some(reader),
            opts,
            server_caps: None,
        };
        if opts.negotiate {
            let reply = c.call(
                Command::Version,
                &Version {
                    major: 0,
                    minor: 0,
                    caps: opts.caps,
                }
                .encode(),
                &[],
            )?;
            c.server_caps = Some(Version::parse(&reply.payload)?.caps);
        }
        Ok(c)
    }

    /// The capabilities the server replied with.
    pub fn server_caps(&self) -> Option<Capabilities> {
        self.server_caps
    }

    /// Whether the connection is still open (as far as the reader thread knows).
    pub fn is_connected(&self) -> bool {
        !self.chan.is_closed()
    }

    /// Sends a request and waits for its reply; error replies become `Refused`.
    pub fn call(&self, command: Command, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<Reply, ClientError> {
        let reply = self.call_raw(command as u16, 0, payload, fds)?;
        if reply.header.is_error() {
            return Err(ClientError::Refused {
                command: command.name(),
                errno: Errno::new(reply.header.error as i32),
            });
        }
        Ok(reply)
    }

    /// Sends any command number with any flags and waits for the reply (error or not).
    pub fn call_raw(
        &self,
        command: u16,
        flags: u32,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<Reply, ClientError> {
        let name = Command::from_u16(command)
            .map(|c| c.name())
            .unwrap_or("unknown command");
        let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let (id, rx) = self.chan.request(command, flags, payload, &raw)?;
        match rx.recv_timeout(self.opts.timeout) {
            Ok(m) => Ok(m),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                self.chan.forget(id);
                Err(ClientError::Timeout {
                    command: name,
                    timeout: self.opts.timeout,
                })
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(ClientError::Disconnected { command: name }),
        }
    }

    /// Sends a request without waiting (posted writes, or tests that expect no reply).
    pub fn send_raw(&self, header: Header, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
        let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
        Ok(self.chan.send(header, payload, &raw)?)
    }

    /// Sends arbitrary bytes (hostile framing tests).
    pub fn send_bytes(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
        let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
        Ok(self.chan.send_bytes(bytes, &raw)?)
    }

    /// Waits until the server closes the connection (or `timeout` passes); true if closed.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.chan.is_closed() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.chan.is_closed()
    }

    /// DMA_MAP of `[iova, +size)` backed by `fd` at `offset`.
    pub fn dma_map(
        &self,
        iova: u64,
        size: u64,
        fd: BorrowedFd<'_>,
        offset: u64,
        readable: bool,
        writable: bool,
    ) -> Result<(), ClientError> {
        let m = DmaMap {
            flags: dma_flag_bits(readable, writable),
            offset,
            iova,
            size,
        };
        self.call(Command::DmaMap, &m.encode(), &[fd]).map(|_| ())
    }

    /// DMA_MAP without an fd, backed by a new local buffer the client serves DMA messages from.
    pub fn dma_map_local(
        &self,
        iova: u64,
        size: u64,
        readable: bool,
        writable: bool,
    ) -> Result<LocalMemory, ClientError> {
        let mem = LocalMemory::new(iova, size, readable, writable)?;
        // Register first: the server may DMA as soon as it has processed the map.
        self.local.add(mem.clone());
        let m = DmaMap {
            flags: dma_flag_bits(readable, writable),
            offset: 0,
            iova,
            size,
        };
        if let Err(e) = self.call(Command::DmaMap, &m.encode(), &[]) {
            self.local.remove_range(iova, size);
            return Err(e);
        }
        Ok(mem)
    }

    pub fn dma_unmap(&self, iova: u64, size: u64) -> Result<(), ClientError> {
        self.call(Command::DmaUnmap, &DmaUnmap { flags: 0, iova, size }.encode(), &[])?;
        self.local.remove_range(iova, size);
        Ok(())
    }

    pub fn dma_unmap_all(&self) -> Result<(), ClientError> {
        self.call(
            Command::DmaUnmap,
            &DmaUnmap {
                flags: dma_flags::UNMAP_ALL,
                iova: 0,
                size: 0,
            }
            .encode(),
            &[],
        )?;
        self.local.clear();
        Ok(())
    }

    pub fn device_info(&self) -> Result<DeviceInfoMsg, ClientError> {
        let req = DeviceInfoMsg {
            argsz: DEVICE_INFO_SIZE as u32,
            flags: 0,
            num_regions: 0,
            num_irqs: 0,
        };
        let r = self.call(Command::DeviceGetInfo, &req.encode(), &[])?;
        Ok(DeviceInfoMsg::parse(&r.payload)?)
    }

    /// REGION_INFO, asking again with a bigger buffer when the capabilities did not fit.
    /// Returns the fd if the server sent one.
    pub fn region_info(&self, index: u32) -> Result<(RegionInfoMsg, Option<OwnedFd>), ClientError> {
        let mut argsz = REGION_INFO_SIZE as u32;
        for _ in 0..2 {
            let (info, mut fds) = self.region_info_query(index, argsz)?;
            if info.argsz > argsz {
                argsz = info.argsz;
                continue;
            }
            return Ok((info, fds.pop()));
        }
        Err(ClientError::Wire(WireError::Invalid {
            command: "DEVICE_GET_REGION_INFO reply",
            what: "argsz keeps growing",
        }))
    }

    /// One DEVICE_GET_REGION_INFO with a reply buffer of `argsz` bytes, shaped as
    /// `ClientOptions::whole_buffer_requests` says: the reply and every fd that came with it.
    pub fn region_info_query(&self, index: u32, argsz: u32) -> Result<(RegionInfoMsg, Vec<OwnedFd>), ClientError> {
        let len = if self.opts.whole_buffer_requests {
            (argsz as usize).max(REGION_INFO_SIZE)
        } else {
            REGION_INFO_SIZE
        };
        let mut req = vec![0u8; len];
        req[0..4].copy_from_slice(&argsz.to_le_bytes());
        req[8..12].copy_from_slice(&index.to_le_bytes());
        let r = self.call(Command::DeviceGetRegionInfo, &req, &[])?;
        let info = RegionInfoMsg::parse_reply(&r.payload)?;
        Ok((info, r.fds))
    }

    /// mmaps `size` bytes of a region fd from region offset `offset` (use the reply's
    /// `offset` field as the region's file offset).
    pub fn mmap_region(
        fd: BorrowedFd<'_>,
        info: &RegionInfoMsg,
        offset: u64,
        size: u64,
        writable: bool,
    ) -> io::Result<MmapRegion> {
        let file_off = info
            .offset
            .checked_add(offset)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflows"))?;
        MmapRegion::map(fd, file_off, size, true, writable)
    }

    pub fn irq_info(&self, index: u32) -> Result<IrqInfoMsg, ClientError> {
        let req = IrqInfoMsg {
            argsz: IRQ_INFO_SIZE as u32,
            flags: 0,
            index,
            count: 0,
        };
        let r = self.call(Command::DeviceGetIrqInfo, &req.encode(), &[])?;
        Ok(IrqInfoMsg::parse(&r.payload)?)
    }

    /// SET_IRQS with DATA_NONE or DATA_BOOL (`bools` non-empty) for any action.
    pub fn set_irqs(&self, flags: u32, index: u32, start: u32, count: u32, bools: &[bool]) -> Result<(), ClientError> {
        self.call(
            Command::DeviceSetIrqs,
            &SetIrqs::encode(flags, index, start, count, bools),
            &[],
        )
        .map(|_| ())
    }

    /// Installs eventfds for vectors `start..start + fds.len()` (no fds: de-assigns `count`).
    pub fn set_irq_eventfds(&self, index: u32, start: u32, fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
        use vfio_bindings::bindings::vfio as v;
        let flags = v::VFIO_IRQ_SET_DATA_EVENTFD | v::VFIO_IRQ_SET_ACTION_TRIGGER;
        self.call(
            Command::DeviceSetIrqs,
            &SetIrqs::encode(flags, index, start, fds.len() as u32, &[]),
            fds,
        )
        .map(|_| ())
    }

    /// De-assigns the eventfds of vectors `start..start + count` (EVENTFD set without fds).
    pub fn set_irq_eventfds_deassign(&self, index: u32, start: u32, count: u32) -> Result<(), ClientError> {
        use vfio_bindings::bindings::vfio as v;
        let flags = v::VFIO_IRQ_SET_DATA_EVENTFD | v::VFIO_IRQ_SET_ACTION_TRIGGER;
        self.call(
            Command::DeviceSetIrqs,
            &SetIrqs::encode(flags, index, start, count, &[]),
            &[],
        )
        .map(|_| ())
    }

    /// Stops serving DMA messages for local buffers inside `[iova, +size)` without telling
    /// the server (tests of a client that answers EFAULT).
    pub fn forget_local(&self, iova: u64, size: u64) {
        self.local.remove_range(iova, size);
    }

    pub fn region_read(&self, index: u32, offset: u64, count: u32) -> Result<Vec<u8>, ClientError> {
        let r = self.call(
            Command::RegionRead,
            &RegionAccess::encode(offset, index, count, &[]),
            &[],
        )?;
        Ok(RegionAccess::parse_read_reply(&r.payload, count)?.data)
    }

    pub fn region_write(&self, index: u32, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        let count = data.len() as u32;
        self.call(
            Command::RegionWrite,
            &RegionAccess::encode(offset, index, count, data),
            &[],
        )
        .map(|_| ())
    }

    /// A posted REGION_WRITE (NO_REPLY): returns once sent.
    pub fn region_write_posted(&self, index: u32, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        let h = Header {
            command: Command::RegionWrite as u16,
            flags: FLAG_NO_REPLY,
            ..Header::default()
        };
        self.send_raw(h, &RegionAccess::encode(offset, index, data.len() as u32, data), &[])
    }

    /// REGION_WRITE_MULTI of `(region, offset, data <= 8 bytes)` writes; posted or not.
    pub fn write_multi(&self, writes: &[(u32, u64, &[u8])], posted: bool) -> Result<(), ClientError> {
        let mut m = WriteMulti {
            writes: Vec::with_capacity(writes.len()),
        };
        for &(region, offset, data) in writes {
            let mut d = [0u8; MULTI_DATA];
            let n = data.len().min(MULTI_DATA);
            d[..n].copy_from_slice(&data[..n]);
            m.writes.push(WriteOne {
                offset,
                region,
                count: n as u32,
                data: d,
            });
        }
        if posted {
            let h = Header {
                command: Command::RegionWriteMulti as u16,
                flags: FLAG_NO_REPLY,
                ..Header::default()
            };
            return self.send_raw(h, &m.encode(), &[]);
        }
        self.call(Command::RegionWriteMulti, &m.encode(), &[]).map(|_| ())
    }

    pub fn reset(&self) -> Result<(), ClientError> {
        self.call(Command::DeviceReset, &[], &[]).map(|_| ())
    }

    /// Closes the connection.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.chan.shutdown();
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn dma_flag_bits(readable: bool, writable: bool) -> u32 {
    let mut f = 0;
    if readable {
        f |= dma_flags::READ;
    }
    if writable {
        f |= dma_flags::WRITE;
    }
    f
}

fn reader_loop(chan: &Channel, local: &LocalMaps, layout: DmaRwLayout) {
    loop {
        let msg = match chan.read_message() {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("client reader: {e}");
                break;
            }
        };
        if msg.header.is_reply() {
            if !chan.route_reply(msg) {
                tracing::warn!("client: reply nobody asked for");
            }
            continue;
        }
        let res = match Command::from_u16(msg.header.command) {
            Some(Command::DmaRead | Command::DmaWrite) => local.serve(chan, &msg, layout),
            _ => chan.reply_error(&msg.header, Errno::ENOTSUP),
        };
        if res.is_err() {
            break;
        }
    }
    chan.shutdown();
}
