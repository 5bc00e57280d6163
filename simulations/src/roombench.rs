//! `gatemesh-bench room --profile P`: room of a strict zone moving between two gates on a shaped
//! venue network (`gatemesh_tests::venue`, NFQUEUE and `gatemesh-shaper`, checked by ping
//! first). Zone main is strict at 100,000 places, all held at the start by gate h0; gate h1
//! scans fresh tickets every [`SCAN_EVERY`] (a busy gate), so it runs short again and again and
//! asks h0.
//!
//! - `transfer_p50_ms` / `_p95_ms` / `_max_ms`: from h1 asking (`room_asked`) to the room
//!   arriving at h1 (`room_received`), both on h1's clock: one round over the shaped link, h0's
//!   durable write of the room record, the answer (or its gossip) back;
//! - `refused`: h1's scans refused `zone_full` meanwhile (room had not come in time).

use crate::report::percentile;
use gatemesh_tests::venue::profile;
use gatemesh_tests::{make_event, Lan, NodeProc};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The pace of gate h1's scans: ten a second, a busy lane.
const SCAN_EVERY: Duration = Duration::from_millis(100);

pub struct RoomBench {
    pub profile: String,
    pub transfers: usize,
}

pub fn run(b: &RoomBench) -> anyhow::Result<Map<String, Value>> {
    let p = profile(&b.profile).ok_or_else(|| anyhow::anyhow!("no profile {}", b.profile))?;
    let lan = Lan::new(2);
    let mut shaping = lan.shape(&p, 900);
    let ping = shaping.check(&lan, &p).map_err(anyhow::Error::msg)?;
    let tmp = tempfile::tempdir()?;
    let ev = tmp.path().join("event");
    // Each transfer brings 2 × the low water (8): h1 spends 9 before it asks again.
    let scans = b.transfers * 9 + 9;
    let codes = make_event(&ev, scans as u32, &["h0", "h1"], false);
    gatemesh_tests::make_strict(&ev, "main", 100_000, &["h0"]);
    let start = |i: usize| NodeProc::start_on(&lan, i, &ev, &format!("h{i}"), tmp.path(), &[]);
    let (mut h0, mut h1) = (start(0), start(1));
    h0.wait_peers(1);
    h1.wait_peers(1);
    let mut refused = 0;
    for (_, code) in &codes {
        let d = h1.scan(code);
        refused += usize::from(d["reason"] == "zone_full");
        h0.drain();
        std::thread::sleep(SCAN_EVERY);
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut events = std::mem::take(&mut h1.seen);
    events.extend(h1.drain());
    let mut ms = transfers(&events);
    shaping.alive().map_err(anyhow::Error::msg)?;
    let mut m = Map::new();
    m.insert("bench".into(), json!("room"));
    m.insert("profile".into(), json!(p.name));
    m.insert("ping_rtt_ms".into(), json!(ping.avg_ms));
    m.insert("transfers".into(), json!(ms.len()));
    m.insert("transfer_p50_ms".into(), json!(percentile(&mut ms, 50.0)));
    m.insert("transfer_p95_ms".into(), json!(percentile(&mut ms, 95.0)));
    m.insert("transfer_max_ms".into(), json!(percentile(&mut ms, 100.0)));
    m.insert("refused".into(), json!(refused));
    Ok(m)
}

/// Each room arrival's delay after the ask before it (ms).
fn transfers(events: &[Value]) -> Vec<f64> {
    let mut asked: Option<u64> = None;
    let mut out = Vec::new();
    for e in events {
        let at = e["at_us"].as_u64().unwrap_or(0);
        match e["event"].as_str() {
            Some("room_asked") => {
                asked.get_or_insert(at);
            }
            Some("room_received") => {
                if let Some(a) = asked.take() {
                    out.push(at.saturating_sub(a) as f64 / 1000.0);
                }
            }
            _ => {}
        }
    }
    out
}
