//! Helpers for the multi-process tests: find the `gatemesh` binary, run it, make events.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `gatemesh` binary of this build (built on demand when the test runs alone).
pub fn gatemesh_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // Test binaries live in <profile>/deps, benchmark binaries in <profile>.
    let mut dir = exe.parent().expect("binary dir").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
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

/// A running `gatemesh node run` process: codes in on stdin, JSON events out on stdout.
/// Killed when dropped, so a failing test leaves nothing running.
pub struct NodeProc {
    pub name: String,
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
    /// Every event seen so far, in order.
    pub seen: Vec<serde_json::Value>,
}

/// The longest any test waits for one event.
pub const EVENT_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl NodeProc {
    /// Start a node for `device` (a directory name inside the event dir) on `data`, on loopback.
    pub fn start(event: &Path, device: &str, data: &Path, gate: &str, extra: &[&str]) -> NodeProc {
        NodeProc::start_in(
            None,
            "/ip4/127.0.0.1/udp/0/quic-v1",
            event,
            device,
            data,
            gate,
            extra,
        )
    }

    /// Start a node inside network namespace `netns` (when given), listening on `listen`.
    pub fn start_in(
        netns: Option<&str>,
        listen: &str,
        event: &Path,
        device: &str,
        data: &Path,
        gate: &str,
        extra: &[&str],
    ) -> NodeProc {
        use std::process::Stdio;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(gatemesh_bin());
                c
            }
            None => Command::new(gatemesh_bin()),
        };
        let device_dir = event.join(device);
        let mut child = cmd
            .args(["node", "run", "--event", event.to_str().unwrap()])
            .args(["--device", device_dir.to_str().unwrap()])
            .args(["--data", data.to_str().unwrap(), "--gate", gate])
            .args(["--listen", listen])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gatemesh node run starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        NodeProc {
            name: device.to_string(),
            child,
            stdin,
            events,
            seen: Vec::new(),
        }
    }

    /// Send one line (a code or a `!` command).
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        writeln!(self.stdin, "{line}").expect("node stdin open");
        self.stdin.flush().unwrap();
    }

    /// Wait for the first event (after those already returned) matching `pred`.
    pub fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_for_within(what, EVENT_WAIT_MAX, pred)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no {what} within {EVENT_WAIT_MAX:?}; saw {:#?}",
                    self.name, self.seen
                )
            })
    }

    /// Like [`Self::wait_for`], `None` after `limit`.
    pub fn wait_for_within(
        &mut self,
        _what: &str,
        limit: std::time::Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Some(v);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Scan a code and return the decision.
    pub fn scan(&mut self, code: &str) -> serde_json::Value {
        self.send(code);
        self.wait_for("scan decision", |v| v["event"] == "scan")
    }

    /// Wait until this node applied the record `scan_id` from a peer.
    pub fn wait_applied(&mut self, scan_id: &str) -> serde_json::Value {
        self.wait_for(&format!("record {scan_id}"), |v| {
            v["event"] == "applied"
                && v["records"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|s| s == scan_id))
        })
    }

    /// Ask for `!status`.
    pub fn status(&mut self) -> serde_json::Value {
        self.send("!status");
        self.wait_for("status", |v| v["event"] == "status")
    }

    /// Wait until connected to at least `n` distinct peers.
    pub fn wait_peers(&mut self, n: usize) {
        let deadline = std::time::Instant::now() + EVENT_WAIT_MAX;
        while std::time::Instant::now() < deadline {
            let peers = self.status()["peers"].as_array().map_or(0, Vec::len);
            if peers >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let status = self.status();
        panic!(
            "{}: fewer than {n} peers after {EVENT_WAIT_MAX:?}: {status:#?}",
            self.name
        );
    }

    /// Every event that arrived so far, without waiting and without keeping them in `seen`.
    pub fn drain(&mut self) -> Vec<serde_json::Value> {
        self.events.try_iter().collect()
    }

    /// SIGKILL the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A switch namespace with two bridges and `hosts` host namespaces wired to bridge 0, torn down
/// on drop. Host i has 10.77.0.(i+1)/24 on `eth0`. Needs root and iproute2.
pub struct Lan {
    prefix: String,
    pub hosts: usize,
}

impl Lan {
    pub fn new(hosts: usize) -> Lan {
        let prefix = format!("gm{}", std::process::id() % 100_000);
        let lan = Lan { prefix, hosts };
        let sw = lan.switch();
        ip(&["netns", "add", &sw]);
        ip(&["-n", &sw, "link", "set", "lo", "up"]);
        for br in ["br0", "br1"] {
            ip(&["-n", &sw, "link", "add", br, "type", "bridge"]);
            ip(&["-n", &sw, "link", "set", br, "up"]);
        }
        for i in 0..hosts {
            let h = lan.host(i);
            ip(&["netns", "add", &h]);
            ip(&["-n", &h, "link", "set", "lo", "up"]);
            let port = format!("p{i}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &h,
            ]);
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                &h,
                "addr",
                "add",
                &format!("10.77.0.{}/24", i + 1),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &h, "link", "set", "eth0", "multicast", "on", "up"]);
            ip(&["-n", &h, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        lan
    }

    pub fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    pub fn host(&self, i: usize) -> String {
        format!("{}-h{i}", self.prefix)
    }

    /// Put host `i`'s port on bridge `bridge` (0 or 1): hosts on different bridges cannot talk.
    pub fn attach(&self, i: usize, bridge: u8) {
        ip(&[
            "-n",
            &self.switch(),
            "link",
            "set",
            &format!("p{i}"),
            "master",
            &format!("br{bridge}"),
        ]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.host(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch()])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 (ip) is installed");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
