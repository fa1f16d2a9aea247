//! One client connection's read-validate-dispatch loop (its state: `state.rs`; one handler
//! per command: `handlers.rs`).

use crate::channel::Message;
use crate::errno::Errno;
use crate::wire::TYPE_COMMAND;

use super::handlers;
use super::state::{Connection, Outcome};

impl Connection {
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
