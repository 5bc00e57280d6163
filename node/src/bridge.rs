//! The ledger side of the bridge to HQ's PostgreSQL (`gatemesh export`, `gatemesh bridge
//! import|run`); `gatemesh-cloud-bridge` holds the database side.
//!
//! An export file is `GATEMESH-EXPORT/2\n`, one JSON header line (event, counts, SHA-256 of the
//! ledger bytes), then the ledger: every admitted change, chain by chain, back to back (Automerge
//! change chunks, so `Automerge::load` of these bytes gives the document). Import checks the
//! header and the checksum first (a changed or cut file is refused before the database is
//! touched), applies the event package's bulletins, then takes every change through the same
//! admission as the mesh ([`gatemesh_crdt::Ledger::admit`]): changes that fail are not written
//! but counted (`bridge_runs.rejected`).
//!
//! The live bridge is a node of the mesh with an observer device: it never scans, it only
//! receives. Its loop keeps a journal of records in arrival order; the bridge reads it page by
//! page and writes each page in one transaction, moving its position only after a commit. When
//! PostgreSQL is away the position stays and the page is written again later; writes are
//! idempotent (`ON CONFLICT`), so nothing is lost and nothing doubled. At start the journal holds
//! every record of the bridge's own store, so a restarted bridge resumes without gaps.

use crate::api::ApiCall;
use crate::device;
use anyhow::{bail, Context};
use gatemesh_cloud_bridge::{self as pg, Added, Batch, ConflictRow, DeviceRow, ScanRow};
use gatemesh_crdt::event::{EventConfig, EventPackage};
use gatemesh_crdt::{Conflict, RecordRef};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use gatemesh_crdt::ledger::export;
pub use gatemesh_crdt::ledger::export::{
    ExportHeader, EXPORT_HEADER_BYTES_MAX, EXPORT_LEDGER_BYTES_MAX, EXPORT_MAGIC,
};
/// Connections writing an import's batches at once.
pub const IMPORT_CONNECTIONS: usize = 2;
/// Changes handed to the ledger's admission at once on import.
pub const IMPORT_BATCH_CHANGES: usize = gatemesh_crdt::ledger::ADMIT_BATCH_MAX;
/// Records the live bridge takes from the journal per transaction.
pub const LIVE_PAGE_MAX: usize = 5_000;
/// How often the live bridge looks for new records.
pub const LIVE_INTERVAL: Duration = Duration::from_millis(500);
/// Longest pause between reconnection attempts to PostgreSQL.
pub const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(5);

/// Write a node's full ledger to `out`. Returns the header as JSON.
pub fn export(event: &Path, data: &Path, out: &Path) -> anyhow::Result<Value> {
    let dev = device::open(event, None, data, None)?;
    write_export(dev.gate.ledger(), dev.gate.config(), out)
}

/// Write `ledger` as an export file (written beside, synced, then renamed into place).
pub fn write_export(
    ledger: &gatemesh_crdt::Ledger,
    config: &EventConfig,
    out: &Path,
) -> anyhow::Result<Value> {
    let mut digest = Sha256::new();
    let (mut bytes, mut changes) = (0u64, 0u64);
    for c in ledger.changes() {
        digest.update(c);
        bytes += c.len() as u64;
        changes += 1;
    }
    let header = ExportHeader {
        event_id: config.event_id.clone(),
        event_name: config.name.clone(),
        exported_at: gatemesh_crdt::record::date::iso(crate::now_ms()),
        records: ledger.index().len(),
        changes,
        ledger_bytes: bytes,
        ledger_sha256: hex::encode(digest.finalize()),
    };
    let tmp = out.with_extension("partial");
    {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        writeln!(f, "{EXPORT_MAGIC}")?;
        writeln!(f, "{}", serde_json::to_string(&header)?)?;
        for c in ledger.changes() {
            f.write_all(c)?;
        }
        f.into_inner()?.sync_all()?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(json!({"event": "exported", "file": out, "header": header}))
}

/// Read and check an export: magic, header, event, size and checksum
/// ([`gatemesh_crdt::ledger::export`]). Errors start with a stable code (`export_unreadable`,
/// `export_not_gatemesh`, `export_wrong_event`, `export_corrupt`).
pub fn read_export(path: &Path, event_id: &str) -> anyhow::Result<(ExportHeader, Vec<u8>)> {
    let unreadable = || format!("export_unreadable: {}", path.display());
    let mut file = std::fs::File::open(path).with_context(unreadable)?;
    let file_bytes = file.metadata().with_context(unreadable)?.len();
    let cap = EXPORT_LEDGER_BYTES_MAX + 2 * EXPORT_HEADER_BYTES_MAX as u64 + 2;
    if file_bytes > cap {
        bail!("export_corrupt: a file of {file_bytes} bytes is over the limit of {cap}");
    }
    // The head first (bounded), checked, before anything the size of the ledger is read.
    let mut bytes = Vec::new();
    (&mut file)
        .take(2 * EXPORT_HEADER_BYTES_MAX as u64 + 2)
        .read_to_end(&mut bytes)
        .with_context(unreadable)?;
    let coded = |e: export::ExportError| anyhow::anyhow!("{}: {e}", e.code());
    let head = export::read_head(&bytes, event_id).map_err(coded)?;
    bytes.drain(..head.len);
    let claimed = head.header.ledger_bytes;
    // Memory for what the file holds, at most what the checked header claims (+1 to see more).
    let room = claimed.saturating_sub(bytes.len() as u64);
    file.take(room + 1)
        .read_to_end(&mut bytes)
        .with_context(unreadable)?;
    export::check_ledger(&head.header, &bytes).map_err(coded)?;
    Ok((head.header, bytes))
}

fn device_rows(package: &EventPackage) -> Vec<DeviceRow> {
    package
        .certificates
        .iter()
        .map(|c| DeviceRow {
            device_id: c.device_id.clone(),
            name: c.name.clone(),
            role: format!("{:?}", c.role).to_lowercase(),
        })
        .collect()
}

/// The manifest's tickets and their holders (with the e-mail addresses the organizer keeps),
/// as HQ's `attendees` rows.
fn attendee_rows(
    package: &EventPackage,
    emails: &std::collections::BTreeMap<String, String>,
) -> Vec<pg::AttendeeRow> {
    let Some(m) = &package.manifest else {
        return Vec::new();
    };
    m.tickets()
        .iter()
        .map(|t| pg::AttendeeRow {
            ticket_id: t.ticket_id.clone(),
            tier: t.tier.clone(),
            status: format!("{:?}", t.status).to_lowercase(),
            name: t.attendee.name.clone(),
            order_ref: t.attendee.order.clone(),
            email: emails.get(&t.ticket_id).cloned(),
            notes: t.attendee.notes.clone(),
            attention: t.attendee.attention,
        })
        .collect()
}

/// Write the guest list to HQ (nothing without a manifest); returns the rows written.
async fn write_guest_list(
    client: &mut pg::Client,
    package: &EventPackage,
    event: &Path,
) -> anyhow::Result<u64> {
    let rows = attendee_rows(package, &crate::package::load_guest_emails(event)?);
    if rows.is_empty() {
        return Ok(0);
    }
    pg::upsert_attendees(client, &package.config.event_id, &rows)
        .await
        .context("database: attendees")
}

fn row_of(r: &RecordRef) -> ScanRow {
    ScanRow {
        scan_id: r.scan_id.clone(),
        ticket_id: r.ticket_id.clone(),
        device_id: r.device.clone(),
        tier: r.tier.clone(),
        gate: r.gate.clone(),
        zone: r.zone.clone(),
        direction: r.direction.as_str().to_string(),
        verdict: match r.verdict {
            gatemesh_crdt::Verdict::Admit => "admit",
            gatemesh_crdt::Verdict::Deny => "deny",
            gatemesh_crdt::Verdict::Annul => "annul",
            gatemesh_crdt::Verdict::Room => "room",
            gatemesh_crdt::Verdict::Pause => "pause",
        }
        .to_string(),
        reason: r.reason.clone(),
        hlc: i64::try_from(r.hlc).unwrap_or(i64::MAX),
        device_time_ms: r.wall_ms,
        annuls: r.annuls.clone(),
        origin: r.origin.clone(),
    }
}

/// A row back as the body the index replays (signatures were checked when it was first read).
fn body_of(r: &ScanRow) -> Option<gatemesh_crdt::ScanBody> {
    let at = gatemesh_crdt::ScanRef::parse(&r.scan_id)?;
    let direction = match r.direction.as_str() {
        "in" => gatemesh_crdt::Direction::In,
        "out" => gatemesh_crdt::Direction::Out,
        _ => return None,
    };
    let verdict = match r.verdict.as_str() {
        "admit" => gatemesh_crdt::Verdict::Admit,
        "deny" => gatemesh_crdt::Verdict::Deny,
        "annul" => gatemesh_crdt::Verdict::Annul,
        _ => return None,
    };
    Some(gatemesh_crdt::ScanBody {
        version: gatemesh_crdt::record::RECORD_VERSION,
        device: at.chain.device,
        chain: at.chain.chain,
        seq: at.seq,
        link: [0; 32],
        ticket_id: r.ticket_id.clone(),
        tier: r.tier.clone(),
        gate: r.gate.clone(),
        zone: r.zone.clone(),
        direction,
        verdict,
        reason: r.reason.clone(),
        hlc: r.hlc as u64,
        wall_ms: r.device_time_ms,
        seen: Vec::new(),
        annuls: r.annuls.clone(),
        origin: r.origin.clone(),
    })
}

fn conflict_rows(c: &Conflict) -> Vec<ConflictRow> {
    let entries: Vec<String> = c.entries.iter().map(|r| r.scan_id.clone()).collect();
    c.double_entries
        .iter()
        .map(|d| ConflictRow {
            ticket_id: c.ticket_id.clone(),
            scan_id: d.scan_id.clone(),
            entry_scan_ids: entries.clone(),
        })
        .collect()
}

/// Group rows into batches of whole tickets (a ticket's scans and conflicts share a
/// transaction), at most about [`pg::BATCH_ROWS_MAX`] scans each.
fn batches(mut rows: Vec<ScanRow>, conflicts: &HashMap<String, Vec<ConflictRow>>) -> Vec<Batch> {
    rows.sort_by(|a, b| a.ticket_id.cmp(&b.ticket_id));
    let mut out: Vec<Batch> = Vec::new();
    let mut current = Batch::default();
    for row in rows {
        let new_ticket = current.tickets.last() != Some(&row.ticket_id);
        if new_ticket && current.scans.len() >= pg::BATCH_ROWS_MAX {
            out.push(std::mem::take(&mut current));
        }
        if new_ticket {
            current.tickets.push(row.ticket_id.clone());
            if let Some(c) = conflicts.get(&row.ticket_id) {
                current.conflicts.extend(c.iter().cloned());
            }
        }
        current.scans.push(row);
    }
    if !current.scans.is_empty() {
        out.push(current);
    }
    out
}

/// Merge an export file into the database. Returns a JSON summary.
pub async fn import(event: &Path, file: &Path, url: &str) -> anyhow::Result<Value> {
    let package = crate::package::load(event)?;
    let config = &package.config;
    let clock = std::time::Instant::now();
    let mut timings = serde_json::Map::new();
    let mut lap = |name: &str| {
        timings.insert(format!("{name}_s"), json!(clock.elapsed().as_secs_f64()));
    };
    let (header, bytes) = read_export(file, &config.event_id)?;
    lap("read");
    let ledger = admit_export(&package, event, &bytes)?;
    drop(bytes);
    lap("verified");
    let mut rows = Vec::with_capacity(ledger.index().len() as usize);
    // Room moves of strict zones and supervisors' gate pauses stay in the mesh's ledger: they
    // are no scans.
    ledger.index().for_each_record(|r| {
        if !matches!(
            r.verdict,
            gatemesh_crdt::Verdict::Room | gatemesh_crdt::Verdict::Pause
        ) {
            rows.push(row_of(r))
        }
    });
    let rejected = ledger.stats().rejected();
    let records = rows.len() as u64;
    let mut client = pg::connect(url).await.context("database: connecting")?;
    pg::migrate(&mut client)
        .await
        .context("database: migrating")?;
    let conflicts = judge(&client, config, &ledger, &rows).await?;
    drop(ledger);
    lap("judged");
    let batches = batches(rows, &conflicts);
    pg::upsert_event(
        &mut client,
        &config.event_id,
        &config.name,
        &device_rows(&package),
    )
    .await
    .context("database: event")?;
    let attendees = write_guest_list(&mut client, &package, event).await?;
    let source = format!("import {}", file.display());
    let run = pg::start_run(&client, &config.event_id, &source).await?;
    let (added, client) = write_all(url, client, &config.event_id, &batches).await?;
    pg::update_run(&client, run, records, added.scans, rejected, true).await?;
    lap("written");
    Ok(json!({
        "timings": timings,
        "event": "imported",
        "event_id": config.event_id,
        "exported_at": header.exported_at,
        "records": records,
        "rejected": rejected,
        "scans_added": added.scans,
        "tickets_added": added.tickets,
        "conflicts_added": added.conflicts,
        "rows_added": added.rows(),
        "batches": batches.len(),
        "attendees": attendees,
    }))
}

/// Double entries, judged on everything HQ holds for the event (what other exports or the live
/// bridge brought) and the file.
async fn judge(
    client: &pg::Client,
    config: &EventConfig,
    ledger: &gatemesh_crdt::Ledger,
    rows: &[ScanRow],
) -> anyhow::Result<HashMap<String, Vec<ConflictRow>>> {
    let held = pg::event_scans(client, &config.event_id)
        .await
        .context("database: reading the event's scans")?;
    let found = if held.is_empty() {
        // Nothing else held: the file's own replay is the whole truth.
        ledger.index().conflicts()
    } else {
        // The rules in force at HQ: the event file's as the package's bulletins changed them.
        let mut union = gatemesh_crdt::Index::new(ledger.index().rules().clone());
        for body in held.iter().chain(rows.iter()).filter_map(body_of) {
            union.insert(&body);
        }
        union.conflicts()
    };
    Ok(found
        .iter()
        .map(|c| (c.ticket_id.clone(), conflict_rows(c)))
        .collect())
}

/// Write batches on [`IMPORT_CONNECTIONS`] connections at once (batches hold disjoint
/// tickets). Returns what was added and a connection to go on with.
async fn write_all(
    url: &str,
    client: pg::Client,
    event_id: &str,
    batches: &[Batch],
) -> anyhow::Result<(Added, pg::Client)> {
    let mut writers = vec![client];
    for _ in 1..IMPORT_CONNECTIONS.min(batches.len().max(1)) {
        writers.push(pg::connect(url).await.context("database: connecting")?);
    }
    let lanes = writers.len();
    let results = futures::future::join_all(writers.into_iter().enumerate().map(
        |(lane, mut client)| async move {
            let mut added = Added::default();
            for b in batches.iter().skip(lane).step_by(lanes) {
                added.add(pg::write_batch(&mut client, event_id, b).await?);
            }
            Ok::<_, pg::BridgeError>((added, client))
        },
    ))
    .await;
    let mut added = Added::default();
    let mut clients = Vec::new();
    for r in results {
        let (a, c) = r.context("database: writing a batch")?;
        added.add(a);
        clients.push(c);
    }
    Ok((added, clients.swap_remove(0)))
}

/// Take an export's changes through the mesh's admission, on a ledger that knows the event
/// package's devices and bulletins (a revoked device's records count here as they do on the
/// nodes).
fn admit_export(
    package: &EventPackage,
    event_dir: &Path,
    bytes: &[u8],
) -> anyhow::Result<gatemesh_crdt::Ledger> {
    let (ledger, _) = gatemesh_crdt::gate::GateLogic::open_ledger(
        package,
        None,
        gatemesh_crdt::ChainId(0),
        &[],
        &[],
        std::iter::empty(),
        crate::now_ms(),
    )?;
    let mut gate = gatemesh_crdt::gate::GateLogic::new(package, ledger, None)?;
    let keys = package.config.organizer_verifying_keys()?;
    let (bulletins, _) = crate::package::load_bulletins(event_dir, &package.config.event_id, &keys);
    for b in &bulletins {
        gate.apply_bulletin(b)?;
    }
    let mut chunks = export::chunks(bytes);
    let now = crate::now_ms();
    loop {
        let batch: Vec<Vec<u8>> = chunks
            .by_ref()
            .take(IMPORT_BATCH_CHANGES)
            .map(<[u8]>::to_vec)
            .collect();
        if batch.is_empty() {
            break;
        }
        gate.ledger_mut().admit(now, 0, &batch);
    }
    if let Some(bad) = chunks.error() {
        bail!("{}: {bad}", bad.code());
    }
    Ok(gate.into_ledger())
}

fn print(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Ask the node's loop for a page of its journal.
async fn journal_page(
    calls: &tokio::sync::mpsc::Sender<ApiCall>,
    from: usize,
) -> anyhow::Result<Value> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    calls
        .send(ApiCall::Query {
            query: crate::api::Query::Journal {
                from,
                max: LIVE_PAGE_MAX,
            },
            reply,
        })
        .await
        .map_err(|_| anyhow::anyhow!("the node stopped"))?;
    rx.await?
        .map_err(|e| anyhow::anyhow!("journal: {}", e.message))
}

/// A page of the journal as one batch.
fn batch_of_page(page: &Value) -> Batch {
    let str_of = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let scans: Vec<ScanRow> = page["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["verdict"] != "room" && r["verdict"] != "pause")
        .map(|r| ScanRow {
            scan_id: str_of(r, "scan_id"),
            ticket_id: str_of(r, "ticket_id"),
            device_id: str_of(r, "device"),
            tier: str_of(r, "tier"),
            gate: str_of(r, "gate"),
            zone: str_of(r, "zone"),
            direction: str_of(r, "direction"),
            verdict: str_of(r, "verdict"),
            reason: str_of(r, "reason"),
            hlc: i64::try_from(r["hlc"].as_u64().unwrap_or(0)).unwrap_or(i64::MAX),
            device_time_ms: r["wall_ms"].as_u64().unwrap_or(0),
            annuls: r["annuls"].as_str().map(str::to_string),
            origin: r["origin"].as_str().map(str::to_string),
        })
        .collect();
    let mut tickets: Vec<String> = scans.iter().map(|s| s.ticket_id.clone()).collect();
    tickets.sort();
    tickets.dedup();
    let conflicts = page["conflicts"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            let entries: Vec<String> = c["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect();
            let ticket = str_of(c, "ticket_id");
            c["double_entries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str())
                .map(|d| ConflictRow {
                    ticket_id: ticket.clone(),
                    scan_id: d.to_string(),
                    entry_scan_ids: entries.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Batch {
        scans,
        tickets,
        conflicts,
    }
}

/// A database session of the live bridge.
struct Session {
    client: pg::Client,
    run: i64,
}

async fn open_session(url: &str, package: &EventPackage, event: &Path) -> anyhow::Result<Session> {
    let mut client = pg::connect(url).await?;
    pg::migrate(&mut client).await?;
    let config = &package.config;
    pg::upsert_event(
        &mut client,
        &config.event_id,
        &config.name,
        &device_rows(package),
    )
    .await?;
    write_guest_list(&mut client, package, event).await?;
    let run = pg::start_run(&client, &config.event_id, "live").await?;
    Ok(Session { client, run })
}

/// The live bridge: a read-only node of the mesh writing what it receives to PostgreSQL.
pub async fn run(opts: crate::node::NodeOptions, url: &str) -> anyhow::Result<()> {
    let package = crate::package::load(&opts.event)?;
    let event_id = package.config.event_id.clone();
    let (calls, rx) = tokio::sync::mpsc::channel(crate::api::API_QUEUE_MAX);
    let event = opts.event.clone();
    let mut node = tokio::spawn(crate::node::run_with(opts, calls.clone(), rx));
    let mut session: Option<Session> = None;
    let mut from = 0usize;
    let mut delay = LIVE_INTERVAL;
    loop {
        tokio::select! {
            r = &mut node => return r.context("the node task")?,
            _ = tokio::time::sleep(delay) => {}
        }
        if session.is_none() {
            match open_session(url, &package, &event).await {
                Ok(s) => {
                    print(json!({"event": "database_connected", "position": from}));
                    session = Some(s);
                    delay = LIVE_INTERVAL;
                }
                Err(e) => {
                    print(json!({"event": "database_unavailable", "message": format!("{e:#}")}));
                    delay = (delay * 2).min(RECONNECT_DELAY_MAX);
                    continue;
                }
            }
        }
        // Write every page that is waiting; the position moves only after a commit.
        loop {
            let page = journal_page(&calls, from).await?;
            let next = page["next"].as_u64().unwrap_or(from as u64) as usize;
            if next == from {
                break;
            }
            let batch = batch_of_page(&page);
            let Some(s) = session.as_mut() else { break };
            match pg::write_batch(&mut s.client, &event_id, &batch).await {
                Ok(added) => {
                    let _ = pg::update_run(
                        &s.client,
                        s.run,
                        batch.scans.len() as u64,
                        added.scans,
                        0,
                        false,
                    )
                    .await;
                    print(json!({"event": "bridged", "records": batch.scans.len(),
                        "scans_added": added.scans, "conflicts_added": added.conflicts,
                        "position": next}));
                    from = next;
                }
                Err(e) => {
                    print(
                        json!({"event": "database_unavailable", "message": e.to_string(), "position": from}),
                    );
                    session = None;
                    break;
                }
            }
        }
    }
}
