//! `gatemesh demo`: the one-command tour on a fresh machine. A small mesh of real
//! `gatemesh node run` processes on loopback, a generated event with tickets, doors opening with
//! shared screenshots tried at other gates, a forged code, a Wi-Fi split during which both halves
//! admit the same tickets, the heal, and a summary of what happened.

use crate::procs::{NodeProcess, NodeSpec};
use anyhow::Context;
use gatemesh_crdt::event::certificate::Role;
use gatemesh_node::organizer::{
    device_enroll, event_create, tickets_issue, IssueOptions, Issued, TicketFormat,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest wait for any one step of the demo.
const STEP_WAIT_MAX: Duration = Duration::from_secs(30);
/// Longest wait for the mesh to agree after the heal.
const HEAL_WAIT_MAX: Duration = Duration::from_secs(60);
const GATES: [&str; 4] = ["north", "south", "north", "south"];

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub nodes: usize,
    pub dir: PathBuf,
    /// Fewer tickets, for the test suite.
    pub short: bool,
    /// Keep the mesh up after the summary (the dashboard stays reachable) until Ctrl-C.
    pub wait: bool,
    /// The first node's HTTP address (falls back to a free port when taken).
    pub http: std::net::SocketAddr,
}

/// While the demo waits for Ctrl-C, one remaining ticket is scanned this often, so the
/// dashboard has something to show.
const TRICKLE_EVERY: Duration = Duration::from_millis(1500);

#[derive(Default)]
struct Tally {
    admitted: u64,
    denied: BTreeMap<String, u64>,
    stopped_across_gates: u64,
}

impl Tally {
    fn count(&mut self, d: &Value) {
        if d["verdict"] == "admit" && d["repeat"] != true {
            self.admitted += 1;
        } else if d["verdict"] == "deny" {
            let reason = d["reason"].as_str().unwrap_or("?").to_string();
            if reason == "already_redeemed" && d["previous"][0]["gate"] != d["gate"] {
                self.stopped_across_gates += 1;
            }
            *self.denied.entry(reason).or_default() += 1;
        }
    }
}

/// The first gate is a supervisor's (its page may undo, check in by hand and pause the gate);
/// the others are stewards'.
fn role_of(gate: usize) -> Role {
    if gate == 0 {
        Role::Supervisor
    } else {
        Role::Scanner
    }
}

pub fn run(o: &DemoOptions) -> anyhow::Result<()> {
    anyhow::ensure!((2..=8).contains(&o.nodes), "--nodes must be 2..=8");
    std::fs::create_dir_all(&o.dir)?;
    anyhow::ensure!(
        std::fs::read_dir(&o.dir)?.next().is_none(),
        "{} is not empty",
        o.dir.display()
    );
    let ev = o.dir.join("event");
    println!("== setting up in {}", o.dir.display());
    event_create(&ev, "Demo Festival", None, None, None)?;
    let count = if o.short { 30 } else { 120 };
    let opts = IssueOptions {
        count,
        tier: "general".into(),
        format: TicketFormat::Gm1,
        key_id: None,
        nfc: false,
        qr: !o.short,
        hmac_secret_file: None,
        named: None,
    };
    let tickets = tickets_issue(&ev, &ev.join("tickets"), &opts)?;
    let names: Vec<String> = (1..=o.nodes).map(|i| format!("gate-{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        device_enroll(&ev, n, role_of(i), &ev.join(format!("device-{n}")))?;
    }
    let token = {
        use rand::RngCore;
        let mut b = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut b);
        hex::encode(b)
    };
    let mut nodes = start_nodes(o, &ev, &names, &token)?;
    let mut urls = Vec::new();
    for n in nodes.iter_mut() {
        let http = n.wait_for("http", STEP_WAIT_MAX, |v| v["event"] == "http")?;
        urls.push(format!("http://{}", http["addr"].as_str().unwrap_or("?")));
    }
    let started = Instant::now();
    for n in nodes.iter_mut() {
        n.wait_peers(o.nodes - 1, STEP_WAIT_MAX)?;
    }
    println!(
        "== {} nodes found each other by mDNS in {:.1} s",
        o.nodes,
        started.elapsed().as_secs_f64()
    );
    let mut tally = Tally::default();
    doors_open(&mut nodes, &tickets, &mut tally)?;
    let heal_ms = split_and_heal(&mut nodes, &tickets, &mut tally, o.short)?;
    summary(&mut nodes, &tally, heal_ms)?;
    println!();
    println!("dashboard   {}/dashboard#token={token}", urls[0]);
    for (name, url) in names.iter().zip(&urls) {
        println!("scanner     {url}/#token={token}   ({name})");
    }
    println!(
        "The event, its tickets and each node's store are in {}.",
        o.dir.display()
    );
    if o.wait {
        println!("The mesh keeps running (a ticket is scanned every {TRICKLE_EVERY:?}); Ctrl-C stops it.");
        keep_open(&mut nodes, &tickets)?;
    }
    Ok(())
}

/// Keep the nodes up until Ctrl-C (which reaches them too: they stop gracefully), scanning the
/// tickets nobody used yet one by one, and reading the nodes' events so they never block.
fn keep_open(nodes: &mut [NodeProcess], tickets: &[Issued]) -> anyhow::Result<()> {
    let unused = tickets.len() / 2 + 8;
    let mut next = tickets.iter().skip(unused).enumerate();
    loop {
        std::thread::sleep(TRICKLE_EVERY);
        if let Some((i, t)) = next.next() {
            nodes[i % nodes.len()].send(&t.code)?;
        }
        for n in nodes.iter_mut() {
            n.drain();
        }
    }
}

fn start_nodes(
    o: &DemoOptions,
    ev: &Path,
    names: &[String],
    token: &str,
) -> anyhow::Result<Vec<NodeProcess>> {
    let bin = std::env::current_exe().context("finding the gatemesh binary")?;
    // The first node takes the dashboard's address when it is free.
    let first = match std::net::TcpListener::bind(o.http) {
        Ok(l) => {
            drop(l);
            o.http.to_string()
        }
        Err(_) => "127.0.0.1:0".to_string(),
    };
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let device = ev.join(format!("device-{n}"));
            let data = o.dir.join(format!("data-{n}"));
            let http = if i == 0 {
                first.as_str()
            } else {
                "127.0.0.1:0"
            };
            let extra = ["--http", http, "--staff-token", token];
            let spec = NodeSpec {
                bin: &bin,
                netns: None,
                listen: "/ip4/127.0.0.1/udp/0/quic-v1",
                event: ev,
                device: &device,
                data: &data,
                gate: GATES[i % GATES.len()],
                extra: &extra,
            };
            NodeProcess::start(n, &spec, std::process::Stdio::null())
        })
        .collect()
}

/// Scan the first half of the tickets round-robin, then try some as shared screenshots at
/// another gate, plus a forged code and a scratched label.
fn doors_open(
    nodes: &mut [NodeProcess],
    tickets: &[Issued],
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let half = tickets.len() / 2;
    println!(
        "== doors open: {half} tickets scanned across {} gates",
        nodes.len()
    );
    for (i, t) in tickets[..half].iter().enumerate() {
        let n = i % nodes.len();
        let d = nodes[n].scan(&t.code, STEP_WAIT_MAX)?;
        tally.count(&d);
    }
    std::thread::sleep(Duration::from_millis(200)); // let the last admits reach everyone
    let shared = (half / 4).max(3);
    println!("== {shared} screenshots of admitted tickets tried at other gates");
    for (i, t) in tickets[..shared].iter().enumerate() {
        let n = (i + 1) % nodes.len(); // not the node that admitted it
        let d = nodes[n].scan(&t.code, STEP_WAIT_MAX)?;
        if i == 0 {
            println!(
                "   e.g. {} at gate {}: {} ({})",
                d["ticket"]["id"], d["gate"], d["reason"], d["message"]
            );
        }
        tally.count(&d);
    }
    let mut forged = tickets[half].code.clone().into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    for code in [String::from_utf8(forged)?, "scratched-label".to_string()] {
        let d = nodes[0].scan(&code, STEP_WAIT_MAX)?;
        println!(
            "   {:?}...: {} ({})",
            &code[..code.len().min(16)],
            d["reason"],
            d["message"]
        );
        tally.count(&d);
    }
    Ok(())
}

/// Cut the mesh in two, admit the same tickets on both sides, heal, wait until every node agrees.
fn split_and_heal(
    nodes: &mut [NodeProcess],
    tickets: &[Issued],
    tally: &mut Tally,
    short: bool,
) -> anyhow::Result<f64> {
    let n = nodes.len();
    let (a, b): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| *i < n / 2);
    let names = |side: &[usize]| {
        side.iter()
            .map(|i| nodes_name(i + 1))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (i, node) in nodes.iter_mut().enumerate() {
        let other = if a.contains(&i) { names(&b) } else { names(&a) };
        node.send(&format!("!block {other}"))?;
    }
    let both = if short { 3 } else { 5 };
    let start = tickets.len() / 2 + 1;
    println!(
        "== Wi-Fi split: {{{}}} | {{{}}}; the same {both} screenshots used on both sides",
        names(&a),
        names(&b)
    );
    for t in &tickets[start..start + both] {
        for side in [&a, &b] {
            let d = nodes[side[0]].scan(&t.code, STEP_WAIT_MAX)?;
            tally.count(&d);
        }
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        let other = if a.contains(&i) { names(&b) } else { names(&a) };
        node.send(&format!("!unblock {other}"))?;
    }
    println!("== healed; waiting for every node to agree");
    let healed = Instant::now();
    loop {
        let heads: Vec<Value> = nodes
            .iter_mut()
            .map(|n| n.status(STEP_WAIT_MAX).map(|s| s["heads"].clone()))
            .collect::<anyhow::Result<_>>()?;
        if heads.windows(2).all(|w| w[0] == w[1]) {
            return Ok(healed.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::ensure!(
            healed.elapsed() < HEAL_WAIT_MAX,
            "the mesh did not agree within {HEAL_WAIT_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn nodes_name(i: usize) -> String {
    format!("gate-{i}")
}

fn summary(nodes: &mut [NodeProcess], tally: &Tally, heal_ms: f64) -> anyhow::Result<()> {
    let statuses: Vec<Value> = nodes
        .iter_mut()
        .map(|n| n.status(STEP_WAIT_MAX))
        .collect::<anyhow::Result<_>>()?;
    let status = &statuses[0];
    let conflicts = status["conflicts"].as_array().cloned().unwrap_or_default();
    let agreeing = statuses
        .iter()
        .filter(|s| s["conflicts"] == status["conflicts"])
        .count();
    println!();
    println!("== summary");
    println!("admitted                          {}", tally.admitted);
    for (reason, n) in &tally.denied {
        println!("denied {reason:<26} {n}");
    }
    println!(
        "duplicates stopped across gates   {}",
        tally.stopped_across_gates
    );
    let doubles: usize = conflicts
        .iter()
        .map(|c| c["double_entries"].as_array().map_or(0, Vec::len))
        .sum();
    let (tickets, of) = (conflicts.len(), statuses.len());
    println!("double entries during the split   {doubles} (on {tickets} tickets, the same list on {agreeing} of {of} nodes)");
    for c in &conflicts {
        println!("   ticket {}: {}", c["ticket"], c["double_entries"]);
    }
    println!("mesh agreed after the heal in     {heal_ms:.0} ms");
    println!("records in every ledger           {}", status["records"]);
    Ok(())
}
