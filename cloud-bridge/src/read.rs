//! Reads: every scan HQ holds for an event (double entries are judged on all of it), and HQ's
//! own ticket query before the event (`tickets issue --from-postgres`), read-only.

use crate::{connect, BridgeError, Client, ScanRow, TICKET_ROWS_MAX};

/// Every scan HQ holds for an event (to judge double entries across imports).
pub async fn event_scans(client: &Client, event_id: &str) -> Result<Vec<ScanRow>, BridgeError> {
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
) -> Result<Vec<TicketSource>, BridgeError> {
    let mut client = connect(url).await?;
    let tx = client.build_transaction().read_only(true).start().await?;
    let rows = tx.query(query, &[]).await?;
    if rows.len() > TICKET_ROWS_MAX {
        return Err(BridgeError::TooManyRows(rows.len()));
    }
    let text = |row: &tokio_postgres::Row, i: usize| -> Result<String, BridgeError> {
        if let Ok(s) = row.try_get::<_, String>(i) {
            return Ok(s);
        }
        if let Ok(n) = row.try_get::<_, i64>(i) {
            return Ok(n.to_string());
        }
        if let Ok(n) = row.try_get::<_, i32>(i) {
            return Ok(n.to_string());
        }
        Err(BridgeError::BadColumn(i + 1))
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.is_empty() {
            return Err(BridgeError::BadColumn(1));
        }
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
