//! Stage 5, results: what a run proved. The guest suite's TAP, `cargo test`'s lines in the same
//! form, the cross-check of the device's traces against the driver's report lines, JUnit XML;
//! and the `test` command, which runs the whole pipeline over kernels and recipes.
//!
//! - `tap`: TAP out of a serial log; `cargo_test`: `cargo test` lines as results.
//! - `crosscheck`: device traces against `# phyr-cmd` lines; the `crosscheck` command.
//! - `guest_phys`: which guest-physical address an IOVA access touched (the kernel path's oracle).
//! - `junit`: JUnit XML for CI.
//! - `test_cmd`: the `test` command.

pub mod cargo_test;
pub mod crosscheck;
pub mod guest_phys;
pub mod junit;
pub mod tap;
pub mod test_cmd;
