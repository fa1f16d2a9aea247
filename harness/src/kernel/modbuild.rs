//! Out-of-tree kernel modules built for the kernel that boots: `make -C KBUILD M=DIR modules`
//! with the kernel's own compiler (toolchain.rs), BTF skipped when there is no `pahole`, debug
//! info stripped, vermagic checked against the kernel's own modules.
//!
//! The source directory is copied into `CACHE/modules/<release>/<name>-<hash>/src` and built
//! there, so the user's tree never gets build products; the hash covers the sources, the
//! kernel and the compiler, so an unchanged module is not rebuilt. After a good build only
//! `out/*.ko` and `build.log` stay.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::kernel::guest::{BuildSource, GuestKernel};
use crate::kernel::kconfig::config_value;
use crate::kernel::kmod::{modinfo_field, vermagic_mismatch, Module};
use crate::kernel::toolchain::{CcKind, CcWanted, Compiler};
use crate::progress::say;
use crate::provision::apt::which;
use crate::provision::provisioner::Provisioner;

/// How modules are built for one kernel.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    pub release: String,
    /// `make -C` directory.
    pub kbuild: PathBuf,
    pub cc: Compiler,
    /// `CC=...` and friends.
    pub make_vars: Vec<String>,
    /// What the build will do differently from the kernel's own (e.g. no BTF).
    pub notes: Vec<String>,
    /// The vermagic the kernel's own modules carry.
    pub vermagic: Option<String>,
}

/// The "no headers" message.
pub fn no_headers(release: &str, why: &str) -> String {
    format!("no headers for kernel {release}: {why}; modules cannot be built for it")
}

impl Provisioner<'_> {
    /// Headers and compiler for building modules for `k` (provisioned when they are Debian's).
    pub fn build_env(&mut self, k: &GuestKernel) -> Result<BuildEnv> {
        let Some((origin, config)) = &k.config else {
            bail!(no_headers(
                &k.release,
                "its config was not found, so neither its headers nor its compiler are known (pass --kernel-config)"
            ));
        };
        let (kbuild, allow_private) = match &k.build {
            BuildSource::Debian(d) => (self.debian_headers(d)?, true),
            BuildSource::Tree(t) => {
                if !t.join("Makefile").is_file() {
                    bail!(no_headers(&k.release, &format!("{} has no Makefile", t.display())));
                }
                if !t.join("Module.symvers").is_file() {
                    bail!(no_headers(
                        &k.release,
                        &format!("{} has no Module.symvers; run `make modules` there first", t.display())
                    ));
                }
                (t.clone(), true)
            }
            BuildSource::Unavailable(why) => bail!(no_headers(&k.release, why)),
        };
        let wanted = CcWanted::from_config(config).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let cc = self.compiler_for(&wanted, &k.release, allow_private)?;
        let (make_vars, notes) = make_vars(config, &cc, which("pahole").is_some());
        Ok(BuildEnv {
            release: k.release.clone(),
            kbuild,
            cc,
            make_vars,
            notes,
            vermagic: k.vermagic(),
        })
    }
}

/// `make` variables for a kernel config and compiler; notes for what differs from the kernel.
pub fn make_vars(config: &str, cc: &Compiler, have_pahole: bool) -> (Vec<String>, Vec<String>) {
    let mut vars = vec![format!("CC={}", cc.path.display())];
    let mut notes = Vec::new();
    if cc.kind == CcKind::Clang && config_value(config, "CONFIG_LD_IS_LLD") == Some("y") {
        vars.push("LLVM=1".into());
    }
    if config_value(config, "CONFIG_DEBUG_INFO_BTF_MODULES") == Some("y") && !have_pahole {
        vars.push("CONFIG_DEBUG_INFO_BTF_MODULES=".into());
        notes.push("BTF for modules skipped (no pahole on PATH)".into());
    }
    (vars, notes)
}

/// Whether a file in a module source directory is a build product (not copied, not hashed).
fn is_build_product(name: &str) -> bool {
    name.starts_with('.')
        || [
            ".o", ".ko", ".mod", ".mod.c", ".a", ".order", ".symvers", ".cmd", ".dwo",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

/// The source files of a module directory (relative paths, sorted), build products left out.
fn source_files(src: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = src.join(&rel);
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if is_build_product(&name) {
                continue;
            }
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(rel.join(&name));
            } else if ft.is_file() {
                out.push(rel.join(&name));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Refuses a directory that is not an out-of-tree module directory.
pub fn check_source_dir(src: &Path) -> Result<()> {
    if !src.is_dir() {
        bail!("--module-src {}: no such directory", src.display());
    }
    if !src.join("Kbuild").is_file() && !src.join("Makefile").is_file() {
        bail!(
            "--module-src {}: no Kbuild or Makefile in it; an out-of-tree module directory has one \
             (`obj-m := name.o`)",
            src.display()
        );
    }
    Ok(())
}

/// What one module directory built into.
#[derive(Debug)]
pub struct Built {
    /// The stripped modules.
    pub modules: Vec<Module>,
    /// The compiler's and modpost's warnings, paths pointing at the user's sources.
    pub warnings: Vec<String>,
}

/// Builds the modules of `src` for `env` (or takes them from the cache); returns them stripped,
/// with the build's warnings. `extra_warn` builds with `W=1` (kbuild's extra warnings).
pub fn build(cache_root: &Path, env: &BuildEnv, src: &Path, extra_warn: bool) -> Result<Built> {
    check_source_dir(src)?;
    let src = src.canonicalize()?;
    let files = source_files(&src)?;
    let mut h = DefaultHasher::new();
    (&env.release, &env.kbuild, &env.cc.path, env.cc.version, &env.make_vars).hash(&mut h);
    extra_warn.hash(&mut h);
    for f in &files {
        f.hash(&mut h);
        std::fs::read(src.join(f))
            .with_context(|| format!("reading {}", src.join(f).display()))?
            .hash(&mut h);
    }
    let base = src.file_name().and_then(|n| n.to_str()).unwrap_or("module");
    let dir = cache_root
        .join("modules")
        .join(&env.release)
        .join(format!("{base}-{:016x}", h.finish()));
    let out = dir.join("out");
    let log = dir.join("build.log");
    let warnings_of = |work: &Path| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        build_warnings(&text, work, &src)
    };
    if let Ok(names) = std::fs::read_to_string(dir.join("READY")) {
        let mods: Vec<Module> = names.lines().map(|n| built_module(n, &out)).collect();
        if !mods.is_empty() && mods.iter().all(|m| m.path.is_file()) {
            say(format!(
                "module {} for {}: {} (cached in {})",
                src.display(),
                env.release,
                names.lines().collect::<Vec<_>>().join(" "),
                dir.display()
            ));
            return Ok(Built {
                modules: mods,
                warnings: warnings_of(&dir.join("src")),
            });
        }
    }
    let t = Instant::now();
    let _ = std::fs::remove_dir_all(&dir);
    let work = dir.join("src");
    for f in &files {
        let to = work.join(f);
        std::fs::create_dir_all(to.parent().context("no parent")?)?;
        std::fs::copy(src.join(f), &to).with_context(|| format!("copying {}", src.join(f).display()))?;
    }
    say(format!(
        "building module {} for kernel {} with {} {} ({}){} ...",
        src.display(),
        env.release,
        env.cc.kind.name(),
        env.cc.version,
        env.cc.origin,
        if env.notes.is_empty() {
            String::new()
        } else {
            format!("; {}", env.notes.join("; "))
        }
    ));
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(&env.kbuild)
        .arg(format!("M={}", work.display()))
        .args(&env.make_vars)
        .args(extra_warn.then_some("W=1"))
        .arg(format!("-j{jobs}"))
        .arg("modules");
    if let Err(e) = run_logged(&mut cmd, &log) {
        // The compiler names the copy; point its messages at the user's own files.
        let why = format!("{e:#}").replace(&format!("{}/", work.display()), &format!("{}/", src.display()));
        bail!(
            "building module {} for kernel {} failed: {why}",
            src.display(),
            env.release
        );
    }
    let kos = built_kos(&work)?;
    if kos.is_empty() {
        bail!(
            "building {} produced no .ko (is `obj-m` set in its Kbuild?); see {}",
            src.display(),
            log.display()
        );
    }
    std::fs::create_dir_all(&out)?;
    let mut names = Vec::new();
    for ko in &kos {
        let name = ko
            .file_stem()
            .and_then(|n| n.to_str())
            .context("module name")?
            .to_owned();
        let dest = out.join(format!("{name}.ko"));
        strip_into(ko, &dest)?;
        if let (Some(want), Some(got)) = (&env.vermagic, modinfo_field(&dest, "vermagic")?) {
            if want.trim() != got.trim() {
                bail!(vermagic_mismatch(&name, &got, &env.release, want));
            }
        }
        names.push(name);
    }
    std::fs::write(dir.join("READY"), names.join("\n") + "\n")?;
    // The objects are ~30 times the stripped modules; a failed build keeps them for a look.
    let _ = std::fs::remove_dir_all(&work);
    say(format!(
        "  built {} ({:.1} s; log {})",
        names.join(" "),
        t.elapsed().as_secs_f64(),
        log.display()
    ));
    Ok(Built {
        modules: names.iter().map(|n| built_module(n, &out)).collect(),
        warnings: warnings_of(&work),
    })
}

/// The warning lines of a kbuild log (`file:line:col: warning: ...` from the compiler,
/// `WARNING: ...` from modpost), with the build copy's paths replaced by the sources'.
pub fn build_warnings(log: &str, work: &Path, src: &Path) -> Vec<String> {
    let (work, src) = (format!("{}/", work.display()), format!("{}/", src.display()));
    log.lines()
        .filter(|l| l.contains(": warning:") || l.trim_start().starts_with("WARNING:"))
        .map(|l| l.trim().replace(&work, &src))
        .collect()
}

fn built_module(name: &str, out: &Path) -> Module {
    Module {
        name: crate::kernel::kmod::normalise(name),
        path: out.join(format!("{name}.ko")),
        out_of_tree: true,
    }
}

/// The `.ko` files a build produced: from `modules.order`, else every `.ko` under `work`.
fn built_kos(work: &Path) -> Result<Vec<PathBuf>> {
    if let Ok(order) = std::fs::read_to_string(work.join("modules.order")) {
        let v: Vec<PathBuf> = order
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| work.join(l).with_extension("ko"))
            .filter(|p| p.starts_with(work) && p.is_file())
            .collect();
        if !v.is_empty() {
            return Ok(v);
        }
    }
    let mut v = Vec::new();
    let mut stack = vec![work.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "ko") {
                v.push(p);
            }
        }
    }
    v.sort();
    Ok(v)
}

/// `strip --strip-debug` (a module shrinks from ~360 KB to ~10 KB); a plain copy without strip.
fn strip_into(ko: &Path, dest: &Path) -> Result<()> {
    if which("strip").is_some() {
        let st = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(dest)
            .arg(ko)
            .stdin(Stdio::null())
            .status()
            .context("running strip")?;
        if st.success() {
            return Ok(());
        }
    }
    std::fs::copy(ko, dest).with_context(|| format!("copying {}", ko.display()))?;
    Ok(())
}

fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let st = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .context("running make (is it installed?)")?;
    if !st.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        // The compiler's own error lines say most; show them before the tail.
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("error")).take(6).collect();
        let tail: Vec<&str> = text
            .lines()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!(
            "make {st}; see {}:\n  {}",
            log.display(),
            if errors.is_empty() { tail } else { errors }.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::version::Version;

    fn gcc() -> Compiler {
        Compiler {
            path: PathBuf::from("/tc/x86_64-linux-gnu-gcc-14"),
            kind: CcKind::Gcc,
            version: Version::new(14, 2, 0),
            origin: "test".into(),
        }
    }

    #[test]
    fn btf_is_skipped_without_pahole_only_when_the_kernel_wants_it() {
        let cfg = "CONFIG_DEBUG_INFO_BTF_MODULES=y\n";
        let (v, n) = make_vars(cfg, &gcc(), false);
        assert_eq!(
            v,
            vec!["CC=/tc/x86_64-linux-gnu-gcc-14", "CONFIG_DEBUG_INFO_BTF_MODULES="]
        );
        assert_eq!(n, vec!["BTF for modules skipped (no pahole on PATH)"]);
        assert_eq!(make_vars(cfg, &gcc(), true).0.len(), 1);
        assert_eq!(make_vars("", &gcc(), false).0.len(), 1);
    }

    #[test]
    fn source_dirs_without_kbuild_are_refused() {
        let d = std::env::temp_dir().join(format!("phyr-modsrc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let e = check_source_dir(&d).unwrap_err().to_string();
        assert!(e.contains("no Kbuild or Makefile") && e.contains("obj-m"), "{e}");
        let e = check_source_dir(&d.join("missing")).unwrap_err().to_string();
        assert!(e.contains("no such directory"), "{e}");
        std::fs::write(d.join("Kbuild"), "obj-m := x.o\n").unwrap();
        std::fs::write(d.join("x.c"), "").unwrap();
        std::fs::write(d.join("x.o"), "").unwrap();
        std::fs::write(d.join(".x.o.cmd"), "").unwrap();
        std::fs::write(d.join("x.mod.c"), "").unwrap();
        check_source_dir(&d).unwrap();
        assert_eq!(
            source_files(&d).unwrap(),
            vec![PathBuf::from("Kbuild"), PathBuf::from("x.c")]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn no_headers_message() {
        assert_eq!(
            no_headers("7.4.0", "a bare bzImage"),
            "no headers for kernel 7.4.0: a bare bzImage; modules cannot be built for it"
        );
    }

    #[test]
    fn build_warnings_keeps_compiler_and_modpost_warnings_with_the_users_paths() {
        let log = "make: Entering directory '/k'\n\
                   /c/m/src/a.c:3:5: warning: no previous prototype for 'f' [-Wmissing-prototypes]\n\
                   \x20   3 | int f(void)\n\
                   WARNING: modpost: missing MODULE_DESCRIPTION() in /c/m/src/a.o\n\
                   \x20 LD [M]  /c/m/src/a.ko\n";
        let w = build_warnings(log, Path::new("/c/m/src"), Path::new("/home/u/mod"));
        assert_eq!(
            w,
            vec![
                "/home/u/mod/a.c:3:5: warning: no previous prototype for 'f' [-Wmissing-prototypes]",
                "WARNING: modpost: missing MODULE_DESCRIPTION() in /home/u/mod/a.o",
            ]
        );
        assert!(build_warnings("  CC [M]  a.o\n", Path::new("/w"), Path::new("/s")).is_empty());
    }
}
