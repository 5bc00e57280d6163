//! A steward's phone deciding on its own: the page's offline decision (`node/web/gate.js`) is
//! a second implementation of part of the gate policy, held here to the Rust one. The vectors
//! come from `GateLogic` (`offline_world`: every reason, every tier rule the page applies, every
//! code format); the page's code runs them in Node.js and in Chromium, each with the browser's
//! WebCrypto and with the vendored Ed25519, and any difference fails.

use gatemesh_tests::{make_event, offline_world, NodeProc};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn write_vectors() -> (PathBuf, Value) {
    let v = offline_world::vectors();
    let dir = root().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("offline-vectors.json");
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    (path, v)
}

fn scans(v: &Value) -> usize {
    (v["scenarios"].as_array().unwrap().iter())
        .map(|s| s["scans"].as_array().unwrap().len())
        .sum()
}

fn assert_same(what: &str, r: &Value, total: usize) {
    assert_eq!(r["checked"], total, "{what}: {r}");
    assert_eq!(
        r["mismatches"],
        json!([]),
        "{what}: the page decides otherwise than GateLogic"
    );
}

#[test]
fn the_vectors_reach_every_reason_and_the_repeat() {
    let (_, v) = write_vectors();
    let mut seen = std::collections::BTreeSet::new();
    for s in v["scenarios"].as_array().unwrap() {
        for scan in s["scans"].as_array().unwrap() {
            seen.insert(scan["expect"]["reason"].as_str().unwrap().to_string());
            if scan["expect"]["repeat"] == true {
                seen.insert("repeat".into());
            }
            if !scan["expect"]["attention"].is_null() {
                seen.insert("attention".into());
            }
        }
    }
    let all = [
        "ok",
        "paused",
        "malformed",
        "invalid_signature",
        "unknown_ticket",
        "wrong_event",
        "revoked",
        "not_yet_valid",
        "expired",
        "wrong_zone",
        "wrong_list",
        "already_redeemed",
        "zone_full",
        "repeat",
        "attention",
        "code_expired",
    ];
    for r in all {
        assert!(seen.contains(r), "no vector expects {r}: {seen:?}");
    }
}

#[test]
fn the_pages_offline_decision_is_the_gate_logics_in_node_js() {
    let (path, v) = write_vectors();
    let out = std::process::Command::new("node")
        .arg(root().join("tests/browser/vectors.mjs"))
        .arg(&path)
        .output()
        .expect("node (Node.js) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: Value = (stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok()))
    .unwrap_or_else(|| {
        panic!(
            "no result: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_same("Node.js, WebCrypto", &r["webcrypto"], scans(&v));
    assert_same("Node.js, @noble/ed25519", &r["fallback"], scans(&v));
}

#[test]
fn the_pages_offline_decision_is_the_gate_logics_in_chromium() {
    let (path, v) = write_vectors();
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    make_event(&ev, 1, &["a"], false);
    let (_a, addr) = NodeProc::start_http(
        &ev,
        "device-a",
        &tmp.path().join("a"),
        "north",
        &["--no-mdns"],
    );
    let r = gatemesh_tests::browser(
        "vectors",
        json!({"a": format!("http://{addr}"), "file": path}),
    );
    assert_same("Chromium, WebCrypto", &r["webcrypto"], scans(&v));
    assert_same("Chromium, @noble/ed25519", &r["fallback"], scans(&v));
    eprintln!(
        "Chromium's Ed25519: {}; decision p95 {:.2} ms",
        r["ed25519"],
        r["decision_p95_ms"].as_f64().unwrap_or(-1.0)
    );
}

/// A node's view of some tickets, asked from inside host `i`'s namespace (the test process
/// itself is outside the LAN): each ticket's records.
fn tickets_at(lan: &gatemesh_tests::Lan, i: usize, addr: &str, ids: &[String]) -> Vec<Value> {
    let (addr, ids) = (addr.to_string(), ids.to_vec());
    lan.spawn_in(i, move || {
        (ids.iter())
            .map(|id| {
                let path = format!("/api/tickets/{}", id.replace(':', "%3A"));
                gatemesh_tests::http_request(&addr, "GET", &path, Some("staff"), b"").1
            })
            .collect()
    })
    .join()
    .unwrap()
}

fn conflicts_at(lan: &gatemesh_tests::Lan, i: usize, addr: &str) -> Value {
    let addr = addr.to_string();
    lan.spawn_in(i, move || {
        gatemesh_tests::http_request(&addr, "GET", "/api/conflicts", Some("staff"), b"").1
    })
    .join()
    .unwrap()
}

/// Whether every ticket has a record whose origin is the phone's.
fn all_from_phone(views: &[Value], phone: &str) -> bool {
    views.iter().all(|v| {
        (v["records"].as_array().into_iter().flatten()).any(|r| {
            r["origin"]
                .as_str()
                .is_some_and(|o| o.starts_with(&format!("{phone}@")))
        })
    })
}

fn unreadable_id(code: &str) -> String {
    use sha2::Digest;
    format!(
        "unreadable:{}",
        hex::encode(&sha2::Sha256::digest(code.as_bytes())[..8])
    )
}

#[test]
fn a_phone_scans_through_a_cut_link_and_every_node_and_hq_get_its_scans() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 24, &["b"], false);
    let ev_s = ev.to_str().unwrap();
    gatemesh_tests::gatemesh(&[
        "device",
        "enroll",
        "--event",
        ev_s,
        "--name",
        "a",
        "--tls-name",
        "10.77.0.1",
    ]);
    // The organizer pairs the phone: its own device id and pass, in a link.
    let out = gatemesh_tests::gatemesh(&[
        "device",
        "enroll",
        "--event",
        ev_s,
        "--role",
        "offline",
        "--name",
        "phone-7",
        "--link-base",
        "https://10.77.0.1:8443",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |p: &str| {
        (text.lines().find_map(|l| l.strip_prefix(p)))
            .unwrap_or_else(|| panic!("no {p:?} in {text}"))
            .trim()
            .to_string()
    };
    let link = line("pairing link: ");
    let phone = line("phone ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(phone.starts_with("phone-7-"), "{text}");
    // Host 0: node a (HTTPS for the phone), host 1: node b, host 2: the phone.
    let lan = gatemesh_tests::Lan::new(3);
    let https = ["--https", "10.77.0.1:8443", "--http", "10.77.0.1:8080"];
    let tokens = ["--staff-token", "staff", "--admin-token", "admin"];
    let mut a = NodeProc::start_in(
        Some(&lan.host(0)),
        "/ip4/10.77.0.1/udp/0/quic-v1",
        &ev,
        "device-a",
        &tmp.path().join("a"),
        "north",
        &[&https[..], &tokens[..]].concat(),
    );
    let b_data = tmp.path().join("b");
    let mut b = NodeProc::start_in(
        Some(&lan.host(1)),
        "/ip4/10.77.0.2/udp/0/quic-v1",
        &ev,
        "device-b",
        &b_data,
        "south",
        &[&["--http", "10.77.0.2:8080"][..], &tokens[..]].concat(),
    );
    a.wait_peers(1);
    b.wait_peers(1);
    // Before the cut, gate south admits X: the phone's snapshot will hold it.
    let x = &codes[1];
    assert_eq!(b.scan(&x.1)["reason"], "ok");
    let after_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let home = tmp.path().join("phone");
    gatemesh_tests::trust_event_ca(&home, &ev.join("event-ca.pem"));
    let files = tmp.path().join("signals");
    std::fs::create_dir_all(&files).unwrap();
    let forged = {
        // A GM1 code of ticket "FORGED-1" signed by a key the event does not have.
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let p = gatemesh_crdt::credential::ticket::TicketPayload {
            event_id: "test-fest".into(),
            ticket_id: "FORGED-1".into(),
            tier: "general".into(),
            key_id: "k1".into(),
            valid_from_s: 0,
            valid_until_s: 4_000_000_000,
        };
        gatemesh_crdt::credential::ticket::encode(&p, &key).unwrap()
    };
    let y = &codes[2];
    let mut offline = vec![
        json!({"code": x.1, "label": "mesh-before-cut"}),
        json!({"code": y.1, "label": "mesh-during-cut"}),
    ];
    for (i, c) in codes[3..18].iter().enumerate() {
        offline.push(json!({"code": c.1, "label": format!("fresh-{}", i + 1)}));
    }
    offline.push(json!({"wait_ms": 3500}));
    offline.push(json!({"code": codes[3].1, "label": "own-again"}));
    offline.push(json!({"code": forged, "label": "forged"}));
    offline.push(json!({"code": "NOT-A-TICKET", "label": "unknown"}));
    let args = json!({
        "link": link, "a": "https://10.77.0.1:8443", "online": codes[0].1, "offline": offline,
        "files": files, "after_ms": after_ms, "shots": shots(),
    });
    let (netns, home2) = (lan.host(2), home.clone());
    let page =
        std::thread::spawn(move || gatemesh_tests::browser_in(&netns, &home2, "phone", args));
    wait_file(&files.join("online-done"));
    // The Wi-Fi drops between the phone and its node: packets dropped, not refused.
    gatemesh_tests::nft(
        &lan.host(2),
        "table inet cut {\n\
           chain o { type filter hook output priority 0; ip daddr 10.77.0.0/24 drop; }\n\
           chain i { type filter hook input priority 0; ip saddr 10.77.0.0/24 drop; }\n\
         }\n",
    );
    // Meanwhile gate south admits Y, which the phone will admit too: a double entry.
    assert_eq!(b.scan(&y.1)["reason"], "ok");
    std::fs::write(files.join("cut"), "").unwrap();
    wait_file(&files.join("reopened"));
    let status = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan.host(2),
            "nft",
            "delete",
            "table",
            "inet",
            "cut",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let healed = std::time::Instant::now();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::fs::write(files.join("healed"), now_ms.to_string()).unwrap();
    // Every offline scan reaches the ledger of both nodes.
    let mut ids: Vec<String> = codes[1..18].iter().map(|c| c.0.clone()).collect();
    ids.push("FORGED-1".into());
    ids.push(unreadable_id("NOT-A-TICKET"));
    let (a_addr, b_addr) = ("10.77.0.1:8080", "10.77.0.2:8080");
    let took = loop {
        let on_a = tickets_at(&lan, 0, a_addr, &ids);
        let on_b = tickets_at(&lan, 1, b_addr, &ids);
        if all_from_phone(&on_a, &phone) && all_from_phone(&on_b, &phone) {
            break healed.elapsed();
        }
        assert!(
            healed.elapsed() < std::time::Duration::from_secs(60),
            "not everywhere: {on_b:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let v = page.join().unwrap();
    eprintln!(
        "every offline scan on both nodes {} ms after the link came back (the page emptied its queue {} ms after)",
        took.as_millis(),
        v["reconciled_after_heal_ms"]
    );
    check_page(&v);
    // The double entry (Y: gate south, then the phone offline) is reported alike by both nodes,
    // naming the phone.
    let (ca, cb) = (conflicts_at(&lan, 0, a_addr), conflicts_at(&lan, 1, b_addr));
    assert_eq!(ca, cb, "both nodes report the same double entries");
    let conflicts = ca["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{ca}");
    assert_eq!(conflicts[0]["ticket_id"], y.0.as_str(), "{ca}");
    let origin = conflicts[0]["double_entries"][0]["origin"]
        .as_str()
        .unwrap_or_default();
    assert!(
        origin.starts_with(&format!("{phone}@")),
        "the phone is named: {ca}"
    );
    drop(a);
    // Node b stops as a service does (SIGTERM): what it received is flushed.
    let pid = b.pid().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(
        b.wait_exit(std::time::Duration::from_secs(20)).is_some(),
        "b stops"
    );
    hq_has_the_phones_scans(&ev, &b_data, tmp.path(), &phone, &y.0);
}

fn wait_file(path: &Path) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !path.exists() {
        assert!(std::time::Instant::now() < until, "no {}", path.display());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn check_page(v: &Value) {
    assert!(v["paired_as"].as_str().unwrap().contains("phone-7-"), "{v}");
    assert_eq!(
        (&v["online"]["reason"], &v["online"]["here"]),
        (&json!("ok"), &json!(false)),
        "{v}"
    );
    let by = |label: &str| {
        (v["offline"].as_array().unwrap().iter())
            .find(|a| a["label"] == label)
            .unwrap_or_else(|| panic!("no {label}: {v}"))
            .clone()
    };
    for (label, reason) in [
        ("mesh-before-cut", "already_redeemed"),
        ("mesh-during-cut", "ok"),
        ("fresh-1", "ok"),
        ("fresh-15", "ok"),
        ("own-again", "already_redeemed"),
        ("forged", "invalid_signature"),
        ("unknown", "unknown_ticket"),
    ] {
        let a = by(label);
        assert_eq!(
            (&a["reason"], &a["here"]),
            (&json!(reason), &json!(true)),
            "{label}: {a}"
        );
    }
    assert!(
        by("fresh-2")["sync_words"]
            .as_str()
            .unwrap()
            .contains("offline"),
        "{v}"
    );
    assert_eq!(v["waiting"], "20 waiting", "{v}");
    assert_eq!(
        v["reopened_waiting"], "20 waiting",
        "the queue survives the page: {v}"
    );
    for name in [
        "phone-offline-admit",
        "phone-offline-already-used",
        "phone-offline-waiting",
        "phone-reopened-offline",
    ] {
        assert!(shots().join(format!("{name}.png")).exists(), "{name}");
    }
}

/// HQ: the phone's scans are in PostgreSQL with their origin, the double entry with them.
fn hq_has_the_phones_scans(ev: &Path, data: &Path, tmp: &Path, phone: &str, double: &str) {
    let pg = gatemesh_tests::PgCluster::start();
    let file = tmp.join("b.export");
    let (ev_s, data_s, file_s) = (
        ev.to_str().unwrap(),
        data.to_str().unwrap(),
        file.to_str().unwrap(),
    );
    gatemesh_tests::gatemesh(&["export", "--event", ev_s, "--data", data_s, "--out", file_s]);
    gatemesh_tests::gatemesh(&[
        "bridge",
        "import",
        "--event",
        ev_s,
        "--file",
        file_s,
        "--database-url",
        &pg.url,
    ]);
    let offline = pg.count(&format!(
        "SELECT count(*) FROM scans WHERE origin LIKE '{phone}@%'"
    ));
    assert_eq!(offline, 20, "every offline scan, with its origin");
    let online = pg.count(&format!(
        "SELECT count(*) FROM scans WHERE origin LIKE 'live:{phone}@%'"
    ));
    assert_eq!(online, 1, "the online scan, marked as the phone's");
    let doubles = pg.count(&format!(
        "SELECT count(*) FROM conflicts WHERE ticket_id = '{double}'"
    ));
    assert!(doubles >= 1, "HQ has the double entry");
}

fn shots() -> PathBuf {
    let dir = root().join("target/test-artifacts/phone");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
