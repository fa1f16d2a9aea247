//! Stage 4, launching a guest: everything provisioned first, then one run directory per boot,
//! the recipe's QEMU options with the harness's own, phyr-device and QEMU started, watched and
//! torn down.
//!
//! - `options`: the options of every command that boots (or provisions for) a guest.
//! - `prepare`: QEMU, busybox, each kernel with its accelerator verdict and built modules,
//!   before anything starts; the `provision` command.
//! - `recipe`: QEMU recipes (`qemu-configs/*.args`); `rundir`: `runs/<timestamp>/`.
//! - `accel`: TCG or KVM, by a cached probe.
//! - `boot`: one boot assembled (QEMU and device command lines, initramfs).
//! - `guest_run`: the device and QEMU processes, from start to teardown, and how they ended.
//! - `run_cmd`: the `run` command.

pub mod accel;
pub mod boot;
pub mod guest_run;
pub mod options;
pub mod prepare;
pub mod recipe;
pub mod run_cmd;
pub mod rundir;
