//! `phyr bind kernel|vfio [EP...]`: moves phyr endpoints between vfio-pci (the userspace
//! driver and its suite) and phyr's own kernel driver (`kernel/`, PCI driver name `phyr`,
//! used by `phyr ksuite`), the way the guest's init binds them: `driver_override`, `unbind`
//! from the current driver, `drivers_probe`.
//!
//! Refused before anything is written: an endpoint name that matches no phyr endpoint, a
//! target driver that is not registered (module not loaded), and an endpoint in use (a process
//! holds its VFIO group, or /dev/phyr, open: unbinding would block until it lets go).

use std::fs;
use std::path::{Path, PathBuf};

use crate::endpoint;
use crate::sysfs::PciFunction;

/// The phyr kernel driver's `pci_driver` name (`KBUILD_MODNAME` of kernel/phyr.ko).
pub const KERNEL_DRIVER: &str = "phyr";
/// Its character device; open means endpoints may have buffers, mappings or commands.
pub const KERNEL_DEVICE: &str = "/dev/phyr";
pub const VFIO_DRIVER: &str = "vfio-pci";

/// Which driver to move the endpoints to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// phyr's kernel driver (`phyr.ko`, PCI driver "phyr").
    Kernel,
    /// vfio-pci, for the userspace driver.
    Vfio,
}

impl Target {
    pub fn driver(self) -> &'static str {
        match self {
            Self::Kernel => KERNEL_DRIVER,
            Self::Vfio => VFIO_DRIVER,
        }
    }

    fn how_to_load(self) -> &'static str {
        match self {
            Self::Kernel => {
                "load phyr.ko (insmod phyr.ko; phyr-harness builds and loads ./kernel at boot unless --no-kernel-driver)"
            }
            Self::Vfio => "load vfio-pci (modprobe vfio-pci, or boot through phyr-harness, which loads it)",
        }
    }
}

/// A process holding a file open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub comm: String,
    pub file: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({}) has {} open", self.pid, self.comm, self.file)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("no phyr endpoint {name:?} (endpoints: {available}); name one as ep0, 0, 0000:03:00.0 or 03:00.0")]
    UnknownEndpoint { name: String, available: String },
    #[error("no phyr endpoints (1234:7068) under {0}/bus/pci/devices")]
    NoEndpoints(String),
    #[error("the {driver} driver is not registered ({path} does not exist): {hint}")]
    DriverNotLoaded {
        driver: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("{bdf} is busy under {driver}: {}; stop it first (unbinding would block until it closes)", holders.iter().map(Holder::to_string).collect::<Vec<_>>().join(", "))]
    Busy {
        bdf: String,
        driver: String,
        holders: Vec<Holder>,
    },
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{bdf} did not bind to {wanted} (now bound to {now}); the kernel log (dmesg) says why")]
    DidNotBind {
        bdf: String,
        wanted: &'static str,
        now: String,
    },
    #[error(transparent)]
    Sysfs(#[from] crate::error::DriverError),
}

/// What happened to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub index: usize,
    pub bdf: String,
    pub from: Option<String>,
    pub to: &'static str,
}

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = self.from.as_deref().unwrap_or("no driver");
        if self.from.as_deref() == Some(self.to) {
            write!(f, "ep{} {}: already bound to {}", self.index, self.bdf, self.to)
        } else {
            write!(f, "ep{} {}: {from} -> {}", self.index, self.bdf, self.to)
        }
    }
}

/// `phyr bind`: prints one line per endpoint.
pub fn run(sys: &Path, target: Target, names: &[String]) -> anyhow::Result<bool> {
    for m in bind(sys, Path::new("/proc"), target, names)? {
        println!("{m}");
    }
    Ok(true)
}

/// Moves the endpoints `names` (all phyr endpoints if empty) to `target`'s driver. `proc` is
/// the procfs root used to find processes holding them.
pub fn bind(sys: &Path, proc: &Path, target: Target, names: &[String]) -> Result<Vec<Moved>, BindError> {
    let all = endpoint::find(sys, &[])?;
    if all.is_empty() {
        return Err(BindError::NoEndpoints(sys.display().to_string()));
    }
    let chosen = resolve(&all, names)?;
    let driver = target.driver();
    let drv_dir = sys.join("bus/pci/drivers").join(driver);
    if !drv_dir.is_dir() {
        return Err(BindError::DriverNotLoaded {
            driver,
            path: drv_dir,
            hint: target.how_to_load(),
        });
    }
    // Every check first, so a refused endpoint leaves all of them where they were.
    for &i in &chosen {
        let f = &all[i];
        if f.driver.as_deref() == Some(driver) {
            continue;
        }
        let holders = holders_of(proc, f);
        if !holders.is_empty() {
            return Err(BindError::Busy {
                bdf: f.bdf.clone(),
                driver: f.driver.clone().unwrap_or_default(),
                holders,
            });
        }
    }
    let mut out = Vec::new();
    for &i in &chosen {
        let f = &all[i];
        if f.driver.as_deref() != Some(driver) {
            move_one(sys, f, driver)?;
        }
        out.push(Moved {
            index: i,
            bdf: f.bdf.clone(),
            from: f.driver.clone(),
            to: driver,
        });
    }
    Ok(out)
}

/// Indices into `all` for `names` (in the order given, duplicates dropped); every endpoint
/// when `names` is empty.
pub fn resolve(all: &[PciFunction], names: &[String]) -> Result<Vec<usize>, BindError> {
    if names.is_empty() {
        return Ok((0..all.len()).collect());
    }
    let mut out: Vec<usize> = Vec::new();
    for name in names {
        let n = name.trim();
        let by_index = n
            .strip_prefix("ep")
            .unwrap_or(n)
            .parse::<usize>()
            .ok()
            .filter(|&i| i < all.len() && !n.contains(':'));
        let by_bdf = || {
            let mut hits = all.iter().enumerate().filter(|(_, f)| {
                !n.is_empty() && (f.bdf == n || (n.contains(':') && f.bdf.ends_with(&format!(":{n}"))))
            });
            match (hits.next(), hits.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        };
        let Some(i) = by_index.or_else(by_bdf) else {
            let available = all
                .iter()
                .enumerate()
                .map(|(i, f)| format!("ep{i}={}", f.bdf))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(BindError::UnknownEndpoint {
                name: name.clone(),
                available,
            });
        };
        if !out.contains(&i) {
            out.push(i);
        }
    }
    Ok(out)
}

/// Processes that hold what the endpoint's current driver hands out: its VFIO group
/// (`/dev/vfio/N`) under vfio-pci, `/dev/phyr` under the phyr driver.
pub fn holders_of(proc: &Path, f: &PciFunction) -> Vec<Holder> {
    let file = match f.driver.as_deref() {
        Some(VFIO_DRIVER) => match f.iommu_group {
            Some(g) => format!("/dev/vfio/{g}"),
            None => return Vec::new(),
        },
        Some(KERNEL_DRIVER) => KERNEL_DEVICE.to_string(),
        _ => return Vec::new(),
    };
    open_by(proc, &file)
}

/// Every process (other than this one) with `file` among its open fds, from `proc/PID/fd`.
/// Processes whose fds cannot be read (gone, or not ours without root) are skipped.
pub fn open_by(proc: &Path, file: &str) -> Vec<Holder> {
    let me = std::process::id();
    let Ok(rd) = fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut out: Vec<Holder> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read_dir(proc.join(pid.to_string()).join("fd")).is_ok_and(|fds| {
                fds.filter_map(|e| e.ok())
                    .any(|e| fs::read_link(e.path()).is_ok_and(|l| l == Path::new(file)))
            })
        })
        .map(|pid| Holder {
            pid,
            comm: fs::read_to_string(proc.join(pid.to_string()).join("comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_else(|_| "?".into()),
            file: file.to_string(),
        })
        .collect();
    out.sort_by_key(|h| h.pid);
    out
}

/// Unbinds `bdf` from whatever driver has it (nothing to do without one), leaving its
/// driver_override as it is: to the driver, the endpoint is removed (`phyr ksuite`'s
/// k-removal case unbinds a peer from phyr.ko while its maps and buffers are in use).
pub fn unbind(sys: &Path, bdf: &str) -> Result<(), BindError> {
    let dev = sys.join("bus/pci/devices").join(bdf);
    if dev.join("driver").exists() {
        write(&dev.join("driver/unbind"), bdf)?;
    }
    Ok(())
}

/// driver_override, unbind, drivers_probe, then checks where the endpoint landed.
fn move_one(sys: &Path, f: &PciFunction, driver: &'static str) -> Result<(), BindError> {
    let dev = sys.join("bus/pci/devices").join(&f.bdf);
    write(&dev.join("driver_override"), driver)?;
    if dev.join("driver").exists() {
        write(&dev.join("driver/unbind"), &f.bdf)?;
    }
    write(&sys.join("bus/pci/drivers_probe"), &f.bdf)?;
    let now = fs::read_link(dev.join("driver"))
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
    if now.as_deref() != Some(driver) {
        return Err(BindError::DidNotBind {
            bdf: f.bdf.clone(),
            wanted: driver,
            now: now.unwrap_or_else(|| "no driver".into()),
        });
    }
    Ok(())
}

fn write(path: &Path, value: &str) -> Result<(), BindError> {
    fs::write(path, value).map_err(|source| BindError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs and procfs: endpoints with `driver` links, registered drivers, and
    /// processes with fd links. The fake kernel does not bind anything, so a move that passes
    /// every check ends in `DidNotBind` with the files it wrote left behind to inspect.
    struct Fake(PathBuf);

    impl Fake {
        fn new(name: &str) -> Self {
            let root = std::env::temp_dir().join(format!("phyr-bind-test-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("sys/bus/pci/devices")).unwrap();
            fs::create_dir_all(root.join("sys/bus/pci/drivers")).unwrap();
            fs::create_dir_all(root.join("proc")).unwrap();
            fs::write(root.join("sys/bus/pci/drivers_probe"), "").unwrap();
            Self(root)
        }

        fn sys(&self) -> PathBuf {
            self.0.join("sys")
        }

        fn proc(&self) -> PathBuf {
            self.0.join("proc")
        }

        fn driver(&self, name: &str) {
            fs::create_dir_all(self.sys().join("bus/pci/drivers").join(name)).unwrap();
            fs::write(self.sys().join("bus/pci/drivers").join(name).join("unbind"), "").unwrap();
        }

        fn endpoint(&self, bdf: &str, driver: Option<&str>, group: u32) {
            let dir = self.sys().join("devices/pci0000:00/0000:00:01.0").join(bdf);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("vendor"), "0x1234\n").unwrap();
            fs::write(dir.join("device"), "0x7068\n").unwrap();
            fs::write(dir.join("class"), "0x120000\n").unwrap();
            fs::write(
                dir.join("resource"),
                "0x00000000fe800000 0x00000000fe803fff 0x0000000000040200\n",
            )
            .unwrap();
            fs::write(dir.join("driver_override"), "(null)\n").unwrap();
            let groups = self.sys().join("kernel/iommu_groups").join(group.to_string());
            fs::create_dir_all(&groups).unwrap();
            std::os::unix::fs::symlink(&groups, dir.join("iommu_group")).unwrap();
            if let Some(d) = driver {
                self.driver(d);
                std::os::unix::fs::symlink(self.sys().join("bus/pci/drivers").join(d), dir.join("driver")).unwrap();
            }
            std::os::unix::fs::symlink(&dir, self.sys().join("bus/pci/devices").join(bdf)).unwrap();
        }

        fn process(&self, pid: u32, comm: &str, file: &str) {
            let dir = self.proc().join(pid.to_string());
            fs::create_dir_all(dir.join("fd")).unwrap();
            fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
            std::os::unix::fs::symlink(file, dir.join("fd/3")).unwrap();
        }

        fn bind(&self, target: Target, names: &[&str]) -> Result<Vec<Moved>, BindError> {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            bind(&self.sys(), &self.proc(), target, &names)
        }

        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.sys().join(rel)).unwrap()
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn two_on_vfio(name: &str) -> Fake {
        let f = Fake::new(name);
        f.endpoint("0000:03:00.0", Some(VFIO_DRIVER), 4);
        f.endpoint("0000:04:00.0", Some(VFIO_DRIVER), 5);
        f
    }

    #[test]
    fn unknown_endpoint_names_the_available_ones() {
        let f = two_on_vfio("unknown");
        f.driver(KERNEL_DRIVER);
        for bad in ["ep2", "7", "05:00.0", "0000:03:00.1", "", "ep", "00.0"] {
            let e = f.bind(Target::Kernel, &["ep0", bad]).unwrap_err();
            assert!(matches!(e, BindError::UnknownEndpoint { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains("ep0=0000:03:00.0, ep1=0000:04:00.0"), "{e}");
        }
        // Nothing was written for ep0 either.
        assert_eq!(f.read("bus/pci/devices/0000:03:00.0/driver_override"), "(null)\n");
    }

    #[test]
    fn endpoints_resolve_by_index_bdf_or_bdf_suffix() {
        let f = two_on_vfio("resolve");
        let all = endpoint::find(&f.sys(), &[]).unwrap();
        let r = |names: &[&str]| resolve(&all, &names.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(r(&[]).unwrap(), [0, 1]);
        assert_eq!(r(&["ep1"]).unwrap(), [1]);
        assert_eq!(r(&["1", "0"]).unwrap(), [1, 0]);
        assert_eq!(r(&["0000:04:00.0", "03:00.0", "ep0"]).unwrap(), [1, 0]);
    }

    #[test]
    fn kernel_driver_not_loaded_says_how_to_load_it() {
        let f = two_on_vfio("no-module");
        let e = f.bind(Target::Kernel, &[]).unwrap_err();
        assert!(matches!(e, BindError::DriverNotLoaded { driver: "phyr", .. }), "{e}");
        assert!(e.to_string().contains("insmod phyr.ko"), "{e}");
        let f = Fake::new("no-vfio");
        f.endpoint("0000:03:00.0", Some(KERNEL_DRIVER), 4);
        let e = f.bind(Target::Vfio, &["ep0"]).unwrap_err();
        assert!(e.to_string().contains("vfio-pci driver is not registered"), "{e}");
    }

    #[test]
    fn busy_vfio_group_refuses_and_writes_nothing() {
        let f = two_on_vfio("busy-vfio");
        f.driver(KERNEL_DRIVER);
        f.process(4242, "phyr", "/dev/vfio/5");
        f.process(4243, "sh", "/dev/null");
        let e = f.bind(Target::Kernel, &[]).unwrap_err();
        match &e {
            BindError::Busy { bdf, driver, holders } => {
                assert_eq!((bdf.as_str(), driver.as_str()), ("0000:04:00.0", "vfio-pci"));
                assert_eq!(
                    holders,
                    &[Holder {
                        pid: 4242,
                        comm: "phyr".into(),
                        file: "/dev/vfio/5".into()
                    }]
                );
            }
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains("pid 4242 (phyr) has /dev/vfio/5 open"), "{e}");
        // The check runs for every endpoint before any is touched.
        assert_eq!(f.read("bus/pci/devices/0000:03:00.0/driver_override"), "(null)\n");
        // ep0's group is free: it alone may move (and the fake kernel does not bind it).
        let e = f.bind(Target::Kernel, &["ep0"]).unwrap_err();
        assert!(matches!(e, BindError::DidNotBind { .. }), "{e}");
    }

    #[test]
    fn busy_kernel_device_refuses_moving_back_to_vfio() {
        let f = Fake::new("busy-kernel");
        f.endpoint("0000:03:00.0", Some(KERNEL_DRIVER), 4);
        f.driver(VFIO_DRIVER);
        f.process(77, "phyr", KERNEL_DEVICE);
        let e = f.bind(Target::Vfio, &["ep0"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("0000:03:00.0 is busy under phyr: pid 77 (phyr) has /dev/phyr open"),
            "{e}"
        );
    }

    #[test]
    fn a_move_writes_override_unbind_and_probe_then_checks_the_result() {
        let f = two_on_vfio("move");
        f.driver(KERNEL_DRIVER);
        let e = f.bind(Target::Kernel, &["04:00.0"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "0000:04:00.0 did not bind to phyr (now bound to vfio-pci); the kernel log (dmesg) says why"
        );
        assert_eq!(f.read("bus/pci/devices/0000:04:00.0/driver_override"), "phyr");
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), "0000:04:00.0");
        assert_eq!(f.read("bus/pci/drivers_probe"), "0000:04:00.0");
    }

    #[test]
    fn already_bound_endpoints_are_left_alone() {
        let f = two_on_vfio("already");
        // Even with the group open: nothing to move, nothing to refuse.
        f.process(9, "phyr", "/dev/vfio/4");
        let moved = f.bind(Target::Vfio, &[]).unwrap();
        assert_eq!(moved.len(), 2);
        assert_eq!(moved[0].to_string(), "ep0 0000:03:00.0: already bound to vfio-pci");
        assert_eq!(f.read("bus/pci/devices/0000:03:00.0/driver_override"), "(null)\n");
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
    }

    #[test]
    fn unbind_writes_the_current_drivers_unbind_file_only() {
        let f = two_on_vfio("unbind");
        unbind(&f.sys(), "0000:04:00.0").unwrap();
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), "0000:04:00.0");
        assert_eq!(f.read("bus/pci/devices/0000:04:00.0/driver_override"), "(null)\n");
        let g = Fake::new("unbind-none");
        g.endpoint("0000:03:00.0", None, 4);
        unbind(&g.sys(), "0000:03:00.0").unwrap();
    }

    #[test]
    fn no_endpoints_is_its_own_error() {
        let f = Fake::new("none");
        f.driver(KERNEL_DRIVER);
        assert!(matches!(f.bind(Target::Kernel, &[]), Err(BindError::NoEndpoints(_))));
    }
}
