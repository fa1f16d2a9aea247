//! Run directories: `runs/<UTC timestamp>/` with device.log, qemu.log, serial.log, trace/,
//! results/, sock/ (the endpoint sockets, removed at teardown); `runs/latest` points at the newest.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// `sun_path` is 108 bytes including the terminating NUL.
pub const SUN_PATH_MAX: usize = 107;

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates a fresh run directory under `root` and repoints `root/latest` at it.
    pub fn create(root: &Path) -> Result<RunDir> {
        std::fs::create_dir_all(root).with_context(|| format!("creating the runs directory {}", root.display()))?;
        let root = root.canonicalize()?;
        let stamp = utc_stamp(SystemTime::now());
        // create_dir (not _all) fails if the name is taken, so two harnesses never share one.
        let mut n = 1;
        let path = loop {
            let candidate = if n == 1 {
                root.join(&stamp)
            } else {
                root.join(format!("{stamp}-{n}"))
            };
            match std::fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e).with_context(|| format!("creating {}", candidate.display())),
            }
        };
        let latest = root.join("latest");
        let tmp = root.join(format!(".latest-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(path.file_name().context("run dir name")?, &tmp)?;
        std::fs::rename(&tmp, &latest).with_context(|| format!("updating {}", latest.display()))?;
        Ok(RunDir { path })
    }

    /// Makes this directory (or `name` inside it) ready for one guest session:
    /// trace/, results/ and sock/ subdirectories.
    pub fn session(&self, name: Option<&str>) -> Result<RunDir> {
        let path = match name {
            Some(n) => self.path.join(n),
            None => self.path.clone(),
        };
        for sub in ["trace", "results", "sock"] {
            std::fs::create_dir_all(path.join(sub))
                .with_context(|| format!("creating {}", path.join(sub).display()))?;
        }
        Ok(RunDir { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.path.join("sock")
    }
}

/// Refuses socket paths that do not fit in `sockaddr_un.sun_path`, before anything starts.
pub fn check_socket_paths(socket_dir: &Path, endpoints: usize) -> Result<()> {
    let longest = socket_dir.join(format!("ep{}.sock", endpoints.saturating_sub(1)));
    let len = longest.as_os_str().len();
    if len > SUN_PATH_MAX {
        bail!(
            "socket path {} is {len} bytes; a Unix socket path must be at most {SUN_PATH_MAX} bytes. \
             Run from a shorter directory or pass --runs-dir with a shorter path (e.g. /tmp/phyr-runs)",
            longest.display()
        );
    }
    Ok(())
}

/// Checks, before anything is created or started, that the sockets of a run under `root`
/// (in `sub`, e.g. a recipe name for `test`) will fit in `sun_path`, assuming the longest
/// run directory name (`<stamp>-999`).
pub fn check_future_socket_paths(root: &Path, sub: Option<&str>, endpoints: usize) -> Result<()> {
    let root = if root.is_absolute() {
        root.to_path_buf()
    } else {
        std::env::current_dir()?.join(root)
    };
    let mut dir = root.join(format!("{}-999", utc_stamp(SystemTime::now())));
    if let Some(s) = sub {
        dir = dir.join(s);
    }
    check_socket_paths(&dir.join("sock"), endpoints)
}

/// `20261123T221502Z` for a time.
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_calendar_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(1_795_471_323)),
            "20261123T220203Z"
        );
    }

    #[test]
    fn long_socket_paths_are_refused_before_starting() {
        assert!(check_socket_paths(Path::new("/tmp/r/sock"), 2).is_ok());
        let long = PathBuf::from(format!("/{}", "d".repeat(100)));
        let e = check_socket_paths(&long, 2).unwrap_err().to_string();
        assert!(e.contains("at most 107 bytes") && e.contains("--runs-dir"), "{e}");
        // exactly at the limit: 107 bytes is fine, 108 is not
        let dir = PathBuf::from(format!("/{}", "d".repeat(107 - 1 - 1 - "ep1.sock".len())));
        assert_eq!(dir.join("ep1.sock").as_os_str().len(), 107);
        assert!(check_socket_paths(&dir, 2).is_ok());
        let dir = PathBuf::from(format!("/{}", "d".repeat(107 - 1 - "ep1.sock".len())));
        assert!(check_socket_paths(&dir, 2).is_err());
    }

    #[test]
    fn run_dirs_are_unique_and_latest_follows() {
        let root = std::env::temp_dir().join(format!("phyr-rundir-test-{}", std::process::id()));
        let a = RunDir::create(&root).unwrap();
        let b = RunDir::create(&root).unwrap().session(None).unwrap();
        assert_ne!(a.path, b.path);
        assert!(b.socket_dir().is_dir() && b.file("trace").is_dir());
        assert_eq!(
            std::fs::read_link(root.join("latest")).unwrap(),
            PathBuf::from(b.path.file_name().unwrap())
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
