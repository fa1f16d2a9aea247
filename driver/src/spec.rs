//! The command-line syntax for data ranges:
//!
//! ```text
//! SPEC   := PIECE (',' PIECE)*
//! PIECE  := 'host:' OFF '+' LEN                 bytes of the command's scratch host buffer
//!         | 'bar:' EP ':' OFF '+' LEN ['@bus' | '@iommu']
//!                                              bytes of endpoint EP's BAR2; the route is the
//!                                              P2P decision unless forced
//! OFF, LEN := decimal or 0x-hex, optional K/M/G suffix (powers of 1024)
//! ```
//! Example: `--src host:0+64K --dst bar:1:0x1000+32K,host:0x20000+32K@...`

pub use phyr_driver::size::parse_size;

use crate::mapping::Route;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceLoc {
    Host { offset: u64 },
    Bar { ep: usize, offset: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub loc: PieceLoc,
    pub len: u64,
    pub route: Route,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad range {piece:?}: {why} (expected host:OFF+LEN or bar:EP:OFF+LEN[@bus|@iommu])")]
pub struct SpecError {
    pub piece: String,
    pub why: String,
}

pub fn parse_spec(spec: &str) -> Result<Vec<Piece>, SpecError> {
    spec.split(',').map(parse_piece).collect()
}

fn parse_piece(p: &str) -> Result<Piece, SpecError> {
    let err = |why: &str| SpecError {
        piece: p.to_string(),
        why: why.to_string(),
    };
    let (body, route) = match p.split_once('@') {
        Some((b, "bus")) => (b, Route::Bus),
        Some((b, "iommu")) => (b, Route::Iommu),
        Some(_) => return Err(err("route must be @bus or @iommu")),
        None => (p, Route::Auto),
    };
    let (kind, rest) = body.split_once(':').ok_or_else(|| err("missing ':'"))?;
    let (loc_part, len_part) = rest.rsplit_once('+').ok_or_else(|| err("missing '+LEN'"))?;
    let len = parse_size(len_part).ok_or_else(|| err("bad length"))?;
    if len == 0 {
        return Err(err("length 0"));
    }
    let loc = match kind {
        "host" => {
            if route != Route::Auto {
                return Err(err("host ranges have no route"));
            }
            PieceLoc::Host {
                offset: parse_size(loc_part).ok_or_else(|| err("bad offset"))?,
            }
        }
        "bar" => {
            let (ep, off) = loc_part.split_once(':').ok_or_else(|| err("bar needs EP:OFF"))?;
            let ep = ep.parse().map_err(|_| err("bad endpoint index"))?;
            PieceLoc::Bar {
                ep,
                offset: parse_size(off).ok_or_else(|| err("bad offset"))?,
            }
        }
        _ => return Err(err("unknown kind")),
    };
    Ok(Piece { loc, len, route })
}

/// Bytes of scratch host buffer the pieces need.
pub fn host_extent(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .filter_map(|p| match p.loc {
            PieceLoc::Host { offset } => Some(offset.saturating_add(p.len)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_hex_and_suffixes() {
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("0x1000"), Some(4096));
        assert_eq!(parse_size("3"), Some(3));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("zz"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

    #[test]
    fn spec_parses_host_and_bar_pieces_with_routes() {
        let v = parse_spec("host:0+64K,bar:1:0x1000+4K@iommu,bar:0:0+1").unwrap();
        assert_eq!(
            v[0],
            Piece {
                loc: PieceLoc::Host { offset: 0 },
                len: 65536,
                route: Route::Auto
            }
        );
        assert_eq!(
            v[1],
            Piece {
                loc: PieceLoc::Bar { ep: 1, offset: 0x1000 },
                len: 4096,
                route: Route::Iommu
            }
        );
        assert_eq!(v[2].route, Route::Auto);
        assert_eq!(host_extent(&v), 65536);
    }

    #[test]
    fn spec_rejects_malformed_pieces() {
        assert!(parse_spec("host:0").is_err());
        assert!(parse_spec("host:0+0").is_err());
        assert!(parse_spec("bar:x:0+1").is_err());
        assert!(parse_spec("host:0+1@bus").is_err());
        assert!(parse_spec("disk:0+1").is_err());
    }
}
