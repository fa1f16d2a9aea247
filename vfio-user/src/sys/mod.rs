//! The only modules with `unsafe`: mmap-ed memory, fd creation, and SCM_RIGHTS socket I/O.

pub(crate) mod fd;
pub(crate) mod mem;
pub(crate) mod scm;
