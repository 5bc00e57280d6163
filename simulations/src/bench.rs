//! The benchmarks of the foundation: `ledger` (record, remote apply, memory, load at scale) and
//! `decide` (the full scan path with a durable write).

use crate::report::{percentile, rss_bytes};
use ed25519_dalek::SigningKey;
use gatemesh_crdt::certificate::Role;
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

/// `ledger`: `n` redemptions on `n` tickets recorded by replica A, each change applied one at a
/// time by replica B; B's memory; B restarted from a store snapshot.
pub fn ledger(n: usize, heap: HeapBytes) -> anyhow::Result<Map<String, Value>> {
    let mut roster = Roster::default();
    for d in 1..=2u8 {
        roster.insert(RosterDevice {
            key: SigningKey::from_bytes(&[d; 32]).verifying_key(),
            name: format!("d{d}"),
            cut: None,
        });
    }
    let heap_before = heap();
    let rss_before = rss_bytes();
    let mut a = replica(1, &roster);
    let mut b = replica(2, &roster);
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
    let heap_both = heap();
    drop(a);
    let heap_b = heap().saturating_sub(heap_before);
    let rss_after = rss_bytes();
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path())?;
    let all: Vec<Vec<u8>> = b.changes().map(<[u8]>::to_vec).collect();
    for chunk in all.chunks(4096) {
        store.append_relaxed(chunk)?;
    }
    store.flush()?;
    drop(all);
    drop(store);
    let roster_b = b.roster().clone();
    drop(b);
    let start = Instant::now();
    let store = Store::open(dir.path())?;
    let stored: Vec<sled::IVec> = store.changes().collect::<Result<_, _>>()?;
    let rules = HashMap::from([("general".to_string(), EntryRule::default())]);
    let mut reloaded = Ledger::new(EVENT, roster_b, rules, None);
    let refused = reloaded.restore(stored.iter().map(|c| c.as_ref()));
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(refused == 0, "reload refused {refused} changes");
    anyhow::ensure!(reloaded.index().len() == n as u64, "reload lost records");
    let mut m = Map::new();
    m.insert("bench".into(), json!("ledger"));
    m.insert("redemptions".into(), json!(n));
    m.insert(
        "record_p50_us".into(),
        json!(percentile(&mut record_us, 50.0)),
    );
    m.insert(
        "record_p99_us".into(),
        json!(percentile(&mut record_us, 99.0)),
    );
    m.insert(
        "apply_p50_us".into(),
        json!(percentile(&mut apply_us, 50.0)),
    );
    m.insert(
        "apply_p99_us".into(),
        json!(percentile(&mut apply_us, 99.0)),
    );
    m.insert(
        "bytes_per_redemption".into(),
        json!(heap_b as f64 / n as f64),
    );
    m.insert(
        "heap_both_replicas_bytes".into(),
        json!(heap_both.saturating_sub(heap_before)),
    );
    m.insert(
        "rss_growth_per_redemption_two_replicas".into(),
        json!(rss_after.saturating_sub(rss_before) as f64 / n as f64),
    );
    m.insert("load_ms".into(), json!(load_ms));
    m.insert(
        "store_bytes".into(),
        json!(stored.iter().map(|c| c.len()).sum::<usize>()),
    );
    Ok(m)
}

/// `decide`: the full path for one scan (parse, verify, policy, record, durable write) on a real
/// event package and a real sled store holding `held` redemptions already.
pub fn decide(held: usize, scans: usize) -> anyhow::Result<Map<String, Value>> {
    let dir = tempfile::tempdir()?;
    let ev = dir.path().join("event");
    event_create(&ev, "Bench Fest", None, None, None)?;
    let opts = IssueOptions {
        count: (held + scans) as u32,
        tier: "general".into(),
        format: TicketFormat::Gm1,
        key_id: None,
        nfc: false,
        qr: false,
        hmac_secret_file: None,
        named: None,
    };
    let issued = tickets_issue(&ev, &dir.path().join("tickets"), &opts)?;
    device_enroll(&ev, "gate-a", Role::Scanner, &dir.path().join("device"))?;
    let data = dir.path().join("data");
    prefill(&ev, &dir.path().join("device"), &data, &issued[..held])?;
    let mut dev = open_device(&ev, Some(&dir.path().join("device")), &data, None)?;
    anyhow::ensure!(
        dev.gate.ledger().index().len() == held as u64,
        "prefill did not reload"
    );
    let mut samples = Vec::with_capacity(scans);
    for t in &issued[held..] {
        let start = Instant::now();
        let outcome = dev.gate.scan(
            gatemesh_node::now_ms(),
            ScanRequest {
                code: t.code.as_bytes(),
                gate: "north",
                direction: None,
            },
        )?;
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
    let mut m = Map::new();
    m.insert("bench".into(), json!("decide"));
    m.insert("redemptions".into(), json!(held));
    m.insert("scans".into(), json!(scans));
    m.insert("p50_us".into(), json!(percentile(&mut samples, 50.0)));
    m.insert("p95_us".into(), json!(percentile(&mut samples, 95.0)));
    m.insert("p99_us".into(), json!(percentile(&mut samples, 99.0)));
    Ok(m)
}

/// Admit `tickets` through the real gate, durable in batches (one fsync per 1,000), then
/// snapshot, so the timed scans start from a store like a node's after `held` scans.
fn prefill(
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
                },
            )?;
            changes.extend(out.change);
        }
        dev.store.append(&changes)?;
    }
    dev.store.flush()?;
    Ok(())
}
