//! `# phyr-soak`: where a `phyr soak` stands, printed every two seconds, whenever a byte was
//! found corrupted or an outcome wrong, and at its end; the harness adds up the last line of
//! each guest (a guest whose QEMU was killed never prints its end).

use std::fmt;
use std::str::FromStr;

use crate::fields::Fields;
use crate::syntax::{words_after, ParseError};

/// Whether the soak was still running when it printed the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoakState {
    Running,
    End,
}

impl SoakState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::End => "end",
        }
    }
}

/// `# phyr-soak guest=G seed=S state=running|end t=SECONDS commands=N faults=N corrupted=N
/// wrong=N lost=N inherited=BYTES`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoakLine {
    /// Which guest of the run (2 and later boot against the device guest 1 left).
    pub guest: u32,
    pub seed: u64,
    pub state: SoakState,
    /// Seconds since the workload started.
    pub t: u64,
    /// Commands judged so far.
    pub commands: u64,
    /// Faults injected so far (bad segments on purpose included).
    pub faults: u64,
    /// Bytes found other than they must be.
    pub corrupted: u64,
    /// Commands whose outcome none of the allowed ones was.
    pub wrong: u64,
    /// Commands that got no completion (a reset or disable ended them).
    pub lost: u64,
    /// Bytes of BAR2 checked as the guest before left them (0 for guest 1).
    pub inherited: u64,
}

impl fmt::Display for SoakLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "# phyr-soak guest={} seed={:#x} state={} t={} commands={} faults={} corrupted={} wrong={} lost={} \
             inherited={}",
            self.guest,
            self.seed,
            self.state.name(),
            self.t,
            self.commands,
            self.faults,
            self.corrupted,
            self.wrong,
            self.lost,
            self.inherited
        )
    }
}

impl FromStr for SoakLine {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let f = Fields::parse(words_after(s, "soak")?)?;
        Ok(Self {
            guest: f.num("guest")?,
            seed: f.num("seed")?,
            state: f.with("state", "`running` or `end`", |v| {
                [SoakState::Running, SoakState::End].into_iter().find(|x| x.name() == v)
            })?,
            t: f.num("t")?,
            commands: f.num("commands")?,
            faults: f.num("faults")?,
            corrupted: f.num("corrupted")?,
            wrong: f.num("wrong")?,
            lost: f.num("lost")?,
            inherited: f.num("inherited")?,
        })
    }
}
