//! DEVICE_SET_IRQS: argsz, flags, index, start, count, then per-vector data (BOOL) or fds
//! (EVENTFD, passed with SCM_RIGHTS: `count` fds assign, no fds de-assign).

use super::bytes::{u32_at, PutLe};
use super::WireError;
use vfio_bindings::bindings::vfio as v;

pub const SET_IRQS_SIZE: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqAction {
    Mask,
    Unmask,
    Trigger,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IrqData {
    None,
    Bool(Vec<bool>),
    /// The fds travel beside the message; this only records the data type.
    Eventfd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetIrqs {
    pub flags: u32,
    pub action: IrqAction,
    pub data: IrqData,
    pub index: u32,
    pub start: u32,
    pub count: u32,
}

impl SetIrqs {
    /// Validates the message shape; `nfds` is the number of fds that came with it. Range
    /// checks against the device's IRQ counts happen in the server.
    pub fn parse(p: &[u8], nfds: usize) -> Result<SetIrqs, WireError> {
        let command = "DEVICE_SET_IRQS";
        if p.len() < SET_IRQS_SIZE {
            return Err(WireError::TooShort {
                command,
                min: SET_IRQS_SIZE,
                actual: p.len(),
            });
        }
        let argsz = u32_at(p, 0);
        let flags = u32_at(p, 4);
        let index = u32_at(p, 8);
        let start = u32_at(p, 12);
        let count = u32_at(p, 16);
        if argsz as usize != p.len() {
            return Err(WireError::BadArgsz {
                command,
                argsz,
                min: p.len() as u32,
                max: p.len() as u32,
            });
        }
        if flags & !(v::VFIO_IRQ_SET_DATA_TYPE_MASK | v::VFIO_IRQ_SET_ACTION_TYPE_MASK) != 0 {
            return Err(WireError::BadFlags { command, flags });
        }
        let action = match flags & v::VFIO_IRQ_SET_ACTION_TYPE_MASK {
            v::VFIO_IRQ_SET_ACTION_MASK => IrqAction::Mask,
            v::VFIO_IRQ_SET_ACTION_UNMASK => IrqAction::Unmask,
            v::VFIO_IRQ_SET_ACTION_TRIGGER => IrqAction::Trigger,
            _ => return Err(WireError::BadFlags { command, flags }),
        };
        if start.checked_add(count).is_none() {
            return Err(WireError::Overflow {
                command,
                addr: start as u64,
                size: count as u64,
            });
        }
        let extra = p.len() - SET_IRQS_SIZE;
        let data = match flags & v::VFIO_IRQ_SET_DATA_TYPE_MASK {
            v::VFIO_IRQ_SET_DATA_NONE => {
                if extra != 0 {
                    return Err(WireError::WrongSize {
                        command,
                        expected: SET_IRQS_SIZE,
                        actual: p.len(),
                    });
                }
                IrqData::None
            }
            v::VFIO_IRQ_SET_DATA_BOOL => {
                let expected = SET_IRQS_SIZE + count as usize;
                if p.len() != expected {
                    return Err(WireError::WrongSize {
                        command,
                        expected,
                        actual: p.len(),
                    });
                }
                IrqData::Bool(p[SET_IRQS_SIZE..].iter().map(|&b| b != 0).collect())
            }
            v::VFIO_IRQ_SET_DATA_EVENTFD => {
                if extra != 0 {
                    return Err(WireError::WrongSize {
                        command,
                        expected: SET_IRQS_SIZE,
                        actual: p.len(),
                    });
                }
                if action != IrqAction::Trigger {
                    return Err(WireError::Unsupported {
                        command,
                        what: "eventfds for mask/unmask",
                    });
                }
                if nfds != 0 && nfds != count as usize {
                    return Err(WireError::WrongFdCount {
                        command,
                        got: nfds,
                        expected: count as usize,
                    });
                }
                IrqData::Eventfd
            }
            _ => return Err(WireError::BadFlags { command, flags }),
        };
        if !matches!(data, IrqData::Eventfd) && nfds != 0 {
            return Err(WireError::WrongFdCount {
                command,
                got: nfds,
                expected: 0,
            });
        }
        Ok(SetIrqs {
            flags,
            action,
            data,
            index,
            start,
            count,
        })
    }

    /// Encodes a request; `bools` only for DATA_BOOL.
    pub fn encode(flags: u32, index: u32, start: u32, count: u32, bools: &[bool]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SET_IRQS_SIZE + bools.len());
        out.put_u32((SET_IRQS_SIZE + bools.len()) as u32);
        out.put_u32(flags);
        out.put_u32(index);
        out.put_u32(start);
        out.put_u32(count);
        out.extend(bools.iter().map(|&b| b as u8));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTFD_TRIGGER: u32 = v::VFIO_IRQ_SET_DATA_EVENTFD | v::VFIO_IRQ_SET_ACTION_TRIGGER;

    #[test]
    fn eventfd_trigger_takes_count_or_zero_fds() {
        let p = SetIrqs::encode(EVENTFD_TRIGGER, 2, 0, 3, &[]);
        assert!(SetIrqs::parse(&p, 3).is_ok());
        assert!(SetIrqs::parse(&p, 0).is_ok());
        assert!(matches!(SetIrqs::parse(&p, 2), Err(WireError::WrongFdCount { .. })));
    }

    #[test]
    fn two_actions_at_once_are_rejected() {
        let flags = v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_MASK | v::VFIO_IRQ_SET_ACTION_UNMASK;
        assert!(matches!(
            SetIrqs::parse(&SetIrqs::encode(flags, 0, 0, 1, &[]), 0),
            Err(WireError::BadFlags { .. })
        ));
    }

    #[test]
    fn bool_data_must_match_count() {
        let flags = v::VFIO_IRQ_SET_DATA_BOOL | v::VFIO_IRQ_SET_ACTION_TRIGGER;
        let mut p = SetIrqs::encode(flags, 0, 0, 2, &[true, false]);
        assert_eq!(SetIrqs::parse(&p, 0).unwrap().data, IrqData::Bool(vec![true, false]));
        p[16] = 3; // count lies
        assert!(SetIrqs::parse(&p, 0).is_err());
    }

    #[test]
    fn fds_with_bool_data_are_rejected() {
        let flags = v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_TRIGGER;
        assert!(matches!(
            SetIrqs::parse(&SetIrqs::encode(flags, 0, 0, 1, &[]), 1),
            Err(WireError::WrongFdCount { .. })
        ));
    }

    #[test]
    fn start_plus_count_overflow_is_rejected() {
        let flags = v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_MASK;
        assert!(matches!(
            SetIrqs::parse(&SetIrqs::encode(flags, 0, u32::MAX, 2, &[]), 0),
            Err(WireError::Overflow { .. })
        ));
    }
}
