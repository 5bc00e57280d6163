//! Helpers for the multi-process tests: find the `gatemesh` binary, run it, make events.

pub mod procs;

use procs::{NodeProcess, NodeSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod venue;

pub mod offline_world;

/// The `gatemesh` binary of this build (built on demand when the test runs alone).
pub fn gatemesh_bin() -> PathBuf {
    built_bin("gatemesh", "gatemesh-node")
}

/// A binary of this workspace next to the running one, built when missing.
pub fn built_bin(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // Test binaries live in <profile>/deps, benchmark binaries in <profile>.
    let mut dir = exe.parent().expect("binary dir").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let bin = dir.join(name);
    if !bin.exists() {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", package, "--bin", name]);
        if release {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("cargo runs").success(),
            "building {name} failed"
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

/// `gatemesh device pin --device DIR`, the PIN typed on standard input.
pub fn set_pin(device_dir: &Path, pin: &str) {
    use std::io::Write;
    let mut child = Command::new(gatemesh_bin())
        .args(["device", "pin", "--device", device_dir.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("gatemesh runs");
    let mut stdin = child.stdin.take().expect("its standard input");
    stdin.write_all(format!("{pin}\n").as_bytes()).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "device pin failed");
}

/// A fresh event with `count` GM1 tickets and the named devices, supervisors' (they may undo,
/// check in by hand and pause their gate).
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
        gatemesh(&[
            "device",
            "enroll",
            "--event",
            ev,
            "--name",
            d,
            "--role",
            "supervisor",
        ]);
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

/// A running `gatemesh node run` process (see [`procs`]), with waits that fail the
/// test when they run out. Killed when dropped.
pub struct NodeProc(NodeProcess);

/// The longest any test waits for one event.
pub const EVENT_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl std::ops::Deref for NodeProc {
    type Target = NodeProcess;
    fn deref(&self) -> &NodeProcess {
        &self.0
    }
}

impl std::ops::DerefMut for NodeProc {
    fn deref_mut(&mut self) -> &mut NodeProcess {
        &mut self.0
    }
}

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
        let bin = gatemesh_bin();
        let device_dir = event.join(device);
        let spec = NodeSpec {
            bin: &bin,
            netns,
            listen,
            event,
            device: &device_dir,
            data,
            gate,
            extra,
        };
        NodeProc(
            NodeProcess::start(device, &spec, std::process::Stdio::inherit())
                .expect("gatemesh node run starts"),
        )
    }

    /// Start the node of device `device-<name>` on host `i` of `lan` (10.77.0.(i+1)), its data in
    /// `dir/<name>`, at gate north.
    pub fn start_on(
        lan: &Lan,
        i: usize,
        event: &Path,
        name: &str,
        dir: &Path,
        extra: &[&str],
    ) -> NodeProc {
        let listen = format!("/ip4/10.77.0.{}/udp/0/quic-v1", i + 1);
        let (device, data) = (format!("device-{name}"), dir.join(name));
        NodeProc::start_in(
            Some(&lan.host(i)),
            &listen,
            event,
            &device,
            &data,
            "north",
            extra,
        )
    }

    /// Start a node that serves HTTP on a free loopback port with the tokens `staff` and
    /// `admin` (plus `extra` arguments); returns it and its address (`host:port`).
    pub fn start_http(
        event: &Path,
        device: &str,
        data: &Path,
        gate: &str,
        extra: &[&str],
    ) -> (NodeProc, String) {
        let mut args = vec![
            "--http",
            "127.0.0.1:0",
            "--staff-token",
            "staff",
            "--admin-token",
            "admin",
        ];
        args.extend_from_slice(extra);
        let mut n = NodeProc::start(event, device, data, gate, &args);
        let http = n.wait_for("http", |v| v["event"] == "http");
        let addr = http["addr"].as_str().expect("http address").to_string();
        (n, addr)
    }

    pub fn send(&mut self, line: &str) {
        self.0.send(line).expect("node reads its input");
    }

    /// Wait for the next event matching `pred`; fail the test after [`EVENT_WAIT_MAX`].
    pub fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        match self.0.wait_for(what, EVENT_WAIT_MAX, pred) {
            Ok(v) => v,
            Err(e) => panic!("{e}; saw {:#?}", self.0.seen),
        }
    }

    /// Like [`Self::wait_for`], `None` after `limit`.
    pub fn wait_for_within(
        &mut self,
        what: &str,
        limit: std::time::Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        self.0.wait_for(what, limit, pred).ok()
    }

    /// Wait until this node applied the record `scan_id` from a peer.
    /// Wait until the node has applied the record `scan_id` (or find that it already had,
    /// while earlier waits read its output).
    pub fn wait_applied(&mut self, scan_id: &str) -> serde_json::Value {
        let applied = |v: &serde_json::Value| {
            v["event"] == "applied"
                && v["records"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|s| s == scan_id))
        };
        if let Some(v) = self.seen.iter().find(|v| applied(v)) {
            return v.clone();
        }
        self.wait_for(&format!("record {scan_id}"), applied)
    }

    pub fn scan(&mut self, code: &str) -> serde_json::Value {
        self.send(code);
        self.wait_for("scan decision", |v| v["event"] == "scan")
    }

    /// The node's process id.
    /// The node's QUIC address with its peer id, for another node's `--peer`.
    pub fn dial(&mut self) -> String {
        let addr = self.wait_for("listening", |v| v["event"] == "listening")["addr"]
            .as_str()
            .expect("a listening address")
            .to_string();
        let started = (self.seen.iter())
            .find(|v| v["event"] == "started")
            .expect("the node started");
        format!(
            "{addr}/p2p/{}",
            started["peer_id"].as_str().expect("a peer id")
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    pub fn status(&mut self) -> serde_json::Value {
        self.send("!status");
        self.wait_for("status", |v| v["event"] == "status")
    }

    pub fn wait_peers(&mut self, n: usize) {
        if let Err(e) = self.0.wait_peers(n, EVENT_WAIT_MAX) {
            panic!("{e}");
        }
    }
}

/// Make `zone` of the event in `event` strict at `capacity` places (`gatemesh event strict`),
/// its room held at the start by the devices `holders` (every scanner when empty).
pub fn make_strict(event: &Path, zone: &str, capacity: u32, holders: &[&str]) {
    let capacity = capacity.to_string();
    let mut args = vec!["event", "strict", "--event", event.to_str().unwrap()];
    args.extend(["--zone", zone, "--capacity", &capacity]);
    for h in holders {
        args.extend(["--holder", h]);
    }
    gatemesh(&args);
}

/// A switch namespace with two bridges and `hosts` host namespaces wired to bridge 0, torn down
/// on drop. Host i has 10.77.0.(i+1)/24 on `eth0`. Needs root and iproute2.
pub struct Lan {
    prefix: String,
    pub hosts: usize,
}

impl Lan {
    pub fn new(hosts: usize) -> Lan {
        // Unique per LAN: tests of one binary run in parallel in one process.
        static LANS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = LANS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("gm{}x{n}", std::process::id() % 100_000);
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
            // No IPv6 link-local address appearing a moment after the link is up (after its
            // duplicate address detection): a browser that sees it says its network changed
            // and drops the page it was loading (ERR_NETWORK_CHANGED).
            ip(&["-n", &h, "link", "set", "eth0", "addrgenmode", "none"]);
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

    /// Take host `i`'s port off every bridge: it reaches no other host until attached again.
    pub fn detach(&self, i: usize) {
        ip(&[
            "-n",
            &self.switch(),
            "link",
            "set",
            &format!("p{i}"),
            "nomaster",
        ]);
    }

    /// Run `f` on a thread inside host `i`'s network namespace: the sockets it opens are that
    /// host's (a scanner or a server on it); the rest of the process stays where it is.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.host(i));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("the host's network namespace");
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("the thread joins the host's network namespace");
            f()
        })
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

/// Load an nftables script into network namespace `netns`.
pub fn nft(netns: &str, script: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft (nftables) is installed");
    child
        .stdin
        .take()
        .expect("nft stdin")
        .write_all(script.as_bytes())
        .expect("nft takes the script");
    let out = child.wait_with_output().expect("nft runs");
    assert!(
        out.status.success(),
        "nft in {netns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn ip(args: &[&str]) {
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

/// A throwaway PostgreSQL cluster made with the machine's `initdb` and `pg_ctl`, on a free
/// loopback port, removed on drop. As root, the server runs as the `postgres` user.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub url: String,
    fsync: bool,
}

impl PgCluster {
    fn tool(bin: &Path, name: &str) -> Command {
        let exe = bin.join(name);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn bin_dir() -> PathBuf {
        if let Ok(p) = which("initdb") {
            // /usr/local/bin/initdb may be a link into PostgreSQL's own bin directory.
            let real = std::fs::canonicalize(&p).unwrap_or(p);
            return real.parent().unwrap().to_path_buf();
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .collect();
        found.sort();
        found
            .pop()
            .expect("initdb: install PostgreSQL (scripts/test-all does)")
    }

    /// A cluster for tests: fsync off (the tests check logic, not durability of PostgreSQL).
    pub fn start() -> PgCluster {
        PgCluster::start_with(false)
    }

    /// A cluster with PostgreSQL's own durability on or off (benchmarks compare with fsync on).
    pub fn start_with(fsync: bool) -> PgCluster {
        let bin = Self::bin_dir();
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("pgdata");
        let out = Self::tool(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = PgCluster {
            url: format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            port,
            fsync,
        };
        c.start_again();
        c
    }

    /// Start the (stopped) server and wait until it accepts connections.
    pub fn start_again(&self) {
        let data = self.dir.path().join("pgdata");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            self.port,
            self.dir.path().display(),
            if self.fsync { "on" } else { "off" }
        );
        let out = Self::tool(&self.bin, "pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// Stop the server (fast: connections are cut).
    pub fn stop(&self) {
        let _ = Self::tool(&self.bin, "pg_ctl")
            .args(["-w", "-m", "fast", "-D"])
            .arg(self.dir.path().join("pgdata"))
            .arg("stop")
            .output();
    }

    /// Run SQL with psql; the rows, fields separated by `|`.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_at(&self.url, sql)
    }

    /// Run SQL in the database at `url` (on this cluster).
    pub fn sql_at(&self, url: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn count(&self, sql: &str) -> u64 {
        self.sql(sql)
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: not a number"))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Self::tool(&self.bin, "pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("pgdata"))
            .arg("stop")
            .output();
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.exists())
        })
        .ok_or(())
}

/// One HTTP/1.1 request; returns (status, JSON body).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, serde_json::Value) {
    http_request_with(addr, (method, path), token, &[], body)
}

/// [`http_request`] with more headers (`name`, `value`).
pub fn http_request_with(
    addr: &str,
    (method, path): (&str, &str),
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    for (name, value) in headers {
        auth.push_str(&format!("{name}: {value}\r\n"));
    }
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body); // the server may refuse an oversized body before reading it
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// A pretix-style export (one row per position; the attendee's name, the product, a check-in
/// attention flag and a comment), written here rather than copied.
pub const PRETIX_CSV: &str =
    "Order code,Position ID,Product,Attendee name,Attendee e-mail,Check-in attention,Comment\r\n\
ORD7K,1,Weekend ticket,Éloïse Dupré,eloise@example.org,,\r\n\
ORD7K,2,Weekend ticket,\"Zoë O'Brien, Jr.\",zoe@example.org,,\r\n\
ORD9Q,1,VIP,Jürgen Müller,jm@example.org,yes,\"Wheelchair user:\nside ramp\"\r\n\
ORDX2,1,Day ticket,Ana Løvås,,,\r\n";

/// What `--columns` and `--tier-map` say of [`PRETIX_CSV`].
pub const PRETIX_COLUMNS: &str = "order=Order code,tier=Product,name=Attendee name,email=Attendee e-mail,attention=Check-in attention,notes=Comment";
pub const PRETIX_TIERS: &str = "Weekend ticket=weekend,Day ticket=general,VIP=vip";

/// An Eventbrite-style attendee report (first and last name apart, the barcode as the id).
pub const EVENTBRITE_CSV: &str = "Order #,Order Date,First Name,Last Name,Email,Ticket Type,Barcode #,Attendee Status\n\
1029384756,2026-06-01 10:02:00+02:00,Chloé,Lefèvre,chloe@example.org,General Admission,EB-1029384756-1,Attending\n\
1029384757,2026-06-01 11:40:00+02:00,Marc,Nguyễn,marc@example.org,VIP Pass,EB-1029384757-1,Attending\n";

pub const EVENTBRITE_COLUMNS: &str =
    "id=Barcode #,order=Order #,name=First Name+Last Name,email=Email,tier=Ticket Type";
pub const EVENTBRITE_TIERS: &str = "General Admission=general,VIP Pass=vip";

/// An event with a guest list: the pretix and Eventbrite exports issued, a VIP-only door
/// (`staff-door`, zone main), weekend passes good once per festival day (days start at 06:00
/// UTC+2), and the devices enrolled. Returns (ticket id, code) in issue order: the pretix rows
/// (numbered T000001..) then the Eventbrite ones.
pub fn make_guest_event(dir: &Path, devices: &[&str]) -> Vec<(String, String)> {
    let ev = dir.to_str().unwrap();
    gatemesh(&["event", "create", "--out", ev, "--name", "Guest Fest"]);
    let file = dir.join("event.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    config["day_starts"] = "06:00+02:00".into();
    config["gates"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "staff-door", "zone": "main", "direction": "in", "tiers": ["vip"]}));
    for t in config["tiers"].as_array_mut().unwrap() {
        if t["name"] == "weekend" {
            t["max_entries_per_day"] = 1.into();
        }
    }
    std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    for (csv, columns, tiers) in [
        (PRETIX_CSV, PRETIX_COLUMNS, PRETIX_TIERS),
        (EVENTBRITE_CSV, EVENTBRITE_COLUMNS, EVENTBRITE_TIERS),
    ] {
        let path = dir.join("guests.csv");
        std::fs::write(&path, csv).unwrap();
        gatemesh(&[
            "tickets",
            "issue",
            "--event",
            ev,
            "--no-qr",
            "--from-csv",
            path.to_str().unwrap(),
            "--columns",
            columns,
            "--tier-map",
            tiers,
        ]);
    }
    for d in devices {
        gatemesh(&[
            "device",
            "enroll",
            "--event",
            ev,
            "--name",
            d,
            "--role",
            "supervisor",
        ]);
    }
    read_codes(&dir.join("tickets/codes.csv"))
}

/// A GET answered as text (the whole response, status line and headers included).
pub fn http_get_text(addr: &str, path: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the node accepts");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("the request is sent");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run one scenario of run.mjs; returns what it observed.
pub fn browser(scenario: &str, args: serde_json::Value) -> serde_json::Value {
    assert!(
        repo_root()
            .join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run scripts/test-all (it installs it)"
    );
    page_run(Command::new("node"), scenario, args)
}

/// Run one scenario of run.mjs inside network namespace `netns`, with `home` as the browser's
/// home (its certificate store).
pub fn browser_in(
    netns: &str,
    home: &Path,
    scenario: &str,
    args: serde_json::Value,
) -> serde_json::Value {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "node"]).env("HOME", home);
    page_run(cmd, scenario, args)
}

/// `cmd` (which runs Node.js) on run.mjs with the scenario: its last JSON line, which must say
/// `ok`.
fn page_run(mut cmd: Command, scenario: &str, args: serde_json::Value) -> serde_json::Value {
    let out = cmd
        .arg(repo_root().join("tests/browser/run.mjs"))
        .arg(scenario)
        .arg(args.to_string())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = (stdout.lines().rev())
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{scenario}: no result; stdout {stdout}; stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(v["ok"], true, "{scenario}: {v}");
    v
}

/// A browser home (`HOME`) whose certificate store trusts the event CA, as a steward's phone
/// does once it installed `event-ca.pem` (certutil, from libnss3-tools).
pub fn trust_event_ca(home: &Path, ca: &Path) {
    let nss = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nss).unwrap();
    let db = format!("sql:{}", nss.display());
    let certutil = |args: &[&str]| {
        let st = Command::new("certutil")
            .args(args)
            .status()
            .expect("certutil (libnss3-tools)");
        assert!(st.success(), "certutil {args:?}");
    };
    certutil(&["-N", "-d", &db, "--empty-password"]);
    certutil(&[
        "-A",
        "-d",
        &db,
        "-t",
        "C,,",
        "-n",
        "gatemesh event",
        "-i",
        ca.to_str().unwrap(),
    ]);
}
