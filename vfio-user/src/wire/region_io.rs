//! REGION_READ, REGION_WRITE and REGION_WRITE_MULTI.

use super::bytes::{u32_at, u64_at, PutLe};
use super::WireError;

/// The fixed part: offset u64, region u32, count u32.
pub const REGION_ACCESS_SIZE: usize = 16;
/// Data bytes per WRITE_MULTI entry (QEMU's VFIO_USER_MULTI_DATA).
pub const MULTI_DATA: usize = 8;
/// Most entries in one WRITE_MULTI (QEMU's VFIO_USER_MULTI_MAX).
pub const MULTI_MAX: usize = 200;
const MULTI_ENTRY: usize = 16 + MULTI_DATA;

/// A region access: a REGION_READ request (no data), a REGION_WRITE request (data), or
/// their replies (read reply: data; write reply: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionAccess {
    pub offset: u64,
    pub region: u32,
    pub count: u32,
    pub data: Vec<u8>,
}

impl RegionAccess {
    fn fixed(p: &[u8], command: &'static str, max: u32) -> Result<RegionAccess, WireError> {
        if p.len() < REGION_ACCESS_SIZE {
            return Err(WireError::TooShort {
                command,
                min: REGION_ACCESS_SIZE,
                actual: p.len(),
            });
        }
        let a = RegionAccess {
            offset: u64_at(p, 0),
            region: u32_at(p, 8),
            count: u32_at(p, 12),
            data: Vec::new(),
        };
        if a.count > max {
            return Err(WireError::CountTooLarge {
                command,
                count: a.count as u64,
                max: max as u64,
            });
        }
        Ok(a)
    }

    /// A REGION_READ request: exactly the fixed part, count at most `max`.
    pub fn parse_read(p: &[u8], max: u32) -> Result<RegionAccess, WireError> {
        let a = Self::fixed(p, "REGION_READ", max)?;
        if p.len() != REGION_ACCESS_SIZE {
            return Err(WireError::WrongSize {
                command: "REGION_READ",
                expected: REGION_ACCESS_SIZE,
                actual: p.len(),
            });
        }
        Ok(a)
    }

    /// A REGION_WRITE request: the fixed part plus exactly `count` data bytes.
    pub fn parse_write(p: &[u8], max: u32) -> Result<RegionAccess, WireError> {
        let mut a = Self::fixed(p, "REGION_WRITE", max)?;
        let expected = REGION_ACCESS_SIZE + a.count as usize;
        if p.len() != expected {
            return Err(WireError::WrongSize {
                command: "REGION_WRITE",
                expected,
                actual: p.len(),
            });
        }
        a.data = p[REGION_ACCESS_SIZE..].to_vec();
        Ok(a)
    }

    /// A REGION_READ reply (client side): fixed part plus `count` bytes, count <= asked.
    pub fn parse_read_reply(p: &[u8], asked: u32) -> Result<RegionAccess, WireError> {
        let mut a = Self::fixed(p, "REGION_READ reply", asked)?;
        let expected = REGION_ACCESS_SIZE + a.count as usize;
        if p.len() != expected {
            return Err(WireError::WrongSize {
                command: "REGION_READ reply",
                expected,
                actual: p.len(),
            });
        }
        a.data = p[REGION_ACCESS_SIZE..].to_vec();
        Ok(a)
    }

    /// A REGION_READ reply of `count` data bytes that `read` fills in place: one buffer for
    /// the whole reply, no copy of the data.
    pub fn encode_read_reply<E>(
        offset: u64,
        region: u32,
        count: u32,
        read: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Vec<u8>, E> {
        let mut v = Vec::with_capacity(REGION_ACCESS_SIZE + count as usize);
        v.put_u64(offset);
        v.put_u32(region);
        v.put_u32(count);
        v.resize(REGION_ACCESS_SIZE + count as usize, 0);
        read(&mut v[REGION_ACCESS_SIZE..])?;
        Ok(v)
    }

    /// Encodes the fixed part followed by `data` (which may be empty).
    pub fn encode(offset: u64, region: u32, count: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(REGION_ACCESS_SIZE + data.len());
        v.put_u64(offset);
        v.put_u32(region);
        v.put_u32(count);
        v.extend_from_slice(data);
        v
    }
}

/// One write of a WRITE_MULTI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOne {
    pub offset: u64,
    pub region: u32,
    pub count: u32,
    pub data: [u8; MULTI_DATA],
}

impl WriteOne {
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.count as usize]
    }
}

/// REGION_WRITE_MULTI: `wr_cnt u64`, then `wr_cnt` entries of `{offset, region, count, data[8]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteMulti {
    pub writes: Vec<WriteOne>,
}

impl WriteMulti {
    pub fn parse(p: &[u8]) -> Result<WriteMulti, WireError> {
        let command = "REGION_WRITE_MULTI";
        if p.len() < 8 {
            return Err(WireError::TooShort {
                command,
                min: 8,
                actual: p.len(),
            });
        }
        let n = u64_at(p, 0);
        if n == 0 || n > MULTI_MAX as u64 {
            return Err(WireError::CountTooLarge {
                command,
                count: n,
                max: MULTI_MAX as u64,
            });
        }
        let expected = 8 + MULTI_ENTRY * n as usize;
        if p.len() != expected {
            return Err(WireError::WrongSize {
                command,
                expected,
                actual: p.len(),
            });
        }
        let mut writes = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            let at = 8 + MULTI_ENTRY * i;
            let count = u32_at(p, at + 12);
            if count == 0 || count as usize > MULTI_DATA {
                return Err(WireError::CountTooLarge {
                    command,
                    count: count as u64,
                    max: MULTI_DATA as u64,
                });
            }
            let mut data = [0u8; MULTI_DATA];
            data.copy_from_slice(&p[at + 16..at + 16 + MULTI_DATA]);
            writes.push(WriteOne {
                offset: u64_at(p, at),
                region: u32_at(p, at + 8),
                count,
                data,
            });
        }
        Ok(WriteMulti { writes })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + MULTI_ENTRY * self.writes.len());
        v.put_u64(self.writes.len() as u64);
        for w in &self.writes {
            v.put_u64(w.offset);
            v.put_u32(w.region);
            v.put_u32(w.count);
            v.extend_from_slice(&w.data);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_write_with_short_data_is_rejected() {
        let mut p = RegionAccess::encode(0, 0, 4, &[1, 2]);
        assert!(matches!(
            RegionAccess::parse_write(&p, 1 << 20),
            Err(WireError::WrongSize { .. })
        ));
        p.extend_from_slice(&[3, 4]);
        assert_eq!(RegionAccess::parse_write(&p, 1 << 20).unwrap().data, vec![1, 2, 3, 4]);
    }

    #[test]
    fn region_read_count_past_max_is_rejected() {
        let p = RegionAccess::encode(0, 0, (1 << 20) + 1, &[]);
        assert!(matches!(
            RegionAccess::parse_read(&p, 1 << 20),
            Err(WireError::CountTooLarge { .. })
        ));
    }

    #[test]
    fn write_multi_round_trips_and_refuses_lies() {
        let w = WriteMulti {
            writes: vec![WriteOne {
                offset: 8,
                region: 0,
                count: 4,
                data: [1, 2, 3, 4, 0, 0, 0, 0],
            }],
        };
        assert_eq!(WriteMulti::parse(&w.encode()).unwrap(), w);
        let mut p = w.encode();
        p[0] = 2; // wr_cnt lies
        assert!(WriteMulti::parse(&p).is_err());
        let mut p = w.encode();
        p[8 + 12] = 9; // count past 8
        assert!(WriteMulti::parse(&p).is_err());
    }
}
