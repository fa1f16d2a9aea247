//! Stage 2, the guest kernel: which one `--kernel` names, fetched from Debian or found in a
//! build tree or file, checked for what phyr needs, with its modules in load order and the
//! out-of-tree modules built for it.
//!
//! - `spec`: what `--kernel` names; `pins`: which Debian release each channel means here.
//! - `debian`: Debian's kernel and header packages in the cache; `tree`: a kernel build tree.
//! - `guest`: [`guest::GuestKernel`], resolved from a spec (image, release, config, modules).
//! - `kconfig`: a `.config`'s values and phyr's required options; `ikconfig`: the config
//!   embedded in a bzImage.
//! - `kmod`: module files, their dependencies from `.modinfo`, load order.
//! - `modbuild`: out-of-tree modules built for the kernel, with `toolchain`: the compiler its
//!   config names.

pub mod debian;
pub mod guest;
pub mod ikconfig;
pub mod kconfig;
pub mod kmod;
pub mod modbuild;
pub mod pins;
pub mod spec;
pub mod toolchain;
pub mod tree;
