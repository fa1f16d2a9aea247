//! The binary's answers to bad input: one clear message, a non-zero exit, nothing started.
//! Plus one real boot (ignored by default: it provisions ~150 MB and boots QEMU):
//! `cargo test -p phyr-harness -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn harness() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_phyr-harness"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("phyr-harness-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `phyr-harness ARGS --cache-dir CACHE --runs-dir CACHE/runs`: a command that touches nothing
/// outside its own temporary cache.
fn in_cache(args: &[&str], cache: &Path) -> Command {
    let mut c = harness();
    c.args(args)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--runs-dir")
        .arg(cache.join("runs"));
    c
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unknown_recipe_lists_the_available_ones() {
    let cache = tmp("cache1");
    let o = in_cache(&["run", "--recipe", "nope"], &cache).output().unwrap();
    assert!(!o.status.success());
    let e = stderr_of(&o);
    assert!(
        e.contains("no recipe named \"nope\"") && e.contains("default") && e.contains("anon-ram"),
        "{e}"
    );
}

#[test]
fn long_socket_path_is_refused_before_anything_starts() {
    let cache = tmp("cache2");
    let runs = tmp(&"r".repeat(90));
    let o = harness()
        .args(["run", "--cache-dir"])
        .arg(&cache)
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr_of(&o);
    assert!(e.contains("at most 107 bytes"), "{e}");
    assert!(!e.contains("provisioning"), "provisioning started: {e}");
}

#[test]
fn unwritable_cache_says_so() {
    let o = harness()
        .args(["provision", "--cache-dir", "/proc/phyr-cache"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("is not writable"), "{}", stderr_of(&o));
}

#[test]
fn kernel_that_is_not_a_bzimage_is_refused() {
    let cache = tmp("cache3");
    let fake = cache.join("bzImage");
    std::fs::write(&fake, b"not a kernel").unwrap();
    let o = in_cache(&["run", "--no-device", "--qemu", "/bin/true"], &cache)
        .arg("--kernel")
        .arg(&fake)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr_of(&o);
    // Either the bogus QEMU or the bogus kernel is refused, each with its own message.
    assert!(
        e.contains("not an x86 bzImage") || e.contains("could not read a version"),
        "{e}"
    );
    assert!(
        !cache.join("runs").exists(),
        "a run directory was created for a run that never started"
    );
}

/// Boots Debian's kernel under QEMU with QEMU's edu devices in place of the endpoints and
/// checks the init's READY marker and the guest command's output.
#[test]
#[ignore = "provisions QEMU and a kernel into the cache and boots a guest (~10 s warm, ~30 s cold)"]
fn real_boot_binds_two_devices_to_vfio_pci() {
    let runs = tmp("boot-runs");
    let o = harness()
        .args([
            "run",
            "--no-device",
            "--timeout",
            "300",
            "--guest-cmd",
            "echo guest-says-$((6*7)); ls /dev/vfio",
        ])
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{}", stderr_of(&o));
    assert!(out.contains("phyr-init: READY: 2 device(s) bound to vfio-pci"), "{out}");
    assert!(out.contains("guest-says-42"), "{out}");
    assert!(out.contains("=== phyr guest-cmd end: exit 0 ==="), "{out}");
    let latest = runs.join("latest");
    for f in ["serial.log", "qemu.log", "qemu.cmdline", "initramfs.cpio"] {
        assert!(latest.join(f).exists(), "{f} missing from the run directory");
    }
    assert!(!latest.join("sock").exists(), "socket directory left behind");
}

#[test]
fn old_qemu_and_no_way_to_provision_is_one_clear_message() {
    let cache = tmp("cache4");
    let bin = tmp("fakebin");
    let fake = bin.join("qemu-system-x86_64");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u7)'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = harness()
        .args(["provision", "--cache-dir"])
        .arg(&cache)
        .env("PATH", &bin)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr_of(&o);
    assert!(
        e.contains("QEMU 7.2.15 found at") && e.contains("vfio-user-pci needs >= 10.1"),
        "{e}"
    );
    assert!(
        e.contains("provisioning QEMU 11.1 from Debian trixie-backports failed") && e.contains("`apt-get` not found"),
        "{e}"
    );
}

#[test]
fn missing_device_binary_is_reported_before_any_download() {
    let cache = tmp("cache5");
    let o = in_cache(&["run", "--device-bin", "/nonexistent/phyr-device"], &cache)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr_of(&o);
    assert!(
        e.contains("phyr-device not found at /nonexistent/phyr-device")
            && e.contains("cargo build --release -p phyr-device"),
        "{e}"
    );
    assert!(!e.contains("provisioning"), "{e}");
}
