//! The engine's memory and interrupt traits over what a vfio-user client handed the device
//! (`vfio_user::ClientHandles`): `DmaSpace` chunks become pieces (zero-copy slices of the
//! client's mmap-ed memory, or message spans), `DmaError`s become faults with the same
//! address, MSI-X goes to the client's eventfds.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use phyr_trace::Target;
use vfio_user::{pci_irq, Access, DmaChunk, DmaError, DmaSpace, Irqs};

use crate::mem::{Dir, IovaMemory, IrqSink, MemFault, MemFaultKind, Piece, PieceFn};
use crate::raw::RawPiece;

/// Guest memory by IOVA: the client's DMA mappings.
pub struct ClientMemory {
    dma: Arc<DmaSpace>,
    /// Resolve trace targets (mapping index and offset); only when tracing.
    targets: bool,
    /// Generation of the mapping table for target resolution: a process-wide unique number,
    /// replaced on every map/unmap. Each thread caches the table of the generation it last saw
    /// ([`MAPS`]), so resolving a target costs one atomic load, no lock or refcount.
    generation: AtomicU64,
    /// Threads inside a DMA message call.
    in_message: AtomicUsize,
}

/// Counts a thread inside a DMA message call.
struct InMessage<'a>(&'a AtomicUsize);

impl<'a> InMessage<'a> {
    fn enter(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        InMessage(c)
    }
}

impl Drop for InMessage<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for ClientMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMemory")
            .field("dma", &self.dma)
            .field("targets", &self.targets)
            .finish()
    }
}

impl ClientMemory {
    pub fn new(dma: Arc<DmaSpace>, targets: bool) -> Self {
        Self {
            dma,
            targets,
            generation: AtomicU64::new(next_generation()),
            in_message: AtomicUsize::new(0),
        }
    }

    /// The mapping table changed (DMA_MAP / DMA_UNMAP): threads refresh their cached copy at
    /// their next target resolution.
    pub fn invalidate(&self) {
        self.generation.store(next_generation(), Ordering::Release);
    }

    fn kind(e: &DmaError) -> MemFaultKind {
        match e {
            DmaError::NotMapped { .. } | DmaError::TooLarge { .. } => MemFaultKind::NotMapped,
            DmaError::ReadOnly { .. } | DmaError::WriteOnly { .. } => MemFaultKind::Permission,
            DmaError::Disconnected { .. } => MemFaultKind::Disconnected,
            _ => MemFaultKind::Message,
        }
    }

    fn fault(e: &DmaError) -> MemFault {
        MemFault::new(Self::kind(e), e.addr())
    }

    /// The trace target of `addr`: index of its mapping (in IOVA order: DmaSpace does not
    /// expose map order) and offset inside.
    fn target(&self, addr: u64) -> Target {
        if !self.targets {
            return Target::None;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let cached = MAPS.try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            if c.0 != generation {
                // Read after the generation: at least as new as it.
                *c = (generation, self.dma.mappings());
            }
            Some(target_in(&c.1, addr))
        });
        match cached {
            Ok(Some(t)) => t,
            // Thread-local storage gone (thread exit) or re-entered: read the table directly.
            _ => target_in(&self.dma.mappings(), addr),
        }
    }
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

thread_local! {
    /// (generation, mapping table) last used by this thread for target resolution.
    static MAPS: RefCell<(u64, Vec<vfio_user::MappingInfo>)> = const { RefCell::new((0, Vec::new())) };
}

/// Index (in IOVA order) and offset of the mapping holding `addr`.
fn target_in(maps: &[vfio_user::MappingInfo], addr: u64) -> Target {
    let i = maps.partition_point(|m| m.iova <= addr);
    match i.checked_sub(1).map(|i| (i, &maps[i])) {
        Some((i, m)) if addr - m.iova < m.size => Target::GuestMemory {
            mapping: i as u32,
            offset: addr - m.iova,
        },
        _ => Target::None,
    }
}

impl IovaMemory for ClientMemory {
    fn access(&self, iova: u64, len: u64, dir: Dir, f: &mut PieceFn<'_>) -> Result<(), MemFault> {
        let access = match dir {
            Dir::Read => Access::Read,
            Dir::Write => Access::Write,
        };
        let mut stopped = None;
        let r = self.dma.with_chunks::<DmaError>(iova, len, access, |off, chunk| {
            let addr = iova.wrapping_add(off);
            let piece = match chunk {
                // The slice borrows the mapping for this callback only (the DmaSpace holds it in
                // use; an unmap waits for it), and so does the piece made from it.
                DmaChunk::Mapped(s) => Piece::Raw(RawPiece::from(s)),
                DmaChunk::Remote { iova, len } => Piece::Message {
                    iova,
                    len: len as usize,
                },
            };
            f(piece, self.target(addr)).map_err(|()| {
                stopped = Some(addr);
                DmaError::NotMapped { addr }
            })
        });
        match (r, stopped) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(addr)) => Err(MemFault::new(MemFaultKind::Stopped, addr)),
            (Err(e), None) => Err(Self::fault(&e)),
        }
    }

    fn message_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), MemFault> {
        let _busy = InMessage::enter(&self.in_message);
        self.dma.read(iova, buf).map_err(|e| Self::fault(&e))
    }

    fn message_write(&self, iova: u64, data: &[u8]) -> Result<(), MemFault> {
        let _busy = InMessage::enter(&self.in_message);
        self.dma.write(iova, data).map_err(|e| Self::fault(&e))
    }

    fn messages_in_flight(&self) -> bool {
        self.in_message.load(Ordering::SeqCst) != 0
    }
}

/// MSI-X through the client's eventfds.
pub struct ClientIrqs(pub Arc<Irqs>);

impl IrqSink for ClientIrqs {
    fn msix(&self, vector: u16) {
        if let Err(e) = self.0.trigger(pci_irq::MSIX, u32::from(vector)) {
            tracing::debug!(vector, "MSI-X trigger failed: {e}");
        }
    }
}
