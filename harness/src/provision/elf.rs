//! What a dynamically linked ELF64 program needs from the host: whether it is dynamically
//! linked at all (PT_INTERP), its DT_NEEDED libraries and the newest `GLIBC_x.y` symbol
//! version it asks for (`.gnu.version_r`). Read from the file,
//! bounds-checked throughout, so deciding whether a tool runs on the host's libc never means
//! running it.

use crate::provision::version::Version;

const SHT_DYNAMIC: u32 = 6;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const DT_NEEDED: u64 = 1;
/// More entries than any real program has: a loop bound against hostile files.
const MAX_ENTRIES: usize = 4096;

struct Section {
    kind: u32,
    offset: usize,
    size: usize,
    link: usize,
    info: usize,
}

fn u16_at(b: &[u8], off: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(off..off.checked_add(2)?)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], off: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?) as usize)
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
}

fn sections(b: &[u8]) -> Option<Vec<Section>> {
    if !b.starts_with(b"\x7fELF\x02\x01") {
        return None;
    }
    let shoff = usize::try_from(u64_at(b, 0x28)?).ok()?;
    let entsize = u16_at(b, 0x3a)?;
    let num = u16_at(b, 0x3c)?;
    if entsize < 64 {
        return None;
    }
    (0..num)
        .map(|i| {
            let base = shoff.checked_add(i.checked_mul(entsize)?)?;
            Some(Section {
                kind: u32_at(b, base + 4)? as u32,
                offset: usize::try_from(u64_at(b, base + 0x18)?).ok()?,
                size: usize::try_from(u64_at(b, base + 0x20)?).ok()?,
                link: u32_at(b, base + 0x28)?,
                info: u32_at(b, base + 0x2c)?,
            })
        })
        .collect()
}

/// The NUL-terminated string at `off` in section `strtab`.
fn string(b: &[u8], secs: &[Section], strtab: usize, off: usize) -> Option<String> {
    let s = secs.get(strtab)?;
    let table = b.get(s.offset..s.offset.checked_add(s.size)?)?;
    let tail = table.get(off..)?;
    let end = tail.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&tail[..end]).into_owned())
}

/// The libraries a program names in DT_NEEDED.
pub fn needed_libraries(b: &[u8]) -> Vec<String> {
    let Some(secs) = sections(b) else { return vec![] };
    let mut out = Vec::new();
    for s in secs.iter().filter(|s| s.kind == SHT_DYNAMIC) {
        for i in 0..(s.size / 16).min(MAX_ENTRIES) {
            let at = s.offset.saturating_add(i * 16);
            let (Some(tag), Some(val)) = (u64_at(b, at), u64_at(b, at.saturating_add(8))) else {
                break;
            };
            if tag == DT_NEEDED {
                if let Some(name) = usize::try_from(val).ok().and_then(|v| string(b, &secs, s.link, v)) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// The newest `GLIBC_x.y[.z]` version a program's `.gnu.version_r` asks for.
pub fn glibc_needed(b: &[u8]) -> Option<Version> {
    let secs = sections(b)?;
    let mut best: Option<Version> = None;
    for s in secs.iter().filter(|s| s.kind == SHT_GNU_VERNEED) {
        let mut need = s.offset;
        for _ in 0..s.info.min(MAX_ENTRIES) {
            let count = u16_at(b, need + 2)?;
            let mut aux = need.checked_add(u32_at(b, need + 8)?)?;
            for _ in 0..count.min(MAX_ENTRIES) {
                let name = string(b, &secs, s.link, u32_at(b, aux + 8)?)?;
                if let Some(v) = name.strip_prefix("GLIBC_").and_then(Version::parse_prefix) {
                    best = best.max(Some(v));
                }
                match u32_at(b, aux + 12)? {
                    0 => break,
                    next => aux = aux.checked_add(next)?,
                }
            }
            match u32_at(b, need + 12)? {
                0 => break,
                next => need = need.checked_add(next)?,
            }
        }
    }
    best
}

/// Whether an ELF64 file has a PT_INTERP program header (i.e. is dynamically linked).
pub fn elf_has_interp(elf: &[u8]) -> bool {
    let rd = |off: usize, n: usize| elf.get(off..off.saturating_add(n));
    let (Some(phoff), Some(phentsize), Some(phnum)) = (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2)) else {
        return false;
    };
    let phoff = u64::from_le_bytes(phoff.try_into().unwrap_or_default()) as usize;
    let phentsize = u16::from_le_bytes(phentsize.try_into().unwrap_or_default()) as usize;
    let phnum = u16::from_le_bytes(phnum.try_into().unwrap_or_default()) as usize;
    (0..phnum).any(|i| {
        let base = phoff.saturating_add(i.saturating_mul(phentsize));
        rd(base, 4).is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap_or_default()) == 3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_programs_are_read() {
        let Ok(b) = std::fs::read("/bin/true") else { return };
        assert!(
            needed_libraries(&b).iter().any(|l| l.starts_with("libc.so")),
            "{:?}",
            needed_libraries(&b)
        );
        let v = glibc_needed(&b).expect("/bin/true names GLIBC versions");
        assert!(v >= Version::new(2, 2, 5) && v.major == 2, "{v}");
    }

    #[test]
    fn garbage_and_truncated_files_read_as_nothing() {
        assert_eq!(glibc_needed(b""), None);
        assert!(needed_libraries(b"\x7fELF\x02\x01").is_empty());
        let Ok(b) = std::fs::read("/bin/true") else { return };
        for cut in [64, 1000, b.len() / 2, b.len() - 1] {
            let _ = glibc_needed(&b[..cut]);
            let _ = needed_libraries(&b[..cut]);
        }
        let mut bad = b.clone();
        // Section headers pointing past the end of the file.
        bad[0x28..0x30].copy_from_slice(&(u64::MAX - 10).to_le_bytes());
        assert_eq!(glibc_needed(&bad), None);
    }
}
