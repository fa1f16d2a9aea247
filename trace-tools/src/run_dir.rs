//! Finding trace files: the latest run, a given run directory, a trace directory, or one file.
//!
//! Run directories live under `runs/` (`runs/latest` points at the newest) and keep their
//! traces in `trace/ep<N>.phyrtrace`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("no run directory found under {}; run `just test` or `just run` first", runs_root.display())]
    NoRuns { runs_root: PathBuf },
    #[error("{} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error("{} has no traces (no trace/ep*.phyrtrace files); was the device run with tracing off?", dir.display())]
    NoTraces { dir: PathBuf },
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One endpoint's trace file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceFile {
    /// The endpoint from the file name (`ep3.phyrtrace` -> 3); the header has the real one.
    pub endpoint: Option<u16>,
    pub path: PathBuf,
}

/// The run directory to inspect: `arg` if given, else `runs_root/latest`, else the newest
/// (by name: run directories are timestamps) directory under `runs_root`.
pub fn resolve_run_dir(arg: Option<&Path>, runs_root: &Path) -> Result<PathBuf, LocateError> {
    if let Some(p) = arg {
        return if p.exists() {
            Ok(p.to_owned())
        } else {
            Err(LocateError::NotFound { path: p.to_owned() })
        };
    }
    let latest = runs_root.join("latest");
    if latest.is_dir() {
        return Ok(latest);
    }
    let no_runs = || LocateError::NoRuns {
        runs_root: runs_root.to_owned(),
    };
    let entries = match fs::read_dir(runs_root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(no_runs()),
        Err(source) => {
            return Err(LocateError::Io {
                path: runs_root.to_owned(),
                source,
            })
        }
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .max()
        .ok_or_else(no_runs)
}

/// A `just test` run holds one sub-run per QEMU recipe (`RUN/default/trace/`,
/// `RUN/anon-ram/trace/`, ...). When `run` has no `trace/` of its own but such sub-runs,
/// returns the one to show (`default` if present, else the first by name) and a note naming
/// the others; otherwise `run` itself and no note.
pub fn pick_recipe_run(run: &Path) -> (PathBuf, Option<String>) {
    if !run.is_dir() || run.join("trace").is_dir() {
        return (run.to_owned(), None);
    }
    let mut subs: Vec<PathBuf> = match fs::read_dir(run) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("trace").is_dir())
            .collect(),
        Err(_) => return (run.to_owned(), None),
    };
    if subs.is_empty() {
        return (run.to_owned(), None);
    }
    subs.sort();
    let pick = subs
        .iter()
        .position(|p| p.file_name().is_some_and(|n| n == "default"))
        .unwrap_or(0);
    let chosen = subs.remove(pick);
    let note = (!subs.is_empty()).then(|| {
        let others: Vec<String> = subs.iter().map(|p| p.display().to_string()).collect();
        format!(
            "showing {} (this run has more recipes; pass one of: {})",
            chosen.display(),
            others.join(", ")
        )
    });
    (chosen, note)
}

/// The trace files under `path`: a run directory (its `trace/`), a trace directory, or a
/// single `.phyrtrace` file. Sorted by endpoint.
pub fn trace_files(path: &Path) -> Result<Vec<TraceFile>, LocateError> {
    if path.is_file() {
        return Ok(vec![TraceFile {
            endpoint: endpoint_of(path),
            path: path.to_owned(),
        }]);
    }
    let sub = path.join("trace");
    let dir = if sub.is_dir() { sub } else { path.to_owned() };
    let entries = fs::read_dir(&dir).map_err(|source| LocateError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut files: Vec<TraceFile> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "phyrtrace") && p.is_file())
        .map(|p| TraceFile {
            endpoint: endpoint_of(&p),
            path: p,
        })
        .collect();
    if files.is_empty() {
        return Err(LocateError::NoTraces { dir: path.to_owned() });
    }
    files.sort_by(|a, b| (a.endpoint, &a.path).cmp(&(b.endpoint, &b.path)));
    Ok(files)
}

fn endpoint_of(path: &Path) -> Option<u16> {
    path.file_stem()?.to_str()?.strip_prefix("ep")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use phyr_trace::testutil::temp_dir;

    #[test]
    fn missing_runs_root_says_how_to_make_a_run() {
        let root = temp_dir("rundir-none").join("runs");
        let err = resolve_run_dir(None, &root).unwrap_err();
        assert!(matches!(err, LocateError::NoRuns { .. }));
        assert!(err.to_string().contains("run `just test` or `just run` first"));
    }

    #[test]
    fn empty_runs_root_is_no_runs() {
        let root = temp_dir("rundir-empty");
        assert!(matches!(resolve_run_dir(None, &root), Err(LocateError::NoRuns { .. })));
    }

    #[test]
    fn prefers_latest_then_newest_name() {
        let root = temp_dir("rundir-latest");
        fs::create_dir_all(root.join("2026-01-01T00-00-00")).unwrap();
        fs::create_dir_all(root.join("2026-02-01T00-00-00")).unwrap();
        assert_eq!(resolve_run_dir(None, &root).unwrap(), root.join("2026-02-01T00-00-00"));
        std::os::unix::fs::symlink("2026-01-01T00-00-00", root.join("latest")).unwrap();
        assert_eq!(resolve_run_dir(None, &root).unwrap(), root.join("latest"));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn test_run_with_recipe_subruns_picks_default_and_names_the_others() {
        let run = temp_dir("rundir-recipes");
        for r in ["anon-ram", "default"] {
            fs::create_dir_all(run.join(r).join("trace")).unwrap();
        }
        fs::create_dir_all(run.join("results")).unwrap();
        let (chosen, note) = pick_recipe_run(&run);
        assert_eq!(chosen, run.join("default"));
        assert!(note.unwrap().contains("anon-ram"));
        let (same, none) = pick_recipe_run(&run.join("anon-ram"));
        assert_eq!((same, none), (run.join("anon-ram"), None));
        fs::remove_dir_all(run).unwrap();
    }

    #[test]
    fn run_without_traces_is_a_clear_error() {
        let run = temp_dir("rundir-notrace");
        fs::create_dir_all(run.join("trace")).unwrap();
        let err = trace_files(&run).unwrap_err();
        assert!(err.to_string().contains("has no traces"), "{err}");
        fs::remove_dir_all(run).unwrap();
    }

    #[test]
    fn finds_files_sorted_by_endpoint() {
        let run = temp_dir("rundir-files");
        let t = run.join("trace");
        fs::create_dir_all(&t).unwrap();
        for n in ["ep10.phyrtrace", "ep2.phyrtrace", "notes.txt"] {
            fs::write(t.join(n), b"").unwrap();
        }
        let eps: Vec<_> = trace_files(&run).unwrap().into_iter().map(|f| f.endpoint).collect();
        assert_eq!(eps, [Some(2), Some(10)]);
        assert_eq!(trace_files(&t.join("ep2.phyrtrace")).unwrap().len(), 1);
        assert!(matches!(
            resolve_run_dir(Some(&run.join("nope")), &run),
            Err(LocateError::NotFound { .. })
        ));
        fs::remove_dir_all(run).unwrap();
    }
}
