//! Stage 5, results: what a run proved. The guest suite's TAP, `cargo test`'s lines in the same
//! form, the cross-check of the device's traces against the driver's report lines, JUnit XML;
//! and the `test` command, which runs the whole pipeline over kernels and recipes.
//!
//! - `tap`: TAP out of a serial log; `cargo_test`: `cargo test` lines as results.
//! - `crosscheck`: device traces against `# phyr-cmd` lines; the `crosscheck` command;
//!   `expected`: what the booted recipe says a run must show.
//! - `guest_phys`: which guest-physical address an IOVA access touched; `kernel_oracle`: the
//!   kernel path's checks of every access against what the kernel mapped (both used by
//!   `crosscheck`).
//! - `junit`: JUnit XML for CI.
//! - `soak_cmd`: the `soak` command (two guests, one device, faults, the cross-check).
//! - `suite_session`: one session of the `test` command (a suite under one recipe on one
//!   kernel, with the harness's own tests); `test_cmd`: the `test` command.

pub mod cargo_test;
pub mod crosscheck;
pub mod expected;
pub mod guest_phys;
pub mod junit;
pub mod kernel_oracle;
pub mod soak_cmd;
pub mod suite_session;
pub mod tap;
pub mod test_cmd;
