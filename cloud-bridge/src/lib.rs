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

use futures_util::pin_mut;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
pub use tokio_postgres;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
pub use tokio_postgres::Client;
use tokio_postgres::NoTls;

/// The migrations, in order. A database records the versions it has in `schema_migrations`.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "schema", include_str!("../migrations/0001_schema.sql")),
    (2, "origin", include_str!("../migrations/0002_origin.sql")),
];

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

/// Connect; the connection is driven on the current tokio runtime.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
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

/// Apply the migrations this database lacks, each in its own transaction, under an advisory
/// lock (two bridges starting together do not race). Returns the versions applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    client
        .batch_execute(
            "SELECT pg_advisory_lock(7201); \
             CREATE TABLE IF NOT EXISTS schema_migrations ( \
                 version integer PRIMARY KEY, name text NOT NULL, \
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let mut applied = Vec::new();
    let result = async {
        for (version, name, sql) in MIGRATIONS {
            let have = client
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[version],
                )
                .await?;
            if have.is_some() {
                continue;
            }
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
            tx.commit().await?;
            applied.push(*version);
        }
        Ok::<_, tokio_postgres::Error>(())
    }
    .await;
    client
        .batch_execute("SELECT pg_advisory_unlock(7201)")
        .await?;
    result.map(|_| applied)
}

/// Make sure the event and its devices are known.
pub async fn upsert_event(
    client: &mut Client,
    event_id: &str,
    name: &str,
    devices: &[DeviceRow],
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO events (event_id, name) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
        &[&event_id, &name],
    )
    .await?;
    for d in devices {
        tx.execute(
            "INSERT INTO devices (event_id, device_id, name, role) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (event_id, device_id) DO NOTHING",
            &[&event_id, &d.device_id, &d.name, &d.role],
        )
        .await?;
    }
    tx.commit().await
}

fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Merge one batch in one transaction. Returns what it added.
pub async fn write_batch(
    client: &mut Client,
    event_id: &str,
    batch: &Batch,
) -> Result<Added, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "CREATE TEMP TABLE staging_scans ( \
             scan_id text, ticket_id text, device_id text, tier text, gate text, zone text, \
             direction text, verdict text, reason text, hlc bigint, device_time timestamptz, \
             annuls text, origin text) ON COMMIT DROP",
    )
    .await?;
    let sink = tx
        .copy_in(
            "COPY staging_scans (scan_id, ticket_id, device_id, tier, gate, zone, direction, \
             verdict, reason, hlc, device_time, annuls, origin) FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for s in &batch.scans {
        let at = time_of(s.device_time_ms);
        writer
            .as_mut()
            .write(&[
                &s.scan_id,
                &s.ticket_id,
                &s.device_id,
                &s.tier,
                &s.gate,
                &s.zone,
                &s.direction,
                &s.verdict,
                &s.reason,
                &s.hlc,
                &at,
                &s.annuls,
                &s.origin,
            ])
            .await?;
    }
    writer.finish().await?;
    // New scans only; they alone move the per-ticket figures.
    let row = tx
        .query_one(
            "WITH new AS ( \
                 INSERT INTO scans (event_id, scan_id, ticket_id, device_id, tier, gate, zone, \
                     direction, verdict, reason, hlc, device_time, annuls, origin) \
                 SELECT $1, scan_id, ticket_id, device_id, tier, gate, zone, direction, verdict, \
                     reason, hlc, device_time, annuls, origin FROM staging_scans \
                 ON CONFLICT (event_id, scan_id) DO NOTHING \
                 RETURNING scan_id, ticket_id, tier, verdict, direction, device_time, origin), \
             fresh AS ( \
                 SELECT DISTINCT ON (ticket_id, coalesce(origin, scan_id)) * FROM new n \
                 WHERE n.origin IS NULL OR NOT EXISTS ( \
                     SELECT 1 FROM scans s WHERE s.event_id = $1 \
                     AND s.ticket_id = n.ticket_id AND s.origin = n.origin)), \
             per_ticket AS ( \
                 SELECT ticket_id, max(tier) AS tier, min(device_time) AS first, \
                     max(device_time) AS last, count(*) AS scans, \
                     count(*) FILTER (WHERE verdict = 'admit' AND direction = 'in') AS admits \
                 FROM fresh GROUP BY ticket_id), \
             upserted AS ( \
                 INSERT INTO tickets (event_id, ticket_id, tier, first_scanned_at, \
                     last_scanned_at, scan_count, admit_count) \
                 SELECT $1, ticket_id, tier, first, last, scans, admits FROM per_ticket \
                 ON CONFLICT (event_id, ticket_id) DO UPDATE SET \
                     first_scanned_at = LEAST(COALESCE(tickets.first_scanned_at, \
                         EXCLUDED.first_scanned_at), EXCLUDED.first_scanned_at), \
                     last_scanned_at = GREATEST(COALESCE(tickets.last_scanned_at, \
                         EXCLUDED.last_scanned_at), EXCLUDED.last_scanned_at), \
                     scan_count = tickets.scan_count + EXCLUDED.scan_count, \
                     admit_count = tickets.admit_count + EXCLUDED.admit_count \
                 RETURNING (xmax = 0) AS inserted) \
             SELECT (SELECT count(*) FROM new), \
                 (SELECT count(*) FROM upserted WHERE inserted)",
            &[&event_id],
        )
        .await?;
    let mut added = Added {
        scans: row.get::<_, i64>(0) as u64,
        tickets: row.get::<_, i64>(1) as u64,
        conflicts: 0,
    };
    if !batch.tickets.is_empty() {
        let current: Vec<&str> = batch.conflicts.iter().map(|c| c.scan_id.as_str()).collect();
        tx.execute(
            "DELETE FROM conflicts WHERE event_id = $1 AND ticket_id = ANY($2) \
             AND NOT (scan_id = ANY($3))",
            &[&event_id, &batch.tickets, &current],
        )
        .await?;
        let insert = tx
            .prepare(
                "INSERT INTO conflicts (event_id, ticket_id, scan_id, kind, entry_scan_ids) \
                 VALUES ($1, $2, $3, 'double_entry', $4) \
                 ON CONFLICT (event_id, scan_id) DO UPDATE SET entry_scan_ids = \
                     EXCLUDED.entry_scan_ids \
                 WHERE conflicts.entry_scan_ids IS DISTINCT FROM EXCLUDED.entry_scan_ids \
                 RETURNING (xmax = 0) AS inserted",
            )
            .await?;
        for c in &batch.conflicts {
            let rows = tx
                .query(
                    &insert,
                    &[&event_id, &c.ticket_id, &c.scan_id, &c.entry_scan_ids],
                )
                .await?;
            added.conflicts += rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64;
        }
    }
    tx.commit().await?;
    Ok(added)
}

/// Every scan HQ holds for an event (to judge double entries across imports).
pub async fn event_scans(
    client: &Client,
    event_id: &str,
) -> Result<Vec<ScanRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT scan_id, ticket_id, device_id, tier, gate, zone, direction, verdict, reason, \
             hlc, (extract(epoch FROM device_time) * 1000)::bigint, annuls, origin \
             FROM scans WHERE event_id = $1",
            &[&event_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ScanRow {
            scan_id: r.get(0),
            ticket_id: r.get(1),
            device_id: r.get(2),
            tier: r.get(3),
            gate: r.get(4),
            zone: r.get(5),
            direction: r.get(6),
            verdict: r.get(7),
            reason: r.get(8),
            hlc: r.get(9),
            device_time_ms: r.get::<_, i64>(10).max(0) as u64,
            annuls: r.get(11),
            origin: r.get(12),
        })
        .collect())
}

/// Record one import or live session in `bridge_runs`; returns its id.
pub async fn start_run(
    client: &Client,
    event_id: &str,
    source: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO bridge_runs (event_id, source) VALUES ($1, $2) RETURNING id",
            &[&event_id, &source],
        )
        .await?;
    Ok(row.get(0))
}

/// Add to a run's figures (and mark it finished when `done`).
pub async fn update_run(
    client: &Client,
    id: i64,
    records: u64,
    added: u64,
    rejected: u64,
    done: bool,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE bridge_runs SET records = records + $2, scans_added = scans_added + $3, \
             rejected = rejected + $4, finished_at = CASE WHEN $5 THEN now() END WHERE id = $1",
            &[
                &id,
                &(records as i64),
                &(added as i64),
                &(rejected as i64),
                &done,
            ],
        )
        .await?;
    Ok(())
}

/// A ticket row from HQ's database, for `gatemesh tickets issue --from-postgres`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketSource {
    pub ticket_id: String,
    pub tier: String,
}

/// Run HQ's ticket query: its first column is the ticket id, its second (optional) the tier.
/// The query runs in a read-only transaction.
pub async fn fetch_tickets(
    url: &str,
    query: &str,
    default_tier: &str,
) -> anyhow::Result<Vec<TicketSource>> {
    let mut client = connect(url).await?;
    let tx = client.build_transaction().read_only(true).start().await?;
    let rows = tx.query(query, &[]).await?;
    anyhow::ensure!(
        rows.len() <= TICKET_ROWS_MAX,
        "the query returned {} rows, over {TICKET_ROWS_MAX}",
        rows.len()
    );
    let text = |row: &tokio_postgres::Row, i: usize| -> anyhow::Result<String> {
        if let Ok(s) = row.try_get::<_, String>(i) {
            return Ok(s);
        }
        if let Ok(n) = row.try_get::<_, i64>(i) {
            return Ok(n.to_string());
        }
        if let Ok(n) = row.try_get::<_, i32>(i) {
            return Ok(n.to_string());
        }
        anyhow::bail!("column {} must be text or an integer", i + 1)
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        anyhow::ensure!(!row.is_empty(), "the query must return the ticket id first");
        let ticket_id = text(row, 0)?;
        let tier = if row.len() > 1 {
            text(row, 1)?
        } else {
            default_tier.to_string()
        };
        out.push(TicketSource { ticket_id, tier });
    }
    tx.commit().await?;
    Ok(out)
}
