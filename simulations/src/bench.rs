//! The benchmarks of the foundation: `ledger` (record, remote apply, memory, load at scale) and
//! `decide` (the full scan path with a durable write).

use crate::report::{percentile, rss_bytes};
use ed25519_dalek::SigningKey;
use gatemesh_crdt::event::certificate::Role;
use gatemesh_crdt::gate::ScanRequest;
use gatemesh_crdt::{
    Direction, Draft, EntryRule, Ledger, LocalDevice, Roster, RosterDevice, Verdict,
};
use gatemesh_node::device::open as open_device;
use gatemesh_node::organizer::{
    device_enroll, event_create, tickets_issue, IssueOptions, TicketFormat,
};
use gatemesh_node::store::Store;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Instant;

/// Live heap bytes, as counted by the benchmark binary's allocator (0 where not counted).
pub type HeapBytes = fn() -> u64;

fn draft(ticket: String, gate: &str) -> Draft {
    Draft {
        ticket_id: ticket,
        tier: "general".into(),
        gate: gate.into(),
        zone: "main".into(),
        direction: Direction::In,
        verdict: Verdict::Admit,
        reason: "ok".into(),
        seen: Vec::new(),
        annuls: None,
        origin: None,
        wall_ms: None,
    }
}

const EVENT: &str = "bench";

fn replica(n: u8, roster: &Roster) -> Ledger {
    let rules = HashMap::from([("general".to_string(), EntryRule::default())]);
    let local = LocalDevice {
        key: SigningKey::from_bytes(&[n; 32]),
        chain: gatemesh_crdt::ChainId(u32::from(n)),
    };
    Ledger::new(EVENT, roster.clone(), rules, Some(local))
}

fn bench_roster() -> Roster {
    let mut roster = Roster::default();
    for d in 1..=2u8 {
        roster.insert(RosterDevice {
            key: SigningKey::from_bytes(&[d; 32]).verifying_key(),
            name: format!("d{d}"),
            cut: None,
            supervisor: true,
        });
    }
    roster
}

/// CPU seconds this process has used (every thread, sled's included): utime + stime of
/// /proc/self/stat, in USER_HZ ticks (100 per second on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with the last ')'): utime is the 12th, stime
    // the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<u64>() as f64 / 100.0
}

/// A records `n` redemptions; B admits each change alone as it comes. The record and apply
/// times (µs; apply over the last tenth).
fn fill(a: &mut Ledger, b: &mut Ledger, n: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut record_us = Vec::with_capacity(n);
    let mut apply_us = Vec::with_capacity(n / 10 + 1);
    let t0 = 1_800_000_000_000u64;
    for i in 0..n {
        let now = t0 + i as u64;
        let start = Instant::now();
        let (_, change) = a.record(now, draft(format!("T{i:07}"), "north"))?;
        record_us.push(start.elapsed().as_secs_f64() * 1e6);
        let start = Instant::now();
        let applied = b.admit(now, 1, &[change]);
        let took = start.elapsed().as_secs_f64() * 1e6;
        anyhow::ensure!(applied.records.len() == 1, "change {i} did not apply");
        if i >= n - n / 10 {
            apply_us.push(took);
        }
    }
    Ok((record_us, apply_us))
}

/// Write what `b` holds to a store at `dir`, as a node does (relaxed batches, one flush).
fn save(b: &Ledger, dir: &std::path::Path) -> anyhow::Result<()> {
    let mut store = Store::open(dir)?;
    let all: Vec<Vec<u8>> = b.changes().map(<[u8]>::to_vec).collect();
    for chunk in all.chunks(4096) {
        store.append_relaxed(chunk)?;
    }
    store.flush()?;
    Ok(())
}

/// Restart from the store: every change read, checked and indexed, as a node opening its store
/// does. Milliseconds, store bytes.
fn reload(dir: &std::path::Path, roster: Roster, n: usize) -> anyhow::Result<(f64, usize)> {
    let start = Instant::now();
    let store = Store::open(dir)?;
    let stored: Vec<Vec<u8>> = store.changes().collect::<Result<_, _>>()?;
    let rules = HashMap::from([("general".to_string(), EntryRule::default())]);
    let mut reloaded = Ledger::new(EVENT, roster, rules, None);
    let refused = reloaded.restore(gatemesh_node::now_ms(), stored.iter().map(Vec::as_slice));
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(refused == 0, "reload refused {refused} changes");
    anyhow::ensure!(reloaded.index().len() == n as u64, "reload lost records");
    Ok((load_ms, stored.iter().map(|c| c.len()).sum()))
}

/// Changes a sync message carries at most in this benchmark (about 1 MiB of changes).
const REMOTE_BATCH: usize = 1024;

/// CPU a node spends per remote record: a fresh node admits every stored change as sync
/// brings them (batches of [`REMOTE_BATCH`]: decode, check, verify, chain, index) and persists
/// each batch to its own store (relaxed, as received changes are), then flushes. µs per record.
fn remote_cpu_us(dir: &std::path::Path, roster: Roster, n: usize) -> anyhow::Result<f64> {
    let stored: Vec<Vec<u8>> = Store::open(dir)?.changes().collect::<Result<_, _>>()?;
    let target = tempfile::tempdir()?;
    let mut store = Store::open(target.path())?;
    let rules = HashMap::from([("general".to_string(), EntryRule::default())]);
    let mut fresh = Ledger::new(EVENT, roster, rules, None);
    let cpu0 = cpu_seconds();
    for chunk in stored.chunks(REMOTE_BATCH) {
        let admitted = fresh.admit(1_900_000_000_000, 1, chunk);
        store.append_relaxed(&admitted.persist)?;
    }
    store.flush()?;
    let cpu = cpu_seconds() - cpu0;
    anyhow::ensure!(
        fresh.index().len() == n as u64,
        "remote admission lost records"
    );
    Ok(cpu * 1e6 / n as f64)
}

/// `ledger`: `n` redemptions on `n` tickets recorded by replica A, each change applied one at a
/// time by replica B; B's memory; B restarted from its store; the CPU a fresh node spends per
/// record receiving them all.
pub fn ledger(n: usize, heap: HeapBytes) -> anyhow::Result<Map<String, Value>> {
    let roster = bench_roster();
    let heap_before = heap();
    let rss_before = rss_bytes();
    let mut a = replica(1, &roster);
    let mut b = replica(2, &roster);
    let (mut record_us, mut apply_us) = fill(&mut a, &mut b, n)?;
    let heap_both = heap();
    drop(a);
    let heap_b = heap().saturating_sub(heap_before);
    let rss_after = rss_bytes();
    let dir = tempfile::tempdir()?;
    save(&b, dir.path())?;
    drop(b);
    let (load_ms, store_bytes) = reload(dir.path(), roster.clone(), n)?;
    let remote_cpu = remote_cpu_us(dir.path(), roster, n)?;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| m.insert(k.into(), v);
    put("bench", json!("ledger"));
    put("redemptions", json!(n));
    put("record_p50_us", json!(percentile(&mut record_us, 50.0)));
    put("record_p99_us", json!(percentile(&mut record_us, 99.0)));
    put("apply_p50_us", json!(percentile(&mut apply_us, 50.0)));
    put("apply_p99_us", json!(percentile(&mut apply_us, 99.0)));
    put("bytes_per_redemption", json!(heap_b as f64 / n as f64));
    put(
        "heap_both_replicas_bytes",
        json!(heap_both.saturating_sub(heap_before)),
    );
    put(
        "rss_growth_per_redemption_two_replicas",
        json!(rss_after.saturating_sub(rss_before) as f64 / n as f64),
    );
    put("load_ms", json!(load_ms));
    put("store_bytes", json!(store_bytes));
    put("remote_cpu_us_per_record", json!(remote_cpu));
    let (hot_admits_ms, hot_denials_ms) = (
        hot_ticket(HOT_RECORDS, Verdict::Admit)?,
        hot_ticket(HOT_RECORDS, Verdict::Deny)?,
    );
    put("hot_ticket_records", json!(HOT_RECORDS));
    put("hot_ticket_admits_restore_ms", json!(hot_admits_ms));
    put("hot_ticket_denials_restore_ms", json!(hot_denials_ms));
    Ok(m)
}

/// Records on one ticket in the hot-ticket measure (a camera held on one code; a stolen scanner
/// writing admits of one ticket).
const HOT_RECORDS: usize = 40_000;

/// A restart of a ledger holding `n` records of one verdict on one ticket (ms): every change
/// restored and indexed, as a node opening its store does.
fn hot_ticket(n: usize, verdict: Verdict) -> anyhow::Result<f64> {
    let roster = bench_roster();
    let mut a = replica(1, &roster);
    let t0 = 1_800_000_000_000u64;
    let mut changes = Vec::with_capacity(n);
    for i in 0..n {
        let mut d = draft("HOT".into(), "north");
        d.verdict = verdict;
        changes.push(a.record(t0 + i as u64, d)?.1);
    }
    let rules = HashMap::from([("general".to_string(), EntryRule::default())]);
    let start = Instant::now();
    let mut back = Ledger::new(EVENT, roster, rules, None);
    let refused = back.restore(t0 + n as u64, changes.iter().map(Vec::as_slice));
    let ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(
        refused == 0 && back.index().len() == n as u64,
        "hot ticket lost records"
    );
    Ok(ms)
}

/// `decide`: the full path for one scan (parse, verify, policy, record, durable write) on a real
/// event package and a real sled store holding `held` redemptions already; with `strict`, zone
/// main is strict (its room all held by the gate, for every admit), so each scan also works out
/// the zone's room from its `held` entries.
pub fn decide(
    held: usize,
    scans: usize,
    rotating: bool,
    strict: bool,
) -> anyhow::Result<Map<String, Value>> {
    let dir = tempfile::tempdir()?;
    let ev = dir.path().join("event");
    event_create(&ev, "Bench Fest", None, None, None)?;
    let issue = |count: usize, format| {
        let opts = IssueOptions {
            count: count as u32,
            tier: "general".into(),
            format,
            key_id: None,
            nfc: false,
            qr: false,
            hmac_secret_file: None,
            named: None,
        };
        tickets_issue(&ev, &dir.path().join("tickets"), &opts)
    };
    let held_tickets = issue(held, TicketFormat::Gm1)?;
    let timed = issue(
        scans,
        if rotating {
            TicketFormat::Rotating
        } else {
            TicketFormat::Gm1
        },
    )?;
    device_enroll(&ev, "gate-a", Role::Scanner, &dir.path().join("device"))?;
    if strict {
        gatemesh_node::organizer::event_strict(&ev, "main", (held + scans) as u64, &[])?;
    }
    let data = dir.path().join("data");
    prefill(&ev, &dir.path().join("device"), &data, &held_tickets)?;
    let mut dev = open_device(&ev, Some(&dir.path().join("device")), &data, None)?;
    anyhow::ensure!(
        dev.gate.ledger().index().len() == held as u64,
        "prefill did not reload"
    );
    let (mut samples, qr_version) = time_scans(&mut dev, &timed)?;
    let mut m = Map::new();
    m.insert(
        "bench".into(),
        json!(match (rotating, strict) {
            (true, _) => "decide-rotating",
            (false, true) => "decide-strict",
            (false, false) => "decide",
        }),
    );
    m.insert("strict".into(), json!(strict));
    m.insert("redemptions".into(), json!(held));
    m.insert("scans".into(), json!(scans));
    m.insert("qr_version".into(), json!(qr_version));
    m.insert("p50_us".into(), json!(percentile(&mut samples, 50.0)));
    m.insert("p95_us".into(), json!(percentile(&mut samples, 95.0)));
    m.insert("p99_us".into(), json!(percentile(&mut samples, 99.0)));
    Ok(m)
}

/// Scan each of `timed` through the gate, each made durable: the latencies (µs) and the largest
/// QR version among the codes.
fn time_scans(
    dev: &mut gatemesh_node::device::OpenDevice,
    timed: &[gatemesh_node::organizer::Issued],
) -> anyhow::Result<(Vec<f64>, i16)> {
    let mut samples = Vec::with_capacity(timed.len());
    let mut qr_version = 0;
    for t in timed {
        let now = gatemesh_node::now_ms();
        let code = match &t.holder {
            Some(secret) => live_code(t, secret, now)?,
            None => t.code.clone(),
        };
        qr_version = qr_version.max(gatemesh_node::qr::version(&code).unwrap_or(0));
        let start = Instant::now();
        let req = ScanRequest {
            code: code.as_bytes(),
            gate: "north",
            direction: None,
            manual: false,
            origin: None,
        };
        let outcome = dev.gate.scan(now, req)?;
        if let Some(change) = outcome.change {
            dev.store.append(&[change])?;
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            outcome.decision.reason.code() == "ok",
            "bench ticket denied: {}",
            outcome.decision.message
        );
    }
    Ok((samples, qr_version))
}

/// The live code a rotating ticket's wallet shows at `now_ms`.
fn live_code(
    t: &gatemesh_node::organizer::Issued,
    secret: &[u8; 32],
    now_ms: u64,
) -> anyhow::Result<String> {
    use gatemesh_crdt::credential::rotating;
    let b32 = t
        .code
        .strip_prefix(rotating::STATIC_PREFIX)
        .unwrap_or_default();
    let part = data_encoding::BASE32_NOPAD.decode(b32.as_bytes())?;
    let key = ed25519_dalek::SigningKey::from_bytes(secret);
    Ok(rotating::live_code(
        &part,
        &t.ticket_id,
        &key,
        rotating::step_of(now_ms),
    ))
}

/// Admit `tickets` through the real gate, durable in batches (one fsync per 1,000), then
/// snapshot, so the timed scans start from a store like a node's after `held` scans.
pub fn prefill(
    ev: &std::path::Path,
    device: &std::path::Path,
    data: &std::path::Path,
    tickets: &[gatemesh_node::organizer::Issued],
) -> anyhow::Result<()> {
    let mut dev = open_device(ev, Some(device), data, None)?;
    for chunk in tickets.chunks(1000) {
        let mut changes = Vec::with_capacity(chunk.len());
        for t in chunk {
            let out = dev.gate.scan(
                gatemesh_node::now_ms(),
                ScanRequest {
                    code: t.code.as_bytes(),
                    gate: "south",
                    direction: None,
                    manual: false,
                    origin: None,
                },
            )?;
            changes.extend(out.change);
        }
        dev.store.append(&changes)?;
    }
    dev.store.flush()?;
    Ok(())
}
