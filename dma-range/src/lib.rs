//! The phyr ABI (see docs/ABI.md).
