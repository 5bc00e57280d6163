//! The deterministic mesh simulator: N nodes running the real gate logic and ledger (the code
//! `gatemesh node run` runs, driven through its pure interfaces: bytes and time in, decisions and
//! change bytes out) over a simulated network with latency, loss, duplication, reordering,
//! symmetric and one-way partitions, crashes with restart from what was durable, and clock skew
//! and jumps. Everything comes from the seed: the same seed replays the same run.
//!
//! Invariants checked after every run (the network healed, every node back, a quiet period):
//! 1. no acknowledged admit is lost: every node holds every admit it or another node answered;
//! 2. every replica converged: the same heads, the same records per ticket, the same conflicts;
//! 3. every admit beyond policy is in the conflict list on every node (an independent replay);
//! 4. while the network is whole and quiet, no ticket is admitted twice once the first admit
//!    had time to propagate ([`PROPAGATION_BOUND_MS`]);
//! 5. no panic.
//!
//! [`Fault`]s are test-only bugs the sweep must catch (the self-check).

use gatemesh_crdt::{ChainId, Direction, ForkProof, Ledger, SyncMessage, Tip, Verdict};
use gatemesh_node::cli::{
    device_enroll_with_key, event_create_with_key, tickets_issue, IssueOptions, TicketFormat,
};
use gatemesh_node::device::{DeviceIdentity, Role};
use gatemesh_node::event::EventPackage;
use gatemesh_node::gate::{GateLogic, ScanRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::OnceLock;

/// Most nodes a run may have (the world enrolls this many devices).
pub const NODES_MAX: usize = 8;
/// Simulated ms of the base time (2026-06-01T00:00:00Z): inside the world's validity window.
const BASE_MS: u64 = 1_780_272_000_000;
/// Every node offers a sync round to every peer this often.
const SYNC_EVERY_MS: u64 = 500;
/// Workload and chaos happen in [0, ACTIVE_MS); then everything heals and the mesh is quiet.
const ACTIVE_MS: u64 = 20_000;
/// Quiet time after the heal before the invariants are checked.
const QUIET_MS: u64 = 15_000;
/// In a whole, loss-free network a record reaches every node within this (latency + a sync
/// round, with margin).
pub const PROPAGATION_BOUND_MS: u64 = 2_000;
/// Most messages in flight at once; beyond it the network drops (a bounded queue).
const IN_FLIGHT_MAX: usize = 100_000;
const GENERAL_TICKETS: usize = 40;
const VIP_TICKETS: usize = 8;

/// The scenarios of `gatemesh-sim run --scenario`.
pub const SCENARIOS: [&str; 7] = ["calm", "lossy", "split", "oneway", "crash", "skew", "mixed"];

/// Test-only bugs; the sweep must report each of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Node 0's merge drops what it receives (gossip and sync alike).
    MergeDropsRecords,
    /// Nodes answer before the durable write (the write happens on their next tick).
    AckBeforeDurable,
    /// Nodes decide on a stale index (remote records reach their gate late).
    StaleIndex,
    /// Nodes keep and pass on bulletins but their gate never applies them.
    BulletinsIgnored,
}

/// The event, devices and tickets every run uses (made once per process).
struct World {
    package: EventPackage,
    /// An organizer bulletin revoking the last general ticket (a refund mid-event).
    revocation: gatemesh_node::bulletin::Bulletin,
    identities: Vec<DeviceIdentity>,
    general: Vec<(String, String)>,
    vip: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| make_world().expect("the simulator's event package"))
}

fn make_world() -> anyhow::Result<World> {
    let dir = tempfile::tempdir()?;
    let ev = dir.path().join("event");
    // Every key comes from a fixed seed, so device ids (which break ties in the ledger's order)
    // are the same in every process: a seed replays the same run anywhere.
    let mut keys_rng = StdRng::seed_from_u64(0x5eed_f1e1d);
    let mut key = || ed25519_dalek::SigningKey::generate(&mut keys_rng);
    event_create_with_key(
        &ev,
        "Sim Fest",
        Some("simfest".into()),
        Some("2026-01-01T00:00:00Z".into()),
        Some("2027-01-01T00:00:00Z".into()),
        key(),
    )?;
    let issue = |count: usize, tier: &str| {
        let o = IssueOptions {
            count: count as u32,
            tier: tier.into(),
            format: TicketFormat::Gm1,
            key_id: None,
            nfc: false,
            qr: false,
            hmac_secret_file: None,
            named: None,
        };
        tickets_issue(&ev, &ev.join("tickets"), &o).map(|v| {
            v.into_iter()
                .map(|t| (t.ticket_id, t.code))
                .collect::<Vec<_>>()
        })
    };
    let general = issue(GENERAL_TICKETS, "general")?;
    let vip = issue(VIP_TICKETS, "vip")?;
    for i in 0..NODES_MAX {
        let name = format!("n{i}");
        device_enroll_with_key(
            &ev,
            &name,
            Role::Scanner,
            &ev.join(format!("device-{name}")),
            key(),
        )?;
    }
    let bulletin_path = gatemesh_node::cli::bulletin(&gatemesh_node::cli::BulletinArgs {
        event: ev.clone(),
        revoke_ticket: vec![general[GENERAL_TICKETS - 1].0.clone()],
        revoke_device: Vec::new(),
        keep: Vec::new(),
        ledger: None,
        add_device: Vec::new(),
    })?;
    let package = EventPackage::load(&ev)?;
    let keys = package.config.organizer_verifying_keys()?;
    let revocation = gatemesh_node::bulletin::Bulletin::from_bytes(
        &std::fs::read(&bulletin_path)?,
        &package.config.event_id,
        &keys,
    )?;
    let identities = (0..NODES_MAX)
        .map(|i| {
            DeviceIdentity::load(
                &ev.join(format!("device-n{i}")),
                &package.config.event_id,
                &keys,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(World {
        package,
        revocation,
        identities,
        general,
        vip,
        _dir: dir,
    })
}

/// What travels. Sync is request-response, as on `/gatemesh/sync/2`: every `Sync` gets an
/// answer (`Sync` or `Done`), and a request that cannot arrive comes back as `Failed` after
/// [`REQUEST_TIMEOUT_MS`], upon which the sender starts a fresh session (as the node does).
#[derive(Clone, Debug)]
enum Payload {
    Gossip(Vec<u8>),
    /// The organizer's revocation bulletin (the control topic, and the hand-over on connect).
    Bulletin,
    /// A sync request, and its answer (each a `SyncMessage`).
    Sync(Vec<u8>),
    Answer(Vec<u8>),
    /// An answer with nothing in it (the fault that drops what a node receives).
    Done,
    Failed,
}

/// How long a sync request waits for its answer before it fails.
const REQUEST_TIMEOUT_MS: u64 = 300;

#[derive(Debug)]
struct Msg {
    at: u64,
    seq: u64,
    from: usize,
    to: usize,
    payload: Payload,
}

impl PartialEq for Msg {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Msg {}
impl PartialOrd for Msg {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Msg {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq)) // a min-heap
    }
}

struct Node {
    gate: Option<GateLogic>,
    /// What survives a crash: own changes (fdatasync) and received blobs that were synced.
    durable: Vec<Vec<u8>>,
    /// Received blobs written without fdatasync since the last durable write: each survives a
    /// crash with probability 1/2.
    relaxed: Vec<Vec<u8>>,
    /// Each peer's tips as its last sync message gave them.
    sync: Vec<Option<Vec<Tip>>>,
    skew_ms: i64,
    /// The chain this node's store writes on (drawn when the store was made).
    chain: ChainId,
    /// Fork proofs kept (durably, as `Store::save_forks` does).
    forks: Vec<ForkProof>,
    /// Fault AckBeforeDurable: answered, not yet written nor published.
    unwritten: Vec<Vec<u8>>,
    /// Fault StaleIndex: received, not yet applied.
    late: Vec<(u64, Vec<u8>)>,
    /// A sync exchange with this peer is under way (no new round is started meanwhile).
    busy: Vec<bool>,
    /// Holds the revocation bulletin (kept in its data directory: survives a crash).
    revoked: bool,
}

impl Node {
    /// A local change made durable as `Store::append` does: sled's flush writes everything
    /// before it too, so the received blobs written earlier become durable with it.
    fn write_durable(&mut self, change: Vec<u8>) {
        self.durable.append(&mut self.relaxed);
        self.durable.push(change);
    }
}

/// The network's condition now.
#[derive(Clone, Debug, Default)]
struct Net {
    /// Symmetric split: side of each node.
    split: Option<Vec<bool>>,
    /// One-way: messages from `.0` to `.1` are lost.
    oneway: Option<(usize, usize)>,
    loss: f64,
    dup: f64,
}

impl Net {
    fn whole(&self) -> bool {
        self.split.is_none() && self.oneway.is_none() && self.loss == 0.0
    }
    fn passes(&self, from: usize, to: usize) -> bool {
        if let Some(side) = &self.split {
            if side[from] != side[to] {
                return false;
            }
        }
        self.oneway != Some((from, to))
    }
}

#[derive(Clone, Debug)]
enum Event {
    Scan {
        node: usize,
        vip: bool,
        ticket: usize,
        gate: &'static str,
        out: bool,
    },
    Annul {
        node: usize,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Split(Vec<bool>),
    OneWay(usize, usize),
    Loss(f64, f64),
    Heal,
    ClockJump {
        node: usize,
        by_ms: i64,
    },
    /// The organizer hands the revocation bulletin to one node.
    Revoke {
        node: usize,
    },
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub violations: Vec<String>,
    pub scans: usize,
    pub admits: usize,
    pub double_entries: usize,
    pub messages: u64,
}

struct Acked {
    node: usize,
    scan_id: String,
    ticket: String,
    at: u64,
}

struct Sim {
    rng: StdRng,
    nodes: Vec<Node>,
    net: Net,
    queue: BinaryHeap<Msg>,
    seq: u64,
    now: u64,
    fault: Option<Fault>,
    acked: Vec<Acked>,
    annulled: HashSet<String>,
    /// The network has been whole and every node up since this time.
    calm_since: Option<u64>,
    outcome: Outcome,
}

impl Sim {
    fn node_now(&self, n: usize) -> u64 {
        (BASE_MS as i64 + self.now as i64 + self.nodes[n].skew_ms).max(0) as u64
    }

    fn open(&mut self, n: usize) {
        let w = world();
        let count = self.nodes.len();
        let node = &mut self.nodes[n];
        let survived: Vec<Vec<u8>> = node.durable.clone();
        let (ledger, _refused) = GateLogic::open_ledger(
            &w.package,
            Some(&w.identities[n]),
            node.chain,
            &node.forks,
            survived.iter().map(Vec::as_slice),
        )
        .expect("a node's durable log opens");
        let mut gate = GateLogic::new(&w.package, ledger, None).expect("gate logic");
        if node.revoked && self.fault != Some(Fault::BulletinsIgnored) {
            let _ = gate.apply_bulletin(&w.revocation);
        }
        node.gate = Some(gate);
        node.sync = vec![None; count];
    }

    /// Connections are made anew (a restart, a heal): every sync session with `n` starts over,
    /// and bulletins are handed over both ways.
    fn reconnect(&mut self, n: usize) {
        for p in 0..self.nodes.len() {
            if p != n && self.nodes[p].revoked && self.nodes[p].gate.is_some() {
                self.send(p, n, Payload::Bulletin);
            }
            if p != n && self.nodes[n].revoked {
                self.send(n, p, Payload::Bulletin);
            }
        }
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if i == n {
                node.sync.iter_mut().for_each(|p| *p = None);
                node.busy.iter_mut().for_each(|a| *a = false);
            } else if !node.sync.is_empty() {
                node.sync[n] = None;
                node.busy[n] = false;
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, payload: Payload) {
        self.outcome.messages += 1;
        // A lost request or answer fails the exchange on the asker's side after a timeout.
        let asker = match payload {
            Payload::Sync(_) => Some((to, from)),
            Payload::Answer(_) | Payload::Done => Some((from, to)),
            _ => None,
        };
        if !self.net.passes(from, to) || self.rng.gen_bool(self.net.loss) {
            if let Some((responder, asker)) = asker {
                self.seq += 1;
                self.queue.push(Msg {
                    at: self.now + REQUEST_TIMEOUT_MS,
                    seq: self.seq,
                    from: responder,
                    to: asker,
                    payload: Payload::Failed,
                });
            }
            return;
        }
        // Gossip may arrive twice; a request-response stream does not.
        let gossip = matches!(payload, Payload::Gossip(_));
        let copies = if gossip && self.rng.gen_bool(self.net.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.queue.len() >= IN_FLIGHT_MAX {
                return;
            }
            let latency = self.rng.gen_range(1..=40);
            self.seq += 1;
            self.queue.push(Msg {
                at: self.now + latency,
                seq: self.seq,
                from,
                to,
                payload: payload.clone(),
            });
        }
    }

    fn publish(&mut self, from: usize, change: Vec<u8>) {
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, Payload::Gossip(change.clone()));
            }
        }
    }

    fn scan(&mut self, n: usize, code: &str, gate: &str, out: bool, vip: bool) {
        let now = self.node_now(n);
        let Some(g) = self.nodes[n].gate.as_mut() else {
            return; // a crashed scanner scans nothing
        };
        let outcome = g
            .scan(
                now,
                ScanRequest {
                    code: code.as_bytes(),
                    gate,
                    direction: out.then_some(Direction::Out),
                },
            )
            .expect("known gate");
        self.outcome.scans += 1;
        let d = &outcome.decision;
        if let Some(change) = outcome.change.clone() {
            if self.fault == Some(Fault::AckBeforeDurable) {
                self.nodes[n].unwritten.push(change);
            } else {
                self.nodes[n].write_durable(change.clone());
                self.publish(n, change);
            }
        }
        if d.verdict == Verdict::Admit && !d.repeat {
            if let Some(t) = &d.ticket {
                self.outcome.admits += 1;
                if self.nodes[n].revoked && t.id == world().general[GENERAL_TICKETS - 1].0 {
                    self.outcome.violations.push(format!(
                        "node {n} admitted ticket {} after it had applied its revocation",
                        t.id
                    ));
                }
                // Invariant 4: a whole, quiet network lets no second entry through once the
                // first had time to propagate.
                if !out && !vip {
                    if let Some(since) = self.calm_since {
                        let earlier = self.acked.iter().find(|a| {
                            a.ticket == t.id
                                && !self.annulled.contains(&a.scan_id)
                                && a.at >= since
                                && self.now >= a.at + PROPAGATION_BOUND_MS
                        });
                        if let Some(e) = earlier {
                            self.outcome.violations.push(format!(
                                "double entry while whole and quiet: ticket {} admitted by node {} at {} ms and by node {n} at {} ms",
                                t.id, e.node, e.at, self.now
                            ));
                        }
                    }
                }
                self.acked.push(Acked {
                    node: n,
                    scan_id: d.scan_id.clone(),
                    ticket: t.id.clone(),
                    at: self.now,
                });
            }
        }
    }

    fn annul(&mut self, n: usize) {
        let now = self.node_now(n);
        let Some(target) = self
            .acked
            .iter()
            .rev()
            .find(|a| a.node == n && !self.annulled.contains(&a.scan_id))
            .map(|a| (a.ticket.clone(), a.scan_id.clone()))
        else {
            return;
        };
        let Some(g) = self.nodes[n].gate.as_mut() else {
            return;
        };
        if let Ok(change) = g.annul(now, &target.0, &target.1) {
            self.annulled.insert(target.1);
            self.nodes[n].write_durable(change.clone());
            self.publish(n, change);
        }
    }

    /// Admit changes from `from`; whether some wait for a predecessor.
    fn apply(&mut self, n: usize, from: usize, changes: &[Vec<u8>]) -> bool {
        let now = self.node_now(n);
        let node = &mut self.nodes[n];
        let Some(g) = node.gate.as_mut() else {
            return false;
        };
        let admitted = g.ledger_mut().admit(now, from as u64 + 1, changes);
        node.relaxed.extend(admitted.persist);
        if !admitted.forks.is_empty() {
            node.forks = g
                .ledger()
                .forks()
                .map(|f| (f.a.clone(), f.b.clone()))
                .collect();
        }
        admitted.held > 0
    }

    /// Take a sync message in (forks, changes, tips); the sender's tips and whether it had
    /// more, or `None` if it does not decode.
    fn take_sync(&mut self, n: usize, from: usize, bytes: &[u8]) -> Option<(Vec<Tip>, bool)> {
        let msg = SyncMessage::decode(bytes).ok()?;
        let node = &mut self.nodes[n];
        let g = node.gate.as_mut()?;
        let mut new_forks = false;
        for (a, b) in &msg.forks {
            new_forks |= g.ledger_mut().accept_fork(a, b).unwrap_or(false);
        }
        if new_forks {
            node.forks = g
                .ledger()
                .forks()
                .map(|f| (f.a.clone(), f.b.clone()))
                .collect();
        }
        if !msg.changes.is_empty() {
            self.apply(n, from, &msg.changes);
        }
        self.nodes[n].sync[from] = Some(msg.tips.clone());
        Some((msg.tips, msg.more))
    }

    /// Apply the revocation bulletin; the first time, pass it on to every peer.
    fn take_revocation(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let Some(g) = node.gate.as_mut() else { return };
        if self.fault != Some(Fault::BulletinsIgnored) {
            let _ = g.apply_bulletin(&world().revocation);
        }
        if !node.revoked {
            node.revoked = true;
            for p in 0..self.nodes.len() {
                if p != n {
                    self.send(n, p, Payload::Bulletin);
                }
            }
        }
    }

    /// Start a sync exchange with `p` now, unless one is under way; unless `always`, only when
    /// `p` is known to lack something or changes wait for a predecessor.
    fn start_sync(&mut self, n: usize, p: usize, always: bool) {
        let node = &self.nodes[n];
        if node.busy[p] {
            return;
        }
        let Some(g) = node.gate.as_ref() else {
            return;
        };
        let msg = SyncMessage::from_ledger(g.ledger(), node.sync[p].as_deref());
        if !always && !msg.carries_changes() && g.ledger().held() == 0 {
            return;
        }
        self.nodes[n].busy[p] = true;
        self.send(n, p, Payload::Sync(msg.encode()));
    }

    fn deliver(&mut self, m: Msg) {
        if self.nodes[m.to].gate.is_none() {
            if matches!(m.payload, Payload::Sync(_)) {
                self.seq += 1;
                self.queue.push(Msg {
                    at: self.now + REQUEST_TIMEOUT_MS,
                    seq: self.seq,
                    from: m.to,
                    to: m.from,
                    payload: Payload::Failed,
                });
            }
            return; // down: the message is lost
        }
        if self.fault == Some(Fault::MergeDropsRecords)
            && m.to == 0
            && matches!(
                m.payload,
                Payload::Gossip(_) | Payload::Sync(_) | Payload::Answer(_)
            )
        {
            if matches!(m.payload, Payload::Sync(_)) {
                self.send(0, m.from, Payload::Done);
            }
            if matches!(m.payload, Payload::Answer(_)) {
                self.nodes[0].busy[m.from] = false;
            }
            return;
        }
        match m.payload {
            Payload::Gossip(change) => {
                if self.fault == Some(Fault::StaleIndex) {
                    let at = self.now + 5_000;
                    self.nodes[m.to].late.push((at, change));
                } else if self.apply(m.to, m.from, &[change]) {
                    self.start_sync(m.to, m.from, true); // a predecessor is missing: ask
                }
            }
            Payload::Bulletin => self.take_revocation(m.to),
            Payload::Done => self.nodes[m.to].busy[m.from] = false,
            Payload::Failed => {
                let node = &mut self.nodes[m.to];
                node.busy[m.from] = false;
                node.sync[m.from] = None; // what the peer holds is unknown again
            }
            Payload::Sync(bytes) => {
                // Answer every request, with what the asker lacks by its tips.
                let answer = match self.take_sync(m.to, m.from, &bytes) {
                    Some((theirs, _)) => self.nodes[m.to]
                        .gate
                        .as_ref()
                        .map(|g| SyncMessage::from_ledger(g.ledger(), Some(&theirs)).encode()),
                    None => None,
                };
                match answer {
                    Some(a) => self.send(m.to, m.from, Payload::Answer(a)),
                    None => self.send(m.to, m.from, Payload::Done),
                }
            }
            Payload::Answer(bytes) => {
                self.nodes[m.to].busy[m.from] = false;
                let Some((theirs, more)) = self.take_sync(m.to, m.from, &bytes) else {
                    return;
                };
                let Some(g) = self.nodes[m.to].gate.as_ref() else {
                    return;
                };
                let next = SyncMessage::from_ledger(g.ledger(), Some(&theirs));
                if more || next.carries_changes() {
                    self.nodes[m.to].busy[m.from] = true;
                    self.send(m.to, m.from, Payload::Sync(next.encode()));
                }
            }
        }
    }

    fn sync_round(&mut self) {
        for n in 0..self.nodes.len() {
            // Fault AckBeforeDurable: what was answered is written and published only now.
            let unwritten = std::mem::take(&mut self.nodes[n].unwritten);
            for c in unwritten {
                self.nodes[n].write_durable(c.clone());
                self.publish(n, c);
            }
            let due: Vec<Vec<u8>> = {
                let now = self.now;
                let late = &mut self.nodes[n].late;
                let (due, keep): (Vec<_>, Vec<_>) = late.drain(..).partition(|(at, _)| *at <= now);
                *late = keep;
                due.into_iter().map(|(_, c)| c).collect()
            };
            for c in due {
                self.apply(n, n, &[c]);
            }
            if self.nodes[n].gate.is_none() {
                continue;
            }
            if self.fault == Some(Fault::StaleIndex) && self.now < ACTIVE_MS {
                continue; // the stale node learns of others' records only from late gossip
            }
            for p in (0..self.nodes.len()).filter(|p| *p != n) {
                self.start_sync(n, p, true);
            }
        }
    }

    fn crash(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.gate.is_none() {
            return;
        }
        node.gate = None;
        node.unwritten.clear();
        node.late.clear();
        let relaxed = std::mem::take(&mut node.relaxed);
        for blob in relaxed {
            if self.rng.gen_bool(0.5) {
                self.nodes[n].durable.push(blob);
            }
        }
        self.calm_since = None;
    }

    fn restart(&mut self, n: usize) {
        if self.nodes[n].gate.is_some() {
            return;
        }
        self.open(n);
        self.reconnect(n);
    }

    fn on_event(&mut self, e: Event) {
        let w = world();
        match e {
            Event::Scan {
                node,
                vip,
                ticket,
                gate,
                out,
            } => {
                let code = if vip {
                    &w.vip[ticket].1
                } else {
                    &w.general[ticket].1
                };
                self.scan(node, code, gate, out, vip);
            }
            Event::Annul { node } => self.annul(node),
            Event::Crash { node } => self.crash(node),
            Event::Restart { node } => self.restart(node),
            Event::Split(side) => {
                self.net.split = Some(side);
                self.calm_since = None;
            }
            Event::OneWay(a, b) => {
                self.net.oneway = Some((a, b));
                self.calm_since = None;
            }
            Event::Loss(loss, dup) => {
                self.net.loss = loss;
                self.net.dup = dup;
                self.calm_since = None;
            }
            Event::Heal => {
                self.net = Net::default();
                for n in 0..self.nodes.len() {
                    self.reconnect(n);
                }
            }
            Event::ClockJump { node, by_ms } => self.nodes[node].skew_ms += by_ms,
            Event::Revoke { node } => self.take_revocation(node),
        }
        self.update_calm();
    }

    fn update_calm(&mut self) {
        let calm = self.net.whole() && self.nodes.iter().all(|n| n.gate.is_some());
        match (calm, self.calm_since) {
            (true, None) => self.calm_since = Some(self.now),
            (false, _) => self.calm_since = None,
            _ => {}
        }
    }
}

/// The events of a run, all drawn from the seed.
fn plan(rng: &mut StdRng, nodes: usize, scenario: &str) -> Vec<(u64, Event)> {
    let mut ev: Vec<(u64, Event)> = Vec::new();
    let at = |rng: &mut StdRng| rng.gen_range(0..ACTIVE_MS);
    let scans = rng.gen_range(30..70);
    for _ in 0..scans {
        let node = rng.gen_range(0..nodes);
        let vip = rng.gen_bool(0.15);
        let ticket = if vip {
            rng.gen_range(0..VIP_TICKETS)
        } else {
            rng.gen_range(0..GENERAL_TICKETS)
        };
        let t = at(rng);
        let gate = if rng.gen_bool(0.5) { "north" } else { "south" };
        ev.push((
            t,
            Event::Scan {
                node,
                vip,
                ticket,
                gate,
                out: false,
            },
        ));
        // A shared screenshot: the same ticket at another gate soon after.
        if rng.gen_bool(0.3) {
            let other = (node + rng.gen_range(1..nodes.max(2))) % nodes;
            let later = t + rng.gen_range(0..4_000);
            ev.push((
                later,
                Event::Scan {
                    node: other,
                    vip,
                    ticket,
                    gate: "south",
                    out: false,
                },
            ));
        }
        // Re-entry: a VIP walks out and back in.
        if vip && rng.gen_bool(0.5) {
            let t2 = t + rng.gen_range(3_000..8_000);
            ev.push((
                t2,
                Event::Scan {
                    node,
                    vip,
                    ticket,
                    gate: "exit",
                    out: true,
                },
            ));
            let t3 = t2 + rng.gen_range(3_000..8_000);
            ev.push((
                t3,
                Event::Scan {
                    node: (node + 1) % nodes,
                    vip,
                    ticket,
                    gate: "north",
                    out: false,
                },
            ));
        }
        if rng.gen_bool(0.05) {
            ev.push((t + 100, Event::Annul { node }));
        }
    }
    // A refund mid-event in one run out of three.
    if rng.gen_bool(1.0 / 3.0) {
        let node = rng.gen_range(0..nodes);
        ev.push((at(rng), Event::Revoke { node }));
    }
    let chosen: Vec<&str> = if scenario == "mixed" {
        SCENARIOS[1..6]
            .iter()
            .copied()
            .filter(|_| rng.gen_bool(0.5))
            .collect()
    } else {
        vec![scenario]
    };
    for s in chosen {
        match s {
            "lossy" => {
                let t = at(rng);
                ev.push((
                    t,
                    Event::Loss(rng.gen_range(0.05..0.4), rng.gen_range(0.0..0.2)),
                ));
                ev.push((t + rng.gen_range(1_000..8_000), Event::Loss(0.0, 0.0)));
            }
            "split" => {
                let side: Vec<bool> = (0..nodes)
                    .map(|i| i < nodes / 2 || rng.gen_bool(0.2))
                    .collect();
                let t = at(rng);
                ev.push((t, Event::Split(side)));
                ev.push((t + rng.gen_range(2_000..10_000), Event::Heal));
            }
            "oneway" => {
                let a = rng.gen_range(0..nodes);
                let b = (a + 1) % nodes;
                let t = at(rng);
                ev.push((t, Event::OneWay(a, b)));
                ev.push((t + rng.gen_range(2_000..10_000), Event::Heal));
            }
            "crash" => {
                for _ in 0..rng.gen_range(1..=3) {
                    let node = rng.gen_range(0..nodes);
                    let t = at(rng);
                    ev.push((t, Event::Crash { node }));
                    ev.push((t + rng.gen_range(200..5_000), Event::Restart { node }));
                }
            }
            "skew" => {
                for node in 0..nodes {
                    if rng.gen_bool(0.5) {
                        let by_ms = rng.gen_range(-30_000..30_000);
                        ev.push((at(rng), Event::ClockJump { node, by_ms }));
                    }
                }
            }
            _ => {}
        }
    }
    ev.sort_by_key(|(t, _)| *t);
    ev
}

/// Run one seed. Panics inside are caught and reported as a violation.
pub fn run(seed: u64, nodes: usize, scenario: &str, fault: Option<Fault>) -> Outcome {
    let scenario = scenario.to_string();
    let result = std::panic::catch_unwind(move || run_inner(seed, nodes, &scenario, fault));
    result.unwrap_or_else(|p| Outcome {
        violations: vec![format!(
            "panic: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )],
        ..Outcome::default()
    })
}

fn run_inner(seed: u64, nodes: usize, scenario: &str, fault: Option<Fault>) -> Outcome {
    assert!(
        (2..=NODES_MAX).contains(&nodes),
        "nodes must be 2..={NODES_MAX}"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = plan(&mut rng, nodes, scenario);
    let skew = scenario == "skew" || scenario == "mixed";
    let mut sim = Sim {
        nodes: (0..nodes)
            .map(|_| Node {
                gate: None,
                durable: Vec::new(),
                relaxed: Vec::new(),
                sync: Vec::new(),
                chain: ChainId(rng.gen()),
                forks: Vec::new(),
                skew_ms: if skew {
                    rng.gen_range(-5_000..5_000)
                } else {
                    0
                },
                unwritten: Vec::new(),
                late: Vec::new(),
                busy: vec![false; nodes],
                revoked: false,
            })
            .collect(),
        rng,
        net: Net::default(),
        queue: BinaryHeap::new(),
        seq: 0,
        now: 0,
        fault,
        acked: Vec::new(),
        annulled: HashSet::new(),
        calm_since: Some(0),
        outcome: Outcome::default(),
    };
    for n in 0..nodes {
        sim.open(n);
    }
    // The heal: network whole, every node up.
    events.push((ACTIVE_MS, Event::Heal));
    for n in 0..nodes {
        events.push((ACTIVE_MS, Event::Restart { node: n }));
    }
    let end = ACTIVE_MS + QUIET_MS;
    let mut next_sync = SYNC_EVERY_MS;
    let mut events = events.into_iter().peekable();
    loop {
        let next_event = events.peek().map(|(t, _)| *t).unwrap_or(u64::MAX);
        let next_msg = sim.queue.peek().map(|m| m.at).unwrap_or(u64::MAX);
        let t = next_event.min(next_msg).min(next_sync);
        if t > end {
            break;
        }
        sim.now = t;
        if t == next_sync {
            sim.sync_round();
            next_sync += SYNC_EVERY_MS;
        } else if t == next_msg {
            let m = sim.queue.pop().expect("peeked");
            sim.deliver(m);
        } else if let Some((_, e)) = events.next() {
            sim.on_event(e);
        }
    }
    check(&mut sim);
    sim.outcome
}

/// The invariants after the quiet period.
fn check(sim: &mut Sim) {
    let v = &mut sim.outcome.violations;
    let ledgers: Vec<&Ledger> = sim
        .nodes
        .iter()
        .map(|n| {
            n.gate
                .as_ref()
                .expect("every node is up after the heal")
                .ledger()
        })
        .collect();
    // 1. No acknowledged admit lost.
    for a in &sim.acked {
        for (i, l) in ledgers.iter().enumerate() {
            if !l
                .index()
                .records(&a.ticket)
                .iter()
                .any(|r| r.scan_id == a.scan_id)
            {
                v.push(format!(
                    "acknowledged admit {} (ticket {}, node {}) missing on node {i}",
                    a.scan_id, a.ticket, a.node
                ));
            }
        }
    }
    // 2. Convergence.
    let tickets: Vec<String> = world()
        .general
        .iter()
        .chain(world().vip.iter())
        .map(|(t, _)| t.clone())
        .collect();
    let picture = |l: &Ledger| {
        let records: BTreeMap<&String, Vec<String>> = tickets
            .iter()
            .map(|t| {
                (
                    t,
                    l.index()
                        .records(t)
                        .into_iter()
                        .map(|r| format!("{}@{}", r.scan_id, r.hlc))
                        .collect(),
                )
            })
            .collect();
        (
            l.summary(),
            records,
            serde_json::to_string(&l.index().conflicts()).unwrap_or_default(),
        )
    };
    let first = picture(ledgers[0]);
    for (i, l) in ledgers.iter().enumerate().skip(1) {
        let p = picture(l);
        if p.0 != first.0 {
            v.push(format!("node {i} has other chain tips than node 0"));
        }
        if p.1 != first.1 {
            let diff: Vec<String> =
                p.1.iter()
                    .filter(|(t, r)| first.1.get(*t) != Some(*r))
                    .map(|(t, r)| format!("{t}: {r:?} vs {:?}", first.1.get(*t)))
                    .take(3)
                    .collect();
            v.push(format!(
                "node {i} holds other records than node 0 ({})",
                diff.join(", ")
            ));
        }
        if p.2 != first.2 {
            v.push(format!("node {i} reports other conflicts than node 0"));
        }
    }
    // 3. Every admit beyond policy is a reported double entry, on every node (independent
    //    replay: general = one entry; vip = one at a time, an `out` gives it back).
    let vip: HashSet<&String> = world().vip.iter().map(|(t, _)| t).collect();
    for (i, l) in ledgers.iter().enumerate() {
        let conflicts: HashMap<String, HashSet<String>> = l
            .index()
            .conflicts()
            .into_iter()
            .map(|c| {
                (
                    c.ticket_id,
                    c.double_entries.into_iter().map(|r| r.scan_id).collect(),
                )
            })
            .collect();
        for t in &tickets {
            let records = l.index().records(t);
            let annulled: HashSet<&str> =
                records.iter().filter_map(|r| r.annuls.as_deref()).collect();
            let mut inside = false;
            let mut credits = 1u32;
            let mut beyond = Vec::new();
            for r in records.iter().filter(|r| r.verdict == Verdict::Admit) {
                if annulled.contains(r.scan_id.as_str()) {
                    continue;
                }
                match r.direction {
                    Direction::In if credits > 0 => {
                        credits -= 1;
                        inside = true;
                    }
                    Direction::In => beyond.push(r.scan_id.clone()),
                    Direction::Out => {
                        if inside && vip.contains(t) {
                            credits += 1;
                        }
                        inside = false;
                    }
                }
            }
            let reported = conflicts.get(t).cloned().unwrap_or_default();
            if i == 0 {
                sim.outcome.double_entries += beyond.len();
            }
            for b in &beyond {
                if !reported.contains(b) {
                    v.push(format!(
                        "node {i}: double entry {b} on ticket {t} not reported"
                    ));
                }
            }
            if reported.len() != beyond.len() {
                v.push(format!(
                    "node {i}: ticket {t} reports {} double entries, the policy says {}",
                    reported.len(),
                    beyond.len()
                ));
            }
        }
    }
}

/// The scenario of seed `s` in a sweep, and its node count.
pub fn sweep_case(seed: u64) -> (usize, &'static str) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    (
        rng.gen_range(3..=5),
        SCENARIOS[rng.gen_range(0..SCENARIOS.len())],
    )
}

/// The command that replays one run.
pub fn replay_command(seed: u64, nodes: usize, scenario: &str) -> String {
    format!("cargo run --release -p simulations --bin gatemesh-sim -- run --seed {seed} --nodes {nodes} --scenario {scenario}")
}

/// What a sweep found.
#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    pub seeds: u64,
    pub failing: Vec<(u64, usize, &'static str, Vec<String>)>,
    pub scans: usize,
    pub double_entries: usize,
    pub seconds: f64,
}

/// Run seeds `from..from + count`, each with the scenario and size its seed picks.
pub fn sweep(from: u64, count: u64, fault: Option<Fault>) -> SweepReport {
    let started = std::time::Instant::now();
    let mut report = SweepReport::default();
    for seed in from..from + count {
        let (nodes, scenario) = sweep_case(seed);
        let o = run(seed, nodes, scenario, fault);
        report.seeds += 1;
        report.scans += o.scans;
        report.double_entries += o.double_entries;
        if !o.violations.is_empty() {
            report.failing.push((seed, nodes, scenario, o.violations));
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}
