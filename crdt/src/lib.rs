//! The redemption ledger: the event's Automerge document as per-device chains of signed scan
//! records, the admission that guards it, the derived index that answers "may this ticket come
//! in?" and "which entries were double?", and the summaries sync compares.
//!
//! This crate is pure: no tokio, no sockets, no files, no clock. Time comes in as arguments
//! (`now_ms`), bytes come in and bytes go out, so the node, the simulator and the tests drive the
//! very same code.
//!
//! Layout:
//! - [`hlc`]: hybrid logical clock that orders records across devices with skewed clocks.
//! - [`record`]: the signed scan record, its limits and its place (device, chain, position).
//! - [`change`]: the canonical Automerge change carrying a record, and reading untrusted ones.
//! - [`roster`]: which devices may write, with which key, and what a revocation keeps.
//! - [`chain`]: the admitted changes, chain by chain.
//! - [`pending`]: changes waiting for their predecessor, bounded.
//! - [`index`]: ticket → records, the policy replay and the double-entry (conflict) list.
//! - [`ledger`]: admission, local records, forks, summaries and what a peer lacks.
//! - [`sync`]: the sync message, bounded.

pub mod chain;
pub mod change;
pub mod hlc;
pub mod index;
pub mod ledger;
pub mod pending;
pub mod record;
pub mod roster;
pub mod sync;

pub use change::{Candidate, Hash, Rejection};
pub use hlc::{Hlc, HlcClock};
pub use index::{Conflict, EntryRule, Index, RecordRef, TicketReplay, ANNUL_WINDOW_MS};
pub use ledger::{
    anchor, Admitted, Budget, Draft, Fork, ForkProof, Ledger, LedgerError, LedgerStats,
    LocalDevice, Served, Single, Tip,
};
pub use pending::PeerTag;
pub use record::{
    ChainId, ChainKey, DeviceId, Direction, RecordError, ScanBody, ScanRecord, ScanRef, Verdict,
};
pub use roster::{Cut, Roster, RosterDevice, Standing};
pub use sync::{SyncError, SyncMessage};
