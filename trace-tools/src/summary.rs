//! The `--summary` view: bytes and counts per endpoint, space and direction; commands; events;
//! errors grouped by cause with the first occurrence of each.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::listing::{fmt_time, Style};
use crate::merge::FileReport;
use crate::names::{
    direction_name, event_kind, list_name, opcode_name, space_name, status_description, status_is_failure, status_name,
};
use phyr_trace::{DmaRecord, Event, Payload, Record};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub transfers: u64,
    /// Bytes of the transfers that succeeded.
    pub bytes: u64,
    pub failed: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorGroup {
    pub count: u64,
    /// The first occurrence, as text.
    pub first: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EndpointSummary {
    /// Keyed by (space, direction) names.
    pub flows: BTreeMap<(&'static str, &'static str), Flow>,
    pub commands: u64,
    pub commands_failed: u64,
    /// Failed DMA transactions by status code.
    pub dma_errors: BTreeMap<u16, ErrorGroup>,
    /// Failed commands (CommandDone) by status code.
    pub command_errors: BTreeMap<u16, ErrorGroup>,
    /// `Event::Error` messages with their counts.
    pub messages: BTreeMap<String, u64>,
    pub events: BTreeMap<&'static str, u64>,
    pub dropped: u64,
}

/// Accumulates records; render with [`Summary::write`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub endpoints: BTreeMap<u16, EndpointSummary>,
    pub records: u64,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
}

impl Summary {
    /// Adds one record; `ts_ns` is its run-relative time.
    pub fn add(&mut self, ts_ns: u64, rec: &Record) {
        self.records += 1;
        self.first_ns = Some(self.first_ns.map_or(ts_ns, |f| f.min(ts_ns)));
        self.last_ns = Some(self.last_ns.map_or(ts_ns, |l| l.max(ts_ns)));
        match &rec.payload {
            Payload::Dma(d) => {
                let ep = self.endpoints.entry(d.endpoint).or_default();
                let flow = ep
                    .flows
                    .entry((space_name(d.space), direction_name(d.direction)))
                    .or_default();
                flow.transfers += 1;
                if d.status == 0 {
                    flow.bytes += u64::from(d.len);
                } else {
                    flow.failed += 1;
                    let g = ep.dma_errors.entry(d.status).or_default();
                    if g.count == 0 {
                        g.first = format!("at {} {}", fmt_time(ts_ns), dma_text(d));
                    }
                    g.count += 1;
                }
            }
            Payload::Event { endpoint, event } => {
                let ep = self.endpoints.entry(*endpoint).or_default();
                *ep.events.entry(event_kind(event)).or_default() += 1;
                match event {
                    Event::CommandDone {
                        queue,
                        command_id,
                        opcode,
                        status,
                        ..
                    } => {
                        ep.commands += 1;
                        if status_is_failure(*status) {
                            ep.commands_failed += 1;
                            let g = ep.command_errors.entry(*status).or_default();
                            if g.count == 0 {
                                g.first = format!(
                                    "at {} q{queue} cmd {command_id} {}",
                                    fmt_time(ts_ns),
                                    opcode_name(*opcode)
                                );
                            }
                            g.count += 1;
                        }
                    }
                    Event::Error { message } => *ep.messages.entry(message.clone()).or_default() += 1,
                    Event::Dropped { records } => ep.dropped = ep.dropped.max(*records),
                    _ => {}
                }
            }
        }
    }

    /// Writes the summary as aligned text.
    pub fn write(&self, w: &mut impl Write, files: &[FileReport], style: Style) -> io::Result<()> {
        for f in files {
            let size = std::fs::metadata(&f.path).map_or(0, |m| m.len());
            let state = match (&f.error, &f.tail, &f.closure) {
                (Some(e), _, _) => style.red(&format!("ERROR: {e}")),
                (None, Some(t), Some(c)) if !t.is_clean() => style.yellow(&format!("{t}; {c}")),
                (None, Some(t), None) if !t.is_clean() => style.yellow(&t.to_string()),
                (None, _, Some(c)) if !c.is_closed() => style.yellow(&c.to_string()),
                (None, _, Some(_)) => "complete, closed by the device".to_owned(),
                _ => "complete".to_owned(),
            };
            writeln!(
                w,
                "{}  {} records, {}, {state}",
                f.path.display(),
                f.records,
                human_bytes(size)
            )?;
        }
        let span = match (self.first_ns, self.last_ns) {
            (Some(a), Some(b)) => format!("{} .. {}", fmt_time(a), fmt_time(b)),
            _ => "no records".to_owned(),
        };
        writeln!(w, "{} records, {span}", self.records)?;
        for (ep, s) in &self.endpoints {
            writeln!(w)?;
            writeln!(w, "{}", style.bold(&format!("endpoint {ep}")))?;
            if !s.flows.is_empty() {
                writeln!(
                    w,
                    "  {:<8} {:<6} {:>10} {:>12} {:>8}",
                    "space", "dir", "transfers", "bytes", "failed"
                )?;
                let mut total = Flow::default();
                for ((space, dir), f) in &s.flows {
                    writeln!(
                        w,
                        "  {space:<8} {dir:<6} {:>10} {:>12} {:>8}",
                        f.transfers,
                        human_bytes(f.bytes),
                        f.failed
                    )?;
                    total.transfers += f.transfers;
                    total.bytes += f.bytes;
                    total.failed += f.failed;
                }
                let t = format!(
                    "  {:<15} {:>10} {:>12} {:>8}",
                    "total",
                    total.transfers,
                    human_bytes(total.bytes),
                    total.failed
                );
                writeln!(w, "{}", style.bold(&t))?;
            }
            writeln!(w, "  commands: {} completed, {} failed", s.commands, s.commands_failed)?;
            if !s.events.is_empty() {
                let ev: Vec<String> = s.events.iter().map(|(k, n)| format!("{k} {n}")).collect();
                writeln!(w, "  events: {}", ev.join(", "))?;
            }
            if s.dropped > 0 {
                writeln!(
                    w,
                    "  {}",
                    style.yellow(&format!(
                        "{} records dropped (trace file full or writer behind)",
                        s.dropped
                    ))
                )?;
            }
            let has_errors = !s.dma_errors.is_empty() || !s.command_errors.is_empty() || !s.messages.is_empty();
            if has_errors {
                writeln!(w, "  {}", style.red("errors:"))?;
            }
            for (what, groups) in [("DMA", &s.dma_errors), ("command", &s.command_errors)] {
                for (code, g) in groups {
                    let desc = status_description(*code).unwrap_or("status code unknown to this build");
                    let head = format!("{what} {} ({code:#04x}) x{}", status_name(*code), g.count);
                    writeln!(w, "    {}: {desc}", style.red(&head))?;
                    writeln!(w, "      first {}", g.first)?;
                }
            }
            for (msg, n) in &s.messages {
                writeln!(w, "    {} {msg}", style.red(&format!("device error x{n}:")))?;
            }
        }
        Ok(())
    }
}

fn dma_text(d: &DmaRecord) -> String {
    format!(
        "q{} cmd {} {} {} seg {} {} {} {:#x}+{}",
        d.queue,
        d.command_id,
        opcode_name(d.opcode),
        list_name(d.list),
        d.segment,
        direction_name(d.direction),
        space_name(d.space),
        d.addr,
        d.len
    )
}

/// `512 B`, `64.0 KiB`, `1.5 MiB`, `2.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;
    use phyr_trace::testutil::sample_records;

    #[test]
    fn counts_bytes_per_space_and_direction_and_groups_errors() {
        let mut s = Summary::default();
        for r in sample_records() {
            s.add(r.t_ns, &r);
        }
        let ep = &s.endpoints[&1];
        assert_eq!(
            ep.flows[&("iova", "read")],
            Flow {
                transfers: 1,
                bytes: 65536,
                failed: 0
            }
        );
        assert_eq!(
            ep.flows[&("bus", "write")],
            Flow {
                transfers: 1,
                bytes: 4096,
                failed: 0
            }
        );
        assert_eq!(
            ep.flows[&("message", "read")],
            Flow {
                transfers: 1,
                bytes: 0,
                failed: 1
            }
        );
        assert_eq!(ep.dma_errors[&0x10].count, 1);
        assert!(
            ep.dma_errors[&0x10].first.contains("cmd 8"),
            "{}",
            ep.dma_errors[&0x10].first
        );
        assert_eq!(ep.commands, 1);
        assert_eq!(ep.dropped, 12);
        assert_eq!(ep.messages.len(), 1);

        let mut out = Vec::new();
        s.write(&mut out, &[], Style::plain()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("IOMMU_FAULT (0x10) x1: IOVA not mapped"), "{text}");
        assert!(text.contains("64.0 KiB"), "{text}");
        assert!(!text.contains('\x1b'), "plain style must not emit escapes");
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0 TiB");
    }
}
