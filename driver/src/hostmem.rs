//! Host memory handed to the device: an anonymous buffer mapped at an IOVA, unmapped from
//! the IOMMU when dropped (before the memory itself is released).

use std::rc::Rc;

use crate::vfio::{Container, DmaBuffer, DmaPerm};

pub struct HostMem {
    pub buf: DmaBuffer,
    pub iova: u64,
    container: Rc<Container>,
}

impl HostMem {
    pub(crate) fn new(buf: DmaBuffer, iova: u64, perm: DmaPerm, container: Rc<Container>) -> Self {
        let _ = perm;
        Self { buf, iova, container }
    }

    pub fn len(&self) -> u64 {
        self.buf.len()
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        if let Err(e) = self.container.unmap_dma(self.iova, self.buf.len()) {
            eprintln!("phyr: warning: {e}");
        }
    }
}
