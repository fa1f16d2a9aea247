//! The workspace's one CRC32C (Castagnoli, as iSCSI and ext4; check value
//! `crc32c(b"123456789") = 0xe3069283`) and the byte-moving kernels built on it.
//!
//! - [`crc32c`]: CRC32C over slices, appending and combining. What the driver, the trace
//!   format and the harness use.
//! - [`mem`]: copy, copy with a CRC32C of the bytes moved (one pass), and CRC32C over raw
//!   memory spans that another party may rewrite meanwhile (guest-shared memory). What the
//!   device's `RawPiece` uses.
//! - [`portable`]: the reference: a table-driven CRC32C that runs anywhere. Every accelerated
//!   path falls back to it and is tested against it.
//!
//! The accelerated paths (x86-64: SSE4.2 `crc32`, and AVX2 + VPCLMULQDQ folding, detected at run
//! time) are private to this crate, behind those three modules; see `kernels/README.md` for
//! why they exist and what they measure.

pub mod crc32c;
pub mod mem;
mod opaque;
mod poly;
pub mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;
