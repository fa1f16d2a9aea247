//! Debian's guest kernels, provisioned with the private apt configuration into
//! `CACHE/kernels/<release>/`: `image/` holds the boot packages unpacked (from 7.x the image is
//! split into `linux-binary-R`, `linux-modules-R` and `linux-base-R`; 6.12 ships one
//! `linux-image-R`), `headers/` the build packages (`linux-headers-R`, its `-common` and
//! `linux-kbuild-V`), fetched only when a module is built for that kernel.
//!
//! A channel (`backports`, `stable`) is resolved from `linux-image-amd64` in its suite and
//! pinned (see pins.rs); a version names one release directly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::kernel::pins::Pins;
use crate::kernel::spec::{full_release, Channel};
use crate::progress::say;
use crate::provision::apt::extract_deb;
use crate::provision::provisioner::Provisioner;
use crate::provision::version::Version;

/// A Debian kernel unpacked in the cache.
#[derive(Debug, Clone)]
pub struct DebianKernel {
    pub release: String,
    /// The channel it was pinned for, if it came from one.
    pub channel: Option<Channel>,
    pub image: PathBuf,
    pub modules_dir: PathBuf,
    pub config: PathBuf,
}

/// Which Debian kernel: a channel's pinned release, or one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    Channel(Channel),
    Version(String),
}

/// `apt-cache policy P`'s version table: each version with the suites that serve it.
pub fn parse_policy(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let t = line.trim();
        if t == "Version table:" {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let words: Vec<&str> = t.trim_start_matches("*** ").split_whitespace().collect();
        match words.as_slice() {
            // `100 http://deb.debian.org/debian trixie-backports/main amd64 Packages`
            [prio, url, suite, ..] if prio.parse::<i64>().is_ok() && url.contains("://") => {
                if let Some(last) = out.last_mut() {
                    last.1.push(suite.split('/').next().unwrap_or(suite).to_owned());
                }
            }
            // `7.3.4-1~bpo13+1 100`
            [version, prio] if prio.parse::<i64>().is_ok() && !version.starts_with('/') => {
                out.push(((*version).to_owned(), Vec::new()));
            }
            _ => {}
        }
    }
    out
}

/// The `Depends:` of the first record of `apt-cache show` output: package names, with each
/// alternative (`a | b`) listed and version constraints dropped.
pub fn parse_depends(show: &str) -> Vec<String> {
    let Some(line) = show.lines().find_map(|l| l.strip_prefix("Depends:")) else {
        return vec![];
    };
    line.split([',', '|'])
        .filter_map(|item| item.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name).to_owned())
        .collect()
}

/// The sum of the `Size:` fields of `apt-cache show` output's first record, in bytes.
fn parse_size(show: &str) -> u64 {
    show.lines()
        .find_map(|l| l.strip_prefix("Size:"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The release a `linux-image-amd64` version points at (`linux-image-R` in its Depends).
pub fn release_of_meta(depends: &[String]) -> Option<String> {
    depends
        .iter()
        .filter_map(|d| d.strip_prefix("linux-image-"))
        .map(|r| r.trim_end_matches("-unsigned"))
        .find(|r| full_release(r).is_some())
        .map(str::to_owned)
}

/// The channel's release: the `linux-image-amd64` version its suite serves (the newest, if
/// the suite lists several), as `linux-image-R` in that version's Depends.
pub fn channel_version(policy: &str, channel: Channel) -> Option<String> {
    parse_policy(policy)
        .into_iter()
        .filter(|(_, suites)| suites.iter().any(|s| s == channel.suite()))
        .max_by_key(|(v, _)| Version::parse_prefix(v))
        .map(|(v, _)| v)
}

/// From `apt-cache pkgnames linux-image-V` names, the amd64 release for version `v`.
pub fn release_for_version(names: &[String], v: &str) -> Option<String> {
    names
        .iter()
        .filter_map(|n| n.strip_prefix("linux-image-"))
        .filter(|r| full_release(r).is_some() && r.strip_prefix(v).is_some_and(|rest| rest.starts_with('+')))
        .filter(|r| {
            r.split('+')
                .nth(1)
                .is_some_and(|flavour| flavour.split_once('-').map(|f| f.1) == Some("amd64"))
        })
        .max_by_key(|r| Version::parse_prefix(r))
        .map(str::to_owned)
}

/// Where the boot files of an unpacked release are (7.x and 6.12 layouts).
pub fn kernel_in(root: &Path, release: &str, channel: Option<Channel>) -> Result<DebianKernel> {
    let first = |c: [PathBuf; 2]| c.into_iter().find(|p| p.exists());
    let mods = root.join(format!("usr/lib/modules/{release}"));
    let image = first([mods.join("vmlinuz"), root.join(format!("boot/vmlinuz-{release}"))]);
    let config = first([mods.join("config"), root.join(format!("boot/config-{release}"))]);
    match (image, config, mods.is_dir()) {
        (Some(image), Some(config), true) => Ok(DebianKernel {
            release: release.to_owned(),
            channel,
            image,
            modules_dir: mods,
            config,
        }),
        (i, c, m) => bail!(
            "the unpacked kernel {release} in {} lacks {}",
            root.display(),
            [
                (i.is_none(), "its image (vmlinuz)"),
                (c.is_none(), "its config"),
                (!m, "its modules directory")
            ]
            .iter()
            .filter(|(missing, _)| *missing)
            .map(|(_, w)| *w)
            .collect::<Vec<_>>()
            .join(", ")
        ),
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

impl Provisioner<'_> {
    /// A Debian kernel ready to boot. A channel uses its pin unless `refresh` asks apt again.
    pub fn debian_kernel(&mut self, which: &Which, refresh: bool) -> Result<DebianKernel> {
        let release = match which {
            Which::Version(v) => self.release_for(v)?,
            Which::Channel(c) => return self.channel_kernel(*c, refresh),
        };
        self.release_kernel(&release, None)
    }

    fn channel_kernel(&mut self, c: Channel, refresh: bool) -> Result<DebianKernel> {
        let pin_file = Pins::file(&self.cache.root);
        let mut pins = Pins::load(&pin_file)?;
        if let (Some(r), false) = (pins.get(c), refresh) {
            let r = r.to_owned();
            return self.release_kernel(&r, Some(c)).with_context(|| {
                format!(
                    "the {c} kernel is pinned to {r} in {}; `phyr-harness provision --refresh` \
                     (or `just provision --refresh`) pins the one Debian serves now",
                    pin_file.display()
                )
            });
        }
        let apt = self.apt()?;
        let policy = apt.query(&["policy", "linux-image-amd64"])?;
        let version = channel_version(&policy, c).with_context(|| {
            format!(
                "Debian {} serves no linux-image-amd64 (apt-cache policy linux-image-amd64 lists none from it); \
                 pass --kernel with another kernel",
                c.suite()
            )
        })?;
        let show = apt.query(&["show", &format!("linux-image-amd64={version}")])?;
        let release = release_of_meta(&parse_depends(&show))
            .with_context(|| format!("linux-image-amd64 {version} depends on no linux-image-RELEASE-amd64 package"))?;
        let k = self.release_kernel(&release, Some(c))?;
        let before = pins.get(c).map(str::to_owned);
        pins.set(c, &release);
        pins.save(&pin_file)?;
        match before {
            Some(old) if old != release => {
                say(format!(
                    "{c} kernel: {old} -> {release} (pinned in {})",
                    pin_file.display()
                ));
                if !pins.uses(&old) {
                    for d in [format!("kernels/{old}"), format!("modules/{old}")] {
                        self.cache.clear(&d)?;
                    }
                    say(format!("  removed the superseded kernel {old} from the cache"));
                }
            }
            Some(_) => say(format!(
                "{c} kernel: {release} is the newest Debian serves; pin unchanged"
            )),
            None => say(format!("{c} kernel: pinned {release} in {}", pin_file.display())),
        }
        Ok(k)
    }

    /// `7.3.4` -> `7.3.4+deb13-amd64`: a provisioned release first, else apt's names.
    fn release_for(&mut self, v: &str) -> Result<String> {
        if let Some(r) = full_release(v) {
            return Ok(r.to_owned());
        }
        if let Ok(entries) = std::fs::read_dir(self.cache.dir("kernels")) {
            let mut local: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("{v}+")) && full_release(n).is_some())
                .filter(|n| self.cache.ready(&format!("kernels/{n}/image")).is_some())
                .collect();
            local.sort();
            if let Some(r) = local.pop() {
                return Ok(r);
            }
        }
        let names = self.apt()?.names_with_prefix(&format!("linux-image-{v}+"))?;
        release_for_version(&names, v).with_context(|| {
            format!(
                "--kernel {v}: Debian trixie and trixie-backports serve no linux-image-{v}+debNN-amd64; \
                 `apt-cache pkgnames linux-image-` (with the private config in the cache's apt/) lists them, \
                 or use --kernel backports or --kernel stable"
            )
        })
    }

    /// The packages (name, size) for one release: `base` and every `linux-*` dependency
    /// carrying the same release or kbuild version, recursively.
    fn package_closure(&mut self, base: &str, keep: &dyn Fn(&str) -> bool) -> Result<Vec<(String, u64)>> {
        let apt = self.apt()?;
        let mut todo = vec![base.to_owned()];
        let mut out: Vec<(String, u64)> = Vec::new();
        while let Some(p) = todo.pop() {
            if out.iter().any(|(n, _)| *n == p) {
                continue;
            }
            let show = apt.query(&["show", &p]).unwrap_or_default();
            if show.trim().is_empty() {
                bail!("Debian serves no package {p}");
            }
            todo.extend(parse_depends(&show).into_iter().filter(|d| keep(d)));
            out.push((p, parse_size(&show)));
        }
        Ok(out)
    }

    fn download_into(&mut self, what: &str, packages: &[(String, u64)], dest: &Path) -> Result<()> {
        let t = Instant::now();
        let total: u64 = packages.iter().map(|(_, s)| s).sum();
        let names: Vec<&str> = packages.iter().map(|(n, _)| n.as_str()).collect();
        say(format!(
            "provisioning {what}: {} ({}) into {} ...",
            names.join(" "),
            mb(total),
            dest.display()
        ));
        let dl = dest.with_extension("download");
        let _ = std::fs::remove_dir_all(&dl);
        let debs = self
            .apt()?
            .download(&names, &dl)
            .with_context(|| format!("downloading {what} from Debian failed; is deb.debian.org reachable?"))?;
        say(format!(
            "  downloaded in {:.1} s; unpacking (nothing is installed on the host) ...",
            t.elapsed().as_secs_f64()
        ));
        for deb in &debs {
            extract_deb(deb, dest)?;
        }
        std::fs::remove_dir_all(&dl)?;
        Ok(())
    }

    fn release_kernel(&mut self, release: &str, channel: Option<Channel>) -> Result<DebianKernel> {
        let name = format!("kernels/{release}/image");
        let root = self.cache.dir(&name);
        if self.cache.ready(&name).is_some() {
            match kernel_in(&root, release, channel) {
                Ok(k) => return Ok(k),
                Err(e) => say(format!("{e:#}; provisioning it again")),
            }
        }
        let t = Instant::now();
        let rel = release.to_owned();
        let packages = self
            .package_closure(&format!("linux-image-{release}"), &|d: &str| {
                d.starts_with("linux-") && d.contains(rel.as_str())
            })
            .with_context(|| format!("Debian no longer serves kernel {release} (or never did)"))?;
        self.cache.clear(&name)?;
        self.download_into(&format!("the guest kernel {release}"), &packages, &root)?;
        let k = kernel_in(&root, release, channel)?;
        self.cache.mark_ready(&name, &format!("{release}\n"))?;
        say(format!("  kernel {release} ready ({:.1} s)", t.elapsed().as_secs_f64()));
        Ok(k)
    }

    /// The kbuild directory (`make -C` target) of a Debian kernel, its Makefile pointed at the
    /// cache and its ELF tools wrapped when the host's libc is too old for them.
    pub fn debian_headers(&mut self, k: &DebianKernel) -> Result<PathBuf> {
        let release = &k.release;
        let name = format!("kernels/{release}/headers");
        let root = self.cache.dir(&name);
        let kdir = root.join(format!("usr/src/linux-headers-{release}"));
        if self.cache.ready(&name).is_some() && kdir.join("Makefile").is_file() {
            return Ok(kdir);
        }
        let t = Instant::now();
        let packages = self
            .package_closure(&format!("linux-headers-{release}"), &|d: &str| {
                d.starts_with("linux-headers-") || d.starts_with("linux-kbuild-")
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "no headers for kernel {release}: {e:#}. Out-of-tree modules are built against \
                     linux-headers-{release}; use a kernel Debian still serves (`just provision --refresh`)"
                )
            })?;
        self.cache.clear(&name)?;
        self.download_into(&format!("the build headers of {release}"), &packages, &root)?;
        rewrite_headers_makefile(&kdir, &root)?;
        let kbuild = std::fs::read_link(kdir.join("scripts"))
            .ok()
            .and_then(|l| kdir.join(l).parent().map(Path::to_path_buf))
            .context("the headers have no scripts/ link to linux-kbuild")?;
        let wrapped = crate::provision::wrap::wrap_tools_if_needed(self, &kbuild)?;
        self.cache.mark_ready(&name, &format!("{release}\n"))?;
        say(format!(
            "  headers of {release} ready{} ({:.1} s)",
            if wrapped > 0 {
                format!(", {wrapped} kbuild tools wrapped to run on trixie's libc")
            } else {
                String::new()
            },
            t.elapsed().as_secs_f64()
        ));
        Ok(kdir)
    }
}

/// Debian's headers Makefile names absolute `/usr/src/...` paths; point them into `root`.
pub fn rewrite_headers_makefile(kdir: &Path, root: &Path) -> Result<()> {
    let mk = kdir.join("Makefile");
    let text = std::fs::read_to_string(&mk).with_context(|| format!("reading {}", mk.display()))?;
    let new = rewrite_usr_src(&text, root);
    if new == text {
        bail!(
            "{} names no /usr/src path; this headers layout is unknown to phyr-harness",
            mk.display()
        );
    }
    std::fs::write(&mk, new).with_context(|| format!("writing {}", mk.display()))
}

fn rewrite_usr_src(text: &str, root: &Path) -> String {
    let to = format!("{}/usr/src/", root.display());
    text.lines()
        .map(|l| {
            let l = l.replace(" /usr/src/", &format!(" {to}"));
            match l.split_once("=/usr/src/") {
                Some((k, rest)) => format!("{k}={to}{rest}"),
                None => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "linux-image-amd64:\n  Installed: (none)\n  Candidate: 6.12.117-1\n  Version table:\n     7.3.4-1~bpo13+1 100\n        100 http://deb.debian.org/debian trixie-backports/main amd64 Packages\n     6.12.117-1 990\n        990 http://deb.debian.org/debian trixie/main amd64 Packages\n";

    #[test]
    fn channels_resolve_from_the_policy_table() {
        let table = parse_policy(POLICY);
        assert_eq!(table.len(), 2);
        assert_eq!(table[0].1, vec!["trixie-backports"]);
        assert_eq!(
            channel_version(POLICY, Channel::Backports).as_deref(),
            Some("7.3.4-1~bpo13+1")
        );
        assert_eq!(channel_version(POLICY, Channel::Stable).as_deref(), Some("6.12.117-1"));
        // A suite listing two versions: the newest wins.
        let two = POLICY.replace(
            "     6.12.117-1 990\n",
            "     7.3.10-1~bpo13+1 100\n        100 http://deb.debian.org/debian trixie-backports/main amd64 Packages\n     6.12.117-1 990\n",
        );
        assert_eq!(
            channel_version(&two, Channel::Backports).as_deref(),
            Some("7.3.10-1~bpo13+1")
        );
        assert_eq!(channel_version("", Channel::Stable), None);
        assert_eq!(
            channel_version("garbage\nVersion table:\n 1 2 3\n", Channel::Stable),
            None
        );
    }

    #[test]
    fn meta_package_depends_name_the_release() {
        let show = "Package: linux-image-amd64\nVersion: 7.3.4-1~bpo13+1\nDepends: linux-base-amd64 (= 7.3.4-1~bpo13+1), linux-image-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-modules-amd64 (= 7.3.4-1~bpo13+1)\nSize: 1900\n\nPackage: linux-image-amd64\nDepends: linux-image-6.12.117+deb13-amd64\n";
        let d = parse_depends(show);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(release_of_meta(&d).as_deref(), Some("7.3.4+deb13-amd64"));
        assert_eq!(parse_size(show), 1900);
        let alt = parse_depends("Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, kmod\n");
        assert_eq!(alt, vec!["dracut", "initramfs-tools", "linux-initramfs-tool", "kmod"]);
        assert_eq!(
            release_of_meta(&["linux-image-6.12.117+deb13-amd64-unsigned".into()]).as_deref(),
            Some("6.12.117+deb13-amd64")
        );
        assert_eq!(release_of_meta(&["kmod".into()]), None);
    }

    #[test]
    fn versions_map_to_amd64_releases_only() {
        let names: Vec<String> = [
            "linux-image-7.3.4+deb13-amd64",
            "linux-image-7.3.4+deb13-cloud-amd64",
            "linux-image-7.3.4+deb13-rt-amd64",
            "linux-image-7.3.4+deb13-amd64-dbg",
            "linux-image-7.3.41+deb13-amd64",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            release_for_version(&names, "7.3.4").as_deref(),
            Some("7.3.4+deb13-amd64")
        );
        assert_eq!(
            release_for_version(&names, "7.3.41").as_deref(),
            Some("7.3.41+deb13-amd64")
        );
        assert_eq!(release_for_version(&names, "7.2"), None);
    }

    #[test]
    fn both_package_layouts_are_found() {
        let root = std::env::temp_dir().join(format!("phyr-debk-{}", std::process::id()));
        let r = "7.3.4+deb13-amd64";
        let m = root.join(format!("usr/lib/modules/{r}"));
        std::fs::create_dir_all(&m).unwrap();
        let e = kernel_in(&root, r, None).unwrap_err().to_string();
        assert!(e.contains("lacks its image (vmlinuz), its config"), "{e}");
        std::fs::write(m.join("vmlinuz"), b"").unwrap();
        std::fs::write(m.join("config"), b"").unwrap();
        let k = kernel_in(&root, r, Some(Channel::Backports)).unwrap();
        assert_eq!(k.image, m.join("vmlinuz"));
        std::fs::remove_dir_all(&root).unwrap();

        let r = "6.12.117+deb13-amd64";
        std::fs::create_dir_all(root.join(format!("usr/lib/modules/{r}"))).unwrap();
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(root.join(format!("boot/vmlinuz-{r}")), b"").unwrap();
        std::fs::write(root.join(format!("boot/config-{r}")), b"").unwrap();
        let k = kernel_in(&root, r, None).unwrap();
        assert_eq!(k.config, root.join(format!("boot/config-{r}")));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn headers_makefile_points_into_the_cache() {
        let mk = "KBUILD_OUTPUT=/usr/src/linux-headers-7.3.4+deb13-amd64\ninclude /usr/src/linux-headers-7.3.4+deb13-common/Makefile\n";
        let out = rewrite_usr_src(mk, Path::new("/c/kernels/R/headers"));
        assert_eq!(
            out,
            "KBUILD_OUTPUT=/c/kernels/R/headers/usr/src/linux-headers-7.3.4+deb13-amd64\ninclude /c/kernels/R/headers/usr/src/linux-headers-7.3.4+deb13-common/Makefile\n"
        );
    }
}
