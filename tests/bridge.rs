//! The bridge into a real, throwaway PostgreSQL cluster (the machine's `initdb`/`pg_ctl`):
//! imports counted exactly, a second import adding nothing, a split's double entry in
//! `conflicts`, a tampered export refused with the database unchanged, and the live bridge
//! following a mesh through a PostgreSQL stop and start, and through a split that cuts it off from
//! the gates, without losing or doubling a scan.

use gatemesh_tests::{gatemesh, gatemesh_bin, gatemesh_fails, make_event, NodeProc, PgCluster};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

/// Scan codes with `gatemesh scan` on one device and store; returns the decisions.
fn scan(ev: &Path, device: &str, data: &Path, gate: &str, codes: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "scan",
        "--event",
        ev.to_str().unwrap(),
        "--device",
        device,
        "--data",
        data.to_str().unwrap(),
        "--gate",
        gate,
    ];
    args.extend(codes);
    gatemesh_tests::decisions(&gatemesh(&args).stdout)
}

/// `gatemesh bridge import` arguments.
fn import_args<'a>(ev: &'a Path, file: &'a Path, url: &'a str) -> [&'a str; 8] {
    [
        "bridge",
        "import",
        "--event",
        ev.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
        "--database-url",
        url,
    ]
}

fn import(ev: &Path, file: &Path, url: &str) -> Value {
    serde_json::from_slice(&gatemesh(&import_args(ev, file, url)).stdout).unwrap()
}

/// An import that must fail; its error output.
fn import_fails(ev: &Path, file: &Path, url: &str) -> String {
    gatemesh_fails(&import_args(ev, file, url))
}

fn export(ev: &Path, data: &Path, out: &Path) {
    gatemesh(&[
        "export",
        "--event",
        ev.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
}

#[test]
fn imports_count_exactly_merge_once_report_double_entries_and_refuse_tampering() {
    let pg = PgCluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 12, &["a", "b"], false);
    let code = |i: usize| codes[i].1.as_str();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let dev = |n: &str| ev.join(format!("device-{n}")).to_str().unwrap().to_string();
    // Two devices that never met (a split): both admit ticket 4.
    let da = scan(
        &ev,
        &dev("a"),
        &a,
        "north",
        &[code(0), code(1), code(2), code(3), code(4)],
    );
    let db = scan(
        &ev,
        &dev("b"),
        &b,
        "south",
        &[code(4), code(5), "not-a-ticket"],
    );
    assert_eq!(da.len() + db.len(), 8);
    let (ea, eb) = (tmp.path().join("a.export"), tmp.path().join("b.export"));
    export(&ev, &a, &ea);
    export(&ev, &b, &eb);

    let first = import(&ev, &ea, &pg.url);
    assert_eq!(
        (&first["records"], &first["scans_added"], &first["rejected"]),
        (&5.into(), &5.into(), &0.into()),
        "{first}"
    );
    let second = import(&ev, &eb, &pg.url);
    assert_eq!(second["scans_added"], 3, "{second}");
    assert_eq!(second["conflicts_added"], 1, "{second}");
    // The database holds exactly the two ledgers.
    assert_eq!(pg.count("SELECT count(*) FROM scans"), 8);
    assert_eq!(
        pg.count("SELECT count(*) FROM scans WHERE verdict = 'admit'"),
        7
    );
    assert_eq!(
        pg.sql("SELECT reason, denials FROM denials_by_reason"),
        "unknown_ticket|1"
    );
    let t4 = &codes[4].0;
    assert_eq!(
        pg.sql(&format!(
            "SELECT ticket_id, gate FROM double_entries WHERE ticket_id = '{t4}'"
        )),
        format!("{t4}|south"),
        "the later admit (by clock) is the double entry"
    );
    assert_eq!(
        pg.sql(&format!(
            "SELECT scan_count, admit_count, first_scanned_at <= last_scanned_at FROM tickets WHERE ticket_id = '{t4}'"
        )),
        "2|2|t"
    );
    assert_eq!(pg.count("SELECT sum(admits) FROM admits_by_gate"), 7);
    assert_eq!(pg.count("SELECT count(*) FROM schema_migrations"), 3);

    // Merging the same data again adds nothing.
    for file in [&ea, &eb] {
        let again = import(&ev, file, &pg.url);
        assert_eq!(again["rows_added"], 0, "{again}");
    }
    assert_eq!(pg.count("SELECT count(*) FROM scans"), 8);

    // A changed byte in the ledger: refused with a clear error before the database is touched.
    let mut bytes = std::fs::read(&ea).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x55;
    let bad = tmp.path().join("tampered.export");
    std::fs::write(&bad, &bytes).unwrap();
    let runs = pg.count("SELECT count(*) FROM bridge_runs");
    let err = import_fails(&ev, &bad, &pg.url);
    assert!(err.contains("export_corrupt"), "{err}");
    // Cut short, and another event's export: refused too.
    let whole = std::fs::read(&ea).unwrap();
    let body_at = whole
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .unwrap()
        .0
        + 1;
    std::fs::write(&bad, &whole[..body_at + 100]).unwrap();
    let err = import_fails(&ev, &bad, &pg.url);
    assert!(err.contains("export_corrupt"), "{err}");
    // A header that claims more than the file holds (it must not make the importer allocate it).
    let text = String::from_utf8_lossy(&whole[..body_at]).into_owned();
    let claimed = text.replace(
        &format!("\"ledger_bytes\":{}", whole.len() - body_at),
        "\"ledger_bytes\":9000000000",
    );
    assert_ne!(claimed, text, "the header names the ledger size");
    let mut forged = claimed.into_bytes();
    forged.extend_from_slice(&whole[body_at..]);
    std::fs::write(&bad, &forged).unwrap();
    let err = import_fails(&ev, &bad, &pg.url);
    assert!(
        err.contains("export_corrupt") && err.contains("claims 9000000000"),
        "{err}"
    );
    let other = tmp.path().join("other");
    make_event(&other, 1, &[], false);
    let err = import_fails(&other, &ea, &pg.url);
    assert!(err.contains("export_wrong_event"), "{err}");
    assert_eq!(
        pg.count("SELECT count(*) FROM scans"),
        8,
        "database unchanged"
    );
    assert_eq!(pg.count("SELECT count(*) FROM bridge_runs"), runs);

    // Before the event, the other way: tickets from HQ's rows.
    pg.sql("CREATE TABLE hq_guests (ref text, kind text); INSERT INTO hq_guests VALUES ('HQ-1', 'vip'), ('HQ-2', 'general')");
    gatemesh(&[
        "tickets",
        "issue",
        "--event",
        ev.to_str().unwrap(),
        "--no-qr",
        "--from-postgres",
        &pg.url,
        "--query",
        "SELECT ref, kind FROM hq_guests ORDER BY ref",
    ]);
    let issued = gatemesh_tests::read_codes(&ev.join("tickets/codes.csv"));
    let hq: Vec<_> = issued
        .iter()
        .filter(|(t, _)| t.starts_with("HQ-"))
        .collect();
    assert_eq!(hq.len(), 2, "{issued:?}");
    let d = scan(&ev, &dev("a"), &a, "vip", &[hq[0].1.as_str()]);
    assert_eq!(
        (&d[0]["reason"], &d[0]["ticket"]["tier"]),
        (&"ok".into(), &"vip".into()),
        "{d:?}"
    );
}

/// `gatemesh bridge run` as a child process, its JSON lines read on a thread.
struct Bridge {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl Bridge {
    fn start(ev: &Path, url: &str, data: &Path) -> Bridge {
        let mut child = std::process::Command::new(gatemesh_bin())
            .args(["bridge", "run", "--event"])
            .arg(ev)
            .arg("--device")
            .arg(ev.join("device-hq"))
            .arg("--data")
            .arg(data)
            .args([
                "--database-url",
                url,
                "--listen",
                "/ip4/127.0.0.1/udp/0/quic-v1",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { return };
                if let Ok(v) = serde_json::from_str(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        Bridge { child, lines }
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("the bridge never reported {what}");
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rules changed by bulletin after the devices went out count at HQ as on the nodes: two
/// devices that never met each admit one ticket; the organizer then allows two entries; the
/// second import judges the union of both by the rules in force (no double entry), as the
/// nodes do.
#[test]
fn hq_judges_double_entries_by_the_rules_in_force() {
    let pg = PgCluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 2, &["a", "b"], false);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let dev = |n: &str| ev.join(format!("device-{n}")).to_str().unwrap().to_string();
    for (d, data, gate) in [("a", &a, "north"), ("b", &b, "south")] {
        let got = scan(&ev, &dev(d), data, gate, &[codes[0].1.as_str()]);
        assert_eq!(got[0]["reason"], "ok", "{got:?}");
    }
    let ev_s = ev.to_str().unwrap();
    gatemesh(&[
        "bulletin",
        "--event",
        ev_s,
        "--rule",
        "general:max_entries=2",
    ]);
    let (ea, eb) = (tmp.path().join("a.export"), tmp.path().join("b.export"));
    export(&ev, &a, &ea);
    export(&ev, &b, &eb);
    assert_eq!(import(&ev, &ea, &pg.url)["conflicts_added"], 0);
    let second = import(&ev, &eb, &pg.url);
    assert_eq!(second["scans_added"], 1, "{second}");
    assert_eq!(
        second["conflicts_added"], 0,
        "two entries allowed: {second}"
    );
    assert_eq!(pg.count("SELECT count(*) FROM conflicts"), 0);
    assert_eq!(
        pg.count("SELECT count(*) FROM scans WHERE ticket_id LIKE 'pause:%'"),
        0,
        "gate pauses stay in the mesh's ledger"
    );
}

/// Poll until `sql` returns `want` (a count).
fn wait_count(pg: &PgCluster, sql: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = pg.count(sql);
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {n}, expected {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_live_bridge_follows_the_mesh_through_a_database_restart_and_a_split() {
    let pg = PgCluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 30, &["a", "b"], false);
    gatemesh(&[
        "device",
        "enroll",
        "--event",
        ev.to_str().unwrap(),
        "--name",
        "hq",
        "--role",
        "observer",
    ]);
    let mut a = NodeProc::start(&ev, "device-a", &tmp.path().join("a"), "north", &[]);
    let mut b = NodeProc::start(&ev, "device-b", &tmp.path().join("b"), "south", &[]);
    let bridge = Bridge::start(&ev, &pg.url, &tmp.path().join("hq"));
    bridge.wait_for("a database connection", |v| {
        v["event"] == "database_connected"
    });
    a.wait_peers(2);
    b.wait_peers(2);

    // Scans on both nodes reach HQ within seconds.
    for i in 0..5 {
        assert_eq!(a.scan(&codes[i].1)["reason"], "ok");
        assert_eq!(b.scan(&codes[10 + i].1)["reason"], "ok");
    }
    assert_eq!(b.scan(&codes[0].1)["reason"], "already_redeemed");
    wait_count(&pg, "SELECT count(*) FROM scans", 11);

    // PostgreSQL goes away mid-stream; the gates go on scanning.
    pg.stop();
    for i in 5..10 {
        a.scan(&codes[i].1);
        b.scan(&codes[10 + i].1);
    }
    bridge.wait_for("the database being away", |v| {
        v["event"] == "database_unavailable"
    });
    pg.start_again();
    bridge.wait_for("a new connection", |v| v["event"] == "database_connected");
    wait_count(&pg, "SELECT count(*) FROM scans", 21);
    wait_count(
        &pg,
        "SELECT count(*) FROM scans WHERE verdict = 'admit'",
        20,
    );

    // The bridge is cut off from the gates (a split); they scan on; the heal brings it all.
    for n in [&mut a, &mut b] {
        n.send("!block hq");
        n.wait_for("the bridge cut off", |v| {
            v["event"] == "peer_disconnected" && v["peer"] == "hq"
        });
    }
    for i in 20..25 {
        assert_eq!(a.scan(&codes[i].1)["reason"], "ok");
        assert_eq!(b.scan(&codes[i + 5].1)["reason"], "ok");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        pg.count("SELECT count(*) FROM scans"),
        21,
        "the bridge saw nothing"
    );
    for n in [&mut a, &mut b] {
        n.send("!unblock hq");
    }
    wait_count(&pg, "SELECT count(*) FROM scans", 31);
    // Nothing doubled: the per-ticket counters add up to the scans.
    assert_eq!(pg.count("SELECT sum(scan_count) FROM tickets"), 31);
    assert_eq!(pg.count("SELECT count(*) FROM tickets"), 30);
    // Every scan id the nodes decided is there.
    let decided: Vec<String> = a
        .seen
        .iter()
        .chain(b.seen.iter())
        .filter(|v| v["event"] == "scan")
        .map(|v| v["scan_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(decided.len(), 31);
    let ids = pg.sql("SELECT string_agg(scan_id, ',') FROM scans");
    for id in &decided {
        assert!(ids.split(',').any(|s| s == id), "{id} missing from {ids}");
    }

    // After the event: node a's store holds both nodes' scans (a multi-node export); imported
    // into a fresh database, the counts match its ledger exactly.
    let status = a.status();
    drop(a);
    let file = tmp.path().join("a.export");
    export(&ev, &tmp.path().join("a"), &file);
    pg.sql("CREATE DATABASE hq2");
    let hq2 = format!("postgresql://postgres@127.0.0.1:{}/hq2", pg.port);
    let v = import(&ev, &file, &hq2);
    assert_eq!(v["records"], status["records"], "{v}");
    assert_eq!(v["scans_added"], 31, "{v}");
    assert_eq!(pg.sql_at(&hq2, "SELECT count(*) FROM scans"), "31");
    assert_eq!(
        pg.sql_at(&hq2, "SELECT count(*) FROM conflicts"),
        status["conflicts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["double_entries"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
            .to_string()
    );
    let devices: std::collections::BTreeSet<String> = decided
        .iter()
        .map(|id| id.split('-').next().unwrap().to_string())
        .collect();
    assert_eq!(devices.len(), 2, "both nodes' scans are in one export");
}

#[test]
fn an_offline_scan_reconciled_at_two_nodes_counts_once_at_hq() {
    let pg = PgCluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 3, &["a", "b"], false);
    let listed = gatemesh_tests::gatemesh(&[
        "device",
        "enroll",
        "--event",
        ev.to_str().unwrap(),
        "--name",
        "handheld-1",
        "--role",
        "offline",
        "--list",
    ]);
    assert!(listed.status.success());
    // A handheld posts the same offline scan to two nodes that never met.
    let scanned_at = gatemesh_crdt::record::date::iso(gatemesh_node::now_ms());
    let body = serde_json::to_vec(&serde_json::json!({"device_id": "handheld-1", "scans": [
        {"ticket_id": codes[0].0, "scanned_at": scanned_at, "result": "ALLOW"}
    ]}))
    .unwrap();
    for (device, data) in [("device-a", "a"), ("device-b", "b")] {
        let (mut n, addr) =
            NodeProc::start_http(&ev, device, &tmp.path().join(data), "north", &["--no-mdns"]);
        let (s, v) =
            gatemesh_tests::http_request(&addr, "POST", "/offline/reconcile", Some("staff"), &body);
        assert_eq!((s, &v["reconciled"]), (200, &1.into()), "{v}");
        if device == "device-a" {
            assert_eq!(n.scan(&codes[1].1)["reason"], "ok");
            // A ticket found by search and checked in by hand: HQ sees it marked manual.
            let hand = serde_json::to_vec(&serde_json::json!({"ticket_id": codes[2].0})).unwrap();
            let (s, v) =
                gatemesh_tests::http_request(&addr, "POST", "/api/checkin", Some("staff"), &hand);
            assert_eq!(
                (s, &v["reason"], &v["manual"]),
                (200, &"ok".into(), &true.into()),
                "{v}"
            );
            // A supervisor's gate pause and its resume: records of the ledger, no scans; HQ
            // takes the export all the same.
            for paused in [true, false] {
                let b = serde_json::to_vec(&serde_json::json!({"paused": paused})).unwrap();
                let (s, v) = gatemesh_tests::http_request(
                    &addr,
                    "POST",
                    "/api/gate-pause",
                    Some("staff"),
                    &b,
                );
                assert_eq!(s, 200, "{v}");
            }
        }
    }
    for data in ["a", "b"] {
        let file = tmp.path().join(format!("{data}.export"));
        export(&ev, &tmp.path().join(data), &file);
        import(&ev, &file, &pg.url);
    }
    assert_eq!(pg.count("SELECT count(*) FROM schema_migrations"), 3);
    // Two records (one per node), one scan: one admit, no double entry.
    let t0 = &codes[0].0;
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM scans WHERE ticket_id = '{t0}' AND origin IS NOT NULL"
        )),
        2
    );
    assert_eq!(
        pg.sql(&format!(
            "SELECT scan_count, admit_count FROM tickets WHERE ticket_id = '{t0}'"
        )),
        "1|1"
    );
    assert_eq!(pg.count("SELECT count(*) FROM conflicts"), 0);
    assert_eq!(pg.count("SELECT sum(admit_count) FROM tickets"), 3);
    let t2 = &codes[2].0;
    assert_eq!(
        pg.sql("SELECT ticket_id FROM scans WHERE manual"),
        t2.as_str(),
        "only the hand check-in is manual"
    );
}
