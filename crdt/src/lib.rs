//! The redemption ledger: the event's Automerge document as per-device chains of signed scan
//! records, the admission that guards it, the derived index that answers "may this ticket come
//! in?" and "which entries were double?", and the summaries sync compares.
//!
//! This crate is pure: no tokio, no sockets, no files, no clock. Time comes in as arguments
//! (`now_ms`), bytes come in and bytes go out, so the node, the simulator and the tests drive the
//! very same code.
//!
//! Layout: rooms in the order a scan passes them, each a folder whose `mod.rs` says what it owns
//! and what it may import (ARCHITECTURE.md has the table, `tests/tidy.rs` checks it):
//! - [`record`]: the signed scan record, its canonical change, the clock and dates.
//! - [`event`]: the event file, device certificates and the roster, the offline manifest and
//!   its search, the entry rules in force, organizer-signed envelopes.
//! - [`credential`]: what a scanned code is: GM1, legacy HMAC JSON or manifest code/NFC UID.
//! - [`index`]: ticket → records, the policy replay, the double-entry list, the tallies.
//! - [`ledger`]: admission, the chains, pending changes, the sync message, the export file.
//! - [`gate`]: the gate logic, the policy's checks, bulletins, pauses, offline reconcile.
//! - [`protocol`]: the replica, its peers and sessions, its inputs, outputs and answers.
//!
//! Two leaves every room may import: [`json`] (a strict JSON reader) and [`reason`] (the
//! stable reason codes).

pub mod credential;
pub mod event;
pub mod gate;
pub mod index;
pub mod json;
pub mod ledger;
pub mod protocol;
pub mod reason;
pub mod record;

pub use event::roster::{Cut, Roster, RosterDevice, Standing};
pub use index::{Conflict, EntryRule, Index, RecordRef, TicketReplay, ANNUL_WINDOW_MS};
pub use ledger::pending::PeerTag;
pub use ledger::sync::{SyncError, SyncMessage};
pub use ledger::{
    anchor, Admitted, Budget, Draft, Fork, ForkProof, Ledger, LedgerError, LedgerStats,
    LocalDevice, Served, Single, Tip,
};
pub use protocol::replica::{Replica, ReplicaConfig};
pub use protocol::{Acceptance, Event, Input, Output, Reply, Topic};
pub use record::change::{Candidate, Hash, Rejection};
pub use record::hlc::{Hlc, HlcClock};
pub use record::{
    ChainId, ChainKey, DeviceId, Direction, RecordError, ScanBody, ScanRecord, ScanRef, Verdict,
};
