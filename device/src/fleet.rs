//! The whole fabric of one `phyr-device` process: its configuration (validated, with one
//! clear error per bad value), the BAR2 memories, the fabric, the endpoints and their traces.

use std::path::PathBuf;
use std::sync::Arc;

use phyr_trace::{Recorder, TraceClock, TraceConfig};

use crate::endpoint::Endpoint;
use crate::fabric::{Fabric, Port};
use crate::hook::Hook;
use crate::peer_mem::{PeerMem, PeerMemError};

/// Most endpoints one process serves.
pub const MAX_ENDPOINTS: u16 = 64;
/// Most queue pairs per endpoint (the register map has room for 60; 16 is plenty).
pub const MAX_QUEUES: u32 = 16;

/// Where and how to record DMA traces.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    pub dir: PathBuf,
    /// Record a CRC32C of the bytes every transaction moved.
    pub data_crc: bool,
    /// Size cap of each endpoint's trace file, in bytes (TraceConfig::max_bytes).
    pub max_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub endpoints: u16,
    /// Switch index per endpoint (empty: all behind switch 0).
    pub topology: Vec<u32>,
    pub bar2_size: u64,
    pub queues: u32,
    pub trace: Option<TraceSettings>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            endpoints: 1,
            topology: Vec::new(),
            bar2_size: dma_range::regs::DEFAULT_BAR2_SIZE,
            queues: dma_range::regs::DEFAULT_NUM_QUEUES,
            trace: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("--endpoints must be between 1 and {MAX_ENDPOINTS}, got {0}")]
    Endpoints(u16),
    #[error("--topology names {got} endpoints but --endpoints is {want}")]
    Topology { got: usize, want: u16 },
    #[error("--queues must be between 1 and {MAX_QUEUES}, got {0}")]
    Queues(u32),
    #[error("BAR2 of endpoint {endpoint}: {source}")]
    Bar2 { endpoint: u16, source: PeerMemError },
    #[error("trace file of endpoint {endpoint}: {source}")]
    Trace {
        endpoint: u16,
        source: phyr_trace::WriteError,
    },
    #[error("starting the workers of endpoint {endpoint}: {source}")]
    Spawn { endpoint: u16, source: std::io::Error },
}

/// Parses a size like `64M`, `1G`, `4096`, `16K` (binary units).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, shift) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 10),
        'M' => (&s[..s.len() - 1], 20),
        'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// Parses `0,0,1,1` (switch index per endpoint).
pub fn parse_topology(s: &str) -> Option<Vec<u32>> {
    s.split(',').map(|x| x.trim().parse().ok()).collect()
}

/// All endpoints of the process.
pub struct Fleet {
    pub fabric: Arc<Fabric>,
    pub endpoints: Vec<Arc<Endpoint>>,
}

impl Fleet {
    /// Builds and starts the fabric.
    pub fn new(cfg: &FleetConfig) -> Result<Self, FleetError> {
        if cfg.endpoints == 0 || cfg.endpoints > MAX_ENDPOINTS {
            return Err(FleetError::Endpoints(cfg.endpoints));
        }
        if !cfg.topology.is_empty() && cfg.topology.len() != usize::from(cfg.endpoints) {
            return Err(FleetError::Topology {
                got: cfg.topology.len(),
                want: cfg.endpoints,
            });
        }
        if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
            return Err(FleetError::Queues(cfg.queues));
        }
        let mut ports = Vec::new();
        for i in 0..cfg.endpoints {
            let mem = PeerMem::new(&format!("phyr-ep{i}-bar2"), cfg.bar2_size)
                .map_err(|source| FleetError::Bar2 { endpoint: i, source })?;
            let switch = cfg.topology.get(usize::from(i)).copied().unwrap_or(0);
            ports.push(Arc::new(Port::new(i, switch, mem)));
        }
        let fabric = Arc::new(Fabric::new(ports));
        let clock = TraceClock::new();
        let mut endpoints = Vec::new();
        for i in 0..cfg.endpoints {
            let rec = match &cfg.trace {
                Some(t) => {
                    let tc = TraceConfig {
                        data_crc: t.data_crc,
                        max_bytes: t.max_bytes,
                        ..TraceConfig::default()
                    };
                    Recorder::create(&t.dir, i, &tc, &clock)
                        .map_err(|source| FleetError::Trace { endpoint: i, source })?
                }
                None => Recorder::disabled(),
            };
            let ep = Endpoint::new(fabric.clone(), i, cfg.queues, Hook::new(rec, i))
                .expect("fabric has a port per endpoint");
            ep.start().map_err(|source| FleetError::Spawn { endpoint: i, source })?;
            endpoints.push(ep);
        }
        Ok(Self { fabric, endpoints })
    }

    /// Stops every endpoint's workers and flushes the traces.
    pub fn shutdown(&self) {
        for ep in &self.endpoints {
            ep.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("8192"), Some(8192));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("99999999999999G"), None);
    }

    #[test]
    fn topology_with_garbage_is_rejected() {
        assert_eq!(parse_topology("0,0,1"), Some(vec![0, 0, 1]));
        assert_eq!(parse_topology("0,x"), None);
    }

    #[test]
    fn topology_length_mismatch_is_rejected() {
        let cfg = FleetConfig {
            endpoints: 2,
            topology: vec![0],
            ..Default::default()
        };
        assert!(matches!(
            Fleet::new(&cfg),
            Err(FleetError::Topology { got: 1, want: 2 })
        ));
    }

    #[test]
    fn bar2_size_not_power_of_two_is_rejected() {
        let cfg = FleetConfig {
            bar2_size: 3 << 20,
            ..Default::default()
        };
        assert!(matches!(Fleet::new(&cfg), Err(FleetError::Bar2 { .. })));
    }

    #[test]
    fn zero_endpoints_is_rejected() {
        let cfg = FleetConfig {
            endpoints: 0,
            ..Default::default()
        };
        assert!(matches!(Fleet::new(&cfg), Err(FleetError::Endpoints(0))));
    }
}
