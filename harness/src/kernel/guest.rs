//! The guest kernel: Debian's (`backports` by default, `stable`, or one release), the user's
//! own bzImage, or a kernel build tree (`--kernel DIR`), checked for what phyr needs (VFIO, an
//! IOMMU driver, initramfs and serial console support), with its module tree and the means to
//! build out-of-tree modules for it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::kernel::debian::{DebianKernel, Which};
use crate::kernel::kconfig::{check_config, config_value, NEEDED};
use crate::kernel::kmod::{Module, ModuleTree, VFIO_MODULES};
use crate::kernel::spec::KernelSpec;
use crate::kernel::tree::{locate, tree_of_image};
use crate::progress::say;
use crate::provision::provisioner::Provisioner;

/// Where out-of-tree modules for a kernel are built.
#[derive(Debug, Clone)]
pub enum BuildSource {
    /// Debian's headers packages for this release (provisioned on first use).
    Debian(DebianKernel),
    /// A kernel build tree's own kbuild output (`make -C DIR M=...`).
    Tree(PathBuf),
    /// No headers: why not.
    Unavailable(String),
}

/// A kernel image, its config and modules, and how to build modules for it.
#[derive(Debug, Clone)]
pub struct GuestKernel {
    pub image: PathBuf,
    /// The release (`uname -r`).
    pub release: String,
    /// `backports`, `stable`, or the release: names run directories and summary lines.
    pub label: String,
    pub description: String,
    /// The kernel's config: where it came from, and its text.
    pub config: Option<(String, String)>,
    /// The kernel's own modules (empty for a kernel with everything built in).
    pub tree: ModuleTree,
    /// VFIO is built as modules that init must load.
    pub vfio_as_modules: bool,
    pub build: BuildSource,
}

impl GuestKernel {
    /// What init loads, in order: VFIO (when modular), `extra` kernel modules by name and the
    /// out-of-tree `built` modules, each after its dependencies.
    pub fn load_order(&self, extra: &[String], built: &[Module]) -> Result<Vec<Module>> {
        let mut wanted: Vec<&str> = Vec::new();
        if self.vfio_as_modules {
            wanted.extend(VFIO_MODULES);
        }
        wanted.extend(extra.iter().map(String::as_str));
        wanted.extend(built.iter().map(|m| m.name.as_str()));
        self.tree
            .with_extra(built)
            .load_order(&wanted)
            .with_context(|| format!("choosing the modules of kernel {}", self.release))
    }

    /// The vermagic every module of this kernel carries (read from one of its own modules).
    pub fn vermagic(&self) -> Option<String> {
        let m = VFIO_MODULES
            .iter()
            .find_map(|n| self.tree.file(n))
            .or_else(|| self.tree.any_file())?;
        crate::kernel::kmod::modinfo_field(m, "vermagic").ok().flatten()
    }
}

/// Resolves `--kernel` (with `--kernel-config` / `--modules-dir` for the user's own kernels).
pub fn resolve(
    p: &mut Provisioner<'_>,
    spec: &KernelSpec,
    config: Option<&Path>,
    modules_dir: Option<&Path>,
    refresh: bool,
) -> Result<GuestKernel> {
    match spec {
        KernelSpec::Channel(c) => from_debian(&p.debian_kernel(&Which::Channel(*c), refresh)?),
        KernelSpec::Debian(v) => from_debian(&p.debian_kernel(&Which::Version(v.clone()), refresh)?),
        KernelSpec::Image(path) => {
            let build = match tree_of_image(path) {
                Some(t) => BuildSource::Tree(t),
                None => BuildSource::Unavailable(format!(
                    "{} is a bare bzImage with no kbuild tree around it; pass --kernel DIR (its build tree)",
                    path.display()
                )),
            };
            from_user(path, config, modules_dir, build)
        }
        KernelSpec::Tree(dir) => {
            let t = locate(dir)?;
            let k = from_user(
                &t.image,
                Some(config.unwrap_or(&t.config)),
                Some(modules_dir.unwrap_or(&t.kbuild)),
                BuildSource::Tree(t.kbuild.clone()),
            )?;
            if let Some(r) = t.release.as_deref().filter(|r| *r != k.release) {
                say(format!(
                    "warning: {} says release {r} but its bzImage is {}; modules built there will not load \
                     (vermagic mismatch) until both come from one build",
                    t.kbuild.display(),
                    k.release
                ));
            }
            Ok(GuestKernel {
                description: format!("your kernel tree {} ({})", dir.display(), k.release),
                ..k
            })
        }
    }
}

pub fn from_debian(k: &DebianKernel) -> Result<GuestKernel> {
    let config = std::fs::read_to_string(&k.config).with_context(|| format!("reading {}", k.config.display()))?;
    check_config(&config, &k.config.display().to_string())?;
    let tree = ModuleTree::open(&k.modules_dir)?;
    let label = k
        .channel
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| k.release.clone());
    Ok(GuestKernel {
        image: k.image.clone(),
        release: k.release.clone(),
        description: match k.channel {
            Some(c) => format!("Debian {c} kernel {}", k.release),
            None => format!("Debian kernel {}", k.release),
        },
        label,
        vfio_as_modules: NEEDED.iter().any(|(o, _)| config_value(&config, o) == Some("m")),
        config: Some((k.config.display().to_string(), config)),
        tree,
        build: BuildSource::Debian(k.clone()),
    })
}

/// Checks a user-supplied bzImage and finds its config and modules.
pub fn from_user(
    image: &Path,
    config: Option<&Path>,
    modules_dir: Option<&Path>,
    build: BuildSource,
) -> Result<GuestKernel> {
    let bytes = std::fs::read(image).with_context(|| format!("--kernel {}: cannot read it", image.display()))?;
    let version = bzimage_version(&bytes).map_err(|why| {
        anyhow::anyhow!(
            "--kernel {}: not an x86 bzImage ({why}); pass arch/x86/boot/bzImage from a kernel build",
            image.display()
        )
    })?;
    let release = version.split_whitespace().next().unwrap_or_default().to_owned();
    let tree = tree_of_image(image);
    // The image's own embedded config (CONFIG_IKCONFIG) is the most reliable after --kernel-config.
    let embedded = if config.is_none() {
        Some(crate::kernel::ikconfig::from_bzimage(&bytes))
    } else {
        None
    };
    let config_path = config.map(Path::to_path_buf).or_else(|| {
        let mut c: Vec<PathBuf> = tree.iter().map(|t| t.join(".config")).collect();
        c.push(image.with_file_name(".config"));
        c.push(PathBuf::from(format!("/boot/config-{release}")));
        c.into_iter().find(|p| p.is_file())
    });
    let config_text = match (&embedded, &config_path) {
        (Some(Ok(text)), _) => {
            let origin = format!("config embedded in {}", image.display());
            check_config(text, &origin)?;
            Some((origin, text.clone()))
        }
        (_, Some(p)) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading kernel config {}", p.display()))?;
            check_config(&text, &p.display().to_string())?;
            Some((p.display().to_string(), text))
        }
        (why, None) => {
            let why = match why {
                Some(Err(e)) => format!("no embedded config: {e}; "),
                _ => String::new(),
            };
            say(format!(
                "warning: no config found for kernel {release} ({why}no .config in its build tree, no /boot/config-{release}); \
                 cannot check it for VFIO and IOMMU support. Pass --kernel-config FILE; the guest will report what is missing"
            ));
            None
        }
    };
    let needs_modules = config_text
        .as_ref()
        .map(|(_, t)| NEEDED.iter().any(|(o, _)| config_value(t, o) == Some("m")))
        .unwrap_or(true);
    let modules_root = modules_dir.map(Path::to_path_buf).or_else(|| tree.clone()).or_else(|| {
        let p = PathBuf::from(format!("/lib/modules/{release}"));
        p.is_dir().then_some(p)
    });
    let tree = match &modules_root {
        Some(dir) => ModuleTree::open(dir)?,
        None => ModuleTree::empty(Path::new("(no module directory)")),
    };
    match (&modules_root, needs_modules) {
        (Some(_), true) => {
            tree.load_order(VFIO_MODULES).with_context(|| {
                format!("kernel {release} builds VFIO as modules; pass --modules-dir with its modules (make modules_install INSTALL_MOD_PATH=...)")
            })?;
        }
        (None, true) if config_text.is_some() => bail!(
            "kernel {release} builds VFIO as modules (=m) but no module directory was found; \
             pass --modules-dir DIR (the lib/modules/{release} of `make modules_install INSTALL_MOD_PATH=...`) or build them in (=y)"
        ),
        _ => {}
    }
    Ok(GuestKernel {
        image: image.to_path_buf(),
        label: release.clone(),
        description: format!("your kernel {release} ({})", image.display()),
        release,
        config: config_text,
        vfio_as_modules: needs_modules && modules_root.is_some(),
        tree,
        build,
    })
}

/// The kernel version string of a bzImage (boot protocol header: boot flag 0xAA55 at 0x1FE,
/// "HdrS" at 0x202, version string pointer at 0x20E, relative to 0x200).
pub fn bzimage_version(b: &[u8]) -> Result<String, &'static str> {
    if b.len() < 0x210 {
        return Err("file too small");
    }
    if b[0x1fe..0x200] != [0x55, 0xaa] || &b[0x202..0x206] != b"HdrS" {
        return Err("no Linux boot header (boot flag 0xAA55 / \"HdrS\")");
    }
    let ptr = u16::from_le_bytes([b[0x20e], b[0x20f]]) as usize;
    let start = ptr.checked_add(0x200).ok_or("bad version pointer")?;
    let tail = b.get(start..).ok_or("version pointer past the end")?;
    let end = tail
        .iter()
        .take(256)
        .position(|&c| c == 0)
        .ok_or("unterminated version string")?;
    Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bzimage_header_is_checked() {
        let mut img = vec![0u8; 0x400];
        img[0x1fe] = 0x55;
        img[0x1ff] = 0xaa;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let v = b"6.18.0-rc1 (me@box) #1 SM";
        img[0x300..0x300 + v.len()].copy_from_slice(v);
        assert_eq!(bzimage_version(&img).unwrap(), "6.18.0-rc1 (me@box) #1 SM");
        assert!(bzimage_version(b"\x7fELF").is_err());
        let mut bad = img.clone();
        bad[0x202] = b'X';
        assert!(bzimage_version(&bad).is_err());
        let mut wild = img;
        wild[0x20e..0x210].copy_from_slice(&0xffffu16.to_le_bytes());
        assert!(bzimage_version(&wild).is_err());
    }
}
