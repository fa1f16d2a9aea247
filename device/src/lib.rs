//! The phyr endpoint fabric: PCIe endpoints with a DMA engine and a peer-mappable
//! BAR, served over vfio-user, one process for the whole fabric.
//!
//! - `config`: PCI configuration space as data (capabilities, BAR sizing and decode).
//! - `peer_mem`: BAR2, the memfd-backed peer memory.
//! - `fabric`: endpoints, switches, bus-address routing (UR / CA semantics).
//! - `mem`, `raw`: the engine's view of memory (pieces, faults) and the unsafe byte movers
//!   (their SIMD loops: the `phyr-kernels` crate, `kernels/`).
//! - `bus`: one endpoint's resolver over IOVA and bus address spaces.
//! - `engine`: executes one command (list walk, COPY / FILL / CRC32C / COMPARE);
//!   `overlap`: COPY's rule that source and destination do not overlap.
//! - `hook`: the recording hook every DMA passes through.
//! - `regs`, `queue`: the BAR0 register file; SQ/CQ processing.
//! - `endpoint`: one endpoint (regions, queues, workers, reset); `fleet`: all of them.
//! - `session`, `vfio`: the endpoint over a vfio-user session (`vfio_user::Device`).
//! - `signal`: SIGTERM/SIGINT for the binary.

mod bus;
mod client_mem;
mod config;
mod endpoint;
mod engine;
mod fabric;
mod fleet;
mod hook;
mod mem;
mod overlap;
mod peer_mem;
mod queue;
mod raw;
mod regs;
mod signal;
#[cfg(test)]
mod testmem;
mod vfio;

pub use bus::{AccessError, Bus};
pub use client_mem::{ClientIrqs, ClientMemory};
pub use config::{BarDecode, ConfigEffect, ConfigSpace, CONFIG_SIZE};
pub use endpoint::{Endpoint, Ports};
pub use engine::{Exec, Failure, STEP};
pub use fabric::{Fabric, Port, RouteFault, Routed};
pub use fleet::{parse_size, parse_topology, Fleet, FleetConfig, FleetError, TraceSettings, MAX_ENDPOINTS, MAX_QUEUES};
pub use hook::{CmdTag, Hook};
pub use mem::{Dir, IovaMemory, IrqSink, MemFault, MemFaultKind, Piece, PieceFn};
pub use peer_mem::{PeerMem, PeerMemError};
pub use queue::{process, Counters, Progress, QueueCtx, QueueRun, QueueShared, BATCH};
pub use raw::RawPiece;
pub use regs::{Limits, Live, QueueConfig, RegEffect, RegFile};
pub use signal::TermSignals;
pub use vfio::VfioEndpoint;
