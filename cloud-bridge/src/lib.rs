//! The PostgreSQL side of the bridge: HQ's schema (versioned migrations), batched writes that
//! merge scan records exactly once, and the ticket query used before the event.
//!
//! The ledger side (reading exports, verifying records, following the mesh) lives in the node
//! (`gatemesh export`, `gatemesh bridge import|run`); it hands this crate [`Batch`]es of rows
//! that already passed verification.
//!
//! Each batch is one transaction: rows are `COPY`ed (binary) into a temporary staging table, then
//! inserted with `ON CONFLICT DO NOTHING`; only the scans that were really new update the
//! per-ticket figures (first/last scanned with LEAST/GREATEST, counters), so merging the same data
//! twice adds nothing. Conflicts of the batch's tickets are replaced by the ledger's current view.

//!
//! Layout: [`migrate`] (the versioned schema), [`write`] (events, batches, runs), [`read`] (what
//! HQ holds, and the ticket query).

pub mod migrate;
pub mod read;
pub mod write;

pub use migrate::{migrate, MIGRATIONS};
pub use read::{event_scans, fetch_tickets, TicketSource};
pub use write::{start_run, update_run, upsert_attendees, upsert_event, write_batch};

use std::time::Duration;
pub use tokio_postgres;
pub use tokio_postgres::Client;
use tokio_postgres::NoTls;

/// Most scan rows in one batch (one transaction).
pub const BATCH_ROWS_MAX: usize = 50_000;
/// Longest a statement may run before the bridge gives up on it.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Most rows a `--from-postgres` ticket query may return.
pub const TICKET_ROWS_MAX: usize = 2_000_000;

/// One scan record as HQ stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRow {
    pub scan_id: String,
    pub ticket_id: String,
    pub device_id: String,
    pub tier: String,
    pub gate: String,
    pub zone: String,
    pub direction: String,
    pub verdict: String,
    pub reason: String,
    pub hlc: i64,
    pub device_time_ms: u64,
    pub annuls: Option<String>,
    /// A reconciled offline scan's origin.
    pub origin: Option<String>,
}

/// One ticket of the guest list, as HQ stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttendeeRow {
    pub ticket_id: String,
    pub tier: String,
    pub status: String,
    pub name: Option<String>,
    pub order_ref: Option<String>,
    pub email: Option<String>,
    pub notes: Option<String>,
    pub attention: bool,
}

/// A double entry: the admit beyond policy and the legitimate entries before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictRow {
    pub ticket_id: String,
    pub scan_id: String,
    pub entry_scan_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    pub device_id: String,
    pub name: String,
    pub role: String,
}

/// What one transaction merges.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub scans: Vec<ScanRow>,
    /// Tickets whose conflicts are replaced by `conflicts` (those of `scans`, usually).
    pub tickets: Vec<String>,
    pub conflicts: Vec<ConflictRow>,
}

/// What a write added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Added {
    pub scans: u64,
    pub tickets: u64,
    pub conflicts: u64,
}

impl Added {
    pub fn rows(&self) -> u64 {
        self.scans + self.tickets + self.conflicts
    }
    pub fn add(&mut self, o: Added) {
        self.scans += o.scans;
        self.tickets += o.tickets;
        self.conflicts += o.conflicts;
    }
}

/// What went wrong on the PostgreSQL side.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the ticket query returned {0} rows, over {TICKET_ROWS_MAX}")]
    TooManyRows(usize),
    #[error(
        "the ticket query must return the ticket id first, as text or an integer (column {0})"
    )]
    BadColumn(usize),
}

/// Connect; the connection is driven on the current tokio runtime.
pub async fn connect(url: &str) -> Result<Client, BridgeError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection ended: {e}");
        }
    });
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            STATEMENT_TIMEOUT.as_millis()
        ))
        .await?;
    Ok(client)
}
