//! The deterministic mesh simulator: N nodes, each the real [`Replica`] (the very protocol
//! `gatemesh node run` drives), over a simulated network with latency, loss, duplication,
//! reordering, symmetric and one-way partitions, crashes with restart from what was durable,
//! clock skew and jumps, bulletins in any order, and a Byzantine device added by bulletin. The
//! harness here plays the transport, the disk and the clock: it carries out each replica's
//! outputs as the node would. Everything comes from the seed: the same seed replays the same
//! run.
//!
//! Invariants checked after the heal and a quiet period, and again after every node restarted
//! from what was durable and another quiet period (`check`):
//! 1. no acknowledged admit is lost: every node holds every admit it or another node answered;
//! 2. every replica converged: the same chain tips, the same records per ticket, the same
//!    conflicts, the same entry rules (bulletins that change them came in any order);
//! 3. every admit beyond policy is in the conflict list on every node (an independent replay
//!    under the rules in force);
//! 4. while the network is whole and quiet, no ticket is admitted beyond its rule once the
//!    earlier admits had time to propagate ([`PROPAGATION_BOUND_MS`]);
//! 5. restart equivalence: every node reopened from its store holds what the running one
//!    holds (records, conflicts, roster, revoked tickets, rules), and no clock follows a time
//!    beyond the drift bound (also checked mid-run, on a node each time it takes a bulletin);
//! 6. no node admits a revoked ticket once it holds the revocation;
//! 7. no panic;
//! 8. a strict zone is never over capacity: the people the gates let into the vip zone (strict
//!    at [`world::VIP_CAPACITY`]), less those who left through a gate or whose entry was
//!    undone, never exceed its capacity, at any moment, through splits, crashes and restarts.
//!
//! [`Fault`]s are the harness mishandling outputs; the sweep must catch each (the self-check).

mod byzantine;
mod check;
mod net;
mod plan;
mod world;

pub use plan::{Attack, ACTIVE_MS, SCENARIOS};
pub use world::NODES_MAX;

use byzantine::Byzantine;
use gatemesh_crdt::gate::bulletin::Bulletin;
use gatemesh_crdt::gate::GateLogic;
use gatemesh_crdt::protocol::replica::{Replica, ReplicaConfig};
use gatemesh_crdt::protocol::{Input, Output, Reply, RequestId, Topic, KIND_HELLO, KIND_SYNC};
use gatemesh_crdt::{ChainId, DeviceId, Direction, ForkProof, SyncMessage, Verdict};
use net::{Msg, Net, Payload};
use plan::Event;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BinaryHeap, HashMap, HashSet};
use world::{world, GENERAL_TICKETS};

/// Simulated ms of the base time (2026-06-01T00:00:00Z): inside the world's validity window.
const BASE_MS: u64 = 1_780_272_000_000;
/// Every node is given the time this often (its sync rounds come due on it).
const TICK_MS: u64 = 250;
/// Quiet time after the heal (and after the final restart) before the invariants are checked.
const QUIET_MS: u64 = 15_000;
/// How far ahead the clock of the "skew" scenario's last node runs: three days.
const FAR_AHEAD_MS: i64 = 3 * 86_400_000;
/// Of the local writes of a node with a flaky disk, the share that fail.
const WRITE_FAILURE_P: f64 = 0.1;

/// In a whole, loss-free network a record reaches every node within this (gossip latency, a
/// sync round, with margin).
pub const PROPAGATION_BOUND_MS: u64 = 2_000;
/// Sessions a node may offer one peer that refuses them within one periodic sync round (a
/// peer that has not had our hello): more is a loop of refused requests, not a retry.
const REFUSED_PER_ROUND_MAX: u32 = 4;

/// Test-only harness bugs; the sweep must report each of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Node 0's harness drops what it receives (gossip and sync alike).
    MergeDropsRecords,
    /// The harness reports a durable write done before it is (the write happens on the next
    /// tick): answers and publications go out early.
    AckBeforeDurable,
    /// The harness hands gossip to replicas late and runs no sync rounds while the event is on:
    /// nodes decide on a stale index.
    StaleIndex,
    /// The harness keeps and passes on bulletins but never hands them to its replica.
    BulletinsIgnored,
    /// A restart follows every clock in the store, however far ahead (a restart trusting
    /// more than the running node: a peer's clock from the future becomes the node's own).
    RestoreTrustsClocks,
    /// A write that failed is reported done (a position that was never durable goes on the
    /// wire, and the device writes it again with other content after a restart).
    FailedWriteReported,
    /// A restart reads the store before it applies the bulletins: the records of a device
    /// added by bulletin are refused as an unknown device's.
    RosterAfterStore,
    /// A restart forgets a revocation that came before its device's addition: the device
    /// comes back with no cut.
    EarlyRevocationLost,
    /// Planted in the ledger ([`gatemesh_crdt::ledger::Planted`]): a forged rival placed
    /// before the genuine change is taken as fork evidence against the honest chain.
    RivalTakenAsEvidence,
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub violations: Vec<String>,
    pub scans: usize,
    pub admits: usize,
    pub double_entries: usize,
    pub messages: u64,
    /// Records of the Byzantine device node 0 holds at the first check (its attacks reach the
    /// ledger: an attacker whose messages were all ignored would test nothing).
    pub byzantine_records: usize,
}

struct Node {
    replica: Option<Replica>,
    /// What survives a crash: local changes (fdatasync) and what was written before them.
    durable: Vec<Vec<u8>>,
    /// Received changes written without fdatasync since the last durable write: a crash keeps
    /// a prefix of them (sled writes in order).
    relaxed: Vec<Vec<u8>>,
    /// Fault AckBeforeDurable: reported written, not yet written.
    unwritten: Vec<Vec<u8>>,
    forks: Vec<ForkProof>,
    /// Bulletins kept in the node's data directory (they survive a crash).
    bulletins: Vec<Bulletin>,
    chain: ChainId,
    skew_ms: i64,
    /// Fault StaleIndex: gossip received, not yet handed over.
    late: Vec<(u64, usize, Vec<u8>)>,
    /// The refund reached this node (it holds the revocation).
    has_refund: bool,
    /// Its disk fails some local writes (an error, then success on a later write).
    flaky_disk: bool,
}

struct Acked {
    node: usize,
    scan_id: String,
    ticket: String,
    at: u64,
}

/// A scan waiting for its answer.
struct Asked {
    node: usize,
    ticket: String,
    vip: bool,
    out: bool,
}

/// An outstanding sync-protocol request: who asked whom, and whether it carries a bulletin.
#[derive(Clone, Copy)]
struct Request {
    from: usize,
    to: usize,
    asked: gatemesh_crdt::protocol::Asked,
}

struct Sim {
    rng: StdRng,
    nodes: Vec<Node>,
    devices: Vec<DeviceId>,
    index_of: HashMap<DeviceId, usize>,
    net: Net,
    queue: BinaryHeap<Msg>,
    seq: u64,
    now: u64,
    fault: Option<Fault>,
    requests: HashMap<u64, Request>,
    /// Sync requests refused, by (asker, peer, periodic round).
    refused: HashMap<(usize, usize, u64), u32>,
    next_token: u64,
    asked: HashMap<RequestId, Asked>,
    next_request: RequestId,
    acked: Vec<Acked>,
    annulled: HashSet<String>,
    /// The network has been whole and every node up since this time.
    calm_since: Option<u64>,
    /// Ledger changes honest nodes published (the Byzantine device crafts from them).
    published: Vec<Vec<u8>>,
    byz: Byzantine,
    outcome: Outcome,
    /// Who is in the strict vip zone now, as the gates' answers let them in and out: (ticket,
    /// scan id of the entry).
    vip_inside: Vec<(String, String)>,
    /// Undo requests sent, and the admit each undoes.
    undoing: HashMap<RequestId, String>,
    /// Exits out of the vip zone answered, by scan id, with their ticket.
    vip_exits: HashMap<String, String>,
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
    let mut events = plan::plan(&mut rng, nodes, scenario);
    events.extend(plan::rule_changes(seed, nodes));
    events.extend(plan::strict_scans(seed, nodes));
    events.extend(plan::gate_pauses(seed, nodes));
    events.sort_by_key(|(t, _)| *t);
    let mut sim = Sim::new(rng, nodes, scenario, fault);
    for n in 0..nodes {
        sim.open(n);
    }
    for n in 0..nodes {
        sim.connect(n);
    }
    // The heal: network whole, every node up.
    events.push((ACTIVE_MS, Event::Heal));
    for n in 0..nodes {
        events.push((ACTIVE_MS, Event::Restart { node: n }));
    }
    // Follow-ups of scans (a screenshot at another gate, a re-entry) may come after the heal:
    // the quiet period starts after the last of them, so an admit made just before the check
    // has had its time to spread.
    let last = events.iter().map(|(t, _)| *t).max().unwrap_or(ACTIVE_MS);
    sim.run_until(events, last.max(ACTIVE_MS) + QUIET_MS);
    sim.check("");
    // Every node restarts from what was durable; after another quiet period, the same.
    let doubles = sim.outcome.double_entries;
    for n in 0..nodes {
        sim.crash(n);
    }
    let end = sim.now + QUIET_MS;
    let restarts = (0..nodes)
        .map(|node| (sim.now, Event::Restart { node }))
        .collect();
    sim.run_until(restarts, end);
    sim.check("after every node restarted: ");
    sim.outcome.double_entries = doubles;
    sim.outcome
}

impl Sim {
    fn new(mut rng: StdRng, nodes: usize, scenario: &str, fault: Option<Fault>) -> Sim {
        let skew = scenario == "skew" || scenario == "mixed";
        let devices: Vec<DeviceId> = world().identities.iter().map(|i| i.id()).collect();
        let index_of = devices.iter().enumerate().map(|(i, d)| (*d, i)).collect();
        let nodes = (0..nodes)
            .map(|_| Node {
                replica: None,
                durable: Vec::new(),
                relaxed: Vec::new(),
                unwritten: Vec::new(),
                forks: Vec::new(),
                bulletins: Vec::new(),
                chain: ChainId(rng.gen()),
                skew_ms: if skew {
                    rng.gen_range(-5_000..5_000)
                } else {
                    0
                },
                late: Vec::new(),
                has_refund: false,
                flaky_disk: false,
            })
            .collect::<Vec<Node>>();
        let mut nodes = nodes;
        // "skew": the last node's clock runs three days ahead (its records carry that time; no
        // other node may follow it). "crash", "mixed": the first node's disk fails some writes.
        if scenario == "skew" {
            if let Some(last) = nodes.last_mut() {
                last.skew_ms = FAR_AHEAD_MS;
            }
        }
        if scenario == "crash" || scenario == "mixed" {
            nodes[0].flaky_disk = true;
        }
        Sim {
            rng,
            nodes,
            devices,
            index_of,
            net: Net::default(),
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            fault,
            requests: HashMap::new(),
            refused: HashMap::new(),
            next_token: 1,
            asked: HashMap::new(),
            next_request: 1,
            acked: Vec::new(),
            annulled: HashSet::new(),
            calm_since: Some(0),
            published: Vec::new(),
            byz: Byzantine::new(),
            outcome: Outcome::default(),
            vip_inside: Vec::new(),
            undoing: HashMap::new(),
            vip_exits: HashMap::new(),
        }
    }

    fn node_now(&self, n: usize) -> u64 {
        (BASE_MS as i64 + self.now as i64 + self.nodes[n].skew_ms).max(0) as u64
    }

    /// Run the plan's events, messages and ticks in time order until `end`.
    fn run_until(&mut self, events: Vec<(u64, Event)>, end: u64) {
        let mut events = events.into_iter().peekable();
        let mut next_tick = (self.now / TICK_MS + 1) * TICK_MS;
        loop {
            let next_event = events.peek().map(|(t, _)| *t).unwrap_or(u64::MAX);
            let next_msg = self.queue.peek().map(|m| m.at).unwrap_or(u64::MAX);
            let t = next_event.min(next_msg).min(next_tick);
            if t > end {
                self.now = end;
                return;
            }
            self.now = t;
            if t == next_event {
                if let Some((_, e)) = events.next() {
                    self.on_event(e);
                }
            } else if t == next_msg {
                if let Some(m) = self.queue.pop() {
                    self.deliver(m);
                }
            } else {
                self.tick();
                next_tick += TICK_MS;
            }
        }
    }

    /// A node's replica from what its store held: durable changes, fork proofs, bulletins.
    fn open(&mut self, n: usize) {
        let now = self.node_now(n);
        let replica = self.reopened(n, &self.nodes[n].durable, now);
        self.nodes[n].replica = Some(replica);
    }

    /// Node `n`'s replica as a restart at `now` builds it from `stored`, its fork proofs and
    /// bulletins: the very path a node opening its store takes.
    pub(super) fn reopened(&self, n: usize, stored: &[Vec<u8>], now: u64) -> Replica {
        let w = world();
        let node = &self.nodes[n];
        let bulletins: Vec<Bulletin> = match self.fault {
            Some(Fault::BulletinsIgnored) => Vec::new(),
            Some(Fault::EarlyRevocationLost) => without_early_revocations(&node.bulletins),
            _ => node.bulletins.clone(),
        };
        let before_store = match self.fault {
            Some(Fault::RosterAfterStore) => &[][..],
            _ => &bulletins[..],
        };
        let bound = match self.fault {
            Some(Fault::RestoreTrustsClocks) => u64::MAX / 2,
            _ => now,
        };
        let (mut ledger, _refused) = GateLogic::open_ledger(
            &w.package,
            Some(&w.identities[n]),
            node.chain,
            before_store,
            &node.forks,
            stored.iter().map(Vec::as_slice),
            bound,
        )
        .expect("a node's durable log opens");
        if self.fault == Some(Fault::RivalTakenAsEvidence) {
            ledger.plant(gatemesh_crdt::ledger::Planted::RivalTakenAsEvidence);
        }
        let mut gate = GateLogic::new(&w.package, ledger, None).expect("gate logic");
        let _refused = gate.restore_bulletins(&bulletins);
        let config = ReplicaConfig {
            gate: "north".into(),
            direction: None,
            journal: false,
            catch_up_ms: gatemesh_crdt::ledger::catchup::CATCH_UP_MAX_MS,
        };
        let mut replica = Replica::new(gate, &w.package.certificates, config);
        let _ = replica.start(now);
        replica
    }

    /// Node `n` connects to every node that is up (and they to it).
    fn connect(&mut self, n: usize) {
        for p in 0..self.nodes.len() {
            if p != n && self.nodes[p].replica.is_some() && self.nodes[n].replica.is_some() {
                let (dn, dp) = (self.devices[n], self.devices[p]);
                self.input(n, Input::PeerUp { peer: dp });
                self.input(p, Input::PeerUp { peer: dn });
            }
        }
    }

    /// Hand one input to node `n`'s replica and carry out what it asks.
    fn input(&mut self, n: usize, input: Input) {
        let now = self.node_now(n);
        let Some(r) = self.nodes[n].replica.as_mut() else {
            return; // down: nothing reaches it
        };
        let outs = r.handle(now, input);
        self.carry_out(n, outs);
    }

    /// Carry out outputs as the node does: writes first, then the rest, then report the writes
    /// done (unless the fault reports them early).
    fn carry_out(&mut self, n: usize, outs: Vec<Output>) {
        let mut written = None;
        let mut rest = Vec::new();
        let mut writes = Vec::new();
        for o in outs {
            match o {
                Output::Persist {
                    id,
                    changes,
                    durable,
                } => {
                    writes.push((changes, durable));
                    written = Some(id);
                }
                other => rest.push(other),
            }
        }
        // One store write for the batch, as the node makes it: a flaky disk fails it whole
        // (local writes only: received changes come again by sync).
        let fails = self.nodes[n].flaky_disk
            && writes.iter().all(|(_, durable)| *durable)
            && !writes.is_empty()
            && self.rng.gen_bool(WRITE_FAILURE_P);
        if !fails {
            for (changes, durable) in writes {
                self.write(n, changes, durable);
            }
        }
        for o in rest {
            self.carry_out_one(n, o);
        }
        match written {
            Some(upto) if fails && self.fault != Some(Fault::FailedWriteReported) => {
                let message = "the disk is full".to_string();
                self.input(n, Input::PersistFailed { upto, message });
            }
            Some(upto) => self.input(n, Input::Persisted { upto }),
            None => {}
        }
    }

    fn write(&mut self, n: usize, changes: Vec<Vec<u8>>, durable: bool) {
        let node = &mut self.nodes[n];
        match (durable, self.fault) {
            (true, Some(Fault::AckBeforeDurable)) => node.unwritten.extend(changes),
            (true, _) => {
                node.durable.append(&mut node.relaxed);
                node.durable.extend(changes);
            }
            (false, _) => node.relaxed.extend(changes),
        }
    }

    fn carry_out_one(&mut self, n: usize, o: Output) {
        match o {
            Output::Reply { id, reply } => self.on_reply(n, id, reply),
            Output::SaveForks(p) => self.nodes[n].forks = p,
            Output::SaveBulletin { bytes, .. } => {
                let w = world();
                let keys = w.package.config.organizer_verifying_keys().expect("keys");
                if let Ok(b) = Bulletin::from_bytes(&bytes, &w.package.config.event_id, &keys) {
                    self.nodes[n].bulletins.push(b);
                }
            }
            Output::Publish { topic, data } => {
                if topic == Topic::Ledger {
                    self.published.push(data.clone());
                }
                for to in (0..self.nodes.len()).filter(|to| *to != n) {
                    self.send(
                        n,
                        to,
                        Payload::Gossip {
                            topic,
                            data: data.clone(),
                        },
                    );
                }
            }
            Output::Send { to, data, asked } => {
                let Some(&to) = self.index_of.get(&to).filter(|t| **t < self.nodes.len()) else {
                    return;
                };
                let token = self.next_token;
                self.next_token += 1;
                self.requests.insert(token, Request { from: n, to, asked });
                self.send(n, to, Payload::Request { token, data });
            }
            Output::Respond { token, data } => {
                if let Some(r) = self.requests.get(&token).copied() {
                    if data.is_empty() && r.asked == gatemesh_crdt::protocol::Asked::Sync {
                        self.refusal(r.from, r.to);
                    }
                    self.send(n, r.from, Payload::Answer { token, data });
                }
            }
            _ => {} // admission and gossip forwarding: the simulated network floods
        }
    }

    /// Invariant: a node offers a peer that refuses its sessions only a few per round.
    fn refusal(&mut self, asker: usize, peer: usize) {
        let round = self.now / gatemesh_crdt::protocol::replica::SYNC_INTERVAL_MS;
        let count = self.refused.entry((asker, peer, round)).or_default();
        *count += 1;
        if *count == REFUSED_PER_ROUND_MAX + 1 {
            self.outcome.violations.push(format!(
                "node {asker} offered node {peer} more than {REFUSED_PER_ROUND_MAX} sessions it \
                 refused within one sync round (round {round})"
            ));
        }
    }

    fn on_reply(&mut self, n: usize, id: RequestId, reply: Reply) {
        if let (Some(scan_id), Reply::Annulled { .. }) = (self.undoing.remove(&id), &reply) {
            self.vip_undone(&scan_id);
        }
        let Some(asked) = self.asked.remove(&id) else {
            return;
        };
        let Reply::Decision(d) = reply else {
            return;
        };
        self.outcome.scans += 1;
        if d.verdict != Verdict::Admit || d.repeat {
            return;
        }
        self.outcome.admits += 1;
        if self.nodes[n].has_refund && asked.ticket == world().general[GENERAL_TICKETS - 1].0 {
            self.outcome.violations.push(format!(
                "node {n} admitted ticket {} after it had the revocation",
                asked.ticket
            ));
        }
        if !asked.out && !asked.vip {
            self.calm_double_entry(n, &asked.ticket);
        }
        self.vip_moves(&d, &asked.ticket);
        self.acked.push(Acked {
            node: asked.node,
            scan_id: d.scan_id.clone(),
            ticket: asked.ticket,
            at: self.now,
        });
    }

    /// Invariant 4: a whole, quiet network lets no entry beyond the rule through once the
    /// earlier ones had time to propagate (tickets the Byzantine device touched excepted: it
    /// tells whom it likes). The rule is the one node `n` judges by now.
    fn calm_double_entry(&mut self, n: usize, ticket: &str) {
        let Some(since) = self.calm_since else { return };
        if self.byz.tickets.contains(ticket) {
            return;
        }
        let allowed = self.nodes[n].replica.as_ref().map_or(1, |r| {
            let rule = r.gate().ledger().index().rule("general");
            rule.max_entries as usize
        });
        let earlier: Vec<&Acked> = (self.acked.iter())
            .filter(|a| {
                a.ticket == ticket
                    && !self.annulled.contains(&a.scan_id)
                    && a.at >= since
                    && self.now >= a.at + PROPAGATION_BOUND_MS
            })
            .collect();
        if earlier.len() < allowed {
            return;
        }
        if let Some(e) = earlier.first() {
            self.outcome.violations.push(format!(
                "double entry while whole and quiet: ticket {ticket} admitted by node {} at {} ms and by node {n} at {} ms",
                e.node, e.at, self.now
            ));
        }
    }

    fn scan(&mut self, n: usize, code: &str, gate: &str, out: bool, asked: Asked) {
        if self.nodes[n].replica.is_none() {
            return; // a crashed scanner scans nothing
        }
        let id = self.next_request;
        self.next_request += 1;
        self.asked.insert(id, asked);
        let input = Input::Scan {
            id,
            code: code.as_bytes().to_vec(),
            gate: Some(gate.to_string()),
            direction: out.then_some(Direction::Out),
            manual: false,
            origin: None,
        };
        self.input(n, input);
    }

    /// Invariant 8: an answered admit into the vip zone lets someone in, an answered exit lets
    /// one of the ticket's holders out; never more inside than the capacity.
    fn vip_moves(&mut self, d: &gatemesh_crdt::gate::Decision, ticket: &str) {
        match d.direction {
            Direction::In if d.gate == "vip" => {
                self.vip_inside
                    .push((ticket.to_string(), d.scan_id.clone()));
                self.vip_within("an admit");
            }
            Direction::Out if d.gate == "vip-exit" => {
                if let Some(i) = self.vip_inside.iter().position(|(t, _)| t == ticket) {
                    self.vip_inside.remove(i);
                    self.vip_exits.insert(d.scan_id.clone(), ticket.to_string());
                }
            }
            _ => {}
        }
    }

    /// An undo answered: an entry undone lets its holder out of the count, an exit undone puts
    /// its holder back in.
    fn vip_undone(&mut self, scan_id: &str) {
        self.vip_inside.retain(|(_, s)| s != scan_id);
        if let Some(ticket) = self.vip_exits.remove(scan_id) {
            self.vip_inside.push((ticket, scan_id.to_string()));
            self.vip_within("an exit undone");
        }
    }

    /// Invariant 8 after `what` put someone in the vip zone.
    fn vip_within(&mut self, what: &str) {
        if self.vip_inside.len() as u64 > world::VIP_CAPACITY {
            self.outcome.violations.push(format!(
                "the strict vip zone holds {} at {} ms ({what}), over its capacity of {}",
                self.vip_inside.len(),
                self.now,
                world::VIP_CAPACITY
            ));
        }
    }

    fn annul(&mut self, n: usize) {
        let Some((ticket_id, scan_id)) = self
            .acked
            .iter()
            .rev()
            .find(|a| a.node == n && !self.annulled.contains(&a.scan_id))
            .map(|a| (a.ticket.clone(), a.scan_id.clone()))
        else {
            return;
        };
        if self.nodes[n].replica.is_none() {
            return;
        }
        self.annulled.insert(scan_id.clone());
        let id = self.next_request;
        self.next_request += 1;
        self.undoing.insert(id, scan_id.clone());
        self.input(
            n,
            Input::Annul {
                id,
                ticket_id,
                scan_id,
                phone: None,
            },
        );
    }

    /// A bulletin handed to a node by the organizer.
    fn hand_bulletin(&mut self, n: usize, b: &Bulletin) {
        if b.hash() == world().refund.hash() {
            self.nodes[n].has_refund = true;
        }
        if self.fault != Some(Fault::BulletinsIgnored) {
            self.input(
                n,
                Input::Bulletin {
                    id: None,
                    from: None,
                    bytes: b.bytes().to_vec(),
                },
            );
        }
        self.check_restart_now(n);
    }

    fn byzantine(&mut self, n: usize, attack: Attack, ticket: usize, sync: bool) {
        let ticket = &world().general[ticket].0;
        let now = self.node_now(n);
        let changes = self.byz.craft(attack, ticket, &self.published, now);
        let from = world().byzantine().id();
        // It says hello first, as any member does: without one its gossip is ignored.
        let mut hello = vec![KIND_HELLO];
        hello.extend_from_slice(&world().package.config.fingerprint());
        self.input(
            n,
            Input::SyncRequest {
                from,
                token: 0,
                data: hello,
            },
        );
        if sync {
            let msg = SyncMessage {
                version: 1,
                changes,
                ..SyncMessage::default()
            };
            let mut data = vec![KIND_SYNC];
            data.extend_from_slice(&msg.encode());
            self.input(
                n,
                Input::SyncRequest {
                    from,
                    token: 0,
                    data,
                },
            );
        } else {
            for data in changes {
                self.input(
                    n,
                    Input::Gossip {
                        from,
                        token: 0,
                        topic: Topic::Ledger,
                        data,
                    },
                );
            }
        }
    }

    fn tick(&mut self) {
        for n in 0..self.nodes.len() {
            // Fault AckBeforeDurable: what was reported written is written only now.
            let node = &mut self.nodes[n];
            if !node.unwritten.is_empty() {
                node.durable.append(&mut node.relaxed);
                node.durable.append(&mut node.unwritten);
            }
            let due: Vec<(usize, Vec<u8>)> = {
                let now = self.now;
                let (due, keep) = node.late.drain(..).partition(|(at, _, _)| *at <= now);
                node.late = keep;
                due.into_iter().map(|(_, from, c)| (from, c)).collect()
            };
            for (from, data) in due {
                let from = self.devices[from];
                self.input(
                    n,
                    Input::Gossip {
                        from,
                        token: 0,
                        topic: Topic::Ledger,
                        data,
                    },
                );
            }
            if self.fault == Some(Fault::StaleIndex) && self.now < ACTIVE_MS {
                continue; // no sync rounds: the stale node learns only from late gossip
            }
            self.input(n, Input::Tick);
        }
    }

    fn crash(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.replica.is_none() {
            return;
        }
        node.replica = None;
        node.unwritten.clear();
        node.late.clear();
        let kept = self.rng.gen_range(0..=node.relaxed.len());
        let relaxed = std::mem::take(&mut node.relaxed);
        node.durable.extend(relaxed.into_iter().take(kept));
        self.calm_since = None;
        let dn = self.devices[n];
        for p in 0..self.nodes.len() {
            if p != n {
                self.input(p, Input::PeerDown { peer: dn });
            }
        }
    }

    fn restart(&mut self, n: usize) {
        if self.nodes[n].replica.is_some() {
            return;
        }
        self.open(n);
        self.connect(n);
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
                let (id, code) = if vip {
                    &w.vip[ticket]
                } else {
                    &w.general[ticket]
                };
                let asked = Asked {
                    node,
                    ticket: id.clone(),
                    vip,
                    out,
                };
                self.scan(node, code, gate, out, asked);
            }
            Event::Annul { node } => self.annul(node),
            Event::PauseGate { node, paused } => {
                if self.nodes[node].replica.is_some() {
                    let id = self.next_request;
                    self.next_request += 1;
                    let gate = Some("north".to_string());
                    self.input(node, Input::PauseGate { id, gate, paused });
                }
            }
            Event::Crash { node } => self.crash(node),
            Event::Restart { node } => self.restart(node),
            Event::Split(side) => self.net.split = Some(side),
            Event::OneWay(a, b) => self.net.oneway = Some((a, b)),
            Event::Loss(loss, dup) => {
                self.net.loss = loss;
                self.net.dup = dup;
            }
            Event::Heal => self.heal(),
            Event::ClockJump { node, by_ms } => self.nodes[node].skew_ms += by_ms,
            Event::Refund { node } => self.hand_bulletin(node, &w.refund),
            Event::AddByzantine { node } => self.hand_bulletin(node, &w.byz_addition),
            Event::Rule { node, two: true } => self.hand_bulletin(node, &w.rule_two),
            Event::Rule { node, two: false } => self.hand_bulletin(node, &w.rule_one),
            Event::RevokeByzantine { node } => self.hand_bulletin(node, &w.byz_revocation),
            Event::Byzantine {
                node,
                attack,
                ticket,
                sync,
            } => self.byzantine(node, attack, ticket, sync),
        }
        self.update_calm();
    }

    /// The network is whole again: connections are made anew (fresh sync sessions, bulletins
    /// handed over).
    fn heal(&mut self) {
        self.net = Net::default();
        for n in 0..self.nodes.len() {
            for p in 0..self.nodes.len() {
                if p != n && self.nodes[p].replica.is_some() {
                    let dp = self.devices[p];
                    self.input(n, Input::PeerDown { peer: dp });
                    self.input(n, Input::PeerUp { peer: dp });
                }
            }
        }
    }

    fn update_calm(&mut self) {
        let calm = self.net.whole() && self.nodes.iter().all(|n| n.replica.is_some());
        match (calm, self.calm_since) {
            (true, None) => self.calm_since = Some(self.now),
            (false, _) => self.calm_since = None,
            _ => {}
        }
    }
}

/// Fault EarlyRevocationLost: the bulletins as a restart that forgets early revocations sees
/// them, in the order they came: a revocation of a device neither in the package nor added by
/// an earlier bulletin goes.
fn without_early_revocations(bulletins: &[Bulletin]) -> Vec<Bulletin> {
    let mut known: HashSet<String> = (world().package.certificates.iter())
        .map(|c| c.device_id.clone())
        .collect();
    let mut kept = Vec::new();
    for b in bulletins {
        let mut b = b.clone();
        b.body
            .revoke_devices
            .retain(|r| known.contains(&r.device_id));
        known.extend(b.added.iter().map(|c| c.device_id.clone()));
        kept.push(b);
    }
    kept
}

/// The scenario of seed `s` in a sweep, and its node count: mostly 3 to 5 nodes, one seed in
/// fifty with 20 and one in two hundred with 50.
pub fn sweep_case(seed: u64) -> (usize, &'static str) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let scenario = SCENARIOS[rng.gen_range(0..SCENARIOS.len())];
    let nodes = match rng.gen_range(0..200) {
        0 => 50,
        1..=4 => 20,
        _ => rng.gen_range(3..=5),
    };
    (nodes, scenario)
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
    pub byzantine_records: usize,
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
        report.byzantine_records += o.byzantine_records;
        if !o.violations.is_empty() {
            report.failing.push((seed, nodes, scenario, o.violations));
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}
