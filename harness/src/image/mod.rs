//! Stage 3, the guest image: the initramfs init boots from.
//!
//! - `initramfs`: busybox, the modules init loads, the static `phyr` driver, `/etc/phyr.conf`
//!   and `/init` (`harness/guest/init.sh`).
//! - `cpio`: the `newc` archive writer.
//! - `share`: `--share DIR` over virtio-9p: the modules and mount tag the image needs, the
//!   kernel options it checks, the QEMU device it adds.

pub mod cpio;
pub mod initramfs;
pub mod share;
