//! Everything one guest boot needs, assembled: provisioned parts, the recipe's QEMU options
//! plus the harness's own (kernel, initrd, command line, console, accelerator), the device's
//! command line, the initramfs, then the guest run itself (`guest_run.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::image::initramfs::{self, GuestMode, InitramfsSpec};
use crate::image::share::Share;
use crate::kernel::guest::GuestKernel;
use crate::kernel::kmod::Module;
use crate::launch::accel::Accel;
use crate::launch::guest_run::{self, Console, DeviceLaunch, Launch, Outcome};
use crate::launch::recipe::Recipe;
use crate::launch::rundir::{check_socket_paths, RunDir};
use crate::provision::qemu::Qemu;

/// PCI IDs the guest hands to vfio-pci: phyr endpoints, or QEMU's edu with --no-device.
pub const PHYR_PCI_ID: &str = "0x1234:0x7068";
pub const EDU_PCI_ID: &str = "0x1234:0x11e8";

/// The copy of the recipe in each run directory.
pub const RECIPE_COPY: &str = "recipe.args";

/// Provisioned, verified parts shared by every boot of one harness invocation.
pub struct Parts {
    pub qemu: Qemu,
    pub kernel: GuestKernel,
    pub busybox: PathBuf,
    pub accel: Accel,
    /// The static guest driver, when it exists.
    pub phyr: Option<PathBuf>,
    pub device_bin: PathBuf,
    /// Out-of-tree modules built for this kernel (init loads them after their dependencies).
    pub built: Vec<Module>,
    /// Module sources that did not build for this kernel (`test` only; `run` stops instead).
    pub build_problems: Vec<String>,
    /// phyr's kernel driver's `W=1` warnings for this kernel, when it was built.
    pub driver_warnings: Option<Vec<String>>,
}

pub struct BootOptions<'a> {
    pub recipe: &'a Recipe,
    pub mode: GuestMode,
    pub console: Console,
    pub no_device: bool,
    pub append: Option<&'a str>,
    pub bar2_size: Option<u64>,
    /// Record a CRC32C of the bytes of every DMA in the traces (phyr-device --trace-crc).
    pub trace_crc: bool,
    pub timeout: Option<Duration>,
    /// Guest kernel modules to load by name (besides the recipe's `modules=`).
    pub modules: &'a [String],
    /// `--share DIR`: mounted at /mnt/host.
    pub share: Option<&'a Share>,
    /// See `InitramfsSpec::share_probe`.
    pub share_probe: Option<&'a str>,
}

/// The guest kernel command line.
pub fn kernel_cmdline(extra: Option<&str>) -> String {
    let mut s = String::from("console=ttyS0 intel_iommu=on panic=-1 loglevel=4");
    if let Some(e) = extra.filter(|e| !e.trim().is_empty()) {
        s.push(' ');
        s.push_str(e.trim());
    }
    s
}

/// The harness's own QEMU options, appended after the recipe's.
pub fn harness_args(
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    accel: Accel,
    console: Console,
    serial_log: &Path,
) -> Vec<String> {
    let mut a = accel.args();
    let chardev = match console {
        Console::Interactive => format!("stdio,id=con,mux=on,signal=off,logfile={}", serial_log.display()),
        Console::Captured | Console::Summary => format!("stdio,id=con,signal=off,logfile={}", serial_log.display()),
    };
    a.extend([
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-chardev".into(),
        chardev,
        "-serial".into(),
        "chardev:con".into(),
    ]);
    if console == Console::Interactive {
        a.extend(["-mon".into(), "chardev=con,mode=readline".into()]);
    }
    a.extend([
        "-kernel".into(),
        kernel.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        cmdline.into(),
    ]);
    a
}

/// phyr-device's arguments for a recipe.
pub fn device_args(recipe: &Recipe, run: &RunDir, bar2_size: Option<u64>, trace_crc: bool) -> Vec<String> {
    let topo: Vec<String> = recipe.topology.iter().map(u32::to_string).collect();
    let mut a = vec![
        "--socket-dir".into(),
        run.socket_dir().display().to_string(),
        "--endpoints".into(),
        recipe.endpoints.to_string(),
        "--topology".into(),
        topo.join(","),
        "--trace-dir".into(),
        run.file("trace").display().to_string(),
    ];
    if let Some(b) = bar2_size.or(recipe.bar2_size) {
        a.extend(["--bar2-size".into(), b.to_string()]);
    }
    if !trace_crc {
        a.extend(["--trace-crc".into(), "off".into()]);
    }
    a
}

/// Boots one guest in `run` (a session directory) and returns how it ended.
pub fn boot(parts: &Parts, run: &RunDir, o: &BootOptions<'_>) -> Result<Outcome> {
    guest_run::run(launch(parts, run, o)?)
}

/// Everything one boot needs, assembled (initramfs built, kernel recorded), ready for
/// `guest_run::run` or, with a device that outlives the guest, `guest_run::run_with_device`.
pub fn launch<'a>(parts: &'a Parts, run: &'a RunDir, o: &BootOptions<'_>) -> Result<Launch<'a>> {
    check_socket_paths(&run.socket_dir(), o.recipe.endpoints)?;
    for bad in ['"', '\\', ','] {
        if run.path.display().to_string().contains(bad) {
            anyhow::bail!(
                "the run directory {} contains {bad:?}, which QEMU option syntax cannot carry; use --runs-dir",
                run.path.display()
            );
        }
    }
    let mut extra: Vec<String> = o.modules.to_vec();
    extra.extend(o.recipe.modules.iter().cloned());
    if let Some(s) = o.share {
        if !parts.qemu.virtio_9p {
            anyhow::bail!(
                "--share {}: {} has no virtio-9p-pci device (QEMU built without virtfs); drop --share or use a QEMU with it",
                s.dir.display(),
                parts.qemu.origin
            );
        }
        if let Some((origin, config)) = &parts.kernel.config {
            let missing = crate::image::share::missing_config(config);
            if !missing.is_empty() {
                anyhow::bail!(
                    "--share {}: kernel {} ({origin}) lacks {} (=y or =m), which 9p over virtio needs",
                    s.dir.display(),
                    parts.kernel.release,
                    missing.join(", ")
                );
            }
        }
        extra.extend(crate::image::share::MODULES.iter().map(|m| (*m).to_owned()));
    }
    let modules = parts.kernel.load_order(&extra, &parts.built)?;
    record_kernel(run, parts, &modules)?;
    // The recipe as booted: `phyr-harness crosscheck DIR` reads the RAM layout from it.
    std::fs::copy(&o.recipe.file, run.file(RECIPE_COPY))
        .with_context(|| format!("copying {} into {}", o.recipe.file.display(), run.path.display()))?;
    let initrd = run.file("initramfs.cpio");
    let spec = InitramfsSpec {
        busybox: &parts.busybox,
        modules: &modules,
        phyr: parts.phyr.as_deref(),
        mode: o.mode.clone(),
        bind: vec![if o.no_device { EDU_PCI_ID } else { PHYR_PCI_ID }.to_owned()],
        share: o.share.map(|s| s.dir.display().to_string()),
        share_probe: o.share_probe.map(str::to_owned),
    };
    initramfs::build(&spec, &initrd).context("building the initramfs")?;
    let mut qemu_args = o.recipe.args(&run.socket_dir(), &run.path, o.no_device)?;
    if let Some(s) = o.share {
        qemu_args.extend(s.qemu_args());
    }
    let extra: Vec<&str> = [o.recipe.append.as_deref(), o.append].into_iter().flatten().collect();
    let cmdline = kernel_cmdline(Some(&extra.join(" ")));
    qemu_args.extend(harness_args(
        &parts.kernel.image,
        &initrd,
        &cmdline,
        parts.accel,
        o.console,
        &run.file("serial.log"),
    ));
    let device = (!o.no_device).then(|| DeviceLaunch {
        binary: parts.device_bin.clone(),
        args: device_args(o.recipe, run, o.bar2_size, o.trace_crc),
        sockets: (0..o.recipe.endpoints)
            .map(|i| run.socket_dir().join(format!("ep{i}.sock")))
            .collect(),
    });
    Ok(Launch {
        run,
        qemu: &parts.qemu,
        qemu_args,
        device,
        console: o.console,
        timeout: o.timeout,
        kill_after_ready: None,
    })
}

/// Writes `kernel.txt` (release, origin, image, config, accelerator, modules in load order)
/// and `kernel.config` (a copy of the config) into the run directory.
pub fn record_kernel(run: &RunDir, parts: &Parts, modules: &[Module]) -> Result<()> {
    let k = &parts.kernel;
    let mut s = format!(
        "release: {}\nkernel: {}\nimage: {}\nconfig: {}\naccelerator: {}\nmodules loaded by init, in order:\n",
        k.release,
        k.description,
        k.image.display(),
        match &k.config {
            Some((origin, _)) => format!("{origin} (copied to kernel.config)"),
            None => "not found".into(),
        },
        parts.accel.name(),
    );
    for m in modules {
        let tag = if m.out_of_tree {
            "  (out of tree, built by the harness)"
        } else {
            ""
        };
        s.push_str(&format!("  {} {}{tag}\n", m.name, m.path.display()));
    }
    std::fs::write(run.file("kernel.txt"), s)
        .with_context(|| format!("writing {}", run.file("kernel.txt").display()))?;
    if let Some((_, text)) = &k.config {
        std::fs::write(run.file("kernel.config"), text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_args_put_console_kernel_and_accel_last() {
        let a = harness_args(
            Path::new("/k"),
            Path::new("/i"),
            "console=ttyS0",
            Accel::Tcg,
            Console::Captured,
            Path::new("/r/serial.log"),
        );
        let s = a.join(" ");
        assert!(s.starts_with("-accel tcg -display none -no-reboot -chardev stdio,id=con,signal=off,logfile=/r/serial.log -serial chardev:con"));
        assert!(s.ends_with("-kernel /k -initrd /i -append console=ttyS0"));
        assert!(!s.contains("-mon"));
        let i = harness_args(
            Path::new("/k"),
            Path::new("/i"),
            "x",
            Accel::Kvm,
            Console::Interactive,
            Path::new("/s"),
        );
        assert!(i.join(" ").contains("kvm,kernel-irqchip=split"));
        assert!(i.join(" ").contains("mux=on") && i.contains(&"chardev=con,mode=readline".to_owned()));
    }

    #[test]
    fn cmdline_has_iommu_and_console() {
        assert_eq!(kernel_cmdline(None), "console=ttyS0 intel_iommu=on panic=-1 loglevel=4");
        assert!(kernel_cmdline(Some(" iommu.strict=1 ")).ends_with("loglevel=4 iommu.strict=1"));
    }

    #[test]
    fn device_gets_topology_and_trace_dir() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-configs");
        let r = Recipe::load("two-switches", &dir).unwrap();
        let run = RunDir {
            path: PathBuf::from("/runs/x"),
        };
        let a = device_args(&r, &run, Some(65536), true).join(" ");
        assert_eq!(
            a,
            "--socket-dir /runs/x/sock --endpoints 4 --topology 0,0,1,1 --trace-dir /runs/x/trace --bar2-size 65536"
        );
        let a = device_args(&r, &run, None, false).join(" ");
        assert!(a.ends_with("--trace-crc off"), "{a}");
    }
}
