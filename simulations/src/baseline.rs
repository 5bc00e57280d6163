//! `baseline`: the design the seeds recommend (`distributed-ticket-verification.md`, Option 1)
//! beside the mesh, on the same machine and workload.
//!
//! The central server is small but honest: axum, a pool of PostgreSQL connections, one request
//! per scan; it reads the credential with the same code the mesh uses (GM1 signature check),
//! then in one transaction locks the ticket's row (`SELECT ... FOR UPDATE`), refuses it if used,
//! marks it used and commits (PostgreSQL with fsync on, as the mesh fdatasyncs each answer).
//!
//! The mesh: `nodes` real `gatemesh node run --http` processes; each scanner talks to its own
//! node. Both get `concurrency` scanners sending distinct tickets over loopback HTTP.
//!
//! Then the outage: the central server is stopped and the mesh's nodes are cut off from each
//! other; each side is sent `down_scans` fresh tickets. `central_down_admits` is what the server
//! answered (nothing can), `mesh_down_admits` what the mesh answered.

use crate::httpbench::client_at;
use crate::report::percentile;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use gatemesh_crdt::credential::{self, Readers};
use gatemesh_crdt::event::EventPackage;
use gatemesh_tests::{make_event, NodeProc, PgCluster};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct Baseline {
    pub nodes: usize,
    pub concurrency: usize,
    pub requests: usize,
    pub down_scans: usize,
}

/// Connections the central server keeps to PostgreSQL.
const POOL: usize = 16;

struct Central {
    package: EventPackage,
    manifest: gatemesh_crdt::manifest::Manifest,
    keys: HashMap<String, ed25519_dalek::VerifyingKey>,
    pool: Vec<tokio::sync::Mutex<tokio_postgres::Client>>,
    next: AtomicUsize,
}

async fn scan(State(c): State<Arc<Central>>, Json(body): Json<Value>) -> Json<Value> {
    let code = body["code"].as_str().unwrap_or_default();
    let readers = Readers {
        organizer_keys: &c.keys,
        legacy: &c.package.config.legacy,
        legacy_secret: None,
        manifest: &c.manifest,
    };
    let cred = match credential::read(code.as_bytes(), readers) {
        Ok(c) => c,
        Err(u) => return Json(json!({"verdict": "deny", "reason": u.denial.reason.code()})),
    };
    let i = c.next.fetch_add(1, Ordering::Relaxed) % c.pool.len();
    let mut client = c.pool[i].lock().await;
    let result = async {
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT status FROM central_tickets WHERE ticket_id = $1 FOR UPDATE",
                &[&cred.ticket_id],
            )
            .await?;
        let verdict = match row.map(|r| r.get::<_, String>(0)) {
            None => json!({"verdict": "deny", "reason": "unknown_ticket"}),
            Some(s) if s == "used" => json!({"verdict": "deny", "reason": "already_redeemed"}),
            Some(_) => {
                tx.execute(
                    "UPDATE central_tickets SET status = 'used', scanned_at = now() WHERE ticket_id = $1",
                    &[&cred.ticket_id],
                )
                .await?;
                json!({"verdict": "admit", "reason": "ok"})
            }
        };
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(verdict)
    }
    .await;
    Json(result.unwrap_or_else(|e| json!({"verdict": "error", "message": e.to_string()})))
}

/// Latencies of `concurrency` scanners over `codes` against `addrs` (round robin), in ms.
fn load(
    addrs: &[(String, &'static str)],
    codes: &[String],
    concurrency: usize,
) -> (Vec<f64>, usize) {
    let per = codes.len().div_ceil(concurrency);
    let threads: Vec<_> = codes
        .chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let (addr, path) = addrs[i % addrs.len()].clone();
            let chunk = chunk.to_vec();
            std::thread::spawn(move || client_at(&addr, path, &chunk))
        })
        .collect();
    let mut all = Vec::new();
    let mut failed = 0;
    for t in threads {
        if let Ok(Ok((l, f))) = t.join() {
            all.extend(l);
            failed += f;
        }
    }
    (all, failed)
}

/// The central server, started on loopback: its address and its task.
pub struct CentralServer {
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl CentralServer {
    /// Start the server on `bind` with every ticket of `ticket_ids` valid in PostgreSQL at
    /// `pg_url`.
    pub async fn start(
        pg_url: &str,
        bind: &str,
        package: EventPackage,
        ticket_ids: &[&str],
    ) -> anyhow::Result<CentralServer> {
        let mut pool = Vec::new();
        for _ in 0..POOL {
            pool.push(tokio::sync::Mutex::new(
                gatemesh_cloud_bridge::connect(pg_url).await?,
            ));
        }
        let c0 = pool[0].lock().await;
        c0.batch_execute(
            "CREATE TABLE IF NOT EXISTS central_tickets (ticket_id text PRIMARY KEY, \
             status text NOT NULL, scanned_at timestamptz)",
        )
        .await?;
        c0.execute(
            "INSERT INTO central_tickets SELECT unnest($1::text[]), 'valid' ON CONFLICT DO NOTHING",
            &[&ticket_ids],
        )
        .await?;
        drop(c0);
        let state = Arc::new(Central {
            manifest: package.manifest.clone().unwrap_or_default(),
            keys: package.config.organizer_verifying_keys()?,
            package,
            pool,
            next: AtomicUsize::new(0),
        });
        let app = Router::new().route("/scan", post(scan)).with_state(state);
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?.to_string();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(CentralServer { addr, task })
    }

    /// Stop serving (the outage).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The mesh side: one node per device, each with its scanner address.
struct Mesh {
    nodes: Vec<NodeProc>,
    addrs: Vec<(String, &'static str)>,
}

impl Mesh {
    fn start(ev: &std::path::Path, dir: &std::path::Path, devices: &[String]) -> Mesh {
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for d in devices {
            let (n, addr) =
                NodeProc::start_http(ev, &format!("device-{d}"), &dir.join(d), "north", &[]);
            nodes.push(n);
            addrs.push((addr, "/api/scan"));
        }
        for n in nodes.iter_mut() {
            n.wait_peers(devices.len() - 1);
        }
        Mesh { nodes, addrs }
    }

    /// Scan `codes` with `concurrency` scanners, draining the nodes' output meanwhile: the
    /// latencies, the failures and the seconds it took.
    fn load(&mut self, codes: Vec<String>, concurrency: usize) -> (Vec<f64>, usize, f64) {
        let started = Instant::now();
        let handle = std::thread::spawn({
            let addrs = self.addrs.clone();
            move || load(&addrs, &codes, concurrency)
        });
        while !handle.is_finished() {
            for n in self.nodes.iter_mut() {
                n.drain();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (ms, failed) = handle.join().unwrap_or_default();
        (ms, failed, started.elapsed().as_secs_f64())
    }

    /// Cut every node off from the others, then scan `codes` spread over the nodes: admits.
    fn outage(&mut self, devices: &[String], codes: &[String]) -> usize {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            let others: Vec<&str> = devices
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, s)| s.as_str())
                .collect();
            n.send(&format!("!block {}", others.join(" ")));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        let per = codes.len().div_ceil(self.nodes.len());
        let mut admits = 0;
        for (i, chunk) in codes.chunks(per).enumerate() {
            let (addr, path) = &self.addrs[i % self.addrs.len()];
            if let Ok((_, failed)) = client_at(addr, path, chunk) {
                admits += chunk.len() - failed;
            }
            let k = self.nodes.len();
            self.nodes[i % k].drain();
        }
        admits
    }
}

pub fn run(b: &Baseline) -> anyhow::Result<Map<String, Value>> {
    let tmp = tempfile::tempdir()?;
    let ev = tmp.path().join("event");
    let total = 2 * b.requests + 2 * b.down_scans;
    let devices: Vec<String> = (0..b.nodes).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = devices.iter().map(String::as_str).collect();
    let codes: Vec<(String, String)> = make_event(&ev, total as u32, &names, false);
    let package = gatemesh_node::package::load(&ev)?;
    let (central_codes, rest) = codes.split_at(b.requests);
    let (mesh_codes, rest) = rest.split_at(b.requests);
    let (central_down, mesh_down) = rest.split_at(b.down_scans);
    let only = |v: &[(String, String)]| v.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>();

    // The central server and its database.
    let pg = PgCluster::start_with(true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ids: Vec<&str> = codes.iter().map(|(t, _)| t.as_str()).collect();
    let server = rt.block_on(CentralServer::start(&pg.url, "127.0.0.1:0", package, &ids))?;
    let central_addr = server.addr.clone();
    let (mut central_ms, central_failed) = load(
        &[(central_addr.clone(), "/scan")],
        &only(central_codes),
        b.concurrency,
    );

    let mut mesh = Mesh::start(&ev, tmp.path(), &devices);
    let (mut mesh_ms, mesh_failed, mesh_s) = mesh.load(only(mesh_codes), b.concurrency);

    // The outage: no server; for the mesh, no network between the nodes.
    rt.block_on(server.stop());
    let (central_down_ms, central_down_failed) = load(
        &[(central_addr, "/scan")],
        &only(central_down),
        b.concurrency,
    );
    let central_down_admits = central_down_ms.len() - central_down_failed;
    let mesh_down_admits = mesh.outage(&devices, &only(mesh_down));

    let p = |v: &mut Vec<f64>, q| percentile(v, q);
    let mesh_p95 = p(&mut mesh_ms, 95.0);
    let central_p95 = p(&mut central_ms, 95.0);
    let mut out = Map::new();
    out.insert("bench".into(), json!("baseline"));
    out.insert("mesh_p95_ms".into(), json!(mesh_p95));
    out.insert("central_p95_ms".into(), json!(central_p95));
    out.insert("ratio".into(), json!(central_p95 / mesh_p95));
    out.insert("central_down_admits".into(), json!(central_down_admits));
    out.insert("mesh_down_admits".into(), json!(mesh_down_admits));
    out.insert("down_scans".into(), json!(b.down_scans));
    out.insert("mesh_p50_ms".into(), json!(p(&mut mesh_ms, 50.0)));
    out.insert("mesh_p99_ms".into(), json!(p(&mut mesh_ms, 99.0)));
    out.insert("central_p50_ms".into(), json!(p(&mut central_ms, 50.0)));
    out.insert("central_p99_ms".into(), json!(p(&mut central_ms, 99.0)));
    out.insert("mesh_failed".into(), json!(mesh_failed));
    out.insert("central_failed".into(), json!(central_failed));
    out.insert(
        "mesh_throughput_per_s".into(),
        json!(mesh_ms.len() as f64 / mesh_s),
    );
    out.insert("nodes".into(), json!(b.nodes));
    out.insert("concurrency".into(), json!(b.concurrency));
    out.insert("requests".into(), json!(b.requests));
    Ok(out)
}
