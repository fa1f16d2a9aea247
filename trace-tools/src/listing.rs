//! The `--list` view: one aligned line per record, colour optional.

use std::io::{self, Write};

use crate::names::{
    direction_name, event_kind, list_name, opcode_name, space_name, status_is_failure, status_name, target_text,
};
use phyr_trace::{Event, Payload, Record};

/// Whether to emit ANSI colour escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn plain() -> Self {
        Style { color: false }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    pub fn cyan(&self, s: &str) -> String {
        self.paint("36", s)
    }
}

/// `12.345678 ms`.
pub fn fmt_time(ns: u64) -> String {
    format!("{}.{:06} ms", ns / 1_000_000, ns % 1_000_000)
}

/// The column header matching [`write_line`].
pub fn write_header(w: &mut impl Write, style: Style) -> io::Result<()> {
    let h = format!(
        "{:>16} {:<4} {:<4} {:>5} {:<7} {:<5} {:>5} {:<5} {:<7} {:<18} {:>8}  {:<22} {}",
        "time", "ep", "q", "cmd", "op", "list", "seg", "dir", "space", "address", "len", "target", "status"
    );
    writeln!(w, "{}", style.bold(&h))
}

/// Writes one record as one line; `ts_ns` is its run-relative time.
pub fn write_line(w: &mut impl Write, ts_ns: u64, rec: &Record, style: Style) -> io::Result<()> {
    let t = format!("{:>16}", fmt_time(ts_ns));
    match &rec.payload {
        Payload::Dma(d) => {
            let status = if d.status == 0 {
                "ok".to_owned()
            } else if status_is_failure(d.status) {
                style.red(&status_name(d.status))
            } else {
                status_name(d.status)
            };
            let crc = d
                .crc32c
                .map(|c| style.dim(&format!(" crc {c:08x}")))
                .unwrap_or_default();
            // Queue traffic (SQ fetch, CQ write) and list blocks belong to no data segment.
            let segment = if d.segment == u32::MAX {
                "-".to_owned()
            } else {
                d.segment.to_string()
            };
            writeln!(
                w,
                "{t} {:<4} {:<4} {:>5} {:<7} {:<5} {:>5} {:<5} {:<7} {:#018x} {:>8}  {:<22} {status}{crc}",
                format!("ep{}", d.endpoint),
                format!("q{}", d.queue),
                d.command_id,
                opcode_name(d.opcode),
                list_name(d.list),
                segment,
                direction_name(d.direction),
                space_name(d.space),
                d.addr,
                d.len,
                target_text(&d.target),
            )
        }
        Payload::Event { endpoint, event } => {
            let kind = event_kind(event);
            let kind = match event {
                Event::Error { .. } => style.red(kind),
                Event::Dropped { .. } => style.yellow(kind),
                _ => style.cyan(kind),
            };
            writeln!(w, "{t} {:<4} {kind} {}", format!("ep{endpoint}"), event_details(event))
        }
    }
}

/// The fields of an event as `key=value` text.
pub fn event_details(e: &Event) -> String {
    match e {
        Event::DmaMap {
            iova,
            size,
            readable,
            writable,
            has_fd,
            fd_offset,
        } => {
            let prot = format!(
                "{}{}",
                if *readable { "r" } else { "-" },
                if *writable { "w" } else { "-" }
            );
            let fd = match (has_fd, fd_offset) {
                (_, Some(o)) => format!("fd offset={o:#x}"),
                (true, None) => "fd".to_owned(),
                (false, None) => "no fd (message access)".to_owned(),
            };
            format!("iova={iova:#x} size={size:#x} {prot} {fd}")
        }
        Event::DmaUnmap { iova, size, all } => {
            if *all {
                "all mappings".to_owned()
            } else {
                format!("iova={iova:#x} size={size:#x}")
            }
        }
        Event::Reset | Event::Connected | Event::Disconnected | Event::Closed => String::new(),
        Event::Interrupt { vector } => format!("vector={vector}"),
        Event::CommandDone {
            queue,
            command_id,
            opcode,
            status,
            result,
        } => format!(
            "q{queue} cmd {command_id} {} status={} result={result:#x}",
            opcode_name(*opcode),
            status_name(*status)
        ),
        Event::Error { message } => message.clone(),
        Event::Dropped { records } => format!("{records} records not recorded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phyr_trace::testutil::sample_records;

    #[test]
    fn one_line_per_record_and_columns_line_up() {
        let mut out = Vec::new();
        write_header(&mut out, Style::plain()).unwrap();
        for r in sample_records() {
            write_line(&mut out, r.t_ns, &r, Style::plain()).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), sample_records().len() + 1);
        let dma: Vec<&&str> = lines[1..4].iter().collect();
        let col = |l: &str| l.find("0x0000").unwrap();
        assert!(dma.iter().all(|l| col(l) == col(dma[0])), "{text}");
        assert!(lines[3].contains("IOMMU_FAULT"), "{text}");
        assert!(lines[2].contains("ep2.bar2+0x1000"), "{text}");
        assert!(
            text.contains("command_done ep1") || text.contains("ep1  command_done"),
            "{text}"
        );
    }

    #[test]
    fn color_only_when_asked() {
        let rec = &sample_records()[2];
        let mut plain = Vec::new();
        write_line(&mut plain, 0, rec, Style::plain()).unwrap();
        let mut color = Vec::new();
        write_line(&mut color, 0, rec, Style { color: true }).unwrap();
        assert!(!plain.contains(&0x1b) && color.contains(&0x1b));
    }

    #[test]
    fn time_is_milliseconds_with_ns_precision() {
        assert_eq!(fmt_time(1_234_567_891), "1234.567891 ms");
        assert_eq!(fmt_time(5), "0.000005 ms");
    }
}
