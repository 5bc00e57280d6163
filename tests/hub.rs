//! Venue Wi-Fi with client isolation: gate devices cannot reach each other, only the wired
//! side. A hub node on the wired side, which every gate dials (`--peer`), carries gossip and
//! sync between them: a ticket admitted at one gate is refused at the other, and an admit made
//! while a gate could not reach the hub reaches the other gate once it can.
//!
//! Three network namespaces on one bridge; nftables on each gate drops its traffic to the other
//! gate (what an access point with client isolation does), mDNS off.

use gatemesh_tests::{make_event, nft, Lan, NodeProc};

/// Drop everything this host sends to or gets from `other` (client isolation).
fn isolate(netns: &str, other: &str) {
    nft(
        netns,
        &format!(
            "table inet isolation {{\n\
               chain out {{ type filter hook output priority 0; ip daddr {other} drop; }}\n\
               chain in {{ type filter hook input priority 0; ip saddr {other} drop; }}\n\
             }}\n"
        ),
    );
}

fn lift(netns: &str) {
    nft(netns, "delete table inet isolation");
}

#[test]
fn gates_that_cannot_reach_each_other_share_redemptions_through_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 4, &["hub", "g1", "g2"], false);
    let lan = Lan::new(3);
    isolate(&lan.host(1), "10.77.0.3");
    isolate(&lan.host(2), "10.77.0.2");
    let start = |i: usize, name: &str, extra: &[&str]| {
        let mut args = vec!["--no-mdns"];
        args.extend_from_slice(extra);
        NodeProc::start_in(
            Some(&lan.host(i)),
            &format!("/ip4/10.77.0.{}/udp/4001/quic-v1", i + 1),
            &ev,
            &format!("device-{name}"),
            &tmp.path().join(name),
            "north",
            &args,
        )
    };
    let mut hub = start(0, "hub", &[]);
    let started = hub.wait_for("started", |v| v["event"] == "started");
    let peer = started["peer_id"].as_str().unwrap().to_string();
    let hub_addr = format!("/ip4/10.77.0.1/udp/4001/quic-v1/p2p/{peer}");
    let mut g1 = start(1, "g1", &["--peer", &hub_addr]);
    let mut g2 = start(2, "g2", &["--peer", &hub_addr]);
    hub.wait_peers(2);
    g1.wait_peers(1);
    g2.wait_peers(1);
    for g in [&mut g1, &mut g2] {
        let peers = g.status()["peers"].clone();
        assert_eq!(
            peers,
            serde_json::json!(["hub"]),
            "{}: only the hub: {peers}",
            g.name
        );
    }
    // Gate 1 admits; gate 2, which cannot reach gate 1, refuses the same code.
    let first = g1.scan(&codes[0].1);
    assert_eq!(first["reason"], "ok", "{first}");
    g2.wait_applied(first["scan_id"].as_str().unwrap());
    let second = g2.scan(&codes[0].1);
    assert_eq!(second["reason"], "already_redeemed", "{second}");
    assert_eq!(second["previous"][0]["gate"], "north", "{second}");
    // Gate 2 loses the hub, admits, gets it back: gate 1 learns it by sync through the hub.
    isolate(&lan.host(0), "10.77.0.3");
    let offline = g2.scan(&codes[1].1);
    assert_eq!(offline["reason"], "ok", "{offline}");
    lift(&lan.host(0));
    g1.wait_applied(offline["scan_id"].as_str().unwrap());
    assert_eq!(g1.scan(&codes[1].1)["reason"], "already_redeemed");
    // Every node holds the same four records (two admits, two refusals).
    for n in [&mut hub, &mut g1, &mut g2] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while n.status()["records"] != 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not converge",
                n.name
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
