//! Record filters for listing, follow mode and export.
//!
//! Every set criterion must hold. Criteria about DMA fields also select the events that carry
//! the same field and drop the others:
//! - `endpoint`: every record of that endpoint.
//! - `command_id`: DMA records and `CommandDone` events of that command.
//! - `addr`: DMA records whose `[addr, addr + len)` overlaps the range, and DMA_MAP/UNMAP
//!   events whose `[iova, iova + size)` overlaps it.
//! - `space`: DMA records in that space only.
//! - `status`: DMA records and `CommandDone` events by status; `error` also selects `Error`
//!   events. `ok` means SUCCESS or COMPARE_MISMATCH, `error` everything else.

use std::str::FromStr;

use crate::names::{status_code, status_is_failure};
use phyr_trace::{Event, Payload, Record, Space};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("`{text}` is not a number (use decimal or 0x-prefixed hex)")]
    BadNumber { text: String },
    #[error("address range {start:#x}-{end:#x} is empty (end must be above start)")]
    EmptyRange { start: u64, end: u64 },
    #[error("`{text}` is not a space (expected iova, bus or message)")]
    BadSpace { text: String },
    #[error("`{text}` is not a status (expected ok, error, a code, or a name like IOMMU_FAULT)")]
    BadStatus { text: String },
    #[error("`{text}` is out of range for {what}")]
    OutOfRange { text: String, what: &'static str },
}

/// Address range `[start, last]` (inclusive, so it can reach the top of the space).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    pub start: u64,
    pub last: u64,
}

impl AddrRange {
    /// Whether `[addr, addr + len)` overlaps this range (saturating at the top of the space).
    pub fn overlaps(&self, addr: u64, len: u64) -> bool {
        let last = addr.saturating_add(len.max(1) - 1);
        addr <= self.last && self.start <= last
    }
}

impl FromStr for AddrRange {
    type Err = FilterError;

    /// `START` (one byte) or `START-END` (END exclusive); decimal or 0x hex.
    fn from_str(s: &str) -> Result<Self, FilterError> {
        match s.split_once('-') {
            None => {
                let start = parse_u64(s)?;
                Ok(AddrRange { start, last: start })
            }
            Some((a, b)) => {
                let (start, end) = (parse_u64(a)?, parse_u64(b)?);
                if end <= start {
                    return Err(FilterError::EmptyRange { start, end });
                }
                Ok(AddrRange { start, last: end - 1 })
            }
        }
    }
}

/// Which outcomes to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Ok,
    Error,
    Code(u16),
}

impl FromStr for StatusFilter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, FilterError> {
        match s.to_ascii_lowercase().as_str() {
            "ok" => return Ok(StatusFilter::Ok),
            "error" | "err" | "errors" => return Ok(StatusFilter::Error),
            _ => {}
        }
        if let Some(code) = status_code(s) {
            return Ok(StatusFilter::Code(code));
        }
        let n = parse_u64(s).map_err(|_| FilterError::BadStatus { text: s.to_owned() })?;
        let code = u16::try_from(n).map_err(|_| FilterError::OutOfRange {
            text: s.to_owned(),
            what: "a u16 status",
        })?;
        Ok(StatusFilter::Code(code))
    }
}

impl StatusFilter {
    fn accepts(self, status: u16) -> bool {
        match self {
            StatusFilter::Ok => !status_is_failure(status),
            StatusFilter::Error => status_is_failure(status),
            StatusFilter::Code(c) => status == c,
        }
    }
}

/// Parses `iova`, `bus` or `message`.
pub fn parse_space(s: &str) -> Result<Space, FilterError> {
    match s.to_ascii_lowercase().as_str() {
        "iova" => Ok(Space::Iova),
        "bus" => Ok(Space::Bus),
        "message" | "msg" => Ok(Space::Message),
        _ => Err(FilterError::BadSpace { text: s.to_owned() }),
    }
}

/// Decimal or 0x-prefixed hex, `_` separators allowed.
pub fn parse_u64(s: &str) -> Result<u64, FilterError> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    r.map_err(|_| FilterError::BadNumber { text: s.to_owned() })
}

/// A conjunction of optional criteria; the default keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub endpoint: Option<u16>,
    pub command_id: Option<u16>,
    pub addr: Option<AddrRange>,
    pub space: Option<Space>,
    pub status: Option<StatusFilter>,
}

impl Filter {
    pub fn matches(&self, rec: &Record) -> bool {
        match &rec.payload {
            Payload::Dma(d) => {
                self.endpoint.is_none_or(|e| e == d.endpoint)
                    && self.command_id.is_none_or(|c| c == d.command_id)
                    && self.addr.is_none_or(|r| r.overlaps(d.addr, d.len.into()))
                    && self.space.is_none_or(|s| s == d.space)
                    && self.status.is_none_or(|s| s.accepts(d.status))
            }
            Payload::Event { endpoint, event } => {
                if self.endpoint.is_some_and(|e| e != *endpoint) || self.space.is_some() {
                    return false;
                }
                let (cmd, range, status) = match event {
                    Event::CommandDone { command_id, status, .. } => (Some(*command_id), None, Some(*status)),
                    Event::DmaMap { iova, size, .. } | Event::DmaUnmap { iova, size, .. } => {
                        (None, Some((*iova, *size)), None)
                    }
                    _ => (None, None, None),
                };
                let is_error_event = matches!(event, Event::Error { .. });
                (self.command_id.is_none() || cmd.is_some() && cmd == self.command_id)
                    && self.addr.is_none_or(|r| range.is_some_and(|(a, l)| r.overlaps(a, l)))
                    && match (self.status, status) {
                        (None, _) => true,
                        (Some(StatusFilter::Error), None) => is_error_event,
                        (Some(_), None) => false,
                        (Some(f), Some(s)) => f.accepts(s),
                    }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phyr_trace::testutil::{dma, event, sample_records};

    fn count(f: &Filter) -> usize {
        sample_records().iter().filter(|r| f.matches(r)).count()
    }

    #[test]
    fn empty_filter_keeps_everything() {
        assert_eq!(count(&Filter::default()), sample_records().len());
    }

    #[test]
    fn command_id_selects_dma_and_its_completion() {
        let f = Filter {
            command_id: Some(5),
            ..Filter::default()
        };
        assert_eq!(count(&f), 2);
    }

    #[test]
    fn addr_range_overlap_is_half_open() {
        let f = |s: &str| Filter {
            addr: Some(s.parse().unwrap()),
            ..Filter::default()
        };
        let rec = dma(0, 0, 0, 0x1000, 0x1000, 0);
        assert!(f("0x1000").matches(&rec));
        assert!(f("0x1fff").matches(&rec));
        assert!(!f("0x2000").matches(&rec));
        assert!(!f("0x0-0x1000").matches(&rec));
        assert!(f("0x0-0x1001").matches(&rec));
        let map = event(
            0,
            0,
            Event::DmaMap {
                iova: 0x1000,
                size: 0x10,
                readable: true,
                writable: true,
                has_fd: true,
                fd_offset: Some(0),
            },
        );
        assert!(f("0x100f").matches(&map));
        assert!(!f("0x1010").matches(&map));
        // a record ending at the top of the address space
        assert!(f("0xffffffffffffffff").matches(&dma(0, 0, 0, u64::MAX - 1, 4096, 0)));
    }

    #[test]
    fn space_selects_dma_records_only() {
        let f = Filter {
            space: Some(Space::Bus),
            ..Filter::default()
        };
        assert_eq!(count(&f), 1);
    }

    #[test]
    fn status_ok_error_and_code() {
        let f = |s: &str| Filter {
            status: Some(s.parse().unwrap()),
            ..Filter::default()
        };
        assert_eq!(count(&f("error")), 2); // the IOMMU_FAULT DMA record and the Error event
        assert_eq!(count(&f("ok")), 3); // two DMA records and one CommandDone
        assert_eq!(count(&f("0x10")), 1);
        assert_eq!(count(&f("IOMMU_FAULT")), 1);
        assert_eq!(count(&f("16")), 1);
    }

    #[test]
    fn endpoint_selects_every_record_of_it() {
        assert_eq!(
            count(&Filter {
                endpoint: Some(1),
                ..Filter::default()
            }),
            sample_records().len()
        );
        assert_eq!(
            count(&Filter {
                endpoint: Some(9),
                ..Filter::default()
            }),
            0
        );
    }

    #[test]
    fn rejects_bad_filter_text() {
        assert_eq!(
            "0x20-0x10".parse::<AddrRange>(),
            Err(FilterError::EmptyRange { start: 0x20, end: 0x10 })
        );
        assert!(matches!("zz".parse::<AddrRange>(), Err(FilterError::BadNumber { .. })));
        assert!(matches!(
            "0x1-".parse::<AddrRange>(),
            Err(FilterError::BadNumber { .. })
        ));
        assert!(matches!(
            "NOT_A_STATUS".parse::<StatusFilter>(),
            Err(FilterError::BadStatus { .. })
        ));
        assert!(matches!(
            "70000".parse::<StatusFilter>(),
            Err(FilterError::OutOfRange { .. })
        ));
        assert!(matches!(parse_space("dram"), Err(FilterError::BadSpace { .. })));
        assert_eq!(parse_u64("0x1_000"), Ok(4096));
    }
}
