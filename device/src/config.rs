//! PCI configuration space as data: a 4 KiB register array plus a writable-bits mask.
//!
//! Layout of the endpoint's config space:
//! ```text
//! 0x00 vendor 0x1234, device 0x7068   0x04 command (MEMORY, BUS_MASTER, ... writable) / status (CAP_LIST)
//! 0x08 revision 1, class 0x120000      0x0E header type 0
//! 0x10 BAR0: 32-bit memory, BAR0_SIZE (registers, MSI-X table and PBA)
//! 0x18 BAR2: 64-bit prefetchable memory, low dword (size configurable, power of two)
//! 0x1C BAR2 high dword                 0x2C subsystem vendor/id
//! 0x34 capabilities pointer -> 0x40
//! 0x40 PCI Express capability v2, endpoint, next -> 0x80
//! 0x80 MSI-X capability, MSIX_VECTORS entries, table BAR0+0x2000, PBA BAR0+0x3000
//! 0x100 extended configuration space: empty list (header 0)
//! ```
//! Writes only change the bits the mask allows; BAR sizing (all-ones writes) reads back the
//! size mask as on real hardware. Writes return what they changed ([`ConfigEffect`]) so the
//! caller can re-publish the BAR decode state to the fabric.

use dma_range::regs;

/// Size of the configuration space offered (PCIe extended space included).
pub const CONFIG_SIZE: usize = 4096;

pub const OFF_COMMAND: usize = 0x04;
pub const OFF_BAR0: usize = 0x10;
pub const OFF_BAR2_LO: usize = 0x18;
pub const OFF_BAR2_HI: usize = 0x1C;
pub const OFF_CAP_PTR: usize = 0x34;
pub const OFF_PCIE_CAP: usize = 0x40;
pub const OFF_MSIX_CAP: usize = 0x80;

/// COMMAND.MEMORY: the device decodes its memory BARs.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// COMMAND.BUS_MASTER.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;

const STATUS_CAP_LIST: u16 = 1 << 4;
const CAP_ID_PCIE: u8 = 0x10;
const CAP_ID_MSIX: u8 = 0x11;
/// BAR flag bits: memory, 64-bit, prefetchable.
const BAR_FLAGS_MEM64_PREFETCH: u32 = 0b1100;

/// Which memory BARs decode, and where (bus addresses), as the config writes left them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BarDecode {
    /// COMMAND.MEMORY is set.
    pub memory_enabled: bool,
    pub bar0: u64,
    pub bar2: u64,
}

/// What a config write changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigEffect {
    /// Nothing the device acts on.
    None,
    /// A BAR address or COMMAND.MEMORY changed: the new decode state.
    Decode(BarDecode),
}

/// The endpoint's configuration space.
#[derive(Clone)]
pub struct ConfigSpace {
    bar2_size: u64,
    bytes: Box<[u8; CONFIG_SIZE]>,
    writable: Box<[u8; CONFIG_SIZE]>,
}

impl std::fmt::Debug for ConfigSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSpace").field("decode", &self.decode()).finish()
    }
}

impl ConfigSpace {
    /// A fresh config space for an endpoint whose BAR2 is `bar2_size` bytes (a power of two >= 4 KiB).
    pub fn new(bar2_size: u64) -> Self {
        let mut c = Self {
            bar2_size,
            bytes: Box::new([0; CONFIG_SIZE]),
            writable: Box::new([0; CONFIG_SIZE]),
        };
        c.put16(0x00, regs::PCI_VENDOR_ID);
        c.put16(0x02, regs::PCI_DEVICE_ID);
        c.put16(0x06, STATUS_CAP_LIST);
        c.put32(0x08, (regs::PCI_CLASS_CODE << 8) | u32::from(regs::PCI_REVISION));
        c.bytes[0x0E] = 0; // header type 0, single function
        c.put16(0x2C, regs::PCI_VENDOR_ID);
        c.put16(0x2E, 0x0001);
        c.bytes[OFF_CAP_PTR] = OFF_PCIE_CAP as u8;
        // COMMAND: memory, bus master, parity, SERR, INTx disable.
        c.mask16(
            OFF_COMMAND,
            COMMAND_MEMORY | COMMAND_BUS_MASTER | (1 << 6) | (1 << 8) | (1 << 10),
        );
        c.mask8(0x0C, 0xFF); // cache line size
        c.mask8(0x0D, 0xFF); // latency timer
        c.mask8(0x3C, 0xFF); // interrupt line
                             // BAR0: 32-bit non-prefetchable memory.
        c.mask32(OFF_BAR0, !(regs::BAR0_SIZE as u32 - 1) & !0xF);
        // BAR2: 64-bit prefetchable memory.
        let size_mask = !(bar2_size.max(4096) - 1);
        c.put32(OFF_BAR2_LO, BAR_FLAGS_MEM64_PREFETCH);
        c.mask32(OFF_BAR2_LO, size_mask as u32 & !0xF);
        c.mask32(OFF_BAR2_HI, (size_mask >> 32) as u32);
        // PCI Express capability, version 2, endpoint.
        let p = OFF_PCIE_CAP;
        c.bytes[p] = CAP_ID_PCIE;
        c.bytes[p + 1] = OFF_MSIX_CAP as u8;
        c.put16(p + 0x02, 0x0002); // version 2, device/port type 0 = PCI Express endpoint
        c.put32(p + 0x04, 0x0000_8001); // DevCap: max payload 256 B, role-based error reporting
        c.mask16(p + 0x08, 0x7CFF); // DevCtl: error reporting, payload/read-request sizes, relaxed ordering
        c.put32(p + 0x0C, 0x0000_0043); // LinkCap: 8 GT/s, x4
        c.put16(p + 0x12, 0x0043); // LinkSta: 8 GT/s, x4
        c.mask16(p + 0x10, 0x01C3); // LinkCtl: ASPM, RCB, common clock, extended synch
                                    // MSI-X capability.
        let m = OFF_MSIX_CAP;
        c.bytes[m] = CAP_ID_MSIX;
        c.bytes[m + 1] = 0;
        c.put16(m + 0x02, regs::MSIX_VECTORS - 1);
        c.mask16(m + 0x02, 0xC000); // enable, function mask
        c.put32(m + 0x04, regs::MSIX_TABLE_OFFSET as u32 | u32::from(regs::BAR_REGS));
        c.put32(m + 0x08, regs::MSIX_PBA_OFFSET as u32 | u32::from(regs::BAR_REGS));
        c
    }

    fn put16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn mask8(&mut self, off: usize, m: u8) {
        self.writable[off] = m;
    }
    fn mask16(&mut self, off: usize, m: u16) {
        self.writable[off..off + 2].copy_from_slice(&m.to_le_bytes());
    }
    fn mask32(&mut self, off: usize, m: u32) {
        self.writable[off..off + 4].copy_from_slice(&m.to_le_bytes());
    }

    /// A 16-bit register.
    pub fn read16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    /// A 32-bit register.
    pub fn read32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[off..off + 4]);
        u32::from_le_bytes(b)
    }

    /// Reads `buf.len()` bytes at `offset`. Out-of-range bytes (never sent by the validating
    /// server, but checked anyway) read as all-ones, like an absent register.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset.checked_add(i as u64).and_then(|a| usize::try_from(a).ok());
            *b = match at {
                Some(a) if a < CONFIG_SIZE => self.bytes[a],
                _ => 0xFF,
            };
        }
    }

    /// Writes `data` at `offset`, changing only writable bits. Bytes past the end are ignored.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> ConfigEffect {
        let before = self.decode();
        for (i, v) in data.iter().enumerate() {
            let Some(a) = offset.checked_add(i as u64).and_then(|a| usize::try_from(a).ok()) else {
                break;
            };
            if a >= CONFIG_SIZE {
                break;
            }
            let m = self.writable[a];
            self.bytes[a] = (self.bytes[a] & !m) | (v & m);
        }
        let after = self.decode();
        if after != before {
            ConfigEffect::Decode(after)
        } else {
            ConfigEffect::None
        }
    }

    /// The BAR decode state the registers describe.
    pub fn decode(&self) -> BarDecode {
        let bar0 = u64::from(self.read32(OFF_BAR0) & !0xF);
        let bar2 = (u64::from(self.read32(OFF_BAR2_HI)) << 32) | u64::from(self.read32(OFF_BAR2_LO) & !0xF);
        BarDecode {
            memory_enabled: self.read16(OFF_COMMAND) & COMMAND_MEMORY != 0,
            bar0,
            bar2,
        }
    }

    /// Device reset: back to power-on values (BARs unprogrammed, decoding off).
    pub fn reset(&mut self) {
        *self = Self::new(self.bar2_size);
    }

    #[cfg(test)]
    fn set8(&mut self, off: usize, v: u8) {
        self.bytes[off] = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB64: u64 = 64 << 20;

    fn write32(c: &mut ConfigSpace, off: usize, v: u32) -> ConfigEffect {
        c.write(off as u64, &v.to_le_bytes())
    }

    #[test]
    fn identity_and_capability_chain() {
        let c = ConfigSpace::new(MIB64);
        assert_eq!(c.read16(0), 0x1234);
        assert_eq!(c.read16(2), 0x7068);
        assert_eq!(c.read32(8) >> 8, 0x12_0000);
        assert_eq!(c.read16(6) & STATUS_CAP_LIST, STATUS_CAP_LIST);
        let mut at = c.bytes[OFF_CAP_PTR] as usize;
        let mut ids = vec![];
        while at != 0 {
            ids.push(c.bytes[at]);
            at = c.bytes[at + 1] as usize;
        }
        assert_eq!(ids, vec![CAP_ID_PCIE, CAP_ID_MSIX]);
        assert_eq!(c.read16(OFF_MSIX_CAP + 2) & 0x7FF, 7);
        assert_eq!(c.read32(OFF_MSIX_CAP + 4), 0x2000);
        assert_eq!(c.read32(OFF_MSIX_CAP + 8), 0x3000);
    }

    #[test]
    fn bar_sizing_reads_back_size_masks() {
        let mut c = ConfigSpace::new(MIB64);
        write32(&mut c, OFF_BAR0, 0xFFFF_FFFF);
        assert_eq!(c.read32(OFF_BAR0), 0xFFFF_C000);
        write32(&mut c, OFF_BAR2_LO, 0xFFFF_FFFF);
        write32(&mut c, OFF_BAR2_HI, 0xFFFF_FFFF);
        assert_eq!(c.read32(OFF_BAR2_LO), 0xFC00_000C);
        assert_eq!(c.read32(OFF_BAR2_HI), 0xFFFF_FFFF);
    }

    #[test]
    fn bar_programming_and_memory_enable_are_reported() {
        let mut c = ConfigSpace::new(MIB64);
        assert!(matches!(
            write32(&mut c, OFF_BAR0, 0xFE00_0000),
            ConfigEffect::Decode(_)
        ));
        write32(&mut c, OFF_BAR2_LO, 0x0000_000C);
        write32(&mut c, OFF_BAR2_HI, 0x0000_0080);
        let eff = c.write(OFF_COMMAND as u64, &(COMMAND_MEMORY | COMMAND_BUS_MASTER).to_le_bytes());
        assert_eq!(
            eff,
            ConfigEffect::Decode(BarDecode {
                memory_enabled: true,
                bar0: 0xFE00_0000,
                bar2: 0x80_0000_0000
            })
        );
        // Rewriting the same value changes nothing.
        assert_eq!(write32(&mut c, OFF_BAR0, 0xFE00_0000), ConfigEffect::None);
    }

    #[test]
    fn write_to_read_only_identity_is_ignored() {
        let mut c = ConfigSpace::new(MIB64);
        c.write(0, &[0xAA, 0xBB, 0xCC, 0xDD]);
        assert_eq!(c.read16(0), 0x1234);
        c.write(0x08, &[0xFF; 4]);
        assert_eq!(c.read32(8) >> 8, 0x12_0000);
    }

    #[test]
    fn unaligned_bar_write_keeps_flag_bits() {
        let mut c = ConfigSpace::new(MIB64);
        c.write(OFF_BAR2_LO as u64, &[0xFF]);
        assert_eq!(c.read32(OFF_BAR2_LO) & 0xF, 0xC);
    }

    #[test]
    fn access_past_config_end_reads_ones_and_writes_nothing() {
        let mut c = ConfigSpace::new(MIB64);
        let mut b = [0u8; 4];
        c.read(CONFIG_SIZE as u64 - 2, &mut b);
        assert_eq!(&b[2..], &[0xFF, 0xFF]);
        assert_eq!(c.write(u64::MAX - 1, &[1, 2, 3, 4]), ConfigEffect::None);
        c.read(u64::MAX, &mut b);
        assert_eq!(b, [0xFF; 4]);
    }

    #[test]
    fn reset_unprograms_bars_and_keeps_size() {
        let mut c = ConfigSpace::new(MIB64);
        write32(&mut c, OFF_BAR0, 0xFE00_0000);
        c.set8(OFF_COMMAND, COMMAND_MEMORY as u8);
        c.reset();
        assert_eq!(c.decode(), BarDecode::default());
        write32(&mut c, OFF_BAR2_LO, 0xFFFF_FFFF);
        assert_eq!(c.read32(OFF_BAR2_LO), 0xFC00_000C);
    }
}
