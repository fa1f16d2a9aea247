//! Chrome trace-event JSON, as loaded by ui.perfetto.dev and chrome://tracing.
//!
//! Layout: one process per endpoint (`pid` = endpoint + 1, named `phyr ep<N>`), one thread
//! per queue (`tid` = queue + 1, named `queue <Q>`) plus an `events` thread (`tid` =
//! [`EVENTS_TID`]). DMA transactions are complete events (`"ph":"X"`, `dur` from the record,
//! at least 1 ns) on their queue's track; command completions are instant events on the
//! queue's track; map/unmap, resets, interrupts and errors are instant events on the events
//! track. Times are microseconds (`ts`, `dur`), run-relative.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::{json, Value};

use crate::listing::event_details;
use crate::names::event_kind;
use crate::names::{direction_name, list_name, opcode_name, space_name, status_name, target_text};
use phyr_trace::{Event, Payload, Record};

/// Thread id of each endpoint's protocol-event track.
pub const EVENTS_TID: u32 = 100_000;

#[derive(Serialize)]
struct TraceEvent<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    cat: &'a str,
    ph: &'a str,
    ts: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    pid: u32,
    tid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<&'a str>,
    args: Value,
}

pub struct PerfettoWriter<W: Write> {
    w: W,
    events: u64,
    processes: BTreeSet<u16>,
    threads: BTreeSet<(u16, u32)>,
}

impl<W: Write> PerfettoWriter<W> {
    pub fn new(mut w: W) -> io::Result<Self> {
        w.write_all(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n")?;
        Ok(PerfettoWriter {
            w,
            events: 0,
            processes: BTreeSet::new(),
            threads: BTreeSet::new(),
        })
    }

    fn emit(&mut self, ev: &TraceEvent<'_>) -> io::Result<()> {
        if self.events > 0 {
            self.w.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut self.w, ev)?;
        self.events += 1;
        Ok(())
    }

    fn track(&mut self, endpoint: u16, tid: u32) -> io::Result<(u32, u32)> {
        let pid = u32::from(endpoint) + 1;
        if self.processes.insert(endpoint) {
            let name = format!("phyr ep{endpoint}");
            self.emit(&meta("process_name", pid, 0, json!({ "name": name })))?;
            self.emit(&meta("process_sort_index", pid, 0, json!({ "sort_index": endpoint })))?;
        }
        if self.threads.insert((endpoint, tid)) {
            let name = if tid == EVENTS_TID {
                "events".to_owned()
            } else {
                format!("queue {}", tid - 1)
            };
            self.emit(&meta("thread_name", pid, tid, json!({ "name": name })))?;
            self.emit(&meta("thread_sort_index", pid, tid, json!({ "sort_index": tid })))?;
        }
        Ok((pid, tid))
    }

    /// Adds one record at run-relative time `ts_ns`.
    pub fn add(&mut self, ts_ns: u64, rec: &Record) -> io::Result<()> {
        let ts = ts_ns as f64 / 1000.0;
        match &rec.payload {
            Payload::Dma(d) => {
                let (pid, tid) = self.track(d.endpoint, u32::from(d.queue) + 1)?;
                let name = if d.status == 0 {
                    format!(
                        "{} {} {}",
                        opcode_name(d.opcode),
                        list_name(d.list),
                        direction_name(d.direction)
                    )
                } else {
                    format!("FAULT {}", status_name(d.status))
                };
                let args = json!({
                    "command_id": d.command_id,
                    "segment": d.segment,
                    "space": space_name(d.space),
                    "addr": format!("{:#x}", d.addr),
                    "len": d.len,
                    "target": target_text(&d.target),
                    "status": status_name(d.status),
                    "crc32c": d.crc32c.map(|c| format!("{c:08x}")),
                });
                let dur = f64::from(d.dur_ns.max(1)) / 1000.0;
                let cat = if d.status == 0 { "dma" } else { "dma,error" };
                self.emit(&TraceEvent {
                    name: name.into(),
                    cat,
                    ph: "X",
                    ts,
                    dur: Some(dur),
                    pid,
                    tid,
                    s: None,
                    args,
                })
            }
            Payload::Event { endpoint, event } => {
                let tid = match event {
                    Event::CommandDone { queue, .. } => u32::from(*queue) + 1,
                    _ => EVENTS_TID,
                };
                let (pid, tid) = self.track(*endpoint, tid)?;
                let name: Cow<'_, str> = match event {
                    Event::CommandDone { command_id, status, .. } if *status != 0 => {
                        format!("cmd {command_id} {}", status_name(*status)).into()
                    }
                    Event::CommandDone { command_id, .. } => format!("cmd {command_id} done").into(),
                    e => event_kind(e).into(),
                };
                let cat = if matches!(event, Event::Error { .. }) {
                    "event,error"
                } else {
                    "event"
                };
                let args = json!({ "details": event_details(event) });
                self.emit(&TraceEvent {
                    name,
                    cat,
                    ph: "i",
                    ts,
                    dur: None,
                    pid,
                    tid,
                    s: Some("t"),
                    args,
                })
            }
        }
    }

    /// Closes the JSON document; returns the writer and the number of trace events.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.w.write_all(b"\n]}\n")?;
        self.w.flush()?;
        Ok((self.w, self.events))
    }
}

fn meta(name: &'static str, pid: u32, tid: u32, args: Value) -> TraceEvent<'static> {
    TraceEvent {
        name: name.into(),
        cat: "",
        ph: "M",
        ts: 0.0,
        dur: None,
        pid,
        tid,
        s: None,
        args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phyr_trace::testutil::sample_records;

    fn export() -> Value {
        let mut p = PerfettoWriter::new(Vec::new()).unwrap();
        for r in sample_records() {
            p.add(r.t_ns, &r).unwrap();
        }
        let (out, _) = p.finish().unwrap();
        serde_json::from_slice(&out).expect("export must be valid JSON")
    }

    #[test]
    fn export_is_a_trace_event_document_perfetto_can_load() {
        let doc = export();
        let events = doc["traceEvents"].as_array().expect("traceEvents array");
        for e in events {
            let ph = e["ph"].as_str().expect("ph");
            assert!(e["name"].is_string() && e["pid"].is_u64() && e["tid"].is_u64(), "{e}");
            assert!(e["ts"].is_number(), "{e}");
            match ph {
                "X" => assert!(e["dur"].as_f64().is_some_and(|d| d > 0.0), "{e}"),
                "i" => assert_eq!(e["s"], "t"),
                "M" => assert!(e["args"]["name"].is_string() || e["args"]["sort_index"].is_number()),
                other => panic!("unexpected phase {other}"),
            }
        }
        let count = |ph: &str| events.iter().filter(|e| e["ph"] == ph).count();
        assert_eq!(count("X"), 3);
        assert_eq!(count("i"), sample_records().len() - 3);
    }

    #[test]
    fn one_process_per_endpoint_and_one_thread_per_queue() {
        let doc = export();
        let events = doc["traceEvents"].as_array().unwrap();
        let names: Vec<String> = events
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] != "process_sort_index" && e["name"] != "thread_sort_index")
            .map(|e| format!("{}:{}:{}", e["pid"], e["tid"], e["args"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(names, ["2:0:phyr ep1", "2:1:queue 0", "2:4:queue 3", "2:100000:events"]);
        let fault = events
            .iter()
            .find(|e| e["name"] == "FAULT IOMMU_FAULT")
            .expect("fault slice");
        assert_eq!(fault["args"]["addr"], "0x100000");
    }
}
