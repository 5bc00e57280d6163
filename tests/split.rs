//! Split brain in network namespaces: four hosts on one bridge, each a real node finding the
//! others by mDNS. The LAN is cut into two halves, both halves admit the same tickets, the LAN
//! heals: every node converges to the same ledger heads and reports the same double entries.

use gatemesh_tests::{make_event, Lan, NodeProc};
use std::time::{Duration, Instant};

const CONVERGE_WAIT_MAX: Duration = Duration::from_secs(60);

#[test]
fn a_split_heals_into_one_ledger_with_every_double_entry_reported_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let names = ["h0", "h1", "h2", "h3"];
    let codes = make_event(&ev, 4, &names, false);
    let lan = Lan::new(4);
    let mut nodes: Vec<NodeProc> = names
        .iter()
        .enumerate()
        .map(|(i, n)| NodeProc::start_on(&lan, i, &ev, n, tmp.path(), &[]))
        .collect();
    for n in nodes.iter_mut() {
        n.wait_peers(3);
    }
    // Cut: h0, h1 | h2, h3.
    lan.attach(2, 1);
    lan.attach(3, 1);
    // The same two tickets (screenshots) admitted on both sides; a third only on one side.
    let mut last = serde_json::Value::Null;
    for (side_node, code) in [(0, 0), (2, 0), (1, 1), (3, 1), (0, 2)] {
        last = nodes[side_node].scan(&codes[code].1);
        assert_eq!(
            last["reason"], "ok",
            "during the split each side admits: {last}"
        );
    }
    // Inside a half the mesh still works: once h1 has h0's admit, it refuses the screenshot.
    let id = last["scan_id"].as_str().unwrap().to_string();
    nodes[1].wait_applied(&id);
    let d = nodes[1].scan(&codes[2].1);
    assert_eq!(d["reason"], "already_redeemed", "{d}");
    // Hold the split until every node has dropped the other half (QUIC idle timeout): the heal
    // must then go through rediscovery, new connections and sync, not QUIC retransmission.
    for n in nodes.iter_mut() {
        let deadline = Instant::now() + CONVERGE_WAIT_MAX;
        while n.status()["peers"].as_array().map_or(0, Vec::len) > 1 {
            assert!(
                Instant::now() < deadline,
                "{} still sees the other half",
                n.name
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // Heal.
    lan.attach(2, 0);
    lan.attach(3, 0);
    let deadline = Instant::now() + CONVERGE_WAIT_MAX;
    let statuses = loop {
        let s: Vec<serde_json::Value> = nodes.iter_mut().map(NodeProc::status).collect();
        let same = s.windows(2).all(|w| w[0]["heads"] == w[1]["heads"]);
        if same && s[0]["records"] == 6 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence within {CONVERGE_WAIT_MAX:?}: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for s in &statuses {
        assert_eq!(s["conflicts"], statuses[0]["conflicts"]);
        let conflicts = s["conflicts"].as_array().unwrap();
        let tickets: Vec<&str> = conflicts
            .iter()
            .map(|c| c["ticket"].as_str().unwrap())
            .collect();
        assert_eq!(tickets, [codes[0].0.as_str(), codes[1].0.as_str()], "{s}");
        for c in conflicts {
            assert_eq!(c["double_entries"].as_array().unwrap().len(), 1, "{c}");
        }
    }
    // After the heal, the screenshot is refused everywhere.
    let d = nodes[3].scan(&codes[2].1);
    assert_eq!(d["reason"], "already_redeemed", "{d}");
}
