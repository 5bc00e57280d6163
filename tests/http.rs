//! The node's HTTP API over real loopback HTTP: every route, bad input, wrong tokens, oversized
//! bodies; the right 4xx and error code each time, and the node unaffected.

use gatemesh_tests::{make_event, NodeProc};
use serde_json::Value;
use std::io::{Read, Write};

use gatemesh_tests::http_request as request;

#[test]
fn every_route_answers_and_bad_requests_get_their_code() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 2, &["a"], false);
    let mut a = NodeProc::start(
        &ev,
        "device-a",
        &tmp.path().join("a"),
        "north",
        &[
            "--no-mdns",
            "--http",
            "127.0.0.1:0",
            "--staff-token",
            "staff",
            "--admin-token",
            "admin",
        ],
    );
    let http = a.wait_for("http", |v| v["event"] == "http");
    let addr = http["addr"].as_str().unwrap().to_string();
    assert!(
        http.get("staff_token").is_none(),
        "given tokens are not printed"
    );
    let req = |m: &str, p: &str, t: Option<&str>, b: &[u8]| request(&addr, m, p, t, b);
    let code = codes[0].1.clone();
    let scan_body =
        |gate: &str| serde_json::to_vec(&serde_json::json!({"code": code, "gate": gate})).unwrap();

    assert_eq!(req("GET", "/health/live", None, b"").0, 200);
    assert_eq!(req("GET", "/health/ready", None, b"").0, 200);
    for (m, p, t, b, status, err) in [
        (
            "POST",
            "/api/scan",
            None,
            scan_body("north"),
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/api/scan",
            Some("wrong"),
            scan_body("north"),
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/api/scan",
            Some("staff"),
            b"{not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/api/scan",
            Some("staff"),
            b"{\"gate\":\"north\"}".to_vec(),
            400,
            "missing_field",
        ),
        (
            "POST",
            "/api/scan",
            Some("staff"),
            b"{\"code\":\"x\",\"direction\":\"up\"}".to_vec(),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/api/scan",
            Some("staff"),
            scan_body("nowhere"),
            400,
            "unknown_gate",
        ),
        (
            "POST",
            "/api/scan",
            Some("staff"),
            vec![b' '; 17 * 1024],
            413,
            "body_too_large",
        ),
        (
            "GET",
            "/api/tickets/NOPE",
            Some("staff"),
            Vec::new(),
            404,
            "unknown_ticket",
        ),
        (
            "GET",
            "/api/nothing-here",
            Some("staff"),
            Vec::new(),
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/bulletins",
            Some("staff"),
            b"{}".to_vec(),
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/api/bulletins",
            Some("admin"),
            b"{}".to_vec(),
            400,
            "bulletin_rejected",
        ),
    ] {
        let (s, v) = req(m, p, t, &b);
        assert_eq!(
            (s, v["error"].as_str()),
            (status, Some(err)),
            "{m} {p}: {v}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // The node is unaffected: it scans, refuses the screenshot at the next gate, and reports.
    let (s, first) = req("POST", "/api/scan", Some("staff"), &scan_body("north"));
    assert_eq!(
        (s, first["verdict"].as_str(), first["reason"].as_str()),
        (200, Some("admit"), Some("ok")),
        "{first}"
    );
    // The same device reads it again within the grace: the earlier admit comes back.
    let (s, second) = req("POST", "/api/scan", Some("staff"), &scan_body("south"));
    assert_eq!(
        (s, second["repeat"].as_bool(), &second["scan_id"]),
        (200, Some(true), &first["scan_id"]),
        "{second}"
    );
    let (s, t) = req(
        "GET",
        &format!("/api/tickets/{}", codes[0].0),
        Some("staff"),
        b"",
    );
    assert_eq!(
        (
            s,
            t["records"].as_array().map(Vec::len),
            t["entries_left"].as_u64()
        ),
        (200, Some(1), Some(0)),
        "{t}"
    );
    let (s, c) = req("GET", "/api/conflicts", Some("admin"), b"");
    assert_eq!(
        (s, c["conflicts"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{c}"
    );
    let (s, st) = req("GET", "/api/status", Some("staff"), b"");
    assert_eq!((s, st["records"].as_u64()), (200, Some(1)), "{st}");
    // Standard input still works alongside HTTP.
    assert_eq!(a.scan(&codes[1].1)["reason"], "ok");
}

/// Start a node with HTTP on loopback and tokens `staff` / `admin`; returns it and its address.
fn http_node(ev: &std::path::Path, device: &str, data: &std::path::Path) -> (NodeProc, String) {
    NodeProc::start_http(ev, device, data, "north", &["--no-mdns"])
}

/// Read a Server-Sent Events stream until an event of `kind` arrives; returns its data.
fn sse_until(stream: &mut std::net::TcpStream, seen: &mut String, kind: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let marker = format!("event: {kind}\ndata: ");
    loop {
        if let Some(at) = seen.find(&marker) {
            let rest = &seen[at + marker.len()..];
            if let Some(end) = rest.find('\n') {
                let v = serde_json::from_str(&rest[..end]).unwrap();
                *seen = rest[end..].to_string();
                return v;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} event in {seen:?}"
        );
        let mut buf = [0u8; 8192];
        match stream.read(&mut buf) {
            Ok(0) => panic!("stream closed; saw {seen:?}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {} // read timeout: look again
        }
    }
}

#[test]
fn stats_metrics_peers_and_the_live_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 5, &["a"], false);
    let (mut a, addr) = http_node(&ev, "device-a", &tmp.path().join("a"));
    let req = |m: &str, p: &str, t: Option<&str>, b: &[u8]| request(&addr, m, p, t, b);

    // The stream: a first stats event at once, then every scan as it happens.
    let (s, _) = req("GET", "/api/stream", None, b"");
    assert_eq!(s, 401, "the stream needs a token");
    let mut sse = std::net::TcpStream::connect(&addr).unwrap();
    sse.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    write!(
        sse,
        "GET /api/stream?token=staff HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let first = sse_until(&mut sse, &mut seen, "stats");
    assert_eq!(first["admitted"], 0, "{first}");

    // Two admits, a screenshot refused, a forged code; one admit at the exit gate.
    for c in &codes[..2] {
        assert_eq!(a.scan(&c.1)["reason"], "ok");
    }
    let scanned = sse_until(&mut sse, &mut seen, "scan");
    assert_eq!(scanned["verdict"], "admit", "{scanned}");
    // Past the double-scan grace, the screenshot at the next gate is refused.
    std::thread::sleep(std::time::Duration::from_millis(3_100));
    let body =
        serde_json::to_vec(&serde_json::json!({"code": codes[0].1, "gate": "south"})).unwrap();
    let (_, dup) = req("POST", "/api/scan", Some("staff"), &body);
    assert_eq!(dup["reason"], "already_redeemed", "{dup}");
    assert_eq!(dup["previous"][0]["gate"], "north", "{dup}");
    assert_eq!(a.scan("GM1.forged.code")["verdict"], "deny");
    let out =
        serde_json::to_vec(&serde_json::json!({"code": codes[2].1, "gate": "north"})).unwrap();
    req("POST", "/api/scan", Some("staff"), &out);
    let live = sse_until(&mut sse, &mut seen, "stats");
    assert!(live["scans"].as_u64().unwrap() >= 1, "{live}");

    let (s, st) = req("GET", "/api/stats", Some("staff"), b"");
    assert_eq!(s, 200);
    assert_eq!(
        (
            &st["admitted"],
            &st["denied"],
            &st["checkedInGuests"],
            &st["totalGuests"]
        ),
        (
            &serde_json::json!(3),
            &serde_json::json!(2),
            &serde_json::json!(3),
            &serde_json::json!(5)
        ),
        "{st}"
    );
    assert_eq!(st["admitsLastMinute"], 3, "{st}");
    let reasons: Vec<&str> = st["byReason"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"already_redeemed"), "{st}");
    assert_eq!(st["insideNow"][0]["count"], 3, "{st}");
    assert_eq!(st["byScanner"][0]["name"], "a", "{st}");
    assert_eq!(st["byMinute"].as_array().unwrap().len(), 60, "{st}");
    let by_gate: u64 = st["byLocation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["admitted"].as_u64().unwrap())
        .sum();
    assert_eq!(by_gate, 3, "{st}");

    // Prometheus text.
    let mut m = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        m,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer staff\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    m.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("application/openmetrics-text"), "{text}");
    for want in [
        "gatemesh_scans_total{verdict=\"admit\",reason=\"ok\"} 3",
        "gatemesh_scans_total{verdict=\"deny\",reason=\"already_redeemed\"} 1",
        "gatemesh_decision_seconds_count 5",
        "gatemesh_peers_connected 0",
        "gatemesh_ledger_records 5",
        "gatemesh_rejected_messages_total 0",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    assert_eq!(req("GET", "/metrics", None, b"").0, 401);

    let (s, p) = req("GET", "/api/peers", Some("staff"), b"");
    assert_eq!(
        (s, p["peers"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{p}"
    );
}

#[test]
fn offline_manifest_and_reconcile_follow_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 5, &["a"], false);
    // The organizer lists the handheld h1; h2 is not listed.
    let listed = gatemesh_tests::gatemesh(&[
        "device",
        "enroll",
        "--event",
        ev.to_str().unwrap(),
        "--name",
        "h1",
        "--role",
        "offline",
        "--list",
    ]);
    assert!(listed.status.success());
    let (mut a, addr) = http_node(&ev, "device-a", &tmp.path().join("a"));
    let req = |m: &str, p: &str, t: Option<&str>, b: &[u8]| request(&addr, m, p, t, b);
    let event_id = a.status()["event_id"].as_str().unwrap().to_string();
    // Inside the event (it opened when it was made, a moment ago), to the second.
    let base = (gatemesh_node::now_ms() / 1000 + 1) * 1000;
    let at = |ms: u64| gatemesh_crdt::record::date::iso(base + ms);

    let (s, v) = req(
        "GET",
        &format!("/offline/manifest/{event_id}"),
        Some("staff"),
        b"",
    );
    assert_eq!(
        (s, &v["error"], &v["success"]),
        (
            400,
            &serde_json::json!("MISSING_DEVICE_ID"),
            &serde_json::json!(false)
        ),
        "{v}"
    );
    let (s, v) = req(
        "GET",
        "/offline/manifest/other-event?device_id=h1",
        Some("staff"),
        b"",
    );
    assert_eq!(
        (s, v["error"].as_str()),
        (404, Some("EVENT_NOT_FOUND")),
        "{v}"
    );
    assert_eq!(
        req(
            "GET",
            &format!("/offline/manifest/{event_id}?device_id=h1"),
            None,
            b""
        )
        .0,
        401
    );

    // The mesh admits ticket 0 before the handheld's scans are reconciled.
    assert_eq!(a.scan(&codes[0].1)["reason"], "ok");
    let (s, v) = req(
        "GET",
        &format!("/offline/manifest/{event_id}?device_id=h1"),
        Some("staff"),
        b"",
    );
    assert_eq!((s, &v["success"]), (200, &serde_json::json!(true)), "{v}");
    let tickets = v["manifest"]["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 5);
    let t0 = tickets
        .iter()
        .find(|t| t["ticketId"] == codes[0].0.as_str())
        .unwrap();
    assert_eq!(
        (&t0["status"], &t0["currentScans"]),
        (&serde_json::json!("used"), &serde_json::json!(1)),
        "{t0}"
    );
    assert_eq!(tickets.iter().filter(|t| t["status"] == "valid").count(), 4);

    let scan = |t: &str, at: &str, result: &str| serde_json::json!({"ticket_id": t, "scanned_at": at, "result": result, "scan_count": 1});
    let body = serde_json::json!({"device_id": "h1", "scans": [
        scan(&codes[1].0, &at(0), "ALLOW"),
        scan(&codes[2].0, &at(5_250), "DENY"),
        scan(&codes[0].0, &at(60_000), "ALLOW"),
        scan("NO-SUCH-TICKET", &at(120_000), "ALLOW"),
        scan(&codes[3].0, "yesterday", "ALLOW"),
    ]});
    let (s, v) = req(
        "POST",
        "/offline/reconcile",
        Some("staff"),
        &serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["success"], &v["reconciled"], &v["failed"]),
        (
            &serde_json::json!(true),
            &serde_json::json!(3),
            &serde_json::json!(2)
        ),
        "{v}"
    );
    let statuses: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["SUCCESS", "SUCCESS", "SUCCESS", "ERROR", "ERROR"],
        "{v}"
    );
    // Posted again (the handheld retried): nothing is counted twice.
    let (_, again) = req(
        "POST",
        "/offline/reconcile",
        Some("staff"),
        &serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(
        (&again["reconciled"], &again["failed"]),
        (&serde_json::json!(0), &serde_json::json!(5)),
        "{again}"
    );
    assert_eq!(again["results"][0]["status"], "DUPLICATE", "{again}");
    assert_eq!(
        again["results"][0]["message"], "Already processed",
        "{again}"
    );

    // The reconciled admit counts: the ticket is used at the gate now.
    let d = a.scan(&codes[1].1);
    assert_eq!(d["reason"], "already_redeemed", "{d}");
    assert_eq!(d["previous"][0]["wall_ms"], base, "{d}");
    // The offline admit of a ticket the mesh had let in is a double entry.
    let (_, c) = req("GET", "/api/conflicts", Some("staff"), b"");
    let conflicts = c["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{c}");
    assert_eq!(conflicts[0]["ticket_id"], codes[0].0.as_str(), "{c}");
    let (_, t) = req(
        "GET",
        &format!("/api/tickets/{}", codes[1].0),
        Some("staff"),
        b"",
    );
    assert_eq!(t["records"].as_array().map(Vec::len), Some(2), "{t}");

    // Only devices the organizer listed, unless the admin token vouches for one.
    let stranger = serde_json::to_vec(
        &serde_json::json!({"device_id": "h2", "scans": [scan(&codes[4].0, &at(1_000), "ALLOW")]}),
    )
    .unwrap();
    let (s, v) = req("POST", "/offline/reconcile", Some("staff"), &stranger);
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("UNKNOWN_DEVICE")),
        "{v}"
    );
    // The gate policy applies to every reconciled scan: outside the event, a revoked ticket.
    let late = serde_json::to_vec(&serde_json::json!({"device_id": "h1", "scans": [
        scan(&codes[4].0, "2099-01-01T00:00:00Z", "ALLOW"),
        scan(&codes[4].0, "9999-12-31T00:00:00Z", "ALLOW"),
    ]}))
    .unwrap();
    let (_, v) = req("POST", "/offline/reconcile", Some("staff"), &late);
    assert_eq!(
        (&v["reconciled"], &v["failed"]),
        (&0.into(), &2.into()),
        "{v}"
    );
    let (s, v) = req("POST", "/offline/reconcile", Some("admin"), &stranger);
    assert_eq!((s, &v["reconciled"]), (200, &1.into()), "{v}");

    // Whole-request refusals.
    for (body, err) in [
        (b"{\"scans\": []}".to_vec(), "INVALID_REQUEST"),
        (b"{\"device_id\": \"\", \"scans\": []}".to_vec(), "MISSING_DEVICE_ID"),
        (serde_json::to_vec(&serde_json::json!({"device_id": "h1", "scans": vec![serde_json::json!({"ticket_id": "x", "scanned_at": "1", "result": "A"}); 201]})).unwrap(), "TOO_MANY_SCANS"),
    ] {
        let (s, v) = req("POST", "/offline/reconcile", Some("staff"), &body);
        assert_eq!((s, v["error"].as_str()), (400, Some(err)), "{v}");
    }
}

#[test]
fn sigterm_answers_what_was_asked_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 2_000, &["a"], false);
    let data = tmp.path().join("a");
    let (mut a, addr) = http_node(&ev, "device-a", &data);
    // Four clients scan as fast as they can; the node is told to stop while they do.
    let admitted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|k| {
            let (addr, codes, admitted) = (addr.clone(), codes.clone(), admitted.clone());
            std::thread::spawn(move || {
                for (ticket, code) in codes.iter().skip(k).step_by(4) {
                    let body = serde_json::to_vec(&serde_json::json!({"code": code})).unwrap();
                    let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
                        return;
                    };
                    let head = format!("POST /api/scan HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer staff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    if s.write_all(head.as_bytes()).and_then(|_| s.write_all(&body)).is_err() {
                        return;
                    }
                    let mut out = String::new();
                    let _ = s.read_to_string(&mut out);
                    if out.starts_with("HTTP/1.1 200") && out.contains("\"verdict\":\"admit\"") {
                        admitted.lock().unwrap().push(ticket.clone());
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let pid = a.pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = a
        .wait_exit(std::time::Duration::from_secs(20))
        .expect("the node stops by itself");
    assert!(status.success(), "{status:?}");
    for c in clients {
        c.join().unwrap();
    }
    let admitted = admitted.lock().unwrap().clone();
    eprintln!("{} admits answered before the stop", admitted.len());
    assert!(
        !admitted.is_empty() && admitted.len() < codes.len(),
        "the stop came while scans were being answered"
    );
    drop(a);
    // Every answered admit is in the ledger after a restart.
    let (_b, addr) = http_node(&ev, "device-a", &data);
    for ticket in &admitted {
        let (s, t) = request(
            &addr,
            "GET",
            &format!("/api/tickets/{ticket}"),
            Some("staff"),
            b"",
        );
        assert_eq!(
            (s, t["entries"].as_array().map(Vec::len)),
            (200, Some(1)),
            "{ticket}: {t}"
        );
    }
}

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.x), blocking, with a
/// read limit.
fn connect_from(rt: &tokio::runtime::Runtime, from: &str, addr: &str) -> std::net::TcpStream {
    let stream = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let stream = s.connect(addr.parse().unwrap()).await.unwrap();
        stream.into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
}

/// A request on `conn`; the status, or `None` when the node closed it without answering.
fn ready_on(conn: &mut std::net::TcpStream) -> Option<u16> {
    let _ = conn.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
}

#[test]
fn one_address_cannot_take_every_connection() {
    use gatemesh_node::conns::CONNECTIONS_PER_IP_MAX;
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("event");
    make_event(&ev, 1, &["a"], false);
    let (mut node, addr) = http_node(&ev, "device-a", &dir.path().join("a"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One address opens as many connections as it may and says nothing on them.
    let mut held: Vec<_> = (0..CONNECTIONS_PER_IP_MAX)
        .map(|_| connect_from(&rt, "127.0.0.1", &addr))
        .collect();
    assert_eq!(
        ready_on(&mut held[0]),
        Some(200),
        "a held connection is served"
    );
    held.remove(0);
    held.push(connect_from(&rt, "127.0.0.1", &addr));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // One more from that address is closed unanswered; another address is still served.
    let mut over = connect_from(&rt, "127.0.0.1", &addr);
    assert_eq!(ready_on(&mut over), None, "over the per-address limit");
    let mut other = connect_from(&rt, "127.0.0.2", &addr);
    assert_eq!(ready_on(&mut other), Some(200), "another address");
    // Closing the held connections gives the room back.
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut again = connect_from(&rt, "127.0.0.1", &addr);
        match ready_on(&mut again) {
            Some(200) => break,
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            s => panic!("the address never got its room back: {s:?}"),
        }
    }
    node.drain();
}

#[test]
fn a_node_without_standard_input_serves_until_sigterm() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    make_event(&ev, 1, &["a"], false);
    // As a service runs it: standard input at its end from the start.
    let mut child = std::process::Command::new(gatemesh_tests::gatemesh_bin())
        .args(["node", "run", "--event"])
        .arg(&ev)
        .arg("--device")
        .arg(ev.join("device-a"))
        .arg("--data")
        .arg(tmp.path().join("a"))
        .args([
            "--gate",
            "north",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ])
        .args([
            "--no-mdns",
            "--http",
            "127.0.0.1:0",
            "--staff-token",
            "staff",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let http: Value = lines
        .by_ref()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .find(|v| v["event"] == "http")
        .expect("the node serves HTTP");
    let addr = http["addr"].as_str().unwrap().to_string();
    // The admin token it made is in an owner-only file, not in what it prints.
    assert!(http.get("admin_token").is_none(), "{http}");
    let tokens = std::path::PathBuf::from(http["tokens_file"].as_str().expect("tokens_file"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&tokens).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the tokens file is the owner's only");
    let kept: Value = serde_json::from_slice(&std::fs::read(&tokens).unwrap()).unwrap();
    let admin = kept["admin_token"].as_str().unwrap();
    assert_eq!(
        request(&addr, "GET", "/api/status", Some(admin), b"").0,
        200
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(child.try_wait().unwrap(), None, "still running");
    assert_eq!(request(&addr, "GET", "/health/ready", None, b"").0, 200);
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:?}");
}

/// A request with a body on a kept-alive connection; the status, or `None` when the node closed
/// it without answering.
fn keep_alive(conn: &mut std::net::TcpStream, head: &str, body: &str) -> Option<u16> {
    let req = format!(
        "{head}\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the status line and headers, then the body its length says.
    loop {
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let len: usize = text[..end]
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_string)
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if got.len() >= end + 4 + len {
            return text.split_whitespace().nth(1).and_then(|c| c.parse().ok());
        }
    }
}

#[test]
fn clients_without_a_token_cannot_keep_a_steward_out() {
    use gatemesh_node::conns::{CONNECTIONS_MAX, CONNECTIONS_PER_IP_MAX};
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("event");
    let codes = make_event(&ev, 3, &["a"], false);
    let (mut node, addr) = http_node(&ev, "device-a", &dir.path().join("a"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scan = |conn: &mut std::net::TcpStream, code: &str| {
        let body = serde_json::json!({"code": code}).to_string();
        keep_alive(
            conn,
            "POST /api/scan HTTP/1.1\r\nAuthorization: Bearer staff",
            &body,
        )
    };
    // A steward's connection, vouched for by its first scan, before the flood.
    let mut steward = connect_from(&rt, "127.0.0.100", &addr);
    assert_eq!(scan(&mut steward, &codes[0].1), Some(200));
    // The whole budget, from 16 addresses, each connection kept alive with health checks.
    let addresses = CONNECTIONS_MAX / CONNECTIONS_PER_IP_MAX;
    let mut flood = Vec::new();
    for a in 0..addresses {
        for _ in 0..CONNECTIONS_PER_IP_MAX {
            let mut c = connect_from(&rt, &format!("127.0.1.{}", a + 1), &addr);
            c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            keep_alive(&mut c, "GET /health/live HTTP/1.1", "");
            flood.push(c);
        }
    }
    // The steward's kept connection still scans, and a new one from a new address gets in.
    assert_eq!(
        scan(&mut steward, &codes[1].1),
        Some(200),
        "the kept steward"
    );
    let mut newcomer = connect_from(&rt, "127.0.0.101", &addr);
    assert_eq!(scan(&mut newcomer, &codes[2].1), Some(200), "a new steward");
    // The flood was cut to the strangers' share: its first connections were closed.
    let answered = flood
        .iter_mut()
        .map(|c| keep_alive(c, "GET /health/live HTTP/1.1", ""))
        .filter(|s| *s == Some(200))
        .count();
    assert!(
        answered <= gatemesh_node::conns::STRANGERS_MAX,
        "{answered} tokenless connections kept"
    );
    node.drain();
}

/// A GET whose body is bytes (the phone's snapshot).
fn get_bytes(addr: &str, path: &str, token: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&out[9..12]).parse().unwrap();
    (status, out[at + 4..].to_vec())
}

#[test]
fn a_phone_is_paired_known_by_its_pass_everywhere_and_unpaired_by_bulletin() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 5, &["a"], false);
    let (a, addr) = http_node(&ev, "device-a", &tmp.path().join("a"));
    let req = |m: &str, p: &str, t: Option<&str>, b: &[u8]| request(&addr, m, p, t, b);
    let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    // A supervisor pairs a phone from the dashboard: the admin token, never the staff one.
    let pair =
        json(serde_json::json!({"name": "phone-7", "link_base": "https://gate-a.local:8443/"}));
    assert_eq!(req("POST", "/api/phones", Some("staff"), &pair).0, 401);
    let (s, p) = req("POST", "/api/phones", Some("admin"), &pair);
    assert_eq!(s, 200, "{p}");
    let (device, pass) = (
        p["device_id"].as_str().unwrap(),
        p["pass"].as_str().unwrap(),
    );
    assert!(
        device.starts_with("phone-7-") && pass.starts_with("GMP1."),
        "{p}"
    );
    assert_eq!(
        p["link"],
        format!("https://gate-a.local:8443/#pair={pass}"),
        "{p}"
    );
    assert!(p["qr_svg"].as_str().unwrap().starts_with("<svg"), "{p}");
    for bad in [
        serde_json::json!({"name": "a b"}),
        serde_json::json!({"name": "phone", "link_base": "javascript:alert(1)"}),
        serde_json::json!({"name": 7}),
    ] {
        let (s, v) = req("POST", "/api/phones", Some("admin"), &json(bad));
        assert_eq!(s, 400, "{v}");
    }
    // The pass is the phone's token: the pack, the snapshot, scans.
    let (s, v) = req("GET", "/offline/pack", Some(pass), b"");
    assert_eq!((s, &v["pack"]["format"]), (200, &1.into()), "{v}");
    assert!(
        v["manifest"]["signature"].is_string(),
        "the signed envelope: {v}"
    );
    let (s, snap) = get_bytes(&addr, "/offline/snapshot", pass);
    assert_eq!((s, &snap[..4]), (200, &b"GMS1"[..]));
    let at = gatemesh_node::now_ms();
    let scan = json(serde_json::json!({"code": codes[0].1, "scanned_at_ms": at}));
    let (s, d) = req("POST", "/api/scan", Some(pass), &scan);
    assert_eq!((s, &d["reason"]), (200, &"ok".into()), "{d}");
    let (_, t) = req(
        "GET",
        &format!("/api/tickets/{}", codes[0].0),
        Some("staff"),
        b"",
    );
    assert_eq!(
        t["records"][0]["origin"],
        format!("live:{device}@{at}"),
        "{t}"
    );
    // The answer was lost and the phone decided on its own: its reconcile is that scan.
    let again = |dev: &str, code: &str| {
        json(
            serde_json::json!({"device_id": dev, "scans": [{"ticket_id": codes[0].0, "code": code,
            "scanned_at": gatemesh_crdt::record::date::iso(at), "result": "ALLOW", "gate": "north", "direction": "in"}]}),
        )
    };
    let (s, v) = req(
        "POST",
        "/offline/reconcile",
        Some(pass),
        &again(device, &codes[0].1),
    );
    assert_eq!(
        (s, &v["results"][0]["status"]),
        (200, &"DUPLICATE".into()),
        "{v}"
    );
    // A code that is another ticket than the one named, and another phone's scans.
    let (_, v) = req(
        "POST",
        "/offline/reconcile",
        Some(pass),
        &again(device, &codes[1].1),
    );
    assert_eq!(v["results"][0]["status"], "ERROR", "{v}");
    let (s, v) = req(
        "POST",
        "/offline/reconcile",
        Some(pass),
        &again("phone-8-0000", &codes[0].1),
    );
    assert_eq!((s, v["error"].as_str()), (403, Some("WRONG_DEVICE")), "{v}");
    // The node refused a screenshot but its answer came late; the phone let the holder in on
    // its own: that admit is recorded (an entry happened), as a double entry.
    let staff = json(serde_json::json!({"code": codes[1].1}));
    assert_eq!(
        req("POST", "/api/scan", Some("staff"), &staff).1["reason"],
        "ok"
    );
    let late = gatemesh_node::now_ms();
    let scan = json(serde_json::json!({"code": codes[1].1, "scanned_at_ms": late}));
    assert_eq!(
        req("POST", "/api/scan", Some(pass), &scan).1["reason"],
        "already_redeemed"
    );
    let body = json(
        serde_json::json!({"device_id": device, "scans": [{"ticket_id": codes[1].0,
        "code": codes[1].1, "scanned_at": gatemesh_crdt::record::date::iso(late), "result": "ALLOW"}]}),
    );
    let (_, v) = req("POST", "/offline/reconcile", Some(pass), &body);
    assert_eq!(v["results"][0]["status"], "SUCCESS", "{v}");
    let (_, c) = req("GET", "/api/conflicts", Some("staff"), b"");
    assert_eq!(c["conflicts"][0]["ticket_id"], codes[1].0.as_str(), "{c}");
    // A phone's scans carry their code; a phone opens the scanner page's routes only and
    // undoes nothing (a steward's; with a supervisor's PIN, only its own admits).
    let bare = json(
        serde_json::json!({"device_id": device, "scans": [{"ticket_id": codes[2].0,
        "scanned_at": gatemesh_crdt::record::date::iso(late), "result": "ALLOW"}]}),
    );
    let (_, v) = req("POST", "/offline/reconcile", Some(pass), &bare);
    assert_eq!(v["results"][0]["status"], "ERROR", "{v}");
    for route in ["/api/conflicts", "/api/stats", "/metrics", "/api/stream"] {
        assert_eq!(req("GET", route, Some(pass), b"").0, 401, "{route}");
    }
    let (_, d) = req(
        "POST",
        "/api/scan",
        Some("staff"),
        &json(serde_json::json!({"code": codes[3].1})),
    );
    let undo = json(serde_json::json!({"ticket_id": codes[3].0, "scan_id": d["scan_id"]}));
    let (s, v) = req("POST", "/api/annul", Some(pass), &undo);
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("supervisor_only")),
        "a phone is a steward's, and this node has no supervisor PIN: {v}"
    );
    // Two phones on one node showing one ticket within the grace are two scans, not a repeat.
    let (_, p2) = req(
        "POST",
        "/api/phones",
        Some("admin"),
        &json(serde_json::json!({"name": "phone-8"})),
    );
    let pass2 = p2["pass"].as_str().unwrap();
    let now = gatemesh_node::now_ms();
    let one = |p: &str, at: u64| {
        req(
            "POST",
            "/api/scan",
            Some(p),
            &json(serde_json::json!({"code": codes[4].1, "scanned_at_ms": at})),
        )
        .1
    };
    assert_eq!(one(pass, now)["reason"], "ok");
    let second = one(pass2, now + 1);
    assert_eq!(
        (&second["reason"], &second["repeat"]),
        (&"already_redeemed".into(), &serde_json::Value::Null),
        "{second}"
    );
    assert_eq!(
        one(pass, now + 2)["repeat"],
        true,
        "the same phone again is a repeat"
    );
    // A pass altered by a byte, or made up, is refused with its reason.
    let mut forged = pass.to_string();
    forged.insert(10, 'A');
    let (s, v) = req("GET", "/offline/pack", Some(&forged), b"");
    assert_eq!(s, 401, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("pass_"), "{v}");
    // The organizer pairs one too (the CLI); then unpairs the first by bulletin.
    let ev_s = ev.to_str().unwrap();
    let out = gatemesh_tests::gatemesh(&[
        "device", "enroll", "--event", ev_s, "--role", "offline", "--name", "phone-9",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let org_pass = (text.lines().find_map(|l| l.strip_prefix("pass: ")))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        req("GET", "/api/pauses", Some(&org_pass), b"").0,
        200,
        "{text}"
    );
    let out = gatemesh_tests::gatemesh(&["bulletin", "--event", ev_s, "--unpair", device]);
    let path = String::from_utf8(out.stdout).unwrap();
    let bulletin = std::fs::read(path.trim().trim_start_matches("bulletin written to ")).unwrap();
    assert_eq!(
        req("POST", "/api/bulletins", Some("admin"), &bulletin).0,
        200
    );
    let (s, v) = req("GET", "/api/pauses", Some(pass), b"");
    assert_eq!((s, v["error"].as_str()), (401, Some("unpaired")), "{v}");
    let (s, v) = req(
        "POST",
        "/offline/reconcile",
        Some("admin"),
        &again(device, &codes[0].1),
    );
    assert_eq!((s, v["error"].as_str()), (403, Some("UNPAIRED")), "{v}");
    assert_eq!(
        req("GET", "/api/pauses", Some(&org_pass), b"").0,
        200,
        "the other phone still works"
    );
    // A restart trusts no more: the unpaired phone stays unpaired.
    drop(a);
    let (_a2, addr2) = http_node(&ev, "device-a", &tmp.path().join("a"));
    let (s, v) = request(&addr2, "GET", "/api/pauses", Some(pass), b"");
    assert_eq!((s, v["error"].as_str()), (401, Some("unpaired")), "{v}");
}
