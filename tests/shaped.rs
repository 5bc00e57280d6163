//! The mesh on shaped venue networks (`gatemesh-shaper` through NFQUEUE in every namespaced
//! host): each profile is first checked by ping; on `busy-wifi` and `bad-wifi` nodes find each
//! other by mDNS, every admit reaches every gate and the same code is refused there, and
//! nothing acknowledged is lost.

use gatemesh_tests::venue::{profile, PROFILES};
use gatemesh_tests::{make_event, Lan, NodeProc};
use std::time::{Duration, Instant};

#[test]
fn each_profile_shapes_the_lan_as_named() {
    let lan = Lan::new(2);
    for p in &PROFILES {
        let shaping = lan.shape(p, 60);
        let s = shaping.check(&lan, p).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{}: rtt {:.1} ± {:.1} ms, loss {:.3}",
            p.name, s.avg_ms, s.mdev_ms, s.loss
        );
        drop(shaping);
    }
}

#[test]
fn on_bad_wifi_every_admit_reaches_every_gate_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let names = ["h0", "h1", "h2", "h3"];
    let codes = make_event(&ev, 8, &names, false);
    let lan = Lan::new(4);
    let p = profile("bad-wifi").unwrap();
    let mut shaping = lan.shape(&p, 240);
    shaping.check(&lan, &p).unwrap_or_else(|e| panic!("{e}"));
    let mut nodes: Vec<NodeProc> = names
        .iter()
        .enumerate()
        .map(|(i, n)| NodeProc::start_on(&lan, i, &ev, n, tmp.path(), &[]))
        .collect();
    for n in nodes.iter_mut() {
        n.wait_peers(3);
    }
    // Each gate admits two tickets; every other gate learns each admit and refuses the code.
    let mut admits = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let d = nodes[i % 4].scan(&code.1);
        assert_eq!(d["reason"], "ok", "{d}");
        admits.push((i % 4, d["scan_id"].as_str().unwrap().to_string()));
    }
    for (i, (at, scan_id)) in admits.iter().enumerate() {
        let other = (at + 1 + i % 3) % 4;
        nodes[other].wait_applied(scan_id);
        let d = nodes[other].scan(&codes[i].1);
        assert_eq!(d["reason"], "already_redeemed", "{d}");
    }
    // Every node ends with every record: 8 admits and 8 refusals.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s: Vec<serde_json::Value> = nodes.iter_mut().map(NodeProc::status).collect();
        if s.iter().all(|x| x["records"] == 16)
            && s.windows(2).all(|w| w[0]["heads"] == w[1]["heads"])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence on bad-wifi: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    shaping.alive().unwrap_or_else(|e| panic!("{e}"));
    drop(shaping);
}
