//! What one client connection holds: its channel, the device, the options, and once VERSION
//! is negotiated the session state; and what a command handler produces.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::channel::Channel;
use crate::device::Device;
use crate::dma::DmaSpace;
use crate::errno::Errno;
use crate::info::DeviceInfo;
use crate::irq::Irqs;
use crate::wire::Capabilities;

use super::options::ServerOptions;

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
}
