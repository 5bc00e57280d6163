//! `gatemesh node run`: one device on the mesh. A single task owns the swarm, the gate logic
//! and the store, so a gossiped change is checked against the ledger, applied and made durable
//! before it is accepted and forwarded, and a local admit is durable before it is answered and
//! published.
//!
//! The steward's scanner types codes on standard input (one per line); decisions and mesh events
//! go to standard output as JSON lines. Lines starting with `!` are operator commands:
//! `!status`; `!block PEER...` / `!unblock PEER...` (peer ids or device names) cut this node off
//! from those peers and back, as a venue operator isolating a device, or a drill of a split.

use crate::cli::{open_device, OpenDevice};
use crate::device::DeviceCertificate;
use crate::gate::ScanRequest;
use anyhow::Context;
use futures::StreamExt;
use gatemesh_crdt::{Admitted, Direction, ForkProof, Single, SyncMessage, Tip};
use gatemesh_transport::discovery::{Discovered, Discovery};
use gatemesh_transport::libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use gatemesh_transport::libp2p::swarm::{DialError, ListenError, SwarmEvent};
use gatemesh_transport::libp2p::{
    gossipsub, multiaddr::Protocol, request_response, Multiaddr, PeerId, Swarm,
};
use gatemesh_transport::{
    behaviour, build_swarm, topics, MeshBehaviour, MeshBehaviourEvent, MeshConfig,
};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// How often every connected peer is offered a sync round (repair of anything gossip missed).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(3);
/// Sync rounds of our own in flight at once. After a split every peer of the other side holds
/// the same missing records; asking one or two at a time means the later rounds find our heads
/// already current and carry almost nothing.
pub const SYNC_SESSIONS_MAX: usize = 2;
/// How often known peers (static `--peer` or discovered) are redialed while not connected.
pub const REDIAL_INTERVAL: Duration = Duration::from_millis(500);
/// The peer with the smaller id dials; the other dials too if no connection came within this.
pub const DIAL_FALLBACK: Duration = Duration::from_secs(1);
/// Most discovered peers remembered.
pub const KNOWN_PEERS_MAX: usize = 1024;
/// Lines from standard input buffered before the reader waits.
pub const INPUT_QUEUE_MAX: usize = 1024;
/// First byte of a `/gatemesh/sync/2` request: what follows.
const KIND_SYNC: u8 = 0;
const KIND_BULLETIN: u8 = 1;
/// Longest input line (a code is at most 2,048 bytes).
pub const INPUT_LINE_BYTES_MAX: usize = crate::credential::CODE_BYTES_MAX + 2;
/// How often the live stream gets fresh statistics (when anything changed).
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);

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
    /// Tokens for the API; generated and printed when not given.
    pub staff_token: Option<String>,
    pub admin_token: Option<String>,
    /// Read codes and commands on standard input (and stop when it closes).
    pub read_stdin: bool,
    /// Keep a journal of every record in arrival order for `ApiCall::Journal` (the bridge).
    pub journal: bool,
}

/// Counters a node reports in `!status` (and later `/metrics`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MeshCounters {
    pub gossip_accepted: u64,
    pub gossip_rejected: u64,
    pub gossip_bytes_in: u64,
    pub gossip_bytes_out: u64,
    pub sync_bytes_in: u64,
    pub sync_bytes_out: u64,
    pub sync_failures: u64,
    pub rejected_peers: u64,
    pub rejected_messages: u64,
    pub stale_connections_closed: u64,
    pub peers_penalized: u64,
}

struct Node {
    dev: OpenDevice,
    swarm: Swarm<MeshBehaviour>,
    opts: NodeOptions,
    ledger_topic: gossipsub::IdentTopic,
    control_topic: gossipsub::IdentTopic,
    names: HashMap<PeerId, String>,
    /// Enrolled devices' peer ids, by device id.
    device_peers: HashMap<gatemesh_crdt::DeviceId, PeerId>,
    /// Outstanding requests that carry a bulletin (their answers are not sync messages).
    bulletin_requests: HashMap<request_response::OutboundRequestId, PeerId>,
    /// Peers a bulletin hand-over failed to (a connection closing under it): retried on the
    /// sync tick.
    bulletin_retry: HashSet<PeerId>,
    /// Open connections per peer, oldest first.
    connections: HashMap<PeerId, Vec<gatemesh_transport::libp2p::swarm::ConnectionId>>,
    /// Connected peers and their tips as their last sync message gave them.
    sync: HashMap<PeerId, Option<Vec<Tip>>>,
    sync_in_flight: HashSet<PeerId>,
    /// Discovered peers: addresses and when first seen.
    known: HashMap<PeerId, (Vec<Multiaddr>, std::time::Instant)>,
    /// Sync frames the codec refused (oversized, cut short).
    sync_frames_refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
    local_peer: PeerId,
    counters: MeshCounters,
    /// Live events for `GET /api/stream`.
    stream: tokio::sync::broadcast::Sender<std::sync::Arc<Value>>,
    metrics: crate::stats::Metrics,
    /// Every enrolled peer seen: online or not, and when last seen (ms).
    peer_seen: HashMap<PeerId, (bool, u64)>,
    /// Records changed since the last stats event.
    stats_dirty: bool,
    /// Double entries at the last conflicts event.
    doubles_reported: usize,
    /// Every record in the order this node got it (records at start, then received ones), when
    /// a reader such as the bridge asked for it.
    journal: Option<Vec<gatemesh_crdt::RecordRef>>,
}

/// Run a node until standard input closes (when it reads it), SIGTERM or Ctrl-C.
pub async fn run(opts: NodeOptions) -> anyhow::Result<()> {
    let (api_tx, api_rx) = tokio::sync::mpsc::channel(crate::api::API_QUEUE_MAX);
    run_with(opts, api_tx, api_rx).await
}

/// [`run`], with the queue of requests to the node's loop given by the caller (who may send
/// requests of its own on `api_tx`, as the bridge does).
pub async fn run_with(
    opts: NodeOptions,
    api_tx: tokio::sync::mpsc::Sender<crate::api::ApiCall>,
    mut api_rx: tokio::sync::mpsc::Receiver<crate::api::ApiCall>,
) -> anyhow::Result<()> {
    let dev = open_device(
        &opts.event,
        Some(&opts.device),
        &opts.data,
        opts.hmac_secret_file.as_deref(),
    )?;
    let identity = dev.identity.clone().context("node run needs a device")?;
    let keypair = behaviour::keypair_of(identity.key.to_bytes())?;
    let local_peer = keypair.public().to_peer_id();
    let (allowed, names) = roster_peers(&dev.certificates)?;
    let sync_codec = gatemesh_transport::codec::SyncCodec::default();
    let sync_frames_refused = sync_codec.refused.clone();
    let mut swarm = build_swarm(MeshConfig {
        keypair,
        allowed,
        sync_codec,
    })?;
    let event_id = dev.gate.config().event_id.clone();
    let ledger_topic = gossipsub::IdentTopic::new(topics::ledger(&event_id));
    let control_topic = gossipsub::IdentTopic::new(topics::control(&event_id));
    swarm.behaviour_mut().gossip.subscribe(&ledger_topic)?;
    swarm.behaviour_mut().gossip.subscribe(&control_topic)?;
    let listen = if opts.listen.is_empty() {
        vec!["/ip4/0.0.0.0/udp/0/quic-v1".parse()?]
    } else {
        opts.listen.clone()
    };
    for addr in listen {
        swarm.listen_on(addr)?;
    }
    let mut node = Node {
        dev,
        swarm,
        opts,
        ledger_topic,
        control_topic,
        device_peers: HashMap::new(),
        bulletin_requests: HashMap::new(),
        bulletin_retry: HashSet::new(),
        names,
        connections: HashMap::new(),
        sync: HashMap::new(),
        sync_in_flight: HashSet::new(),
        known: HashMap::new(),
        sync_frames_refused,
        local_peer,
        counters: MeshCounters::default(),
        stream: tokio::sync::broadcast::channel(crate::api::STREAM_BUFFER_MAX).0,
        metrics: crate::stats::Metrics::default(),
        peer_seen: HashMap::new(),
        stats_dirty: true,
        doubles_reported: 0,
        journal: None,
    };
    if node.opts.journal {
        let mut all = Vec::new();
        node.dev
            .gate
            .ledger()
            .index()
            .for_each_record(|r| all.push(r.clone()));
        node.journal = Some(all);
    }
    node.doubles_reported = node.dev.gate.ledger().index().conflict_count();
    node.device_peers = node
        .dev
        .certificates
        .iter()
        .filter_map(|c| {
            Some((
                gatemesh_crdt::DeviceId::parse(&c.device_id)?,
                behaviour::peer_id_of(c.verifying_key().ok()?.as_bytes()).ok()?,
            ))
        })
        .collect();
    node.load_bulletins();
    for p in node.opts.peers.clone() {
        let _ = node.swarm.dial(p);
    }
    let (_no_input_tx, no_input) = tokio::sync::mpsc::channel(1);
    let mut input = if node.opts.read_stdin {
        spawn_input_reader()
    } else {
        no_input
    };
    let (http_stop, http_stopped) = tokio::sync::watch::channel(false);
    let mut http_task = None;
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(addr) = node.opts.http {
        let stream = node.stream.clone();
        let task = start_http(
            addr,
            &node.opts,
            api_tx,
            stream,
            http_stopped,
            ready.clone(),
        );
        http_task = Some(task.await?);
    }
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
    let mut terminate = terminate_signal()?;
    let mut discovery: Option<Discovery> = None;
    let (_keep_tx, idle_rx) = tokio::sync::mpsc::channel::<Discovered>(1);
    let mut discovered = idle_rx;
    let mut sync_tick = tokio::time::interval(SYNC_INTERVAL);
    let mut redial_tick = tokio::time::interval(REDIAL_INTERVAL);
    emit(
        json!({"event": "started", "peer_id": local_peer.to_string(), "device": identity.id().to_string(), "gate": node.opts.gate}),
    );
    loop {
        tokio::select! {
            ev = node.swarm.select_next_some() => {
                if let SwarmEvent::NewListenAddr { address, .. } = &ev {
                    if discovery.is_none() && node.opts.mdns {
                        if let Some(port) = quic_port(address) {
                            let (d, rx) = Discovery::start(&event_id, &local_peer.to_string(), port)?;
                            discovery = Some(d);
                            discovered = rx;
                        }
                    }
                }
                node.on_swarm_event(ev);
            }
            Some(found) = discovered.recv() => node.on_discovered(found),
            line = input.recv() => match line {
                Some(line) => node.on_input(&line)?,
                None => break,
            },
            Some(call) = api_rx.recv() => {
                let mut calls = vec![call];
                while calls.len() < crate::api::API_BATCH_MAX {
                    match api_rx.try_recv() {
                        Ok(c) => calls.push(c),
                        Err(_) => break,
                    }
                }
                node.on_api_batch(calls);
            }
            _ = sync_tick.tick() => node.sync_all(),
            _ = redial_tick.tick() => node.redial(),
            _ = stats_tick.tick() => node.stream_stats(),
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    // Graceful stop: refuse new HTTP connections, answer what was already asked (each answer
    // durable before it is sent), then flush the store.
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = http_stop.send(true);
    api_rx.close();
    while let Some(call) = api_rx.recv().await {
        node.on_api(call);
    }
    if let Some(task) = http_task {
        let _ = tokio::time::timeout(HTTP_DRAIN_MAX, task).await;
    }
    if let Some(d) = discovery {
        d.stop();
    }
    node.shutdown()
}

/// Longest a stopping node waits for HTTP requests in progress.
pub const HTTP_DRAIN_MAX: Duration = Duration::from_secs(5);

/// SIGTERM (what service managers and `kill` send), besides Ctrl-C.
fn terminate_signal() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        let mut sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            if sig.recv().await.is_some() {
                let _ = tx.send(()).await;
            }
        });
    }
    #[cfg(not(unix))]
    std::mem::forget(tx);
    Ok(rx)
}

/// A scan decided in memory, waiting for its durable write.
struct Pending {
    outcome: crate::gate::ScanOutcome,
    started: std::time::Instant,
}

/// A gate error as the HTTP API reports it.
fn api_error(e: crate::gate::GateError) -> crate::api::ApiError {
    use axum::http::StatusCode;
    match e {
        crate::gate::GateError::UnknownGate(_) => {
            crate::api::ApiError::bad_request(e.code(), e.to_string())
        }
        _ => crate::api::ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string()),
    }
}

/// Bind the HTTP API and serve it on the runtime until `stop`; report the address and the
/// tokens.
async fn start_http(
    addr: std::net::SocketAddr,
    opts: &NodeOptions,
    calls: tokio::sync::mpsc::Sender<crate::api::ApiCall>,
    stream: tokio::sync::broadcast::Sender<std::sync::Arc<Value>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let token = || {
        use rand::RngCore;
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        hex::encode(b)
    };
    let staff_token = opts.staff_token.clone().unwrap_or_else(token);
    let admin_token = opts.admin_token.clone().unwrap_or_else(token);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding HTTP on {addr}"))?;
    let bound = listener.local_addr()?;
    let mut shown = json!({"event": "http", "addr": bound.to_string()});
    if opts.staff_token.is_none() {
        shown["staff_token"] = json!(staff_token);
    }
    if opts.admin_token.is_none() {
        shown["admin_token"] = json!(admin_token);
    }
    emit(shown);
    let app = crate::api::router(crate::api::ApiState {
        calls,
        staff_token,
        admin_token,
        stream,
        streams_open: Default::default(),
        ready,
    });
    Ok(tokio::spawn(async move {
        let stopping = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopping)
            .await
        {
            tracing::error!("HTTP server: {e}");
        }
    }))
}

/// The peer ids of every enrolled device (scanners and observers), with their names.
fn roster_peers(
    certs: &[DeviceCertificate],
) -> anyhow::Result<(Vec<PeerId>, HashMap<PeerId, String>)> {
    let mut allowed = Vec::new();
    let mut names = HashMap::new();
    for c in certs {
        let peer = behaviour::peer_id_of(c.verifying_key()?.as_bytes())?;
        allowed.push(peer);
        names.insert(peer, c.name.clone());
    }
    Ok((allowed, names))
}

fn quic_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Udp(port) => Some(port),
        _ => None,
    })
}

/// The ledger's tag for a peer (bounds on changes held per peer).
fn peer_tag(p: &PeerId) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(p.to_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Microseconds since the Unix epoch (event timestamps, for propagation measurements).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Print one JSON line on standard output.
fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Standard input, line by line, on a thread (stdin reads block), into a bounded queue.
fn spawn_input_reader() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    use std::io::{BufRead, Read};
    let (tx, rx) = tokio::sync::mpsc::channel(INPUT_QUEUE_MAX);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match (&mut stdin)
                .take(INPUT_LINE_BYTES_MAX as u64 + 1)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.last() != Some(&b'\n') {
                let mut rest = Vec::new();
                let _ = stdin.read_until(b'\n', &mut rest);
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if !line.is_empty() && tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Node {
    fn on_input(&mut self, line: &[u8]) -> anyhow::Result<()> {
        if line.first() == Some(&b'!') {
            self.on_command(&String::from_utf8_lossy(line));
            return Ok(());
        }
        let gate = self.opts.gate.clone();
        self.scan_code(line, &gate, self.opts.direction)?;
        Ok(())
    }

    /// Decide one scan, make it durable, report it, publish it. Returns the decision.
    fn scan_code(
        &mut self,
        code: &[u8],
        gate: &str,
        direction: Option<Direction>,
    ) -> Result<Value, crate::gate::GateError> {
        let pending = self.decide(code, gate, direction)?;
        let mut done = self.commit(vec![pending])?;
        Ok(done.pop().unwrap_or_default())
    }

    /// Decide one scan in memory (the ledger holds it); [`Self::commit`] makes it durable.
    fn decide(
        &mut self,
        code: &[u8],
        gate: &str,
        direction: Option<Direction>,
    ) -> Result<Pending, crate::gate::GateError> {
        let started = std::time::Instant::now();
        let outcome = self.dev.gate.scan(
            crate::now_ms(),
            ScanRequest {
                code,
                gate,
                direction,
            },
        )?;
        Ok(Pending { outcome, started })
    }

    /// Make decided scans durable with one write (group commit: one fdatasync for every scan
    /// that arrived together), then report and publish them. Returns each decision, in order.
    /// A store that cannot write must not show green: then every one of them is an error.
    fn commit(&mut self, batch: Vec<Pending>) -> Result<Vec<Value>, crate::gate::GateError> {
        let changes: Vec<Vec<u8>> = batch
            .iter()
            .filter_map(|p| p.outcome.change.clone())
            .collect();
        if !changes.is_empty() {
            self.dev
                .store
                .append(&changes)
                .map_err(|e| crate::gate::GateError::Store(e.to_string()))?;
        }
        let mut decisions = Vec::with_capacity(batch.len());
        for Pending { outcome, started } in batch {
            let d = &outcome.decision;
            let verdict = if d.repeat { "repeat" } else { d.verdict_code() };
            self.metrics
                .scan(verdict, d.reason.code(), started.elapsed().as_secs_f64());
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["words"] = json!(if d.repeat {
                "Already let in by this scanner just now"
            } else {
                d.reason.words()
            });
            decisions.push(v.clone());
            v["event"] = json!("scan");
            v["at_us"] = json!(now_us());
            self.tell(v);
            if let Some(change) = outcome.change {
                self.publish(change);
            }
        }
        self.records_changed();
        Ok(decisions)
    }

    /// Requests that arrived together: scans are decided one after the other and committed
    /// with one durable write; anything else is answered in its place in the order.
    fn on_api_batch(&mut self, calls: Vec<crate::api::ApiCall>) {
        use crate::api::ApiCall;
        let mut pending = Vec::new();
        let mut replies = Vec::new();
        for call in calls {
            match call {
                ApiCall::Scan {
                    code,
                    gate,
                    direction,
                    reply,
                } => {
                    let gate = gate.unwrap_or_else(|| self.opts.gate.clone());
                    let direction = match direction.as_deref() {
                        Some("in") => Some(Direction::In),
                        Some("out") => Some(Direction::Out),
                        _ => self.opts.direction,
                    };
                    match self.decide(code.as_bytes(), &gate, direction) {
                        Ok(p) => {
                            pending.push(p);
                            replies.push(reply);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(api_error(e)));
                        }
                    }
                }
                other => {
                    self.commit_replies(std::mem::take(&mut pending), std::mem::take(&mut replies));
                    self.on_api(other);
                }
            }
        }
        self.commit_replies(pending, replies);
    }

    fn commit_replies(
        &mut self,
        pending: Vec<Pending>,
        replies: Vec<tokio::sync::oneshot::Sender<Result<Value, crate::api::ApiError>>>,
    ) {
        if pending.is_empty() {
            return;
        }
        match self.commit(pending) {
            Ok(decisions) => {
                for (reply, d) in replies.into_iter().zip(decisions) {
                    let _ = reply.send(Ok(d));
                }
            }
            Err(e) => {
                let e = api_error(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Records `from..from + max` of the journal, the position after them, and the current
    /// double entries of their tickets.
    fn journal_page(&self, from: usize, max: usize) -> Value {
        let Some(journal) = &self.journal else {
            return json!({"records": [], "next": from, "conflicts": []});
        };
        let page = journal
            .get(from..journal.len().min(from + max))
            .unwrap_or(&[]);
        let index = self.dev.gate.ledger().index();
        let tickets: std::collections::BTreeSet<&str> =
            page.iter().map(|r| r.ticket_id.as_str()).collect();
        let conflicts: Vec<Value> = tickets
            .iter()
            .filter_map(|t| {
                let replay = index.replay(t, &index.ticket_tier(t));
                (!replay.double_entries.is_empty()).then(|| {
                    json!({"ticket_id": t, "entries": replay.entries.iter().map(|r| &r.scan_id).collect::<Vec<_>>(),
                           "double_entries": replay.double_entries.iter().map(|r| &r.scan_id).collect::<Vec<_>>()})
                })
            })
            .collect();
        json!({
            "records": page,
            "next": from + page.len(),
            "conflicts": conflicts,
            "rejected": self.dev.gate.ledger().stats().rejected(),
        })
    }

    /// Print an event and pass it to the live stream.
    fn tell(&self, v: Value) {
        let v = std::sync::Arc::new(v);
        emit((*v).clone());
        let _ = self.stream.send(v); // no listener: nothing to do
    }

    fn rejected(&mut self, v: Value) {
        self.counters.rejected_messages += 1;
        emit(v);
    }

    /// Records were added: statistics are stale; a new double entry is streamed at once.
    fn records_changed(&mut self) {
        self.stats_dirty = true;
        let doubles = self.dev.gate.ledger().index().conflict_count();
        if doubles != self.doubles_reported {
            self.doubles_reported = doubles;
            if self.stream.receiver_count() > 0 {
                let conflicts = self.dev.gate.ledger().index().conflicts();
                let _ = self.stream.send(std::sync::Arc::new(
                    json!({"event": "conflicts", "conflicts": conflicts}),
                ));
            }
        }
    }

    /// Fresh statistics on the live stream, when something changed and someone listens.
    fn stream_stats(&mut self) {
        if !self.stats_dirty || self.stream.receiver_count() == 0 {
            return;
        }
        self.stats_dirty = false;
        let mut v = self.stats_json();
        v["event"] = json!("stats");
        let _ = self.stream.send(std::sync::Arc::new(v));
    }

    fn peers_seen(&self) -> Vec<crate::stats::PeerSeen> {
        let mut list: Vec<_> = self
            .peer_seen
            .iter()
            .map(|(p, (online, at))| crate::stats::PeerSeen {
                name: self.peer_name(p),
                peer_id: p.to_string(),
                online: *online,
                last_seen_ms: *at,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn stats_json(&self) -> Value {
        let names: HashMap<String, String> = self
            .dev
            .certificates
            .iter()
            .map(|c| (c.device_id.clone(), c.name.clone()))
            .collect();
        let peers = self.peers_seen();
        let gate = &self.dev.gate;
        crate::stats::compute(
            gate.ledger().index(),
            &crate::stats::StatsInput {
                event_id: &gate.config().event_id,
                total_guests: gate.manifest().body.as_ref().map(|b| b.tickets.len()),
                now_ms: crate::now_ms(),
                device_names: &names,
                peers: &peers,
            },
        )
    }

    fn metrics_text(&self) -> String {
        let c = &self.counters;
        let ledger = self.dev.gate.ledger();
        let refused = self
            .sync_frames_refused
            .load(std::sync::atomic::Ordering::Relaxed);
        self.metrics.render(&[
            (
                "gatemesh_peers_connected",
                "gauge",
                "Enrolled peers connected now.",
                self.connections.len() as u64,
            ),
            (
                "gatemesh_ledger_records",
                "gauge",
                "Scan records in this node's ledger.",
                ledger.index().len(),
            ),
            (
                "gatemesh_conflicts",
                "gauge",
                "Double entries in the ledger.",
                ledger.index().conflict_count() as u64,
            ),
            (
                "gatemesh_gossip_received_bytes_total",
                "counter",
                "Gossip payload bytes received.",
                c.gossip_bytes_in,
            ),
            (
                "gatemesh_gossip_sent_bytes_total",
                "counter",
                "Gossip payload bytes published.",
                c.gossip_bytes_out,
            ),
            (
                "gatemesh_sync_received_bytes_total",
                "counter",
                "Sync message bytes received.",
                c.sync_bytes_in,
            ),
            (
                "gatemesh_sync_sent_bytes_total",
                "counter",
                "Sync message bytes sent.",
                c.sync_bytes_out,
            ),
            (
                "gatemesh_sync_failures_total",
                "counter",
                "Sync rounds that failed.",
                c.sync_failures,
            ),
            (
                "gatemesh_rejected_peers_total",
                "counter",
                "Connections refused (not enrolled, revoked, over limits).",
                c.rejected_peers,
            ),
            (
                "gatemesh_rejected_messages_total",
                "counter",
                "Gossip, sync and bulletin messages refused.",
                c.rejected_messages,
            ),
            (
                "gatemesh_rejected_records_total",
                "counter",
                "Records refused (bad signature, unknown or revoked device).",
                ledger.stats().rejected(),
            ),
            (
                "gatemesh_sync_frames_refused_total",
                "counter",
                "Sync frames refused by the codec (oversized, cut short).",
                refused,
            ),
        ])
    }

    /// Offline scans posted by a non-mesh device: each into the ledger (durable) and the mesh.
    fn reconcile(
        &mut self,
        request: crate::offline::ReconcileRequest,
        trusted: bool,
    ) -> Result<Value, crate::api::ApiError> {
        let listed = self
            .dev
            .gate
            .config()
            .offline_devices
            .contains(&request.device_id);
        if !trusted && !listed {
            return Err(crate::api::ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "UNKNOWN_DEVICE",
                format!(
                    "device {} is not one of the event's offline devices (gatemesh device enroll --role offline); the admin token may reconcile it",
                    request.device_id
                ),
            ));
        }
        let now = crate::now_ms();
        let mut results = Vec::with_capacity(request.scans.len());
        let mut changes = Vec::new();
        for scan in &request.scans {
            let r = crate::offline::reconcile_one(
                &mut self.dev.gate,
                now,
                &request.device_id,
                scan,
                &self.opts.gate,
            );
            changes.extend(r.change);
            results.push(r.result);
        }
        if !changes.is_empty() {
            self.dev.store.append(&changes).map_err(|e| {
                crate::api::ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    e.to_string(),
                )
            })?;
            self.metrics.reconciled += changes.len() as u64;
            for change in changes {
                self.publish(change);
            }
            self.records_changed();
        }
        let response = crate::offline::response(results);
        emit(
            json!({"event": "reconciled", "device": request.device_id, "reconciled": response["reconciled"], "failed": response["failed"]}),
        );
        Ok(response)
    }

    /// A request from the HTTP API.
    fn on_api(&mut self, call: crate::api::ApiCall) {
        use crate::api::{ApiCall, ApiError};
        use axum::http::StatusCode;
        match call {
            call @ ApiCall::Scan { .. } => self.on_api_batch(vec![call]),
            ApiCall::Ticket { id, reply } => {
                let index = self.dev.gate.ledger().index();
                let records = index.records(&id);
                let r = if records.is_empty() {
                    Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "unknown_ticket",
                        format!("no scan of ticket {id} in this ledger"),
                    ))
                } else {
                    let tier = records[0].tier.clone();
                    let replay = index.replay(&id, &tier);
                    Ok(
                        json!({"ticket": id, "tier": tier, "records": records, "entries": replay.entries, "double_entries": replay.double_entries, "inside": replay.inside, "entries_left": replay.credits}),
                    )
                };
                let _ = reply.send(r);
            }
            ApiCall::Conflicts { reply } => {
                let _ = reply.send(Ok(
                    json!({"conflicts": self.dev.gate.ledger().index().conflicts()}),
                ));
            }
            ApiCall::Status { reply } => {
                let _ = reply.send(Ok(self.status()));
            }
            ApiCall::Stats { reply } => {
                let _ = reply.send(Ok(self.stats_json()));
            }
            ApiCall::Peers { reply } => {
                let _ = reply.send(Ok(json!({"peers": self.peers_seen()})));
            }
            ApiCall::Metrics { reply } => {
                let _ = reply.send(Ok(Value::String(self.metrics_text())));
            }
            ApiCall::OfflineManifest { event_id, reply } => {
                let r = if event_id != self.dev.gate.config().event_id {
                    Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "EVENT_NOT_FOUND",
                        format!("this node serves event {}", self.dev.gate.config().event_id),
                    ))
                } else {
                    crate::offline::manifest(&self.dev.gate, crate::now_ms()).ok_or_else(|| {
                        ApiError::new(
                            StatusCode::NOT_FOUND,
                            "NO_MANIFEST",
                            "the event package has no ticket manifest",
                        )
                    })
                };
                let _ = reply.send(r);
            }
            ApiCall::Journal { from, max, reply } => {
                let _ = reply.send(Ok(self.journal_page(from, max)));
            }
            ApiCall::Reconcile {
                request,
                trusted,
                reply,
            } => {
                let _ = reply.send(self.reconcile(request, trusted));
            }
            ApiCall::Bulletin { bytes, reply } => {
                let r = if self.take_bulletin(&bytes, None) {
                    Ok(json!({"accepted": true}))
                } else {
                    Err(ApiError::bad_request(
                        "bulletin_rejected",
                        "the bulletin does not verify for this event (see the node's events)",
                    ))
                };
                let _ = reply.send(r);
            }
        }
    }

    fn on_command(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("!status") => emit(self.status()),
            Some("!bulletin") => {
                let path = line["!bulletin".len()..].trim();
                match std::fs::read(path) {
                    Ok(bytes) => {
                        self.take_bulletin(&bytes, None);
                    }
                    Err(e) => emit(
                        json!({"event": "error", "error": "bulletin_unreadable", "message": format!("{path}: {e}")}),
                    ),
                }
            }
            Some(cmd @ ("!block" | "!unblock")) => {
                let mut done = Vec::new();
                for w in words {
                    let Some(peer) = self
                        .names
                        .iter()
                        .find(|(p, n)| n.as_str() == w || p.to_string() == w)
                        .map(|(p, _)| *p)
                    else {
                        emit(
                            json!({"event": "error", "error": "unknown_peer", "message": format!("no enrolled device {w}")}),
                        );
                        continue;
                    };
                    let allow = &mut self.swarm.behaviour_mut().allow;
                    if cmd == "!block" {
                        allow.disallow_peer(peer);
                    } else {
                        allow.allow_peer(peer);
                    }
                    done.push(self.peer_name(&peer));
                }
                emit(json!({"event": cmd.trim_start_matches('!'), "peers": done}));
            }
            _ => emit(
                json!({"event": "error", "error": "unknown_command", "message": format!("unknown command {line:?}")}),
            ),
        }
    }

    /// Bulletins from the event package and those received earlier (data directory).
    fn load_bulletins(&mut self) {
        let event_id = self.dev.gate.config().event_id.clone();
        let Ok(keys) = self.dev.gate.config().organizer_verifying_keys() else {
            return;
        };
        for dir in [self.opts.event.clone(), self.opts.data.clone()] {
            let (found, bad) = crate::bulletin::load_dir(&dir, &event_id, &keys);
            for b in bad {
                emit(json!({"event": "error", "error": "bulletin_invalid", "message": b}));
            }
            for b in found {
                self.apply_bulletin(&b);
            }
        }
    }

    /// A bulletin from the operator (`from` None) or a peer: verify, apply if new, keep it,
    /// spread it. Returns whether it verified.
    fn take_bulletin(&mut self, bytes: &[u8], from: Option<PeerId>) -> bool {
        let config = self.dev.gate.config();
        let verified = config
            .organizer_verifying_keys()
            .map_err(|e| e.to_string())
            .and_then(|k| {
                crate::bulletin::Bulletin::from_bytes(bytes, &config.event_id, &k)
                    .map_err(|e| format!("{}: {e}", e.code()))
            });
        let b = match verified {
            Ok(b) => b,
            Err(reason) => {
                self.rejected(json!({"event": "rejected_message", "peer": from.map(|p| self.peer_name(&p)), "reason": reason}),
                );
                return false;
            }
        };
        if !self.apply_bulletin(&b) {
            return true; // known already
        }
        if let Err(e) = crate::bulletin::save(&self.opts.data, &b) {
            tracing::warn!("keeping bulletin {}: {e}", b.version());
        }
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(self.control_topic.clone(), b.bytes().to_vec())
        {
            tracing::debug!("bulletin publish: {e}");
        }
        true
    }

    /// Apply a verified bulletin to the gate and the mesh. Returns whether it was new.
    fn apply_bulletin(&mut self, b: &crate::bulletin::Bulletin) -> bool {
        let effect = match self.dev.gate.apply_bulletin(b) {
            Ok(Some(e)) => e,
            Ok(None) => return false,
            Err(e) => {
                emit(json!({"event": "error", "error": e.code(), "message": e.to_string()}));
                return false;
            }
        };
        for (id, _) in &effect.revoked_devices {
            if let Some(peer) = self.device_peers.get(id).copied() {
                self.swarm.behaviour_mut().allow.disallow_peer(peer);
            }
        }
        for (cert, _) in &effect.added_devices {
            let Ok(key) = cert.verifying_key() else {
                continue;
            };
            let Ok(peer) = behaviour::peer_id_of(key.as_bytes()) else {
                continue;
            };
            self.names.insert(peer, cert.name.clone());
            if let Some(id) = gatemesh_crdt::DeviceId::parse(&cert.device_id) {
                self.device_peers.insert(id, peer);
            }
            self.swarm.behaviour_mut().allow.allow_peer(peer);
        }
        emit(json!({
            "event": "bulletin",
            "version": b.version(),
            "revoked_tickets": effect.revoked_tickets,
            "revoked_devices": effect.revoked_devices.iter().map(|(d, dropped)| json!({"device": d.to_string(), "records_dropped": dropped})).collect::<Vec<_>>(),
            "added_devices": effect.added_devices.iter().map(|(c, n)| json!({"device": c.name, "records_indexed": n})).collect::<Vec<_>>(),
        }));
        true
    }

    fn publish(&mut self, change: Vec<u8>) {
        let len = change.len() as u64;
        match self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(self.ledger_topic.clone(), change)
        {
            Ok(_) => self.counters.gossip_bytes_out += len,
            // No peer yet: the periodic sync carries it when one connects.
            Err(e) => tracing::debug!("publish: {e}"),
        }
    }

    fn status(&self) -> Value {
        let ledger = self.dev.gate.ledger();
        let conflicts: Vec<Value> = ledger
            .index()
            .conflicts()
            .iter()
            .map(|c| json!({"ticket": c.ticket_id, "double_entries": c.double_entries.iter().map(|r| &r.scan_id).collect::<Vec<_>>()}))
            .collect();
        let mut peers: Vec<String> = self.connections.keys().map(|p| self.peer_name(p)).collect();
        peers.sort();
        let config = self.dev.gate.config();
        json!({
            "event": "status",
            "event_id": config.event_id,
            "event_name": config.name,
            "device": self.dev.identity.as_ref().map(|i| i.id().to_string()),
            "gate": self.opts.gate,
            "gates": config.gates,
            "heads": ledger.heads().iter().map(hex::encode).collect::<Vec<_>>(),
            "chains": crate::cli::chains_json(ledger, &self.dev.certificates),
            "held": ledger.held(),
            "records": ledger.index().len(),
            "conflicts": conflicts,
            "peers": peers,
            "ledger": ledger.stats(),
                        "mesh": self.counters,
            "sync_frames_refused": self.sync_frames_refused.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    fn peer_name(&self, p: &PeerId) -> String {
        self.names.get(p).cloned().unwrap_or_else(|| p.to_string())
    }

    fn on_discovered(&mut self, found: Discovered) {
        let Ok(peer) = found.peer_id.parse::<PeerId>() else {
            return;
        };
        if !self.names.contains_key(&peer) {
            return; // not enrolled: never dialed
        }
        let addrs: Vec<Multiaddr> = found
            .addrs
            .iter()
            .map(|ip| {
                Multiaddr::from(*ip)
                    .with(Protocol::Udp(found.port))
                    .with(Protocol::QuicV1)
            })
            .collect();
        if !self.known.contains_key(&peer) && self.known.len() >= KNOWN_PEERS_MAX {
            return;
        }
        let entry = self
            .known
            .entry(peer)
            .or_insert_with(|| (Vec::new(), std::time::Instant::now()));
        for a in addrs {
            if !entry.0.contains(&a) {
                entry.0.push(a);
            }
        }
        self.dial_known(peer);
    }

    /// Dial a discovered peer if the fixed rule says we should: the smaller peer id dials at
    /// once, the larger only when nothing came after [`DIAL_FALLBACK`] (a peer that restarted
    /// while we still hold its old connection).
    fn dial_known(&mut self, peer: PeerId) {
        let Some((addrs, first_seen)) = self.known.get(&peer) else {
            return;
        };
        if !self.swarm.behaviour().allow.allowed_peers().contains(&peer) {
            return; // blocked by the operator
        }
        if self.swarm.is_connected(&peer)
            || (self.local_peer > peer && first_seen.elapsed() < DIAL_FALLBACK)
        {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addrs.clone())
            .build();
        let _ = self.swarm.dial(opts);
    }

    fn redial(&mut self) {
        let known: Vec<PeerId> = self.known.keys().copied().collect();
        for p in known {
            self.dial_known(p);
        }
        for addr in self.opts.peers.clone() {
            let peer = addr.iter().find_map(|p| match p {
                Protocol::P2p(id) => Some(id),
                _ => None,
            });
            match peer {
                Some(p) if self.swarm.is_connected(&p) => {}
                Some(p) => {
                    let _ = self.swarm.dial(
                        DialOpts::peer_id(p)
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .addresses(vec![addr])
                            .build(),
                    );
                }
                None => {
                    let _ = self.swarm.dial(addr);
                }
            }
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<MeshBehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                emit(json!({"event": "listening", "addr": address.to_string()}))
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connected(peer_id, connection_id, endpoint.is_listener()),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                let list = self.connections.entry(peer_id).or_default();
                list.retain(|c| *c != connection_id);
                if list.is_empty() {
                    self.connections.remove(&peer_id);
                    self.sync.remove(&peer_id);
                    self.sync_in_flight.remove(&peer_id);
                    self.peer_seen.insert(peer_id, (false, crate::now_ms()));
                    self.tell(
                        json!({"event": "peer_disconnected", "peer": self.peer_name(&peer_id)}),
                    );
                }
            }
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                send_back_addr,
                ..
            } => {
                self.counters.rejected_peers += 1;
                emit(
                    json!({"event": "rejected_peer", "addr": send_back_addr.to_string(), "reason": cause.to_string()}),
                );
            }
            SwarmEvent::OutgoingConnectionError {
                error: DialError::Denied { cause },
                peer_id,
                ..
            } => {
                self.counters.rejected_peers += 1;
                emit(
                    json!({"event": "rejected_peer", "peer": peer_id.map(|p| p.to_string()), "reason": cause.to_string()}),
                );
            }
            SwarmEvent::Behaviour(MeshBehaviourEvent::Gossip(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(MeshBehaviourEvent::Sync(e)) => self.on_sync(e),
            _ => {}
        }
    }

    /// A new connection. When a peer we already hold a connection to connects to us again, the
    /// old one is stale (it restarted with the same key; rust-libp2p #5097): close it so gossip
    /// flows on the new one. Only the receiving side closes, so both ends agree on which stays.
    fn on_connected(
        &mut self,
        peer: PeerId,
        id: gatemesh_transport::libp2p::swarm::ConnectionId,
        incoming: bool,
    ) {
        let list = self.connections.entry(peer).or_default();
        let first = list.is_empty();
        let stale: Vec<_> = if incoming {
            std::mem::take(list)
        } else {
            Vec::new()
        };
        list.push(id);
        for old in stale {
            self.counters.stale_connections_closed += 1;
            self.swarm.close_connection(old);
        }
        if !first && !incoming {
            return; // a second dial of ours: the first connection carries on
        }
        self.sync.insert(peer, None);
        self.sync_in_flight.remove(&peer);
        self.peer_seen.insert(peer, (true, crate::now_ms()));
        self.tell(json!({"event": "peer_connected", "peer": self.peer_name(&peer)}));
        self.send_bulletins(peer);
        self.start_sync(peer, true);
    }

    fn on_gossip(&mut self, e: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = e
        else {
            return;
        };
        self.counters.gossip_bytes_in += message.data.len() as u64;
        if message.topic == self.control_topic.hash() {
            let ok = message.source.is_some_and(|s| self.names.contains_key(&s))
                && self.take_bulletin(&message.data, Some(propagation_source));
            let acceptance = if ok {
                gossipsub::MessageAcceptance::Accept
            } else {
                gossipsub::MessageAcceptance::Reject
            };
            self.swarm
                .behaviour_mut()
                .gossip
                .report_message_validation_result(&message_id, &propagation_source, acceptance);
            return;
        }
        let enrolled = message.source.is_some_and(|s| self.names.contains_key(&s));
        let acceptance = if !enrolled || message.topic != self.ledger_topic.hash() {
            self.counters.gossip_rejected += 1;
            self.rejected(json!({"event": "rejected_message", "peer": self.peer_name(&propagation_source), "reason": "source not enrolled or unknown topic"}));
            gossipsub::MessageAcceptance::Reject
        } else {
            let outcome = self.apply(&[message.data], propagation_source, "gossip");
            self.gossip_acceptance(outcome, propagation_source)
        };
        if acceptance == gossipsub::MessageAcceptance::Accept {
            self.counters.gossip_accepted += 1;
        }
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
    }

    /// What gossipsub does with a ledger message: forward what we admitted; drop quietly what
    /// we had, what waits for its predecessor (sync fetches it) and records of devices we do not
    /// know yet (a bulletin may enroll them); refuse, and count against the sender, the rest.
    fn gossip_acceptance(&mut self, outcome: Single, from: PeerId) -> gossipsub::MessageAcceptance {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        match outcome {
            Single::Admitted => Accept,
            Single::Duplicate | Single::Held => Ignore,
            Single::Rejected(gatemesh_crdt::Rejection::UnknownDevice) => Ignore,
            Single::Rejected(r) => {
                self.counters.gossip_rejected += 1;
                self.rejected(json!({"event": "rejected_message", "peer": self.peer_name(&from), "reason": r.code()}));
                Reject
            }
        }
    }

    /// Admit changes from a peer, persist what is new, report it. Returns what became of the
    /// first change (gossip carries one).
    fn apply(&mut self, blobs: &[Vec<u8>], from: PeerId, via: &str) -> Single {
        let admitted = self
            .dev
            .gate
            .ledger_mut()
            .admit(crate::now_ms(), peer_tag(&from), blobs);
        let single = admitted.single();
        if let Err(e) = self.after_admit(admitted, from, via) {
            tracing::warn!("persisting {via}: {e:#}");
        }
        single
    }

    fn after_admit(&mut self, admitted: Admitted, from: PeerId, via: &str) -> anyhow::Result<()> {
        self.dev.store.append_relaxed(&admitted.persist)?; // peers hold them too
        if !admitted.records.is_empty() {
            let ids: Vec<&str> = admitted
                .records
                .iter()
                .map(|r| r.scan_id.as_str())
                .collect();
            self.tell(
                json!({"event": "applied", "via": via, "from": self.peer_name(&from), "records": ids, "at_us": now_us()}),
            );
            if let Some(j) = &mut self.journal {
                j.extend(admitted.records.iter().cloned());
            }
            self.records_changed();
        }
        if !admitted.rejected.is_empty() {
            self.counters.rejected_messages += 1;
            let why: Vec<&str> = admitted.rejected.iter().map(|r| r.code()).collect();
            emit(
                json!({"event": "rejected_changes", "peer": self.peer_name(&from), "via": via, "reasons": why}),
            );
        }
        if !admitted.forks.is_empty() {
            self.keep_forks()?;
        }
        if admitted.held > 0 {
            self.start_sync(from, true);
        }
        Ok(())
    }

    /// Fork proofs are kept durably: a restart drops what the running node dropped.
    fn keep_forks(&mut self) -> anyhow::Result<()> {
        let forks: Vec<ForkProof> = self
            .dev
            .gate
            .ledger()
            .forks()
            .map(|f| (f.a.clone(), f.b.clone()))
            .collect();
        for f in self.dev.gate.ledger().forks() {
            emit(json!({"event": "fork", "chain": f.chain.to_string(), "from": f.from}));
        }
        self.dev.store.save_forks(&forks)?;
        Ok(())
    }

    /// Hand every bulletin we know to `peer` (it may have been off when they went out).
    fn send_bulletins(&mut self, peer: PeerId) {
        let known: Vec<Vec<u8>> = self
            .dev
            .gate
            .bulletins()
            .map(|b| b.bytes().to_vec())
            .collect();
        for b in known {
            let mut frame = vec![KIND_BULLETIN];
            frame.extend_from_slice(&b);
            let id = self.swarm.behaviour_mut().sync.send_request(&peer, frame);
            self.bulletin_requests.insert(id, peer);
        }
    }

    /// A peer sent a sync frame that is not one: drop its connections (it may reconnect, and
    /// start a fresh session).
    fn penalize(&mut self, peer: PeerId) {
        self.counters.peers_penalized += 1;
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// The sync tick: every connected peer is offered a session (tips exchange), and bulletin
    /// hand-overs that failed are retried.
    fn sync_all(&mut self) {
        let retry: Vec<PeerId> = self
            .bulletin_retry
            .drain()
            .filter(|p| self.sync.contains_key(p))
            .collect();
        for p in retry {
            self.send_bulletins(p);
        }
        let peers: Vec<PeerId> = self.sync.keys().copied().collect();
        for p in peers {
            self.start_sync(p, true);
        }
    }

    /// A session slot came free: peers we know to lack something get their turn.
    fn sync_needy(&mut self) {
        let peers: Vec<PeerId> = self.sync.keys().copied().collect();
        for p in peers {
            self.start_sync(p, false);
        }
    }

    /// Open a sync session with `peer`, unless one is on its way or the cap is reached. Unless
    /// `always`, only when we know it lacks something or we wait for a predecessor.
    fn start_sync(&mut self, peer: PeerId, always: bool) {
        if self.sync_in_flight.contains(&peer) || self.sync_in_flight.len() >= SYNC_SESSIONS_MAX {
            return;
        }
        let Some(theirs) = self.sync.get(&peer) else {
            return;
        };
        let ledger = self.dev.gate.ledger();
        let msg = SyncMessage::from_ledger(ledger, theirs.as_deref());
        if !always && !msg.carries_changes() && ledger.held() == 0 {
            return;
        }
        self.send_sync(peer, &msg);
    }

    fn send_sync(&mut self, peer: PeerId, msg: &SyncMessage) {
        let bytes = msg.encode();
        self.counters.sync_bytes_out += bytes.len() as u64;
        let mut frame = Vec::with_capacity(bytes.len() + 1);
        frame.push(KIND_SYNC);
        frame.extend_from_slice(&bytes);
        self.swarm.behaviour_mut().sync.send_request(&peer, frame);
        self.sync_in_flight.insert(peer);
    }

    /// A request on the sync protocol: a sync message (answered with ours) or a bulletin
    /// (answered empty). Anything else penalizes the peer.
    fn on_sync_request(&mut self, peer: PeerId, request: &[u8]) -> Vec<u8> {
        match request.split_first() {
            Some((&KIND_SYNC, msg)) => match self.receive_sync(peer, msg) {
                Some((theirs, _)) => {
                    SyncMessage::from_ledger(self.dev.gate.ledger(), Some(&theirs)).encode()
                }
                None => Vec::new(),
            },
            Some((&KIND_BULLETIN, b)) => {
                self.take_bulletin(b, Some(peer));
                Vec::new()
            }
            _ => {
                self.counters.sync_failures += 1;
                self.rejected(json!({"event": "rejected_message", "peer": self.peer_name(&peer), "reason": "sync: unknown frame kind"}));
                self.penalize(peer);
                Vec::new()
            }
        }
    }

    fn on_sync(&mut self, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        match e {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let reply = self.on_sync_request(peer, &request);
                    self.counters.sync_bytes_out += reply.len() as u64;
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, reply);
                }
                request_response::Message::Response {
                    response,
                    request_id,
                } => {
                    if self.bulletin_requests.remove(&request_id).is_some() {
                        return;
                    }
                    self.sync_in_flight.remove(&peer);
                    self.on_sync_answer(peer, &response);
                }
            },
            request_response::Event::OutboundFailure { request_id, .. }
                if self.bulletin_requests.contains_key(&request_id) =>
            {
                if let Some(peer) = self.bulletin_requests.remove(&request_id) {
                    self.bulletin_retry.insert(peer);
                }
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                // What the peer holds is unknown again: the next session starts from its tips.
                self.counters.sync_failures += 1;
                self.sync_in_flight.remove(&peer);
                if self.sync.contains_key(&peer) {
                    self.sync.insert(peer, None);
                }
                emit(
                    json!({"event": "sync_failure", "peer": self.peer_name(&peer), "reason": error.to_string()}),
                );
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.counters.sync_failures += 1;
                self.rejected(json!({"event": "rejected_message", "peer": self.peer_name(&peer), "reason": format!("sync: {error}")}),
                );
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Take a sync message in: its fork proofs, its changes, the sender's tips. Returns the
    /// tips and whether the sender had more, or `None` (and the peer is penalized) when the
    /// message does not decode.
    fn receive_sync(&mut self, peer: PeerId, bytes: &[u8]) -> Option<(Vec<Tip>, bool)> {
        self.counters.sync_bytes_in += bytes.len() as u64;
        let msg = match SyncMessage::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.counters.sync_failures += 1;
                self.rejected(json!({"event": "rejected_message", "peer": self.peer_name(&peer), "reason": format!("sync: {}", e.code())}));
                self.penalize(peer);
                return None;
            }
        };
        let mut new_forks = false;
        for (a, b) in &msg.forks {
            new_forks |= self
                .dev
                .gate
                .ledger_mut()
                .accept_fork(a, b)
                .unwrap_or(false);
        }
        if new_forks {
            if let Err(e) = self.keep_forks() {
                tracing::warn!("keeping forks: {e:#}");
            }
        }
        if !msg.changes.is_empty() {
            self.apply(&msg.changes, peer, "sync");
        }
        if let Some(known) = self.sync.get_mut(&peer) {
            *known = Some(msg.tips.clone());
        }
        Some((msg.tips, msg.more))
    }

    /// The answer to our sync message: take it in, then go on while either side has something
    /// for the other; else the session ends and waiting peers get the slot.
    fn on_sync_answer(&mut self, peer: PeerId, bytes: &[u8]) {
        let Some((theirs, answer_had_more)) = self.receive_sync(peer, bytes) else {
            self.sync_needy();
            return;
        };
        let next = SyncMessage::from_ledger(self.dev.gate.ledger(), Some(&theirs));
        if answer_had_more || next.carries_changes() {
            self.send_sync(peer, &next);
        } else {
            self.sync_needy();
        }
    }

    fn shutdown(mut self) -> anyhow::Result<()> {
        self.dev.store.flush()?;
        emit(json!({"event": "stopped"}));
        Ok(())
    }
}
