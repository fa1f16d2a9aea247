//! One client connection: the read-validate-dispatch loop and the session state.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::channel::{Channel, Message};
use crate::device::{Device, DeviceInfo};
use crate::dma::DmaSpace;
use crate::errno::Errno;
use crate::irq::Irqs;
use crate::wire::{Capabilities, TYPE_COMMAND};

use super::handlers;
use super::ServerOptions;

/// What a handler produced.
pub(super) enum Outcome {
    Reply { payload: Vec<u8>, fds: Vec<Arc<OwnedFd>> },
    Error(Errno),
}

impl Outcome {
    pub(super) fn empty() -> Outcome {
        Outcome::Reply {
            payload: Vec::new(),
            fds: Vec::new(),
        }
    }

    pub(super) fn payload(payload: Vec<u8>) -> Outcome {
        Outcome::Reply {
            payload,
            fds: Vec::new(),
        }
    }
}

/// State that exists once VERSION has been negotiated.
pub(super) struct Negotiated {
    pub(super) caps: Capabilities,
    pub(super) info: DeviceInfo,
    pub(super) dma: Arc<DmaSpace>,
    pub(super) irqs: Arc<Irqs>,
    /// Size and READ/WRITE flags of every region, read at VERSION: what region accesses are
    /// checked against (no device call per access).
    pub(super) regions: Vec<(u64, u32)>,
}

pub(super) struct Connection {
    pub(super) chan: Arc<Channel>,
    pub(super) device: Arc<dyn Device>,
    pub(super) opts: ServerOptions,
    pub(super) session: Option<Negotiated>,
}

impl Connection {
    pub(super) fn new(chan: Arc<Channel>, device: Arc<dyn Device>, opts: ServerOptions) -> Connection {
        Connection {
            chan,
            device,
            opts,
            session: None,
        }
    }

    /// Serves the connection until it ends; returns why it ended.
    pub(super) fn run(mut self) -> String {
        let reason = loop {
            let msg = match self.chan.read_message() {
                Ok(m) => m,
                Err(e) => break e.to_string(),
            };
            if let Err(e) = self.dispatch(msg) {
                break format!("sending a reply failed: {e}");
            }
        };
        self.chan.shutdown();
        if let Some(s) = self.session.take() {
            s.dma.disconnect();
            s.irqs.disconnect();
            self.device.disconnected();
        }
        reason
    }

    fn dispatch(&mut self, msg: Message) -> std::io::Result<()> {
        let hdr = msg.header;
        if hdr.is_reply() {
            if !self.chan.route_reply(msg) {
                tracing::warn!(
                    msg_id = hdr.msg_id,
                    command = hdr.command,
                    "ignoring a reply nobody asked for"
                );
            }
            return Ok(());
        }
        let outcome = if hdr.msg_type() != TYPE_COMMAND {
            tracing::warn!(flags = hdr.flags, "message of unknown type");
            Outcome::Error(Errno::EINVAL)
        } else {
            handlers::handle(self, msg)
        };
        if hdr.no_reply() {
            if let Outcome::Error(errno) = outcome {
                tracing::warn!(command = hdr.command, "posted request failed: {errno}");
            }
            return Ok(());
        }
        match outcome {
            Outcome::Reply { payload, fds } => {
                use std::os::fd::AsRawFd;
                let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
                self.chan.reply(&hdr, &payload, &raw)
            }
            Outcome::Error(errno) => {
                tracing::debug!(command = hdr.command, "request refused: {errno}");
                self.chan.reply_error(&hdr, errno)
            }
        }
    }
}
