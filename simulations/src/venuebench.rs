//! `gatemesh-bench venue --profile P`: ten gate hosts and a central server's host in network
//! namespaces on one bridge, every host's link shaped to a venue profile
//! (`gatemesh_tests::venue`: NFQUEUE and `gatemesh-shaper`, checked by ping first), one node
//! per gate host, found by mDNS.
//!
//! - `mesh_p50_ms` / `_p95_ms` / `_p99_ms`: each gate's scanner, on its gate's host, posts scans
//!   at a steady pace to its own node (`POST /api/scan` on the host's loopback: no shaped link
//!   is crossed); the answer's time, the durable write included;
//! - `central_p50_ms` / `_p95_ms` / `_p99_ms`: the same scanners, the same pace, fresh tickets,
//!   to the seeds' central server (`crate::baseline`: axum, PostgreSQL with fsync, one
//!   transaction per scan) on its own host behind the same shaped network; `ratio_p95` is
//!   central / mesh. A scan unanswered within [`SCAN_LIMIT`] counts in `*_failed`;
//! - `duplicate_window_p50_ms` / `_p99_ms`: from an admit's commit at one gate until every other
//!   gate has applied it (and so refuses the code);
//! - a 2|8 split held `split_seconds`, both sides scanning (the same tickets too): `heal_ms`
//!   until every node holds the same heads, `doubles_agree` (every node reports the same double
//!   entries);
//! - the outage: every host off the bridge; each gate's scanner tries fresh tickets on the
//!   central server (`central_outage_admits`) and on its own node (`mesh_outage_admits`); then
//!   the network returns and `outage_heal_ms`;
//! - at the end, `lost_admits` (admits answered at one gate and missing from some node) and
//!   `lost_records` (answered scans, admits and refusals, missing from some node): must be 0.

use crate::baseline::CentralServer;
use crate::httpbench::{paced_client, Paced};
use crate::meshbench::{converge, now_us, start_mesh, Mesh};
use crate::report::percentile;
use gatemesh_tests::venue::profile;
use gatemesh_tests::{Lan, PgCluster};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// Scans each gate's scanner sends for the answer times, to its node and to the central server.
const ANSWER_SCANS_PER_GATE: usize = 20;
/// A gate scanner's pace.
const SCAN_EVERY: Duration = Duration::from_millis(500);
/// How long a scanner waits for a connection or an answer before it counts the scan failed.
const SCAN_LIMIT: Duration = Duration::from_secs(5);
/// Scans each gate's scanner tries on each side while the network is down.
const OUTAGE_SCANS_PER_GATE: usize = 3;

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
    // The hosts are 10.77.0.1 up, the central server one more.
    anyhow::ensure!((3..=250).contains(&b.nodes), "venue needs 3 to 250 nodes");
    // Hosts 0..nodes are the gates; the last one is the central server's.
    let lan = Lan::new(b.nodes + 1);
    let mut shaping = lan.shape(&p, 1800);
    let ping = shaping.check(&lan, &p).map_err(anyhow::Error::msg)?;
    let tmp = tempfile::tempdir()?;
    let started = Instant::now();
    let codes =
        b.nodes * 2 * (ANSWER_SCANS_PER_GATE + OUTAGE_SCANS_PER_GATE) + b.scans + 2 * b.split_scans;
    let mut mesh = start_mesh(b.nodes, codes, tmp.path(), Some(&lan))?;
    let discovery_s = started.elapsed().as_secs_f64();
    let central = CentralHost::start(&lan, b.nodes, &mesh, &tmp.path().join("event"))?;
    let mut m = Map::new();
    m.insert("bench".into(), json!("venue"));
    m.insert("profile".into(), json!(p.name));
    m.insert("nodes".into(), json!(b.nodes));
    m.insert("ping_rtt_ms".into(), json!(ping.avg_ms));
    m.insert("ping_loss".into(), json!(ping.loss));
    m.insert("discovery_s".into(), json!(discovery_s));
    let phases = [
        answers(&mut mesh, &lan, &central)?,
        duplicate_window(&mut mesh, b)?,
        split_and_heal(&mut mesh, &lan, b)?,
        outage(&mut mesh, &lan, &central)?,
        lost(&mut mesh),
    ];
    m.extend(phases.into_iter().flatten());
    central.stop();
    shaping.alive().map_err(anyhow::Error::msg)?;
    drop(shaping);
    Ok(m)
}

/// The seeds' central design on the LAN's last host: the server's socket lives in that host's
/// namespace, behind its shaper like every host's; its PostgreSQL sits beside it, unshaped, as a
/// server's own database does.
struct CentralHost {
    addr: String,
    server: CentralServer,
    rt: tokio::runtime::Runtime,
    _pg: PgCluster,
}

impl CentralHost {
    fn start(
        lan: &Lan,
        host: usize,
        mesh: &Mesh,
        event: &std::path::Path,
    ) -> anyhow::Result<CentralHost> {
        let pg = PgCluster::start_with(true);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let bind = format!("10.77.0.{}:0", host + 1);
        let listener = lan
            .spawn_in(host, move || std::net::TcpListener::bind(bind))
            .join()
            .map_err(|_| anyhow::anyhow!("binding on the central host failed"))??;
        let package = gatemesh_node::package::load(event)?;
        let ids: Vec<&str> = mesh.tickets.iter().map(|(t, _)| t.as_str()).collect();
        let server = rt.block_on(CentralServer::serve(&pg.url, listener, package, &ids))?;
        Ok(CentralHost {
            addr: server.addr.clone(),
            server,
            rt,
            _pg: pg,
        })
    }

    fn stop(self) {
        self.rt.block_on(self.server.stop());
    }
}

/// Every gate's scanner at once, each on its gate's host, `per_gate` of `codes` to `target`
/// (address and path by gate), one scan every [`SCAN_EVERY`] at each gate, the gates' scans
/// evenly spread; the nodes' output read meanwhile. What they saw, together.
fn scanners(
    mesh: &mut Mesh,
    lan: &Lan,
    codes: &[String],
    per_gate: usize,
    target: impl Fn(usize) -> (String, &'static str),
) -> anyhow::Result<Paced> {
    let gates = mesh.nodes.len() as u32;
    let handles: Vec<_> = codes
        .chunks(per_gate)
        .enumerate()
        .map(|(gate, chunk)| {
            let ((addr, path), chunk) = (target(gate), chunk.to_vec());
            // The gates' scans spread evenly over each period: a steady rate for the venue.
            let pace = (SCAN_EVERY, SCAN_EVERY * gate as u32 / gates);
            lan.spawn_in(gate, move || {
                paced_client(&addr, path, &chunk, pace, SCAN_LIMIT)
            })
        })
        .collect();
    while !handles.iter().all(|h| h.is_finished()) {
        mesh.collect();
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut all = Paced::default();
    for h in handles {
        let p = h.join().map_err(|_| anyhow::anyhow!("a scanner failed"))?;
        all.admit_ms.extend(p.admit_ms);
        all.failed += p.failed;
    }
    mesh.collect();
    Ok(all)
}

/// The answer times: every gate's scanner to its own node, then to the central server.
fn answers(
    mesh: &mut Mesh,
    lan: &Lan,
    central: &CentralHost,
) -> anyhow::Result<Vec<(String, Value)>> {
    let per = ANSWER_SCANS_PER_GATE;
    let codes = mesh.take(mesh.nodes.len() * per);
    let http = mesh.http.clone();
    let mut local = scanners(mesh, lan, &codes, per, |g| (http[g].clone(), "/api/scan"))?;
    let codes = mesh.take(mesh.nodes.len() * per);
    let mut remote = scanners(mesh, lan, &codes, per, |_| (central.addr.clone(), "/scan"))?;
    let mut out = Vec::new();
    for (side, p) in [("mesh", &mut local), ("central", &mut remote)] {
        for q in [50.0, 95.0, 99.0] {
            let v = percentile(&mut p.admit_ms, q);
            out.push((format!("{side}_p{q}_ms"), json!(v)));
        }
        out.push((format!("{side}_failed"), json!(p.failed)));
    }
    let ratio = percentile(&mut remote.admit_ms, 95.0) / percentile(&mut local.admit_ms, 95.0);
    out.push(("ratio_p95".into(), json!(ratio)));
    out.push(("answer_scans".into(), json!(codes.len())));
    Ok(out)
}

/// Per admit: the time until the last other gate applied it (ms), p50 and p99.
fn duplicate_window(mesh: &mut Mesh, b: &VenueBench) -> anyhow::Result<Vec<(String, Value)>> {
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
                let last = arr.iter().map(|(_, t)| *t).max().unwrap_or(at);
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
    mesh: &mut Mesh,
    lan: &Lan,
    b: &VenueBench,
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
    let conflicts: Vec<Value> = mesh
        .nodes
        .iter_mut()
        .map(|node| node.status()["conflicts"].clone())
        .collect();
    let doubles = conflicts[0].as_array().map_or(0, |c| {
        c.iter()
            .map(|x| x["double_entries"].as_array().map_or(0, Vec::len))
            .sum()
    });
    Ok(vec![
        ("split_seconds".into(), json!(b.split_seconds)),
        ("split_admits".into(), json!(admitted)),
        ("heal_ms".into(), json!(heal_ms)),
        ("split_double_entries".into(), json!(doubles)),
        (
            "doubles_agree".into(),
            json!(conflicts.windows(2).all(|w| w[0] == w[1])),
        ),
    ])
}

/// The venue network down (every host off the bridge, the central server's too): each gate's
/// scanner tries fresh tickets on the central server, then on its own node; then the network
/// returns and the nodes heal.
fn outage(
    mesh: &mut Mesh,
    lan: &Lan,
    central: &CentralHost,
) -> anyhow::Result<Vec<(String, Value)>> {
    let hosts = mesh.nodes.len() + 1;
    (0..hosts).for_each(|i| lan.detach(i));
    let per = OUTAGE_SCANS_PER_GATE;
    let codes = mesh.take(mesh.nodes.len() * per);
    let remote = scanners(mesh, lan, &codes, per, |_| (central.addr.clone(), "/scan"))?;
    let codes = mesh.take(mesh.nodes.len() * per);
    let http = mesh.http.clone();
    let local = scanners(mesh, lan, &codes, per, |g| (http[g].clone(), "/api/scan"))?;
    (0..hosts).for_each(|i| lan.attach(i, 0));
    let heal_ms = converge(mesh);
    mesh.collect();
    Ok(vec![
        ("outage_scans".into(), json!(codes.len())),
        ("central_outage_admits".into(), json!(remote.admit_ms.len())),
        ("mesh_outage_admits".into(), json!(local.admit_ms.len())),
        ("outage_heal_ms".into(), json!(heal_ms)),
    ])
}

/// After every phase: admits missing from some node (by id), and answered scans missing from
/// some node (every answered scan is a record, admit or refusal: by count).
fn lost(mesh: &mut Mesh) -> Vec<(String, Value)> {
    mesh.collect();
    let lost_admits = mesh
        .admits
        .keys()
        .filter(|id| !mesh.held_everywhere(id))
        .count();
    let records: Vec<usize> = mesh
        .nodes
        .iter_mut()
        .map(|n| n.status()["records"].as_u64().unwrap_or(0) as usize)
        .collect();
    let fewest = records.iter().copied().min().unwrap_or(0);
    vec![
        ("admits".into(), json!(mesh.admits.len())),
        ("lost_admits".into(), json!(lost_admits)),
        ("decisions".into(), json!(mesh.decisions)),
        (
            "lost_records".into(),
            json!(mesh.decisions.saturating_sub(fewest)),
        ),
        (
            "records_agree".into(),
            json!(records.windows(2).all(|w| w[0] == w[1])),
        ),
    ]
}
