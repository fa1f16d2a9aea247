//! IOVA allocation: a bump allocator over a fixed window, page-aligned, leaving an unmapped
//! guard page after every allocation (so a segment running past a buffer's end faults at a
//! predictable address) and never handing an IOVA out twice while the bench is open (so a stale
//! mapping can never satisfy a later command by accident).

/// Start of the IOVA window: 1 MiB (below it: nothing, so small IOVAs are known-unmapped).
pub const IOVA_START: u64 = 0x10_0000;
/// End of the IOVA window (exclusive): 2 GiB, below the 32-bit PCI hole and the MSI window,
/// and within the 28-bit-masked reach of QEMU's edu device for the first 255 MiB.
pub const IOVA_END: u64 = 0x8000_0000;
pub const PAGE: u64 = 4096;

#[derive(Debug, Clone)]
pub struct IovaAllocator {
    next: u64,
    end: u64,
}

impl Default for IovaAllocator {
    fn default() -> Self {
        Self {
            next: IOVA_START,
            end: IOVA_END,
        }
    }
}

impl IovaAllocator {
    /// Allocates `len` bytes (rounded up to pages) aligned to `align` (a power of two,
    /// at least a page). Returns None when the window is exhausted.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        let align = align.max(PAGE).next_power_of_two();
        let len = len.max(1).div_ceil(PAGE).checked_mul(PAGE)?;
        let start = self.next.checked_add(align - 1)? & !(align - 1);
        let end = start.checked_add(len)?;
        if end > self.end {
            return None;
        }
        self.next = end + PAGE; // guard page
        Some(start)
    }

    /// An IOVA that is guaranteed never to be mapped while the bench is open (below the window).
    pub fn never_mapped(&self) -> u64 {
        IOVA_START / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_disjoint_and_guarded() {
        let mut a = IovaAllocator::default();
        let x = a.alloc(100, PAGE).unwrap();
        let y = a.alloc(PAGE, PAGE).unwrap();
        assert_eq!(x, IOVA_START);
        assert_eq!(y, x + 2 * PAGE, "one guard page between");
        let z = a.alloc(1, 2 << 20).unwrap();
        assert_eq!(z % (2 << 20), 0);
        assert!(a.never_mapped() < IOVA_START);
    }

    #[test]
    fn exhaustion_is_none_not_wraparound() {
        let mut a = IovaAllocator::default();
        assert!(a.alloc(IOVA_END, PAGE).is_none());
        assert!(a.alloc(u64::MAX - 10, PAGE).is_none());
    }
}
