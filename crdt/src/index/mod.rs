//! Room `index`: what the admitted records mean, derived and never stored.
//!
//! Owns the index (`tickets`: ticket → records in HLC order, the conflict list), the policy
//! replay over each ticket's records (`replay`) and the running totals behind the statistics
//! (`tally`).
//!
//! May import: `record`, `event` and the leaves.

mod maps;
mod replay;
pub mod tally;
mod tickets;

pub use tickets::*;
