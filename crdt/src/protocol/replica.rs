//! One device's replica of the event: the gate logic and ledger, the peers, the sync sessions,
//! the bulletin hand-over, and the answers that wait for their durable write. An I/O-free state
//! machine: [`Replica::handle`] takes the time and one [`Input`] and returns the [`Output`]s the
//! driver carries out, in order. The node (tokio, libp2p, sled, HTTP) and the simulator (a
//! seeded network) drive this same code.
//!
//! Rules it keeps, whoever drives it:
//! - an answer to a local request, and the publication of its change, come only after the write
//!   of that change (and every write before it) is reported done;
//! - a local change is not served to peers before it is durable (a device restarting after a
//!   crash writes that position again, and must not have shown the lost one to anybody);
//! - received changes are written (relaxed) before gossip forwards them.
//!
//! Layout: this module holds the state, the dispatch and the local requests; `session` the
//! network side (gossip, sync sessions, bulletins between peers, peers coming and going).

use crate::gate::bulletin::Bulletin;
use crate::gate::offline::{self, ReconcileRequest, ReconcileResponse};
use crate::gate::{Decision, GateError, GateLogic, ScanRequest};
use crate::ledger::ForkProof;
use crate::protocol::bundle;
use crate::protocol::peers::Peers;
use crate::protocol::{
    Event, Input, Output, PersistId, Reconciler, Reply, RequestId, Token, Topic,
};
use crate::record::{DeviceId, Direction};
use std::collections::VecDeque;

/// How often every connected peer is offered a sync round (repair of anything gossip missed).
pub const SYNC_INTERVAL_MS: u64 = 3_000;
/// Sync rounds of our own in flight at once. After a split every peer of the other side holds
/// the same missing records; asking one at a time means the later rounds find us already
/// current and carry almost nothing. (Measured by `gatemesh-bench mesh`, 10,000 records of
/// ~270 B per side: two at once, each node received 21 MB to heal and the heal took 3.3–5.2 s;
/// one at once, 9–10 MB and 2.1–2.7 s.)
pub const SYNC_SESSIONS_MAX: usize = 1;
/// Local answers waiting for their write at once; beyond it new requests are refused `busy`.
pub const WAITING_MAX: usize = 4096;

/// What a replica is set up with besides the event.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// The gate a request without one is decided for.
    pub gate: String,
    pub direction: Option<Direction>,
    /// Keep every record in arrival order for [`Replica::journal_page`] (the bridge).
    pub journal: bool,
    /// How long after its start the node says it is catching up (answers `synced: false`)
    /// unless every peer it reaches finished a sync session first
    /// ([`crate::ledger::catchup::CATCH_UP_MAX_MS`] on a mesh); 0 for a device on its own.
    pub catch_up_ms: u64,
}

/// Counters of the mesh side, as `!status` and `/metrics` report them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub gossip_accepted: u64,
    pub gossip_rejected: u64,
    pub gossip_bytes_in: u64,
    pub gossip_bytes_out: u64,
    /// Ledger gossip messages published (each one change or a bundle of several).
    pub gossip_messages_out: u64,
    pub sync_bytes_in: u64,
    pub sync_bytes_out: u64,
    pub sync_failures: u64,
    pub rejected_messages: u64,
    pub peers_penalized: u64,
    pub sync_frames_refused: u64,
    pub reconciled: u64,
    /// Peers refused because they judge by another event configuration.
    pub event_mismatch: u64,
}

/// An answer waiting for its write.
struct Waiting {
    persist: PersistId,
    id: Option<RequestId>,
    reply: Reply,
    /// Changes to publish once durable, and the chain position they reach.
    publish: Vec<Vec<u8>>,
    own_seq: u32,
    event: Option<Event>,
    /// A peer's request answered once durable (its token and the answer).
    respond: Option<(Token, Vec<u8>)>,
}

pub struct Replica {
    pub(crate) gate: GateLogic,
    pub(crate) peers: Peers,
    pub(crate) config: ReplicaConfig,
    pub(crate) counters: Counters,
    pub(crate) out: Vec<Output>,
    pub(crate) now_ms: u64,
    next_persist: PersistId,
    /// Every write up to here is done.
    done_upto: PersistId,
    waiting: VecDeque<Waiting>,
    /// Our own chain's position that is durable (served to peers up to here).
    pub(crate) own_durable: u32,
    pub(crate) next_sync_ms: u64,
    /// Where the next periodic round starts among the online peers: each round starts further
    /// on, so with more peers than [`SYNC_SESSIONS_MAX`] every peer gets its
    /// turn (a fixed order would sync with the same few peers for ever).
    pub(crate) sync_cursor: usize,
    pub(crate) journal: Option<Vec<crate::RecordRef>>,
    doubles_reported: usize,
    /// Records changed since [`Replica::take_changed`] was last asked.
    changed: bool,
    pub(crate) catch_up: crate::ledger::catchup::CatchUp,
    /// The event configuration this node judges by ([`crate::event::EventConfig::fingerprint`]).
    pub(crate) fingerprint: [u8; 32],
    /// When room of each strict zone was last asked for, and last scanned into here.
    pub(crate) room_asked: std::collections::BTreeMap<String, u64>,
    pub(crate) room_scanned: std::collections::BTreeMap<String, u64>,
    /// Room given to each gate per zone this minute: (minute, gifts).
    pub(crate) room_gifts: std::collections::BTreeMap<(DeviceId, String), (u64, u32)>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("gate", &self.config.gate)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// A replica over gate logic whose ledger holds what the store held (all of it durable).
    pub fn new(
        gate: GateLogic,
        certificates: &[crate::event::certificate::DeviceCertificate],
        config: ReplicaConfig,
    ) -> Replica {
        let own_durable = gate
            .ledger()
            .local_chain()
            .map_or(0, |c| gate.ledger().chains().len_of(c));
        let journal = config.journal.then(|| {
            let mut all = Vec::new();
            gate.ledger()
                .index()
                .for_each_record(|r| all.push(r.clone()));
            all
        });
        let doubles_reported = gate.ledger().index().conflict_count();
        let mut gate = gate;
        gate.ledger_mut().set_own_durable(own_durable);
        let mut peers = Peers::from_certificates(certificates);
        for b in gate.bulletins() {
            for c in &b.added {
                peers.enroll(c);
            }
            for r in &b.body.revoke_devices {
                if let Some(id) = DeviceId::parse(&r.device_id) {
                    peers.revoke(id);
                }
            }
        }
        let catch_up = match config.catch_up_ms {
            0 => crate::ledger::catchup::CatchUp::none(),
            _ => crate::ledger::catchup::CatchUp::default(),
        };
        let fingerprint = gate.config().fingerprint();
        Replica {
            catch_up,
            fingerprint,
            peers,
            gate,
            config,
            counters: Counters::default(),
            out: Vec::new(),
            now_ms: 0,
            next_persist: 1,
            done_upto: 0,
            waiting: VecDeque::new(),
            own_durable,
            next_sync_ms: 0,
            sync_cursor: 0,
            journal,
            doubles_reported,
            changed: true,
            room_asked: Default::default(),
            room_scanned: Default::default(),
            room_gifts: Default::default(),
        }
    }

    /// Take one input at `now_ms`; what the driver must do, in order.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        self.now_ms = now_ms;
        self.catch_up.start(now_ms);
        match input {
            Input::Scan {
                id,
                code,
                gate,
                direction,
                manual,
                origin,
            } => self.scan(id, &code, gate, direction, (manual, origin.as_deref())),
            Input::Annul {
                id,
                ticket_id,
                scan_id,
                phone,
            } => self.annul(id, &ticket_id, &scan_id, phone.as_deref()),
            Input::PauseGate { id, gate, paused } => self.pause_gate(id, gate, paused),
            Input::Reconcile { id, request, by } => self.reconcile(id, request, by),
            Input::Bulletin { id, from, bytes } => self.bulletin(id, from, &bytes),
            Input::Block { devices, block } => self.block(devices, block),
            Input::Persisted { upto } => self.persisted(upto),
            Input::PersistFailed { upto, message } => self.persist_failed(upto, &message),
            other => self.network(other),
        }
        std::mem::take(&mut self.out)
    }

    /// The outputs that allow every enrolled device a connection may come from now (at start).
    pub fn start(&mut self, now_ms: u64) -> Vec<Output> {
        self.now_ms = now_ms;
        self.catch_up.start(now_ms);
        let allowed: Vec<_> = self
            .peers
            .all()
            .filter(|(id, _)| self.peers.admissible(**id, now_ms))
            .map(|(id, p)| Output::Allow {
                peer: *id,
                key: p.key,
            })
            .collect();
        self.out.extend(allowed);
        std::mem::take(&mut self.out)
    }

    /// Write `changes` (`durable` for local ones); returns the write's id.
    pub(crate) fn persist(&mut self, changes: Vec<Vec<u8>>, durable: bool) -> PersistId {
        let id = self.next_persist;
        self.next_persist += 1;
        self.out.push(Output::Persist {
            id,
            changes,
            durable,
        });
        id
    }

    /// Answer `id` once every write issued so far is done; publish `publish` then.
    pub(crate) fn answer_after_writes(
        &mut self,
        id: Option<RequestId>,
        reply: Reply,
        publish: Vec<Vec<u8>>,
        event: Option<Event>,
    ) {
        self.after_writes(Waiting {
            persist: 0,
            id,
            reply,
            publish,
            own_seq: 0,
            event,
            respond: None,
        });
    }

    /// Answer a peer's request (`token`) with `data` once every write issued so far is done;
    /// publish `publish` then.
    pub(crate) fn respond_after_writes(
        &mut self,
        token: Token,
        data: Vec<u8>,
        publish: Vec<Vec<u8>>,
        event: Event,
    ) {
        self.after_writes(Waiting {
            persist: 0,
            id: None,
            reply: Reply::BulletinAccepted,
            publish,
            own_seq: 0,
            event: Some(event),
            respond: Some((token, data)),
        });
    }

    /// `w` waits for every write issued so far, and the chain position they reach.
    fn after_writes(&mut self, mut w: Waiting) {
        w.persist = self.next_persist - 1;
        w.own_seq = self.own_len();
        self.waiting.push_back(w);
        // Nothing new to write (a repeat, a refusal): answer as soon as the earlier writes are.
        self.persisted(self.done_upto);
    }

    /// Writes up to `upto` are done: the answers waiting for them go out, and the changes
    /// they made durable are published together, as few gossip messages as their size allows
    /// (scans that shared one write share one message).
    fn persisted(&mut self, upto: PersistId) {
        self.done_upto = self.done_upto.max(upto);
        let mut publish = Vec::new();
        while self.waiting.front().is_some_and(|w| w.persist <= upto) {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            self.own_durable = self.own_durable.max(w.own_seq);
            self.gate.ledger_mut().set_own_durable(self.own_durable);
            if let Some(id) = w.id {
                self.out.push(Output::Reply { id, reply: w.reply });
            }
            if let Some((token, data)) = w.respond {
                self.out.push(Output::Respond { token, data });
            }
            publish.extend(w.publish);
            if let Some(e) = w.event {
                self.out.push(Output::Event(e));
            }
        }
        self.publish_changes(publish);
        self.asks_after_writes();
    }

    /// Whether every write issued so far is done.
    pub(crate) fn writes_done(&self) -> bool {
        self.done_upto + 1 >= self.next_persist
    }

    /// Publish changes on the ledger topic, bundled within [`bundle::fits`].
    fn publish_changes(&mut self, changes: Vec<Vec<u8>>) {
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        for change in changes {
            if !batch.is_empty() && !bundle::fits(batch.len(), bytes, change.len()) {
                self.publish_bundle(std::mem::take(&mut batch));
                bytes = 0;
            }
            bytes += change.len();
            batch.push(change);
        }
        if !batch.is_empty() {
            self.publish_bundle(batch);
        }
    }

    fn publish_bundle(&mut self, changes: Vec<Vec<u8>>) {
        let data = bundle::encode(&changes);
        self.counters.gossip_bytes_out += data.len() as u64;
        self.counters.gossip_messages_out += 1;
        self.out.push(Output::Publish {
            topic: Topic::Ledger,
            data,
        });
    }

    /// A write failed: its answers say so, and our own changes that never became durable are
    /// taken back, so the position is neither served nor published, and the next write at it
    /// is the only one there ever was (a restart gives the same).
    fn persist_failed(&mut self, upto: PersistId, message: &str) {
        self.done_upto = self.done_upto.max(upto);
        if self.gate.ledger_mut().take_back_local(self.own_durable) > 0 {
            self.records_changed();
        }
        while self.waiting.front().is_some_and(|w| w.persist <= upto) {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            if let Some(id) = w.id {
                let reply = Reply::Failed {
                    code: "store_error",
                    message: message.to_string(),
                };
                self.out.push(Output::Reply { id, reply });
            }
        }
        self.event(Event::Error {
            code: "store_error",
            message: message.to_string(),
        });
    }

    fn scan(
        &mut self,
        id: RequestId,
        code: &[u8],
        gate: Option<String>,
        dir: Option<Direction>,
        (manual, origin): (bool, Option<&str>),
    ) {
        if self.waiting.len() >= WAITING_MAX {
            return self.refuse(id, "busy", "the node is busy; try again".into());
        }
        let gate = gate.unwrap_or_else(|| self.config.gate.clone());
        let req = ScanRequest {
            code,
            gate: &gate,
            direction: dir.or(self.config.direction),
            manual,
            origin,
        };
        match self.gate.scan(self.now_ms, req) {
            Ok(outcome) => {
                let publish: Vec<Vec<u8>> = outcome.change.into_iter().collect();
                if !publish.is_empty() {
                    self.persist(publish.clone(), true);
                    self.records_changed();
                }
                let zone = (self.gate.config().gate(&gate)).map(|g| g.zone.clone());
                self.decided(id, outcome.decision, publish);
                // An admit into a strict zone may leave this gate short of room.
                if let Some(z) = zone {
                    self.room_scan(&z);
                }
            }
            Err(e @ (GateError::UnknownGate(_) | GateError::NotSupervisor)) => {
                self.refuse(id, e.code(), e.to_string())
            }
            Err(e) => self.out.push(Output::Reply {
                id,
                reply: Reply::Failed {
                    code: e.code(),
                    message: e.to_string(),
                },
            }),
        }
    }

    /// Whether the node has caught up since it started ([`crate::ledger::catchup`]).
    pub fn synced(&mut self) -> bool {
        let online = self.peers.online();
        (self.catch_up).synced(self.now_ms, self.config.catch_up_ms, online)
    }

    /// The event configuration this node judges by, as hex (`/api/status`).
    pub fn event_config(&self) -> String {
        hex::encode(self.fingerprint)
    }

    /// [`Self::synced`] as last found, without looking again.
    pub fn caught_up(&self) -> bool {
        self.catch_up.is_done()
    }

    fn decided(&mut self, id: RequestId, mut d: Decision, publish: Vec<Vec<u8>>) {
        d.synced = self.synced();
        let event = Event::Scan(Box::new(d.clone()));
        self.answer_after_writes(Some(id), Reply::Decision(Box::new(d)), publish, Some(event));
    }

    fn annul(&mut self, id: RequestId, ticket_id: &str, scan_id: &str, phone: Option<&str>) {
        if phone.is_some_and(|p| !self.gate.is_phones(ticket_id, scan_id, p)) {
            let message = format!("scan {scan_id} is not this phone's: a phone undoes its own");
            return self.refuse(id, "not_annullable", message);
        }
        match self.gate.annul(self.now_ms, ticket_id, scan_id) {
            Ok(change) => {
                self.persist(vec![change.clone()], true);
                self.records_changed();
                let reply = Reply::Annulled {
                    scan_id: scan_id.to_string(),
                };
                self.answer_after_writes(Some(id), reply, vec![change], None);
            }
            Err(e) => self.refuse(id, e.code(), e.to_string()),
        }
    }

    fn pause_gate(&mut self, id: RequestId, gate: Option<String>, paused: bool) {
        let gate = gate.unwrap_or_else(|| self.config.gate.clone());
        match self.gate.pause_gate(self.now_ms, &gate, paused) {
            Ok(change) => {
                self.persist(vec![change.clone()], true);
                self.records_changed();
                let pause = self.gate.gate_pause(&gate, self.now_ms);
                let until_ms = pause.and_then(|p| p.until_ms);
                let reply = Reply::GatePaused {
                    gate,
                    paused,
                    until_ms,
                };
                self.answer_after_writes(Some(id), reply, vec![change], None);
            }
            Err(e) => self.refuse(id, e.code(), e.to_string()),
        }
    }

    fn refuse(&mut self, id: RequestId, code: &'static str, message: String) {
        self.out.push(Output::Reply {
            id,
            reply: Reply::Refused { code, message },
        });
    }

    fn reconcile(&mut self, id: RequestId, request: ReconcileRequest, by: Reconciler) {
        if let Err((code, message)) = self.may_reconcile(&request.device_id, &by) {
            return self.refuse(id, code, message);
        }
        let mut results = Vec::with_capacity(request.scans.len());
        let mut changes = Vec::new();
        for scan in &request.scans {
            let phone_since = match &by {
                Reconciler::Phone { since_ms, .. } => Some(*since_ms),
                _ => None,
            };
            let r = offline::reconcile_one(
                &mut self.gate,
                (self.now_ms, phone_since),
                &request.device_id,
                scan,
                &self.config.gate,
            );
            changes.extend(r.change);
            results.push(r.result);
        }
        let response = ReconcileResponse::new(results);
        let event = Event::Reconciled {
            device: request.device_id.clone(),
            reconciled: response.reconciled,
            failed: response.failed,
        };
        if !changes.is_empty() {
            self.counters.reconciled += changes.len() as u64;
            self.persist(changes.clone(), true);
            self.records_changed();
        }
        self.answer_after_writes(Some(id), Reply::Reconciled(response), changes, Some(event));
    }

    /// Whether `by` may reconcile scans of `device`: never an unpaired phone's; a phone its own,
    /// the staff token the devices the event file lists, the admin token any.
    fn may_reconcile(&self, device: &str, by: &Reconciler) -> Result<(), (&'static str, String)> {
        if self.gate.is_unpaired(device) {
            let message = format!("phone {device} was unpaired by the organizer");
            return Err(("UNPAIRED", message));
        }
        let listed = self
            .gate
            .config()
            .offline_devices
            .iter()
            .any(|d| d == device);
        match by {
            Reconciler::Admin => Ok(()),
            Reconciler::Phone { device: me, .. } if me == device => Ok(()),
            Reconciler::Phone { device: me, .. } => Err((
                "WRONG_DEVICE",
                format!("phone {me} may reconcile its own scans only, not {device}'s"),
            )),
            Reconciler::Staff if listed => Ok(()),
            Reconciler::Staff => Err((
                "UNKNOWN_DEVICE",
                format!("device {device} is not one of the event's offline devices and no phone pass was shown (gatemesh device enroll --role offline); the admin token may reconcile it"),
            )),
        }
    }

    /// A bulletin from the operator or a peer: verify, apply if new, keep it, spread it.
    /// Returns whether it verified.
    pub(crate) fn take_bulletin(&mut self, bytes: &[u8], from: Option<DeviceId>) -> bool {
        let config = self.gate.config();
        let b = match Bulletin::from_bytes(bytes, &config.event_id, self.gate.organizer_keys()) {
            Ok(b) => b,
            Err(e) => {
                self.counters.rejected_messages += 1;
                let reason = format!("{}: {e}", e.code());
                self.event(Event::Rejected { from, reason });
                return false;
            }
        };
        if self.apply_bulletin(&b) {
            self.out.push(Output::SaveBulletin {
                label: b.label(),
                bytes: b.bytes().to_vec(),
            });
            self.out.push(Output::Publish {
                topic: Topic::Control,
                data: b.bytes().to_vec(),
            });
        }
        true
    }

    fn bulletin(&mut self, id: Option<RequestId>, from: Option<DeviceId>, bytes: &[u8]) {
        let ok = self.take_bulletin(bytes, from);
        if let Some(id) = id {
            let reply = if ok {
                Reply::BulletinAccepted
            } else {
                Reply::Refused {
                    code: "bulletin_rejected",
                    message: "the bulletin does not verify for this event (see the node's events)"
                        .into(),
                }
            };
            self.out.push(Output::Reply { id, reply });
        }
    }

    /// Apply a verified bulletin to the gate and the peers. Returns whether it was new.
    pub fn apply_bulletin(&mut self, b: &Bulletin) -> bool {
        let effect = match self.gate.apply_bulletin(b) {
            Ok(Some(e)) => e,
            Ok(None) => return false,
            Err(e) => {
                self.event(Event::Error {
                    code: e.code(),
                    message: e.to_string(),
                });
                return false;
            }
        };
        for (id, _) in &effect.revoked_devices {
            self.peers.revoke(*id);
            self.out.push(Output::Deny { peer: *id });
        }
        for (cert, _) in &effect.added_devices {
            if self.peers.enroll(cert) {
                if let (Some(id), Ok(key)) = (cert.device(), cert.verifying_key()) {
                    if self.peers.admissible(id, self.now_ms) {
                        self.out.push(Output::Allow { peer: id, key });
                    }
                }
            }
        }
        self.records_changed();
        self.event(Event::Bulletin {
            version: b.version(),
            label: b.label(),
            effect,
        });
        true
    }

    fn block(&mut self, devices: Vec<DeviceId>, block: bool) {
        for d in &devices {
            self.peers.set_blocked(*d, block);
            match (block, self.peers.get(*d)) {
                (true, _) => self.out.push(Output::Deny { peer: *d }),
                (false, Some(p)) if self.peers.admissible(*d, self.now_ms) => {
                    self.out.push(Output::Allow {
                        peer: *d,
                        key: p.key,
                    })
                }
                _ => {}
            }
        }
        self.event(Event::Blocked { devices, block });
    }

    /// Fork proofs are kept durably: a restart drops what the running node dropped.
    pub(crate) fn keep_forks(&mut self) {
        let proofs: Vec<ForkProof> = self
            .gate
            .ledger()
            .forks()
            .map(|f| (f.a.clone(), f.b.clone()))
            .collect();
        let forks: Vec<_> = self
            .gate
            .ledger()
            .forks()
            .map(|f| (f.chain, f.from))
            .collect();
        for (chain, from) in forks {
            self.event(Event::Fork { chain, from });
        }
        self.out.push(Output::SaveForks(proofs));
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.out.push(Output::Event(e));
    }

    /// Records were added or removed: statistics are stale; a change in the number of double
    /// entries is an event.
    pub(crate) fn records_changed(&mut self) {
        self.changed = true;
        let doubles = self.gate.ledger().index().conflict_count();
        if doubles != self.doubles_reported {
            self.doubles_reported = doubles;
            self.event(Event::Conflicts {
                double_entries: doubles,
            });
        }
    }

    /// Whether records changed since the last call (the live statistics refresh on it).
    pub fn take_changed(&mut self) -> bool {
        std::mem::replace(&mut self.changed, false)
    }

    /// When the replica next wants an [`Input::Tick`].
    pub fn next_tick_ms(&self) -> u64 {
        self.next_sync_ms
    }

    pub fn gate(&self) -> &GateLogic {
        &self.gate
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// Local answers still waiting for their write.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}
