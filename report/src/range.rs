//! Ranges (`space:addr+len[*N]`) and range lists (`[R,R,...]` or a reference `@N/K`).

use std::fmt;
use std::str::FromStr;

use dma_range::{AddrSpace, DmaRange};

use crate::fields::{num, parse_bracketed, write_bracketed};
use crate::syntax::ParseError;

/// `iova` or `bus`.
pub fn space_name(s: AddrSpace) -> &'static str {
    match s {
        AddrSpace::Iova => "iova",
        AddrSpace::Bus => "bus",
    }
}

/// The space [`space_name`] spells `name`.
pub fn space_from_name(name: &str) -> Option<AddrSpace> {
    match name {
        "iova" => Some(AddrSpace::Iova),
        "bus" => Some(AddrSpace::Bus),
        _ => None,
    }
}

/// `len` bytes at `addr` in `space` (longer than a segment may be, after merging), `reps`
/// times in a row: printed `space:addr+len`, or `space:addr+len*reps` when `reps` > 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub space: AddrSpace,
    pub addr: u64,
    pub len: u64,
    /// How many times the range occurs in a row in the list (at least 1).
    pub reps: u64,
}

impl Span {
    pub fn new(space: AddrSpace, addr: u64, len: u64) -> Self {
        Self {
            space,
            addr,
            len,
            reps: 1,
        }
    }

    /// Whether `len` bytes at `addr` in `space` lie inside this range (an end past 2^64 never
    /// does).
    pub fn covers(&self, space: AddrSpace, addr: u64, len: u64) -> bool {
        let (Some(end), Some(my_end)) = (addr.checked_add(len), self.addr.checked_add(self.len)) else {
            return false;
        };
        space == self.space && addr >= self.addr && end <= my_end
    }
}

impl From<&DmaRange> for Span {
    fn from(r: &DmaRange) -> Self {
        Self::new(r.space(), r.addr, u64::from(r.len))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:#x}+{:#x}", space_name(self.space), self.addr, self.len)?;
        if self.reps > 1 {
            write!(f, "*{}", self.reps)?;
        }
        Ok(())
    }
}

impl FromStr for Span {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = |what| ParseError::Range {
            text: s.to_string(),
            what,
        };
        let (space, rest) = s.split_once(':').ok_or(bad("no `:` after the space"))?;
        let space = space_from_name(space).ok_or(bad("space is not `iova` or `bus`"))?;
        let (addr, rest) = rest.split_once('+').ok_or(bad("no `+len`"))?;
        let (len, reps) = match rest.split_once('*') {
            Some((len, reps)) => (
                len,
                num::<u64>(reps)
                    .filter(|&n| n >= 2)
                    .ok_or(bad("repeat count below 2"))?,
            ),
            None => (rest, 1),
        };
        Ok(Self {
            space,
            addr: num(addr).ok_or(bad("bad address"))?,
            len: num(len).ok_or(bad("bad length"))?,
            reps,
        })
    }
}

/// Merges consecutive spans that are contiguous in the same space, and counts consecutive
/// repeats of the same span (`R*N`); keeps the order. What a producer prints.
pub fn merge(spans: impl IntoIterator<Item = Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in spans {
        match out.last_mut() {
            Some(p)
                if p.reps == 1
                    && s.reps == 1
                    && p.space == s.space
                    && p.addr.checked_add(p.len) == Some(s.addr)
                    && p.len.checked_add(s.len).is_some() =>
            {
                p.len += s.len;
            }
            Some(p) if (p.space, p.addr, p.len) == (s.space, s.addr, s.len) => {
                p.reps = p.reps.saturating_add(s.reps);
            }
            _ => out.push(s),
        }
    }
    out
}

/// A range-list field as one line holds it: inline, or a reference to `k` ranges on the
/// `# phyr-ranges n ...` lines that follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeList {
    Inline(Vec<Span>),
    Ref { n: u32, k: usize },
}

impl fmt::Display for RangeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(spans) => write_bracketed(f, spans),
            Self::Ref { n, k } => write!(f, "@{n}/{k}"),
        }
    }
}

impl FromStr for RangeList {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        if let Some(r) = s.strip_prefix('@') {
            let bad = || ParseError::Range {
                text: s.to_string(),
                what: "a reference is `@N/K`",
            };
            let (n, k) = r.split_once('/').ok_or_else(bad)?;
            return Ok(Self::Ref {
                n: num(n).ok_or_else(bad)?,
                k: num(k).ok_or_else(bad)?,
            });
        }
        let spans = parse_bracketed(s).ok_or_else(|| ParseError::Range {
            text: s.to_string(),
            what: "a range list is `[R,R,...]` or `@N/K`",
        })?;
        spans.map(Self::Inline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(s: &str) -> Span {
        s.parse().unwrap()
    }

    #[test]
    fn contiguous_ranges_in_one_space_merge() {
        let m = merge([
            Span::new(AddrSpace::Iova, 0x1000, 0x10),
            Span::new(AddrSpace::Iova, 0x1010, 0x10),
            Span::new(AddrSpace::Bus, 0x1020, 0x10), // contiguous address, other space
            Span::new(AddrSpace::Bus, 0x1030, 0x10),
            Span::new(AddrSpace::Bus, 0x1050, 0x10), // gap
            Span::new(AddrSpace::Bus, 0x1040, 0x10), // before, not after: kept apart
        ]);
        let t: Vec<String> = m.iter().map(Span::to_string).collect();
        assert_eq!(
            t,
            [
                "iova:0x1000+0x20",
                "bus:0x1020+0x20",
                "bus:0x1050+0x10",
                "bus:0x1040+0x10"
            ]
        );
        // Merged lengths may pass 4 GiB; addresses never wrap.
        let big = merge([
            Span::new(AddrSpace::Iova, 0, 0xffff_ffff),
            Span::new(AddrSpace::Iova, 0xffff_ffff, 0xffff_ffff),
        ]);
        assert_eq!(big, [Span::new(AddrSpace::Iova, 0, 0x1_ffff_fffe)]);
        let wrap = merge([
            Span::new(AddrSpace::Iova, u64::MAX - 1, 2),
            Span::new(AddrSpace::Iova, 0, 2),
        ]);
        assert_eq!(wrap.len(), 2);
    }

    #[test]
    fn repeated_ranges_print_once_with_a_count() {
        let m = merge([
            Span::new(AddrSpace::Bus, 0xe000_0000, 0x10),
            Span::new(AddrSpace::Bus, 0xe000_0000, 0x10),
            Span::new(AddrSpace::Bus, 0xe000_0000, 0x10),
            Span::new(AddrSpace::Bus, 0xe000_0010, 0x10), // contiguous, but after a repeat: apart
            Span::new(AddrSpace::Iova, 0xe000_0010, 0x10), // same numbers, other space
        ]);
        let texts: Vec<String> = m.iter().map(Span::to_string).collect();
        assert_eq!(
            texts,
            ["bus:0xe0000000+0x10*3", "bus:0xe0000010+0x10", "iova:0xe0000010+0x10"]
        );
    }

    #[test]
    fn a_range_parses_back_with_its_repeat_count() {
        assert_eq!(
            span("bus:0xe0000000+0x2000000*4096"),
            Span {
                reps: 4096,
                ..Span::new(AddrSpace::Bus, 0xe000_0000, 0x200_0000)
            }
        );
        assert_eq!(span("iova:0x1000+0x20"), Span::new(AddrSpace::Iova, 0x1000, 0x20));
    }

    #[test]
    fn malformed_ranges_are_errors() {
        for bad in [
            "iova:0x1000",
            "iova:0x1000+0x20*1",
            "iova:0x1000+0x20*",
            "mmio:0x1000+0x20",
            "0x1000+0x20",
            "iova:0x1000+0x20+0x5",
            "iova:-1+0x20",
            "iova:0x1000+0x20 ",
        ] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?}");
        }
        for bad in [
            "[iova:0x1000]",
            "iova:0x1000+0x20",
            "[iova:0x1000+0x20,]",
            "@7",
            "@7/x",
            "@/3",
            "[,]",
        ] {
            assert!(bad.parse::<RangeList>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn range_lists_print_and_parse() {
        let l: RangeList = "[iova:0x100000+0x1000,bus:0xfe000000+0x1000]".parse().unwrap();
        assert_eq!(
            l,
            RangeList::Inline(vec![
                Span::new(AddrSpace::Iova, 0x10_0000, 0x1000),
                Span::new(AddrSpace::Bus, 0xfe00_0000, 0x1000)
            ])
        );
        assert_eq!(l.to_string(), "[iova:0x100000+0x1000,bus:0xfe000000+0x1000]");
        assert_eq!("[]".parse::<RangeList>().unwrap(), RangeList::Inline(vec![]));
        assert_eq!("@7/300".parse::<RangeList>().unwrap(), RangeList::Ref { n: 7, k: 300 });
    }

    #[test]
    fn coverage_stays_inside_the_range_and_its_space() {
        let s = Span::new(AddrSpace::Iova, 0x10_0000, 0x1000);
        assert!(s.covers(AddrSpace::Iova, 0x10_0800, 0x800));
        assert!(!s.covers(AddrSpace::Bus, 0x10_0800, 0x800), "space must match");
        assert!(!s.covers(AddrSpace::Iova, 0x10_0800, 0x801), "one byte past the end");
        assert!(!s.covers(AddrSpace::Iova, u64::MAX, 2), "wrapping end");
    }
}
