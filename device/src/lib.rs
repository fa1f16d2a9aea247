//! The phyr endpoint (see issue 3).
