//! The pages in a real headless Chromium (Debian's `chromium`, driven by playwright-core from
//! `tests/browser/run.mjs`): a keyboard-wedge scan shows green; the same ticket at another gate on
//! another node shows red with `already_redeemed` and the first gate; the page reloads from its
//! service worker while the node is unreachable and says so; the camera admits a ticket from a
//! video of its QR image; the dashboard's figures change live when another node scans.
//!
//! Screenshots are kept in `target/test-artifacts/browser/`.

use gatemesh_tests::{browser, browser_in, make_event, NodeProc};
use serde_json::json;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shots() -> PathBuf {
    let dir = root().join("target/test-artifacts/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two mesh nodes with HTTP (gates north and south), found by mDNS, tokens `staff`/`admin`.
fn two_nodes(ev: &Path, tmp: &Path) -> (NodeProc, String, NodeProc, String) {
    let start = |device: &str, data: &str, gate: &str| {
        let (n, addr) = NodeProc::start_http(ev, device, &tmp.join(data), gate, &[]);
        (n, format!("http://{addr}"))
    };
    let (mut a, a_url) = start("device-a", "a", "north");
    let (mut b, b_url) = start("device-b", "b", "south");
    a.wait_peers(1);
    b.wait_peers(1);
    (a, a_url, b, b_url)
}

#[test]
fn wedge_scan_duplicate_at_another_node_and_offline_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 4, &["a", "b"], false);
    let (_a, a_url, mut b, b_url) = two_nodes(&ev, tmp.path());
    let shots = shots();
    let v = browser(
        "scan",
        json!({"a": a_url, "b": b_url, "token": "staff", "code": codes[0].1, "code2": codes[1].1, "shots": shots}),
    );
    assert_eq!(v["focus_after_setup"], "code", "the field has focus: {v}");
    eprintln!(
        "answer shown {} ms and {} ms after Enter",
        v["first"]["answer_ms"], v["second"]["answer_ms"]
    );
    let first = &v["first"];
    assert_eq!(
        (&first["class"], &first["reason"], &first["title"]),
        (&json!("admit"), &json!("ok"), &json!("WELCOME")),
        "{v}"
    );
    assert_eq!(first["focused"], "code", "{v}");
    let second = &v["second"];
    assert_eq!(
        (&second["class"], &second["reason"], &second["words"]),
        (
            &json!("deny"),
            &json!("already_redeemed"),
            &json!("Already used")
        ),
        "{v}"
    );
    assert!(
        second["previous"]
            .as_str()
            .is_some_and(|p| p.contains("gate north")),
        "the first gate is named: {v}"
    );
    assert_eq!(
        (&v["manual"]["class"], &v["manual"]["reason"]),
        (&json!("deny"), &json!("unknown_ticket")),
        "{v}"
    );
    assert!(
        v["offline_link"]
            .as_str()
            .is_some_and(|t| t.contains("unreachable")),
        "{v}"
    );
    assert_eq!(
        (&v["offline"]["class"], &v["offline"]["title"]),
        (&json!("unreachable"), &json!("NOT CHECKED")),
        "{v}"
    );
    // Three records: the admit at north, the screenshot and the typed code refused at south;
    // the attempt while the node was unreachable never reached it.
    let s = b.status();
    assert_eq!(s["records"], 3, "{s}");
    for name in ["scan-admit", "scan-duplicate", "scan-offline"] {
        assert!(shots.join(format!("{name}.png")).exists());
    }
}

/// A Y4M video (what Chromium's fake camera plays) of a PNG, centred on white.
fn y4m_of(png: &Path, out: &Path) {
    let img = image::open(png).unwrap().to_luma8();
    let (w, h) = (640u32, 480u32);
    let side = 400u32;
    let qr = image::imageops::resize(&img, side, side, image::imageops::FilterType::Nearest);
    let mut y = vec![255u8; (w * h) as usize];
    let (ox, oy) = ((w - side) / 2, (h - side) / 2);
    for (x, yy, p) in qr.enumerate_pixels() {
        y[((oy + yy) * w + ox + x) as usize] = p.0[0];
    }
    let chroma = vec![128u8; (w * h / 4) as usize];
    let mut file = format!("YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..10 {
        file.extend_from_slice(b"FRAME\n");
        file.extend_from_slice(&y);
        file.extend_from_slice(&chroma);
        file.extend_from_slice(&chroma);
    }
    std::fs::write(out, file).unwrap();
}

#[test]
fn the_camera_admits_a_ticket_from_a_video_of_its_qr_image() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 2, &["a"], true);
    let (mut a, addr) = NodeProc::start_http(
        &ev,
        "device-a",
        &tmp.path().join("a"),
        "north",
        &["--no-mdns"],
    );
    let url = format!("http://{addr}");
    let video = tmp.path().join("qr.y4m");
    y4m_of(
        &ev.join("tickets/qr").join(format!("{}.png", codes[1].0)),
        &video,
    );
    let v = browser(
        "camera",
        json!({"a": url, "token": "staff", "video": video, "shots": shots()}),
    );
    assert_eq!(
        (
            &v["camera"]["class"],
            &v["camera"]["reason"],
            &v["camera"]["via"]
        ),
        (&json!("admit"), &json!("ok"), &json!("camera")),
        "{v}"
    );
    // The node admitted exactly that ticket.
    let scan = a.wait_for("the camera's scan", |v| v["event"] == "scan");
    assert_eq!(scan["ticket"]["id"], codes[1].0.as_str(), "{scan}");
}

#[test]
fn the_dashboard_changes_live_when_another_node_scans() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 4, &["a", "b"], false);
    let (_a, a_url, _b, b_url) = two_nodes(&ev, tmp.path());
    let v = browser(
        "dashboard",
        json!({"a": a_url, "b": b_url, "token": "staff", "codes": [codes[0].1, codes[1].1, codes[2].1], "shots": shots()}),
    );
    assert_eq!(
        (&v["before"], &v["after"]),
        (&json!("0"), &json!("3")),
        "{v}"
    );
    assert_eq!(v["b_status"], 200, "{v}");
    assert!(
        v["gates"].as_str().is_some_and(|g| g.contains("south")),
        "{v}"
    );
    assert_eq!(v["peers"], "1 / 1", "{v}");
    assert_eq!(
        (&v["cut_laptop"], &v["cut_tablet"]),
        (&json!([]), &json!([])),
        "cards cut at 1280 or 820 px: {v}"
    );
}

#[test]
fn a_steward_at_phone_size_sees_names_attention_search_and_french() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = gatemesh_tests::make_guest_event(&ev, &["a"]);
    let (mut a, addr) = NodeProc::start_http(
        &ev,
        "device-a",
        &tmp.path().join("a"),
        "north",
        &["--no-mdns"],
    );
    let shots = shots();
    // Jürgen's ticket is marked attention; Chloé's carries her name; Éloïse is searched for
    // without her accents.
    let v = browser(
        "steward",
        json!({"a": format!("http://{addr}"), "token": "staff", "attention_code": codes[2].1,
               "named_code": codes[4].1, "query": "eloise dup", "shots": shots}),
    );
    let att = &v["attention"];
    assert_eq!(
        (&att["class"], &att["title"], &att["confirm_shown"]),
        (&json!("attention"), &json!("ATTENTION"), &json!(true)),
        "{v}"
    );
    assert_eq!(att["words"], "Wheelchair user: side ramp", "{v}");
    assert_eq!(att["name"], "Jürgen Müller", "{v}");
    assert_eq!(att["background"], "rgb(224, 161, 0)", "amber: {v}");
    assert_eq!(v["attention_after_tap"], true, "a stray tap keeps it: {v}");
    let named = &v["named"];
    assert_eq!(
        (&named["class"], &named["name"]),
        (&json!("admit"), &json!("Chloé Lefèvre")),
        "{v}"
    );
    assert!(
        named["ticket"].as_str().unwrap().contains("1029384756"),
        "the order: {v}"
    );
    assert_eq!(
        v["search_focus"], "search",
        "the search keeps its focus: {v}"
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{v}");
    assert!(results[0].as_str().unwrap().contains("Éloïse Dupré"), "{v}");
    let manual = &v["manual"];
    assert_eq!(
        (&manual["class"], &manual["via"], &manual["name"]),
        (&json!("admit"), &json!("manual"), &json!("Éloïse Dupré")),
        "{v}"
    );
    let fr = &v["french"];
    assert_eq!(
        (&fr["class"], &fr["reason"], &fr["words"], &v["french_lang"]),
        (
            &json!("deny"),
            &json!("already_redeemed"),
            &json!("Déjà utilisé"),
            &json!("fr")
        ),
        "{v}"
    );
    // The hand check-in reached the node as one, marked manual.
    let scan = a.wait_for("the hand check-in", |s| {
        s["event"] == "scan" && s["manual"] == true
    });
    assert_eq!(scan["ticket"]["id"], codes[0].0.as_str(), "{scan}");
    for name in [
        "steward-attention",
        "steward-admit-name",
        "steward-search",
        "steward-french",
    ] {
        assert!(shots.join(format!("{name}.png")).exists());
    }
}

#[test]
fn a_paused_gate_covers_the_scanner_and_undo_and_exit_work_from_the_page() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 2, &["a"], false);
    // Alone, and told to say it is catching up for the whole test: the page shows it.
    let (mut a, addr) = NodeProc::start_http(
        &ev,
        "device-a",
        &tmp.path().join("a"),
        "north",
        &["--no-mdns", "--catch-up-ms", "600000"],
    );
    let ev_s = ev.to_str().unwrap();
    let bulletin = |flag: &str| {
        let out = gatemesh_tests::gatemesh(&["bulletin", "--event", ev_s, flag, "north"]);
        let path = String::from_utf8(out.stdout).unwrap();
        std::fs::read(path.trim().trim_start_matches("bulletin written to ")).unwrap()
    };
    let pause = bulletin("--pause-gate");
    let (s, _) =
        gatemesh_tests::http_request(&addr, "POST", "/api/bulletins", Some("admin"), &pause);
    assert_eq!(s, 200);
    // Lift the pause once the page has shown it (the page asks every 3 s and says when it
    // has seen it, however long the browser took to start).
    let resume = bulletin("--resume-gate");
    let seen = tmp.path().join("pause-seen");
    let lifter = {
        let (addr, seen) = (addr.clone(), seen.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !seen.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            gatemesh_tests::http_request(&addr, "POST", "/api/bulletins", Some("admin"), &resume).0
        })
    };
    let v = browser(
        "paused",
        json!({"a": format!("http://{addr}"), "token": "staff", "code": codes[0].1, "shots": shots(), "seen": seen}),
    );
    assert_eq!(lifter.join().unwrap(), 200);
    assert_eq!(v["lang"], "fr", "a French browser gets French: {v}");
    let text = v["paused_text"].as_str().unwrap();
    assert!(text.contains("PAUSE") && text.contains("north"), "{v}");
    assert_eq!(v["admit"]["reason"], "ok", "{v}");
    assert_eq!(v["admit"]["catching_up"], true, "an amber frame: {v}");
    let sync = v["admit"]["sync_words"].as_str().unwrap();
    assert!(sync.contains("Synchronisation"), "{v}");
    let (s, ready) = gatemesh_tests::http_request(&addr, "GET", "/health/ready", None, b"");
    assert_eq!(
        (s, &ready["status"]),
        (200, &json!("catching_up")),
        "{ready}"
    );
    let metrics = gatemesh_tests::http_get_text(&addr, "/metrics", "staff");
    assert!(metrics.contains("gatemesh_synced 0"), "{metrics}");
    assert_eq!(v["undo_shown"], true, "{v}");
    assert_eq!(v["undone"]["class"], "undone", "{v}");
    assert_eq!(
        v["again"]["reason"], "ok",
        "the annul gave the entry back: {v}"
    );
    assert!(v["where"].as_str().unwrap().contains("SORTIE"), "{v}");
    assert_eq!(
        (&v["exit"]["reason"], &v["exit"]["title"]),
        (&json!("ok"), &json!("AU REVOIR")),
        "{v}"
    );
    let t = a.status();
    assert_eq!(t["records"], 4, "admit, annul, admit, exit: {t}");
}

#[test]
fn a_phone_on_the_venue_network_gets_a_secure_installable_page_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 2, &[], true);
    let video = tmp.path().join("qr.y4m");
    y4m_of(
        &ev.join("tickets/qr").join(format!("{}.png", codes[1].0)),
        &video,
    );
    // Host 0 runs the node at 10.77.0.1; host 1 is the phone.
    let lan = gatemesh_tests::Lan::new(2);
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
        "--tls-name",
        "gate-a.local",
    ]);
    let mut a = NodeProc::start_in(
        Some(&lan.host(0)),
        "/ip4/10.77.0.1/udp/0/quic-v1",
        &ev,
        "device-a",
        &tmp.path().join("a"),
        "north",
        &[
            "--no-mdns",
            "--https",
            "10.77.0.1:8443",
            "--staff-token",
            "staff",
            "--admin-token",
            "admin",
        ],
    );
    let http = a.wait_for("https", |v| v["event"] == "http");
    assert_eq!(http["https"], "10.77.0.1:8443", "{http}");
    // The phone trusts the event CA (what README tells a steward to install).
    let home = tmp.path().join("phone");
    gatemesh_tests::trust_event_ca(&home, &ev.join("event-ca.pem"));
    let v = browser_in(
        &lan.host(1),
        &home,
        "https",
        json!({"a": "https://10.77.0.1:8443", "token": "staff", "code": codes[0].1, "video": video, "shots": shots()}),
    );
    assert_eq!(
        (&v["secure"], &v["protocol"]),
        (&json!(true), &json!("https:")),
        "{v}"
    );
    assert_eq!(
        v["camera_api"], true,
        "a secure context has the camera API: {v}"
    );
    assert_eq!(v["controlled"], true, "{v}");
    assert_eq!(
        (&v["admit"]["class"], &v["admit"]["reason"]),
        (&json!("admit"), &json!("ok")),
        "{v}"
    );
    assert_eq!(
        (&v["camera"]["class"], &v["camera"]["via"]),
        (&json!("admit"), &json!("camera")),
        "the camera admits the second ticket: {v}"
    );
    assert_eq!(v["offline_reload"], true, "{v}");
    // The CA is offered for download, and plain TCP gets no page.
    let scan = a.wait_for("the phone's scan", |s| s["event"] == "scan");
    assert_eq!(scan["ticket"]["id"], codes[0].0.as_str(), "{scan}");
}

/// What zbarimg (a standard decoder) reads in a QR image.
fn zbar(png: &Path) -> String {
    let out = std::process::Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(png)
        .output()
        .expect("zbarimg (zbar-tools) is installed by the test command");
    assert!(
        out.status.success(),
        "zbarimg could not read {}",
        png.display()
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn a_wallets_live_code_enters_and_its_screenshot_from_40_s_ago_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let ev_s = ev.to_str().unwrap();
    gatemesh_tests::gatemesh(&["event", "create", "--out", ev_s, "--name", "Live Fest"]);
    gatemesh_tests::gatemesh(&[
        "tickets",
        "issue",
        "--event",
        ev_s,
        "--count",
        "2",
        "--rotating",
    ]);
    for d in ["a", "b"] {
        gatemesh_tests::gatemesh(&["device", "enroll", "--event", ev_s, "--name", d]);
    }
    let (mut a, a_url, mut b, _) = two_nodes(&ev, tmp.path());
    let wallet = ev.join("tickets/wallet/T000001.html");
    let shots = shots();
    let v = browser(
        "wallet",
        json!({"wallet": wallet, "a": a_url, "token": "staff", "age_ms": 40_000, "shots": shots}),
    );
    // The QR codes on the screen are the codes the page says it shows.
    assert_eq!(
        zbar(&shots.join("wallet-live-qr.png")),
        v["live"]["code"],
        "{v}"
    );
    assert_eq!(
        zbar(&shots.join("wallet-40s-ago-qr.png")),
        v["screenshot"]["code"],
        "{v}"
    );
    assert_ne!(
        v["live"]["code"], v["screenshot"]["code"],
        "the code changed"
    );
    assert_eq!(
        (&v["live_scan"]["reason"], &v["live_scan"]["class"]),
        (&json!("ok"), &json!("admit")),
        "{v}"
    );
    let refused = &v["screenshot_scan"];
    assert_eq!(
        (&refused["reason"], &refused["class"]),
        (&json!("code_expired"), &json!("deny")),
        "{v}"
    );
    assert!(
        refused["words"].as_str().unwrap().contains("live code"),
        "{v}"
    );
    eprintln!("the wallet's QR: {} modules a side", v["live"]["modules"]);
    // The live code at the other gate, on the other node: the ticket is used.
    let scan = a.wait_for("the live admit", |s| {
        s["event"] == "scan" && s["reason"] == "ok"
    });
    b.wait_applied(scan["scan_id"].as_str().unwrap());
    let d = b.scan(v["live"]["code"].as_str().unwrap());
    assert_eq!(d["reason"], "already_redeemed", "{d}");
}

#[test]
fn a_steward_page_cannot_pause_a_supervisor_pauses_with_the_pin_and_the_dashboard_says_who() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let ev_s = ev.to_str().unwrap();
    let codes = make_event(&ev, 3, &["shared"], false);
    gatemesh_tests::gatemesh(&[
        "device", "enroll", "--event", ev_s, "--name", "stew", "--role", "steward",
    ]);
    gatemesh_tests::set_pin(&ev.join("device-shared"), "4821");
    let (mut a, a_addr) = NodeProc::start_http(
        &ev,
        "device-shared",
        &tmp.path().join("a"),
        "north",
        &["--no-mdns"],
    );
    let dial = a.dial();
    let (_b, b_addr) = NodeProc::start_http(
        &ev,
        "device-stew",
        &tmp.path().join("b"),
        "north",
        &["--no-mdns", "--peer", &dial],
    );
    a.wait_peers(1);
    let v = browser(
        "roles",
        json!({"a": format!("http://{a_addr}"), "b": format!("http://{b_addr}"), "token": "staff",
               "pin": "4821", "code": codes[0].1, "code2": codes[1].1, "shots": shots()}),
    );
    assert_eq!(
        (v["stew_badge"].as_str(), v["sup_badge"].as_str()),
        (Some("Steward"), Some("Supervisor")),
        "{v}"
    );
    assert_eq!(v["stew_admit"]["reason"], "ok", "{v}");
    assert_eq!(
        v["stew_undo_shown"], false,
        "no undo on a steward's page: {v}"
    );
    assert_eq!(v["stew_pause_shown"], false, "{v}");
    assert_eq!(v["wrong"]["reason"], "pin_wrong", "{v}");
    let text = v["stew_paused_text"].as_str().unwrap();
    assert!(text.contains("paused by shared"), "{v}");
    let audit = v["audit_text"].as_str().unwrap();
    assert!(
        audit.contains("shared") && audit.to_lowercase().contains("pause"),
        "{v}"
    );
    assert_eq!(v["resume_asked_pin"], false, "{v}");
    assert_eq!(v["stew_after"]["reason"], "ok", "resumed everywhere: {v}");
}
