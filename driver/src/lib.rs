//! The parts of the guest driver `phyr` that need no device: parsers of user input (piece
//! specs, `phyr submit` files), built as a library so host tests and fuzz targets use them.

pub mod size;
pub mod submit_file;
