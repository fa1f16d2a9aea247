//! [`TraceClock`]: the records' time base, cheap enough to read twice per DMA transaction.
//!
//! `Instant::now()` (a vDSO `clock_gettime`) costs several times a TSC read (figures in
//! trace/README.md), and a 64 KiB COPY reads the clock about eight times. Where the kernel's
//! own monotonic clock is the TSC (`current_clocksource` is `tsc`, so the TSC is invariant and
//! synchronized across CPUs), [`TraceClock::now_ns`] reads the TSC instead and maps it linearly to
//! nanoseconds on the `Instant` time line. The mapping is re-anchored against `Instant` every
//! [`REANCHOR_NS`]: each new segment starts where the previous one ended (no jumps) and its
//! slope is the long-term TSC rate corrected so that the segment ends on the `Instant` time
//! line, so the error stays within a few microseconds of `Instant` and does not accumulate.
//! Elsewhere (other architectures, another clocksource, or `PHYR_TRACE_CLOCK=os`) it is
//! `Instant` itself.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Re-anchor the TSC mapping this often (nanoseconds).
const REANCHOR_NS: u64 = 20_000_000;
/// Initial calibration spin.
const CALIBRATE_NS: u64 = 500_000;

/// The time base shared by all endpoints of one device process, so their traces line up.
/// Cheap to clone (clones share the mapping).
#[derive(Debug, Clone)]
pub struct TraceClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    epoch: Instant,
    start_unix_ns: u64,
    tsc: Option<Tsc>,
}

/// A TSC -> ns mapping `ns = anchor_ns + (tsc - anchor_tsc) * mult / 2^32`, guarded by a
/// sequence lock (readers never write; the re-anchoring reader takes `updating`).
#[derive(Debug)]
struct Tsc {
    seq: AtomicU64,
    anchor_tsc: AtomicU64,
    anchor_ns: AtomicU64,
    mult: AtomicU64,
    /// TSC value after which the next reader re-anchors.
    next_tsc: AtomicU64,
    updating: AtomicBool,
    /// First calibration point, for the long-term rate.
    base_tsc: u64,
    base_ns: u64,
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn rdtsc() -> u64 {
    0
}

fn tsc_usable() -> bool {
    if !cfg!(target_arch = "x86_64") || std::env::var_os("PHYR_TRACE_CLOCK").is_some_and(|v| v == "os") {
        return false;
    }
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|s| s.trim() == "tsc")
}

impl TraceClock {
    pub fn new() -> Self {
        let start_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let epoch = Instant::now();
        let tsc = tsc_usable().then(|| Tsc::calibrate(epoch)).flatten();
        TraceClock {
            inner: Arc::new(Inner {
                epoch,
                start_unix_ns,
                tsc,
            }),
        }
    }

    /// A clock that always reads `Instant` (for comparison and tests).
    pub fn os() -> Self {
        let start_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        TraceClock {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                start_unix_ns,
                tsc: None,
            }),
        }
    }

    /// Whether this clock reads the TSC (see the module docs).
    pub fn uses_tsc(&self) -> bool {
        self.inner.tsc.is_some()
    }

    /// Monotonic nanoseconds since the clock was created (the records' `t_ns`).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        match &self.inner.tsc {
            Some(t) => t.now_ns(self.inner.epoch),
            None => self.inner.epoch.elapsed().as_nanos() as u64,
        }
    }

    /// Wall-clock time of `t_ns = 0`.
    pub fn start_unix_ns(&self) -> u64 {
        self.inner.start_unix_ns
    }
}

impl Default for TraceClock {
    fn default() -> Self {
        Self::new()
    }
}

/// (`Instant` ns since `epoch`, TSC) read as close together as possible: the TSC is read
/// around the `Instant`, and the tightest of a few tries is kept (a preempted try is wide).
fn sample(epoch: Instant) -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..5 {
        let a = rdtsc();
        let ns = epoch.elapsed().as_nanos() as u64;
        let b = rdtsc();
        let width = b.wrapping_sub(a);
        if width < best.0 {
            best = (width, ns, a + width / 2);
        }
    }
    (best.1, best.2)
}

/// `ns * 2^32 / ticks`, the mapping's slope.
fn slope(ns: u64, ticks: u64) -> u64 {
    ((u128::from(ns) << 32) / u128::from(ticks.max(1))) as u64
}

impl Tsc {
    fn calibrate(epoch: Instant) -> Option<Tsc> {
        let (ns0, tsc0) = sample(epoch);
        let (mut ns1, mut tsc1) = (ns0, tsc0);
        while ns1 - ns0 < CALIBRATE_NS {
            (ns1, tsc1) = sample(epoch);
        }
        if tsc1 <= tsc0 {
            return None;
        }
        let mult = slope(ns1 - ns0, tsc1 - tsc0);
        if mult == 0 {
            return None;
        }
        let interval = (u128::from(REANCHOR_NS) << 32) / u128::from(mult);
        Some(Tsc {
            seq: AtomicU64::new(0),
            anchor_tsc: AtomicU64::new(tsc1),
            anchor_ns: AtomicU64::new(ns1),
            mult: AtomicU64::new(mult),
            next_tsc: AtomicU64::new(tsc1.saturating_add(interval as u64)),
            updating: AtomicBool::new(false),
            base_tsc: tsc0,
            base_ns: ns0,
        })
    }

    /// The mapping (anchor tsc, anchor ns, mult), consistent.
    #[inline]
    fn mapping(&self) -> (u64, u64, u64) {
        loop {
            let s1 = self.seq.load(Acquire);
            let m = (
                self.anchor_tsc.load(Relaxed),
                self.anchor_ns.load(Relaxed),
                self.mult.load(Relaxed),
            );
            fence(Acquire);
            if s1 & 1 == 0 && self.seq.load(Relaxed) == s1 {
                return m;
            }
            std::hint::spin_loop();
        }
    }

    #[inline]
    fn map(tsc: u64, (at, an, mult): (u64, u64, u64)) -> u64 {
        let delta = tsc.wrapping_sub(at) as i64;
        let d = (i128::from(delta) * i128::from(mult)) >> 32;
        (i128::from(an) + d).max(0) as u64
    }

    #[inline]
    fn now_ns(&self, epoch: Instant) -> u64 {
        let mut tsc = rdtsc();
        if tsc >= self.next_tsc.load(Relaxed) {
            self.reanchor(epoch);
            tsc = rdtsc();
        }
        Self::map(tsc, self.mapping())
    }

    #[cold]
    #[inline(never)]
    fn reanchor(&self, epoch: Instant) {
        if self.updating.swap(true, Acquire) {
            return; // another thread is at it; the current mapping is still good
        }
        let (ns, tsc) = sample(epoch);
        let cur = self.mapping();
        let mapped = Self::map(tsc, cur);
        let long = slope(ns.saturating_sub(self.base_ns), tsc.saturating_sub(self.base_tsc));
        let interval = ((u128::from(REANCHOR_NS) << 32) / u128::from(long.max(1))) as u64;
        // Continue from where the current segment is, with a slope that lands on `Instant`
        // at the end of the next segment (within [long/2, 2*long], so it stays monotonic).
        let err = ns as i128 - mapped as i128;
        let mult = (i128::from(long) + (err << 32) / i128::from(interval.max(1)))
            .clamp(i128::from(long / 2), i128::from(long) * 2) as u64;
        self.seq.fetch_add(1, Relaxed);
        fence(Release);
        self.anchor_tsc.store(tsc, Relaxed);
        self.anchor_ns.store(mapped, Relaxed);
        self.mult.store(mult, Relaxed);
        self.seq.fetch_add(1, Release);
        self.next_tsc.store(tsc.saturating_add(interval), Relaxed);
        self.updating.store(false, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clock_is_monotonic_and_tracks_instant() {
        let clock = TraceClock::new();
        let start = Instant::now();
        let mut last = 0;
        let mut worst = 0i64;
        while start.elapsed() < Duration::from_millis(120) {
            let before = clock.inner.epoch.elapsed().as_nanos() as i64;
            let t = clock.now_ns();
            let after = clock.inner.epoch.elapsed().as_nanos() as i64;
            assert!(t >= last, "clock went back: {last} -> {t}");
            last = t;
            // How far `t` lies outside [before, after] (preemption only widens the window).
            worst = worst.max(before - t as i64).max(t as i64 - after);
        }
        // The TSC mapping stays within a few microseconds of Instant (allow for preemption
        // between the two reads on a loaded machine).
        assert!(
            worst < 1_000_000,
            "TSC clock {}us off Instant (tsc: {})",
            worst / 1000,
            clock.uses_tsc()
        );
    }

    #[test]
    fn clones_share_the_time_line() {
        let a = TraceClock::new();
        let b = a.clone();
        let t1 = a.now_ns();
        let t2 = b.now_ns();
        assert!(t2 >= t1);
        assert_eq!(a.start_unix_ns(), b.start_unix_ns());
        assert!(!TraceClock::os().uses_tsc());
    }
}
