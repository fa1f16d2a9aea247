//! Connections coming and going, unmap vs in-flight DMA, the deadlock guard, timeouts.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use vfio_user::wire::{Capabilities, Command, DmaMap, Header, RegionAccess, Version, HEADER_SIZE};
use vfio_user::{
    memfd, pci_irq, pci_region, Access, Client, DmaChunk, DmaError, IrqError, Server, ServerError, ServerOptions,
};

#[test]
fn disconnect_notifies_device_and_next_client_is_served() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let ram = memfd("r", 0x1000).unwrap();
    c.dma_map(0x1000, 0x1000, ram.as_fd(), 0, true, true).unwrap();
    let old = dev.client();
    drop(c);
    assert!(wait_until(Duration::from_secs(5), || dev
        .events()
        .contains(&Event::Disconnected)));
    let mut b = [0u8; 1];
    assert_eq!(
        old.dma.read(0x1000, &mut b),
        Err(DmaError::Disconnected { addr: 0x1000 })
    );
    assert_eq!(old.irqs.trigger(pci_irq::MSIX, 0), Err(IrqError::Disconnected));
    assert!(old.dma.is_empty());
    // The same server takes the next client, with a fresh session.
    let c2 = Client::connect(srv.path()).unwrap();
    c2.region_write(pci_region::BAR0, 0, &[1]).unwrap();
    assert!(dev.client().dma.is_empty());
    assert_eq!(dev.events().iter().filter(|e| **e == Event::Connected).count(), 2);
}

#[test]
fn kicked_client_sees_the_close_and_server_keeps_serving() {
    let (_dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    srv.kick_client();
    assert!(c.wait_closed(Duration::from_secs(5)));
    assert!(c.region_read(pci_region::BAR0, 0, 1).is_err());
    let c2 = Client::connect(srv.path()).unwrap();
    c2.region_read(pci_region::BAR0, 0, 1).unwrap();
}

#[test]
fn stale_socket_file_is_replaced() {
    let path = sock_path();
    let first = Server::new(&path, TestDevice::new()).unwrap();
    drop(first); // leaves the socket file behind
    assert!(path.exists());
    let srv = Server::new(&path, TestDevice::new()).unwrap().spawn().unwrap();
    Client::connect(srv.path()).unwrap().reset().unwrap();
}

#[test]
fn socket_path_longer_than_sun_path_is_a_clear_error() {
    let long = std::env::temp_dir().join("x".repeat(120));
    assert!(matches!(Server::new(&long, TestDevice::new()), Err(ServerError::PathTooLong { len, .. }) if len > 107));
}

#[test]
fn a_regular_file_at_the_socket_path_is_not_deleted() {
    let path = sock_path();
    std::fs::write(&path, b"precious").unwrap();
    assert!(matches!(
        Server::new(&path, TestDevice::new()),
        Err(ServerError::RemoveStale { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn many_endpoints_run_side_by_side() {
    let servers: Vec<_> = (0..4).map(|_| start()).collect();
    let clients: Vec<_> = servers
        .iter()
        .map(|(_, s)| Client::connect(s.path()).unwrap())
        .collect();
    for (i, c) in clients.iter().enumerate() {
        c.region_write(pci_region::BAR0, 0, &[i as u8]).unwrap();
    }
    for (i, (dev, _)) in servers.iter().enumerate() {
        assert_eq!(dev.bar0.lock().unwrap()[0], i as u8);
    }
}

#[test]
fn dma_unmap_waits_for_in_flight_access() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let ram = memfd("r", 0x1000).unwrap();
    c.dma_map(0x1000, 0x1000, ram.as_fd(), 0, true, true).unwrap();
    let dma = dev.client().dma;
    let finished = Arc::new(Mutex::new(None::<Instant>));
    let (started_tx, started_rx) = crossbeam_channel::bounded(1);
    let worker = {
        let finished = Arc::clone(&finished);
        std::thread::spawn(move || {
            dma.with_chunks::<DmaError>(0x1000, 0x1000, Access::Write, |_, chunk| {
                started_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                if let DmaChunk::Mapped(s) = chunk {
                    s.fill(0x77).unwrap(); // still mapped: the unmap has not returned
                }
                *finished.lock().unwrap() = Some(Instant::now());
                Ok(())
            })
        })
    };
    started_rx.recv().unwrap();
    c.dma_unmap(0x1000, 0x1000).unwrap();
    let unmapped_at = Instant::now();
    worker.join().unwrap().unwrap();
    let done = finished.lock().unwrap().expect("access finished");
    assert!(
        done <= unmapped_at,
        "the unmap reply came before the in-flight access ended"
    );
    let mut b = [0u8; 1];
    assert_eq!(
        dev.client().dma.read(0x1000, &mut b),
        Err(DmaError::NotMapped { addr: 0x1000 })
    );
}

#[test]
fn dma_through_messages_from_the_request_thread_is_refused_not_deadlocked() {
    let (dev, srv) = start();
    let c = Client::connect(srv.path()).unwrap();
    let _local = c.dma_map_local(0x3000, 0x1000, true, true).unwrap();
    c.region_write(pci_region::BAR0, DMA_FROM_REQUEST_THREAD, &0x3000u32.to_le_bytes())
        .unwrap();
    assert_eq!(
        *dev.request_thread_dma.lock().unwrap(),
        Some(Err(DmaError::RequestThread { addr: 0x3000 }))
    );
    // fd-backed memory is fine from the request thread: no message involved.
    let ram = memfd("r", 0x1000).unwrap();
    c.dma_map(0x5000, 0x1000, ram.as_fd(), 0, true, true).unwrap();
    c.region_write(pci_region::BAR0, DMA_FROM_REQUEST_THREAD, &0x5000u32.to_le_bytes())
        .unwrap();
    assert_eq!(*dev.request_thread_dma.lock().unwrap(), Some(Ok(())));
}

/// A hand-driven client that negotiates and maps fd-less memory but never answers DMA_READ.
fn silent_client(path: &std::path::Path) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    let send = |s: &mut UnixStream, id: u16, cmd: Command, p: &[u8]| {
        let h = Header {
            msg_id: id,
            command: cmd as u16,
            msg_size: (HEADER_SIZE + p.len()) as u32,
            flags: 0,
            error: 0,
        };
        s.write_all(&h.encode()).unwrap();
        s.write_all(p).unwrap();
        let mut rh = [0u8; HEADER_SIZE];
        s.read_exact(&mut rh).unwrap();
        let rh = Header::parse(&rh);
        let mut rest = vec![0u8; rh.msg_size as usize - HEADER_SIZE];
        s.read_exact(&mut rest).unwrap();
        assert!(!rh.is_error());
    };
    send(
        &mut s,
        1,
        Command::Version,
        &Version {
            major: 0,
            minor: 0,
            caps: Capabilities::ours(),
        }
        .encode(),
    );
    send(
        &mut s,
        2,
        Command::DmaMap,
        &DmaMap {
            flags: 3,
            offset: 0,
            iova: 0x1000,
            size: 0x1000,
        }
        .encode(),
    );
    s
}

#[test]
fn dma_message_without_reply_times_out() {
    let (dev, srv) = start_with(ServerOptions {
        dma_timeout: Duration::from_millis(200),
        ..Default::default()
    });
    let _s = silent_client(srv.path());
    let mut b = [0u8; 4];
    let t = Instant::now();
    assert!(matches!(
        dev.client().dma.read(0x1000, &mut b),
        Err(DmaError::Timeout { addr: 0x1000, .. })
    ));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn client_hangup_fails_a_waiting_dma_message_at_once() {
    let (dev, srv) = start();
    let s = silent_client(srv.path());
    let dma = dev.client().dma;
    let waiter = std::thread::spawn(move || {
        let mut b = [0u8; 4];
        let t = Instant::now();
        (dma.read(0x1000, &mut b), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(s);
    let (r, took) = waiter.join().unwrap();
    assert_eq!(r, Err(DmaError::Disconnected { addr: 0x1000 }));
    assert!(took < Duration::from_secs(5));
}

#[test]
fn region_read_is_answered_while_a_device_thread_waits_for_dma() {
    // The deadlock trap: QEMU waits on a register read while the device waits on DMA_READ.
    // Here the "QEMU" side is a raw socket that asks REGION_READ first and only then serves
    // the pending DMA_READ; the server must answer the register read meanwhile.
    let (dev, srv) = start();
    let mut s = silent_client(srv.path());
    let dma = dev.client().dma;
    let waiter = std::thread::spawn(move || {
        let mut b = [0u8; 4];
        dma.read(0x1000, &mut b).map(|_| b)
    });
    let h = Header {
        msg_id: 9,
        command: Command::RegionRead as u16,
        msg_size: (HEADER_SIZE + 16) as u32,
        flags: 0,
        error: 0,
    };
    s.write_all(&h.encode()).unwrap();
    s.write_all(&RegionAccess::encode(0, pci_region::BAR0, 4, &[])).unwrap();
    // Read messages until the REGION_READ reply shows up; remember the DMA_READ request.
    let mut dma_req = None;
    loop {
        let mut rh = [0u8; HEADER_SIZE];
        s.read_exact(&mut rh).unwrap();
        let rh = Header::parse(&rh);
        let mut p = vec![0u8; rh.msg_size as usize - HEADER_SIZE];
        s.read_exact(&mut p).unwrap();
        if rh.is_reply() && rh.msg_id == 9 {
            assert!(!rh.is_error());
            break;
        }
        assert_eq!(rh.command, Command::DmaRead as u16);
        dma_req = Some((rh, p));
    }
    let (rh, p) = match dma_req {
        Some(r) => r,
        None => {
            let mut b = [0u8; HEADER_SIZE];
            s.read_exact(&mut b).unwrap();
            let rh = Header::parse(&b);
            let mut p = vec![0u8; rh.msg_size as usize - HEADER_SIZE];
            s.read_exact(&mut p).unwrap();
            (rh, p)
        }
    };
    // Answer the DMA_READ (spec layout, as QEMU 11.1: data at payload offset 16).
    let reply = vfio_user::wire::DmaRwReply::encode_read(0x1000, &[1, 2, 3, 4], Default::default());
    let h = Header {
        msg_id: rh.msg_id,
        command: rh.command,
        msg_size: (HEADER_SIZE + reply.len()) as u32,
        flags: 1,
        error: 0,
    };
    assert_eq!(p.len(), 16);
    s.write_all(&h.encode()).unwrap();
    s.write_all(&reply).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok([1, 2, 3, 4]));
}
