//! The setup lines (`# phyr-endpoint`, `# phyr-map`, `# phyr-queue`) and `# phyr-reset`.

use std::fmt;
use std::str::FromStr;

use crate::fields::{bad, num, Dash, Fields};
use crate::range::Span;
use crate::syntax::{words_after, ParseError};

/// `addr+len` (both `0x` hex): a window of addresses without a space prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub addr: u64,
    pub len: u64,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{:#x}", self.addr, self.len)
    }
}

impl Window {
    fn parse(key: &'static str, s: &str) -> Result<Self, ParseError> {
        s.split_once('+')
            .and_then(|(a, l)| {
                Some(Self {
                    addr: num(a)?,
                    len: num(l)?,
                })
            })
            .ok_or_else(|| bad(key, s, "`addr+len`"))
    }
}

/// `# phyr-endpoint index=I bdf=B endpoint_id=E switch_id=S bar0=A+L bar2=A+L iommu_group=G|-`:
/// how the driver's endpoint `index` (the `ep` of its CLI) relates to the device's numbering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointLine {
    pub index: u32,
    /// PCI address `DDDD:BB:DD.F`.
    pub bdf: String,
    /// The ENDPOINT_ID register: the `ep` of every other line.
    pub endpoint_id: u32,
    pub switch_id: u32,
    /// BAR0 and BAR2 as bus addresses.
    pub bar0: Window,
    pub bar2: Window,
    pub iommu_group: Option<u32>,
    /// BAR2's CPU physical address, when the driver knows it (a kernel driver does: what its
    /// `# phyr-kmap` lines report as `phys` for peer memory is in this window). Printed only
    /// when known.
    pub bar2_phys: Option<u64>,
}

impl fmt::Display for EndpointLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "# phyr-endpoint index={} bdf={} endpoint_id={} switch_id={} bar0={} bar2={} iommu_group={}",
            self.index,
            self.bdf,
            self.endpoint_id,
            self.switch_id,
            self.bar0,
            self.bar2,
            Dash(self.iommu_group)
        )?;
        match self.bar2_phys {
            Some(p) => write!(f, " bar2_phys={p:#x}"),
            None => Ok(()),
        }
    }
}

impl FromStr for EndpointLine {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let f = Fields::parse(words_after(s, "endpoint")?)?;
        let bdf_ok = |b: &str| b.len() == 12 && b.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        Ok(Self {
            index: f.num("index")?,
            bdf: f.with("bdf", "`DDDD:BB:DD.F`", |b| bdf_ok(b).then(|| b.to_string()))?,
            endpoint_id: f.num("endpoint_id")?,
            switch_id: f.num("switch_id")?,
            bar0: Window::parse("bar0", f.req("bar0")?)?,
            bar2: Window::parse("bar2", f.req("bar2")?)?,
            iommu_group: f.dash("iommu_group", "`-` or a number", num)?,
            bar2_phys: f.get("bar2_phys").map(|_| f.num("bar2_phys")).transpose()?,
        })
    }
}

/// The access a DMA mapping grants the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// `r`: the device may only read.
    Read,
    /// `rw`.
    ReadWrite,
}

impl Perm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "r",
            Self::ReadWrite => "rw",
        }
    }
}

/// What a `# phyr-map` line mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapTarget {
    /// `kind=host`: host memory of the driver.
    Host,
    /// `kind=bar ep=E bar=B offset=O`: a window of endpoint `ep`'s BAR `bar` from `offset`.
    Bar { ep: u32, bar: u8, offset: u64 },
}

/// `# phyr-map kind=host iova=A+L perm=r|rw` or
/// `# phyr-map kind=bar ep=E bar=B offset=O iova=A+L perm=r|rw`: a DMA mapping the driver made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLine {
    pub target: MapTarget,
    pub iova: Window,
    pub perm: Perm,
}

impl fmt::Display for MapLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("# phyr-map kind=")?;
        match self.target {
            MapTarget::Host => f.write_str("host")?,
            MapTarget::Bar { ep, bar, offset } => write!(f, "bar ep={ep} bar={bar} offset={offset:#x}")?,
        }
        write!(f, " iova={} perm={}", self.iova, self.perm.name())
    }
}

impl FromStr for MapLine {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let f = Fields::parse(words_after(s, "map")?)?;
        let target = match f.req("kind")? {
            "host" => MapTarget::Host,
            "bar" => MapTarget::Bar {
                ep: f.num("ep")?,
                bar: f.num("bar")?,
                offset: f.num("offset")?,
            },
            k => return Err(bad("kind", k, "`host` or `bar`")),
        };
        Ok(Self {
            target,
            iova: Window::parse("iova", f.req("iova")?)?,
            perm: f.with("perm", "`r` or `rw`", |p| {
                [Perm::Read, Perm::ReadWrite].into_iter().find(|x| x.name() == p)
            })?,
        })
    }
}

/// How a queue's completions are signalled (the driver's `--mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueMode {
    /// MSI-X interrupt.
    Irq,
    /// Doorbell register, completion queue polled.
    Spin,
    /// Shadow doorbell in host memory polled by the device, completion queue polled.
    Poll,
}

impl QueueMode {
    pub const ALL: [QueueMode; 3] = [Self::Irq, Self::Spin, Self::Poll];

    pub fn name(self) -> &'static str {
        match self {
            Self::Irq => "irq",
            Self::Spin => "spin",
            Self::Poll => "poll",
        }
    }
}

/// `# phyr-queue ep=E q=Q mode=irq|spin|poll size=N vector=V sq=R cq=R [shadow=R]`: a queue
/// pair the driver created (`R` as in range lists, in `iova` space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLine {
    pub ep: u32,
    pub q: u32,
    pub mode: QueueMode,
    /// Entries per queue.
    pub size: u32,
    pub vector: u32,
    pub sq: Span,
    pub cq: Span,
    /// The shadow doorbell (POLL mode).
    pub shadow: Option<Span>,
}

impl fmt::Display for QueueLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "# phyr-queue ep={} q={} mode={} size={} vector={} sq={} cq={}",
            self.ep,
            self.q,
            self.mode.name(),
            self.size,
            self.vector,
            self.sq,
            self.cq
        )?;
        match &self.shadow {
            Some(s) => write!(f, " shadow={s}"),
            None => Ok(()),
        }
    }
}

impl FromStr for QueueLine {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let f = Fields::parse(words_after(s, "queue")?)?;
        Ok(Self {
            ep: f.num("ep")?,
            q: f.num("q")?,
            mode: f.with("mode", "`irq`, `spin` or `poll`", |m| {
                QueueMode::ALL.into_iter().find(|x| x.name() == m)
            })?,
            size: f.num("size")?,
            vector: f.num("vector")?,
            sq: f.req("sq")?.parse()?,
            cq: f.req("cq")?.parse()?,
            shadow: f.get("shadow").map(str::parse).transpose()?,
        })
    }
}

/// How the driver reset an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// `ctrl`: CTRL.RESET.
    Ctrl,
    /// `vfio`: VFIO_DEVICE_RESET (a function-level reset by the kernel).
    Vfio,
}

impl ResetKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ctrl => "ctrl",
            Self::Vfio => "vfio",
        }
    }
}

/// `# phyr-reset ep=E kind=ctrl|vfio`: the driver reset endpoint `ep`, and the reset returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetLine {
    pub ep: u32,
    pub kind: ResetKind,
}

impl fmt::Display for ResetLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "# phyr-reset ep={} kind={}", self.ep, self.kind.name())
    }
}

impl FromStr for ResetLine {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let f = Fields::parse(words_after(s, "reset")?)?;
        Ok(Self {
            ep: f.num("ep")?,
            kind: f.with("kind", "`ctrl` or `vfio`", |k| {
                [ResetKind::Ctrl, ResetKind::Vfio].into_iter().find(|x| x.name() == k)
            })?,
        })
    }
}
