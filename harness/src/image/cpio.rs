//! A writer for the `newc` cpio format, the one the Linux kernel unpacks as an initramfs.
//!
//! Each entry is a 110-byte ASCII header (`070701` then 13 eight-digit hex fields), the
//! NUL-terminated name padded to 4 bytes, then the data padded to 4 bytes. The archive ends
//! with an entry named `TRAILER!!!`. Uncompressed archives are accepted by every kernel.

use std::io::{self, Write};

/// Why an entry could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("cpio entry {name:?}: {what}")]
    BadEntry { name: String, what: &'static str },
    #[error("writing the cpio archive: {0}")]
    Io(#[from] io::Error),
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const TRAILER: &str = "TRAILER!!!";

/// Streams a newc archive to `W`. Call [`CpioWriter::finish`] to write the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            written: 0,
            next_ino: 1,
        }
    }

    /// A directory, e.g. `dir("lib/modules", 0o755)`. Parents must come first.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// A regular file with the given permission bits.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link `name -> target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        if target.is_empty() {
            return Err(CpioError::BadEntry {
                name: name.into(),
                what: "empty symlink target",
            });
        }
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node (the kernel creates it while unpacking; no root needed here).
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> Result<(), CpioError> {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.raw_entry(TRAILER, 0, 0, 1, (0, 0), &[])?;
        // Pad the archive to a 512-byte multiple, as cpio(1) does; the kernel ignores the zeros.
        let pad = (512 - (self.written % 512)) % 512;
        self.out.write_all(&vec![0u8; pad as usize])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> Result<(), CpioError> {
        let bad = |what| CpioError::BadEntry {
            name: name.into(),
            what,
        };
        if name.is_empty() || name.starts_with('/') {
            return Err(bad("names must be relative and non-empty"));
        }
        if name.contains('\0') {
            return Err(bad("name contains a NUL byte"));
        }
        if name == TRAILER {
            return Err(bad("reserved name"));
        }
        if name.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(bad("name has an empty or `..` component"));
        }
        let ino = self.next_ino;
        self.next_ino = self.next_ino.checked_add(1).ok_or_else(|| bad("too many entries"))?;
        self.raw_entry(name, ino, mode, nlink, rdev, data)
    }

    fn raw_entry(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), CpioError> {
        let size = u32::try_from(data.len()).map_err(|_| CpioError::BadEntry {
            name: name.into(),
            what: "larger than 4 GiB (newc limit)",
        })?;
        let namesize = u32::try_from(name.len() + 1).map_err(|_| CpioError::BadEntry {
            name: name.into(),
            what: "name too long",
        })?;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad4()?;
        self.put(data)?;
        Ok(self.pad4()?)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let pad = ((4 - (self.written % 4)) % 4) as usize;
        self.put(&[0u8; 3][..pad])
    }
}

/// One entry read back from an archive (tests read archives back with it).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    pub name: String,
    pub mode: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Parses a newc archive written by [`CpioWriter`]; stops at the trailer.
#[cfg(test)]
pub fn read_archive(mut bytes: &[u8]) -> Result<Vec<CpioEntry>, String> {
    let mut out = Vec::new();
    let start_len = bytes.len();
    loop {
        let offset = start_len - bytes.len();
        if bytes.len() < 110 || &bytes[..6] != b"070701" {
            return Err(format!("no newc header at offset {offset}"));
        }
        let field = |i: usize| -> Result<u32, String> {
            let s = std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).map_err(|e| e.to_string())?;
            u32::from_str_radix(s, 16).map_err(|e| format!("field {i} at offset {offset}: {e}"))
        };
        let (mode, size, rmaj, rmin, namesize) = (
            field(1)?,
            field(6)? as usize,
            field(9)?,
            field(10)?,
            field(11)? as usize,
        );
        let name_end = 110 + namesize;
        let data_start = name_end.div_ceil(4) * 4;
        let data_end = data_start + size;
        if bytes.len() < data_end || namesize == 0 {
            return Err(format!("entry at offset {offset} runs past the end"));
        }
        let name = String::from_utf8(bytes[110..name_end - 1].to_vec()).map_err(|e| e.to_string())?;
        if name == TRAILER {
            return Ok(out);
        }
        out.push(CpioEntry {
            name,
            mode,
            rdev: (rmaj, rmin),
            data: bytes[data_start..data_end].to_vec(),
        });
        let next = (data_end.div_ceil(4) * 4).min(bytes.len());
        bytes = &bytes[next..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_entry_kind() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("bin", 0o755).unwrap();
        w.file("bin/busybox", 0o755, b"\x7fELF-odd-length").unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.file("empty", 0o644, b"").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let e = read_archive(&bytes).unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].name, "bin");
        assert_eq!(e[0].mode, 0o040_755);
        assert_eq!(e[1].data, b"\x7fELF-odd-length");
        assert_eq!(e[1].mode, 0o100_755);
        assert_eq!((e[2].mode, e[2].data.as_slice()), (0o120_777, &b"busybox"[..]));
        assert_eq!((e[3].mode, e[3].rdev), (0o020_600, (5, 1)));
        assert!(e[4].data.is_empty());
    }

    #[test]
    fn header_and_data_are_four_byte_aligned() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("a", 0o644, b"xyz").unwrap();
        let bytes = w.finish().unwrap();
        // 110-byte header + "a\0" = 112 (aligned), data 3 bytes + 1 pad, then the trailer header.
        assert_eq!(&bytes[112..115], b"xyz");
        assert_eq!(&bytes[116..122], b"070701");
    }

    #[test]
    fn rejects_absolute_and_dotdot_names() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(matches!(
            w.file("/etc/passwd", 0o644, b""),
            Err(CpioError::BadEntry { .. })
        ));
        assert!(matches!(w.file("a/../b", 0o644, b""), Err(CpioError::BadEntry { .. })));
        assert!(matches!(
            w.file("TRAILER!!!", 0o644, b""),
            Err(CpioError::BadEntry { .. })
        ));
        assert!(matches!(w.symlink("x", ""), Err(CpioError::BadEntry { .. })));
    }
}
