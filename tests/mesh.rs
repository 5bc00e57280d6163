//! The mesh with real processes on real sockets: `gatemesh node run` nodes on loopback.

use gatemesh_tests::{make_event, NodeProc};
use std::time::{Duration, Instant};

fn device_id(node: &NodeProc) -> String {
    node.seen
        .iter()
        .find(|v| v["event"] == "started")
        .map(|v| v["device"].as_str().unwrap().to_string())
        .expect("started event")
}

#[test]
fn five_nodes_find_each_other_by_mdns_and_a_screenshot_is_refused_at_the_next_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let codes = make_event(&ev, 5, &names, false);
    let gates = ["north", "south", "north", "south", "south"];
    let mut nodes: Vec<NodeProc> = names
        .iter()
        .zip(gates)
        .map(|(n, g)| NodeProc::start(&ev, &format!("device-{n}"), &tmp.path().join(n), g, &[]))
        .collect();
    for n in nodes.iter_mut() {
        n.wait_for("started", |v| v["event"] == "started");
    }
    for n in nodes.iter_mut() {
        n.wait_peers(4); // mDNS alone: no --peer was given
    }
    let first_device = device_id(&nodes[0]);
    let admit = nodes[0].scan(&codes[0].1);
    assert_eq!(admit["reason"], "ok");
    let scan_id = admit["scan_id"].as_str().unwrap().to_string();
    nodes[4].wait_applied(&scan_id);
    let refused = nodes[4].scan(&codes[0].1);
    assert_eq!(refused["verdict"], "deny", "{refused}");
    assert_eq!(refused["reason"], "already_redeemed");
    assert_eq!(refused["previous"][0]["device"], first_device.as_str());
    assert_eq!(refused["previous"][0]["gate"], "north");
    // Every node holds both records and no double entry.
    for n in nodes.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = n.status();
            if s["records"] == 2 {
                assert_eq!(s["conflicts"], serde_json::json!([]));
                break;
            }
            assert!(Instant::now() < deadline, "{}: {s}", n.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_node_killed_and_restarted_catches_up_and_publishes_again_within_two_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 6, &["a", "b", "c"], false);
    let start = |n: &str| {
        NodeProc::start(
            &ev,
            &format!("device-{n}"),
            &tmp.path().join(n),
            "north",
            &[],
        )
    };
    let (mut a, mut b, mut c) = (start("a"), start("b"), start("c"));
    for n in [&mut a, &mut b, &mut c] {
        n.wait_peers(2);
    }
    let before_kill = b.scan(&codes[0].1);
    assert_eq!(before_kill["reason"], "ok");
    b.kill();
    // While b is down, a admits another ticket: b must catch up through sync.
    assert_eq!(a.scan(&codes[1].1)["reason"], "ok");
    let mut b = start("b");
    b.wait_peers(2);
    let sent = Instant::now();
    let admit = b.scan(&codes[2].1);
    assert_eq!(
        admit["reason"], "ok",
        "b kept its own admit and took a new one: {admit}"
    );
    let id = admit["scan_id"].as_str().unwrap().to_string();
    for other in [&mut a, &mut c] {
        let got = other.wait_for_within(
            "b's new admit",
            Duration::from_secs(2).saturating_sub(sent.elapsed()),
            |v| {
                v["event"] == "applied"
                    && v["records"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|s| s == id.as_str()))
            },
        );
        assert!(
            got.is_some(),
            "{} did not get b's admit within 2 s of the scan: {:#?}",
            other.name,
            other.seen
        );
    }
    // b caught up with what it missed and with what it did before the kill.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = b.scan(&codes[1].1);
        if r["reason"] == "already_redeemed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b never learned of a's admit: {r}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Its own admit from before the kill survived: refused, or (within the 3 s double-scan
    // grace) the same admit handed back as a repeat.
    let again = b.scan(&codes[0].1);
    let kept = again["reason"] == "already_redeemed"
        || (again["repeat"] == true && again["scan_id"] == before_kill["scan_id"]);
    assert!(kept, "b lost its admit from before the kill: {again}");
}

#[test]
fn an_unenrolled_node_gets_no_connection_and_nothing_it_scans_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 3, &["a", "b"], false);
    // The rogue holds a real organizer-signed certificate, but in a copy of the event that the
    // venue's devices never saw: it is not in their roster.
    let rogue_ev = tmp.path().join("rogue-event");
    copy_dir(&ev, &rogue_ev);
    gatemesh_tests::gatemesh(&[
        "device",
        "enroll",
        "--event",
        rogue_ev.to_str().unwrap(),
        "--name",
        "rogue",
    ]);
    let mut a = NodeProc::start(&ev, "device-a", &tmp.path().join("a"), "north", &[]);
    let mut b = NodeProc::start(&ev, "device-b", &tmp.path().join("b"), "south", &[]);
    a.wait_peers(1);
    b.wait_peers(1);
    let a_addr = a
        .seen
        .iter()
        .find(|v| v["event"] == "listening")
        .map(|v| v["addr"].as_str().unwrap().to_string())
        .unwrap();
    let a_peer = a
        .seen
        .iter()
        .find(|v| v["event"] == "started")
        .map(|v| v["peer_id"].as_str().unwrap().to_string())
        .unwrap();
    let mut rogue = NodeProc::start(
        &rogue_ev,
        "device-rogue",
        &tmp.path().join("r"),
        "north",
        &["--peer", &format!("{a_addr}/p2p/{a_peer}")],
    );
    a.wait_for("the rogue refused", |v| v["event"] == "rejected_peer");
    assert_eq!(rogue.scan(&codes[0].1)["reason"], "ok");
    std::thread::sleep(Duration::from_secs(2));
    for n in [&mut a, &mut b] {
        let s = n.status();
        assert_eq!(s["records"], 0, "{}: {s}", n.name);
        assert_eq!(
            s["peers"].as_array().unwrap().len(),
            1,
            "{}: only the enrolled peer: {s}",
            n.name
        );
    }
    assert!(a.status()["mesh"]["rejected_peers"].as_u64().unwrap() >= 1);
    // The venue's devices still admit the ticket the rogue "used".
    assert_eq!(a.scan(&codes[0].1)["reason"], "ok");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn a_bulletin_given_to_one_node_revokes_a_ticket_and_a_device_on_every_node() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 4, &["a", "b", "thief"], false);
    let start = |n: &str| {
        NodeProc::start(
            &ev,
            &format!("device-{n}"),
            &tmp.path().join(n),
            "north",
            &[],
        )
    };
    let (mut a, mut b, mut thief) = (start("a"), start("b"), start("thief"));
    for n in [&mut a, &mut b, &mut thief] {
        n.wait_peers(2);
    }
    // Before the theft is noticed, the stolen scanner's admit counts.
    let early = thief.scan(&codes[0].1);
    assert_eq!(early["reason"], "ok");
    let early_id = early["scan_id"].as_str().unwrap().to_string();
    a.wait_applied(&early_id);
    b.kill(); // b is off when the bulletin goes out
    std::thread::sleep(Duration::from_millis(50));
    // The organizer keeps what the thief wrote up to now, as node a shows it.
    let chains = a.status()["chains"].clone();
    let keep: Vec<String> = chains
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "thief")
        .map(|c| format!("{}:{}", c["chain"].as_str().unwrap(), c["position"]))
        .collect();
    assert_eq!(keep.len(), 1, "{chains}");
    let out = gatemesh_tests::gatemesh(&[
        "bulletin",
        "--event",
        ev.to_str().unwrap(),
        "--revoke-device",
        "thief",
        "--keep",
        &keep[0],
        "--revoke-ticket",
        &codes[3].0,
    ]);
    let path = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .trim_start_matches("bulletin written to ")
        .to_string();
    // The bulletin file is given to a only, as an operator would; the copy in the event
    // directory must not reach b by the file system, so b restarts from a copy of the event
    // without it.
    let b_event = tmp.path().join("event-b");
    copy_dir(&ev, &b_event);
    std::fs::remove_dir_all(b_event.join("bulletins")).unwrap();
    a.send(&format!("!bulletin {path}"));
    let applied = a.wait_for("the bulletin", |v| v["event"] == "bulletin");
    assert_eq!(applied["revoked_tickets"], 1, "{applied}");
    // The thief is cut off; what it scans now counts nowhere.
    a.wait_for("the thief gone", |v| {
        v["event"] == "peer_disconnected" && v["peer"] == "thief"
    });
    let late = thief.scan(&codes[1].1);
    assert_eq!(
        late["reason"], "ok",
        "the stolen device still answers locally: {late}"
    );
    let mut b = NodeProc::start(&b_event, "device-b", &tmp.path().join("b"), "north", &[]);
    let got = b.wait_for("the bulletin from a", |v| v["event"] == "bulletin");
    assert_eq!(got["revoked_devices"].as_array().unwrap().len(), 1, "{got}");
    for n in [&mut a, &mut b] {
        assert_eq!(n.scan(&codes[3].1)["reason"], "revoked", "{}", n.name);
    }
    // The thief's late admit counts nowhere: a admits that ticket, and b then names only a.
    let a_admit = a.scan(&codes[1].1);
    assert_eq!(
        a_admit["reason"], "ok",
        "the thief's late admit must not count: {a_admit}"
    );
    let a_id = a_admit["scan_id"].as_str().unwrap().to_string();
    b.wait_applied(&a_id);
    let on_b = b.scan(&codes[1].1);
    assert_eq!(on_b["reason"], "already_redeemed", "{on_b}");
    assert_eq!(
        on_b["previous"].as_array().unwrap().len(),
        1,
        "only a's entry: {on_b}"
    );
    assert_eq!(on_b["previous"][0]["scan_id"], a_id.as_str());
    // The thief's admit from before the revocation still counts, on both nodes.
    let thief_id = early_id.split('-').next().unwrap().to_string();
    for n in [&mut a, &mut b] {
        let r = n.scan(&codes[0].1);
        assert_eq!(r["reason"], "already_redeemed", "{}: {r}", n.name);
        assert_eq!(
            r["previous"][0]["device"],
            thief_id.as_str(),
            "{}: {r}",
            n.name
        );
    }
}

#[test]
fn a_node_that_just_started_says_it_is_catching_up_until_it_has() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 2, &["a", "b"], false);
    // b's peer is not there: b cannot know what a admitted while it was down.
    let mut b = NodeProc::start(
        &ev,
        "device-b",
        &tmp.path().join("b"),
        "north",
        &["--no-mdns"],
    );
    let started = Instant::now();
    let first = b.scan(&codes[0].1);
    assert_eq!(first["reason"], "ok");
    if started.elapsed() < Duration::from_millis(gatemesh_crdt::ledger::catchup::CATCH_UP_MAX_MS) {
        assert_eq!(first["synced"], false, "{first}");
    }
    // Past the bound (counted from the node's own start, before its first answer) it answers
    // as caught up (no `synced` field).
    let answered = Instant::now();
    let bound = Duration::from_millis(gatemesh_crdt::ledger::catchup::CATCH_UP_MAX_MS);
    std::thread::sleep((bound + Duration::from_millis(100)).saturating_sub(answered.elapsed()));
    let later = b.scan(&codes[1].1);
    assert_eq!(later["reason"], "ok");
    assert!(later.get("synced").is_none(), "{later}");
}

#[test]
fn two_scanners_with_different_event_files_refuse_each_other_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 2, &["a", "b"], false);
    // b's copy of the event lets each general ticket in twice.
    let other = tmp.path().join("event-other");
    let cp = std::process::Command::new("cp")
        .arg("-r")
        .arg(&ev)
        .arg(&other)
        .status()
        .unwrap();
    assert!(cp.success());
    let file = other.join("event.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    for tier in config["tiers"].as_array_mut().unwrap() {
        if tier["name"] == "general" {
            tier["max_entries"] = serde_json::json!(2);
        }
    }
    std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let mut a = NodeProc::start(&ev, "device-a", &tmp.path().join("a"), "north", &[]);
    let mut b = NodeProc::start(&other, "device-b", &tmp.path().join("b"), "north", &[]);
    for n in [&mut a, &mut b] {
        let refused = n.wait_for("event_mismatch", |v| v["event"] == "event_mismatch");
        assert_eq!(refused["reason"], "event_mismatch", "{refused}");
        assert_ne!(refused["theirs"], refused["ours"], "{refused}");
    }
    // Each judges by its own file, and neither takes the other's records.
    assert_eq!(a.scan(&codes[0].1)["reason"], "ok");
    assert_eq!(b.scan(&codes[0].1)["reason"], "ok");
    let (sa, sb) = (a.status(), b.status());
    assert_ne!(sa["event_config"], sb["event_config"]);
    assert_eq!(
        (sa["records"].as_u64(), sb["records"].as_u64()),
        (Some(1), Some(1))
    );
    for s in [&sa, &sb] {
        assert!(s["mesh"]["event_mismatch"].as_u64() >= Some(1), "{s}");
        assert_eq!(
            s["conflicts"],
            serde_json::json!([]),
            "no silent double entry: {s}"
        );
    }
}
