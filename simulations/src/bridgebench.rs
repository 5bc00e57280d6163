//! `bridge`: an export of `scans` signed scan records (one enrolled device, a distinct ticket
//! each, every tenth one a denial) imported into a fresh PostgreSQL cluster with
//! `gatemesh bridge import` (the release binary, a real process), then imported again.
//!
//! - `import_s`: wall time of the first import: reading and checking the file, loading the
//!   ledger, verifying every signature, COPY and merge in batches.
//! - `rerun_rows_added`: rows the second import of the same file added (the goal is 0).

use gatemesh_crdt::gate::GateLogic;
use gatemesh_crdt::{Direction, Draft, Verdict};
use gatemesh_tests::{gatemesh_bin, make_event, PgCluster};
use serde_json::{json, Map, Value};
use std::time::Instant;

fn import(ev: &std::path::Path, file: &std::path::Path, url: &str) -> anyhow::Result<Value> {
    let out = std::process::Command::new(gatemesh_bin())
        .args(["bridge", "import", "--event"])
        .arg(ev)
        .arg("--file")
        .arg(file)
        .args(["--database-url", url])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

pub fn run(scans: usize) -> anyhow::Result<Map<String, Value>> {
    let tmp = tempfile::tempdir()?;
    let ev = tmp.path().join("event");
    make_event(&ev, 1, &["a"], false);
    let package = gatemesh_node::package::load(&ev)?;
    let keys = package.config.organizer_verifying_keys()?;
    let identity = gatemesh_node::package::load_identity(
        &ev.join("device-a"),
        &package.config.event_id,
        &keys,
    )?;
    let (mut ledger, _) = GateLogic::open_ledger(
        &package,
        Some(&identity),
        gatemesh_crdt::ChainId(7),
        &[],
        &[],
        std::iter::empty(),
        gatemesh_node::now_ms(),
    )?;
    let started = Instant::now();
    let t0 = gatemesh_node::now_ms();
    for i in 0..scans {
        let deny = i % 10 == 9;
        let draft = Draft {
            ticket_id: format!("B{i:07}"),
            tier: "general".into(),
            gate: if i % 2 == 0 { "north" } else { "south" }.into(),
            zone: "main".into(),
            direction: Direction::In,
            verdict: if deny { Verdict::Deny } else { Verdict::Admit },
            reason: if deny { "expired" } else { "ok" }.into(),
            seen: Vec::new(),
            annuls: None,
            origin: None,
            wall_ms: None,
        };
        ledger.record(t0 + i as u64, draft)?;
    }
    let generate_s = started.elapsed().as_secs_f64();
    let file = tmp.path().join("big.export");
    gatemesh_node::bridge::write_export(&ledger, &package.config, &file)?;
    drop(ledger);
    let export_bytes = std::fs::metadata(&file)?.len();

    let pg = PgCluster::start();
    let started = Instant::now();
    let first = import(&ev, &file, &pg.url)?;
    let import_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let second = import(&ev, &file, &pg.url)?;
    let rerun_s = started.elapsed().as_secs_f64();
    let in_db = pg.count("SELECT count(*) FROM scans");

    let mut out = Map::new();
    out.insert("bench".into(), json!("bridge"));
    out.insert("scans".into(), json!(scans));
    out.insert("import_s".into(), json!(import_s));
    out.insert("rerun_rows_added".into(), json!(second["rows_added"]));
    out.insert("scans_in_database".into(), json!(in_db));
    out.insert("first_scans_added".into(), json!(first["scans_added"]));
    out.insert("rejected".into(), json!(first["rejected"]));
    out.insert("rerun_s".into(), json!(rerun_s));
    out.insert("import_phases_s".into(), first["timings"].clone());
    out.insert("export_bytes".into(), json!(export_bytes));
    out.insert("generate_s".into(), json!(generate_s));
    Ok(out)
}
