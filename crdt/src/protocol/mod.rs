//! Room `protocol`: one replica, its peers and its answers, the same for the node and the
//! simulator.
//!
//! Owns a replica's inputs and outputs (`types`), the ledger gossip message (`bundle`), the I/O-free state machine (`replica`) and its
//! network side (`session`: gossip, sync sessions, bulletin hand-over, the hello; `escrow`: asking
//! for and giving strict zones' room), who may connect
//! and who is connected (`peers`), and the typed answers (`query`, `stats`).
//!
//! May import: every other room and the leaves. No room imports it.

pub mod bundle;
mod escrow;
pub mod peers;
pub mod query;
pub mod replica;
mod session;
pub mod stats;
mod types;

pub use escrow::room_ask;
pub use types::*;
