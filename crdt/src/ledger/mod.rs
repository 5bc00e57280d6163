//! Room `ledger`: the admitted changes, chain by chain, and how they travel.
//!
//! Owns the `Ledger` (`state`: local records, admission, restore, forks, summaries, what a peer
//! lacks), the chains' storage (`chain`), changes waiting for their predecessor (`pending`), the
//! sync message (`sync`), the export file (`export`) and the caught-up flag (`catchup`).
//!
//! May import: `record`, `event`, `index` and the leaves.

pub mod catchup;
pub mod chain;
pub mod export;
pub mod pending;
mod state;
pub mod sync;

pub use state::*;
