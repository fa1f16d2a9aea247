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
    /// Built by the harness from an out-of-tree source directory (init checks it loaded).
    pub out_of_tree: bool,
}

/// Modules under a `lib/modules/<version>` directory (or a kernel build tree), indexed by
/// normalised name.
#[derive(Debug, Clone)]
pub struct ModuleTree {
    root: PathBuf,
    files: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
    /// Names added by `with_extra` (built out of tree).
    extra: BTreeSet<String>,
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
                let entry = entry?;
                // Symlinks are not followed: `build` and `source` point at trees elsewhere.
                let ft = entry.file_type()?;
                let path = entry.path();
                // A build tree's .git and .tmp_* directories hold no modules worth the walk.
                if ft.is_dir() && !entry.file_name().to_string_lossy().starts_with('.') {
                    stack.push(path);
                } else if let (true, Some(name)) = (ft.is_file(), module_name_of(&path)) {
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
            extra: BTreeSet::new(),
        })
    }

    /// A tree with no module files (a kernel with everything built in).
    pub fn empty(root: &Path) -> ModuleTree {
        ModuleTree {
            root: root.to_path_buf(),
            files: BTreeMap::new(),
            builtin: BTreeSet::new(),
            extra: BTreeSet::new(),
        }
    }

    /// This tree plus modules built elsewhere (they win over same-named files of the tree).
    pub fn with_extra(&self, extra: &[Module]) -> ModuleTree {
        let mut t = self.clone();
        for m in extra {
            t.files.insert(normalise(&m.name), m.path.clone());
            t.builtin.remove(&normalise(&m.name));
            t.extra.insert(normalise(&m.name));
        }
        t
    }

    /// The file of module `name`, if the tree has one.
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.files.get(&normalise(name)).map(PathBuf::as_path)
    }

    /// Any module file of the tree (for the kernel's vermagic).
    pub fn any_file(&self) -> Option<&Path> {
        self.files.values().next().map(PathBuf::as_path)
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
                "kernel module {name} is neither built in (modules.builtin) nor present under {}{}",
                self.root.display(),
                if VFIO_MODULES.contains(&name) {
                    "; the guest kernel needs CONFIG_VFIO, CONFIG_VFIO_PCI and CONFIG_VFIO_IOMMU_TYPE1 (=y or =m)"
                } else {
                    "; check the name (modules.order lists them) or the kernel config"
                }
            );
        };
        done.insert(name.to_owned());
        for dep in depends_of(path)? {
            self.visit(&normalise(&dep), done, order, depth + 1)?;
        }
        order.push(Module {
            name: name.to_owned(),
            path: path.clone(),
            out_of_tree: self.extra.contains(name),
        });
        Ok(())
    }
}

/// The `depends=` list of a module file (`.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`).
pub fn depends_of(path: &Path) -> Result<Vec<String>> {
    Ok(modinfo_of(path)?
        .into_iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect())
}

/// One `.modinfo` field of a module file (e.g. `vermagic`), if present.
pub fn modinfo_field(path: &Path, key: &str) -> Result<Option<String>> {
    Ok(modinfo_of(path)?.into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
}

/// The `key=value` strings of a module's `.modinfo` section.
pub fn modinfo_of(path: &Path) -> Result<Vec<(String, String)>> {
    let elf = read_module(path)?;
    let info = modinfo_section(&elf).with_context(|| format!("{} is not a kernel module", path.display()))?;
    Ok(parse_modinfo(info))
}

/// Decompressed module bytes; at most 256 MiB whatever the compressed file claims.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    const MAX: u64 = 256 << 20;
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let limited = |r: &mut dyn std::io::Read| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut *r, MAX), &mut out)
            .with_context(|| format!("decompressing {}", path.display()))?;
        Ok(out)
    };
    match ext {
        "ko" => Ok(raw),
        "xz" => {
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out)
                .with_context(|| format!("decompressing {}", path.display()))?;
            Ok(out)
        }
        "zst" => {
            let mut d = ruzstd::decoding::StreamingDecoder::new(raw.as_slice())
                .map_err(|e| anyhow::anyhow!("decompressing {}: {e}", path.display()))?;
            limited(&mut d)
        }
        "gz" => limited(&mut flate2::read::GzDecoder::new(raw.as_slice())),
        _ => bail!(
            "{}: only .ko, .ko.xz, .ko.zst and .ko.gz modules are supported",
            path.display()
        ),
    }
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

fn parse_modinfo(modinfo: &[u8]) -> Vec<(String, String)> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The message for a module built for another kernel.
pub fn vermagic_mismatch(module: &str, built: &str, kernel_release: &str, kernel: &str) -> String {
    format!(
        "vermagic mismatch: module {module} was built as \"{}\" but kernel {kernel_release} loads only \"{}\"; \
         rebuild it against this kernel's own headers (for --kernel DIR: build the kernel and its modules in one tree)",
        built.trim(),
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modinfo_strings() {
        let info =
            b"license=GPL\0depends=vfio,irqbypass\0name=vfio_pci_core\0\0garbage\0vermagic=7.3.4+deb13-amd64 SMP \0";
        let kv = parse_modinfo(info);
        assert_eq!(kv[1], ("depends".into(), "vfio,irqbypass".into()));
        assert_eq!(kv.len(), 4, "{kv:?}");
        assert_eq!(kv[3].1, "7.3.4+deb13-amd64 SMP ");
    }

    #[test]
    fn vermagic_mismatch_names_both_sides() {
        let m = vermagic_mismatch("phyr_hello", "7.3.4+deb13-amd64 SMP ", "7.3.5", "7.3.5 SMP preempt ");
        assert!(
            m.starts_with("vermagic mismatch: module phyr_hello was built as \"7.3.4+deb13-amd64 SMP\" but kernel 7.3.5 loads only \"7.3.5 SMP preempt\""),
            "{m}"
        );
    }

    #[test]
    fn unknown_compression_is_refused() {
        let e = read_module(Path::new("/nonexistent/x.ko.bz2")).unwrap_err().to_string();
        assert!(e.contains("reading"), "{e}");
        let f = std::env::temp_dir().join(format!("phyr-kmod-{}.ko.lz4", std::process::id()));
        std::fs::write(&f, b"x").unwrap();
        let e = read_module(&f).unwrap_err().to_string();
        assert!(e.contains("only .ko, .ko.xz, .ko.zst and .ko.gz"), "{e}");
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn extra_modules_join_the_tree() {
        let t = ModuleTree::empty(Path::new("/none"));
        assert!(t.file("phyr_hello").is_none());
        let m = Module {
            name: "phyr-hello".into(),
            path: PathBuf::from("/b/phyr_hello.ko"),
            out_of_tree: true,
        };
        let t = t.with_extra(std::slice::from_ref(&m));
        assert_eq!(t.file("phyr-hello"), Some(Path::new("/b/phyr_hello.ko")));
        let e = t.load_order(&["nope"]).unwrap_err().to_string();
        assert!(e.contains("check the name"), "{e}");
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
