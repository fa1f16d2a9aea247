//! The provisioning cache: `--cache-dir`, else `$PHYR_CACHE_DIR`, else `$XDG_CACHE_HOME/phyr`,
//! else `~/.cache/phyr`. Each provisioned item lives in its own subdirectory and is marked
//! complete by a `READY` stamp written last, so an interrupted download is redone, not trusted.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub struct Cache {
    pub root: PathBuf,
}

impl Cache {
    pub fn resolve(flag: Option<&Path>) -> Result<Cache> {
        let root = match flag {
            Some(p) => p.to_path_buf(),
            None => default_root()?,
        };
        let root = if root.is_relative() {
            std::env::current_dir()?.join(root)
        } else {
            root
        };
        std::fs::create_dir_all(&root).map_err(|e| not_writable(&root, e))?;
        let probe = root.join(".write-test");
        std::fs::write(&probe, b"ok").map_err(|e| not_writable(&root, e))?;
        let _ = std::fs::remove_file(&probe);
        Ok(Cache { root })
    }

    /// An exclusive lock on the cache for provisioning, held until the returned file is dropped,
    /// so two harnesses never download into the same place at once.
    pub fn lock(&self) -> Result<std::fs::File> {
        let path = self.root.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if !crate::sys::try_flock_exclusive(&f).with_context(|| format!("locking {}", path.display()))? {
            crate::progress::say(format!(
                "waiting for another phyr-harness using {} ...",
                self.root.display()
            ));
            // Poll rather than block, so Ctrl-C still works while waiting.
            while !crate::sys::try_flock_exclusive(&f).with_context(|| format!("locking {}", path.display()))? {
                if let Some(sig) = crate::sys::pending_signal() {
                    bail!(
                        "interrupted by {sig} while waiting for the cache lock {}",
                        path.display()
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        Ok(f)
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The stamp contents of `name` if it is complete.
    pub fn ready(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(name).join("READY")).ok()
    }

    pub fn mark_ready(&self, name: &str, what: &str) -> Result<()> {
        let p = self.dir(name).join("READY");
        std::fs::write(&p, what).with_context(|| format!("writing {}", p.display()))
    }

    /// Forgets `name` (before re-provisioning it).
    pub fn clear(&self, name: &str) -> Result<()> {
        let d = self.dir(name);
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("removing the stale {}", d.display()))?;
        }
        Ok(())
    }
}

fn default_root() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PHYR_CACHE_DIR").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p).join("phyr"));
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache/phyr")),
        None => bail!("no cache directory: HOME is unset; pass --cache-dir DIR or set PHYR_CACHE_DIR"),
    }
}

fn not_writable(root: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "the cache directory {} is not writable ({e}); pass --cache-dir DIR or set PHYR_CACHE_DIR to a writable directory",
        root.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_cache_says_what_to_do() {
        let err = Cache::resolve(Some(Path::new("/proc/phyr-cache")))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not writable") && err.contains("--cache-dir"), "{err}");
    }
}
