//! Kernel modules for the guest: which files to put in the initramfs, in load order.
//!
//! Debian's kernel package ships no `modules.dep` (depmod runs at install time), so the
//! dependencies are read from each module's own `.modinfo` ELF section (`depends=a,b`).
//! Modules named in `modules.builtin` are built into the kernel and need no file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What the guest needs for a userspace VFIO driver behind an IOMMU. `vfio_iommu_type1` is
/// loaded on demand by vfio, so it is named explicitly rather than found through `depends=`.
pub const VFIO_MODULES: &[&str] = &["irqbypass", "vfio", "vfio_iommu_type1", "vfio_pci_core", "vfio_pci"];

/// A module file to load with `insmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub path: PathBuf,
}

/// Modules under a `lib/modules/<version>` directory, indexed by normalised name.
pub struct ModuleTree {
    root: PathBuf,
    files: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

/// `vfio-pci` and `vfio_pci` are the same module.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

fn module_name_of(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".ko.xz")
        .or_else(|| name.strip_suffix(".ko.zst"))
        .or_else(|| name.strip_suffix(".ko.gz"))
        .or_else(|| name.strip_suffix(".ko"))?;
    Some(normalise(stem))
}

impl ModuleTree {
    pub fn open(root: &Path) -> Result<ModuleTree> {
        if !root.is_dir() {
            bail!("module directory {} does not exist", root.display());
        }
        let mut files = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(name) = module_name_of(&path) {
                    files.entry(name).or_insert(path);
                }
            }
        }
        let builtin = std::fs::read_to_string(root.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| module_name_of(Path::new(l.trim())))
            .collect();
        Ok(ModuleTree {
            root: root.to_path_buf(),
            files,
            builtin,
        })
    }

    /// `wanted` and everything they depend on, dependencies first, built-in modules left out.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<Module>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for w in wanted {
            self.visit(&normalise(w), &mut done, &mut order, 0)?;
        }
        Ok(order)
    }

    fn visit(&self, name: &str, done: &mut BTreeSet<String>, order: &mut Vec<Module>, depth: usize) -> Result<()> {
        if done.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        if depth > 32 {
            bail!("module dependency chain through {name} is deeper than 32: a cycle?");
        }
        let Some(path) = self.files.get(name) else {
            bail!(
                "kernel module {name} is neither built in (modules.builtin) nor present under {}; \
                 the guest kernel needs CONFIG_VFIO, CONFIG_VFIO_PCI and CONFIG_VFIO_IOMMU_TYPE1 (=y or =m)",
                self.root.display()
            );
        };
        done.insert(name.to_owned());
        for dep in depends_of(path)? {
            self.visit(&normalise(&dep), done, order, depth + 1)?;
        }
        order.push(Module {
            name: name.to_owned(),
            path: path.clone(),
        });
        Ok(())
    }
}

/// The `depends=` list of a module file (`.ko` or `.ko.xz`).
pub fn depends_of(path: &Path) -> Result<Vec<String>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let elf = if path.extension().is_some_and(|e| e == "xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out)
            .with_context(|| format!("decompressing {}", path.display()))?;
        out
    } else if path.extension().is_some_and(|e| e == "ko") {
        raw
    } else {
        bail!(
            "{}: only .ko and .ko.xz modules are supported (decompress it first)",
            path.display()
        );
    };
    let info = modinfo_section(&elf).with_context(|| format!("{} is not a kernel module", path.display()))?;
    Ok(parse_depends(info))
}

/// Finds the `.modinfo` section of a little-endian ELF64 object, bounds-checked throughout.
fn modinfo_section(elf: &[u8]) -> Result<&[u8]> {
    let get = |off: usize, len: usize| -> Result<&[u8]> {
        off.checked_add(len)
            .and_then(|end| elf.get(off..end))
            .context("truncated ELF file")
    };
    let u16_at = |off: usize| -> Result<usize> { Ok(u16::from_le_bytes(get(off, 2)?.try_into()?) as usize) };
    let u64_at = |off: usize| -> Result<usize> { Ok(usize::try_from(u64::from_le_bytes(get(off, 8)?.try_into()?))?) };
    if get(0, 6)? != b"\x7fELF\x02\x01" {
        bail!("not a little-endian ELF64 file");
    }
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)?;
    let shnum = u16_at(0x3c)?;
    let shstrndx = u16_at(0x3e)?;
    if shentsize < 64 || shstrndx >= shnum {
        bail!("bad section header table");
    }
    let section = |i: usize| -> Result<(usize, usize, usize)> {
        let base = shoff
            .checked_add(i.checked_mul(shentsize).context("overflow")?)
            .context("overflow")?;
        let name = u32::from_le_bytes(get(base, 4)?.try_into()?) as usize;
        Ok((name, u64_at(base + 0x18)?, u64_at(base + 0x20)?))
    };
    let (_, str_off, str_size) = section(shstrndx)?;
    let strtab = get(str_off, str_size)?;
    for i in 0..shnum {
        let (name_off, off, size) = section(i)?;
        let name = strtab.get(name_off..).unwrap_or_default();
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if name == b".modinfo" {
            return get(off, size);
        }
    }
    bail!("no .modinfo section")
}

fn parse_depends(modinfo: &[u8]) -> Vec<String> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_depends_from_modinfo_strings() {
        let info = b"license=GPL\0depends=vfio,irqbypass\0name=vfio_pci_core\0";
        assert_eq!(parse_depends(info), vec!["vfio", "irqbypass"]);
        assert!(parse_depends(b"depends=\0name=irqbypass\0").is_empty());
    }

    #[test]
    fn rejects_non_elf_and_truncated_input() {
        assert!(modinfo_section(b"").is_err());
        assert!(modinfo_section(b"\x7fELF\x02\x01").is_err());
        let mut fake = vec![0u8; 64];
        fake[..6].copy_from_slice(b"\x7fELF\x02\x01");
        fake[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        fake[0x3a] = 64;
        fake[0x3c] = 2;
        assert!(modinfo_section(&fake).is_err());
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(
            module_name_of(Path::new("a/vfio-pci-core.ko.xz")).as_deref(),
            Some("vfio_pci_core")
        );
        assert_eq!(module_name_of(Path::new("vfio.ko")).as_deref(), Some("vfio"));
        assert_eq!(module_name_of(Path::new("README")), None);
    }
}
