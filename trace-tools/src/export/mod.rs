//! Exporters: Chrome/Perfetto trace-event JSON and JSON Lines.

mod jsonl;
mod perfetto;

pub use jsonl::JsonlWriter;
pub use perfetto::PerfettoWriter;
