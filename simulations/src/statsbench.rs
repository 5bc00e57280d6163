//! `stats`: a real `gatemesh node run --http` whose store holds `redemptions` admits (made
//! through the real gate, as `decide` makes them), scanning fresh tickets at `rate_per_s` over
//! HTTP while `stream_clients` clients follow `GET /api/stream` and a dashboard-like poller asks
//! `GET /api/stats` ten times a second. The statistics come from running totals kept as records
//! are indexed, so they should cost what the answer holds, not what the ledger holds.
//!
//! - `stats_p50_ms` / `stats_p99_ms`: `GET /api/stats`, from writing the request to reading the
//!   whole answer.
//! - `decide_p50_ms` / `decide_p99_ms`: `POST /api/scan` at the steady rate (each a full
//!   decision, durable before its answer).

use crate::httpbench::{exchange, Conn};
use crate::report::percentile;
use gatemesh_crdt::event::certificate::Role;
use gatemesh_node::organizer::{
    device_enroll, event_create, tickets_issue, IssueOptions, TicketFormat,
};
use gatemesh_tests::NodeProc;
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct StatsBench {
    pub redemptions: usize,
    pub rate_per_s: u32,
    pub seconds: u32,
    pub stream_clients: usize,
}

/// How often the poller asks for the statistics.
const STATS_EVERY: Duration = Duration::from_millis(100);

pub fn run(b: &StatsBench) -> anyhow::Result<Map<String, Value>> {
    let tmp = tempfile::tempdir()?;
    let ev = tmp.path().join("event");
    let scans = (b.rate_per_s * b.seconds) as usize;
    let codes = prepare(&ev, &tmp.path().join("data"), b.redemptions, scans)?;
    let (mut node, addr) = NodeProc::start_http(
        &ev,
        "device-a",
        &tmp.path().join("data"),
        "north",
        &["--no-mdns"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let streams: Vec<_> = (0..b.stream_clients)
        .map(|_| {
            let (addr, stop, events) = (addr.clone(), stop.clone(), events.clone());
            std::thread::spawn(move || follow_stream(&addr, &stop, &events))
        })
        .collect();
    let poller = {
        let (addr, stop) = (addr.clone(), stop.clone());
        std::thread::spawn(move || poll_stats(&addr, &stop))
    };
    let scanner = {
        let (addr, rate) = (addr.clone(), b.rate_per_s);
        std::thread::spawn(move || paced_scans(&addr, &codes, rate))
    };
    while !scanner.is_finished() {
        node.drain();
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let joined = |r: std::thread::Result<anyhow::Result<Vec<f64>>>| {
        r.map_err(|_| anyhow::anyhow!("a client panicked"))?
    };
    let mut decide = joined(scanner.join())?;
    let mut stats = joined(poller.join())?;
    for s in streams {
        let _ = s.join();
    }
    let mut m = Map::new();
    m.insert("bench".into(), json!("stats"));
    m.insert("redemptions".into(), json!(b.redemptions));
    m.insert("rate_per_s".into(), json!(b.rate_per_s));
    m.insert("scans".into(), json!(decide.len()));
    m.insert("stream_clients".into(), json!(b.stream_clients));
    m.insert(
        "stream_events".into(),
        json!(events.load(Ordering::Relaxed)),
    );
    m.insert("stats_requests".into(), json!(stats.len()));
    m.insert("stats_p50_ms".into(), json!(percentile(&mut stats, 50.0)));
    m.insert("stats_p99_ms".into(), json!(percentile(&mut stats, 99.0)));
    m.insert("decide_p50_ms".into(), json!(percentile(&mut decide, 50.0)));
    m.insert("decide_p99_ms".into(), json!(percentile(&mut decide, 99.0)));
    Ok(m)
}

/// The event, `held + fresh` GM1 tickets, device `device-a` with a store already holding `held`
/// admits; returns the codes of the fresh tickets.
pub fn prepare(
    ev: &std::path::Path,
    data: &std::path::Path,
    held: usize,
    fresh: usize,
) -> anyhow::Result<Vec<String>> {
    event_create(ev, "Stats Fest", None, None, None)?;
    let opts = IssueOptions {
        count: u32::try_from(held + fresh)?,
        tier: "general".into(),
        format: TicketFormat::Gm1,
        key_id: None,
        nfc: false,
        qr: false,
        hmac_secret_file: None,
        named: None,
    };
    let issued = tickets_issue(ev, &ev.join("tickets"), &opts)?;
    device_enroll(ev, "a", Role::Scanner, &ev.join("device-a"))?;
    crate::bench::prefill(ev, &ev.join("device-a"), data, &issued[..held])?;
    Ok(issued[held..].iter().map(|t| t.code.clone()).collect())
}

/// Scan `codes` at `rate` per second on one keep-alive connection: each answer's latency (ms).
fn paced_scans(addr: &str, codes: &[String], rate: u32) -> anyhow::Result<Vec<f64>> {
    let mut conn = Conn::open(addr)?;
    let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    let mut out = Vec::with_capacity(codes.len());
    for (i, code) in codes.iter().enumerate() {
        let due = start + every * u32::try_from(i)?;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let body = serde_json::to_vec(&json!({"code": code}))?;
        let t0 = Instant::now();
        let (status, answer) = exchange(&mut conn, addr, "POST", "/api/scan", &body)?;
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        let admitted =
            serde_json::from_slice::<Value>(&answer).is_ok_and(|v| v["verdict"] == "admit");
        anyhow::ensure!(status == 200 && admitted, "scan {i} was not admitted");
    }
    Ok(out)
}

/// Ask `GET /api/stats` every [`STATS_EVERY`] until `stop`: each answer's latency (ms).
fn poll_stats(addr: &str, stop: &AtomicBool) -> anyhow::Result<Vec<f64>> {
    let mut conn = Conn::open(addr)?;
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let (status, _) = exchange(&mut conn, addr, "GET", "/api/stats", b"")?;
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == 200, "stats answered {status}");
        std::thread::sleep(STATS_EVERY.saturating_sub(t0.elapsed()));
    }
    Ok(out)
}

/// Follow `GET /api/stream` until `stop`, counting the events read.
fn follow_stream(addr: &str, stop: &AtomicBool, events: &AtomicU64) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut writer = stream.try_clone()?;
    write!(
        writer,
        "GET /api/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer staff\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.starts_with("event:") => {
                events.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
