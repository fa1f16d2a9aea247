//! The fabric: every endpoint of the process, which virtual switch it sits behind, and which
//! bus addresses its BARs decode. A BUS_ADDR transaction is routed like a PCIe memory request:
//! - no BAR decodes the address: Unsupported Request (`BUS_NO_TARGET`);
//! - the decoding endpoint sits behind another switch: the root complex does not route
//!   peer-to-peer between root ports, Unsupported Request (`BUS_CROSS_SWITCH`);
//! - the decoding BAR is BAR0 (registers): Completer Abort (`BUS_TARGET_ABORT`);
//! - the transfer runs past the end of the BAR: `BUS_PAST_BAR_END`, faulting at the BAR's end.
//!
//! The own endpoint's BAR2 is reachable by bus address too (same switch, by definition).
//! A BAR decodes only while its endpoint's COMMAND.MEMORY is set and its address is non-zero.

use std::sync::{Arc, Mutex};

use dma_range::{regs, Status};

use crate::config::BarDecode;
use crate::peer_mem::PeerMem;
use crate::raw::RawPiece;

/// One endpoint as the fabric sees it.
#[derive(Debug)]
pub struct Port {
    pub endpoint: u16,
    pub switch: u32,
    pub bar2: PeerMem,
    decode: Mutex<BarDecode>,
}

impl Port {
    pub fn new(endpoint: u16, switch: u32, bar2: PeerMem) -> Self {
        Self {
            endpoint,
            switch,
            bar2,
            decode: Mutex::new(BarDecode::default()),
        }
    }

    /// Publishes the decode state the endpoint's config space now describes.
    pub fn set_decode(&self, d: BarDecode) {
        *self.decode.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    pub fn decode(&self) -> BarDecode {
        *self.decode.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A routing failure: the status and the first address that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{status} at bus address {addr:#x}")]
pub struct RouteFault {
    pub status: Status,
    pub addr: u64,
}

/// A successfully routed transfer: which endpoint's BAR2, at which offset, and the memory.
#[derive(Debug, Clone, Copy)]
pub struct Routed<'a> {
    pub endpoint: u16,
    pub offset: u64,
    /// The bytes, borrowed from the decoding endpoint's BAR2 (and so from the fabric).
    pub piece: RawPiece<'a>,
}

/// All endpoints of the process.
#[derive(Debug, Default)]
pub struct Fabric {
    ports: Vec<Arc<Port>>,
}

impl Fabric {
    pub fn new(ports: Vec<Arc<Port>>) -> Self {
        Self { ports }
    }

    pub fn ports(&self) -> &[Arc<Port>] {
        &self.ports
    }

    pub fn port(&self, endpoint: usize) -> Option<&Arc<Port>> {
        self.ports.get(endpoint)
    }

    /// Routes `[addr, addr + len)` issued by endpoint `from` (len > 0).
    pub fn route(&self, from: &Port, addr: u64, len: u64) -> Result<Routed<'_>, RouteFault> {
        let fault = |status, addr| Err(RouteFault { status, addr });
        for p in &self.ports {
            let d = p.decode();
            if !d.memory_enabled {
                continue;
            }
            if d.bar0 != 0 && addr >= d.bar0 && addr - d.bar0 < regs::BAR0_SIZE {
                if p.switch != from.switch {
                    return fault(Status::BUS_CROSS_SWITCH, addr);
                }
                return fault(Status::BUS_TARGET_ABORT, addr);
            }
            let size = p.bar2.size();
            if d.bar2 != 0 && addr >= d.bar2 && addr - d.bar2 < size {
                if p.switch != from.switch {
                    return fault(Status::BUS_CROSS_SWITCH, addr);
                }
                let offset = addr - d.bar2;
                if len > size - offset {
                    return fault(Status::BUS_PAST_BAR_END, d.bar2.saturating_add(size));
                }
                return match p.bar2.piece(offset, len) {
                    Some(piece) => Ok(Routed {
                        endpoint: p.endpoint,
                        offset,
                        piece,
                    }),
                    None => fault(Status::BUS_PAST_BAR_END, d.bar2.saturating_add(size)),
                };
            }
        }
        fault(Status::BUS_NO_TARGET, addr)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fabric(switches: &[u32]) -> Fabric {
        let ports = switches
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let p = Port::new(i as u16, *s, PeerMem::new("t", 1 << 20).unwrap());
                p.set_decode(BarDecode {
                    memory_enabled: true,
                    bar0: 0xFE00_0000 + i as u64 * 0x10_0000,
                    bar2: 0x80_0000_0000 + i as u64 * (1 << 20),
                });
                Arc::new(p)
            })
            .collect();
        Fabric::new(ports)
    }

    #[test]
    fn peer_and_own_bar2_route() {
        let f = fabric(&[0, 0]);
        let r = f.route(&f.ports()[0], 0x80_0010_0010, 16).unwrap();
        assert_eq!((r.endpoint, r.offset, r.piece.len()), (1, 0x10, 16));
        let r = f.route(&f.ports()[0], 0x80_0000_0000, 1 << 20).unwrap();
        assert_eq!(r.endpoint, 0);
    }

    #[test]
    fn bus_address_nobody_decodes_is_unsupported_request() {
        let f = fabric(&[0]);
        let e = f.route(&f.ports()[0], 0x1000, 4).unwrap_err();
        assert_eq!(
            e,
            RouteFault {
                status: Status::BUS_NO_TARGET,
                addr: 0x1000
            }
        );
    }

    #[test]
    fn bus_address_behind_other_switch_is_unsupported_request() {
        let f = fabric(&[0, 1]);
        let e = f.route(&f.ports()[0], 0x80_0010_0000, 4).unwrap_err();
        assert_eq!(e.status, Status::BUS_CROSS_SWITCH);
    }

    #[test]
    fn bus_address_in_bar0_is_target_abort() {
        let f = fabric(&[0, 0]);
        let e = f.route(&f.ports()[0], 0xFE10_0010, 4).unwrap_err();
        assert_eq!(
            e,
            RouteFault {
                status: Status::BUS_TARGET_ABORT,
                addr: 0xFE10_0010
            }
        );
    }

    #[test]
    fn transfer_past_bar_end_faults_at_bar_end() {
        let f = fabric(&[0]);
        let e = f.route(&f.ports()[0], 0x80_0000_0000 + (1 << 20) - 8, 16).unwrap_err();
        assert_eq!(
            e,
            RouteFault {
                status: Status::BUS_PAST_BAR_END,
                addr: 0x80_0010_0000
            }
        );
    }

    #[test]
    fn bar_with_memory_decode_off_does_not_decode() {
        let f = fabric(&[0]);
        let mut d = f.ports()[0].decode();
        d.memory_enabled = false;
        f.ports()[0].set_decode(d);
        assert_eq!(
            f.route(&f.ports()[0], 0x80_0000_0000, 4).unwrap_err().status,
            Status::BUS_NO_TARGET
        );
    }

    proptest! {
        /// Routing agrees with a direct reading of the decode rules for any address and length.
        #[test]
        fn routing_matches_the_decode_rules(
            which in 0u64..6,
            delta in -0x2000i64..0x10_2000,
            len in 1u64..0x20_0000,
            from in 0usize..3,
        ) {
            let f = fabric(&[0, 0, 1]);
            let bar0 = |i: u64| 0xFE00_0000 + i * 0x10_0000;
            let bar2 = |i: u64| 0x80_0000_0000 + i * (1 << 20);
            // Addresses around every BAR: inside, just before, just past.
            let base = if which < 3 { bar0(which) } else { bar2(which - 3) };
            let addr = base.wrapping_add_signed(delta);
            let mut expect = Err(Status::BUS_NO_TARGET);
            for i in 0..3u64 {
                let other_switch = (i == 2) != (from == 2);
                if addr >= bar0(i) && addr < bar0(i) + regs::BAR0_SIZE {
                    expect = Err(if other_switch { Status::BUS_CROSS_SWITCH } else { Status::BUS_TARGET_ABORT });
                } else if addr >= bar2(i) && addr < bar2(i) + (1 << 20) {
                    expect = if other_switch {
                        Err(Status::BUS_CROSS_SWITCH)
                    } else if addr + len > bar2(i) + (1 << 20) {
                        Err(Status::BUS_PAST_BAR_END)
                    } else {
                        Ok((i as u16, addr - bar2(i)))
                    };
                }
            }
            let got = f.route(&f.ports()[from], addr, len).map(|r| (r.endpoint, r.offset)).map_err(|e| e.status);
            prop_assert_eq!(got, expect);
        }
    }
}
