//! A kernel build tree given as `--kernel DIR`: the source tree of an in-tree build, or the
//! output directory of `make O=OUT` (which has its own Makefile, `.config` and `source` link),
//! or a source tree whose `make O=` output is one level down (`DIR/build`, `DIR/out`, ...).
//! Everything phyr needs is found inside: the bzImage, the `.config`, the release, the
//! modules (`.ko` files of `make modules`), and the kbuild directory modules are built against.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLayout {
    /// Where `make -C` builds out-of-tree modules: the directory holding `.config`.
    pub kbuild: PathBuf,
    pub image: PathBuf,
    pub config: PathBuf,
    /// `include/config/kernel.release`, when the tree has been built.
    pub release: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("--kernel {0}: not a kernel build tree: no .config in it or in a `make O=` output directory one level down; run `make olddefconfig && make bzImage modules` there first, or pass the O= directory")]
    NoConfig(String),
    #[error("--kernel {dir}: found {config} but no arch/x86/boot/bzImage next to it; build the kernel (`make bzImage modules`{o}) first")]
    NoImage { dir: String, config: String, o: String },
}

const IMAGE: &str = "arch/x86/boot/bzImage";

/// Finds the build output in `dir`: `dir` itself, else one subdirectory (sorted by name)
/// holding `.config` and a bzImage.
pub fn locate(dir: &Path) -> Result<TreeLayout, TreeError> {
    let mut outputs = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut subs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .filter(|p| p.join(".config").is_file())
            .collect();
        subs.sort();
        outputs.extend(subs);
    }
    let with_config: Vec<&PathBuf> = outputs.iter().filter(|o| o.join(".config").is_file()).collect();
    let Some(first) = with_config.first() else {
        return Err(TreeError::NoConfig(dir.display().to_string()));
    };
    let Some(out) = with_config.iter().find(|o| o.join(IMAGE).is_file()) else {
        return Err(TreeError::NoImage {
            dir: dir.display().to_string(),
            config: first.join(".config").display().to_string(),
            o: if *first == &dir.to_path_buf() {
                String::new()
            } else {
                format!(" O={}", first.display())
            },
        });
    };
    let release = std::fs::read_to_string(out.join("include/config/kernel.release"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    Ok(TreeLayout {
        kbuild: out.to_path_buf(),
        image: out.join(IMAGE),
        config: out.join(".config"),
        release,
    })
}

/// The build tree a bzImage sits in (`<tree>/arch/x86/boot/bzImage` with a `.config`), if any.
pub fn tree_of_image(image: &Path) -> Option<PathBuf> {
    let tree = image
        .canonicalize()
        .ok()?
        .parent()?
        .parent()?
        .parent()?
        .parent()?
        .to_path_buf();
    (tree.join(".config").is_file() && tree.join("arch/x86").is_dir()).then_some(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("phyr-tree-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn built(out: &Path, release: &str) {
        std::fs::create_dir_all(out.join("arch/x86/boot")).unwrap();
        std::fs::create_dir_all(out.join("include/config")).unwrap();
        std::fs::write(out.join(".config"), "CONFIG_PCI=y\n").unwrap();
        std::fs::write(out.join(IMAGE), b"").unwrap();
        std::fs::write(out.join("include/config/kernel.release"), format!("{release}\n")).unwrap();
    }

    #[test]
    fn in_tree_and_o_builds_are_found() {
        let d = tmp("in-tree");
        built(&d, "7.4.0-rc1");
        let t = locate(&d).unwrap();
        assert_eq!((t.kbuild.clone(), t.release.as_deref()), (d.clone(), Some("7.4.0-rc1")));
        assert_eq!(tree_of_image(&t.image), Some(d.canonicalize().unwrap()));
        std::fs::remove_dir_all(&d).unwrap();

        let d = tmp("o-build");
        std::fs::write(d.join("Makefile"), "# the source tree\n").unwrap();
        built(&d.join("build"), "7.4.0");
        let t = locate(&d).unwrap();
        assert_eq!(t.kbuild, d.join("build"));
        assert_eq!(t.config, d.join("build/.config"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unbuilt_trees_say_what_to_do() {
        let d = tmp("empty");
        let e = locate(&d).unwrap_err().to_string();
        assert!(
            e.contains("not a kernel build tree") && e.contains("make olddefconfig"),
            "{e}"
        );
        std::fs::create_dir_all(d.join("out")).unwrap();
        std::fs::write(d.join("out/.config"), "").unwrap();
        let e = locate(&d).unwrap_err().to_string();
        assert!(e.contains("no arch/x86/boot/bzImage") && e.contains(" O="), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
