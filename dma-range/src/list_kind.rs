//! Which list (or structure) a DMA transaction or a fault belongs to: the `list` field of a
//! device trace record, the `fault_list` of a completion (source or destination only) and the
//! `list=` of the report lines (docs/REPORT.md) all use these codes and names.

/// The role of the bytes a transaction moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ListKind {
    /// A data segment of the source list.
    Src = 0,
    /// A data segment of the destination list.
    Dst = 1,
    /// A list block (head or chained block): the device reading descriptors.
    Descriptor = 2,
    /// A queue entry, a completion or a shadow doorbell.
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
