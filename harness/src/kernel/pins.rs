//! Kernel pins: which Debian release each channel (`backports`, `stable`) means in this cache.
//!
//! The first use of a channel resolves it with apt and pins the answer in
//! `CACHE/kernels/pins`; later runs use the pinned release without asking apt, so a warm cache
//! never changes kernel under a user. `provision --refresh` resolves again and moves the pin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::kernel::spec::{full_release, Channel};

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{file}:{line}: {what}; fix the line or delete the file (the next run pins again)")]
    Bad { file: String, line: usize, what: String },
    #[error("reading {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("writing {file}: {source}")]
    Write { file: String, source: std::io::Error },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    pins: BTreeMap<Channel, String>,
}

impl Pins {
    pub fn file(cache_root: &Path) -> PathBuf {
        cache_root.join("kernels/pins")
    }

    /// The pins of a cache; a missing file is no pins.
    pub fn load(file: &Path) -> Result<Pins, PinError> {
        match std::fs::read_to_string(file) {
            Ok(text) => Pins::parse(&text, &file.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Pins::default()),
            Err(source) => Err(PinError::Read {
                file: file.display().to_string(),
                source,
            }),
        }
    }

    /// `channel release` lines; `#` comments and blank lines are ignored.
    pub fn parse(text: &str, file: &str) -> Result<Pins, PinError> {
        let mut pins = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: String| PinError::Bad {
                file: file.to_owned(),
                line: i + 1,
                what,
            };
            let mut words = line.split_whitespace();
            let (Some(ch), Some(rel), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad(format!("{line:?} is not `CHANNEL RELEASE`")));
            };
            let channel =
                Channel::from_name(ch).ok_or_else(|| bad(format!("unknown channel {ch:?} (backports or stable)")))?;
            if full_release(rel).is_none() || rel.contains('/') {
                return Err(bad(format!(
                    "{rel:?} is not a Debian kernel release such as 7.3.4+deb13-amd64"
                )));
            }
            if pins.insert(channel, rel.to_owned()).is_some() {
                return Err(bad(format!("{ch} is pinned twice")));
            }
        }
        Ok(Pins { pins })
    }

    pub fn get(&self, c: Channel) -> Option<&str> {
        self.pins.get(&c).map(String::as_str)
    }

    /// Pins `c` to `release`; returns the release it replaces, if any.
    pub fn set(&mut self, c: Channel, release: &str) -> Option<String> {
        self.pins.insert(c, release.to_owned()).filter(|old| old != release)
    }

    /// Whether some channel still uses `release`.
    pub fn uses(&self, release: &str) -> bool {
        self.pins.values().any(|r| r == release)
    }

    pub fn render(&self) -> String {
        let mut s = String::from(
            "# Debian kernel releases this cache uses, per channel (written by phyr-harness).\n\
             # `phyr-harness provision --refresh` moves them to the newest; edit or delete to choose.\n",
        );
        for (c, r) in &self.pins {
            s.push_str(&format!("{} {r}\n", c.name()));
        }
        s
    }

    /// Writes the pins atomically (a temporary file renamed over the old one).
    pub fn save(&self, file: &Path) -> Result<(), PinError> {
        let err = |source| PinError::Write {
            file: file.display().to_string(),
            source,
        };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, self.render()).map_err(err)?;
        std::fs::rename(&tmp, file).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_round_trip_through_the_file() {
        let dir = std::env::temp_dir().join(format!("phyr-pins-{}", std::process::id()));
        let file = dir.join("kernels/pins");
        assert_eq!(Pins::load(&file).unwrap(), Pins::default());
        let mut p = Pins::default();
        assert_eq!(p.set(Channel::Backports, "7.3.4+deb13-amd64"), None);
        assert_eq!(p.set(Channel::Stable, "6.12.117+deb13-amd64"), None);
        p.save(&file).unwrap();
        let back = Pins::load(&file).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.get(Channel::Backports), Some("7.3.4+deb13-amd64"));
        assert!(back.uses("6.12.117+deb13-amd64") && !back.uses("7.2.12+deb13-amd64"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn moving_a_pin_reports_the_old_release() {
        let mut p = Pins::default();
        p.set(Channel::Backports, "7.3.4+deb13-amd64");
        assert_eq!(
            p.set(Channel::Backports, "7.3.4+deb13-amd64"),
            None,
            "same release: nothing moved"
        );
        assert_eq!(
            p.set(Channel::Backports, "7.3.5+deb13-amd64").as_deref(),
            Some("7.3.4+deb13-amd64")
        );
    }

    #[test]
    fn hostile_pin_files_name_the_line() {
        for (text, want) in [
            ("backports\n", "is not `CHANNEL RELEASE`"),
            ("backports 7.3.4+deb13-amd64 extra\n", "is not `CHANNEL RELEASE`"),
            ("sid 7.3.4+deb13-amd64\n", "unknown channel \"sid\""),
            ("stable ../../etc\n", "is not a Debian kernel release"),
            ("stable 6.12/../x+deb13-amd64\n", "is not a Debian kernel release"),
            (
                "stable 6.12.1+deb13-amd64\nstable 6.12.2+deb13-amd64\n",
                "stable is pinned twice",
            ),
        ] {
            let e = Pins::parse(text, "pins").unwrap_err().to_string();
            assert!(e.contains(want) && e.starts_with("pins:"), "{text:?}: {e}");
        }
        let ok = Pins::parse("# comment\n\n  stable 6.12.117+deb13-amd64  \n", "pins").unwrap();
        assert_eq!(ok.get(Channel::Stable), Some("6.12.117+deb13-amd64"));
    }
}
