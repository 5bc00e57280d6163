//! Durability: a scanner process killed with SIGKILL at random moments loses no admit it had
//! acknowledged. Each round starts `gatemesh scan` on the same data directory, streams fresh
//! tickets into it, kills it after a random delay, and keeps every admit it printed. At the end a
//! second device, opened on the same data, must find every acknowledged ticket already redeemed.

use gatemesh_tests::{decisions, gatemesh_bin, make_event};
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Kills in the test run; `GATEMESH_CRASH_KILLS=N` runs a longer one.
const KILLS_DEFAULT: usize = 50;
const TICKETS_PER_ROUND: usize = 20;

#[test]
fn sigkill_loses_no_acknowledged_admit() {
    let seed: u64 = std::env::var("GATEMESH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (rerun with GATEMESH_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let kills: usize = std::env::var("GATEMESH_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS_DEFAULT);
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(
        &ev,
        (kills * TICKETS_PER_ROUND) as u32,
        &["gate-a", "gate-b"],
        false,
    );
    let data = tmp.path().join("data");
    let base = |device: &str| {
        let mut c = Command::new(gatemesh_bin());
        c.args([
            "scan",
            "--event",
            ev.to_str().unwrap(),
            "--device",
            ev.join(device).to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--gate",
            "north",
        ]);
        c
    };
    let mut acked: Vec<String> = Vec::new();
    for round in 0..kills {
        let mut child = base("device-gate-a")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let batch: String = codes[round * TICKETS_PER_ROUND..(round + 1) * TICKETS_PER_ROUND]
            .iter()
            .map(|(_, c)| format!("{c}\n"))
            .collect();
        // Write the batch and keep stdin open: the process is busy or waiting when it dies.
        let _ = stdin.write_all(batch.as_bytes());
        // Read answers on a thread; in one round of four the kill comes during start-up (store
        // recovery), otherwise some time after the first answer, in the middle of scanning.
        let mut stdout = child.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
                let _ = first_tx.send(());
            }
            out
        });
        if rng.gen_range(0..4) != 0 {
            let _ = first_rx.recv_timeout(Duration::from_secs(10));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..120)));
        // std's Child::kill sends SIGKILL on Unix.
        child.kill().unwrap();
        child.wait().unwrap();
        let out = reader.join().unwrap();
        // A line cut by the kill is not an acknowledgement.
        let complete = &out[..out.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1)];
        for d in decisions(complete) {
            assert_eq!(d["reason"], "ok", "fresh ticket not admitted: {d}");
            acked.push(d["ticket"]["id"].as_str().unwrap().to_string());
        }
    }
    eprintln!("{} admits acknowledged over {kills} kills", acked.len());
    assert!(
        acked.len() >= kills,
        "too few admits were acknowledged to test anything ({})",
        acked.len()
    );
    let by_id: std::collections::HashMap<&str, &str> = codes
        .iter()
        .map(|(i, c)| (i.as_str(), c.as_str()))
        .collect();
    let mut check = base("device-gate-b")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = acked
        .iter()
        .map(|id| format!("{}\n", by_id[id.as_str()]))
        .collect();
    let mut stdin = check.stdin.take().unwrap();
    // Written from a thread: the answers fill the stdout pipe while we still write.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = check.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    let results = decisions(&out.stdout);
    assert_eq!(results.len(), acked.len());
    for (id, d) in acked.iter().zip(&results) {
        assert_eq!(
            d["reason"], "already_redeemed",
            "acknowledged admit of {id} was lost (seed {seed}): {d}"
        );
        assert_eq!(d["previous"][0]["gate"], "north");
    }
}
