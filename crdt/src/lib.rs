//! The redemption ledger: the event's Automerge document as per-device chains of signed scan
//! records, the admission that guards it, the derived index that answers "may this ticket come
//! in?" and "which entries were double?", and the summaries sync compares.
//!
//! This crate is pure: no tokio, no sockets, no files, no clock. Time comes in as arguments
//! (`now_ms`), bytes come in and bytes go out, so the node, the simulator and the tests drive the
//! very same code.
//!
//! Layout, the ledger:
//! - [`hlc`]: hybrid logical clock that orders records across devices with skewed clocks.
//! - [`record`]: the signed scan record, its limits and its place (device, chain, position).
//! - [`change`]: the canonical Automerge change carrying a record, and reading untrusted ones.
//! - [`roster`]: which devices may write, with which key, and what a revocation keeps.
//! - [`chain`]: the admitted changes, chain by chain.
//! - [`pending`]: changes waiting for their predecessor, bounded.
//! - [`index`]: ticket → records, the policy replay and the double-entry (conflict) list.
//! - [`ledger`]: admission, local records, forks, summaries and what a peer lacks.
//! - [`sync`]: the sync message, bounded.
//! - [`tally`]: running totals behind the statistics.
//!
//! The event and the gate:
//! - [`json`]: a strict JSON reader for legacy codes and bulletins.
//! - [`signed`]: organizer-signed JSON envelopes.
//! - [`event`]: the event's configuration (zones, gates, tiers and their policy).
//! - [`certificate`]: device certificates and the roster they make.
//! - [`manifest`]: the signed offline manifest, its attendees and its lookups.
//! - [`search`]: finding a ticket by attendee name, order or id (folded word prefixes).
//! - [`ticket`]: the GM1 signed ticket format.
//! - [`credential`]: what a scanned code is: GM1, legacy HMAC JSON or manifest code/NFC UID.
//! - [`policy`]: the decision's checks and reason codes, in DESIGN §5's order.
//! - [`bulletin`]: organizer bulletins (revocations, additions, pauses), verified.
//! - [`pause`]: pausing a gate, a zone or the event (last-writer-wins registers).
//! - [`gate`]: a device's gate logic: credential, policy and ledger.
//! - [`offline`]: the seed's offline manifest and reconcile.
//! - [`stats`]: the figures of `/api/stats`, typed.
//!
//! The protocol, one implementation for the node and the simulator:
//! - [`protocol`]: a replica's inputs and outputs.
//! - [`replica`]: the I/O-free state machine: local requests, answers after their writes.
//! - `session`: its network side: gossip, sync sessions, bulletin hand-over, peers.
//! - [`peers`]: enrolled devices, who is connected, who may connect.
//! - [`query`]: typed answers (ticket, status, statistics, journal).

pub mod bulletin;
pub mod catchup;
pub mod certificate;
pub mod chain;
pub mod change;
pub mod credential;
pub mod date;
pub mod event;
pub mod export;
pub mod gate;
pub mod hlc;
pub mod index;
pub mod json;
pub mod ledger;
pub mod manifest;
mod maps;
pub mod offline;
pub mod pause;
pub mod peers;
pub mod pending;
pub mod policy;
pub mod protocol;
pub mod query;
pub mod reason;
pub mod record;
mod replay;
pub mod replica;
pub mod roster;
pub mod rules;
pub mod search;
mod session;
pub mod signed;
pub mod stats;
pub mod sync;
pub mod tally;
pub mod ticket;

pub use change::{Candidate, Hash, Rejection};
pub use hlc::{Hlc, HlcClock};
pub use index::{Conflict, EntryRule, Index, RecordRef, TicketReplay, ANNUL_WINDOW_MS};
pub use ledger::{
    anchor, Admitted, Budget, Draft, Fork, ForkProof, Ledger, LedgerError, LedgerStats,
    LocalDevice, Served, Single, Tip,
};
pub use pending::PeerTag;
pub use protocol::{Acceptance, Event, Input, Output, Reply, Topic};
pub use record::{
    ChainId, ChainKey, DeviceId, Direction, RecordError, ScanBody, ScanRecord, ScanRef, Verdict,
};
pub use replica::{Replica, ReplicaConfig};
pub use roster::{Cut, Roster, RosterDevice, Standing};
pub use sync::{SyncError, SyncMessage};
