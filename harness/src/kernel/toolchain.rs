//! The compiler a guest kernel's modules must be built with: the one its
//! CONFIG_CC_VERSION_TEXT names (same compiler, same major version). Found on PATH, or for gcc
//! provisioned privately from Debian trixie into `CACHE/toolchains/trixie/prefix` with the
//! libraries kbuild's tools need, and run through trixie's own loader (see provision/wrap.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::progress::say;
use crate::provision::apt::extract_deb;
use crate::provision::provisioner::Provisioner;
use crate::provision::version::Version;
use crate::provision::wrap::{dynamic_elfs, wrap_in_place, Runtime};

/// trixie's libc and the libraries of gcc and kbuild's tools (objtool: libelf; sign-file: libssl).
const RUNTIME_PACKAGES: &[&str] = &[
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "zlib1g",
    "libzstd1",
    "libelf1t64",
    "libssl3t64",
    "libgmp10",
    "libisl23",
    "libmpc3",
    "libmpfr6",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CcKind {
    Gcc,
    Clang,
}

impl CcKind {
    pub fn name(self) -> &'static str {
        match self {
            CcKind::Gcc => "gcc",
            CcKind::Clang => "clang",
        }
    }
}

/// The compiler a kernel was built with, from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcWanted {
    /// CONFIG_CC_VERSION_TEXT, e.g. `x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0`.
    pub text: String,
    pub kind: CcKind,
    /// The program named by the text (`x86_64-linux-gnu-gcc-14`), if it names one.
    pub program: Option<String>,
    pub version: Version,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CcError {
    #[error("the kernel config names no compiler (neither CONFIG_CC_VERSION_TEXT nor CONFIG_GCC_VERSION/CONFIG_CLANG_VERSION)")]
    Missing,
    #[error("the kernel config's CONFIG_CC_VERSION_TEXT={0:?} names no compiler version phyr-harness can read")]
    Unreadable(String),
}

/// A config option's value without quotes (`CONFIG_CC_VERSION_TEXT="gcc ..."`).
fn config_value<'a>(config: &'a str, key: &str) -> Option<&'a str> {
    crate::kernel::kconfig::config_value(config, key).map(|v| v.trim().trim_matches('"'))
}

/// `140200` -> 14.2.0 (CONFIG_GCC_VERSION / CONFIG_CLANG_VERSION encoding).
fn numeric_version(v: &str) -> Option<Version> {
    let n: u32 = v.parse().ok()?;
    (n > 0).then(|| Version::new(n / 10_000, n / 100 % 100, n % 100))
}

impl CcWanted {
    pub fn from_config(config: &str) -> Result<CcWanted, CcError> {
        let clang = config_value(config, "CONFIG_CC_IS_CLANG") == Some("y");
        let numeric = config_value(
            config,
            if clang {
                "CONFIG_CLANG_VERSION"
            } else {
                "CONFIG_GCC_VERSION"
            },
        )
        .and_then(numeric_version);
        let Some(text) = config_value(config, "CONFIG_CC_VERSION_TEXT").filter(|t| !t.is_empty()) else {
            return numeric
                .map(|version| CcWanted {
                    text: format!("{} {version}", if clang { "clang" } else { "gcc" }),
                    kind: if clang { CcKind::Clang } else { CcKind::Gcc },
                    program: None,
                    version,
                })
                .ok_or(CcError::Missing);
        };
        let kind = if clang || text.contains("clang") {
            CcKind::Clang
        } else {
            CcKind::Gcc
        };
        // The version is the last word that parses as X.Y[.Z] (gcc: "... 14.2.0"; clang:
        // "Debian clang version 19.1.7 (3)").
        let version = text
            .split_whitespace()
            .rev()
            .filter(|w| w.contains('.'))
            .find_map(|w| Version::parse_prefix(w.trim_start_matches('(')))
            .or(numeric)
            .ok_or_else(|| CcError::Unreadable(text.to_owned()))?;
        let first = text.split_whitespace().next().unwrap_or_default();
        let program = (first.contains("gcc") || first.contains("clang"))
            .then(|| first.to_owned())
            .filter(|p| p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c)));
        Ok(CcWanted {
            text: text.to_owned(),
            kind,
            program,
            version,
        })
    }

    /// Names to look for on PATH, most specific first.
    pub fn candidates(&self) -> Vec<String> {
        let k = self.kind.name();
        let m = self.version.major;
        let mut v: Vec<String> = self.program.iter().cloned().collect();
        for c in [format!("x86_64-linux-gnu-{k}-{m}"), format!("{k}-{m}"), k.to_owned()] {
            if !v.contains(&c) {
                v.push(c);
            }
        }
        v
    }
}

/// A compiler that can build modules for a kernel.
#[derive(Debug, Clone)]
pub struct Compiler {
    pub path: PathBuf,
    pub kind: CcKind,
    pub version: Version,
    /// "on PATH" or "private, from Debian trixie".
    pub origin: String,
}

/// `gcc -dumpfullversion` / `clang -dumpversion`.
fn version_of(path: &Path, kind: CcKind) -> Option<Version> {
    let flag = match kind {
        CcKind::Gcc => "-dumpfullversion",
        CcKind::Clang => "-dumpversion",
    };
    let out = Command::new(path).arg(flag).stdin(Stdio::null()).output().ok()?;
    out.status.success().then_some(())?;
    Version::parse_prefix(String::from_utf8_lossy(&out.stdout).trim())
}

/// The first candidate on `path_var` with the kernel's compiler major version; also what was
/// found and refused (`gcc 12.2.0 at /usr/bin/gcc`), for the error message.
pub fn find_on_path(w: &CcWanted, path_var: &std::ffi::OsStr) -> (Option<Compiler>, Vec<String>) {
    let mut refused = Vec::new();
    for name in w.candidates() {
        for dir in std::env::split_paths(path_var) {
            let p = dir.join(&name);
            if !p.is_file() {
                continue;
            }
            match version_of(&p, w.kind) {
                Some(v) if v.major == w.version.major => {
                    return (
                        Some(Compiler {
                            path: p,
                            kind: w.kind,
                            version: v,
                            origin: "on PATH".into(),
                        }),
                        refused,
                    )
                }
                Some(v) => refused.push(format!("{} {v} at {}", w.kind.name(), p.display())),
                None => refused.push(format!("{} (does not report a version)", p.display())),
            }
        }
    }
    refused.dedup();
    (None, refused)
}

/// The "compiler not found" message.
pub fn not_found_message(w: &CcWanted, release: &str, refused: &[String], private: Option<&str>) -> String {
    let found = if refused.is_empty() {
        format!("no {} on PATH", w.candidates().join(", "))
    } else {
        format!(
            "on PATH only {} (a different major version cannot build modules for this kernel)",
            refused.join(", ")
        )
    };
    let private = match private {
        Some(why) => format!("; {why}"),
        None => String::new(),
    };
    format!(
        "compiler not found: kernel {release} was built with `{}` ({} {}); {found}{private}. \
         Put {} {} on PATH",
        w.text,
        w.kind.name(),
        w.version.major,
        w.kind.name(),
        w.version.major
    )
}

impl Provisioner<'_> {
    /// trixie's libc and tool libraries, unpacked once into `CACHE/toolchains/trixie/prefix`.
    pub fn trixie_runtime(&mut self) -> Result<Runtime> {
        let rt = Runtime {
            prefix: self.cache.dir("toolchains/trixie/prefix"),
        };
        if self.cache.ready("toolchains/trixie/runtime").is_some() && rt.loader().is_file() {
            return Ok(rt);
        }
        self.unpack_into_toolchain("Debian trixie's libc and tool libraries", RUNTIME_PACKAGES, &rt)?;
        let stamp = self.cache.dir("toolchains/trixie/runtime");
        std::fs::create_dir_all(&stamp)?;
        self.cache
            .mark_ready("toolchains/trixie/runtime", &RUNTIME_PACKAGES.join(" "))?;
        Ok(rt)
    }

    fn unpack_into_toolchain(&mut self, what: &str, packages: &[&str], rt: &Runtime) -> Result<()> {
        let t = Instant::now();
        say(format!(
            "provisioning {what} ({}) into {} ...",
            packages.join(" "),
            rt.prefix.display()
        ));
        let dl = self.cache.dir("toolchains/trixie/download");
        let _ = std::fs::remove_dir_all(&dl);
        let debs = self.apt()?.download(packages, &dl)?;
        for deb in &debs {
            extract_deb(deb, &rt.prefix)?;
        }
        std::fs::remove_dir_all(&dl)?;
        say(format!(
            "  unpacked {} packages ({:.1} s)",
            debs.len(),
            t.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// A compiler for a kernel whose config wants `w`: on PATH, else (gcc only, and only when
    /// `allow_private`) a private gcc of the same major version from Debian trixie.
    pub fn compiler_for(&mut self, w: &CcWanted, release: &str, allow_private: bool) -> Result<Compiler> {
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        let (found, refused) = find_on_path(w, &path_var);
        if let Some(c) = found {
            return Ok(c);
        }
        let why_not_private = match (w.kind, allow_private) {
            (CcKind::Clang, _) => Some("phyr-harness provisions only gcc".to_owned()),
            (_, false) => Some("a private compiler is not provisioned for this kernel".to_owned()),
            (CcKind::Gcc, true) => None,
        };
        if let Some(why) = why_not_private {
            bail!(not_found_message(w, release, &refused, Some(&why)));
        }
        match self.private_gcc(w.version.major) {
            Ok(c) => Ok(c),
            Err(e) => bail!(not_found_message(
                w,
                release,
                &refused,
                Some(&format!(
                    "a private gcc-{} from Debian trixie failed: {e:#}",
                    w.version.major
                ))
            )),
        }
    }

    fn private_gcc(&mut self, major: u32) -> Result<Compiler> {
        let stamp = format!("toolchains/trixie/gcc-{major}");
        let rt = self.trixie_runtime()?;
        let gcc = rt.prefix.join(format!("usr/bin/x86_64-linux-gnu-gcc-{major}"));
        let origin = format!("private gcc-{major} from Debian trixie in {}", rt.prefix.display());
        if self.cache.ready(&stamp).is_some() {
            if let Some(v) = version_of(&gcc, CcKind::Gcc).filter(|v| v.major == major) {
                return Ok(Compiler {
                    path: gcc,
                    kind: CcKind::Gcc,
                    version: v,
                    origin,
                });
            }
        }
        let packages = [
            format!("gcc-{major}-x86-64-linux-gnu"),
            format!("cpp-{major}-x86-64-linux-gnu"),
            format!("libgcc-{major}-dev"),
            format!("gcc-{major}-base"),
        ];
        let names: Vec<&str> = packages.iter().map(String::as_str).collect();
        self.unpack_into_toolchain(&format!("gcc-{major} (for kernel modules)"), &names, &rt)?;
        wrap_in_place(&gcc, &rt)?;
        let libexec = rt.prefix.join(format!("usr/libexec/gcc/x86_64-linux-gnu/{major}"));
        for tool in dynamic_elfs(&libexec)? {
            wrap_in_place(&tool, &rt)?;
        }
        check_compiles(&gcc)?;
        let v = version_of(&gcc, CcKind::Gcc)
            .filter(|v| v.major == major)
            .with_context(|| format!("{} does not report version {major}", gcc.display()))?;
        std::fs::create_dir_all(self.cache.dir(&stamp))?;
        self.cache.mark_ready(&stamp, &format!("gcc {v}\n"))?;
        say(format!("  gcc {v} ready: {}", gcc.display()));
        Ok(Compiler {
            path: gcc,
            kind: CcKind::Gcc,
            version: v,
            origin,
        })
    }
}

/// Compiles a one-line C file to assembly: the driver, cc1 and their libraries all run.
fn check_compiles(gcc: &Path) -> Result<()> {
    let mut child = Command::new(gcc)
        .args(["-x", "c", "-S", "-o", "/dev/null", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", gcc.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, b"int phyr_check(int x) { return x + 1; }\n")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} cannot compile a test file: {}",
            gcc.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const DEBIAN: &str = "CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\nCONFIG_CC_IS_GCC=y\nCONFIG_GCC_VERSION=140200\n";

    #[test]
    fn debian_gcc_is_read_from_the_config() {
        let w = CcWanted::from_config(DEBIAN).unwrap();
        assert_eq!(w.kind, CcKind::Gcc);
        assert_eq!(w.version, Version::new(14, 2, 0));
        assert_eq!(w.program.as_deref(), Some("x86_64-linux-gnu-gcc-14"));
        assert_eq!(w.candidates(), vec!["x86_64-linux-gnu-gcc-14", "gcc-14", "gcc"]);
    }

    #[test]
    fn other_compilers_and_old_configs() {
        let clang = "CONFIG_CC_VERSION_TEXT=\"Debian clang version 19.1.7 (3)\"\nCONFIG_CC_IS_CLANG=y\nCONFIG_CLANG_VERSION=190107\n";
        let w = CcWanted::from_config(clang).unwrap();
        assert_eq!(
            (w.kind, w.version, w.program.clone()),
            (CcKind::Clang, Version::new(19, 1, 7), None)
        );
        assert_eq!(w.candidates(), vec!["x86_64-linux-gnu-clang-19", "clang-19", "clang"]);
        let plain = CcWanted::from_config("CONFIG_CC_VERSION_TEXT=\"gcc (GCC) 15.1.1 20250425\"\n").unwrap();
        assert_eq!(
            (plain.version, plain.program.as_deref()),
            (Version::new(15, 1, 1), Some("gcc"))
        );
        let old = CcWanted::from_config("CONFIG_GCC_VERSION=120200\n").unwrap();
        assert_eq!(old.version, Version::new(12, 2, 0));
        assert_eq!(CcWanted::from_config("CONFIG_PCI=y\n"), Err(CcError::Missing));
        assert!(matches!(
            CcWanted::from_config("CONFIG_CC_VERSION_TEXT=\"mystery compiler\"\n"),
            Err(CcError::Unreadable(_))
        ));
        // A hostile program name is not taken as a command.
        let w = CcWanted::from_config("CONFIG_CC_VERSION_TEXT=\"gcc;rm (x) 14.2.0\"\n").unwrap();
        assert_eq!(w.program, None);
    }

    fn fake_compiler(dir: &Path, name: &str, version: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho {version}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn path_search_wants_the_same_major_version() {
        let d = std::env::temp_dir().join(format!("phyr-cc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let w = CcWanted::from_config(DEBIAN).unwrap();
        fake_compiler(&d, "gcc", "12.2.0");
        let (found, refused) = find_on_path(&w, d.as_os_str());
        assert!(found.is_none());
        assert_eq!(refused, vec![format!("gcc 12.2.0 at {}", d.join("gcc").display())]);
        let msg = not_found_message(&w, "7.3.4+deb13-amd64", &refused, Some("no network"));
        assert!(
            msg.starts_with("compiler not found: kernel 7.3.4+deb13-amd64 was built with `x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0` (gcc 14)")
                && msg.contains("on PATH only gcc 12.2.0 at")
                && msg.contains("; no network. Put gcc 14 on PATH"),
            "{msg}"
        );
        fake_compiler(&d, "gcc-14", "14.3.0");
        let (found, _) = find_on_path(&w, d.as_os_str());
        let c = found.unwrap();
        assert_eq!((c.path, c.version), (d.join("gcc-14"), Version::new(14, 3, 0)));
        let none = not_found_message(&w, "r", &[], None);
        assert!(
            none.contains("no x86_64-linux-gnu-gcc-14, gcc-14, gcc on PATH. Put gcc 14 on PATH"),
            "{none}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
