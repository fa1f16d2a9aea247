//! DEVICE_GET_INFO, DEVICE_GET_REGION_INFO (with the sparse-mmap capability) and
//! DEVICE_GET_IRQ_INFO.
//!
//! `argsz` in a request is the size of the client's reply buffer. Replies never exceed it:
//! when the capabilities do not fit, the reply carries only the fixed part with the needed
//! `argsz` and, unlike the kernel, *without* the CAPS flag: QEMU's vfio-user client refuses
//! CAPS with `cap_offset` 0 (EINVAL, seen with QEMU 11.1), and asks again with the bigger
//! buffer when the returned argsz grew.
//!
//! The *request* payload is sized by the header's message size, not by `argsz` (the spec's
//! "Message sizes"): QEMU sends the fixed part only, libvfio-user's client library its whole
//! `argsz` buffer. Both are accepted: a request is at least its fixed part, and bytes past it
//! (up to [`MAX_ARGSZ`]) are ignored ([`fixed_part`]).

use super::bytes::{u32_at, u64_at, PutLe};
use super::WireError;

pub const DEVICE_INFO_SIZE: usize = 16;
pub const REGION_INFO_SIZE: usize = 32;
pub const IRQ_INFO_SIZE: usize = 16;
/// Largest argsz we honour; anything bigger is a lie (no reply of ours comes close).
pub const MAX_ARGSZ: u32 = 64 * 1024;
const CAP_SPARSE_MMAP_ID: u16 = vfio_bindings::bindings::vfio::VFIO_REGION_INFO_CAP_SPARSE_MMAP as u16;
const CAP_SPARSE_MMAP_VERSION: u16 = 1;
const CAP_HEADER_SIZE: usize = 8;
const SPARSE_FIXED: usize = CAP_HEADER_SIZE + 8;

fn check_argsz(command: &'static str, argsz: u32, min: usize) -> Result<(), WireError> {
    if (argsz as usize) < min || argsz > MAX_ARGSZ {
        return Err(WireError::BadArgsz {
            command,
            argsz,
            min: min as u32,
            max: MAX_ARGSZ,
        });
    }
    Ok(())
}

/// The fixed part of a request that may carry more (see the module docs): at least `fixed`
/// bytes, at most `MAX_ARGSZ`; what follows the fixed part is ignored.
fn fixed_part<'p>(command: &'static str, p: &'p [u8], fixed: usize) -> Result<&'p [u8], WireError> {
    if p.len() < fixed {
        return Err(WireError::TooShort {
            command,
            min: fixed,
            actual: p.len(),
        });
    }
    if p.len() > MAX_ARGSZ as usize {
        return Err(WireError::WrongSize {
            command,
            expected: fixed,
            actual: p.len(),
        });
    }
    Ok(&p[..fixed])
}

/// `DEVICE_GET_INFO` (request: argsz only matters; reply: all fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfoMsg {
    pub argsz: u32,
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
}

impl DeviceInfoMsg {
    pub fn parse(p: &[u8]) -> Result<DeviceInfoMsg, WireError> {
        let command = "DEVICE_GET_INFO";
        let p = fixed_part(command, p, DEVICE_INFO_SIZE)?;
        let m = DeviceInfoMsg {
            argsz: u32_at(p, 0),
            flags: u32_at(p, 4),
            num_regions: u32_at(p, 8),
            num_irqs: u32_at(p, 12),
        };
        check_argsz(command, m.argsz, DEVICE_INFO_SIZE)?;
        Ok(m)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(DEVICE_INFO_SIZE);
        v.put_u32(self.argsz);
        v.put_u32(self.flags);
        v.put_u32(self.num_regions);
        v.put_u32(self.num_irqs);
        v
    }
}

/// One sparse-mmap area: offset and size relative to the region start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseArea {
    pub offset: u64,
    pub size: u64,
}

/// `DEVICE_GET_REGION_INFO`: the fixed part plus (in replies) the sparse-mmap areas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfoMsg {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    /// File offset of the region in the fd sent with the reply.
    pub offset: u64,
    pub sparse: Vec<SparseArea>,
}

impl RegionInfoMsg {
    /// Parses a request: the fixed part (a longer payload, such as libvfio-user's whole
    /// buffer, is accepted and the rest ignored); argsz at least the fixed part.
    pub fn parse_request(p: &[u8]) -> Result<RegionInfoMsg, WireError> {
        let command = "DEVICE_GET_REGION_INFO";
        let p = fixed_part(command, p, REGION_INFO_SIZE)?;
        let m = RegionInfoMsg {
            argsz: u32_at(p, 0),
            flags: u32_at(p, 4),
            index: u32_at(p, 8),
            cap_offset: u32_at(p, 12),
            size: u64_at(p, 16),
            offset: u64_at(p, 24),
            sparse: Vec::new(),
        };
        check_argsz(command, m.argsz, REGION_INFO_SIZE)?;
        Ok(m)
    }

    /// The argsz a reply with these areas needs.
    pub fn needed_argsz(sparse: &[SparseArea]) -> u32 {
        if sparse.is_empty() {
            REGION_INFO_SIZE as u32
        } else {
            (REGION_INFO_SIZE + SPARSE_FIXED + 16 * sparse.len()) as u32
        }
    }

    /// Whether a reply for a client buffer of `client_argsz` bytes is complete (carries the
    /// capabilities): only a complete reply carries the region's fd (see `server::handlers`).
    pub fn reply_is_complete(&self, client_argsz: u32) -> bool {
        client_argsz >= Self::needed_argsz(&self.sparse)
    }

    /// Encodes a reply for a client buffer of `client_argsz` bytes. `self.flags` should hold
    /// the region flags; CAPS is added here when areas exist.
    pub fn encode_reply(&self, client_argsz: u32) -> Vec<u8> {
        let needed = Self::needed_argsz(&self.sparse);
        let fits = client_argsz >= needed;
        let has_caps = !self.sparse.is_empty();
        let mut flags = self.flags & !crate::info::REGION_FLAG_CAPS;
        if has_caps && fits {
            flags |= crate::info::REGION_FLAG_CAPS;
        }
        let mut v = Vec::with_capacity(needed as usize);
        v.put_u32(needed);
        v.put_u32(flags);
        v.put_u32(self.index);
        v.put_u32(if has_caps && fits { REGION_INFO_SIZE as u32 } else { 0 });
        v.put_u64(self.size);
        v.put_u64(self.offset);
        if has_caps && fits {
            v.put_u16(CAP_SPARSE_MMAP_ID);
            v.put_u16(CAP_SPARSE_MMAP_VERSION);
            v.put_u32(0); // next: last capability
            v.put_u32(self.sparse.len() as u32);
            v.put_u32(0); // reserved
            for a in &self.sparse {
                v.put_u64(a.offset);
                v.put_u64(a.size);
            }
        }
        v
    }

    /// Parses a reply (client side), including the sparse-mmap capability if present.
    pub fn parse_reply(p: &[u8]) -> Result<RegionInfoMsg, WireError> {
        let command = "DEVICE_GET_REGION_INFO reply";
        if p.len() < REGION_INFO_SIZE {
            return Err(WireError::TooShort {
                command,
                min: REGION_INFO_SIZE,
                actual: p.len(),
            });
        }
        let mut m = RegionInfoMsg {
            argsz: u32_at(p, 0),
            flags: u32_at(p, 4),
            index: u32_at(p, 8),
            cap_offset: u32_at(p, 12),
            size: u64_at(p, 16),
            offset: u64_at(p, 24),
            sparse: Vec::new(),
        };
        let mut cap = m.cap_offset as usize;
        let mut hops = 0;
        while cap != 0 {
            hops += 1;
            if hops > 16 || cap < REGION_INFO_SIZE || cap + CAP_HEADER_SIZE > p.len() {
                return Err(WireError::Invalid {
                    command,
                    what: "capability chain leaves the reply",
                });
            }
            let id = u32_at(p, cap) & 0xffff;
            let next = u32_at(p, cap + 4) as usize;
            if id == CAP_SPARSE_MMAP_ID as u32 {
                if cap + SPARSE_FIXED > p.len() {
                    return Err(WireError::Invalid {
                        command,
                        what: "sparse capability truncated",
                    });
                }
                let n = u32_at(p, cap + 8) as usize;
                let end = n.checked_mul(16).and_then(|b| b.checked_add(cap + SPARSE_FIXED));
                if end.is_none_or(|e| e > p.len()) {
                    return Err(WireError::Invalid {
                        command,
                        what: "sparse areas leave the reply",
                    });
                }
                for i in 0..n {
                    let at = cap + SPARSE_FIXED + 16 * i;
                    m.sparse.push(SparseArea {
                        offset: u64_at(p, at),
                        size: u64_at(p, at + 8),
                    });
                }
            }
            cap = next;
        }
        Ok(m)
    }
}

/// `DEVICE_GET_IRQ_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqInfoMsg {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub count: u32,
}

impl IrqInfoMsg {
    pub fn parse(p: &[u8]) -> Result<IrqInfoMsg, WireError> {
        let command = "DEVICE_GET_IRQ_INFO";
        let p = fixed_part(command, p, IRQ_INFO_SIZE)?;
        let m = IrqInfoMsg {
            argsz: u32_at(p, 0),
            flags: u32_at(p, 4),
            index: u32_at(p, 8),
            count: u32_at(p, 12),
        };
        check_argsz(command, m.argsz, IRQ_INFO_SIZE)?;
        Ok(m)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(IRQ_INFO_SIZE);
        v.put_u32(self.argsz);
        v.put_u32(self.flags);
        v.put_u32(self.index);
        v.put_u32(self.count);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(sparse: Vec<SparseArea>) -> RegionInfoMsg {
        RegionInfoMsg {
            argsz: 0,
            flags: 7,
            index: 2,
            cap_offset: 0,
            size: 0x10000,
            offset: 0x4000,
            sparse,
        }
    }

    #[test]
    fn region_info_with_sparse_areas_round_trips() {
        let m = info(vec![
            SparseArea {
                offset: 0,
                size: 0x1000,
            },
            SparseArea {
                offset: 0x8000,
                size: 0x8000,
            },
        ]);
        let r = RegionInfoMsg::parse_reply(&m.encode_reply(1024)).unwrap();
        assert_eq!(r.sparse, m.sparse);
        assert_eq!(r.argsz, RegionInfoMsg::needed_argsz(&m.sparse));
        assert_ne!(r.flags & crate::info::REGION_FLAG_CAPS, 0);
    }

    #[test]
    fn region_info_argsz_too_small_for_caps_reports_needed_size() {
        let m = info(vec![SparseArea {
            offset: 0,
            size: 0x1000,
        }]);
        let enc = m.encode_reply(REGION_INFO_SIZE as u32);
        assert_eq!(enc.len(), REGION_INFO_SIZE);
        let r = RegionInfoMsg::parse_reply(&enc).unwrap();
        assert_eq!(r.argsz, 64);
        assert_eq!(r.cap_offset, 0);
        assert_eq!(
            r.flags & crate::info::REGION_FLAG_CAPS,
            0,
            "QEMU refuses CAPS without caps"
        );
    }

    #[test]
    fn region_info_request_with_tiny_argsz_is_rejected() {
        let mut p = vec![0u8; REGION_INFO_SIZE];
        p[0] = 8;
        assert!(matches!(
            RegionInfoMsg::parse_request(&p),
            Err(WireError::BadArgsz { .. })
        ));
    }

    #[test]
    fn region_info_reply_with_cap_loop_is_rejected() {
        let m = info(vec![SparseArea {
            offset: 0,
            size: 0x1000,
        }]);
        let mut enc = m.encode_reply(1024);
        enc[36..40].copy_from_slice(&32u32.to_le_bytes()); // next -> itself
        assert!(RegionInfoMsg::parse_reply(&enc).is_err());
    }
}
