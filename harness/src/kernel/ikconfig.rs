//! The kernel config embedded in a bzImage by CONFIG_IKCONFIG: the compressed payload
//! (boot protocol >= 2.08 gives its offset and length) is decompressed, and the gzip stream
//! between the `IKCFG_ST` and `IKCFG_ED` markers in the resulting vmlinux is the .config.

use std::io::Read;

/// Decompressed vmlinux images larger than this are refused (a real one is ~60 MB).
const MAX_VMLINUX: u64 = 512 << 20;
const MAX_CONFIG: u64 = 16 << 20;

/// Why no config could be read from an image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IkconfigError {
    #[error("the boot header is too old or malformed ({0})")]
    Header(&'static str),
    #[error("the kernel payload is compressed with {0}, which phyr-harness cannot read")]
    Unsupported(&'static str),
    #[error("decompressing the kernel payload failed: {0}")]
    Decompress(String),
    #[error("the kernel was built without CONFIG_IKCONFIG (no IKCFG_ST marker)")]
    NotEmbedded,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The compressed payload of a bzImage.
fn payload(b: &[u8]) -> Result<&[u8], IkconfigError> {
    let version = b
        .get(0x206..0x208)
        .map(|v| u16::from_le_bytes([v[0], v[1]]))
        .ok_or(IkconfigError::Header("short file"))?;
    if version < 0x208 {
        return Err(IkconfigError::Header("boot protocol before 2.08 has no payload fields"));
    }
    let setup_sects = match b[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let pm = (setup_sects + 1) * 512;
    let off = u32_at(b, 0x248).ok_or(IkconfigError::Header("no payload_offset"))? as usize;
    let len = u32_at(b, 0x24c).ok_or(IkconfigError::Header("no payload_length"))? as usize;
    let start = pm
        .checked_add(off)
        .ok_or(IkconfigError::Header("payload offset overflows"))?;
    let end = start
        .checked_add(len)
        .ok_or(IkconfigError::Header("payload length overflows"))?;
    b.get(start..end)
        .ok_or(IkconfigError::Header("payload lies outside the file"))
}

fn read_limited(r: impl Read, limit: u64) -> Result<Vec<u8>, IkconfigError> {
    let mut out = Vec::new();
    r.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| IkconfigError::Decompress(e.to_string()))?;
    Ok(out)
}

fn decompress(p: &[u8]) -> Result<Vec<u8>, IkconfigError> {
    match p {
        [0x1f, 0x8b, ..] => read_limited(flate2::read::GzDecoder::new(p), MAX_VMLINUX),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            let d = ruzstd::decoding::StreamingDecoder::new(p).map_err(|e| IkconfigError::Decompress(e.to_string()))?;
            read_limited(d, MAX_VMLINUX)
        }
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => {
            // The kernel appends the uncompressed size (4 bytes) after the xz stream.
            let mut out = Vec::new();
            let stream = if p.len() > 4 { &p[..p.len() - 4] } else { p };
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(stream), &mut out)
                .or_else(|_| {
                    out.clear();
                    lzma_rs::xz_decompress(&mut std::io::BufReader::new(p), &mut out)
                })
                .map_err(|e| IkconfigError::Decompress(e.to_string()))?;
            Ok(out)
        }
        [0x5d, 0x00, 0x00, ..] => Err(IkconfigError::Unsupported("lzma")),
        [b'B', b'Z', b'h', ..] => Err(IkconfigError::Unsupported("bzip2")),
        [0x02, 0x21, 0x4c, 0x18, ..] => Err(IkconfigError::Unsupported("lz4")),
        [0x89, b'L', b'Z', b'O', ..] => Err(IkconfigError::Unsupported("lzo")),
        [0x7f, b'E', b'L', b'F', ..] => Ok(p.to_vec()),
        _ => Err(IkconfigError::Unsupported("an unknown format")),
    }
}

/// The embedded .config of a bzImage.
pub fn from_bzimage(image: &[u8]) -> Result<String, IkconfigError> {
    let vmlinux = decompress(payload(image)?)?;
    from_vmlinux(&vmlinux)
}

fn from_vmlinux(vmlinux: &[u8]) -> Result<String, IkconfigError> {
    let pos = vmlinux
        .windows(8)
        .position(|w| w == b"IKCFG_ST")
        .ok_or(IkconfigError::NotEmbedded)?;
    let gz = &vmlinux[pos + 8..];
    let text = read_limited(flate2::read::GzDecoder::new(gz), MAX_CONFIG)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A minimal bzImage: boot header fields plus a payload.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[0x1f1] = 1; // setup_sects: protected-mode code at 0x400
        b[0x1fe] = 0x55;
        b[0x1ff] = 0xaa;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&0x10u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0u8; 0x10]);
        b.extend_from_slice(payload);
        b
    }

    fn vmlinux_with_config() -> Vec<u8> {
        let mut v = b"\x7fELF....kernel text....IKCFG_ST".to_vec();
        v.extend(gzip(b"CONFIG_VFIO=m\nCONFIG_INTEL_IOMMU=y\n"));
        v.extend_from_slice(b"IKCFG_ED....more");
        v
    }

    #[test]
    fn reads_config_from_gzip_and_xz_payloads() {
        let img = bzimage(&gzip(&vmlinux_with_config()));
        assert!(from_bzimage(&img).unwrap().contains("CONFIG_INTEL_IOMMU=y"));
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut vmlinux_with_config().as_slice(), &mut xz).unwrap();
        xz.extend_from_slice(&1234u32.to_le_bytes());
        assert!(from_bzimage(&bzimage(&xz)).unwrap().contains("CONFIG_VFIO=m"));
    }

    #[test]
    fn says_why_when_there_is_no_config() {
        assert_eq!(
            from_bzimage(&bzimage(&gzip(b"\x7fELF no marker"))),
            Err(IkconfigError::NotEmbedded)
        );
        assert_eq!(
            from_bzimage(&bzimage(b"BZh91AY&SY")),
            Err(IkconfigError::Unsupported("bzip2"))
        );
        let mut bad = bzimage(b"x");
        bad[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(from_bzimage(&bad), Err(IkconfigError::Header(_))));
        assert!(matches!(from_bzimage(&[0u8; 16]), Err(IkconfigError::Header(_))));
        assert!(matches!(
            from_bzimage(&bzimage(&[0x1f, 0x8b, 1, 2])),
            Err(IkconfigError::Decompress(_))
        ));
    }

    #[test]
    fn debian_kernel_reports_no_ikconfig_if_cached() {
        // Uses the provisioned Debian kernel when present (zstd payload, IKCONFIG unset).
        let Some(home) = std::env::var_os("HOME") else { return };
        let dir = std::path::Path::new(&home).join(".cache/phyr/kernel/root/boot");
        let Some(img) = std::fs::read_dir(&dir).ok().and_then(|rd| {
            rd.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
        }) else {
            return;
        };
        assert_eq!(
            from_bzimage(&std::fs::read(img).unwrap()),
            Err(IkconfigError::NotEmbedded)
        );
    }
}
