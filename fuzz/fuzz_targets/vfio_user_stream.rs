//! vfio-user framing and dispatch over arbitrary byte streams, with and without fds, served
//! by a real phyr endpoint (config space, BAR0 registers, BAR2, MSI-X, DMA maps).
//!
//! Input: chunks of `[len: u16][flags: u8][len bytes]`; a chunk with flag bit 0 carries an
//! eventfd and a 64 KiB memfd (SCM_RIGHTS) beside its bytes. The stream goes to one server
//! kept across inputs; the client then closes its write side and drains the replies. Checks:
//! no panic (any thread), the server closes the connection or answers within a bound, and a
//! clean client can still negotiate and read the endpoint's ID register afterwards.
#![no_main]

use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dma_range::regs::{PHYR_ID, REG_ID};
use libfuzzer_sys::fuzz_target;
use phyr_device::{Endpoint, Fabric, Hook, PeerMem, Port, VfioEndpoint};
use vfio_user::{eventfd, memfd, pci_region, Client, Server, ServerHandle, ServerOptions};

struct Rig {
    path: PathBuf,
    _server: ServerHandle,
    /// Inputs run one at a time even if libFuzzer forks threads.
    lock: Mutex<()>,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("phyr-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ep0.sock");
        let bar2 = PeerMem::new("fuzz-bar2", 1 << 20).unwrap();
        let fabric = Arc::new(Fabric::new(vec![Arc::new(Port::new(0, 0, bar2))]));
        let ep = Endpoint::new(fabric, 0, 2, Hook::off(0)).unwrap();
        ep.start().unwrap();
        let opts = ServerOptions {
            dma_timeout: Duration::from_millis(50),
            ..ServerOptions::default()
        };
        let server = Server::with_options(&path, Arc::new(VfioEndpoint::new(ep)), opts)
            .unwrap()
            .spawn()
            .unwrap();
        Rig {
            path,
            _server: server,
            lock: Mutex::new(()),
        }
    })
}

/// Sends `bytes` with `fds` attached (SCM_RIGHTS); short writes are finished without fds.
fn send(sock: &UnixStream, bytes: &[u8], fds: &[&OwnedFd]) -> bool {
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let space = if raw.is_empty() {
        0
    } else {
        unsafe_cmsg_space(raw.len())
    };
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` bytes, enough for one header and `raw.len()` fds
        // (CMSG_SPACE), so CMSG_FIRSTHDR is non-null and CMSG_DATA has room for the fds.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN((raw.len() * 4) as u32) as usize;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(c).cast::<i32>(), raw.len());
        }
    }
    // SAFETY: `msg` describes valid buffers (see above); the socket fd is open.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return false;
    }
    let mut rest = &bytes[n as usize..];
    while !rest.is_empty() {
        match std::io::Write::write(&mut &*sock, rest) {
            Ok(0) | Err(_) => return false,
            Ok(k) => rest = &rest[k..],
        }
    }
    true
}

fn unsafe_cmsg_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE((fds * 4) as u32) as usize }
}

fuzz_target!(|data: &[u8]| {
    let rig = rig();
    let _one = rig.lock.lock().unwrap_or_else(|e| e.into_inner());
    let sock = UnixStream::connect(&rig.path).expect("the server accepts a new client");
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let efd = eventfd().unwrap();
    let mfd = memfd("fuzz-ram", 64 * 1024).unwrap();
    let mut rest = data;
    while rest.len() >= 3 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let flags = rest[2];
        let end = (3 + len).min(rest.len());
        let fds: &[&OwnedFd] = if flags & 1 != 0 { &[&efd, &mfd] } else { &[] };
        if !send(&sock, &rest[3..end], fds) {
            break; // the server closed the connection: fine, it judged the stream
        }
        rest = &rest[end..];
    }
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 65536];
    loop {
        match (&sock).read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server neither answered nor closed within 10 s: {e}"),
        }
    }
    drop(sock);
    // The next client gets a working endpoint.
    let c = Client::connect(&rig.path).expect("a clean client negotiates after the hostile one");
    let id = c
        .region_read(pci_region::BAR0, REG_ID, 4)
        .expect("ID register readable");
    assert_eq!(id, PHYR_ID.to_le_bytes());
});
