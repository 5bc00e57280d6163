//! The HTTP API against its own OpenAPI document (`GET /api/openapi.json`): schemathesis (PyPI,
//! installed by `scripts/test-all`) generates requests from the document, valid and not, and
//! sends them to a live node. Every answer must be no server error, a documented status, the
//! documented content type, and a body of the documented shape, so every error carries one of
//! the documented codes. Bounded: a fixed seed, a number of examples per route and a time budget.

use gatemesh_tests::http_request as request;
use gatemesh_tests::{make_event, NodeProc};
use std::process::Command;

/// Examples schemathesis generates per route (and per phase).
const EXAMPLES_PER_ROUTE: &str = "10";
/// Time budget of the whole schemathesis run, in seconds.
const RUN_SECONDS_MAX: &str = "90";

fn schemathesis() -> String {
    std::env::var("GATEMESH_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_string())
}

#[test]
fn the_api_keeps_to_its_openapi_document() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 3, &["a"], false);
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

    let (status, doc) = request(&addr, "GET", "/api/openapi.json", None, b"");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for route in gatemesh_node::api::API_ROUTES {
        assert!(doc["paths"][route].is_object(), "{route} is documented");
    }

    // One admit first, so ticket lookups and statistics have something to show.
    let scan = serde_json::json!({"code": codes[0].1}).to_string();
    let (status, _) = request(&addr, "POST", "/api/scan", Some("staff"), scan.as_bytes());
    assert_eq!(status, 200);

    let url = format!("http://{addr}/api/openapi.json");
    let out = Command::new(schemathesis())
        .args(["run", &url, "--no-color", "--seed", "7", "--workers", "1"])
        .args(["--max-examples", EXAMPLES_PER_ROUTE, "--max-time", RUN_SECONDS_MAX])
        .args(["--request-timeout", "15"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--header", "Authorization: Bearer admin"])
        // The live stream never ends by itself; the HTTP tests read it.
        .args(["--exclude-path", "/api/stream"])
        .current_dir(tmp.path())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {}: {e} (scripts/test-all installs schemathesis from PyPI)",
                schemathesis()
            )
        });
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found answers off the document:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The node is unharmed: it still answers, and its first admit is still there.
    let (status, ticket) = request(
        &addr,
        "GET",
        &format!("/api/tickets/{}", codes[0].0),
        Some("staff"),
        b"",
    );
    assert_eq!(status, 200, "{ticket}");
    assert!(
        ticket.to_string().contains("\"admit\""),
        "the admit made before the run is still recorded: {ticket}"
    );
}
