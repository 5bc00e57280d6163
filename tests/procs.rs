//! Driving `gatemesh node run` processes: codes in on standard input, JSON events out. Used by
//! the multi-process tests and the benchmarks (through `gatemesh_tests`) and by `gatemesh demo`
//! (the binary compiles this same file): test harness code, not part of the device library.
//! Every wait has a limit, and a process is killed when its handle is dropped, so nothing is
//! left running.

use anyhow::{bail, Context};
use serde_json::Value;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Events buffered from one node before its reader waits.
pub const EVENT_QUEUE_MAX: usize = 100_000;

/// How to start one node.
#[derive(Clone, Debug)]
pub struct NodeSpec<'a> {
    /// The `gatemesh` binary.
    pub bin: &'a Path,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<&'a str>,
    pub listen: &'a str,
    pub event: &'a Path,
    pub device: &'a Path,
    pub data: &'a Path,
    pub gate: &'a str,
    pub extra: &'a [&'a str],
}

pub struct NodeProcess {
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    events: Receiver<Value>,
    /// Every event returned by the waits so far, in order.
    pub seen: Vec<Value>,
}

impl std::fmt::Debug for NodeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProcess")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NodeProcess {
    pub fn start(name: &str, spec: &NodeSpec<'_>, stderr: Stdio) -> anyhow::Result<NodeProcess> {
        let mut cmd = match spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(spec.bin);
                c
            }
            None => Command::new(spec.bin),
        };
        let mut child = cmd
            .args(["node", "run", "--event"])
            .arg(spec.event)
            .arg("--device")
            .arg(spec.device)
            .arg("--data")
            .arg(spec.data)
            .args(["--gate", spec.gate, "--listen", spec.listen])
            .args(spec.extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", spec.bin.display()))?;
        let stdin = child.stdin.take().context("node stdin")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let (tx, events) = std::sync::mpsc::sync_channel(EVENT_QUEUE_MAX);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(NodeProcess {
            name: name.to_string(),
            child,
            stdin,
            events,
            seen: Vec::new(),
        })
    }

    /// Send one line (a code or a `!` command).
    pub fn send(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("{} is not reading", self.name))
    }

    /// Wait up to `limit` for the next event matching `pred`.
    pub fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Ok(v);
                    }
                }
                Err(_) => bail!("{}: no {what} within {limit:?}", self.name),
            }
        }
    }

    /// Every event that arrived so far, without waiting and without keeping them in `seen`.
    pub fn drain(&mut self) -> Vec<Value> {
        self.events.try_iter().collect()
    }

    /// Scan a code and return the decision.
    pub fn scan(&mut self, code: &str, limit: Duration) -> anyhow::Result<Value> {
        self.send(code)?;
        self.wait_for("scan decision", limit, |v| v["event"] == "scan")
    }

    /// Ask for `!status`.
    pub fn status(&mut self, limit: Duration) -> anyhow::Result<Value> {
        self.send("!status")?;
        self.wait_for("status", limit, |v| v["event"] == "status")
    }

    /// Wait until connected to at least `n` distinct peers.
    pub fn wait_peers(&mut self, n: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.status(limit)?;
            if status["peers"].as_array().map_or(0, Vec::len) >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}: fewer than {n} peers after {limit:?}: {status}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
