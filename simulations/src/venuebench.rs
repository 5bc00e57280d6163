//! `gatemesh-bench venue --profile P`: ten gate hosts in network namespaces on one bridge, each
//! link shaped to a venue profile (`gatemesh_tests::venue`: NFQUEUE and `gatemesh-shaper`,
//! checked by ping first), one node per host, found by mDNS.
//!
//! - `mesh_p50_ms` / `mesh_p95_ms` / `mesh_p99_ms`: a scan's answer from the gate's own node
//!   (code in on standard input, decision out), which no network crosses;
//! - `duplicate_window_p50_ms` / `_p99_ms`: from an admit's commit at one gate until every other
//!   gate has applied it (and so refuses the code);
//! - a 2|8 split held `split_seconds`, both sides scanning (the same tickets too): `heal_ms`
//!   until every node holds the same heads, `lost_records` (answered scans, admits and
//!   refusals, missing on some node after the heal: must be 0), `doubles_agree` (every node
//!   reports the same double entries).
//!
//! The seeds' central server in the same shaped network is not measured here (the loopback
//! comparison is `baseline`); its fields are absent rather than guessed.

use crate::meshbench::{converge, now_us, start_mesh};
use crate::report::percentile;
use gatemesh_tests::venue::profile;
use gatemesh_tests::Lan;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

pub struct VenueBench {
    pub profile: String,
    pub nodes: usize,
    /// Admits for the duplicate window, fed at `rate_per_s` round robin.
    pub scans: usize,
    pub rate_per_s: u32,
    pub split_seconds: u64,
    /// Scans on each side of the split.
    pub split_scans: usize,
}

pub fn run(b: &VenueBench) -> anyhow::Result<Map<String, Value>> {
    let p = profile(&b.profile).ok_or_else(|| anyhow::anyhow!("no profile {}", b.profile))?;
    anyhow::ensure!(b.nodes >= 3, "venue needs at least 3 nodes");
    let lan = Lan::new(b.nodes);
    let shaping = lan.shape(&p, 1800);
    let ping = shaping.check(&lan, &p).map_err(anyhow::Error::msg)?;
    let tmp = tempfile::tempdir()?;
    let started = Instant::now();
    let mut mesh = start_mesh(
        b.nodes,
        b.scans + 2 * b.split_scans + 40,
        tmp.path(),
        Some(&lan),
    )?;
    let discovery_s = started.elapsed().as_secs_f64();
    let mut answer = local_answers(&mut mesh, 20);
    let window = duplicate_window(&mut mesh, b)?;
    let split = split_and_heal(&mut mesh, &lan, b, 20 + b.scans)?;
    let mut m = Map::new();
    m.insert("bench".into(), json!("venue"));
    m.insert("profile".into(), json!(p.name));
    m.insert("nodes".into(), json!(b.nodes));
    m.insert("ping_rtt_ms".into(), json!(ping.avg_ms));
    m.insert("ping_loss".into(), json!(ping.loss));
    m.insert("discovery_s".into(), json!(discovery_s));
    m.insert("mesh_p50_ms".into(), json!(percentile(&mut answer, 50.0)));
    m.insert("mesh_p95_ms".into(), json!(percentile(&mut answer, 95.0)));
    m.insert("mesh_p99_ms".into(), json!(percentile(&mut answer, 99.0)));
    for (k, v) in window.into_iter().chain(split) {
        m.insert(k, v);
    }
    drop(shaping);
    Ok(m)
}

/// The answer time of `count` scans, each at its own gate's node (ms).
fn local_answers(mesh: &mut crate::meshbench::Mesh, count: usize) -> Vec<f64> {
    let n = mesh.nodes.len();
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let t = Instant::now();
        mesh.send_next(k % n);
        let node = &mut mesh.nodes[k % n];
        node.wait_for("a decision", |v| v["event"] == "scan");
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

/// Per admit: the time until the last other gate applied it (ms), p50 and p99.
fn duplicate_window(
    mesh: &mut crate::meshbench::Mesh,
    b: &VenueBench,
) -> anyhow::Result<Vec<(String, Value)>> {
    let t0 = now_us();
    mesh.feed(b.scans, b.rate_per_s, None);
    let (_, missing) = mesh.settle(t0, b.scans, Duration::from_secs(60));
    let others = mesh.nodes.len() - 1;
    let mut windows: Vec<f64> = mesh
        .admits_since(t0)
        .iter()
        .filter_map(|id| {
            let (_, at) = mesh.admits[id];
            let arr = mesh.arrivals.get(id)?;
            (arr.len() >= others).then(|| {
                let last = arr.iter().max().copied().unwrap_or(at);
                last.saturating_sub(at) as f64 / 1000.0
            })
        })
        .collect();
    Ok(vec![
        ("window_admits".into(), json!(windows.len())),
        ("window_missing_deliveries".into(), json!(missing)),
        (
            "duplicate_window_p50_ms".into(),
            json!(percentile(&mut windows, 50.0)),
        ),
        (
            "duplicate_window_p99_ms".into(),
            json!(percentile(&mut windows, 99.0)),
        ),
    ])
}

/// Hosts 0 and 1 on one side, the rest on the other, for `split_seconds`; both sides scan
/// fresh tickets and the same ones; then the heal.
fn split_and_heal(
    mesh: &mut crate::meshbench::Mesh,
    lan: &Lan,
    b: &VenueBench,
    records_before: usize,
) -> anyhow::Result<Vec<(String, Value)>> {
    let n = mesh.nodes.len();
    lan.attach(0, 1);
    lan.attach(1, 1);
    let small: Vec<usize> = vec![0, 1];
    let large: Vec<usize> = (2..n).collect();
    let t0 = now_us();
    // The same tickets on both sides: the small side first, then the large side gets them too.
    let shared = b.split_scans.min(10);
    mesh.feed(b.split_scans, 0, Some(&small));
    mesh.rewind(b.split_scans);
    mesh.feed(shared, 0, Some(&large));
    mesh.skip(b.split_scans - shared);
    mesh.feed(b.split_scans, 0, Some(&large));
    std::thread::sleep(Duration::from_secs(b.split_seconds));
    mesh.collect();
    let admitted = mesh.admits_since(t0).len();
    lan.attach(0, 0);
    lan.attach(1, 0);
    let heal_ms = converge(mesh);
    mesh.collect();
    // Every scan answered is a record (admit or refusal); after the heal each node must hold
    // them all.
    let expected = records_before + 2 * b.split_scans + shared;
    let mut conflicts = Vec::new();
    let mut records = Vec::new();
    for node in mesh.nodes.iter_mut() {
        let s = node.status();
        records.push(s["records"].as_u64().unwrap_or(0) as usize);
        conflicts.push(s["conflicts"].clone());
    }
    let lost = expected.saturating_sub(records.iter().copied().min().unwrap_or(0));
    let doubles = conflicts[0].as_array().map_or(0, |c| {
        c.iter()
            .map(|x| x["double_entries"].as_array().map_or(0, Vec::len))
            .sum()
    });
    Ok(vec![
        ("split_seconds".into(), json!(b.split_seconds)),
        ("split_admits".into(), json!(admitted)),
        ("heal_ms".into(), json!(heal_ms)),
        ("lost_records".into(), json!(lost)),
        ("split_double_entries".into(), json!(doubles)),
        (
            "doubles_agree".into(),
            json!(conflicts.windows(2).all(|w| w[0] == w[1])),
        ),
        (
            "records_agree".into(),
            json!(records.windows(2).all(|w| w[0] == w[1])),
        ),
    ])
}
