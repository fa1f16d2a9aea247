//! Human names for the numbers in a record: statuses and opcodes (from the `dma-range` ABI
//! crate, so they track docs/ABI.md), list roles, spaces, directions, targets, event kinds.

use dma_range::{ListKind, Opcode, Status};

use phyr_trace::{Direction, Event, Space, Target};

/// `SUCCESS`, `IOMMU_FAULT`, ... or `0x1234` for a code this build does not know.
pub fn status_name(code: u16) -> String {
    match Status::from_u16(code) {
        Some(s) => s.name().to_owned(),
        None => format!("{code:#06x}"),
    }
}

/// One sentence on what a status means, if known.
pub fn status_description(code: u16) -> Option<&'static str> {
    Status::from_u16(code).map(Status::description)
}

/// Whether a status is a failure. SUCCESS and COMPARE_MISMATCH are normal outcomes;
/// unknown codes count as failures.
pub fn status_is_failure(code: u16) -> bool {
    Status::from_u16(code).is_none_or(Status::is_failure)
}

/// Parses a status name (`iommu_fault`, case-insensitive) into its code.
pub fn status_code(name: &str) -> Option<u16> {
    Status::ALL
        .iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
        .map(|s| *s as u16)
}

pub fn opcode_name(op: u8) -> String {
    match Opcode::from_u8(op) {
        Some(o) => o.name().to_owned(),
        None => format!("op{op:#04x}"),
    }
}

/// The `list` field of a DMA record (a [`ListKind`] code).
pub fn list_name(list: u8) -> &'static str {
    ListKind::from_u8(list).map_or("?", ListKind::name)
}

pub fn space_name(s: Space) -> &'static str {
    match s {
        Space::Iova => "iova",
        Space::Bus => "bus",
        Space::Message => "message",
    }
}

pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Read => "read",
        Direction::Write => "write",
    }
}

/// `mem#0+0x1000`, `ep2.bar2+0x40`, or `-`.
pub fn target_text(t: &Target) -> String {
    match t {
        Target::None => "-".to_owned(),
        Target::GuestMemory { mapping, offset } => format!("mem#{mapping}+{offset:#x}"),
        Target::PeerBar { endpoint, bar, offset } => format!("ep{endpoint}.bar{bar}+{offset:#x}"),
    }
}

/// Event kind in snake_case, as JSON Lines spells it.
pub fn event_kind(e: &Event) -> &'static str {
    match e {
        Event::DmaMap { .. } => "dma_map",
        Event::DmaUnmap { .. } => "dma_unmap",
        Event::Reset => "reset",
        Event::Interrupt { .. } => "interrupt",
        Event::CommandDone { .. } => "command_done",
        Event::Connected => "connected",
        Event::Disconnected => "disconnected",
        Event::Error { .. } => "error",
        Event::Dropped { .. } => "dropped",
        Event::Closed => "closed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_abi() {
        assert_eq!(status_name(0), "SUCCESS");
        assert_eq!(status_name(0x10), "IOMMU_FAULT");
        assert_eq!(status_name(0xbeef), "0xbeef");
        assert_eq!(status_code("iommu_fault"), Some(0x10));
        assert!(!status_is_failure(0) && !status_is_failure(1) && status_is_failure(0x10) && status_is_failure(0xbeef));
        assert_eq!(opcode_name(1), "COPY");
        assert_eq!(opcode_name(0x77), "op0x77");
    }
}
