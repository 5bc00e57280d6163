//! `gatemesh node run`: one device on the mesh. An actor owns the replica and the store: it reads
//! the clock once per input, hands the input to the replica, and carries out what comes back:
//! writes (several at once share one `fdatasync`), answers to the steward's input and to HTTP,
//! events on standard output and the live stream, and network outputs for the transport driver
//! (`gatemesh_transport::driver`, which owns the swarm).
//!
//! Standard input carries codes, one per line, and operator commands: `!status`,
//! `!bulletin FILE`, `!block NAME...` / `!unblock NAME...`.

use crate::api::{ApiCall, ApiError, OfflineAsk, Query};
use crate::events::{self, emit};
use crate::metrics::{Metrics, TransportCounters};
use crate::store::Store;
use anyhow::Context;
use gatemesh_crdt::event::certificate::DeviceIdentity;
use gatemesh_crdt::protocol::replica::{Replica, ReplicaConfig};
use gatemesh_crdt::protocol::{Input, Output, Reply, RequestId};
use gatemesh_crdt::Direction;
use gatemesh_transport::driver::{self, DriverConfig, NetEvent};
use gatemesh_transport::libp2p::Multiaddr;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// How often the replica is given the time (sync rounds, retries, expiries are due on it).
pub const TICK_INTERVAL: Duration = Duration::from_millis(250);
/// Inputs of one kind (network events, lines of standard input) taken together when they are
/// already waiting: their writes share one store write and their changes one gossip message.
pub const INPUT_BATCH_MAX: usize = 64;
/// How often the live stream gets fresh statistics (when anything changed).
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// Longest a stopping node waits for HTTP requests in progress.
pub const HTTP_DRAIN_MAX: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub event: PathBuf,
    pub device: PathBuf,
    pub data: PathBuf,
    pub gate: String,
    pub direction: Option<Direction>,
    pub listen: Vec<Multiaddr>,
    pub peers: Vec<Multiaddr>,
    pub mdns: bool,
    pub hmac_secret_file: Option<PathBuf>,
    /// Serve the HTTP API here.
    pub http: Option<std::net::SocketAddr>,
    /// Serve the same routes over TLS here, with this certificate chain and key (PEM).
    pub https: Option<std::net::SocketAddr>,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Tokens for the API; generated and printed when not given.
    pub staff_token: Option<String>,
    pub admin_token: Option<String>,
    /// Read codes and commands on standard input (and stop when it closes).
    pub read_stdin: bool,
    /// Keep a journal of every record in arrival order (the bridge reads it).
    pub journal: bool,
    /// How long after the start answers say `synced: false` at most
    /// ([`gatemesh_crdt::ledger::catchup`]).
    pub catch_up_ms: u64,
}

/// Where an answer goes.
enum ReplyTo {
    Stdout,
    Api(oneshot::Sender<Result<Value, ApiError>>),
}

struct Pending {
    to: ReplyTo,
    started: Instant,
}

struct Node {
    replica: Replica,
    store: Store,
    opts: NodeOptions,
    net: mpsc::Sender<Output>,
    stream: broadcast::Sender<Arc<Value>>,
    pending: HashMap<RequestId, Pending>,
    next_request: RequestId,
    metrics: Metrics,
    transport: TransportCounters,
    /// Whether the replica has caught up since the start, for `/health/ready`.
    synced: Arc<AtomicBool>,
    /// What phones' passes are checked against (shared with the HTTP side), and the number of
    /// bulletins it was made with.
    passes: Arc<std::sync::RwLock<gatemesh_crdt::event::pass::PassCheck>>,
    bulletins_held: usize,
    /// A phone's pack, made on the first request.
    pack: Option<axum::body::Bytes>,
    /// The last snapshot for phones, and the records and bulletins it was taken with.
    snapshot: Option<((u64, usize), axum::body::Bytes)>,
    /// Who may act as a supervisor at this node's pages.
    supervisor: Arc<crate::supervisor::Guard>,
}

/// Run a node until standard input closes (when it reads it), SIGTERM or Ctrl-C.
pub async fn run(opts: NodeOptions) -> anyhow::Result<()> {
    let (api_tx, api_rx) = mpsc::channel(crate::api::API_QUEUE_MAX);
    run_with(opts, api_tx, api_rx).await
}

/// [`run`], with the queue of requests to the node given by the caller (who may send requests of
/// its own on `api_tx`, as the bridge does).
pub async fn run_with(
    opts: NodeOptions,
    api_tx: mpsc::Sender<ApiCall>,
    mut api_rx: mpsc::Receiver<ApiCall>,
) -> anyhow::Result<()> {
    let dev = crate::device::open(
        &opts.event,
        Some(&opts.device),
        &opts.data,
        opts.hmac_secret_file.as_deref(),
    )?;
    for bad in &dev.bad_bulletins {
        emit(&json!({"event": "error", "error": "bulletin_invalid", "message": bad}));
    }
    let identity = dev.identity.clone().context("node run needs a device")?;
    let supervisor =
        identity.certificate.role == gatemesh_crdt::event::certificate::Role::Supervisor;
    let supervisor = Arc::new(crate::supervisor::Guard::load(&opts.device, supervisor)?);
    let event_id = dev.gate.config().event_id.clone();
    let (replica, store) = dev.into_replica(ReplicaConfig {
        gate: opts.gate.clone(),
        direction: opts.direction,
        journal: opts.journal,
        catch_up_ms: opts.catch_up_ms,
    });
    let (net_tx, mut net_events, transport) = spawn_transport(&opts, &identity, event_id);
    let mut node = Node {
        replica,
        store,
        opts,
        net: net_tx,
        stream: broadcast::channel(crate::api::STREAM_BUFFER_MAX).0,
        pending: HashMap::new(),
        next_request: 1,
        metrics: Metrics::default(),
        transport: TransportCounters::default(),
        synced: Arc::new(AtomicBool::new(false)),
        passes: Default::default(),
        bulletins_held: usize::MAX,
        pack: None,
        snapshot: None,
        supervisor,
    };
    node.renew_passes();
    node.replica.prepare();
    let started = node.replica.start(crate::now_ms());
    node.carry_out(started).await;
    // Ready once the replica has started: requests that arrive before the loop below runs
    // wait in its queue, so the flag is up before the HTTP address is announced.
    let ready = Arc::new(AtomicBool::new(true));
    let (http_stop, http_stopped) = tokio::sync::watch::channel(false);
    let http_task = match node.opts.http.is_some() || node.opts.https.is_some() {
        true => Some(node.start_http(api_tx, http_stopped, ready.clone()).await?),
        false => None,
    };
    node.serve(&mut net_events, &mut api_rx).await?;
    ready.store(false, Ordering::Relaxed);
    node.stop(http_stop, api_rx, http_task).await?;
    transport.abort();
    emit(&json!({"event": "stopped"}));
    Ok(())
}

/// Start the libp2p driver: its command queue, its event queue and its task.
fn spawn_transport(
    opts: &NodeOptions,
    identity: &DeviceIdentity,
    event_id: String,
) -> (
    mpsc::Sender<Output>,
    mpsc::Receiver<NetEvent>,
    tokio::task::JoinHandle<Result<(), gatemesh_transport::MeshError>>,
) {
    let (net_tx, net_rx) = mpsc::channel(driver::CHANNEL_MAX);
    let (events_tx, net_events) = mpsc::channel(driver::CHANNEL_MAX);
    let task = tokio::spawn(driver::run(
        DriverConfig {
            secret: identity.key.to_bytes(),
            event_id,
            listen: opts.listen.clone(),
            peers: opts.peers.clone(),
            mdns: opts.mdns,
        },
        net_rx,
        events_tx,
    ));
    (net_tx, net_events, task)
}

impl Node {
    /// Graceful stop: refuse new HTTP connections, answer what was already asked (each answer
    /// durable before it is sent), then flush the store.
    async fn stop(
        &mut self,
        http_stop: tokio::sync::watch::Sender<bool>,
        mut api_rx: mpsc::Receiver<ApiCall>,
        http_task: Option<tokio::task::JoinHandle<()>>,
    ) -> anyhow::Result<()> {
        let _ = http_stop.send(true);
        api_rx.close();
        while let Some(call) = api_rx.recv().await {
            self.on_api(vec![call]).await;
        }
        if let Some(task) = http_task {
            let _ = tokio::time::timeout(HTTP_DRAIN_MAX, task).await;
        }
        self.store.flush()?;
        Ok(())
    }

    /// The actor's loop, until SIGTERM or Ctrl-C. The end of standard input is not a stop: a
    /// node run as a service has none.
    async fn serve(
        &mut self,
        net_events: &mut mpsc::Receiver<NetEvent>,
        api_rx: &mut mpsc::Receiver<ApiCall>,
    ) -> anyhow::Result<()> {
        let mut reading = self.opts.read_stdin;
        let mut input = if reading {
            crate::input::spawn_reader()
        } else {
            mpsc::channel(1).1
        };
        let mut terminate = terminate_signal()?;
        let mut tick = tokio::time::interval(TICK_INTERVAL);
        let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
        loop {
            tokio::select! {
                Some(ev) = net_events.recv() => {
                    self.on_net_events(waiting(ev, net_events, INPUT_BATCH_MAX)).await
                }
                line = input.recv(), if reading => match line {
                    Some(line) => self.on_lines(waiting(line, &mut input, INPUT_BATCH_MAX)).await,
                    None => reading = false,
                },
                Some(call) = api_rx.recv() => {
                    self.on_api(waiting(call, api_rx, crate::api::API_BATCH_MAX)).await
                }
                _ = tick.tick() => self.handle(Input::Tick).await,
                _ = stats_tick.tick() => self.stream_stats(),
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
            }
        }
    }

    /// Inputs that arrived together, each through the replica, their writes made as one (group
    /// commit) and the changes that write made durable published together.
    async fn handle_all(&mut self, inputs: Vec<Input>) {
        if inputs.is_empty() {
            return;
        }
        let mut outs = Vec::new();
        for input in inputs {
            outs.extend(self.replica.handle(crate::now_ms(), input));
        }
        self.carry_out(outs).await;
        self.renew_passes();
        let synced = self.replica.synced();
        self.synced.store(synced, Ordering::Relaxed);
    }

    /// Network events that arrived together: the replica's inputs handled as one batch.
    async fn on_net_events(&mut self, evs: Vec<NetEvent>) {
        let mut inputs = Vec::new();
        for ev in evs {
            match ev {
                NetEvent::Input(i) => inputs.push(i),
                other => self.on_net(other).await,
            }
        }
        self.handle_all(inputs).await;
    }

    /// Lines of standard input that arrived together: codes are decided one after the other and
    /// written as one; a command waits for the codes before it.
    async fn on_lines(&mut self, lines: Vec<Vec<u8>>) {
        let mut scans = Vec::new();
        for line in lines {
            if line.first() == Some(&b'!') {
                self.handle_all(std::mem::take(&mut scans)).await;
                self.on_command(&String::from_utf8_lossy(&line)).await;
                continue;
            }
            let id = self.request(ReplyTo::Stdout);
            scans.push(Input::Scan {
                id,
                code: line,
                gate: None,
                direction: None,
                manual: false,
                origin: None,
            });
        }
        self.handle_all(scans).await;
    }

    /// One input through the replica, its outputs carried out.
    async fn handle(&mut self, input: Input) {
        self.handle_all(vec![input]).await;
    }

    /// Carry out outputs: writes first (one store write, durable if any of them must be), then
    /// the rest in order; then report the writes done, and carry out what that releases.
    async fn carry_out(&mut self, mut outs: Vec<Output>) {
        loop {
            let mut written = None;
            let mut durable = false;
            let mut blobs = Vec::new();
            for o in &mut outs {
                if let Output::Persist {
                    id,
                    changes,
                    durable: d,
                } = o
                {
                    written = Some(*id);
                    durable |= *d;
                    blobs.append(changes);
                }
            }
            let rest: Vec<Output> = outs
                .into_iter()
                .filter(|o| !matches!(o, Output::Persist { .. }))
                .collect();
            let done = written.map(|upto| self.write(upto, &blobs, durable));
            for o in rest {
                self.carry_out_one(o).await;
            }
            match done {
                Some(input) => outs = self.replica.handle(crate::now_ms(), input),
                None => return,
            }
        }
    }

    fn write(&mut self, upto: u64, blobs: &[Vec<u8>], durable: bool) -> Input {
        let r = if durable {
            self.store.append(blobs)
        } else {
            self.store.append_relaxed(blobs)
        };
        match r {
            Ok(()) => Input::Persisted { upto },
            Err(e) => Input::PersistFailed {
                upto,
                message: e.to_string(),
            },
        }
    }

    async fn carry_out_one(&mut self, o: Output) {
        match o {
            Output::Reply { id, reply } => self.reply(id, reply),
            Output::Event(e) => self.event(&e),
            Output::SaveForks(proofs) => {
                if let Err(e) = self.store.save_forks(&proofs) {
                    tracing::warn!("keeping fork proofs: {e}");
                }
            }
            Output::SaveBulletin { label, bytes } => self.save_bulletin(&label, &bytes),
            Output::Persist { .. } => {}
            net => {
                let _ = self.net.send(net).await;
            }
        }
    }

    fn save_bulletin(&self, label: &str, bytes: &[u8]) {
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let d = self.opts.data.join(crate::package::BULLETINS_DIR);
            std::fs::create_dir_all(&d)?;
            let mut f = std::fs::File::create(d.join(format!("{label}.json")))?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::File::open(&d)?.sync_all()
        };
        if let Err(e) = write() {
            tracing::warn!("keeping bulletin {label}: {e}");
        }
    }

    fn event(&self, e: &gatemesh_crdt::protocol::Event) {
        if let gatemesh_crdt::protocol::Event::Conflicts { .. } = e {
            if self.stream.receiver_count() > 0 {
                let conflicts = self.replica.conflicts();
                let v = json!({"event": "conflicts", "conflicts": conflicts});
                let _ = self.stream.send(Arc::new(v));
            }
            return;
        }
        let (v, streamed) = events::event(e, self.replica.peers());
        emit(&v);
        if streamed {
            let _ = self.stream.send(Arc::new(v));
        }
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        if let Reply::Decision(d) = &reply {
            let verdict = if d.repeat { "repeat" } else { d.verdict_code() };
            self.metrics
                .scan(verdict, d.reason.code(), p.started.elapsed().as_secs_f64());
        }
        let answer = answer_of(reply);
        match p.to {
            ReplyTo::Api(tx) => {
                let _ = tx.send(answer);
            }
            ReplyTo::Stdout => {
                if let Err(e) = answer {
                    emit(&json!({"event": "error", "error": e.code, "message": e.message}));
                }
            }
        }
    }

    fn request(&mut self, to: ReplyTo) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(
            id,
            Pending {
                to,
                started: Instant::now(),
            },
        );
        id
    }

    async fn on_net(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Input(i) => self.handle(i).await,
            NetEvent::Started { peer_id } => {
                let device = self.replica.gate().ledger().local_device();
                emit(&json!({"event": "started", "peer_id": peer_id,
                    "device": device.map(|d| d.to_string()), "gate": self.opts.gate}));
            }
            NetEvent::Listening { addr } => emit(&json!({"event": "listening", "addr": addr})),
            NetEvent::RejectedPeer { who, reason } => {
                self.transport.rejected_peers += 1;
                emit(&json!({"event": "rejected_peer", "peer": who, "reason": reason}));
            }
            NetEvent::RejectedMessage { from, reason } => {
                emit(&json!({"event": "rejected_message", "peer": from, "reason": reason}))
            }
            NetEvent::StaleClosed => self.transport.stale_connections_closed += 1,
        }
    }

    async fn on_command(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("!status") => emit(&self.status()),
            Some("!bulletin") => {
                let path = line["!bulletin".len()..].trim();
                match std::fs::read(path) {
                    Ok(bytes) => {
                        self.handle(Input::Bulletin {
                            id: None,
                            from: None,
                            bytes,
                        })
                        .await
                    }
                    Err(e) => emit(&json!({"event": "error", "error": "bulletin_unreadable",
                        "message": format!("{path}: {e}")})),
                }
            }
            Some(cmd @ ("!block" | "!unblock")) => {
                let mut devices = Vec::new();
                for w in words {
                    match self.replica.peers().find(w) {
                        Some(d) => devices.push(d),
                        None => emit(&json!({"event": "error", "error": "unknown_peer",
                            "message": format!("no enrolled device {w}")})),
                    }
                }
                let block = cmd == "!block";
                self.handle(Input::Block { devices, block }).await;
            }
            _ => emit(&json!({"event": "error", "error": "unknown_command",
                "message": format!("unknown command {line:?}")})),
        }
    }

    /// Requests that arrived together: their scans are decided one after the other and written
    /// with one durable write (group commit); questions are answered after the scans before them.
    async fn on_api(&mut self, calls: Vec<ApiCall>) {
        let mut outs = Vec::new();
        for call in calls {
            match call {
                ApiCall::Query { query, reply } => {
                    self.carry_out(std::mem::take(&mut outs)).await;
                    let _ = reply.send(self.query(query));
                }
                ApiCall::Offline { ask, reply } => {
                    self.carry_out(std::mem::take(&mut outs)).await;
                    let _ = reply.send(Ok(self.offline(ask)));
                }
                call => {
                    let input = self.api_input(call);
                    outs.extend(self.replica.handle(crate::now_ms(), input));
                }
            }
        }
        self.carry_out(outs).await;
        self.renew_passes();
    }

    /// A request that goes through the replica, as its input (its answer awaited).
    fn api_input(&mut self, call: ApiCall) -> Input {
        match call {
            ApiCall::Scan {
                code,
                gate,
                direction,
                manual,
                origin,
                reply,
            } => Input::Scan {
                id: self.request(ReplyTo::Api(reply)),
                code: code.into_bytes(),
                gate,
                direction,
                manual,
                origin,
            },
            ApiCall::Reconcile { request, by, reply } => Input::Reconcile {
                id: self.request(ReplyTo::Api(reply)),
                request,
                by,
            },
            ApiCall::Annul {
                ticket_id,
                scan_id,
                reply,
                phone,
            } => Input::Annul {
                id: self.request(ReplyTo::Api(reply)),
                ticket_id,
                scan_id,
                phone,
            },
            ApiCall::PauseGate {
                gate,
                paused,
                reply,
            } => Input::PauseGate {
                id: self.request(ReplyTo::Api(reply)),
                gate,
                paused,
            },
            ApiCall::Bulletin { bytes, reply } => Input::Bulletin {
                id: Some(self.request(ReplyTo::Api(reply))),
                from: None,
                bytes,
            },
            ApiCall::Query { .. } | ApiCall::Offline { .. } => Input::Tick,
        }
    }

    /// A phone's pack (made once: the event file and the phone manifest do not change while
    /// the node runs) or snapshot (taken anew whenever records or bulletins changed since the
    /// last one, so a phone that fetches it after its scans reached the node finds them in it;
    /// else the last one, however many phones ask).
    fn offline(&mut self, ask: OfflineAsk) -> axum::body::Bytes {
        match ask {
            OfflineAsk::Pack => {
                if self.pack.is_none() {
                    self.pack = Some(self.pack_bytes());
                }
                self.pack.clone().unwrap_or_default()
            }
            OfflineAsk::Snapshot => {
                let gate = self.replica.gate();
                let held = (gate.ledger().index().len(), gate.bulletin_count());
                match &self.snapshot {
                    Some((at, bytes)) if *at == held => bytes.clone(),
                    _ => {
                        let bytes: axum::body::Bytes =
                            gatemesh_crdt::gate::snapshot::build(gate, crate::now_ms()).into();
                        self.snapshot = Some((held, bytes.clone()));
                        bytes
                    }
                }
            }
        }
    }

    /// Renew what the HTTP side checks phones' passes against when bulletins changed it.
    fn renew_passes(&mut self) {
        let held = self.replica.gate().bulletin_count();
        if held != self.bulletins_held {
            self.bulletins_held = held;
            let check = self.replica.gate().pass_check();
            *self.passes.write().unwrap_or_else(|e| e.into_inner()) = check;
            // A bulletin may have narrowed this device to a steward's.
            (self.supervisor).set_supervisor(self.replica.gate().is_supervisor());
        }
    }

    fn query(&self, q: Query) -> Result<Value, ApiError> {
        let now = crate::now_ms();
        let r = &self.replica;
        let to = |v: Result<Value, serde_json::Error>| v.unwrap_or_default();
        match q {
            Query::Ticket(id) => r
                .ticket(&id)
                .map(|t| to(serde_json::to_value(t)))
                .map_err(|e| ApiError::new(axum::http::StatusCode::NOT_FOUND, e.code, e.message)),
            Query::Search(q) => r
                .search(&q)
                .map(|t| json!({"tickets": t}))
                .map_err(|e| ApiError::bad_request(e.code, e.message)),
            Query::Pauses => Ok(json!({"paused": r.pauses(crate::now_ms())})),
            Query::Audit(max) => Ok(json!({"actions": r.audit(crate::now_ms(), max)})),
            Query::Conflicts => Ok(json!({"conflicts": r.conflicts()})),
            Query::Status => Ok(self.status()),
            Query::Stats => Ok(to(serde_json::to_value(r.stats(now)))),
            Query::Peers => Ok(json!({"peers": r.peers_seen()})),
            Query::Metrics => Ok(Value::String(self.metrics.render(r, self.transport))),
            Query::OfflineManifest(event_id) => r
                .offline_manifest(&event_id, now)
                .map(|m| to(serde_json::to_value(m)))
                .map_err(|e| ApiError::new(axum::http::StatusCode::NOT_FOUND, e.code, e.message)),
            Query::Journal { from, max } => Ok(to(serde_json::to_value(r.journal_page(from, max)))),
            Query::PairPhone(name) => {
                let (device_id, pass) = (r.gate().pair_phone(now, &name))
                    .map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
                emit(&json!({"event": "phone_paired", "device_id": device_id}));
                Ok(json!({"device_id": device_id, "pass": pass}))
            }
        }
    }

    /// The manifest file of the event package, if it has one and it reads (it verified when
    /// the device opened).
    fn phone_manifest_file(&self) -> Option<Vec<u8>> {
        use gatemesh_crdt::event::manifest::{phone_manifest, PhoneManifestBody};
        let path = self.opts.event.join(crate::package::PHONE_MANIFEST_FILE);
        let bytes = std::fs::read(&path).ok()?;
        let gate = self.replica.gate();
        let keys = gate.organizer_keys();
        let read = std::str::from_utf8(&bytes).ok().and_then(|t| {
            let signed = gatemesh_crdt::event::signed::Signed::from_json(t).ok()?;
            signed
                .open::<PhoneManifestBody>(|k| keys.get(k).copied())
                .ok()
        });
        let expected = gate.manifest().body.as_ref().map(phone_manifest);
        if read.is_none() || read != expected {
            emit(&json!({"event": "error", "error": "phone_manifest_stale",
                "message": format!("{} is not the organizer's or not this manifest's: phones look up no barcodes offline (tickets issue writes it)", path.display())}));
            return None;
        }
        Some(bytes)
    }

    /// A phone's pack: the replica's pack and the phone manifest as the organizer signed it.
    fn pack_bytes(&self) -> axum::body::Bytes {
        let pack = gatemesh_crdt::gate::offline::pack(self.replica.gate());
        let mut out = br#"{"pack":"#.to_vec();
        out.extend(serde_json::to_vec(&pack).unwrap_or_default());
        out.extend_from_slice(br#","manifest":"#);
        match self.phone_manifest_file() {
            Some(m) => out.extend_from_slice(&m),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        out.into()
    }

    fn status(&self) -> Value {
        let mut v = serde_json::to_value(self.replica.status()).unwrap_or_default();
        v["event"] = json!("status");
        v["device_role"] = self.supervisor.shown();
        v["sync_frames_refused"] = json!(self.replica.counters().sync_frames_refused);
        v["mesh"]["rejected_peers"] = json!(self.transport.rejected_peers);
        v["mesh"]["stale_connections_closed"] = json!(self.transport.stale_connections_closed);
        v
    }

    /// Fresh statistics on the live stream, when something changed and someone listens.
    fn stream_stats(&mut self) {
        if self.stream.receiver_count() == 0 || !self.replica.take_changed() {
            return;
        }
        let mut v = serde_json::to_value(self.replica.stats(crate::now_ms())).unwrap_or_default();
        v["event"] = json!("stats");
        let _ = self.stream.send(Arc::new(v));
    }

    /// The staff and admin tokens: as given, else the ones kept in the data directory's
    /// tokens file, else new ones written there (0600). The file's path when it is used.
    fn tokens(&self) -> anyhow::Result<(String, String, Option<PathBuf>)> {
        let (staff, admin) = (&self.opts.staff_token, &self.opts.admin_token);
        if let (Some(s), Some(a)) = (staff, admin) {
            return Ok((s.clone(), a.clone(), None));
        }
        let path = self.opts.data.join(TOKENS_FILE);
        let (kept_staff, kept_admin) = match kept_tokens(&path) {
            Some(kept) => kept,
            None => {
                let new = (new_token(), new_token());
                let body = json!({"staff_token": new.0, "admin_token": new.1});
                crate::package::write_secret_file(&path, body.to_string().as_bytes())?;
                new
            }
        };
        Ok((
            staff.clone().unwrap_or(kept_staff),
            admin.clone().unwrap_or(kept_admin),
            Some(path),
        ))
    }

    /// Serve the API and the pages on `--http` (plain) and `--https` (TLS), both if given,
    /// until `stop`; report the addresses and the tokens.
    async fn start_http(
        &self,
        calls: mpsc::Sender<ApiCall>,
        stop: tokio::sync::watch::Receiver<bool>,
        ready: Arc<AtomicBool>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let (staff_token, admin_token, tokens_file) = self.tokens()?;
        let tokens = (staff_token, admin_token);
        let plain = match self.opts.http {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding HTTP on {addr}"))?,
            ),
            None => None,
        };
        // Plain and TLS connections count in one budget.
        let budget = crate::conns::Budget::default();
        let plain = plain.map(|l| crate::conns::PlainListener::new(l, budget.clone()));
        let tls = self.tls_listener(budget).await?;
        let mut shown = json!({"event": "http"});
        use axum::serve::Listener;
        if let Some(l) = &plain {
            shown["addr"] = json!(l.local_addr()?.to_string());
        }
        if let Some(l) = &tls {
            shown["https"] = json!(l.local_addr()?.to_string());
        }
        if let Some(f) = tokens_file {
            shown["tokens_file"] = json!(f.display().to_string());
        }
        emit(&shown);
        let routes = crate::phone::routes().merge(crate::supervisor_api::routes());
        let app = crate::api::router(self.api_state(calls, tokens, ready), routes);
        let stopping = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        use crate::conns::ConnHandle;
        let plain = plain.map(|l| {
            let app = app
                .clone()
                .into_make_service_with_connect_info::<ConnHandle>();
            let serve = axum::serve(l, app).with_graceful_shutdown(stopping(stop.clone()));
            tokio::spawn(async move { serve.await })
        });
        let tls = tls.map(|l| {
            let app = app.into_make_service_with_connect_info::<ConnHandle>();
            let serve = axum::serve(l, app).with_graceful_shutdown(stopping(stop));
            tokio::spawn(async move { serve.await })
        });
        Ok(tokio::spawn(async move {
            for task in [plain, tls].into_iter().flatten() {
                if let Ok(Err(e)) = task.await {
                    tracing::error!("HTTP server: {e}");
                }
            }
        }))
    }

    /// What the HTTP handlers share: the queue to this loop, the tokens, the stream, the flags.
    fn api_state(
        &self,
        calls: mpsc::Sender<ApiCall>,
        (staff_token, admin_token): (String, String),
        ready: Arc<AtomicBool>,
    ) -> crate::api::ApiState {
        crate::api::ApiState {
            calls,
            staff_token,
            admin_token,
            stream: self.stream.clone(),
            streams_open: Default::default(),
            ready,
            synced: self.synced.clone(),
            ca_pem: std::fs::read(self.opts.event.join(crate::tls::CA_CERT_FILE))
                .ok()
                .map(Arc::new),
            openapi: crate::openapi::document,
            passes: self.passes.clone(),
            supervisor: self.supervisor.clone(),
        }
    }

    /// The `--https` listener, with the node's certificate (`--tls-cert`, `--tls-key`).
    async fn tls_listener(
        &self,
        budget: crate::conns::Budget,
    ) -> anyhow::Result<Option<crate::tls::TlsListener>> {
        let Some(addr) = self.opts.https else {
            return Ok(None);
        };
        let Some((cert, key)) = &self.opts.tls else {
            anyhow::bail!("--https needs a certificate (device enroll issues one, or --tls-cert)");
        };
        let config = crate::tls::server_config(cert, key)?;
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding HTTPS on {addr}"))?;
        Ok(Some(crate::tls::TlsListener::new(tcp, config, budget)?))
    }
}

/// A replica's answer as the API gives it.
/// `first` and what waits behind it in `rx`, at most `max` in all (taken without waiting).
fn waiting<T>(first: T, rx: &mut mpsc::Receiver<T>, max: usize) -> Vec<T> {
    let mut all = vec![first];
    while all.len() < max {
        match rx.try_recv() {
            Ok(x) => all.push(x),
            Err(_) => break,
        }
    }
    all
}

fn answer_of(reply: Reply) -> Result<Value, ApiError> {
    use axum::http::StatusCode;
    match reply {
        Reply::Decision(d) => Ok(events::decision(&d)),
        Reply::Reconciled(r) => Ok(serde_json::to_value(r).unwrap_or_default()),
        Reply::BulletinAccepted => Ok(json!({"accepted": true})),
        Reply::Annulled { scan_id } => Ok(json!({"annulled": scan_id})),
        Reply::GatePaused {
            gate,
            paused,
            until_ms,
        } => Ok(json!({"gate": gate, "paused": paused, "until_ms": until_ms})),
        Reply::Refused { code, message } if code == "supervisor_only" => {
            Err(ApiError::new(StatusCode::FORBIDDEN, code, message))
        }
        Reply::Refused { code, message } if code == "busy" => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            message,
        )),
        Reply::Refused { code, message }
            if matches!(code, "UNKNOWN_DEVICE" | "UNPAIRED" | "WRONG_DEVICE") =>
        {
            Err(ApiError::new(StatusCode::FORBIDDEN, code, message))
        }
        Reply::Refused { code, message } => Err(ApiError::bad_request(code, message)),
        Reply::Failed { code, message } => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            message,
        )),
    }
}

/// The file in the data directory that keeps the tokens a node generated (owner-only), so a
/// restart keeps the stewards' pages working and no token is printed where a service journal
/// keeps it.
pub const TOKENS_FILE: &str = "tokens.json";
/// Longest tokens file read.
const TOKENS_FILE_MAX: u64 = 4096;

/// Tokens generated earlier and kept in the tokens file, if it holds two well-formed ones.
fn kept_tokens(path: &std::path::Path) -> Option<(String, String)> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(TOKENS_FILE_MAX)
        .read_to_string(&mut text)
        .ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let token = |k: &str| {
        v[k].as_str()
            .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string)
    };
    Some((token("staff_token")?, token("admin_token")?))
}

fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// SIGTERM (what service managers and `kill` send), besides Ctrl-C.
fn terminate_signal() -> anyhow::Result<mpsc::Receiver<()>> {
    let (tx, rx) = mpsc::channel(1);
    let mut sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        if sig.recv().await.is_some() {
            let _ = tx.send(()).await;
        }
    });
    Ok(rx)
}
