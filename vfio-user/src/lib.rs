//! vfio-user protocol layer (see issue 2).
