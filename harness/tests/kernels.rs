//! Guest kernels and the modules built for them, through the binary: each refusal is one
//! clear message before anything boots. Plus real boots (ignored by default: they provision
//! the backports kernel, its headers and gcc-14, and boot QEMU):
//! `cargo test -p phyr-harness --test kernels -- --ignored` (uses $PHYR_CACHE_DIR or ~/.cache/phyr).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn harness() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_phyr-harness"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("phyr-harness-kernels-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A file with a valid x86 boot header naming `release` (no kernel inside).
fn fake_bzimage(path: &Path, release: &str) {
    let mut img = vec![0u8; 0x400];
    img[0x1fe] = 0x55;
    img[0x1ff] = 0xaa;
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
    let v = format!("{release} (t@t) #1 SMP");
    img[0x300..0x300 + v.len()].copy_from_slice(v.as_bytes());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, img).unwrap();
}

/// A config with everything phyr needs built in, and the given compiler lines.
fn config(cc: &str) -> String {
    format!(
        "CONFIG_BLK_DEV_INITRD=y\nCONFIG_DEVTMPFS=y\nCONFIG_SERIAL_8250_CONSOLE=y\nCONFIG_PCI=y\nCONFIG_INTEL_IOMMU=y\n\
         CONFIG_VFIO=y\nCONFIG_VFIO_IOMMU_TYPE1=y\nCONFIG_VFIO_PCI=y\n{cc}"
    )
}

fn run_in(cache: &Path, args: &[&str]) -> Output {
    harness()
        .args(["run", "--no-device", "--qemu", "/bin/true", "--guest-cmd", "true"])
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--runs-dir")
        .arg(cache.join("runs"))
        .output()
        .unwrap()
}

#[test]
fn a_bare_bzimage_has_no_headers_to_build_modules_against() {
    let d = tmp("bare");
    fake_bzimage(&d.join("bzImage"), "7.9.0-bare");
    std::fs::write(d.join("cfg"), config("CONFIG_CC_VERSION_TEXT=\"gcc (GCC) 14.2.0\"\n")).unwrap();
    let o = run_in(
        &d,
        &[
            "--kernel",
            d.join("bzImage").to_str().unwrap(),
            "--kernel-config",
            d.join("cfg").to_str().unwrap(),
            "--module-src",
            "harness/tests/kmod",
        ],
    );
    let e = stderr_of(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("no headers for kernel 7.9.0-bare:") && e.contains("bare bzImage") && e.contains("--kernel DIR"),
        "{e}"
    );
    assert!(!d.join("runs").exists(), "a run directory was created: {e}");
}

#[test]
fn a_kernel_tree_built_with_an_absent_compiler_says_compiler_not_found() {
    let d = tmp("clang");
    let tree = d.join("linux");
    fake_bzimage(&tree.join("arch/x86/boot/bzImage"), "7.9.0-clang");
    std::fs::write(
        tree.join(".config"),
        config("CONFIG_CC_VERSION_TEXT=\"Phyr clang version 99.1.0\"\nCONFIG_CC_IS_CLANG=y\n"),
    )
    .unwrap();
    std::fs::write(tree.join("Makefile"), "# stand-in\n").unwrap();
    std::fs::write(tree.join("Module.symvers"), "").unwrap();
    let o = run_in(
        &d,
        &["--kernel", tree.to_str().unwrap(), "--module-src", "harness/tests/kmod"],
    );
    let e = stderr_of(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("compiler not found: kernel 7.9.0-clang was built with `Phyr clang version 99.1.0` (clang 99)")
            && e.contains("phyr-harness provisions only gcc")
            && e.contains("Put clang 99 on PATH"),
        "{e}"
    );
}

#[test]
fn an_unbuilt_kernel_tree_says_what_to_build() {
    let d = tmp("unbuilt");
    std::fs::create_dir_all(d.join("linux")).unwrap();
    std::fs::write(d.join("linux/.config"), config("")).unwrap();
    let o = run_in(&d, &["--kernel", d.join("linux").to_str().unwrap()]);
    let e = stderr_of(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("no arch/x86/boot/bzImage") && e.contains("make bzImage modules"),
        "{e}"
    );
}

#[test]
fn a_tree_without_module_symvers_has_no_headers() {
    let d = tmp("nosymvers");
    let tree = d.join("linux");
    fake_bzimage(&tree.join("arch/x86/boot/bzImage"), "7.9.0-nosym");
    std::fs::write(
        tree.join(".config"),
        config("CONFIG_CC_VERSION_TEXT=\"gcc (GCC) 14.2.0\"\n"),
    )
    .unwrap();
    std::fs::write(tree.join("Makefile"), "").unwrap();
    let o = run_in(
        &d,
        &["--kernel", tree.to_str().unwrap(), "--module-src", "harness/tests/kmod"],
    );
    let e = stderr_of(&o);
    assert!(
        e.contains("no headers for kernel 7.9.0-nosym") && e.contains("run `make modules` there first"),
        "{e}"
    );
}

#[test]
fn a_damaged_pin_file_names_its_line() {
    let d = tmp("pins");
    std::fs::create_dir_all(d.join("kernels")).unwrap();
    std::fs::write(
        d.join("kernels/pins"),
        "backports 7.3.4+deb13-amd64\nbackports ../../etc\n",
    )
    .unwrap();
    let o = run_in(&d, &["--kernel", "backports"]);
    let e = stderr_of(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("kernels/pins:2: \"../../etc\" is not a Debian kernel release") && e.contains("delete the file"),
        "{e}"
    );
    assert!(!e.contains("apt-get update"), "{e}");
}

#[test]
fn bad_module_options_are_refused_before_anything_starts() {
    let d = tmp("modopts");
    let e = stderr_of(&run_in(&d, &["--module-src", "harness/src"]));
    assert!(e.contains("--module-src harness/src: no Kbuild or Makefile"), "{e}");
    let e = stderr_of(&run_in(&d, &["--module", "Cargo.toml"]));
    assert!(e.contains("--module Cargo.toml") && e.contains("only .ko"), "{e}");
    let e = stderr_of(&run_in(&d, &["--modules", "vfio,../x"]));
    assert!(e.contains("\"../x\" is not a kernel module name"), "{e}");
    let e = stderr_of(&run_in(&d, &["--share", "/nonexistent/phyr"]));
    assert!(e.contains("--share /nonexistent/phyr: no such directory"), "{e}");
    let e = stderr_of(&run_in(&d, &["--kernel", "backport"]));
    assert!(e.contains("not a kernel name (backports, stable"), "{e}");
    assert!(!d.join("runs").exists());
}

/// The cache the ignored tests share with the user: $PHYR_CACHE_DIR, else ~/.cache/phyr.
fn user_cache() -> PathBuf {
    match std::env::var_os("PHYR_CACHE_DIR").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/phyr"),
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// A stand-in for a user's kernel build tree, made of the provisioned backports kernel's
/// files: the headers' kbuild output (its .config, Module.symvers, include/, the wrapped
/// kbuild tools), the kernel image as arch/x86/boot/bzImage, and its modules.
fn stand_in_tree(dir: &Path) -> String {
    let o = harness().args(["provision", "--kernel", "backports"]).output().unwrap();
    assert!(o.status.success(), "provision failed:\n{}", stderr_of(&o));
    let cache = user_cache();
    let pins = std::fs::read_to_string(cache.join("kernels/pins")).unwrap();
    let release = pins
        .lines()
        .find_map(|l| l.strip_prefix("backports "))
        .expect("a backports pin")
        .trim()
        .to_owned();
    let k = cache.join("kernels").join(&release);
    let headers = k.join("headers/usr/src").join(format!("linux-headers-{release}"));
    let tree = dir.join("linux");
    copy_tree(&headers, &tree);
    // The kbuild tools and scripts stay where the cache has them (wrapped for this host).
    for link in ["scripts", "tools"] {
        let target = std::fs::canonicalize(headers.join(link)).unwrap();
        std::fs::remove_file(tree.join(link)).unwrap();
        std::os::unix::fs::symlink(target, tree.join(link)).unwrap();
    }
    let mk = std::fs::read_to_string(tree.join("Makefile")).unwrap();
    let mk: String = mk
        .lines()
        .map(|l| match l.starts_with("KBUILD_OUTPUT=") {
            true => format!("KBUILD_OUTPUT={}\n", tree.display()),
            false => format!("{l}\n"),
        })
        .collect();
    std::fs::write(tree.join("Makefile"), mk).unwrap();
    let mods = k.join("image/usr/lib/modules").join(&release);
    std::fs::create_dir_all(tree.join("arch/x86/boot")).unwrap();
    std::fs::copy(mods.join("vmlinuz"), tree.join("arch/x86/boot/bzImage")).unwrap();
    copy_tree(&mods.join("kernel"), &tree.join("modules"));
    std::fs::copy(mods.join("modules.builtin"), tree.join("modules.builtin")).unwrap();
    release
}

#[test]
#[ignore = "provisions the backports kernel, its headers and gcc-14, builds a module and boots QEMU (~30 s warm)"]
fn kernel_dir_stand_in_tree_boots_and_loads_a_module_built_against_it() {
    let d = tmp("stand-in");
    let release = stand_in_tree(&d);
    let tree = d.join("linux");
    let o = harness()
        .args([
            "run",
            "--no-device",
            "--timeout",
            "300",
            "--module-src",
            "harness/tests/kmod",
        ])
        .args([
            "--guest-cmd",
            "grep -q '^phyr_hello ' /proc/modules && echo HELLO-LOADED on $(uname -r)",
        ])
        .arg("--kernel")
        .arg(&tree)
        .arg("--runs-dir")
        .arg(d.join("runs"))
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr_of(&o));
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(&format!("your kernel tree {} ({release})", tree.display())),
        "{err}"
    );
    assert!(
        err.contains("building module") && err.contains(&format!("for kernel {release}")),
        "{err}"
    );
    assert!(out.contains("phyr-init: module phyr_hello loaded"), "{out}");
    assert!(out.contains(&format!("HELLO-LOADED on {release}")), "{out}");
    let record = std::fs::read_to_string(d.join("runs/latest/kernel.txt")).unwrap();
    assert!(
        record.contains(&format!("release: {release}")) && record.contains("phyr_hello"),
        "{record}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
#[ignore = "boots QEMU with a module built for the stable kernel on the backports kernel (~20 s warm)"]
fn a_module_for_another_kernel_is_refused_at_load_with_a_vermagic_message() {
    let d = tmp("vermagic");
    for k in ["backports", "stable"] {
        let o = harness().args(["provision", "--kernel", k]).output().unwrap();
        assert!(o.status.success(), "{}", stderr_of(&o));
    }
    let cache = user_cache();
    let pins = std::fs::read_to_string(cache.join("kernels/pins")).unwrap();
    let stable = pins
        .lines()
        .find_map(|l| l.strip_prefix("stable "))
        .unwrap()
        .trim()
        .to_owned();
    // Build the test module for the stable kernel (a --no-device boot that stops at once).
    let o = harness()
        .args([
            "run",
            "--no-device",
            "--kernel",
            "stable",
            "--module-src",
            "harness/tests/kmod",
        ])
        .args(["--guest-cmd", "true", "--timeout", "300", "--runs-dir"])
        .arg(d.join("runs"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let built = std::fs::read_dir(cache.join("modules").join(&stable))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path().join("out/phyr_hello.ko")))
        .find(|p| p.is_file())
        .expect("the stable build of phyr_hello");
    let o = harness()
        .args([
            "run",
            "--no-device",
            "--kernel",
            "backports",
            "--guest-cmd",
            "true",
            "--timeout",
            "300",
        ])
        .arg("--module")
        .arg(&built)
        .arg("--runs-dir")
        .arg(d.join("runs"))
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr_of(&o));
    assert!(
        err.contains("warning: --module") && err.contains("vermagic mismatch: module phyr_hello"),
        "{err}"
    );
    assert!(
        out.contains("phyr-init: ERROR: insmod phyr_hello.ko: vermagic mismatch:")
            && out.contains("phyr-init: ERROR: module phyr_hello is not loaded"),
        "{out}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
