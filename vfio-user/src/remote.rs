//! Server-to-client DMA messages (DMA_READ / DMA_WRITE) for mappings that came without an fd.
//!
//! [`RemoteDma`] is what a [`crate::DmaSpace`] calls: `send_*` puts the request on the wire
//! and returns at once with a [`RemoteOp`]; the space lets an unmap proceed and only then
//! waits for the reply, which the connection's reader thread routes here by message id.

use std::sync::Weak;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::channel::{Channel, Message};
use crate::dma_error::DmaError;
use crate::errno::Errno;
use crate::sys::mem::{MemSlice, NotWritable};
use crate::wire::{Command, DmaRwLayout, DmaRwReply, DmaRwRequest};

/// Sends DMA messages to the client of a session.
pub(crate) trait RemoteDma: Send + Sync {
    /// Largest count of one message.
    fn max_xfer(&self) -> u32;
    fn send_read(&self, addr: u64, count: u32, timeout: Duration) -> Result<RemoteOp, DmaError>;
    fn send_write(&self, addr: u64, data: &[u8], timeout: Duration) -> Result<RemoteOp, DmaError>;
}

/// A DMA message on the wire, waiting for its reply.
pub(crate) struct RemoteOp {
    pub(crate) rx: Receiver<Message>,
    pub(crate) addr: u64,
    pub(crate) count: u32,
    pub(crate) layout: DmaRwLayout,
    pub(crate) timeout: Duration,
    /// Called with the message id when the wait times out (to drop the waiter).
    pub(crate) on_timeout: Option<(Weak<Channel>, u16)>,
}

impl RemoteOp {
    fn wait(&self) -> Result<Message, DmaError> {
        let addr = self.addr;
        let msg = match self.rx.recv_timeout(self.timeout) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                if let Some((chan, id)) = &self.on_timeout {
                    if let Some(c) = chan.upgrade() {
                        c.forget(*id);
                    }
                }
                return Err(DmaError::Timeout {
                    addr,
                    timeout: self.timeout,
                });
            }
            Err(RecvTimeoutError::Disconnected) => return Err(DmaError::Disconnected { addr }),
        };
        if msg.header.is_error() {
            return Err(DmaError::Remote {
                addr,
                errno: Errno::new(msg.header.error as i32),
            });
        }
        Ok(msg)
    }

    /// Waits for a DMA_READ reply and copies its data into `dst` (`count` bytes).
    pub(crate) fn wait_read(self, dst: &MemSlice<'_>) -> Result<(), DmaError> {
        let msg = self.wait()?;
        match DmaRwReply::read_data(&msg.payload, self.count, self.layout) {
            Ok(d) => {
                dst.copy_from(d)
                    .map_err(|NotWritable| DmaError::ReadOnly { addr: self.addr })?;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(addr = self.addr, "malformed DMA_READ reply: {e}");
                Err(DmaError::Remote {
                    addr: self.addr,
                    errno: Errno::EPROTO,
                })
            }
        }
    }

    /// Waits for a DMA_WRITE reply.
    pub(crate) fn wait_write(self) -> Result<(), DmaError> {
        self.wait().map(|_| ())
    }
}

/// `RemoteDma` over a server connection.
pub(crate) struct ChannelDma {
    pub(crate) chan: Weak<Channel>,
    pub(crate) layout: DmaRwLayout,
    pub(crate) max_xfer: u32,
}

impl ChannelDma {
    fn send(
        &self,
        command: Command,
        addr: u64,
        count: u32,
        parts: &[&[u8]],
        timeout: Duration,
    ) -> Result<RemoteOp, DmaError> {
        let chan = self.chan.upgrade().ok_or(DmaError::Disconnected { addr })?;
        let (id, rx) = chan
            .request_parts(command as u16, 0, parts, &[])
            .map_err(|_| DmaError::Disconnected { addr })?;
        Ok(RemoteOp {
            rx,
            addr,
            count,
            layout: self.layout,
            timeout,
            on_timeout: Some((self.chan.clone(), id)),
        })
    }
}

impl RemoteDma for ChannelDma {
    fn max_xfer(&self) -> u32 {
        self.max_xfer
    }

    fn send_read(&self, addr: u64, count: u32, timeout: Duration) -> Result<RemoteOp, DmaError> {
        let payload = DmaRwRequest::encode(addr, count, &[], self.layout);
        self.send(Command::DmaRead, addr, count, &[&payload], timeout)
    }

    fn send_write(&self, addr: u64, data: &[u8], timeout: Duration) -> Result<RemoteOp, DmaError> {
        let count = data.len() as u32;
        let (head, tail) = DmaRwRequest::encode_parts(addr, count, self.layout);
        self.send(Command::DmaWrite, addr, count, &[&head, data, tail], timeout)
    }
}
