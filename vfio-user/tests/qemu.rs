//! Against the real QEMU. QEMU runs with the qtest accelerator, so the test itself plays the
//! guest: it reads config space, sizes and programs a BAR, enables bus mastering, peeks at
//! guest RAM, while the device side does DMA through the client's mappings.
//!
//! Which QEMU: `PHYR_QEMU` (a `qemu-system-x86_64` run as it is), else the private prefix the
//! harness provisions (`PHYR_QEMU_PREFIX`, else `qemu/prefix` under `$PHYR_CACHE_DIR` or
//! `~/.cache/phyr`). Without one a plain `cargo test` says "skipped" and passes; under
//! `just test` the harness sets `PHYR_REQUIRE_QEMU=1` and names its QEMU, and then a missing or
//! failing QEMU fails the test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use vfio_user::{Server, ServerHandle};

/// How to start QEMU.
enum Launcher {
    /// A `qemu-system-x86_64` run as it is (`PHYR_QEMU`).
    Binary(PathBuf),
    /// A private prefix unpacked from Debian packages, run through its own loader.
    Prefix(PathBuf),
}

/// Whether the harness asked for a real run (`PHYR_REQUIRE_QEMU=1`).
fn required() -> bool {
    std::env::var_os("PHYR_REQUIRE_QEMU").is_some_and(|v| v == "1")
}

/// The QEMU to test against, `Ok(None)` when none is provisioned, `Err` when one was named
/// explicitly but is not there.
fn launcher() -> Result<Option<Launcher>, String> {
    let in_prefix = |p: &Path| p.join("usr/bin/qemu-system-x86_64").exists();
    if let Some(q) = std::env::var_os("PHYR_QEMU").map(PathBuf::from) {
        return match q.is_file() {
            true => Ok(Some(Launcher::Binary(q))),
            false => Err(format!("PHYR_QEMU={} is not a file", q.display())),
        };
    }
    if let Some(p) = std::env::var_os("PHYR_QEMU_PREFIX").map(PathBuf::from) {
        return match in_prefix(&p) {
            true => Ok(Some(Launcher::Prefix(p))),
            false => Err(format!(
                "PHYR_QEMU_PREFIX={} has no usr/bin/qemu-system-x86_64",
                p.display()
            )),
        };
    }
    let cache = std::env::var_os("PHYR_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/phyr")));
    Ok(cache
        .map(|c| c.join("qemu/prefix"))
        .filter(|p| in_prefix(p))
        .map(Launcher::Prefix))
}

struct Qtest {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Qtest {
    fn start(qemu: &Launcher, sock: &Path, memfd_ram: bool) -> Qtest {
        let mut cmd = match qemu {
            Launcher::Binary(q) => Command::new(q),
            Launcher::Prefix(prefix) => {
                let lib = prefix.join("usr/lib/x86_64-linux-gnu");
                let mut cmd = Command::new(lib.join("ld-linux-x86-64.so.2"));
                cmd.env("QEMU_MODULE_DIR", lib.join("qemu"))
                    .arg("--library-path")
                    .arg(&lib)
                    .arg(prefix.join("usr/bin/qemu-system-x86_64"))
                    .args(["-L"])
                    .arg(prefix.join("usr/share/qemu"))
                    .args(["-L"])
                    .arg(prefix.join("usr/share/seabios"));
                cmd
            }
        };
        cmd.args([
            "-machine",
            "q35",
            "-accel",
            "qtest",
            "-qtest",
            "stdio",
            "-qtest-log",
            "/dev/null",
            "-m",
            "256M",
            "-nodefaults",
        ])
        .args(["-display", "none", "-serial", "none", "-monitor", "none"]);
        if memfd_ram {
            cmd.args([
                "-object",
                "memory-backend-memfd,id=mem,size=256M,share=on",
                "-machine",
                "memory-backend=mem",
            ]);
        }
        let dev = format!(
            r#"{{"driver":"vfio-user-pci","socket":{{"type":"unix","path":"{}"}},"addr":"0x3"}}"#,
            sock.display()
        );
        cmd.args(["-device", &dev])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start QEMU");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Qtest { child, stdin, lines }
    }

    /// Sends one qtest command and returns the value of its `OK` reply.
    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no qtest reply to {line}"));
            if let Some(rest) = l.strip_prefix("OK") {
                return rest.trim().to_string();
            }
            assert!(!l.starts_with("FAIL") && !l.starts_with("ERR"), "qtest: {line} -> {l}");
        }
    }

    fn cfg_addr(&mut self, reg: u32) {
        self.cmd(&format!("outl 0xcf8 {:#x}", 0x8000_0000u32 | (3 << 11) | reg));
    }

    fn cfg_read32(&mut self, reg: u32) -> u32 {
        self.cfg_addr(reg);
        let v = self.cmd("inl 0xcfc");
        u32::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
    }

    fn cfg_write32(&mut self, reg: u32, v: u32) {
        self.cfg_addr(reg);
        self.cmd(&format!("outl 0xcfc {v:#x}"));
    }

    fn read_mem(&mut self, addr: u64, len: usize) -> Vec<u8> {
        let hex = self.cmd(&format!("read {addr:#x} {len:#x}"));
        let hex = hex.trim_start_matches("0x");
        (0..len)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }
}

impl Drop for Qtest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(memfd_ram: bool) {
    let qemu = match launcher() {
        Ok(Some(q)) => q,
        Ok(None) if !required() => {
            eprintln!("skipped: no provisioned QEMU under ~/.cache/phyr/qemu/prefix (`just provision` makes one)");
            return;
        }
        Ok(None) => {
            panic!("PHYR_REQUIRE_QEMU=1 but no QEMU: set PHYR_QEMU or PHYR_QEMU_PREFIX, or run `just provision`")
        }
        Err(e) => panic!("{e}"),
    };
    let dev = TestDevice::new();
    dev.bar2.slice(0, 8).unwrap().copy_from(b"BAR2MEM!").unwrap();
    let srv: ServerHandle = Server::new(sock_path(), dev.clone()).unwrap().spawn().unwrap();
    let mut q = Qtest::start(&qemu, srv.path(), memfd_ram);

    // Enumeration: config space through REGION_READ.
    assert_eq!(q.cfg_read32(0), 0x7068_1234);
    // BAR2 sizing (QEMU emulates it from REGION_INFO), programming, memory + bus master on.
    q.cfg_write32(0x18, 0xffff_ffff);
    assert_eq!(q.cfg_read32(0x18) & !0xf, !(BAR2_SIZE as u32 - 1));
    q.cfg_write32(0x18, 0xe000_0000);
    q.cfg_write32(0x4, 0x6);
    // The sparse-mmap area is the device's memfd, mapped straight into the guest.
    assert_eq!(q.read_mem(0xe000_0000, 8), b"BAR2MEM!");
    q.cmd("writel 0xe0000010 0xcafef00d");
    let mut w = [0u8; 4];
    dev.bar2.slice(0x10, 4).unwrap().copy_to(&mut w);
    assert_eq!(u32::from_le_bytes(w), 0xcafe_f00d);

    // Device DMA into guest RAM (DMA_WRITE messages, or the mmap-ed memfd) and back.
    let dma = dev.client().dma;
    let expect_fd = if memfd_ram { Some(0) } else { None };
    assert!(
        dma.mappings().iter().any(|m| m.iova == 0 && m.fd_offset == expect_fd),
        "{:?}",
        dma.mappings()
    );
    let pattern: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37).wrapping_add(1)).collect();
    dma.write(0x80_0000, &pattern).unwrap();
    assert_eq!(q.read_mem(0x80_0000, 64), pattern);
    q.cmd("write 0x800100 0x4 0xdeadbeef");
    let mut r = [0u8; 4];
    dma.read(0x80_0100, &mut r).unwrap();
    assert_eq!(r, [0xde, 0xad, 0xbe, 0xef]);

    // QEMU going away is a disconnect; the server then waits for the next client.
    drop(q);
    assert!(wait_until(Duration::from_secs(10), || dev
        .events()
        .contains(&Event::Disconnected)));
    vfio_user::Client::connect(srv.path()).unwrap().reset().unwrap();
}

#[test]
fn qemu_enumerates_maps_bar_and_dma_round_trips_through_messages() {
    run(false);
}

#[test]
fn qemu_with_memfd_ram_dma_round_trips_through_mmap() {
    run(true);
}
