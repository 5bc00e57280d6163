//! Helpers for the multi-process tests: find the `gatemesh` binary, run it, make events.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `gatemesh` binary of this build (built on demand when the test runs alone).
pub fn gatemesh_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_path_buf();
    let bin = dir.join("gatemesh");
    if !bin.exists() {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "gatemesh-node", "--bin", "gatemesh"]);
        if release {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("cargo runs").success(),
            "building gatemesh failed"
        );
    }
    bin
}

/// Run `gatemesh ARGS`, panicking with its output when it fails.
pub fn gatemesh(args: &[&str]) -> Output {
    let out = Command::new(gatemesh_bin())
        .args(args)
        .output()
        .expect("gatemesh runs");
    assert!(
        out.status.success(),
        "gatemesh {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `gatemesh ARGS` expecting failure; returns stderr.
pub fn gatemesh_fails(args: &[&str]) -> String {
    let out = Command::new(gatemesh_bin())
        .args(args)
        .output()
        .expect("gatemesh runs");
    assert!(
        !out.status.success(),
        "gatemesh {args:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh event with `count` GM1 tickets and the named scanner devices.
pub fn make_event(dir: &Path, count: u32, devices: &[&str], qr: bool) -> Vec<(String, String)> {
    let ev = dir.to_str().unwrap();
    gatemesh(&["event", "create", "--out", ev, "--name", "Test Fest"]);
    let count = count.to_string();
    let mut issue = vec!["tickets", "issue", "--event", ev, "--count", &count];
    if !qr {
        issue.push("--no-qr");
    }
    gatemesh(&issue);
    for d in devices {
        gatemesh(&["device", "enroll", "--event", ev, "--name", d]);
    }
    read_codes(&dir.join("tickets/codes.csv"))
}

/// (ticket id, code) pairs from a codes.csv (GM1 codes hold no commas or quotes).
pub fn read_codes(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .expect("codes.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect()
}

/// Parse the JSON lines `gatemesh scan` prints.
pub fn decisions(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad decision line {l:?}: {e}")))
        .collect()
}
