//! Room `gate`: a device's decision at its gate, and what the organizer says during the event.
//!
//! Owns the gate logic (`logic`: `GateLogic`: scan, check in by hand, annul, bulletins), the
//! policy's checks in DESIGN §5's order (`policy`), organizer bulletins (`bulletin`), pauses
//! (`pause`), a supervisor's own gate pause (`supervise`), the seed's offline manifest and reconcile and a phone's offline pack
//! (`offline`), and the snapshot of the ledger a phone decides by offline (`snapshot`).
//!
//! May import: `record`, `event`, `index`, `ledger`, `credential` and the leaves.

pub mod bulletin;
pub mod escrow;
mod logic;
pub mod offline;
pub mod pause;
pub mod policy;
pub mod snapshot;
mod supervise;

pub use logic::*;
