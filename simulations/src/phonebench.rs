//! `phone`: what a steward's phone costs when its node stops answering, on a real node whose
//! store holds `tickets` admits (made through the real gate):
//! - `snapshot_bytes`, `snapshot_ms_*`: `GET /offline/snapshot` over loopback, from writing
//!   the request to reading the whole answer (the node takes the snapshot anew each time: the
//!   requests are more than its reuse time apart);
//! - `pack_bytes`, `pack_ms`: `GET /offline/pack` (the event's rules and the signed manifest of
//!   every ticket);
//! - `reconcile_ms`: `reconcile` queued scans posted as the page posts them (requests within
//!   the node's 16 KiB body limit, one after the other, each answered after its durable write);
//! - `decide_ms_*`, `answer_ms_*`: the scanner page in Chromium, paired, its node stopped
//!   (`SIGSTOP`: its connections hang like a dropped link): the page's own decision with the
//!   scan kept durably in IndexedDB (`decide`), and from Enter to the answer on the screen.

use crate::httpbench::{exchange_as, Conn};
use crate::report::percentile;
use gatemesh_tests::NodeProc;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

pub struct PhoneBench {
    pub tickets: usize,
    pub reconcile: usize,
    pub decisions: usize,
}

/// How many times the snapshot is fetched.
const SNAPSHOT_FETCHES: usize = 5;

pub fn run(b: &PhoneBench) -> anyhow::Result<Map<String, Value>> {
    let tmp = tempfile::tempdir()?;
    let ev = tmp.path().join("event");
    let data = tmp.path().join("data");
    let fresh = crate::statsbench::prepare(&ev, &data, b.tickets, b.reconcile + b.decisions)?;
    let (mut node, addr) = NodeProc::start_http(&ev, "device-a", &data, "north", &["--no-mdns"]);
    let mut m = Map::new();
    m.insert("bench".into(), json!("phone"));
    m.insert("tickets_admitted".into(), json!(b.tickets));
    let pass = pair(&addr)?;
    snapshot(&addr, &pass, &mut m)?;
    let (reconciled, decide_codes) = fresh.split_at(b.reconcile);
    reconcile(&addr, &pass, reconciled, &mut m)?;
    node.drain();
    page(&mut node, &addr, &pass, decide_codes, &mut m, tmp.path())?;
    Ok(m)
}

/// A phone paired by the node (`POST /api/phones`, admin): its pass.
fn pair(addr: &str) -> anyhow::Result<String> {
    let mut conn = Conn::open(addr)?;
    let body = serde_json::to_vec(&json!({"name": "bench"}))?;
    let (s, v) = exchange_as(&mut conn, addr, "admin", ("POST", "/api/phones"), &body)?;
    anyhow::ensure!(s == 200, "pairing answered {s}");
    let v: Value = serde_json::from_slice(&v)?;
    Ok(v["pass"].as_str().unwrap_or_default().to_string())
}

fn snapshot(addr: &str, pass: &str, m: &mut Map<String, Value>) -> anyhow::Result<()> {
    let mut conn = Conn::open(addr)?;
    let mut ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..SNAPSHOT_FETCHES {
        // A record between two fetches: each one is taken anew, as during an entry peak.
        let mut staff = Conn::open(addr)?;
        let body = serde_json::to_vec(&json!({"code": "NOT-A-TICKET"}))?;
        exchange_as(&mut staff, addr, "staff", ("POST", "/api/scan"), &body)?;
        let t0 = Instant::now();
        let (s, body) = exchange_as(&mut conn, addr, pass, ("GET", "/offline/snapshot"), b"")?;
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            s == 200 && body.starts_with(b"GMS1"),
            "snapshot answered {s}"
        );
        bytes = body.len();
    }
    m.insert("snapshot_bytes".into(), json!(bytes));
    m.insert("snapshot_ms_p50".into(), json!(percentile(&mut ms, 50.0)));
    m.insert("snapshot_ms_max".into(), json!(percentile(&mut ms, 100.0)));
    let t0 = Instant::now();
    let (s, body) = exchange_as(&mut conn, addr, pass, ("GET", "/offline/pack"), b"")?;
    anyhow::ensure!(s == 200, "pack answered {s}");
    m.insert("pack_ms".into(), json!(t0.elapsed().as_secs_f64() * 1000.0));
    m.insert("pack_bytes".into(), json!(body.len()));
    Ok(())
}

/// Post `codes` as queued offline scans, in requests as the page makes them.
fn reconcile(
    addr: &str,
    pass: &str,
    codes: &[String],
    m: &mut Map<String, Value>,
) -> anyhow::Result<()> {
    let device = gatemesh_crdt::event::pass::read(pass)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .body
        .device_id;
    let now = gatemesh_node::now_ms();
    let scans: Vec<Value> = (codes.iter().enumerate())
        .map(|(i, code)| {
            let id = gatemesh_crdt::credential::ticket::decode_unverified(code)
                .map(|(p, _, _)| p.ticket_id)
                .unwrap_or_default();
            let at = gatemesh_crdt::record::date::iso(now + i as u64);
            json!({"ticket_id": id, "code": code, "scanned_at": at, "result": "ALLOW",
                   "reason": "ok", "gate": "north", "direction": "in"})
        })
        .collect();
    let mut conn = Conn::open(addr)?;
    let (mut requests, mut taken, mut last) = (0, 0, String::new());
    let t0 = Instant::now();
    let mut rest = &scans[..];
    while !rest.is_empty() {
        let n = batch_len(rest);
        let body = serde_json::to_vec(&json!({"device_id": device, "scans": &rest[..n]}))?;
        let (s, v) = exchange_as(&mut conn, addr, pass, ("POST", "/offline/reconcile"), &body)?;
        anyhow::ensure!(
            s == 200,
            "reconcile answered {s}: {}",
            String::from_utf8_lossy(&v)
        );
        last = String::from_utf8_lossy(&v[..v.len().min(600)]).into_owned();
        taken += serde_json::from_slice::<Value>(&v)?["reconciled"]
            .as_u64()
            .unwrap_or(0);
        requests += 1;
        rest = &rest[n..];
    }
    m.insert("reconcile_scans".into(), json!(codes.len()));
    m.insert(
        "reconcile_ms".into(),
        json!(t0.elapsed().as_secs_f64() * 1000.0),
    );
    m.insert("reconcile_requests".into(), json!(requests));
    anyhow::ensure!(
        taken as usize == codes.len(),
        "{taken} of {} reconciled: {last}",
        codes.len()
    );
    Ok(())
}

/// How many of `scans` one request carries: the page's limits (`node/web/offline.js`).
fn batch_len(scans: &[Value]) -> usize {
    let mut bytes = 200;
    for (i, s) in scans.iter().enumerate() {
        let size = s.to_string().len() + 1;
        if i >= 200 || (i > 0 && bytes + size > 15_000) {
            return i;
        }
        bytes += size;
    }
    scans.len()
}

/// The page in Chromium: paired, snapshot taken, then its node stopped; `codes` scanned.
fn page(
    node: &mut NodeProc,
    addr: &str,
    pass: &str,
    codes: &[String],
    m: &mut Map<String, Value>,
    tmp: &std::path::Path,
) -> anyhow::Result<()> {
    let files = tmp.join("signals");
    std::fs::create_dir_all(&files)?;
    let args = json!({"link": format!("http://{addr}/#pair={pass}"), "codes": codes, "files": files,
        "shots": tmp});
    let browser = std::thread::spawn(move || gatemesh_tests::browser("phonebench", args));
    let ready = files.join("ready");
    let until = Instant::now() + Duration::from_secs(300);
    while !ready.exists() {
        anyhow::ensure!(Instant::now() < until, "the page never took its snapshot");
        node.drain();
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = node.pid().to_string();
    let signal = |s: &str| std::process::Command::new("kill").args([s, &pid]).status();
    signal("-STOP")?;
    std::fs::write(files.join("stopped"), "")?;
    let v = browser
        .join()
        .map_err(|_| anyhow::anyhow!("the page panicked"));
    signal("-CONT")?;
    let v = v?;
    for k in [
        "pack_load_ms",
        "decide_ms_p50",
        "decide_ms_p95",
        "answer_ms_p50",
        "answer_ms_p95",
    ] {
        m.insert(k.into(), v[k].clone());
    }
    m.insert("page_decisions".into(), json!(codes.len()));
    Ok(())
}
