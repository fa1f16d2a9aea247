//! The driver's error type: what failed, on which endpoint/queue/command, with the device
//! state that explains it.

use crate::sysfs::SysfsError;
use crate::vfio::VfioError;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Vfio(#[from] VfioError),
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    #[error("no phyr endpoints (1234:7068) bound to vfio-pci found under {0}/bus/pci/devices")]
    NoEndpoints(String),
    #[error("{bdf}: {why}")]
    Endpoint { bdf: String, why: String },
    #[error("endpoint {ep} ({bdf}): device did not become READY within {ms} ms (CTRL={ctrl:#x} STATUS={status:#x})")]
    NotReady {
        ep: usize,
        bdf: String,
        ms: u64,
        ctrl: u32,
        status: u32,
    },
    #[error("endpoint {ep} queue {q}: enabling failed: Q_STATUS={qstatus:#x}{}", status_note(*qstatus))]
    QueueEnable { ep: usize, q: u32, qstatus: u32 },
    #[error("no completion for command {cid} on endpoint {ep} queue {q} after {ms} ms; STATUS={status:#x} Q_STATUS={qstatus:#x}{} SQ_HEAD={sq_head} CQ_TAIL={cq_tail} (driver: sq_tail={sq_tail} cq_head={cq_head} phase={phase})", status_note(*qstatus))]
    Timeout {
        ep: usize,
        q: u32,
        cid: u16,
        ms: u64,
        status: u32,
        qstatus: u32,
        sq_head: u32,
        cq_tail: u32,
        sq_tail: u32,
        cq_head: u32,
        phase: bool,
    },
    #[error("endpoint {ep} queue {q} stopped with an error while command {cid} was outstanding: Q_STATUS={qstatus:#x}{}", status_note(*qstatus))]
    QueueError { ep: usize, q: u32, cid: u16, qstatus: u32 },
    #[error("endpoint {ep} queue {q}: completion for command {cid} was posted but MSI-X vector {vector} never fired within {ms} ms")]
    NoInterrupt {
        ep: usize,
        q: u32,
        cid: u16,
        vector: u32,
        ms: u64,
    },
    #[error("endpoint {ep} queue {q}: submission queue full ({size} entries outstanding)")]
    QueueFull { ep: usize, q: u32, size: u32 },
    #[error("IOVA space exhausted: cannot place {len:#x} bytes")]
    IovaExhausted { len: u64 },
    #[error("{0}")]
    Usage(String),
}

fn status_note(qstatus: u32) -> String {
    if qstatus & dma_range::regs::QSTATUS_ERROR == 0 {
        return String::new();
    }
    match dma_range::Status::from_u16((qstatus >> 16) as u16) {
        Some(s) => format!(" ({s})"),
        None => format!(" (status code {:#x})", qstatus >> 16),
    }
}

pub type Result<T> = std::result::Result<T, DriverError>;
