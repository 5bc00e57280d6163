//! `catchup`: a replacement scanner joins an event already holding `redemptions` admits. One
//! real node holds them in its store (made through the real gate); a second node, enrolled and
//! empty, starts beside it on loopback (mDNS) and catches up by sync alone.
//!
//! - `catchup_s`: from the new node's start until it holds every record.
//! - `peak_rss_mb`: the new node's peak resident memory (`VmHWM`) when it is done.

use gatemesh_crdt::event::certificate::Role;
use gatemesh_node::organizer::device_enroll;
use gatemesh_tests::NodeProc;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// Longest the new node may take.
const CATCHUP_WAIT_MAX: Duration = Duration::from_secs(600);

pub fn run(redemptions: usize) -> anyhow::Result<Map<String, Value>> {
    let tmp = tempfile::tempdir()?;
    let ev = tmp.path().join("event");
    crate::statsbench::prepare(&ev, &tmp.path().join("a"), redemptions, 0)?;
    device_enroll(&ev, "b", Role::Scanner, &ev.join("device-b"))?;
    let mut a = NodeProc::start(&ev, "device-a", &tmp.path().join("a"), "north", &[]);
    let held = records(&mut a);
    anyhow::ensure!(
        held == redemptions as u64,
        "the full node holds {held} records"
    );
    let started = Instant::now();
    let mut b = NodeProc::start(&ev, "device-b", &tmp.path().join("b"), "south", &[]);
    let mut got = 0;
    while got < held {
        anyhow::ensure!(
            started.elapsed() < CATCHUP_WAIT_MAX,
            "the new node holds {got} of {held} records after {CATCHUP_WAIT_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
        a.drain();
        got = records(&mut b);
    }
    let catchup_s = started.elapsed().as_secs_f64();
    let mut m = Map::new();
    m.insert("bench".into(), json!("catchup"));
    m.insert("redemptions".into(), json!(redemptions));
    m.insert("catchup_s".into(), json!(catchup_s));
    m.insert("peak_rss_mb".into(), json!(peak_rss_mb(b.pid())));
    Ok(m)
}

/// The records a node's `!status` reports.
fn records(node: &mut NodeProc) -> u64 {
    node.status()["records"].as_u64().unwrap_or(0)
}

/// A process's peak resident memory in MiB, from `/proc/PID/status`.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
