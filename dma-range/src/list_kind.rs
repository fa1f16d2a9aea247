//! Which list (or structure) a DMA transaction or a fault belongs to: the `list` field of a
//! device trace record, the `fault_list` of a completion (source or destination only) and the
//! `list=` of the report lines (docs/REPORT.md) all use these codes and names.

/// The role of the bytes a transaction moved: a data segment of the source (`Src`) or
/// destination (`Dst`) list, a list block the device read (`Descriptor`: a head or a chained
/// block), or a queue entry, completion or shadow doorbell (`Queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ListKind {
    Src = 0,
    Dst = 1,
    Descriptor = 2,
    Queue = 3,
}

impl ListKind {
    /// Every kind, in code order.
    pub const ALL: [ListKind; 4] = [Self::Src, Self::Dst, Self::Descriptor, Self::Queue];

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == v)
    }

    /// `src`, `dst`, `list` (a list block) or `queue`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Src => "src",
            Self::Dst => "dst",
            Self::Descriptor => "list",
            Self::Queue => "queue",
        }
    }

    /// The kind [`name`](Self::name) spells `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind a completion's `fault_list` names (`FAULT_LIST_SRC` or `FAULT_LIST_DST`).
    pub fn from_fault_list(fault_list: u8) -> Option<Self> {
        match fault_list {
            crate::FAULT_LIST_SRC => Some(Self::Src),
            crate::FAULT_LIST_DST => Some(Self::Dst),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for k in ListKind::ALL {
            assert_eq!(ListKind::from_u8(k as u8), Some(k));
            assert_eq!(ListKind::from_name(k.name()), Some(k));
        }
        assert_eq!(ListKind::from_u8(4), None);
        assert_eq!(ListKind::from_name("SRC"), None);
        assert_eq!(ListKind::from_fault_list(crate::FAULT_LIST_DST), Some(ListKind::Dst));
        assert_eq!(ListKind::from_fault_list(crate::FAULT_LIST_NONE), None);
    }
}
