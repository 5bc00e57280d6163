//! The design the seeds recommend (`distributed-ticket-verification.md`, Option 1), the
//! baseline `gatemesh-bench venue` measures the mesh against on the same shaped network.
//!
//! The central server is small but honest: axum, a pool of PostgreSQL connections, one request
//! per scan; it reads the credential with the same code the mesh uses (GM1 signature check),
//! then in one transaction locks the ticket's row (`SELECT ... FOR UPDATE`), refuses it if used,
//! marks it used and commits (PostgreSQL with fsync on, as the mesh fdatasyncs each answer).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use gatemesh_crdt::credential::{self, Readers};
use gatemesh_crdt::event::EventPackage;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Connections the central server keeps to PostgreSQL.
const POOL: usize = 16;

struct Central {
    package: EventPackage,
    manifest: gatemesh_crdt::event::manifest::Manifest,
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

/// The central server: its address and its task.
pub struct CentralServer {
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl CentralServer {
    /// Serve on `listener` (bound by the caller, in a host's network namespace: the socket
    /// stays in the one it was made in) with every ticket of `ticket_ids` valid in PostgreSQL
    /// at `pg_url`.
    pub async fn serve(
        pg_url: &str,
        listener: std::net::TcpListener,
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
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
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
