//! A named suite case and what it concludes.

use anyhow::Result;

use crate::bench::Bench;

/// What a case concluded when it did not fail.
pub enum Outcome {
    Pass,
    Skip(String),
}

pub type CaseFn = fn(&mut Bench) -> Result<Outcome>;

pub struct Case {
    pub name: &'static str,
    pub about: &'static str,
    pub run: CaseFn,
}
