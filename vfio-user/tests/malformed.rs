//! The client as an adversary, at the message level: framing, VERSION, unknown commands and
//! the info queries. Each test is named after the hostile input, checks the exact errno (or the
//! clean close) and that the server keeps working afterwards. malformed_commands.rs does the
//! same for DMA_MAP/UNMAP, SET_IRQS and region access.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use vfio_bindings::bindings::vfio as v;
use vfio_user::wire::{
    Command, Header, RegionAccess, SetIrqs, Version, FLAG_NO_REPLY, HEADER_SIZE, MAX_MESSAGE_SIZE, TYPE_REPLY,
};
use vfio_user::{eventfd, pci_irq, Client, ClientOptions, Errno};

// ---- framing ----

/// A raw socket for tests that need to see exactly what comes back.
struct Raw(UnixStream);

impl Raw {
    fn connect(path: &std::path::Path) -> Raw {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw(s)
    }
    fn send(&mut self, id: u16, command: u16, flags: u32, payload: &[u8]) {
        let h = Header {
            msg_id: id,
            command,
            msg_size: (HEADER_SIZE + payload.len()) as u32,
            flags,
            error: 0,
        };
        self.0.write_all(&h.encode()).unwrap();
        self.0.write_all(payload).unwrap();
    }
    fn recv(&mut self) -> (Header, Vec<u8>) {
        let mut h = [0u8; HEADER_SIZE];
        self.0.read_exact(&mut h).unwrap();
        let h = Header::parse(&h);
        let mut p = vec![0u8; h.msg_size as usize - HEADER_SIZE];
        self.0.read_exact(&mut p).unwrap();
        (h, p)
    }
    fn closed_by_peer(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.0.read(&mut b), Ok(0))
    }
}

#[test]
fn oversized_msg_size_closes_connection_and_server_accepts_next() {
    let (_dev, srv) = start();
    let mut r = Raw::connect(srv.path());
    let h = Header {
        msg_id: 1,
        command: Command::RegionWrite as u16,
        msg_size: (MAX_MESSAGE_SIZE + 1) as u32,
        flags: 0,
        error: 0,
    };
    r.0.write_all(&h.encode()).unwrap();
    assert!(r.closed_by_peer());
    server_accepts_next(&srv);
}

#[test]
fn msg_size_below_header_closes_connection_and_server_accepts_next() {
    let (_dev, srv) = start();
    let mut r = Raw::connect(srv.path());
    let h = Header {
        msg_id: 1,
        command: 1,
        msg_size: 8,
        flags: 0,
        error: 0,
    };
    r.0.write_all(&h.encode()).unwrap();
    assert!(r.closed_by_peer());
    server_accepts_next(&srv);
}

#[test]
fn truncated_header_then_hangup_keeps_server_serving() {
    let (dev, srv) = start();
    {
        let mut r = Raw::connect(srv.path());
        r.0.write_all(&[1, 0, 1, 0, 40, 0]).unwrap();
    }
    server_accepts_next(&srv);
    // Only the second connection negotiated and reached the device.
    assert_eq!(dev.events().iter().filter(|e| **e == Event::Connected).count(), 1);
}

#[test]
fn truncated_payload_then_hangup_keeps_server_serving() {
    let (_dev, srv) = start();
    {
        let mut r = Raw::connect(srv.path());
        let h = Header {
            msg_id: 1,
            command: 1,
            msg_size: 100,
            flags: 0,
            error: 0,
        };
        r.0.write_all(&h.encode()).unwrap();
        r.0.write_all(&[0; 10]).unwrap();
    }
    server_accepts_next(&srv);
}

#[test]
fn message_split_into_many_writes_is_reassembled() {
    let (_dev, srv) = start();
    let mut r = Raw::connect(srv.path());
    let p = version_payload();
    let h = Header {
        msg_id: 7,
        command: 1,
        msg_size: (HEADER_SIZE + p.len()) as u32,
        flags: 0,
        error: 0,
    };
    let mut bytes = h.encode().to_vec();
    bytes.extend_from_slice(&p);
    for piece in bytes.chunks(5) {
        r.0.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let (rh, rp) = r.recv();
    assert_eq!((rh.msg_id, rh.is_reply(), rh.is_error()), (7, true, false));
    assert!(Version::parse(&rp).is_ok());
}

#[test]
fn too_many_fds_in_one_message_closes_connection_and_server_accepts_next() {
    let (_dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let fds: Vec<OwnedFd> = (0..80).map(|_| eventfd().unwrap()).collect();
    let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let flags = v::VFIO_IRQ_SET_DATA_EVENTFD | v::VFIO_IRQ_SET_ACTION_TRIGGER;
    let h = Header {
        msg_id: 3,
        command: Command::DeviceSetIrqs as u16,
        ..Header::default()
    };
    c.send_raw(h, &SetIrqs::encode(flags, pci_irq::MSIX, 0, 80, &[]), &b)
        .unwrap();
    assert!(c.wait_closed(Duration::from_secs(5)));
    server_accepts_next(&srv);
}

#[test]
fn unsolicited_reply_is_ignored() {
    let (_dev, srv) = start();
    let mut r = Raw::connect(srv.path());
    r.send(1, 1, 0, &version_payload());
    r.recv();
    r.send(999, Command::RegionRead as u16, TYPE_REPLY, &[0; 20]);
    r.send(2, Command::RegionRead as u16, 0, &RegionAccess::encode(0, 0, 4, &[]));
    let (h, p) = r.recv();
    assert_eq!((h.msg_id, h.is_error()), (2, false));
    assert_eq!(p.len(), 16 + 4);
}

#[test]
fn posted_write_is_never_answered_even_when_invalid() {
    let (_dev, srv) = start();
    let mut r = Raw::connect(srv.path());
    r.send(1, 1, 0, &version_payload());
    r.recv();
    r.send(
        2,
        Command::RegionWrite as u16,
        FLAG_NO_REPLY,
        &RegionAccess::encode(0, 0, 1, &[9]),
    );
    r.send(
        3,
        Command::RegionWrite as u16,
        FLAG_NO_REPLY,
        &RegionAccess::encode(0, 99, 1, &[9]),
    );
    r.send(4, Command::RegionRead as u16, 0, &RegionAccess::encode(0, 0, 1, &[]));
    let (h, p) = r.recv();
    assert_eq!(h.msg_id, 4, "the posted writes got no reply");
    assert_eq!(p[16], 9);
}

#[test]
fn unknown_message_type_gets_einval() {
    let (_dev, srv) = start();
    let mut r = Raw::connect(srv.path());
    r.send(1, 1, 0, &version_payload());
    r.recv();
    r.send(5, Command::DeviceReset as u16, 0x7, &[]);
    let (h, _) = r.recv();
    assert_eq!((h.msg_id, h.is_error(), h.error), (5, true, libc::EINVAL as u32));
}

// ---- VERSION ----

fn unnegotiated(srv: &vfio_user::ServerHandle) -> Client {
    Client::connect_with(
        srv.path(),
        ClientOptions {
            negotiate: false,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn version_without_nul_is_rejected() {
    let (_dev, srv) = start();
    let c = unnegotiated(&srv);
    let mut p = version_payload();
    p.pop();
    assert_eq!(errno_of(&c, 1, &p, &[]), Errno::EINVAL);
    // A correct VERSION afterwards still works.
    c.call(Command::Version, &version_payload(), &[]).unwrap();
    still_works(&c);
}

#[test]
fn version_with_bad_json_is_rejected() {
    let (_dev, srv) = start();
    let c = unnegotiated(&srv);
    assert_eq!(errno_of(&c, 1, b"\0\0\0\0{\"capabilities\":\0", &[]), Errno::EINVAL);
    assert_eq!(errno_of(&c, 1, b"\0\0\0\0[]\0", &[]), Errno::EINVAL);
    assert_eq!(
        errno_of(&c, 1, b"\0\0\0\0{\"capabilities\":{\"max_msg_fds\":\"x\"}}\0", &[]),
        Errno::EINVAL
    );
    c.call(Command::Version, &version_payload(), &[]).unwrap();
    still_works(&c);
}

#[test]
fn version_major_1_gets_enotsup() {
    let (_dev, srv) = start();
    let c = unnegotiated(&srv);
    assert_eq!(errno_of(&c, 1, &[1, 0, 0, 0], &[]), Errno::ENOTSUP);
}

#[test]
fn second_version_gets_einval() {
    let (_dev, _srv, c) = connected();
    assert_eq!(errno_of(&c, 1, &version_payload(), &[]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn command_before_version_gets_einval() {
    let (dev, srv) = start();
    let c = unnegotiated(&srv);
    assert_eq!(
        errno_of(&c, Command::RegionRead as u16, &RegionAccess::encode(0, 0, 1, &[]), &[]),
        Errno::EINVAL
    );
    assert!(dev.events().is_empty());
}

// ---- unknown and unsupported commands ----

#[test]
fn unknown_command_gets_enotsup_and_session_continues() {
    let (_dev, _srv, c) = connected();
    assert_eq!(errno_of(&c, 99, &[1, 2, 3, 4, 5], &[]), Errno::ENOTSUP);
    assert_eq!(errno_of(&c, 0, &[], &[]), Errno::ENOTSUP);
    still_works(&c);
}

#[test]
fn device_feature_with_payload_gets_enotsup() {
    let (_dev, _srv, c) = connected();
    assert_eq!(
        errno_of(&c, Command::DeviceFeature as u16, &[0u8; 4096], &[]),
        Errno::ENOTSUP
    );
    assert_eq!(
        errno_of(&c, Command::MigDataRead as u16, &[0u8; 12], &[]),
        Errno::ENOTSUP
    );
    still_works(&c);
}

#[test]
fn dma_read_from_client_gets_enotsup() {
    let (_dev, _srv, c) = connected();
    assert_eq!(errno_of(&c, Command::DmaRead as u16, &[0u8; 16], &[]), Errno::ENOTSUP);
    still_works(&c);
}

// ---- info ----

#[test]
fn device_info_with_argsz_below_struct_gets_einval() {
    let (_dev, _srv, c) = connected();
    let mut p = vec![0u8; 16];
    p[0] = 8;
    assert_eq!(errno_of(&c, 4, &p, &[]), Errno::EINVAL);
    assert_eq!(errno_of(&c, 4, &p[..12], &[]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn region_info_with_argsz_below_struct_gets_einval() {
    let (_dev, _srv, c) = connected();
    let mut p = vec![0u8; 32];
    p[0] = 16;
    assert_eq!(errno_of(&c, 5, &p, &[]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn region_info_with_huge_argsz_gets_einval() {
    let (_dev, _srv, c) = connected();
    let mut p = vec![0u8; 32];
    p[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(errno_of(&c, 5, &p, &[]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn region_info_index_out_of_range_gets_einval() {
    let (_dev, _srv, c) = connected();
    let mut p = vec![0u8; 32];
    p[0] = 32;
    p[8..12].copy_from_slice(&9u32.to_le_bytes());
    assert_eq!(errno_of(&c, 5, &p, &[]), Errno::EINVAL);
    still_works(&c);
}

#[test]
fn irq_info_index_out_of_range_gets_einval() {
    let (_dev, _srv, c) = connected();
    let mut p = vec![0u8; 16];
    p[0] = 16;
    p[8..12].copy_from_slice(&5u32.to_le_bytes());
    assert_eq!(errno_of(&c, 7, &p, &[]), Errno::EINVAL);
    still_works(&c);
}
