//! Running Debian trixie's binaries (gcc-14, kbuild's fixdep/modpost/objtool) on an older host
//! without touching its libc: each dynamically linked ELF is moved to `.phyr-real/NAME` beside
//! itself, and a shell script takes its place that runs it through the runtime prefix's own
//! loader. `--argv0 "$0"` keeps the name it was called by: gcc finds cc1 relative to it, and
//! objtool re-executes itself by it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::provision::provisioner::Provisioner;
use crate::provision::version::Version;
use crate::shell::sh_quote;

/// The directory real binaries move to.
pub const REAL_DIR: &str = ".phyr-real";
const MARK: &str = "# phyr-harness wrapper:";

/// A prefix holding trixie's libc and the libraries of the wrapped tools.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub prefix: PathBuf,
}

impl Runtime {
    pub fn libdir(&self) -> PathBuf {
        self.prefix.join("usr/lib/x86_64-linux-gnu")
    }

    pub fn loader(&self) -> PathBuf {
        self.libdir().join("ld-linux-x86-64.so.2")
    }
}

/// The script that stands in for `real`.
pub fn wrapper_script(real: &Path, rt: &Runtime) -> String {
    format!(
        "#!/bin/sh\n{MARK} runs {} through Debian trixie's loader (the host's libc is older)\nexec {} --library-path {} --argv0 \"$0\" {} \"$@\"\n",
        real.display(),
        sh_quote(&rt.loader().display().to_string()),
        sh_quote(&rt.libdir().display().to_string()),
        sh_quote(&real.display().to_string()),
    )
}

/// Moves `file` to `.phyr-real/` beside it and writes the wrapper in its place. A file that
/// is already a wrapper is left alone.
pub fn wrap_in_place(file: &Path, rt: &Runtime) -> Result<()> {
    let head = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if head.starts_with(b"#!/bin/sh\n") && head.windows(MARK.len()).any(|w| w == MARK.as_bytes()) {
        return Ok(());
    }
    let dir = file.parent().context("a file without a directory")?;
    let name = file.file_name().context("a file without a name")?;
    let real_dir = dir.join(REAL_DIR);
    std::fs::create_dir_all(&real_dir).with_context(|| format!("creating {}", real_dir.display()))?;
    let real = real_dir.join(name);
    std::fs::rename(file, &real).with_context(|| format!("moving {} aside", file.display()))?;
    std::fs::write(file, wrapper_script(&real, rt)).with_context(|| format!("writing {}", file.display()))?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Dynamically linked executables (ELF with PT_INTERP) under `dir`, symlinks and moved-aside
/// real binaries not included.
pub fn dynamic_elfs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let ft = e.file_type()?;
            let p = e.path();
            if ft.is_dir() && e.file_name() != REAL_DIR {
                stack.push(p);
            } else if ft.is_file() && is_dynamic_elf(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_dynamic_elf(p: &Path) -> bool {
    let Ok(bytes) = std::fs::read(p) else { return false };
    bytes.starts_with(b"\x7fELF\x02\x01") && crate::provision::elf::elf_has_interp(&bytes)
}

/// The host's glibc version (`getconf GNU_LIBC_VERSION` prints `glibc 2.36`).
pub fn host_glibc() -> Option<Version> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Version::parse_prefix(text.trim().strip_prefix("glibc ")?)
}

const HOST_LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Why the dynamically linked program `elf` cannot run on the host's libc (a newer glibc
/// symbol version, or a library the host lacks), or `None` when it can.
pub fn needs_wrapper(elf: &[u8], host: Option<Version>) -> Option<String> {
    if let Some(v) = crate::provision::elf::glibc_needed(elf) {
        match host {
            Some(h) if v <= h => {}
            Some(h) => {
                return Some(format!(
                    "needs GLIBC_{}.{}, the host has {}.{}",
                    v.major, v.minor, h.major, h.minor
                ))
            }
            None => return Some("the host's glibc version is unknown".into()),
        }
    }
    crate::provision::elf::needed_libraries(elf)
        .into_iter()
        .find(|lib| !HOST_LIB_DIRS.iter().any(|d| Path::new(d).join(lib).exists()))
        .map(|lib| format!("needs {lib}, which the host lacks"))
}

/// Wraps every dynamically linked tool under `dir` (a linux-kbuild tree) that cannot run on the
/// host's libc; returns how many were wrapped.
pub fn wrap_tools_if_needed(p: &mut Provisioner<'_>, dir: &Path) -> Result<usize> {
    let host = host_glibc();
    let mut todo = Vec::new();
    for t in dynamic_elfs(dir)? {
        let bytes = std::fs::read(&t).with_context(|| format!("reading {}", t.display()))?;
        if needs_wrapper(&bytes, host).is_some() {
            todo.push(t);
        }
    }
    if todo.is_empty() {
        return Ok(0);
    }
    let rt = p.trixie_runtime()?;
    for t in &todo {
        wrap_in_place(t, &rt)?;
    }
    Ok(todo.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("phyr-wrap-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn wrapper_runs_the_real_file_through_the_loader_with_argv0() {
        let rt = Runtime {
            prefix: PathBuf::from("/c/tool chain"),
        };
        let s = wrapper_script(Path::new("/k/scripts/.phyr-real/fixdep"), &rt);
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(
            s.contains("exec '/c/tool chain/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' --library-path '/c/tool chain/usr/lib/x86_64-linux-gnu' --argv0 \"$0\" '/k/scripts/.phyr-real/fixdep' \"$@\"\n"),
            "{s}"
        );
    }

    #[test]
    fn wrapping_moves_the_real_binary_aside_once() {
        let d = tmp("once");
        // The host's own loader stands in for trixie's: the wrapper must run the real program.
        let host_lib = Path::new("/lib/x86_64-linux-gnu");
        if !host_lib.join("ld-linux-x86-64.so.2").exists() {
            return;
        }
        let rt = Runtime { prefix: d.join("rt") };
        std::fs::create_dir_all(rt.libdir().parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(host_lib, rt.libdir()).unwrap();
        let tool = d.join("bin/true");
        std::fs::create_dir_all(tool.parent().unwrap()).unwrap();
        std::fs::copy("/bin/true", &tool).unwrap();
        assert_eq!(dynamic_elfs(&d.join("bin")).unwrap(), vec![tool.clone()]);
        wrap_in_place(&tool, &rt).unwrap();
        assert!(d.join("bin/.phyr-real/true").is_file());
        wrap_in_place(&tool, &rt).unwrap();
        assert!(!d.join("bin/.phyr-real/.phyr-real").exists());
        assert!(
            dynamic_elfs(&d.join("bin")).unwrap().is_empty(),
            "the wrapper is a script"
        );
        let st = Command::new(&tool).status().unwrap();
        assert!(st.success(), "the wrapped tool did not run: {st}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn tools_wanting_a_newer_glibc_are_wrapped() {
        let Ok(b) = std::fs::read("/bin/true") else { return };
        let needs = crate::provision::elf::glibc_needed(&b).unwrap();
        assert_eq!(needs_wrapper(&b, Some(needs)), None, "the host runs its own /bin/true");
        let older = Version::new(needs.major, needs.minor.saturating_sub(1), 0);
        let why = needs_wrapper(&b, Some(older)).unwrap();
        assert!(
            why.starts_with(&format!("needs GLIBC_{}.{}, the host has", needs.major, needs.minor)),
            "{why}"
        );
        assert!(needs_wrapper(&b, None).is_some());
        assert!(host_glibc().is_some_and(|v| v.major == 2));
    }
}
