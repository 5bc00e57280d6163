//! Room `index`: what the admitted records mean, derived and never stored.
//!
//! Owns the index (`tickets`: ticket → records in HLC order, the conflict list), the policy
//! replay over each ticket's records (`replay`), the running totals behind the statistics
//! (`tally`) and strict zones' room, held by gates as an escrow (`room`), and supervisors' actions: gate
//! pauses and the audit (`actions`).
//!
//! May import: `record`, `event` and the leaves.

pub mod actions;
mod maps;
mod replay;
pub mod room;
pub mod tally;
mod tickets;

pub use tickets::*;
