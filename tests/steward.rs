//! What a steward and an organizer use at the gate, through the CLI and the HTTP API of a real
//! node: a guest list imported from CSV (good and bad files), names in the scan answer, search
//! by name without accents, a check-in by hand, a door for some tiers only, an attention ticket.

use gatemesh_tests::{
    gatemesh, gatemesh_fails, http_request, make_guest_event, NodeProc, PgCluster,
};
use serde_json::{json, Value};

fn post(addr: &str, path: &str, body: Value) -> (u16, Value) {
    http_request(
        addr,
        "POST",
        path,
        Some("staff"),
        &serde_json::to_vec(&body).unwrap(),
    )
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    http_request(addr, "GET", path, Some("staff"), b"")
}

#[test]
fn a_bad_guest_list_is_refused_with_its_lines_and_issues_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_guest_event(&ev, &[]);
    assert_eq!(codes.len(), 6, "four pretix rows and two Eventbrite rows");
    // E-mail addresses stay with the organizer: not in the manifest the scanners carry.
    let text = std::fs::read_to_string(ev.join("manifest.json")).unwrap();
    assert!(
        text.contains("Müller") && !text.contains("example.org"),
        "{text}"
    );
    let emails = std::fs::read_to_string(ev.join("guest-emails.json")).unwrap();
    assert!(emails.contains("jm@example.org"), "{emails}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ev.join("guest-emails.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "owner-only");
    let manifest = std::fs::read(ev.join("manifest.json")).unwrap();
    let ev_s = ev.to_str().unwrap();
    let cases: [(&str, &str, &[&str]); 4] = [
        // An id issued already, a tier the event does not sell, a name with a control character.
        (
            "id,name,tier\nNEW-1,Ann,general\nEB-1029384756-1,Bob,general\nNEW-3,Cy,platinum\nNEW-4,\"D\u{1}\",general\n",
            "id,name,tier",
            &["line 4:", "line 5:"],
        ),
        (&format!("id,name\nNEW-1,{}\n", "x".repeat(200)), "id,name", &["line 2:", "name is too long"]),
        ("Who,What\nAnn,general\n", "name=Name", &["no column \"name\""]),
        ("id,name\nNEW-1,Ann\nNEW-1,Ann again\n", "id,name", &["line 3:", "listed twice"]),
    ];
    for (csv, columns, wanted) in cases {
        let path = tmp.path().join("bad.csv");
        std::fs::write(&path, csv).unwrap();
        let err = gatemesh_fails(&[
            "tickets",
            "issue",
            "--event",
            ev_s,
            "--no-qr",
            "--from-csv",
            path.to_str().unwrap(),
            "--columns",
            columns,
        ]);
        for w in wanted {
            assert!(err.contains(w), "{w:?} missing from: {err}");
        }
        assert_eq!(
            std::fs::read(ev.join("manifest.json")).unwrap(),
            manifest,
            "nothing issued"
        );
    }
    // Bytes that are not UTF-8.
    let path = tmp.path().join("latin1.csv");
    std::fs::write(&path, b"id,name\nNEW-1,Ren\xe9\n").unwrap();
    let err = gatemesh_fails(&[
        "tickets",
        "issue",
        "--event",
        ev_s,
        "--from-csv",
        path.to_str().unwrap(),
        "--columns",
        "id,name",
    ]);
    assert!(err.contains("line 2: not UTF-8"), "{err}");
    assert_eq!(std::fs::read(ev.join("manifest.json")).unwrap(), manifest);
    // Every row good but one id issued already: refused as a whole too.
    let path = tmp.path().join("again.csv");
    std::fs::write(&path, "id,name\nNEW-9,Ann\nEB-1029384756-1,Bob\n").unwrap();
    let err = gatemesh_fails(&[
        "tickets",
        "issue",
        "--event",
        ev_s,
        "--from-csv",
        path.to_str().unwrap(),
        "--columns",
        "id,name",
    ]);
    assert!(err.contains("issued already"), "{err}");
    assert_eq!(std::fs::read(ev.join("manifest.json")).unwrap(), manifest);
}

#[test]
fn names_search_hand_check_in_lists_and_attention_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_guest_event(&ev, &["a"]);
    let (node, addr) = NodeProc::start_http(
        &ev,
        "device-a",
        &tmp.path().join("a"),
        "north",
        &["--no-mdns"],
    );
    // Search: accents and case ignored, word prefixes, every word must match.
    let (s, v) = get(&addr, "/api/search?q=eloise");
    assert_eq!(s, 200, "{v}");
    let hits = v["tickets"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{v}");
    assert_eq!(hits[0]["name"], "Éloïse Dupré");
    assert_eq!(hits[0]["order"], "ORD7K");
    assert_eq!(hits[0]["tier"], "weekend");
    assert_eq!(hits[0]["entries_left"], 3);
    let (_, v) = get(&addr, "/api/search?q=M%C3%BCll");
    assert_eq!(v["tickets"][0]["name"], "Jürgen Müller", "{v}");
    let (_, v) = get(&addr, "/api/search?q=jurgen%20zz");
    assert_eq!(
        v["tickets"].as_array().unwrap().len(),
        0,
        "every word must match: {v}"
    );
    let (_, v) = get(&addr, "/api/search?q=ord7k");
    assert_eq!(v["tickets"].as_array().unwrap().len(), 2, "{v}");
    let (_, v) = get(&addr, "/api/search?q=nguyen%20marc");
    assert_eq!(v["tickets"][0]["ticket_id"], "EB-1029384757-1", "{v}");
    let (s, v) = get(&addr, "/api/search?q=a");
    assert_eq!((s, &v["error"]), (400, &json!("invalid_query")), "{v}");
    let (s, v) = get(&addr, "/api/search");
    assert_eq!((s, &v["error"]), (400, &json!("missing_field")), "{v}");
    let (s, _) = http_request(&addr, "GET", "/api/search?q=eloise", None, b"");
    assert_eq!(s, 401);

    // The answer names the holder; Jürgen's ticket is marked attention, with its note.
    let jurgen = &codes[2].1;
    let (s, v) = post(&addr, "/api/scan", json!({"code": jurgen}));
    assert_eq!((s, &v["reason"]), (200, &json!("ok")), "{v}");
    assert_eq!(v["ticket"]["name"], "Jürgen Müller");
    assert_eq!(v["attention"], "Wheelchair user: side ramp", "{v}");

    // Checked in by hand: the same policy, marked manual; a second time, already used.
    let (s, v) = post(&addr, "/api/checkin", json!({"ticket_id": codes[0].0}));
    assert_eq!(
        (s, &v["reason"], &v["manual"]),
        (200, &json!("ok"), &json!(true)),
        "{v}"
    );
    assert_eq!(v["ticket"]["name"], "Éloïse Dupré");
    // Past the double-scan grace (a second tap within it is "the same scan again").
    std::thread::sleep(std::time::Duration::from_millis(3_100));
    let (_, v) = post(
        &addr,
        "/api/checkin",
        json!({"ticket_id": codes[0].0, "gate": "south"}),
    );
    assert_eq!(
        v["reason"], "already_redeemed",
        "a weekend pass: once today: {v}"
    );
    let (s, v) = post(&addr, "/api/checkin", json!({"ticket_id": "NOBODY"}));
    assert_eq!((s, &v["reason"]), (200, &json!("unknown_ticket")), "{v}");
    let (s, v) = post(&addr, "/api/checkin", json!({"code": codes[0].0}));
    assert_eq!((s, &v["error"]), (400, &json!("missing_field")), "{v}");

    // A VIP-only door: Chloé's general ticket is the wrong list there, Marc's VIP one enters.
    let (_, v) = post(
        &addr,
        "/api/scan",
        json!({"code": codes[4].1, "gate": "staff-door"}),
    );
    assert_eq!(v["reason"], "wrong_list", "{v}");
    let (_, v) = post(
        &addr,
        "/api/scan",
        json!({"code": codes[5].1, "gate": "staff-door"}),
    );
    assert_eq!(v["reason"], "ok", "{v}");
    let (_, v) = get(&addr, "/api/search?q=eloise");
    assert_eq!(
        (&v["tickets"][0]["inside"], &v["tickets"][0]["entries_left"]),
        (&json!(true), &json!(2))
    );

    // HQ: the guest list beside the scans, the hand check-in marked, the new reason kept.
    drop(node);
    let pg = PgCluster::start();
    let file = tmp.path().join("a.export");
    let ev_s = ev.to_str().unwrap();
    let data = tmp.path().join("a");
    gatemesh(&[
        "export",
        "--event",
        ev_s,
        "--data",
        data.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    let out = gatemesh(&[
        "bridge",
        "import",
        "--event",
        ev_s,
        "--file",
        file.to_str().unwrap(),
        "--database-url",
        &pg.url,
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["attendees"], 6, "{v}");
    assert_eq!(
        pg.sql("SELECT name || '|' || order_ref || '|' || attention FROM attendees WHERE ticket_id = 'T000003'"),
        "Jürgen Müller|ORD9Q|true"
    );
    let hand = format!(
        "SELECT a.name FROM attendees a JOIN scans s USING (event_id, ticket_id) \
         WHERE s.manual AND s.verdict = 'admit' AND s.ticket_id = '{}'",
        codes[0].0
    );
    assert_eq!(pg.sql(&hand), "Éloïse Dupré");
    assert_eq!(
        pg.count("SELECT count(*) FROM scans WHERE reason = 'wrong_list'"),
        1
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM attendees WHERE email IS NOT NULL"),
        5,
        "Ana gave none"
    );
}

#[test]
fn the_organizer_pauses_a_gate_and_a_full_zone_waits_for_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_guest_event(&ev, &["a"]);
    let ev_s = ev.to_str().unwrap();
    // The main zone holds two people at most.
    let file = ev.join("event.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    config["capacity"] = json!({"main": 2});
    std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let start = || {
        NodeProc::start_http(
            &ev,
            "device-a",
            &tmp.path().join("a"),
            "north",
            &["--no-mdns"],
        )
    };
    let (node, addr) = start();
    let bulletin = |args: &[&str]| -> Vec<u8> {
        let mut all = vec!["bulletin", "--event", ev_s];
        all.extend_from_slice(args);
        let out = gatemesh_tests::gatemesh(&all);
        let path = String::from_utf8(out.stdout).unwrap();
        let path = path.trim().trim_start_matches("bulletin written to ");
        std::fs::read(path).unwrap()
    };
    let pause = bulletin(&["--pause-gate", "north"]);
    let (s, v) = http_request(&addr, "POST", "/api/bulletins", Some("admin"), &pause);
    assert_eq!(s, 200, "{v}");
    let (_, v) = get(&addr, "/api/pauses");
    assert_eq!(v["paused"][0]["scope"], "gate", "{v}");
    assert_eq!(v["paused"][0]["name"], "north", "{v}");
    let (_, v) = post(&addr, "/api/scan", json!({"code": codes[0].1}));
    assert_eq!(v["reason"], "paused", "{v}");
    let (_, v) = post(
        &addr,
        "/api/scan",
        json!({"code": codes[0].1, "gate": "south"}),
    );
    assert_eq!(v["reason"], "ok", "another gate still works: {v}");
    let (_, v) = get(&addr, "/api/stats");
    assert_eq!(v["paused"][0]["name"], "north", "{v}");
    // A scanner restarted during the pause is still paused.
    drop(node);
    let (node, addr) = start();
    let (_, v) = post(&addr, "/api/scan", json!({"code": codes[1].1}));
    assert_eq!(v["reason"], "paused", "after a restart: {v}");
    let err = gatemesh_fails(&["bulletin", "--event", ev_s, "--pause-gate", "nowhere"]);
    assert!(err.contains("nowhere"), "{err}");
    let resume = bulletin(&["--resume-gate", "north"]);
    let (s, _) = http_request(&addr, "POST", "/api/bulletins", Some("admin"), &resume);
    assert_eq!(s, 200);
    let (_, v) = get(&addr, "/api/pauses");
    assert_eq!(v["paused"], json!([]), "{v}");
    // Capacity: two inside, the third waits; one leaves, the third comes in.
    let (_, v) = post(&addr, "/api/scan", json!({"code": codes[1].1}));
    assert_eq!(v["reason"], "ok", "{v}");
    let (_, v) = post(&addr, "/api/scan", json!({"code": codes[4].1}));
    assert_eq!(v["reason"], "zone_full", "{v}");
    let (_, v) = post(
        &addr,
        "/api/scan",
        json!({"code": codes[1].1, "gate": "exit"}),
    );
    assert_eq!(
        (&v["verdict"], &v["direction"]),
        (&json!("admit"), &json!("out")),
        "{v}"
    );
    let (_, v) = post(&addr, "/api/scan", json!({"code": codes[4].1}));
    assert_eq!(v["reason"], "ok", "{v}");
    // After a restart the zone is still full: who is inside comes from the ledger.
    drop(node);
    let (_node, addr) = start();
    let (_, v) = post(&addr, "/api/scan", json!({"code": codes[5].1}));
    assert_eq!(v["reason"], "zone_full", "after a restart: {v}");
    let (_, v) = get(&addr, "/api/stats");
    let main = v["insideNow"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"] == "main")
        .unwrap()
        .clone();
    assert_eq!(
        (&main["count"], &main["capacity"], &main["overCapacity"]),
        (&json!(2), &json!(2), &json!(0)),
        "{v}"
    );
}
