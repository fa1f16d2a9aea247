//! BAR0 register map. Every register is little-endian; 32-bit registers take 32-bit
//! accesses, 64-bit registers take one 64-bit or two 32-bit accesses (low half first).
//! docs/ABI.md is the human version of this file.

/// Size of BAR0 (registers, doorbells, MSI-X table and PBA).
pub const BAR0_SIZE: u64 = 0x4000;

/// `ID` (RO u32): "PHYR" in ASCII, little-endian.
pub const REG_ID: u64 = 0x000;
pub const PHYR_ID: u32 = u32::from_le_bytes(*b"PHYR");
/// `VERSION` (RO u32): ABI major << 16 | minor.
pub const REG_VERSION: u64 = 0x004;
/// 1.1: LIST_OVERLAP, unused list heads enforced, GUEST_ERRORS.
pub const ABI_VERSION: u32 = (1 << 16) | 1;
/// `NUM_QUEUES` (RO u32): submission/completion queue pairs.
pub const REG_NUM_QUEUES: u64 = 0x008;
/// `MAX_QUEUE_ENTRIES` (RO u32): largest SQ_SIZE / CQ_SIZE accepted.
pub const REG_MAX_QUEUE_ENTRIES: u64 = 0x00C;
/// `ENDPOINT_ID` (RO u32): index of this endpoint in the fabric.
pub const REG_ENDPOINT_ID: u64 = 0x010;
/// `SWITCH_ID` (RO u32): index of the virtual switch this endpoint sits behind.
pub const REG_SWITCH_ID: u64 = 0x014;
/// `BAR2_SIZE` (RO u64): size of the peer-memory BAR.
pub const REG_BAR2_SIZE: u64 = 0x018;
/// `MAX_LIST_ENTRIES` (RO u32): most data entries one list may hold, chained blocks included.
pub const REG_MAX_LIST_ENTRIES: u64 = 0x020;
/// `MAX_CHAIN` (RO u32): most CHAIN entries one list may follow.
pub const REG_MAX_CHAIN: u64 = 0x024;
/// `CTRL` (RW u32): device control, see `CTRL_*`.
pub const REG_CTRL: u64 = 0x028;
/// `STATUS` (RO u32): device status, see `STATUS_*`.
pub const REG_STATUS: u64 = 0x02C;
/// `COMPLETED` (RO u64): commands completed since reset.
pub const REG_COMPLETED: u64 = 0x030;
/// `FAILED` (RO u64): commands completed with a status other than SUCCESS/COMPARE_MISMATCH.
pub const REG_FAILED: u64 = 0x038;
/// `SCRATCH` (RW u32): no effect; for the driver's sanity checks.
pub const REG_SCRATCH: u64 = 0x040;
/// `IRQ_TEST` (WO u32): raises the MSI-X vector written.
pub const REG_IRQ_TEST: u64 = 0x044;
/// `GUEST_ERRORS` (RO u32): register accesses ignored since the endpoint was created (bad
/// offset, width, value or state; saturates at u32::MAX). A reset does not clear it.
pub const REG_GUEST_ERRORS: u64 = 0x048;

/// `CTRL.ENABLE`: the device processes queues while set.
pub const CTRL_ENABLE: u32 = 1 << 0;
/// `CTRL.RESET`: writing 1 resets the device (all queues disabled, counters cleared,
/// commands in flight completed with ABORTED_RESET where their CQ is still reachable). Reads 0.
pub const CTRL_RESET: u32 = 1 << 1;

/// `STATUS.READY`: enabled and accepting commands.
pub const STATUS_READY: u32 = 1 << 0;

/// First queue register block; queue `q` is at `QUEUE_BASE + q * QUEUE_STRIDE`.
pub const QUEUE_BASE: u64 = 0x100;
pub const QUEUE_STRIDE: u64 = 0x40;
/// `SQ_BASE` (RW u64): IOVA of the submission ring (64-byte aligned).
pub const Q_SQ_BASE: u64 = 0x00;
/// `CQ_BASE` (RW u64): IOVA of the completion ring (32-byte aligned).
pub const Q_CQ_BASE: u64 = 0x08;
/// `SQ_SIZE` (RW u32): entries in the submission ring (power of two, 2..=MAX_QUEUE_ENTRIES).
pub const Q_SQ_SIZE: u64 = 0x10;
/// `CQ_SIZE` (RW u32): entries in the completion ring (power of two, 2..=MAX_QUEUE_ENTRIES).
pub const Q_CQ_SIZE: u64 = 0x14;
/// `Q_CTRL` (RW u32): see `QCTRL_*`. Base/size registers are read-only while ENABLE is set.
pub const Q_CTRL: u64 = 0x18;
/// `Q_STATUS` (RO u32): see `QSTATUS_*`; bits 31:16 hold a `Status` code when ERROR is set.
pub const Q_STATUS: u64 = 0x1C;
/// `SHADOW_BASE` (RW u64): IOVA of the 8-byte shadow doorbell area used in POLL mode:
/// u32 SQ tail at +0 (written by the driver), u32 CQ head at +4 (written by the driver).
pub const Q_SHADOW_BASE: u64 = 0x20;
/// `MSIX_VECTOR` (RW u32): MSI-X vector raised when this queue posts a completion and IRQ is set.
pub const Q_MSIX_VECTOR: u64 = 0x28;
/// `SQ_HEAD` (RO u32): next submission entry the device will consume.
pub const Q_SQ_HEAD: u64 = 0x2C;
/// `CQ_TAIL` (RO u32): next completion slot the device will write.
pub const Q_CQ_TAIL: u64 = 0x30;

/// `Q_CTRL.ENABLE`: start the queue (validates base/size; on failure Q_STATUS.ERROR is set).
/// Clearing it stops the queue; a command in flight completes with ABORTED_QUEUE_DISABLED.
pub const QCTRL_ENABLE: u32 = 1 << 0;
/// `Q_CTRL.IRQ`: raise MSIX_VECTOR after posting completions.
pub const QCTRL_IRQ: u32 = 1 << 1;
/// `Q_CTRL.POLL`: the device polls the shadow SQ tail instead of waiting for doorbells.
pub const QCTRL_POLL: u32 = 1 << 2;

pub const QSTATUS_ENABLED: u32 = 1 << 0;
pub const QSTATUS_ERROR: u32 = 1 << 1;

/// Doorbells: queue `q`'s SQ tail at `DOORBELL_BASE + q * DOORBELL_STRIDE`,
/// its CQ head 4 bytes further (both WO u32).
pub const DOORBELL_BASE: u64 = 0x1000;
pub const DOORBELL_STRIDE: u64 = 8;
pub const DB_SQ_TAIL: u64 = 0;
pub const DB_CQ_HEAD: u64 = 4;

/// MSI-X table and PBA, inside BAR0 (emulated by the VMM for the guest).
pub const MSIX_TABLE_OFFSET: u64 = 0x2000;
pub const MSIX_PBA_OFFSET: u64 = 0x3000;
/// MSI-X vectors the endpoint offers.
pub const MSIX_VECTORS: u16 = 8;

/// BAR index of the registers and of the peer memory.
pub const BAR_REGS: u8 = 0;
pub const BAR_PEER_MEM: u8 = 2;

/// Defaults of the reference device (the registers tell the real values).
pub const DEFAULT_NUM_QUEUES: u32 = 4;
pub const DEFAULT_MAX_QUEUE_ENTRIES: u32 = 4096;
pub const DEFAULT_MAX_LIST_ENTRIES: u32 = 4096;
pub const DEFAULT_MAX_CHAIN: u32 = 64;
pub const DEFAULT_BAR2_SIZE: u64 = 64 << 20;

/// PCI identity: an unregistered test-only ID pair, like QEMU's edu device (1234:11e8).
pub const PCI_VENDOR_ID: u16 = 0x1234;
pub const PCI_DEVICE_ID: u16 = 0x7068;
/// Class 0x12 (processing accelerator), subclass 0, prog-if 0.
pub const PCI_CLASS_CODE: u32 = 0x12_0000;
pub const PCI_REVISION: u8 = 1;

/// Offset of queue `q`'s register `reg`.
pub const fn queue_reg(q: u32, reg: u64) -> u64 {
    QUEUE_BASE + q as u64 * QUEUE_STRIDE + reg
}

/// Offset of queue `q`'s doorbell `which` (`DB_SQ_TAIL` or `DB_CQ_HEAD`).
pub const fn doorbell(q: u32, which: u64) -> u64 {
    DOORBELL_BASE + q as u64 * DOORBELL_STRIDE + which
}

// The register blocks never overlap: checked at compile time.
const _: () = {
    assert!(queue_reg(DEFAULT_NUM_QUEUES, 0) <= DOORBELL_BASE);
    assert!(doorbell(DEFAULT_NUM_QUEUES, 0) <= MSIX_TABLE_OFFSET);
    assert!(MSIX_TABLE_OFFSET + 16 * MSIX_VECTORS as u64 <= MSIX_PBA_OFFSET);
    assert!(MSIX_PBA_OFFSET + 8 <= BAR0_SIZE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_reads_phyr() {
        assert_eq!(PHYR_ID.to_le_bytes(), *b"PHYR");
    }
}
