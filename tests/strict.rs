//! A strict zone across a split, in network namespaces: four real nodes, zone main strict at
//! 10 places (its room held at the start by the four gates: 3, 3, 2, 2). The LAN is cut in two
//! halves and both halves admit fresh tickets at every gate until every gate refuses; then it
//! heals. Each half could admit only the room its gates held: after the heal exactly 10 are
//! inside, on every node, and every gate refuses the next one.

use gatemesh_tests::{make_event, Lan, NodeProc};
use serde_json::Value;
use std::time::{Duration, Instant};

const CONVERGE_WAIT_MAX: Duration = Duration::from_secs(60);
/// How long a half's gates go on asking for room before the half counts as full.
const FULL_AFTER: Duration = Duration::from_secs(3);

/// The people inside zone main, as node `i` counts them (over HTTP, from inside its host).
fn inside(lan: &Lan, i: usize) -> u64 {
    let addr = format!("10.77.0.{}:8080", i + 1);
    lan.spawn_in(i, move || {
        let (_, v) = gatemesh_tests::http_request(&addr, "GET", "/api/stats", Some("staff"), b"");
        (v["insideNow"].as_array().into_iter().flatten())
            .find(|z| z["zone"] == "main")
            .and_then(|z| z["count"].as_u64())
            .unwrap_or(0)
    })
    .join()
    .unwrap()
}

/// Scan fresh codes at the gates of one half, round and round, until none of them has
/// admitted anyone for [`FULL_AFTER`]: how many were admitted.
fn admit_until_full(nodes: &mut [NodeProc], half: &[usize], codes: &mut Vec<String>) -> usize {
    let mut admitted = 0;
    let mut last_admit = Instant::now();
    while last_admit.elapsed() < FULL_AFTER {
        for &n in half {
            let code = codes.pop().expect("enough codes");
            let d: Value = nodes[n].scan(&code);
            match d["reason"].as_str() {
                Some("ok") => {
                    admitted += 1;
                    last_admit = Instant::now();
                }
                Some("zone_full") => codes.insert(0, code),
                other => panic!("unexpected {other:?}: {d}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    admitted
}

#[test]
fn a_strict_zone_is_never_over_capacity_across_a_split() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let names = ["h0", "h1", "h2", "h3"];
    let mut codes: Vec<String> = make_event(&ev, 40, &names, false)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    gatemesh_tests::make_strict(&ev, "main", 10, &[]);
    let lan = Lan::new(4);
    let mut nodes: Vec<NodeProc> = (names.iter().enumerate())
        .map(|(i, n)| {
            let http = format!("10.77.0.{}:8080", i + 1);
            let args = [
                "--http",
                &http,
                "--staff-token",
                "staff",
                "--admin-token",
                "admin",
            ];
            NodeProc::start_on(&lan, i, &ev, n, tmp.path(), &args)
        })
        .collect();
    for n in nodes.iter_mut() {
        n.wait_peers(3);
    }
    // Cut: h0, h1 | h2, h3. Both halves admit until every gate refuses.
    lan.attach(2, 1);
    lan.attach(3, 1);
    let left = admit_until_full(&mut nodes, &[0, 1], &mut codes);
    let right = admit_until_full(&mut nodes, &[2, 3], &mut codes);
    eprintln!("admitted during the split: {left} on one side, {right} on the other");
    assert!(
        left + right <= 10,
        "over capacity in the split: {left} + {right}"
    );
    // Heal: every node counts the same people inside, never more than the capacity.
    lan.attach(2, 0);
    lan.attach(3, 0);
    let deadline = Instant::now() + CONVERGE_WAIT_MAX;
    let counts = loop {
        let c: Vec<u64> = (0..4).map(|i| inside(&lan, i)).collect();
        if c.iter().all(|n| *n == (left + right) as u64) {
            break c;
        }
        assert!(Instant::now() < deadline, "no convergence: {c:?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        counts,
        vec![10; 4],
        "both halves used all the room each held"
    );
    for n in nodes.iter_mut() {
        let d = n.scan(&codes.pop().unwrap());
        assert_eq!(d["reason"], "zone_full", "{d}");
    }
}
