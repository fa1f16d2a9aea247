//! The driver's `phyr submit` file parser over arbitrary text.
//!
//! Input: any bytes, read as (lossy) UTF-8 JSON. Checks: no panic in `Plan::parse`; for a plan
//! that parses, resolving every entry and head against a fixed layout never panics (offsets that
//! overflow, names that do not exist and endpoints out of range are errors), and every resolved
//! entry keeps the length the file asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phyr_driver::submit_file::{Head, Plan, Resolve};

struct Layout<'a>(&'a Plan);

impl Resolve for Layout<'_> {
    fn buffer(&self, name: &str) -> Option<u64> {
        let i = self.0.buffers.iter().position(|b| b.name == name)?;
        Some(0x10_0000 + (i as u64) * 0x10_0000)
    }
    fn list(&self, name: &str) -> Option<(u64, u32, u32)> {
        let i = self.0.lists.iter().position(|l| l.name == name)?;
        Some((0x8000_0000 + (i as u64) * 0x1000, 0, self.0.lists[i].block_bytes()))
    }
    fn bus(&mut self, ep: usize) -> Result<u64, String> {
        (ep < 4)
            .then(|| 0xf400_0000 + ep as u64 * 0x400_0000)
            .ok_or_else(|| format!("no endpoint {ep}"))
    }
    fn bar_iova(&mut self, ep: usize, off: u64) -> Result<u64, String> {
        let base = self.bus(ep)?;
        base.checked_add(off).ok_or_else(|| "offset overflows".to_string())
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(plan) = Plan::parse(&text) else {
        return;
    };
    let mut layout = Layout(&plan);
    for l in &plan.lists {
        for e in &l.entries {
            if let (Ok(d), Some(len)) = (e.resolve(&mut layout), e.len) {
                assert_eq!(d.len, len, "a resolved entry changed its length");
            }
        }
    }
    for h in [&plan.src, &plan.dst] {
        let _ = h.resolve(&mut layout);
        if matches!(h, Head::None) {
            assert_eq!(h.resolve(&mut layout).unwrap(), Default::default());
        }
    }
});
