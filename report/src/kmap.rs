//! The kernel path's lines: `# phyr-kmap`, how a kernel driver's DMA API calls mapped the
//! memory behind one list of a command, piece by piece (the kernel's P2P decision, the
//! physical address, the call that produced the DMA address, the list entry holding it); and
//! `# phyr-p2p`, the kernel's P2P decision for a pair of endpoints.

use std::fmt;
use std::str::FromStr;

use dma_range::{AddrSpace, ListKind};

use crate::cmd::MAX_RANGES_LINE;
use crate::fields::{bad, num, parse_bracketed, write_bracketed, Dash, Fields};
use crate::range::Span;
use crate::syntax::{words_after, ParseError};

/// Names and parsing for the small enums of this line.
macro_rules! named {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }

            pub fn from_name(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|x| x.name() == s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named! {
    /// The kernel's decision for one piece: how `dma_map_*` reached the memory behind it
    /// (`enum pci_p2pdma_map_type` for peer memory).
    MapType {
        /// `none`: not peer memory; an ordinary DMA mapping (through the IOMMU when there is one).
        None = "none",
        /// `bus_addr`: peer BAR reached by its PCI bus address, through the switch (no IOMMU).
        BusAddr = "bus_addr",
        /// `thru_host_bridge`: peer BAR mapped through the host bridge (and its IOMMU).
        ThruHostBridge = "thru_host_bridge",
    }
}

impl MapType {
    /// The space the device must be told the piece's DMA address lives in: `bus` for a bus
    /// address, `iova` otherwise.
    pub fn space(self) -> AddrSpace {
        match self {
            Self::BusAddr => AddrSpace::Bus,
            Self::None | Self::ThruHostBridge => AddrSpace::Iova,
        }
    }
}

named! {
    /// The DMA API path a kernel driver mapped a list through (phyr.ko's `PHYR_PATH_*`,
    /// docs/KERNEL-UAPI.md).
    KernelPath {
        /// One scatterlist, `dma_map_sgtable()`.
        SgTable = "sgtable",
        /// The two-step IOVA API (`dma_iova_try_alloc/link/sync`), with its `dma_map_phys()`
        /// fallback.
        Iova = "iova",
        /// `dma_map_phys()` per piece.
        Phys = "phys",
        /// `dma_map_page_attrs()` / `dma_map_resource()` per piece.
        Resource = "resource",
    }
}

named! {
    /// The kernel call that produced a piece's DMA address.
    KernelCall {
        /// `dma_map_sgtable()`.
        SgTable = "sgtable",
        /// `dma_iova_link()` into an IOVA range from `dma_iova_try_alloc()`.
        IovaLink = "iova_link",
        /// `pci_p2pdma_bus_addr_map()`: a bus address, no mapping.
        BusAddrMap = "bus_addr_map",
        /// `dma_map_phys()`.
        MapPhys = "map_phys",
        /// `dma_map_page_attrs()`.
        MapPage = "map_page",
        /// `dma_map_resource()`.
        MapResource = "map_resource",
    }
}

named! {
    /// Whether the list's DMA mapping was still in place when the command ran.
    MapState {
        /// `mapped`: the command ran over a live mapping.
        Mapped = "mapped",
        /// `unmapped`: the mapping was torn down before the command (a use after unmap): the
        /// device must not reach the memory (IOMMU fault) and must move no byte.
        Unmapped = "unmapped",
    }
}

/// One piece of a `# phyr-kmap` line: `SPACE:DMA+LEN=TYPE:PHYS[/CALL][@ENTRY]`, the part of the
/// list handed to the device for a physically contiguous piece of memory, the kernel's
/// [`MapType`] for it, the CPU physical address of its first byte, the call that produced the
/// DMA address, and the index of the list entry (dma_range) holding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSeg {
    /// What the device was given for this piece (`reps` is always 1).
    pub dma: Span,
    pub map: MapType,
    pub phys: u64,
    pub call: Option<KernelCall>,
    /// The list entry holding the piece, counting data entries across chained blocks from 0
    /// (as a fault's `seg=` and the device's trace count them).
    pub entry: Option<u32>,
}

impl fmt::Display for KernelSeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:{:#x}", self.dma, self.map.name(), self.phys)?;
        if let Some(c) = self.call {
            write!(f, "/{c}")?;
        }
        if let Some(e) = self.entry {
            write!(f, "@{e}")?;
        }
        Ok(())
    }
}

impl FromStr for KernelSeg {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let what = "`SPACE:DMA+LEN=TYPE:PHYS[/CALL][@ENTRY]`";
        let (dma, rest) = s.split_once('=').ok_or_else(|| bad("segs", s, what))?;
        let dma: Span = dma.parse()?;
        let (rest, entry) = match rest.split_once('@') {
            Some((r, e)) => (r, Some(num(e).ok_or_else(|| bad("segs", s, "ENTRY is a number"))?)),
            None => (rest, None),
        };
        let (rest, call) = match rest.split_once('/') {
            Some((r, c)) => (
                r,
                Some(KernelCall::from_name(c).ok_or_else(|| {
                    bad(
                        "segs",
                        s,
                        "CALL is sgtable, iova_link, bus_addr_map, map_phys, map_page or map_resource",
                    )
                })?),
            ),
            None => (rest, None),
        };
        let (map, phys) = rest.split_once(':').ok_or_else(|| bad("segs", s, what))?;
        Ok(Self {
            dma: Some(dma)
                .filter(|d| d.reps == 1)
                .ok_or_else(|| bad("segs", s, "no `*N` here"))?,
            map: MapType::from_name(map).ok_or_else(|| bad("segs", s, "type is none, bus_addr or thru_host_bridge"))?,
            phys: num(phys).ok_or_else(|| bad("segs", s, what))?,
            call,
            entry,
        })
    }
}

/// `# phyr-kmap ep=E q=Q id=I list=src|dst|list first=F segs=[S,S,...] [path=P] [state=S]`:
/// how the kernel mapped pieces `first..` of a command's `list` (printed before the command's
/// phyr-cmd line, several lines for a long list: see [`KmapLine::split`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmapLine {
    pub ep: u32,
    pub q: u32,
    pub id: u16,
    pub list: ListKind,
    /// Index in the list's pieces of the first piece of this line.
    pub first: u32,
    pub segs: Vec<KernelSeg>,
    /// The DMA API path the list was mapped through.
    pub path: Option<KernelPath>,
    /// Whether the mapping was live when the command ran (absent: live).
    pub state: Option<MapState>,
}

impl fmt::Display for KmapLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "# phyr-kmap ep={} q={} id={} list={} first={} segs=",
            self.ep,
            self.q,
            self.id,
            self.list.name(),
            self.first
        )?;
        write_bracketed(f, &self.segs)?;
        if let Some(p) = self.path {
            write!(f, " path={p}")?;
        }
        if let Some(s) = self.state {
            write!(f, " state={s}")?;
        }
        Ok(())
    }
}

impl FromStr for KmapLine {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let f = Fields::parse(words_after(s, "kmap")?)?;
        let segs = f.req("segs")?;
        let segs = parse_bracketed(segs).ok_or_else(|| bad("segs", segs, "`[S,S,...]`"))??;
        Ok(Self {
            ep: f.num("ep")?,
            q: f.num("q")?,
            id: f.num("id")?,
            list: f.with("list", "`src`, `dst` or `list`", |l| {
                ListKind::from_name(l).filter(|k| *k != ListKind::Queue)
            })?,
            first: f.num("first")?,
            segs,
            path: f
                .get("path")
                .map(|_| f.with("path", "`sgtable`, `iova`, `phys` or `resource`", KernelPath::from_name))
                .transpose()?,
            state: f
                .get("state")
                .map(|_| f.with("state", "`mapped` or `unmapped`", MapState::from_name))
                .transpose()?,
        })
    }
}

impl KmapLine {
    /// Every piece of one list of a command as kmap lines of at most [`MAX_RANGES_LINE`] bytes
    /// each (one line at least; a piece longer than that gets a line of its own), `first`
    /// counting from 0. `head` gives every field but `first` and `segs`.
    pub fn split(head: &KmapLine, segs: &[KernelSeg]) -> Vec<KmapLine> {
        let empty = KmapLine {
            first: u32::MAX,
            segs: Vec::new(),
            ..head.clone()
        };
        let budget = MAX_RANGES_LINE.saturating_sub(empty.to_string().len());
        let mut out: Vec<KmapLine> = Vec::new();
        let mut used = usize::MAX;
        for (i, s) in segs.iter().enumerate() {
            let n = s.to_string().len() + 1;
            if used.saturating_add(n) > budget {
                out.push(KmapLine {
                    first: u32::try_from(i).unwrap_or(u32::MAX),
                    segs: Vec::new(),
                    ..head.clone()
                });
                used = 0;
            }
            used += n;
            if let Some(l) = out.last_mut() {
                l.segs.push(*s);
            }
        }
        if out.is_empty() {
            out.push(KmapLine {
                first: 0,
                segs: Vec::new(),
                ..head.clone()
            });
        }
        out
    }
}

named! {
    /// What the kernel decided for DMA by one endpoint into another's BAR
    /// (`pci_p2pdma_map_type()`).
    P2pDecision {
        /// `bus_addr`: by PCI bus address through the switch.
        BusAddr = "bus_addr",
        /// `thru_host_bridge`: through the root complex (and the IOMMU).
        ThruHostBridge = "thru_host_bridge",
        /// `not_supported`: no route; mapping calls fail (`-EREMOTEIO`).
        NotSupported = "not_supported",
    }
}

/// `# phyr-p2p client=E provider=E distance=D|- decision=D`: the kernel's P2P decision for DMA
/// by endpoint `client` into endpoint `provider`'s BAR2 (ENDPOINT_IDs), with
/// `pci_p2pdma_distance()` (`-` where it returns -1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2pLine {
    pub client: u32,
    pub provider: u32,
    pub distance: Option<u32>,
    pub decision: P2pDecision,
}

impl fmt::Display for P2pLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "# phyr-p2p client={} provider={} distance={} decision={}",
            self.client,
            self.provider,
            Dash(self.distance),
            self.decision
        )
    }
}

impl FromStr for P2pLine {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let f = Fields::parse(words_after(s, "p2p")?)?;
        Ok(Self {
            client: f.num("client")?,
            provider: f.num("provider")?,
            distance: f.dash("distance", "`-` or a number", num)?,
            decision: f.with(
                "decision",
                "`bus_addr`, `thru_host_bridge` or `not_supported`",
                P2pDecision::from_name,
            )?,
        })
    }
}
