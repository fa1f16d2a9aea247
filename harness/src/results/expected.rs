//! What the recipe a run booted says the run must show: its guest RAM layout (for the kernel
//! path's translations) and the P2P outcome its machine forces per pair of endpoints.

use crate::launch::recipe::{P2pExpect, Recipe};
use crate::results::guest_phys::RamLayout;

/// What the recipe a run booted says the run must show.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Which recipe (for messages).
    pub recipe: String,
    /// Its guest RAM layout, for the kernel path's translations, or why there is none.
    pub layout: Result<RamLayout, String>,
    /// The P2P outcome per pair of endpoints (`# phyr: p2p=`).
    pub p2p: Vec<P2pExpect>,
}

impl Expected {
    pub fn of(r: &Recipe) -> Self {
        Self {
            recipe: r.file.display().to_string(),
            layout: RamLayout::from_recipe(r).map_err(|e| e.to_string()),
            p2p: r.p2p.clone(),
        }
    }

    /// Nothing known about the recipe, because of `why`.
    pub fn unknown(why: &str) -> Self {
        Self {
            recipe: "?".into(),
            layout: Err(why.to_owned()),
            p2p: Vec::new(),
        }
    }
}
