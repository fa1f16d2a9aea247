//! Stage 6, inspection: the `trace` command over the device's DMA traces of a run (the tools
//! themselves are the `phyr-trace-tools` crate).

pub mod trace_cmd;
