//! Crafted codes (the trust issue's defects 3 and 6): a legacy code whose ticket id is 43 CJK
//! characters (129 bytes), one of 129 ASCII characters, one with a NUL byte, one dated past
//! year 9999. Each is a denial with a reason through `gatemesh scan`, `node run` (standard input
//! and HTTP) and the bridge to PostgreSQL: exit 0, no error, nothing stalled.

use gatemesh_crdt::credential::make_legacy_code;
use gatemesh_tests::{decisions, gatemesh, http_request, make_event, NodeProc, PgCluster};

const SECRET: &[u8] = b"crafted-test-secret";

fn crafted(ev: &std::path::Path) -> Vec<(&'static str, String, &'static str)> {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ev.join("event.json")).unwrap()).unwrap();
    let legacy_event = config["legacy"]["event_id"].as_str().unwrap().to_string();
    let now = gatemesh_node::now_ms();
    let code = |id: &str, ts: u64| make_legacy_code(id, &legacy_event, "G1", "C1", ts, SECRET);
    vec![
        (
            "43 CJK characters",
            code(&"票".repeat(43), now),
            "malformed",
        ),
        (
            "129 ASCII characters",
            code(&"x".repeat(129), now),
            "malformed",
        ),
        ("a NUL byte", code("T\0X", now), "malformed"),
        (
            "past year 9999",
            code("FAR", 300_000_000_000_000),
            "not_yet_valid",
        ),
    ]
}

#[test]
fn crafted_codes_are_denials_with_a_reason_on_every_path() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 2, &["a", "b"], false);
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let cases = crafted(&ev);
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();

    // gatemesh scan: one decision per code, exit 0.
    let mut args = vec![
        "scan".to_string(),
        "--event".into(),
        s(&ev),
        "--device".into(),
        s(&ev.join("device-a")),
        "--data".into(),
        s(&tmp.path().join("a")),
        "--gate".into(),
        "north".into(),
        "--hmac-secret-file".into(),
        s(&secret),
    ];
    args.extend(cases.iter().map(|(_, c, _)| c.clone()));
    args.push(codes[0].1.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = decisions(&gatemesh(&args).stdout);
    for ((what, _, reason), d) in cases.iter().zip(&out) {
        assert_eq!(
            (d["verdict"].as_str(), d["reason"].as_str()),
            (Some("deny"), Some(*reason)),
            "{what}: {d}"
        );
    }
    assert_eq!(out[cases.len()]["reason"], "ok", "a real ticket after them");

    // node run: on standard input and over HTTP, the node answers each and keeps running.
    let (mut b, addr) = NodeProc::start_http(
        &ev,
        "device-b",
        &tmp.path().join("b"),
        "north",
        &["--no-mdns", "--hmac-secret-file", &s(&secret)],
    );
    for (what, code, reason) in &cases {
        let d = b.scan(code);
        assert_eq!(d["reason"], *reason, "{what} on standard input: {d}");
        let body = serde_json::to_vec(&serde_json::json!({"code": code})).unwrap();
        let (status, v) = http_request(&addr, "POST", "/api/scan", Some("staff"), &body);
        assert_eq!(
            (status, v["reason"].as_str()),
            (200, Some(*reason)),
            "{what} over HTTP: {v}"
        );
        b.wait_for("the HTTP scan's event", |v| v["event"] == "scan");
    }
    assert_eq!(b.scan(&codes[1].1)["reason"], "ok", "the node still serves");
    drop(b);

    // The bridge: both stores into PostgreSQL, every denial written, nothing refused.
    let pg = PgCluster::start();
    for node in ["a", "b"] {
        let file = tmp.path().join(format!("{node}.export"));
        gatemesh(&[
            "export",
            "--event",
            &s(&ev),
            "--data",
            &s(&tmp.path().join(node)),
            "--out",
            &s(&file),
        ]);
        let out = gatemesh(&[
            "bridge",
            "import",
            "--event",
            &s(&ev),
            "--file",
            &s(&file),
            "--database-url",
            &pg.url,
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["rejected"], 0, "{v}");
    }
    assert_eq!(
        pg.count("SELECT count(*) FROM scans WHERE verdict = 'deny'"),
        3 * cases.len() as u64
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM scans WHERE reason = 'malformed'"),
        9
    );
}
