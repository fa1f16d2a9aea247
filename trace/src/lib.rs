//! Device-side DMA traces (issue 6): the record type shared by the device's
//! recording hook and the trace tools.

mod record;

pub use record::{Direction, DmaRecord, Event, Payload, Record, Space, Target};
