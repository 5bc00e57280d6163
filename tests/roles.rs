//! Roles at the gate, through real nodes on a loopback mesh: a steward's scanner scans but may
//! not undo, check in by hand or pause its gate; a supervisor's device pauses its gate, the
//! pause travels to the other nodes and stops entries there with who did it, and the audit
//! names the device; a supervisor's scanner shared with stewards asks for the PIN, and five
//! wrong ones shut it. A restarted node holds the same pauses and the same audit.

use gatemesh_tests::{gatemesh, http_request, http_request_with, make_event, set_pin, NodeProc};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn call(addr: &str, path: &str, body: Value, pin: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = pin.map(|p| ("X-Supervisor-Pin", p)).into_iter().collect();
    let body = serde_json::to_vec(&body).unwrap();
    http_request_with(addr, ("POST", path), Some("staff"), &headers, &body)
}

fn get(addr: &str, path: &str) -> Value {
    http_request(addr, "GET", path, Some("staff"), b"").1
}

/// Scan at a gate until the answer's reason is `want` (the mesh brings the pause in ms).
fn scan_until(addr: &str, code: &str, gate: &str, want: &str) -> Value {
    let start = Instant::now();
    loop {
        let (_, v) = call(addr, "/api/scan", json!({"code": code, "gate": gate}), None);
        if v["reason"] == want || start.elapsed() > Duration::from_secs(15) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_steward_scans_a_supervisor_pauses_the_gate_everywhere_and_a_shared_scanner_asks_the_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let ev_s = ev.to_str().unwrap();
    let codes = make_event(&ev, 12, &["sup", "shared"], false);
    gatemesh(&[
        "device", "enroll", "--event", ev_s, "--name", "stew", "--role", "steward",
    ]);
    // The shared scanner's PIN, read from standard input.
    set_pin(&ev.join("device-shared"), "4821");
    let pin_file = std::fs::read_to_string(ev.join("device-shared/supervisor.pin")).unwrap();
    assert!(
        !pin_file.contains("4821"),
        "the PIN is kept hashed: {pin_file}"
    );

    let (mut sup, sup_addr) = NodeProc::start_http(
        &ev,
        "device-sup",
        &tmp.path().join("sup"),
        "north",
        &["--no-mdns"],
    );
    let peer = sup.dial();
    let start = |dev: &str, dir: &str| {
        let extra = ["--no-mdns", "--peer", peer.as_str()];
        NodeProc::start_http(&ev, dev, &tmp.path().join(dir), "north", &extra)
    };
    let (stew, stew_addr) = start("device-stew", "stew");
    let (_shared, shared_addr) = start("device-shared", "shared");
    sup.wait_peers(2);

    // The steward's scanner scans, and may do nothing a supervisor does.
    assert_eq!(
        get(&stew_addr, "/api/status")["device_role"],
        json!({"role": "steward", "pin": false})
    );
    let (_, d) = call(&stew_addr, "/api/scan", json!({"code": codes[0].1}), None);
    assert_eq!(d["reason"], "ok", "{d}");
    let refused = [
        (
            "/api/annul",
            json!({"ticket_id": codes[0].0, "scan_id": d["scan_id"]}),
        ),
        ("/api/checkin", json!({"ticket_id": codes[1].0})),
        ("/api/gate-pause", json!({"paused": true})),
    ];
    for (path, body) in refused {
        let (s, v) = call(&stew_addr, path, body.clone(), None);
        assert_eq!(
            (s, v["error"].as_str()),
            (403, Some("supervisor_only")),
            "{path}: {v}"
        );
        // Even the admin token cannot make a steward's device sign one.
        let admin = serde_json::to_vec(&body).unwrap();
        let (s, _) = http_request(&stew_addr, "POST", path, Some("admin"), &admin);
        assert_eq!(s, 403, "{path} with the admin token");
    }

    // The supervisor pauses its gate: the steward's node, over the mesh, stops entries there.
    assert_eq!(
        get(&sup_addr, "/api/status")["device_role"]["role"],
        "supervisor"
    );
    let (s, v) = call(&sup_addr, "/api/gate-pause", json!({"paused": true}), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["gate"].as_str(), v["paused"].as_bool()),
        (Some("north"), Some(true))
    );
    assert!(v["until_ms"].as_u64().is_some(), "{v}");
    let d = scan_until(&stew_addr, &codes[2].1, "north", "paused");
    assert_eq!(d["reason"], "paused", "{d}");
    assert!(
        d["message"].as_str().unwrap().contains("paused by sup"),
        "{d}"
    );
    let (_, other_gate) = call(
        &stew_addr,
        "/api/scan",
        json!({"code": codes[3].1, "gate": "south"}),
        None,
    );
    assert_eq!(
        other_gate["reason"], "ok",
        "another gate goes on: {other_gate}"
    );
    let pauses = get(&stew_addr, "/api/pauses");
    assert_eq!(pauses["paused"][0]["by_name"], "sup", "{pauses}");
    assert_eq!(pauses["paused"][0]["name"], "north", "{pauses}");

    // The shared scanner asks for the PIN; with it, it resumes the gate everywhere.
    assert_eq!(
        get(&shared_addr, "/api/status")["device_role"],
        json!({"role": "supervisor", "pin": true})
    );
    let resume = json!({"paused": false});
    let (s, v) = call(&shared_addr, "/api/gate-pause", resume.clone(), None);
    assert_eq!((s, v["error"].as_str()), (401, Some("pin_required")), "{v}");
    let (s, v) = call(
        &shared_addr,
        "/api/gate-pause",
        resume.clone(),
        Some("1111"),
    );
    assert_eq!((s, v["error"].as_str()), (403, Some("pin_wrong")), "{v}");
    let (s, v) = call(
        &shared_addr,
        "/api/gate-pause",
        resume.clone(),
        Some("4821"),
    );
    assert_eq!(s, 200, "{v}");
    let d = scan_until(&stew_addr, &codes[2].1, "north", "ok");
    assert_eq!(d["reason"], "ok", "resumed: {d}");
    // Five wrong PINs in a row shut it, the right one too, for a minute.
    for _ in 0..5 {
        let (s, _) = call(
            &shared_addr,
            "/api/gate-pause",
            resume.clone(),
            Some("0000"),
        );
        assert_eq!(s, 403);
    }
    let (s, v) = call(
        &shared_addr,
        "/api/gate-pause",
        resume.clone(),
        Some("4821"),
    );
    assert_eq!((s, v["error"].as_str()), (429, Some("pin_locked")), "{v}");

    // The audit, on the steward's node: who paused, who resumed, by device.
    let wait_audit = |addr: &str| {
        let start = Instant::now();
        loop {
            let a = get(addr, "/api/audit");
            let n = a["actions"].as_array().map_or(0, Vec::len);
            if n >= 2 || start.elapsed() > Duration::from_secs(10) {
                return a;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let audit = wait_audit(&stew_addr);
    let rows: Vec<(String, String, String)> = (audit["actions"].as_array().unwrap().iter())
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("action"), s("device_name"), s("role"))
        })
        .collect();
    let want = |a: &str, d: &str| (a.to_string(), d.to_string(), "supervisor".to_string());
    assert_eq!(
        rows,
        [want("gate_resume", "shared"), want("gate_pause", "sup")],
        "{audit}"
    );
    // A restart holds the same audit.
    drop(stew);
    let (_stew, stew_addr) = start("device-stew", "stew");
    assert_eq!(get(&stew_addr, "/api/audit"), audit);
}
