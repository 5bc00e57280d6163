//! Writes: the event and its devices, batches of scans (each one transaction: binary `COPY`
//! into a staging table, `ON CONFLICT DO NOTHING`, per-ticket figures moved only by the scans
//! really new, the batch's tickets' conflicts replaced by the ledger's view), and the
//! `bridge_runs` figures.

use crate::{Added, AttendeeRow, Batch, BridgeError, Client, DeviceRow};
use futures_util::pin_mut;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

/// Make sure the event and its devices are known.
pub async fn upsert_event(
    client: &mut Client,
    event_id: &str,
    name: &str,
    devices: &[DeviceRow],
) -> Result<(), BridgeError> {
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
    Ok(tx.commit().await?)
}

/// Write the guest list (one transaction, binary `COPY`): new tickets added, known ones
/// replaced by what this manifest says.
pub async fn upsert_attendees(
    client: &mut Client,
    event_id: &str,
    rows: &[AttendeeRow],
) -> Result<u64, BridgeError> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "CREATE TEMP TABLE staging_attendees (ticket_id text, tier text, status text,              name text, order_ref text, email text, notes text, attention boolean)              ON COMMIT DROP",
    )
    .await?;
    let sink = tx
        .copy_in(
            "COPY staging_attendees (ticket_id, tier, status, name, order_ref, email, notes,              attention) FROM STDIN BINARY",
        )
        .await?;
    let mut types = [Type::TEXT; 8];
    types[7] = Type::BOOL;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for a in rows {
        let row: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &a.ticket_id,
            &a.tier,
            &a.status,
            &a.name,
            &a.order_ref,
            &a.email,
            &a.notes,
            &a.attention,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    let n = tx
        .execute(
            "INSERT INTO attendees (event_id, ticket_id, tier, status, name, order_ref, email,                  notes, attention)              SELECT DISTINCT ON (ticket_id) $1, ticket_id, tier, status, name, order_ref,                  email, notes, attention FROM staging_attendees              ON CONFLICT (event_id, ticket_id) DO UPDATE SET tier = EXCLUDED.tier,                  status = EXCLUDED.status, name = EXCLUDED.name,                  order_ref = EXCLUDED.order_ref, email = EXCLUDED.email,                  notes = EXCLUDED.notes, attention = EXCLUDED.attention",
            &[&event_id],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Merge one batch in one transaction. Returns what it added.
pub async fn write_batch(
    client: &mut Client,
    event_id: &str,
    batch: &Batch,
) -> Result<Added, BridgeError> {
    let tx = client.transaction().await?;
    stage(&tx, batch).await?;
    let mut added = insert_new(&tx, event_id).await?;
    if !batch.tickets.is_empty() {
        added.conflicts = replace_conflicts(&tx, event_id, batch).await?;
    }
    tx.commit().await?;
    Ok(added)
}

/// The batch's scans into a temporary staging table, by binary `COPY`.
async fn stage(tx: &Transaction<'_>, batch: &Batch) -> Result<(), BridgeError> {
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
    let mut types = [Type::TEXT; 13];
    types[9] = Type::INT8;
    types[10] = Type::TIMESTAMPTZ;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for s in &batch.scans {
        let at = time_of(s.device_time_ms);
        let row: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
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
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Staged scans HQ lacks into `scans`; they alone move the per-ticket figures (a reconciled
/// offline scan whose origin HQ already holds counts once; hand check-ins' and phones' online
/// scans' origins never merge, as in the ledger's replay).
async fn insert_new(tx: &Transaction<'_>, event_id: &str) -> Result<Added, BridgeError> {
    let row = tx
        .query_one(
            "WITH new AS ( \
                 INSERT INTO scans (event_id, scan_id, ticket_id, device_id, tier, gate, zone, \
                     direction, verdict, reason, hlc, device_time, annuls, origin) \
                 SELECT $1, scan_id, ticket_id, device_id, tier, gate, zone, direction, verdict, \
                     reason, hlc, device_time, annuls, origin FROM staging_scans \
                 ON CONFLICT (event_id, scan_id) DO NOTHING \
                 RETURNING scan_id, ticket_id, tier, verdict, direction, device_time, origin), \
             merging AS ( \
                 SELECT *, CASE WHEN origin LIKE 'manual:%' OR origin LIKE 'live:%' THEN NULL \
                     ELSE origin END AS merge FROM new), \
             fresh AS ( \
                 SELECT DISTINCT ON (ticket_id, coalesce(merge, scan_id)) * FROM merging n \
                 WHERE n.merge IS NULL OR NOT EXISTS ( \
                     SELECT 1 FROM scans s WHERE s.event_id = $1 \
                     AND s.ticket_id = n.ticket_id AND s.origin = n.merge)), \
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
    Ok(Added {
        scans: row.get::<_, i64>(0) as u64,
        tickets: row.get::<_, i64>(1) as u64,
        conflicts: 0,
    })
}

/// The batch's tickets' conflicts become the ledger's view. Returns how many were new.
async fn replace_conflicts(
    tx: &Transaction<'_>,
    event_id: &str,
    batch: &Batch,
) -> Result<u64, BridgeError> {
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
    let mut added = 0;
    for c in &batch.conflicts {
        let rows = tx
            .query(
                &insert,
                &[&event_id, &c.ticket_id, &c.scan_id, &c.entry_scan_ids],
            )
            .await?;
        added += rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64;
    }
    Ok(added)
}

/// Record one import or live session in `bridge_runs`; returns its id.
pub async fn start_run(client: &Client, event_id: &str, source: &str) -> Result<i64, BridgeError> {
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
) -> Result<(), BridgeError> {
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
