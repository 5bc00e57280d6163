//! The node's HTTP API over real loopback HTTP: every route, bad input, wrong tokens, oversized
//! bodies; the right 4xx and error code each time, and the node unaffected.

use gatemesh_tests::{make_event, NodeProc};
use serde_json::Value;
use std::io::{Read, Write};

/// One HTTP/1.1 request; returns (status, JSON body).
fn request(addr: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body); // the server may refuse an oversized body before reading it
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

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
