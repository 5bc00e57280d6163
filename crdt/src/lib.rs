//! The redemption ledger: one Automerge document per event, holding signed scan records, plus
//! the derived index that answers "may this ticket come in?" and "which entries were double?".
//!
//! This crate is pure: no tokio, no sockets, no files, no clock. Time comes in as arguments
//! (`now_ms`), bytes come in and bytes go out, so the node, the simulator and the tests drive the
//! very same code.
//!
//! Layout:
//! - [`hlc`]: hybrid logical clock that orders records across devices with skewed clocks.
//! - [`record`]: the signed scan record and its compact encoding.
//! - [`roster`]: which devices may write, with which key, and since when they are revoked.
//! - [`index`]: ticket → records, the policy replay and the double-entry (conflict) list.
//! - [`ledger`]: the Automerge document, genesis, record/apply/sync/save/load.

pub mod error;
pub mod hlc;
pub mod index;
pub mod ledger;
pub mod record;
pub mod roster;

pub use error::LedgerError;
pub use hlc::{Hlc, HlcClock};
pub use index::{Conflict, EntryRule, Index, RecordRef, TicketReplay};
pub use ledger::{Applied, ChangeRejection, Draft, Ledger, LedgerStats, LocalDevice, SyncPeer};
pub use record::{DeviceId, Direction, RecordError, ScanBody, ScanRecord, Verdict};
pub use roster::{Roster, RosterDevice};

/// Number of bucket maps in the document (first byte of SHA-256 of the ticket id).
pub const BUCKETS: usize = 256;
