//! `mesh`: ten real `gatemesh node run` processes on loopback (they share this machine's cores),
//! scans fed at a steady rate, then a split and a heal.
//!
//! - propagation: for every admit, the time from its commit on the scanning node (`scan` event)
//!   to its application on each other node (`applied` event), same machine clock, in ms.
//! - sustained: the highest offered rate at which, in each of `SUSTAIN_RUNS` runs, every admit
//!   reached every node within `BACKLOG_GRACE` of the end of the run and p99 propagation stayed
//!   under a second; each rate reports its worst run and the nodes' CPU per delivered record.
//! - heal: nodes 0–4 and 5–9 block each other, each side scans `heal_scans` tickets as fast as
//!   it can and settles (all its nodes agree); then the blocks are lifted: `heal_ms` is the time
//!   until every node reports the same heads.

use crate::report::percentile;
use gatemesh_tests::{make_event, NodeProc};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// After a rate step ends, admits must have reached every node within this.
const BACKLOG_GRACE: Duration = Duration::from_secs(3);
/// Offered rates tried for `sustained_scans_per_s`, in order.
const SUSTAIN_RATES: [u32; 5] = [250, 500, 1000, 2000, 3000];
/// Runs of each rate: a rate is sustained only if every run is; its figures are the worst.
const SUSTAIN_RUNS: usize = 3;
const SUSTAIN_STEP: Duration = Duration::from_secs(4);
/// Longest wait for heads to become equal after a heal.
const HEAL_WAIT_MAX: Duration = Duration::from_secs(300);

pub struct MeshBench {
    pub nodes: usize,
    pub rate_per_s: u32,
    pub seconds: u32,
    pub heal_scans: usize,
}

pub(crate) struct Mesh {
    pub(crate) nodes: Vec<NodeProc>,
    /// Every ticket's id and code, in the order the codes are handed out.
    pub(crate) tickets: Vec<(String, String)>,
    next_code: usize,
    /// Each node's HTTP address (`host:port`, inside its host's namespace), when it serves one.
    pub(crate) http: Vec<String>,
    /// scan id → (node index, commit time µs)
    pub(crate) admits: HashMap<String, (usize, u64)>,
    /// scan id → (node index, arrival time µs) on the other nodes
    pub(crate) arrivals: HashMap<String, Vec<(usize, u64)>>,
    /// Decisions the nodes answered (every one a record).
    pub(crate) decisions: usize,
}

impl Mesh {
    pub(crate) fn collect(&mut self) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            // What waits for a status read on the way is in `seen`: count it too.
            let mut events = std::mem::take(&mut n.seen);
            events.extend(n.drain());
            for v in events {
                let at = v["at_us"].as_u64().unwrap_or(0);
                match v["event"].as_str() {
                    Some("scan") => {
                        self.decisions += 1;
                        if v["verdict"] == "admit" {
                            let id = v["scan_id"].as_str().unwrap_or_default().to_string();
                            self.admits.insert(id, (i, at));
                        }
                    }
                    Some("applied") => {
                        for r in v["records"].as_array().into_iter().flatten() {
                            let id = r.as_str().unwrap_or_default().to_string();
                            self.arrivals.entry(id).or_default().push((i, at));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Feed `count` fresh codes round-robin at `rate` per second (or as fast as possible at 0).
    pub(crate) fn feed(&mut self, count: usize, rate: u32, only: Option<&[usize]>) {
        let start = Instant::now();
        let targets: Vec<usize> = only
            .map(<[usize]>::to_vec)
            .unwrap_or_else(|| (0..self.nodes.len()).collect());
        for k in 0..count {
            if rate > 0 {
                let due = start + Duration::from_secs_f64(k as f64 / f64::from(rate));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let code = self.tickets[self.next_code].1.clone();
            self.next_code += 1;
            self.nodes[targets[k % targets.len()]].send(&code);
            if k % 64 == 0 {
                self.collect();
            }
        }
    }

    /// Hand out the next `count` codes (to send some other way than the nodes' input).
    pub(crate) fn take(&mut self, count: usize) -> Vec<String> {
        let end = self.next_code + count;
        let codes = self.tickets[self.next_code..end]
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        self.next_code = end;
        codes
    }

    /// Go back `count` codes (the next feed sends codes already sent: the same tickets again).
    pub(crate) fn rewind(&mut self, count: usize) {
        self.next_code = self.next_code.saturating_sub(count);
    }

    /// Skip `count` codes.
    pub(crate) fn skip(&mut self, count: usize) {
        self.next_code += count;
    }

    /// Propagation samples (ms) of the admits in `ids`, and how many (admit, node) pairs are
    /// still missing.
    fn propagation(&self, ids: &[String]) -> (Vec<f64>, usize) {
        let others = self.nodes.len() - 1;
        let mut samples = Vec::new();
        let mut missing = 0;
        for id in ids {
            let Some(&(_, at)) = self.admits.get(id) else {
                continue;
            };
            let arr = self.arrivals.get(id).map(Vec::as_slice).unwrap_or_default();
            missing += others.saturating_sub(arr.len());
            samples.extend(
                arr.iter()
                    .map(|(_, a)| a.saturating_sub(at) as f64 / 1000.0),
            );
        }
        (samples, missing)
    }

    /// Whether every node holds the admit `id` (the one that made it, the rest by arrival).
    pub(crate) fn held_everywhere(&self, id: &str) -> bool {
        let Some(&(maker, _)) = self.admits.get(id) else {
            return false;
        };
        let mut holders = std::collections::HashSet::from([maker]);
        holders.extend(self.arrivals.get(id).into_iter().flatten().map(|(n, _)| *n));
        holders.len() == self.nodes.len()
    }

    pub(crate) fn admits_since(&self, t0_us: u64) -> Vec<String> {
        self.admits
            .iter()
            .filter(|(_, (_, at))| *at >= t0_us)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Wait until `expected` admits since `t0` are answered and everywhere, up to `limit`.
    /// Returns the samples and the missing count (unanswered admits count for every node).
    pub(crate) fn settle(
        &mut self,
        t0_us: u64,
        expected: usize,
        limit: Duration,
    ) -> (Vec<f64>, usize) {
        let deadline = Instant::now() + limit;
        loop {
            self.collect();
            let ids = self.admits_since(t0_us);
            let (samples, mut missing) = self.propagation(&ids);
            missing += expected.saturating_sub(ids.len()) * (self.nodes.len() - 1);
            if missing == 0 || Instant::now() >= deadline {
                return (samples, missing);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Start `b.nodes` nodes on a fresh event with codes enough for every phase.
fn start(b: &MeshBench, dir: &std::path::Path) -> anyhow::Result<Mesh> {
    let steady = (b.rate_per_s * b.seconds) as usize;
    let sustain: usize = SUSTAIN_RATES
        .iter()
        .map(|r| (*r as f64 * SUSTAIN_STEP.as_secs_f64()) as usize * SUSTAIN_RUNS)
        .sum();
    start_mesh(b.nodes, steady + sustain + 2 * b.heal_scans, dir, None)
}

/// Start `count` nodes on a fresh event with `codes` tickets, on loopback or one per host of
/// `lan`, and wait until every node sees every other.
pub(crate) fn start_mesh(
    count: usize,
    codes: usize,
    dir: &std::path::Path,
    lan: Option<&gatemesh_tests::Lan>,
) -> anyhow::Result<Mesh> {
    let ev = dir.join("event");
    let names: Vec<String> = (0..count).map(|i| format!("n{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let tickets = make_event(&ev, codes as u32, &name_refs, false);
    // On a LAN each node also serves HTTP on its host's own loopback, for that gate's scanner.
    let http = ["--http", "127.0.0.1:0", "--staff-token", "staff"];
    let mut addrs = Vec::new();
    let mut nodes = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let device = format!("device-{n}");
        nodes.push(match lan {
            None => NodeProc::start(&ev, &device, &dir.join(n), "north", &[]),
            Some(lan) => {
                let mut node = NodeProc::start_in(
                    Some(&lan.host(i)),
                    &format!("/ip4/10.77.0.{}/udp/0/quic-v1", i + 1),
                    &ev,
                    &device,
                    &dir.join(n),
                    "north",
                    &http,
                );
                let at = node.wait_for("http", |v| v["event"] == "http");
                addrs.push(at["addr"].as_str().unwrap_or_default().to_string());
                node
            }
        });
    }
    let mut mesh = Mesh {
        nodes,
        tickets,
        next_code: 0,
        http: addrs,
        admits: HashMap::new(),
        arrivals: HashMap::new(),
        decisions: 0,
    };
    for n in mesh.nodes.iter_mut() {
        n.wait_peers(count - 1);
    }
    for n in mesh.nodes.iter_mut() {
        n.drain();
    }
    Ok(mesh)
}

/// Steady rate: propagation p50 and p99 (ms).
fn steady(mesh: &mut Mesh, b: &MeshBench) -> anyhow::Result<(f64, f64)> {
    let steady = (b.rate_per_s * b.seconds) as usize;
    let t0 = now_us();
    mesh.feed(steady, b.rate_per_s, None);
    let (mut samples, missing) = mesh.settle(t0, steady, BACKLOG_GRACE);
    anyhow::ensure!(
        missing == 0,
        "{missing} deliveries missing at {} scans/s",
        b.rate_per_s
    );
    anyhow::ensure!(
        samples.len() == steady * (b.nodes - 1),
        "measured {} deliveries, expected {}",
        samples.len(),
        steady * (b.nodes - 1)
    );
    Ok((
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 99.0),
    ))
}

/// Rising rates, each run `SUSTAIN_RUNS` times: the highest sustained, and each rate's worst
/// figures (p99 and missing of its worst run, CPU per delivered record over its runs).
fn sustain(mesh: &mut Mesh) -> (u32, Vec<Value>) {
    let mut sustained = 0;
    let mut steps = Vec::new();
    for rate in SUSTAIN_RATES {
        let runs: Vec<Step> = (0..SUSTAIN_RUNS).map(|_| step(mesh, rate)).collect();
        let ok = runs
            .iter()
            .all(|r| r.missing == 0 && r.answered == r.fed && r.p99_ms < 1000.0);
        let worst_p99 = runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max);
        let worst_missing = runs.iter().map(|r| r.missing).max().unwrap_or(0);
        let deliveries: usize = runs
            .iter()
            .map(|r| r.answered * (mesh.nodes.len() - 1))
            .sum();
        let cpu_ms: f64 = runs.iter().map(|r| r.cpu_ms).sum();
        let cpu_us_per_delivery = cpu_ms * 1000.0 / deliveries.max(1) as f64;
        steps.push(json!({"rate": rate, "runs": SUSTAIN_RUNS, "p99_ms": worst_p99,
            "missing": worst_missing, "p99_ms_each": runs.iter().map(|r| r.p99_ms).collect::<Vec<_>>(),
            "answered_each": runs.iter().map(|r| r.answered).collect::<Vec<_>>(),
            "fed_in_s_max": runs.iter().map(|r| r.fed_in_s).fold(0.0, f64::max),
            "node_cpu_us_per_delivered_record": cpu_us_per_delivery}));
        if !ok {
            break;
        }
        sustained = rate;
    }
    (sustained, steps)
}

/// One run of one rate.
struct Step {
    fed: usize,
    answered: usize,
    missing: usize,
    p99_ms: f64,
    fed_in_s: f64,
    /// CPU time the node processes spent over the run (user + system).
    cpu_ms: f64,
}

fn step(mesh: &mut Mesh, rate: u32) -> Step {
    let t0 = now_us();
    let cpu0 = nodes_cpu_ms(mesh);
    let started = Instant::now();
    let fed = (rate as f64 * SUSTAIN_STEP.as_secs_f64()) as usize;
    mesh.feed(fed, rate, None);
    let fed_in_s = started.elapsed().as_secs_f64();
    let (mut s, missing) = mesh.settle(t0, fed, BACKLOG_GRACE);
    let cpu_ms = nodes_cpu_ms(mesh) - cpu0;
    Step {
        fed,
        answered: mesh.admits_since(t0).len(),
        missing,
        p99_ms: percentile(&mut s, 99.0),
        fed_in_s,
        cpu_ms,
    }
}

/// CPU time (user + system) of the node processes so far, from `/proc/PID/stat`.
fn nodes_cpu_ms(mesh: &Mesh) -> f64 {
    // Clock ticks per second as Linux reports them in `stat` (USER_HZ).
    const TICKS_PER_S: f64 = 100.0;
    let ticks: u64 = mesh
        .nodes
        .iter()
        .filter_map(|n| std::fs::read_to_string(format!("/proc/{}/stat", n.pid())).ok())
        .filter_map(|stat| {
            // Fields after the command name (which may hold spaces) start after the last ')'.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 * 1000.0 / TICKS_PER_S
}

pub fn run(b: &MeshBench) -> anyhow::Result<Map<String, Value>> {
    let tmp = tempfile::tempdir()?;
    let mut mesh = start(b, tmp.path())?;
    let (p50, p99) = steady(&mut mesh, b)?;
    let (sustained, steps) = sustain(&mut mesh);
    let healing = heal(&mut mesh, b.heal_scans)?;
    let mut m = Map::new();
    m.insert("bench".into(), json!("mesh"));
    m.insert("nodes".into(), json!(b.nodes));
    m.insert("rate_per_s".into(), json!(b.rate_per_s));
    m.insert("propagation_p50_ms".into(), json!(p50));
    m.insert("propagation_p99_ms".into(), json!(p99));
    m.insert("sustained_scans_per_s".into(), json!(sustained));
    m.insert("sustain_steps".into(), json!(steps));
    m.insert("heal_scans_per_side".into(), json!(b.heal_scans));
    m.insert("split_settle_ms".into(), json!(healing.settle_ms));
    m.insert("heal_ms".into(), json!(healing.heal_ms));
    m.insert("heal_reconnect_ms".into(), json!(healing.reconnect_ms));
    m.insert(
        "heal_sync_bytes_in_per_node".into(),
        json!(healing.sync_bytes_in / b.nodes as u64),
    );
    m.insert("heal_converged".into(), json!(healing.heal_ms.is_some()));
    Ok(m)
}

/// What the split-and-heal phase measured.
struct Heal {
    /// From the last split-side scan answered until each side agrees within itself.
    settle_ms: f64,
    /// From the heal until every node reports the same heads; `None` if not within the limit.
    heal_ms: Option<f64>,
    /// From the heal until every node is connected to every other again.
    reconnect_ms: Option<f64>,
    /// Sync bytes the nodes received during the heal, together.
    sync_bytes_in: u64,
}

/// Split into halves, scan `per_side` on each, let each side settle, heal, time until all heads
/// are equal.
fn heal(mesh: &mut Mesh, per_side: usize) -> anyhow::Result<Heal> {
    let n = mesh.nodes.len();
    let (a, b): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| *i < n / 2);
    let names = |side: &[usize]| {
        side.iter()
            .map(|i| format!("n{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for &i in &a {
        mesh.nodes[i].send(&format!("!block {}", names(&b)));
    }
    for &i in &b {
        mesh.nodes[i].send(&format!("!block {}", names(&a)));
    }
    std::thread::sleep(Duration::from_secs(1));
    let t0 = now_us();
    mesh.feed(per_side, 0, Some(&a));
    mesh.feed(per_side, 0, Some(&b));
    let deadline = Instant::now() + HEAL_WAIT_MAX;
    while mesh.admits_since(t0).len() < 2 * per_side {
        anyhow::ensure!(
            Instant::now() < deadline,
            "split-side scans not all answered"
        );
        mesh.collect();
        std::thread::sleep(Duration::from_millis(50));
    }
    let answered = Instant::now();
    while !(same_heads(mesh, &a) && same_heads(mesh, &b)) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the sides did not settle within {HEAL_WAIT_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let settle_ms = answered.elapsed().as_secs_f64() * 1000.0;
    let sync_in_before = sync_bytes_in(mesh);
    for i in 0..n {
        let line = format!("!unblock {}", names(if a.contains(&i) { &b } else { &a }));
        mesh.nodes[i].send(&line);
    }
    let (heal_ms, reconnect_ms) = converge_timed(mesh);
    Ok(Heal {
        settle_ms,
        heal_ms,
        reconnect_ms,
        sync_bytes_in: sync_bytes_in(mesh) - sync_in_before,
    })
}

/// Sync bytes received by every node so far, together.
fn sync_bytes_in(mesh: &mut Mesh) -> u64 {
    mesh.nodes
        .iter_mut()
        .map(|n| n.status()["mesh"]["sync_bytes_in"].as_u64().unwrap_or(0))
        .sum()
}

/// Time (ms) until every node reports the same heads; `None` past [`HEAL_WAIT_MAX`].
pub(crate) fn converge(mesh: &mut Mesh) -> Option<f64> {
    converge_timed(mesh).0
}

/// Like [`converge`], with the time (ms) until every node was connected to every other again
/// (the part of a heal that is reconnection, not sync).
fn converge_timed(mesh: &mut Mesh) -> (Option<f64>, Option<f64>) {
    let healed = Instant::now();
    let mut last_report = Instant::now();
    let mut reconnected = None;
    let others = mesh.nodes.len() - 1;
    loop {
        let status: Vec<Value> = mesh.nodes.iter_mut().map(|n| n.status()).collect();
        let ms = healed.elapsed().as_secs_f64() * 1000.0;
        let connected = |s: &Value| s["peers"].as_array().map_or(0, Vec::len) >= others;
        if reconnected.is_none() && status.iter().all(connected) {
            reconnected = Some(ms);
        }
        if status.windows(2).all(|w| w[0]["heads"] == w[1]["heads"]) {
            return (Some(ms), reconnected);
        }
        if healed.elapsed() > HEAL_WAIT_MAX {
            return (None, reconnected);
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            let records: Vec<&Value> = status.iter().map(|s| &s["records"]).collect();
            eprintln!(
                "heal: {:.0} s, records per node {records:?}",
                healed.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn same_heads(mesh: &mut Mesh, which: &[usize]) -> bool {
    let heads: Vec<Value> = which
        .iter()
        .map(|&i| mesh.nodes[i].status()["heads"].clone())
        .collect();
    heads.windows(2).all(|w| w[0] == w[1])
}
