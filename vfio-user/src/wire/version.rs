//! VERSION: major/minor and the NUL-terminated JSON capabilities object.
//!
//! `{"capabilities": {"max_msg_fds": N, "max_data_xfer_size": N, "pgsizes": N,
//! "max_dma_maps": N, "migration": {...}, "write_multiple": bool}}`. Unknown keys are
//! ignored (as QEMU does); known keys with the wrong type are refused.

use serde_json::{Map, Value};

use super::bytes::{u16_at, PutLe};
use super::WireError;

/// Negotiable limits. `Default` gives the spec's defaults for a peer that omits a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub max_msg_fds: u32,
    pub max_data_xfer_size: u32,
    pub pgsizes: u64,
    pub max_dma_maps: u32,
    pub write_multiple: bool,
}

impl Default for Capabilities {
    fn default() -> Capabilities {
        Capabilities {
            max_msg_fds: 1,
            max_data_xfer_size: 1 << 20,
            pgsizes: 4096,
            max_dma_maps: 65535,
            write_multiple: false,
        }
    }
}

impl Capabilities {
    /// What this crate advertises.
    pub fn ours() -> Capabilities {
        Capabilities {
            max_msg_fds: super::limits::MAX_MSG_FDS,
            max_data_xfer_size: super::limits::MAX_DATA_XFER,
            pgsizes: super::limits::PAGE_SIZE,
            max_dma_maps: super::limits::MAX_DMA_MAPS,
            write_multiple: true,
        }
    }

    /// The limits both sides can live with.
    pub fn negotiate(&self, peer: &Capabilities) -> Capabilities {
        Capabilities {
            max_msg_fds: self.max_msg_fds.min(peer.max_msg_fds),
            max_data_xfer_size: self.max_data_xfer_size.min(peer.max_data_xfer_size),
            pgsizes: self.pgsizes,
            max_dma_maps: self.max_dma_maps.min(peer.max_dma_maps),
            write_multiple: self.write_multiple && peer.write_multiple,
        }
    }

    fn to_json(self) -> String {
        // Never advertise migration: we do not implement it.
        serde_json::json!({
            "capabilities": {
                "max_msg_fds": self.max_msg_fds,
                "max_data_xfer_size": self.max_data_xfer_size,
                "pgsizes": self.pgsizes,
                "max_dma_maps": self.max_dma_maps,
                "write_multiple": self.write_multiple,
            }
        })
        .to_string()
    }
}

/// A VERSION request or reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
    pub caps: Capabilities,
}

fn bad(what: impl Into<String>) -> WireError {
    WireError::VersionBadCapability { what: what.into() }
}

fn get_u64(caps: &Map<String, Value>, key: &str) -> Result<Option<u64>, WireError> {
    match caps.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("{key} is not an unsigned integer"))),
    }
}

fn get_u32(caps: &Map<String, Value>, key: &str) -> Result<Option<u32>, WireError> {
    match get_u64(caps, key)? {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| bad(format!("{key} {v} out of range"))),
    }
}

impl Version {
    pub fn parse(payload: &[u8]) -> Result<Version, WireError> {
        if payload.len() < 4 {
            return Err(WireError::TooShort {
                command: "VERSION",
                min: 4,
                actual: payload.len(),
            });
        }
        let major = u16_at(payload, 0);
        let minor = u16_at(payload, 2);
        if major != 0 {
            return Err(WireError::VersionUnsupported { major });
        }
        let text = &payload[4..];
        if text.is_empty() {
            return Ok(Version {
                major,
                minor,
                caps: Capabilities::default(),
            });
        }
        let Some((&0, json)) = text.split_last() else {
            return Err(WireError::VersionNotNulTerminated);
        };
        let value: Value =
            serde_json::from_slice(json).map_err(|e| WireError::VersionBadJson { reason: e.to_string() })?;
        let Value::Object(top) = value else {
            return Err(bad("capabilities JSON is not an object"));
        };
        let mut caps = Capabilities::default();
        let Some(inner) = top.get("capabilities") else {
            return Ok(Version { major, minor, caps });
        };
        let Value::Object(inner) = inner else {
            return Err(bad("\"capabilities\" is not an object"));
        };
        if let Some(v) = get_u32(inner, "max_msg_fds")? {
            caps.max_msg_fds = v;
        }
        if let Some(v) = get_u32(inner, "max_data_xfer_size")? {
            if v == 0 {
                return Err(bad("max_data_xfer_size is 0"));
            }
            caps.max_data_xfer_size = v;
        }
        if let Some(v) = get_u64(inner, "pgsizes")? {
            if v & super::limits::PAGE_SIZE == 0 {
                return Err(bad(format!("pgsizes {v:#x} lacks 4 KiB pages")));
            }
            caps.pgsizes = v;
        }
        if let Some(v) = get_u32(inner, "max_dma_maps")? {
            caps.max_dma_maps = v;
        }
        if let Some(v) = inner.get("write_multiple") {
            caps.write_multiple = v.as_bool().ok_or_else(|| bad("write_multiple is not a boolean"))?;
        }
        if let Some(m) = inner.get("migration") {
            if !m.is_object() {
                return Err(bad("migration is not an object"));
            }
        }
        Ok(Version { major, minor, caps })
    }

    pub fn encode(&self) -> Vec<u8> {
        let json = self.caps.to_json();
        let mut v = Vec::with_capacity(4 + json.len() + 1);
        v.put_u16(self.major);
        v.put_u16(self.minor);
        v.extend_from_slice(json.as_bytes());
        v.push(0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(json: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(json);
        p
    }

    #[test]
    fn qemu_capabilities_parse() {
        let json = br#"{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"migration":{"pgsize":4096,"max_bitmap_size":268435456},"write_multiple":true}}"#;
        let mut p = payload(json);
        p.push(0);
        let v = Version::parse(&p).unwrap();
        assert_eq!(v.caps.max_msg_fds, 16);
        assert!(v.caps.write_multiple);
    }

    #[test]
    fn encode_round_trips_and_never_mentions_migration() {
        let v = Version {
            major: 0,
            minor: 0,
            caps: Capabilities::ours(),
        };
        let enc = v.encode();
        assert!(!String::from_utf8_lossy(&enc).contains("migration"));
        assert_eq!(Version::parse(&enc).unwrap(), v);
    }

    #[test]
    fn version_without_nul_is_rejected() {
        assert_eq!(Version::parse(&payload(b"{}")), Err(WireError::VersionNotNulTerminated));
    }

    #[test]
    fn version_with_bad_json_is_rejected() {
        assert!(matches!(
            Version::parse(&payload(b"{not json\0")),
            Err(WireError::VersionBadJson { .. })
        ));
        assert!(matches!(
            Version::parse(&payload(b"{}\0{}\0")),
            Err(WireError::VersionBadJson { .. })
        ));
    }

    #[test]
    fn version_with_wrong_capability_types_is_rejected() {
        for json in [
            &br#"[1]"#[..],
            br#"{"capabilities":3}"#,
            br#"{"capabilities":{"max_msg_fds":-1}}"#,
            br#"{"capabilities":{"max_data_xfer_size":"big"}}"#,
            br#"{"capabilities":{"max_dma_maps":99999999999}}"#,
            br#"{"capabilities":{"write_multiple":1}}"#,
            br#"{"capabilities":{"pgsizes":512}}"#,
        ] {
            let mut p = payload(json);
            p.push(0);
            assert!(
                matches!(Version::parse(&p), Err(WireError::VersionBadCapability { .. })),
                "{json:?}"
            );
        }
    }

    #[test]
    fn version_major_1_is_unsupported() {
        assert_eq!(
            Version::parse(&[1, 0, 0, 0]),
            Err(WireError::VersionUnsupported { major: 1 })
        );
    }

    #[test]
    fn truncated_version_is_rejected() {
        assert!(matches!(Version::parse(&[0, 0]), Err(WireError::TooShort { .. })));
    }
}
