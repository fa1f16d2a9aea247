//! One handler per command. Each validates its message completely (through `wire`) and
//! against the device's own limits before the device sees anything.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crate::channel::Message;
use crate::device::ClientHandles;
use crate::dma::DmaSpace;
use crate::errno::Errno;
use crate::info::{DeviceInfo, IrqInfo, MappingInfo, REGION_FLAG_MMAP, REGION_FLAG_READ, REGION_FLAG_WRITE};
use crate::irq::Irqs;
use crate::remote::{ChannelDma, RemoteDma};
use crate::wire::{
    Capabilities, Command, DeviceInfoMsg, DmaMap, DmaUnmap, IrqInfoMsg, RegionAccess, RegionInfoMsg, SetIrqs,
    SparseArea, Version, WireError, WriteMulti, DEVICE_INFO_SIZE, IRQ_INFO_SIZE, MAX_DATA_XFER,
};

use super::state::{Connection, Negotiated, Outcome};

/// Regions or IRQ indices a device may declare (QEMU refuses more than 100 / 50).
const MAX_REGIONS: u32 = 100;
const MAX_IRQS: u32 = 50;

macro_rules! tryw {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return wire_error(e),
        }
    };
}

fn wire_error(e: WireError) -> Outcome {
    tracing::debug!("refusing message: {e}");
    Outcome::Error(e.errno())
}

fn no_fds(msg: &Message) -> Result<(), Errno> {
    if msg.fds.is_empty() {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

pub(super) fn handle(conn: &mut Connection, msg: Message) -> Outcome {
    let Some(cmd) = Command::from_u16(msg.header.command) else {
        tracing::debug!(command = msg.header.command, "unknown command");
        return Outcome::Error(Errno::ENOTSUP);
    };
    if cmd == Command::Version {
        return version(conn, &msg);
    }
    let Some(session) = conn.session.as_ref() else {
        tracing::debug!(command = cmd.name(), "command before VERSION");
        return Outcome::Error(Errno::EINVAL);
    };
    let result = match cmd {
        Command::DmaMap => dma_map(conn, session, msg),
        Command::DmaUnmap => no_fds(&msg).map(|_| dma_unmap(conn, session, &msg)),
        Command::DeviceGetInfo => no_fds(&msg).map(|_| device_info(session, &msg)),
        Command::DeviceGetRegionInfo => no_fds(&msg).map(|_| region_info(conn, session, &msg)),
        Command::DeviceGetIrqInfo => no_fds(&msg).map(|_| irq_info(conn, session, &msg)),
        Command::DeviceSetIrqs => Ok(set_irqs(session, msg)),
        Command::RegionRead => no_fds(&msg).map(|_| region_read(conn, session, &msg)),
        Command::RegionWrite => no_fds(&msg).map(|_| region_write(conn, session, &msg)),
        Command::RegionWriteMulti => no_fds(&msg).map(|_| write_multi(conn, session, &msg)),
        Command::DeviceReset => no_fds(&msg).map(|_| {
            if !msg.payload.is_empty() {
                return Outcome::Error(Errno::EINVAL);
            }
            conn.device.reset();
            Outcome::empty()
        }),
        Command::Version => unreachable_version(),
        // Server-to-client commands, dirty tracking, migration, DEVICE_FEATURE, IO fds:
        // not offered. The payload was read whole, so framing is intact.
        Command::DmaRead
        | Command::DmaWrite
        | Command::DirtyPages
        | Command::DeviceFeature
        | Command::MigDataRead
        | Command::MigDataWrite
        | Command::DeviceGetRegionIoFds => Err(Errno::ENOTSUP),
    };
    result.unwrap_or_else(Outcome::Error)
}

fn unreachable_version() -> Result<Outcome, Errno> {
    // VERSION is handled before the session check; keep the match exhaustive without panics.
    Err(Errno::EINVAL)
}

fn version(conn: &mut Connection, msg: &Message) -> Outcome {
    if conn.session.is_some() {
        tracing::debug!("second VERSION");
        return Outcome::Error(Errno::EINVAL);
    }
    if !msg.fds.is_empty() {
        return Outcome::Error(Errno::EINVAL);
    }
    let peer = tryw!(Version::parse(&msg.payload));
    let ours = Capabilities::ours();
    let caps = ours.negotiate(&peer.caps);
    let info = conn.device.info();
    if info.num_regions > MAX_REGIONS || info.num_irqs > MAX_IRQS {
        tracing::error!(?info, "device declares more regions/IRQs than a client accepts");
        return Outcome::Error(Errno::EINVAL);
    }
    let remote: Arc<dyn RemoteDma> = Arc::new(ChannelDma {
        chan: Arc::downgrade(&conn.chan),
        layout: conn.opts.dma_layout,
        max_xfer: caps.max_data_xfer_size.min(MAX_DATA_XFER),
    });
    let dma = Arc::new(DmaSpace::build(
        caps.max_dma_maps as usize,
        Some(remote),
        conn.opts.dma_timeout,
    ));
    dma.set_request_thread(std::thread::current().id());
    let irq_infos: Vec<_> = (0..info.num_irqs)
        .map(|i| conn.device.irq_info(i).unwrap_or(IrqInfo { count: 0, flags: 0 }))
        .collect();
    let irqs = Arc::new(Irqs::new(&irq_infos));
    conn.device.connected(ClientHandles {
        dma: Arc::clone(&dma),
        irqs: Arc::clone(&irqs),
    });
    let regions = (0..info.num_regions)
        .map(|i| {
            conn.device
                .region_info(i)
                .map_or((0, 0), |r| (r.size, r.flags & (REGION_FLAG_READ | REGION_FLAG_WRITE)))
        })
        .collect();
    conn.session = Some(Negotiated {
        caps,
        info,
        dma,
        irqs,
        regions,
    });
    Outcome::payload(
        Version {
            major: 0,
            minor: 0,
            caps: ours,
        }
        .encode(),
    )
}

fn dma_map(conn: &Connection, s: &Negotiated, msg: Message) -> Result<Outcome, Errno> {
    let m = match DmaMap::parse(&msg.payload) {
        Ok(m) => m,
        Err(e) => return Ok(wire_error(e)),
    };
    let mut fds = msg.fds;
    if fds.len() > 1 {
        return Err(Errno::EINVAL);
    }
    let fd: Option<OwnedFd> = fds.pop();
    let info = MappingInfo {
        iova: m.iova,
        size: m.size,
        readable: m.flags & crate::wire::dma_flags::READ != 0,
        writable: m.flags & crate::wire::dma_flags::WRITE != 0,
        fd_offset: fd.as_ref().map(|_| m.offset),
    };
    s.dma.add_mapping(info, fd.as_ref().map(|f| f.as_fd())).map_err(|e| {
        tracing::debug!("DMA_MAP refused: {e}");
        e.errno()
    })?;
    conn.device.dma_mapped(&info);
    Ok(Outcome::empty())
}

fn dma_unmap(conn: &Connection, s: &Negotiated, msg: &Message) -> Outcome {
    let u = tryw!(DmaUnmap::parse(&msg.payload));
    let removed = if u.all() {
        s.dma.remove_all()
    } else {
        match s.dma.remove_range(u.iova, u.size) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("DMA_UNMAP refused: {e}");
                return Outcome::Error(e.errno());
            }
        }
    };
    for m in &removed {
        conn.device.dma_unmapped(m.iova, m.size);
    }
    Outcome::payload(u.encode())
}

fn device_info(s: &Negotiated, msg: &Message) -> Outcome {
    tryw!(DeviceInfoMsg::parse(&msg.payload));
    let DeviceInfo {
        flags,
        num_regions,
        num_irqs,
    } = s.info;
    Outcome::payload(
        DeviceInfoMsg {
            argsz: DEVICE_INFO_SIZE as u32,
            flags,
            num_regions,
            num_irqs,
        }
        .encode(),
    )
}

fn region_info(conn: &Connection, s: &Negotiated, msg: &Message) -> Outcome {
    let req = tryw!(RegionInfoMsg::parse_request(&msg.payload));
    if req.index >= s.info.num_regions {
        return Outcome::Error(Errno::EINVAL);
    }
    let Some(info) = conn.device.region_info(req.index) else {
        return Outcome::Error(Errno::EINVAL);
    };
    let mut flags = info.flags & (REGION_FLAG_READ | REGION_FLAG_WRITE);
    let mut reply = RegionInfoMsg {
        argsz: 0,
        flags: 0,
        index: req.index,
        cap_offset: 0,
        size: info.size,
        offset: 0,
        sparse: Vec::new(),
    };
    let mut fds = Vec::new();
    if let Some(mm) = &info.mmap {
        flags |= REGION_FLAG_MMAP;
        reply.offset = mm.file_offset;
        for &(offset, size) in &mm.sparse_areas {
            let inside = offset.checked_add(size).is_some_and(|end| end <= info.size);
            if inside && size > 0 {
                reply.sparse.push(SparseArea { offset, size });
            } else {
                tracing::error!(
                    index = req.index,
                    offset,
                    size,
                    "device sparse area outside its region; dropped"
                );
            }
        }
        if !mm.sparse_areas.is_empty() && reply.sparse.is_empty() {
            flags &= !REGION_FLAG_MMAP;
        } else if reply.reply_is_complete(req.argsz) {
            // The fd travels only with a complete reply (the one that carries the areas it
            // is for), as the reference server does: libvfio-user's client takes no fds on
            // its first, short query and fails with EFAULT when one arrives; QEMU closes
            // such an fd and keeps the one of its second, complete query.
            fds.push(Arc::clone(&mm.fd));
        }
    }
    reply.flags = flags;
    Outcome::Reply {
        payload: reply.encode_reply(req.argsz),
        fds,
    }
}

fn irq_info(conn: &Connection, s: &Negotiated, msg: &Message) -> Outcome {
    let req = tryw!(IrqInfoMsg::parse(&msg.payload));
    if req.index >= s.info.num_irqs {
        return Outcome::Error(Errno::EINVAL);
    }
    let info = conn
        .device
        .irq_info(req.index)
        .unwrap_or(IrqInfo { count: 0, flags: 0 });
    Outcome::payload(
        IrqInfoMsg {
            argsz: IRQ_INFO_SIZE as u32,
            flags: info.flags,
            index: req.index,
            count: info.count,
        }
        .encode(),
    )
}

fn set_irqs(s: &Negotiated, msg: Message) -> Outcome {
    if msg.fds.len() > s.caps.max_msg_fds as usize {
        tracing::debug!(
            fds = msg.fds.len(),
            max = s.caps.max_msg_fds,
            "SET_IRQS with too many fds"
        );
        return Outcome::Error(Errno::EINVAL);
    }
    let req = tryw!(SetIrqs::parse(&msg.payload, msg.fds.len()));
    if req.index >= s.info.num_irqs {
        return Outcome::Error(Errno::EINVAL);
    }
    match s.irqs.apply(&req, msg.fds) {
        Ok(()) => Outcome::empty(),
        Err(e) => Outcome::Error(e),
    }
}

/// Checks a region access against the device's description of the region (as read at
/// VERSION).
fn check_access(s: &Negotiated, region: u32, offset: u64, count: u32, write: bool) -> Result<(), Errno> {
    let &(size, flags) = s.regions.get(region as usize).ok_or(Errno::EINVAL)?;
    let need = if write { REGION_FLAG_WRITE } else { REGION_FLAG_READ };
    if flags & need == 0 {
        return Err(Errno::EINVAL);
    }
    let end = offset.checked_add(count as u64).ok_or(Errno::EINVAL)?;
    if end > size {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn region_read(conn: &Connection, s: &Negotiated, msg: &Message) -> Outcome {
    let a = tryw!(RegionAccess::parse_read(&msg.payload, MAX_DATA_XFER));
    if let Err(e) = check_access(s, a.region, a.offset, a.count, false) {
        return Outcome::Error(e);
    }
    let reply = RegionAccess::encode_read_reply(a.offset, a.region, a.count, |data| {
        conn.device.region_read(a.region, a.offset, data)
    });
    match reply {
        Ok(payload) => Outcome::payload(payload),
        Err(e) => Outcome::Error(e),
    }
}

fn region_write(conn: &Connection, s: &Negotiated, msg: &Message) -> Outcome {
    let a = tryw!(RegionAccess::parse_write(&msg.payload, MAX_DATA_XFER));
    if let Err(e) = check_access(s, a.region, a.offset, a.count, true) {
        return Outcome::Error(e);
    }
    if let Err(e) = conn.device.region_write(a.region, a.offset, &a.data) {
        return Outcome::Error(e);
    }
    Outcome::payload(RegionAccess::encode(a.offset, a.region, a.count, &[]))
}

fn write_multi(conn: &Connection, s: &Negotiated, msg: &Message) -> Outcome {
    let m = tryw!(WriteMulti::parse(&msg.payload));
    for w in &m.writes {
        if let Err(e) = check_access(s, w.region, w.offset, w.count, true) {
            return Outcome::Error(e);
        }
    }
    for w in &m.writes {
        if let Err(e) = conn.device.region_write(w.region, w.offset, w.bytes()) {
            return Outcome::Error(e);
        }
    }
    Outcome::empty()
}
