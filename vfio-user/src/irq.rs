//! `Irqs`: the interrupt eventfds a client installed with SET_IRQS, with mask and pending bits.
//!
//! The server owns the table and applies SET_IRQS (validated against each index's count);
//! the device only calls [`Irqs::trigger`]. A trigger on a masked vector sets its pending bit
//! and fires when the vector is unmasked.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use crate::errno::Errno;
use crate::info::IrqInfo;
use crate::sys::fd::{eventfd_signal, prepare_irq_eventfd};
use crate::wire::{IrqAction, IrqData, SetIrqs};

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqOutcome {
    /// The eventfd was signalled.
    Fired,
    /// The vector is masked: the pending bit is set, it fires on unmask.
    Pending,
    /// No eventfd is installed for the vector (the client has not enabled it).
    NoEventfd,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IrqError {
    #[error("IRQ index {index} does not exist")]
    NoSuchIndex { index: u32 },
    #[error("IRQ index {index} has {count} vectors, no vector {vector}")]
    NoSuchVector { index: u32, vector: u32, count: u32 },
    #[error("signalling IRQ {index}/{vector} failed: {errno}")]
    Signal { index: u32, vector: u32, errno: Errno },
    #[error("the client is disconnected")]
    Disconnected,
    #[error("the fd for IRQ {index}/{vector} is not a usable eventfd: {errno}")]
    NotAnEventfd { index: u32, vector: u32, errno: Errno },
}

#[derive(Debug, Default)]
struct Vector {
    fd: Option<OwnedFd>,
    masked: bool,
    pending: bool,
}

#[derive(Debug)]
struct Index {
    info: IrqInfo,
    vectors: Vec<Vector>,
}

#[derive(Debug)]
struct State {
    indices: Vec<Index>,
    connected: bool,
}

/// The interrupt table of one client session.
#[derive(Debug)]
pub struct Irqs {
    state: Mutex<State>,
}

/// Vectors per index we are willing to track (PCI MSI-X allows 2048).
const MAX_VECTORS: u32 = 2048;

impl Irqs {
    /// A table for IRQ indices described by `infos` (index = position), nothing installed.
    pub fn new(infos: &[IrqInfo]) -> Irqs {
        let indices = infos
            .iter()
            .map(|&info| Index {
                info,
                vectors: (0..info.count.min(MAX_VECTORS)).map(|_| Vector::default()).collect(),
            })
            .collect();
        Irqs {
            state: Mutex::new(State {
                indices,
                connected: true,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Raises `vector` of IRQ `index`.
    pub fn trigger(&self, index: u32, vector: u32) -> Result<IrqOutcome, IrqError> {
        let mut st = self.lock();
        if !st.connected {
            return Err(IrqError::Disconnected);
        }
        let v = vector_mut(&mut st, index, vector)?;
        if v.masked {
            v.pending = true;
            return Ok(IrqOutcome::Pending);
        }
        fire(v, index, vector)
    }

    /// Whether `vector` of `index` is masked.
    pub fn is_masked(&self, index: u32, vector: u32) -> Result<bool, IrqError> {
        Ok(vector_mut(&mut self.lock(), index, vector)?.masked)
    }

    /// Whether `vector` of `index` has a pending (masked) trigger.
    pub fn is_pending(&self, index: u32, vector: u32) -> Result<bool, IrqError> {
        Ok(vector_mut(&mut self.lock(), index, vector)?.pending)
    }

    /// Whether an eventfd is installed for `vector` of `index`.
    pub fn is_enabled(&self, index: u32, vector: u32) -> Result<bool, IrqError> {
        Ok(vector_mut(&mut self.lock(), index, vector)?.fd.is_some())
    }

    /// Installs (or removes, with `None`) the eventfd of one vector: what SET_IRQS does,
    /// for device tests that run without a socket.
    /// The fd must be an eventfd; it is made non-blocking.
    pub fn set_eventfd(&self, index: u32, vector: u32, fd: Option<OwnedFd>) -> Result<(), IrqError> {
        if let Some(fd) = &fd {
            prepare_irq_eventfd(fd.as_fd()).map_err(|e| IrqError::NotAnEventfd {
                index,
                vector,
                errno: Errno::from_io(&e),
            })?;
        }
        vector_mut(&mut self.lock(), index, vector)?.fd = fd;
        Ok(())
    }

    /// Applies a parsed SET_IRQS with the fds that came with it.
    /// Every fd must be an eventfd (else EINVAL); each is made non-blocking before it is
    /// installed, so a trigger never blocks while holding the table's lock.
    pub(crate) fn apply(&self, req: &SetIrqs, fds: Vec<OwnedFd>) -> Result<(), Errno> {
        for fd in &fds {
            if let Err(e) = prepare_irq_eventfd(fd.as_fd()) {
                tracing::warn!("SET_IRQS refused: {e}; the server needs eventfds it can signal without blocking");
                return Err(Errno::EINVAL);
            }
        }
        let mut st = self.lock();
        let idx = st.indices.get_mut(req.index as usize).ok_or(Errno::EINVAL)?;
        let count = idx.vectors.len() as u32;
        let disable_all =
            req.action == IrqAction::Trigger && req.count == 0 && matches!(req.data, IrqData::None | IrqData::Eventfd);
        if disable_all {
            for v in &mut idx.vectors {
                *v = Vector::default();
            }
            return Ok(());
        }
        let end = req.start.checked_add(req.count).ok_or(Errno::EINVAL)?;
        if end > count {
            return Err(Errno::EINVAL);
        }
        let range = req.start as usize..end as usize;
        match (&req.action, &req.data) {
            (IrqAction::Trigger, IrqData::Eventfd) => {
                if fds.is_empty() {
                    for v in &mut idx.vectors[range] {
                        v.fd = None;
                        v.pending = false;
                    }
                } else {
                    if fds.len() != range.len() {
                        return Err(Errno::EINVAL);
                    }
                    for (v, fd) in idx.vectors[range].iter_mut().zip(fds) {
                        v.fd = Some(fd);
                    }
                }
            }
            (IrqAction::Trigger, data) => {
                for (i, v) in idx.vectors[range.clone()].iter_mut().enumerate() {
                    let on = match data {
                        IrqData::Bool(b) => b.get(i).copied().unwrap_or(false),
                        _ => true,
                    };
                    if on {
                        let vector = range.start as u32 + i as u32;
                        if v.masked {
                            v.pending = true;
                        } else {
                            fire(v, req.index, vector).map_err(|_| Errno::EIO)?;
                        }
                    }
                }
            }
            (IrqAction::Mask | IrqAction::Unmask, IrqData::Eventfd) => return Err(Errno::EINVAL),
            (action, data) => {
                let mask = *action == IrqAction::Mask;
                for (i, v) in idx.vectors[range.clone()].iter_mut().enumerate() {
                    let on = match data {
                        IrqData::Bool(b) => b.get(i).copied().unwrap_or(false),
                        _ => true,
                    };
                    if !on {
                        continue;
                    }
                    v.masked = mask;
                    if !mask && v.pending {
                        v.pending = false;
                        let vector = range.start as u32 + i as u32;
                        fire(v, req.index, vector).map_err(|_| Errno::EIO)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops every eventfd; later triggers fail with `Disconnected`.
    pub(crate) fn disconnect(&self) {
        let mut st = self.lock();
        st.connected = false;
        for idx in &mut st.indices {
            for v in &mut idx.vectors {
                *v = Vector::default();
            }
        }
    }

    /// The info an index was created with.
    pub fn info(&self, index: u32) -> Option<IrqInfo> {
        self.lock().indices.get(index as usize).map(|i| i.info)
    }
}

fn vector_mut(st: &mut State, index: u32, vector: u32) -> Result<&mut Vector, IrqError> {
    let idx = st
        .indices
        .get_mut(index as usize)
        .ok_or(IrqError::NoSuchIndex { index })?;
    let count = idx.vectors.len() as u32;
    idx.vectors
        .get_mut(vector as usize)
        .ok_or(IrqError::NoSuchVector { index, vector, count })
}

fn fire(v: &mut Vector, index: u32, vector: u32) -> Result<IrqOutcome, IrqError> {
    match &v.fd {
        None => Ok(IrqOutcome::NoEventfd),
        Some(fd) => {
            eventfd_signal(fd.as_fd()).map_err(|e| IrqError::Signal {
                index,
                vector,
                errno: Errno::from_io(&e),
            })?;
            Ok(IrqOutcome::Fired)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fd::{eventfd, eventfd_take};
    use vfio_bindings::bindings::vfio as v;

    fn irqs() -> Irqs {
        Irqs::new(&[
            IrqInfo { count: 1, flags: 0 },
            IrqInfo { count: 0, flags: 0 },
            IrqInfo { count: 4, flags: 0 },
        ])
    }

    fn req(flags: u32, index: u32, start: u32, count: u32, bools: &[bool], nfds: usize) -> SetIrqs {
        SetIrqs::parse(&SetIrqs::encode(flags, index, start, count, bools), nfds).unwrap()
    }

    #[test]
    fn masked_trigger_is_pending_and_fires_on_unmask() {
        let irqs = irqs();
        let e = eventfd().unwrap();
        irqs.set_eventfd(2, 1, Some(e.try_clone().unwrap())).unwrap();
        irqs.apply(
            &req(v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_MASK, 2, 1, 1, &[], 0),
            vec![],
        )
        .unwrap();
        assert_eq!(irqs.trigger(2, 1).unwrap(), IrqOutcome::Pending);
        assert_eq!(eventfd_take(e.as_fd()).unwrap(), 0);
        irqs.apply(
            &req(
                v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_UNMASK,
                2,
                1,
                1,
                &[],
                0,
            ),
            vec![],
        )
        .unwrap();
        assert_eq!(eventfd_take(e.as_fd()).unwrap(), 1);
        assert_eq!(irqs.trigger(2, 1).unwrap(), IrqOutcome::Fired);
    }

    #[test]
    fn set_irqs_range_past_count_is_einval() {
        let irqs = irqs();
        let r = req(v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_MASK, 2, 3, 2, &[], 0);
        assert_eq!(irqs.apply(&r, vec![]), Err(Errno::EINVAL));
        let r = req(v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_MASK, 9, 0, 1, &[], 0);
        assert_eq!(irqs.apply(&r, vec![]), Err(Errno::EINVAL));
    }

    #[test]
    fn trigger_out_of_range_is_an_error() {
        assert_eq!(
            irqs().trigger(2, 4),
            Err(IrqError::NoSuchVector {
                index: 2,
                vector: 4,
                count: 4
            })
        );
        assert_eq!(irqs().trigger(7, 0), Err(IrqError::NoSuchIndex { index: 7 }));
    }

    #[test]
    fn disable_all_drops_eventfds() {
        let irqs = irqs();
        irqs.set_eventfd(2, 0, Some(eventfd().unwrap())).unwrap();
        irqs.apply(
            &req(
                v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_TRIGGER,
                2,
                0,
                0,
                &[],
                0,
            ),
            vec![],
        )
        .unwrap();
        assert_eq!(irqs.trigger(2, 0).unwrap(), IrqOutcome::NoEventfd);
    }

    #[test]
    fn after_disconnect_triggers_fail() {
        let irqs = irqs();
        irqs.disconnect();
        assert_eq!(irqs.trigger(0, 0), Err(IrqError::Disconnected));
    }
}
