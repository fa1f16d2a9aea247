//! Everything a boot needs, provisioned before anything starts: QEMU, busybox, each guest
//! kernel with its accelerator verdict, and the out-of-tree modules built for it; and the
//! `provision` command, which does the same without booting.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::image::initramfs;
use crate::kernel::guest::{self, BuildSource, GuestKernel};
use crate::kernel::kmod::Module;
use crate::kernel::modbuild;
use crate::kernel::modbuild::check_source_dir;
use crate::kernel::spec::{Channel, KernelSpec};
use crate::launch::accel;
use crate::launch::boot::Parts;
use crate::launch::options::{GuestOpts, SourceOpts};
use crate::progress::say;
use crate::provision::cache::Cache;
use crate::provision::provisioner::Provisioner;

/// `provision`: what a boot needs, without booting.
#[derive(Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub sources: SourceOpts,
    /// Ask apt again which kernels `backports` and `stable` mean, and move their pins to the
    /// newest (a warm cache otherwise keeps the kernel it has).
    #[arg(long)]
    pub refresh: bool,
}

/// `--kernel`, or the default (backports).
pub fn kernel_spec(src: &SourceOpts) -> Result<KernelSpec> {
    Ok(match &src.kernel {
        Some(k) => KernelSpec::parse(k)?,
        None => crate::kernel::spec::DEFAULT,
    })
}

/// phyr's own kernel driver, built and loaded when `./kernel` holds a module directory.
pub const KERNEL_DRIVER_DIR: &str = "kernel";

/// The module directories to build: `--module-src`, `extra`, and ./kernel unless
/// `--no-kernel-driver`. Each is checked before anything is downloaded.
pub fn module_sources(g: &GuestOpts, extra: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = g.module_src.iter().chain(extra).cloned().collect();
    let driver = Path::new(KERNEL_DRIVER_DIR);
    if !g.no_kernel_driver && (driver.join("Kbuild").is_file() || driver.join("Makefile").is_file()) {
        say(format!(
            "phyr's kernel driver ({}/) is built and loaded too (--no-kernel-driver skips it)",
            KERNEL_DRIVER_DIR
        ));
        v.push(driver.to_path_buf());
    }
    for d in &v {
        check_source_dir(d)?;
    }
    for m in &g.modules {
        if !crate::launch::recipe::valid_module_name(m) {
            bail!("--modules: {m:?} is not a kernel module name (letters, digits, _ and -)");
        }
    }
    Ok(v)
}

/// Provisions QEMU, busybox and every kernel in `kernels`; builds the module sources for
/// each. `optional_srcs` are built only for kernels that have headers (the test module). With
/// `tolerate`, a module that does not build is a problem of that kernel's `Parts` (the test
/// counts it as a failure) instead of an error that stops everything.
pub fn prepare(
    cache: &Cache,
    g: &GuestOpts,
    need_phyr: bool,
    kernels: &[KernelSpec],
    optional_srcs: &[PathBuf],
    tolerate: bool,
) -> Result<Vec<Parts>> {
    // Local binaries and sources first: a missing one is reported before anything is downloaded.
    let device_bin = match &g.device_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("phyr-device"),
    };
    if !g.no_device && !device_bin.is_file() {
        bail!(
            "phyr-device not found at {}; run `cargo build --release -p phyr-device` (or pass --device-bin PATH, or --no-device to boot with QEMU's edu device instead)",
            device_bin.display()
        );
    }
    let phyr_path = g.phyr.clone().unwrap_or_else(initramfs::default_phyr_binary);
    let phyr = if phyr_path.is_file() {
        Some(phyr_path)
    } else if need_phyr {
        bail!(
            "the guest driver binary is missing at {}; build it with \
             `RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p phyr-driver --target x86_64-unknown-linux-gnu --target-dir target/guest` \
             or pass --phyr PATH",
            phyr_path.display()
        );
    } else {
        say(format!(
            "note: no guest driver at {} (pass --phyr PATH); the guest will have no `phyr` command",
            phyr_path.display()
        ));
        None
    };
    let srcs = module_sources(g, &[])?;
    for d in optional_srcs {
        check_source_dir(d)?;
    }
    let prebuilt = prebuilt_modules(&g.module)?;
    let _lock = cache.lock()?;
    let mut p = Provisioner::new(cache);
    let mut kernels_built = Vec::new();
    for spec in kernels {
        let kernel = resolve(&mut p, &g.sources, spec, false)?;
        let mut b = build_all(&mut p, &kernel, &srcs, optional_srcs, tolerate)?;
        b.built.extend(check_prebuilt(&kernel, &prebuilt));
        kernels_built.push((kernel, b));
    }
    let busybox = p.busybox(g.sources.busybox.as_deref())?;
    let qemu = p.qemu(g.sources.qemu.as_deref())?;
    let mut out = Vec::new();
    for (kernel, b) in kernels_built {
        let accel = accel::choose(g.accel, cache, &qemu, &kernel.image, &busybox)?;
        out.push(Parts {
            qemu: qemu.clone(),
            kernel,
            busybox: busybox.clone(),
            accel,
            phyr: phyr.clone(),
            device_bin: device_bin.clone(),
            built: b.built,
            build_problems: b.problems,
            driver_warnings: b.own_warnings,
        });
    }
    Ok(out)
}

/// `--module FILE`: prebuilt modules, each with its name and vermagic from `.modinfo`.
fn prebuilt_modules(files: &[PathBuf]) -> Result<Vec<(Module, Option<String>)>> {
    files
        .iter()
        .map(|f| {
            let info = crate::kernel::kmod::modinfo_of(f).with_context(|| format!("--module {}", f.display()))?;
            let field = |k: &str| info.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            let name = field("name")
                .or_else(|| {
                    let n = f.file_name()?.to_str()?;
                    Some(n.split('.').next()?.to_owned())
                })
                .with_context(|| format!("--module {}: no module name", f.display()))?;
            Ok((
                Module {
                    name: crate::kernel::kmod::normalise(&name),
                    path: f.clone(),
                    out_of_tree: true,
                },
                field("vermagic"),
            ))
        })
        .collect()
}

/// Prebuilt modules for `k`, each compared with the kernel's vermagic: a mismatch is only
/// a warning here, since the guest's insmod has the last word (and init reports it).
fn check_prebuilt(k: &GuestKernel, prebuilt: &[(Module, Option<String>)]) -> Vec<Module> {
    let want = k.vermagic();
    for (m, got) in prebuilt {
        if let (Some(w), Some(g)) = (&want, got) {
            if w.trim() != g.trim() {
                say(format!(
                    "warning: --module {}: {}; init's insmod will refuse it",
                    m.path.display(),
                    crate::kernel::kmod::vermagic_mismatch(&m.name, g, &k.release, w)
                ));
            }
        }
    }
    prebuilt.iter().map(|(m, _)| m.clone()).collect()
}

fn resolve(p: &mut Provisioner<'_>, src: &SourceOpts, spec: &KernelSpec, refresh: bool) -> Result<GuestKernel> {
    guest::resolve(
        p,
        spec,
        src.kernel_config.as_deref(),
        src.modules_dir.as_deref(),
        refresh,
    )
}

/// What [`build_all`] built for one kernel.
struct ModuleBuilds {
    built: Vec<Module>,
    /// With `tolerate`, the sources that failed to build.
    problems: Vec<String>,
    /// phyr's own kernel driver's warnings under `W=1`, when it was built.
    own_warnings: Option<Vec<String>>,
}

/// Builds `srcs` and (when `k` has headers) `optional` for `k`; phyr's own kernel driver
/// (`./kernel`) with `W=1`.
fn build_all(
    p: &mut Provisioner<'_>,
    k: &GuestKernel,
    srcs: &[PathBuf],
    optional: &[PathBuf],
    tolerate: bool,
) -> Result<ModuleBuilds> {
    let optional = match &k.build {
        BuildSource::Unavailable(why) if !optional.is_empty() => {
            say(format!(
                "note: no test module for kernel {}: {}",
                k.release,
                crate::kernel::modbuild::no_headers(&k.release, why)
            ));
            &[][..]
        }
        _ => optional,
    };
    let all: Vec<&PathBuf> = srcs.iter().chain(optional).collect();
    let (mut built, mut problems, mut own_warnings) = (Vec::new(), Vec::new(), None);
    if all.is_empty() {
        return Ok(ModuleBuilds {
            built,
            problems,
            own_warnings,
        });
    }
    let mut fail = |e: anyhow::Error| -> Result<()> {
        if !tolerate {
            return Err(e);
        }
        say(format!("{e:#}"));
        problems.push(format!("{e:#}"));
        Ok(())
    };
    match p.build_env(k) {
        Ok(env) => {
            for s in all {
                let own = s.as_path() == Path::new(KERNEL_DRIVER_DIR);
                match modbuild::build(&p.cache.root, &env, s, own) {
                    Ok(b) => {
                        if own {
                            if let Some(first) = b.warnings.first() {
                                say(format!(
                                    "phyr's kernel driver has {} warning(s) under W=1 for kernel {}; the first: {first}",
                                    b.warnings.len(),
                                    k.release
                                ));
                            }
                            own_warnings = Some(b.warnings);
                        }
                        built.extend(b.modules);
                    }
                    Err(e) => fail(e)?,
                }
            }
        }
        Err(e) => fail(e)?,
    }
    Ok(ModuleBuilds {
        built,
        problems,
        own_warnings,
    })
}

/// `provision`: QEMU, busybox, and the kernels `just test` boots (or `--kernel`), each with
/// what building modules for it takes (headers, compiler).
pub fn provision_all(cache: &Cache, src: &SourceOpts, refresh: bool) -> Result<i32> {
    let t = Instant::now();
    say(format!("cache: {}", cache.root.display()));
    let specs: Vec<KernelSpec> = match &src.kernel {
        Some(_) => vec![kernel_spec(src)?],
        None => Channel::ALL.into_iter().map(KernelSpec::Channel).collect(),
    };
    if refresh && !specs.iter().any(|s| matches!(s, KernelSpec::Channel(_))) {
        bail!(
            "--refresh moves the pins of `backports` and `stable`; it does nothing for --kernel {}",
            specs[0]
        );
    }
    let _lock = cache.lock()?;
    let mut p = Provisioner::new(cache);
    let q = p.qemu(src.qemu.as_deref())?;
    let bb = p.busybox(src.busybox.as_deref())?;
    say(format!("QEMU {} ({})", q.version, q.origin));
    say(format!("busybox: {}", bb.display()));
    for spec in &specs {
        let k = resolve(&mut p, src, spec, refresh)?;
        say(format!(
            "guest kernel {}: {} ({})",
            k.label,
            k.description,
            k.image.display()
        ));
        match (p.build_env(&k), &k.build) {
            (Ok(env), _) => say(format!(
                "  modules for {} build with {} {} ({}) against {}{}",
                k.release,
                env.cc.kind.name(),
                env.cc.version,
                env.cc.origin,
                env.kbuild.display(),
                if env.notes.is_empty() {
                    String::new()
                } else {
                    format!("; {}", env.notes.join("; "))
                }
            )),
            (Err(e), BuildSource::Debian(_)) => return Err(e).context(format!("provisioning {}", k.release)),
            (Err(e), _) => say(format!("  note: {e:#}")),
        }
    }
    say(format!("provisioned in {:.1} s", t.elapsed().as_secs_f64()));
    Ok(0)
}
