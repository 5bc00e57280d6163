//! The ledger: the event's Automerge document as chains of admitted changes, plus the derived
//! index, the clock and the roster.
//!
//! The document is one Automerge map from scan id to signed record. Each device writes on its
//! own chain (actor `device || chain`): change `n` of a chain depends on change `n - 1` only,
//! and its record's `link` names that dependency, so the record's signature binds the change
//! and everything before it on the chain. Loading every admitted change into Automerge gives
//! the document (`Automerge::load` of [`Ledger::changes`]); the node itself holds the changes
//! and the index, not Automerge's op set (BENCHMARKS.md: why).
//!
//! **Admission** (the security boundary; ARCHITECTURE.md states it): a change enters only if
//! it is canonical for its record ([`crate::record::change`]), the record's device is enrolled and not
//! cut off by a revocation, the change extends its chain (its link is the chain's tip; the
//! first links to the event's anchor), and its signature verifies, or a later change of the
//! same chain admitted with it verifies and links back to it. The same function admits gossip,
//! every change of a sync message, and untrusted files; a restart re-admits the stored changes
//! with the same checks but the signatures (the store only ever held admitted changes).
//!
//! A device that signs two different changes at one position of a chain has forked it; any two
//! such changes are evidence every replica can check, and every replica that has seen the
//! evidence drops the chain from the fork on. Evidence travels with sync, so replicas agree.

use crate::event::roster::{Cut, Roster, RosterDevice, Standing};
use crate::index::{EntryRule, Index, RecordRef};
use crate::ledger::chain::Chains;
use crate::ledger::pending::{PeerTag, Pending};
use crate::record::change::{self, Candidate, Hash, Rejection};
use crate::record::hlc::{Hlc, HlcClock};
use crate::record::{
    clamp_time, ChainId, ChainKey, DeviceId, Direction, RecordError, ScanBody, ScanRecord, Verdict,
    RECORD_VERSION,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// Most changes taken from one batch ([`Ledger::admit`]).
pub const ADMIT_BATCH_MAX: usize = 8192;
/// Most chains one device may have (a new chain per wiped store). Beyond it the chains with
/// the smallest ids stay, on every replica alike.
pub const CHAINS_PER_DEVICE_MAX: usize = 16;

/// The first link of every chain of an event: a record names the event it belongs to.
pub fn anchor(event_id: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(b"gatemesh ledger 2\0");
    h.update(event_id.as_bytes());
    h.finalize().into()
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("this ledger has no local device key, it cannot record")]
    ReadOnly,
    #[error("record: {0}")]
    Record(#[from] RecordError),
}

/// The key this device signs its records with, and the chain it writes.
#[derive(Clone, Debug)]
pub struct LocalDevice {
    pub key: SigningKey,
    pub chain: ChainId,
}

impl LocalDevice {
    pub fn id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.key.verifying_key())
    }
    pub fn chain_key(&self) -> ChainKey {
        ChainKey {
            device: self.id(),
            chain: self.chain,
        }
    }
}

/// What the caller wants written; the ledger adds device, chain position, link, HLC and
/// signature.
#[derive(Clone, Debug)]
pub struct Draft {
    pub ticket_id: String,
    pub tier: String,
    pub gate: String,
    pub zone: String,
    pub direction: Direction,
    pub verdict: Verdict,
    pub reason: String,
    pub seen: Vec<String>,
    pub annuls: Option<String>,
    pub origin: Option<String>,
    /// When the scan was made, if not now (a reconciled offline scan): the record is ordered
    /// at that time, not at the time it is written.
    pub wall_ms: Option<u64>,
}

/// Counters of what arrived and what was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LedgerStats {
    pub admitted: u64,
    pub duplicates: u64,
    pub rejected_malformed: u64,
    pub rejected_unknown_device: u64,
    pub rejected_revoked_device: u64,
    pub rejected_bad_signature: u64,
    pub rejected_forked_chain: u64,
    pub rejected_wrong_event: u64,
    pub rejected_chain_limit: u64,
    pub held_dropped: u64,
    pub forks_proven: u64,
    pub records_dropped_by_revocation: u64,
    pub records_dropped_by_fork: u64,
}

impl LedgerStats {
    pub fn rejected(&self) -> u64 {
        self.rejected_malformed
            + self.rejected_unknown_device
            + self.rejected_revoked_device
            + self.rejected_bad_signature
            + self.rejected_forked_chain
            + self.rejected_wrong_event
    }

    fn count(&mut self, r: Rejection) {
        match r {
            Rejection::TooLarge
            | Rejection::Undecodable
            | Rejection::NotCanonical
            | Rejection::BadRecord(_) => self.rejected_malformed += 1,
            Rejection::UnknownDevice => self.rejected_unknown_device += 1,
            Rejection::RevokedDevice => self.rejected_revoked_device += 1,
            Rejection::ForkedChain => self.rejected_forked_chain += 1,
            Rejection::BadSignature => self.rejected_bad_signature += 1,
            Rejection::WrongEvent => self.rejected_wrong_event += 1,
            Rejection::ChainLimit => self.rejected_chain_limit += 1,
        }
    }
}

/// A fork proof as it travels and is stored: the two changes of a [`Fork`].
pub type ForkProof = (Vec<u8>, Vec<u8>);

/// Two changes of one chain that its device cannot both have signed honestly: from `from` on,
/// the chain is dropped. `a` is at `from`; `b` is either another change at `from`, or a change
/// at `from + 1` that does not link to `a`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fork {
    pub chain: ChainKey,
    pub from: u32,
    pub a: Vec<u8>,
    pub b: Vec<u8>,
}

/// The result of taking remote changes in.
#[derive(Clone, Debug, Default)]
pub struct Admitted {
    /// Records newly in the index.
    pub records: Vec<RecordRef>,
    /// Changes newly admitted, in admission order: the caller stores them.
    pub persist: Vec<Vec<u8>>,
    /// Changes refused, with why.
    pub rejected: Vec<Rejection>,
    pub duplicates: u64,
    /// Changes held until the change they link to arrives (run sync).
    pub held: u64,
    /// Forks newly proven.
    pub forks: Vec<ChainKey>,
    /// Chains among the changes that read and whose device stands.
    pub chains: usize,
}

impl Admitted {
    /// The outcome of one gossip message (one change or a bundle), for its validation: a
    /// refused change refuses the message; else anything new accepts it. A change of a device
    /// we do not know yet refuses nothing (a bulletin may enroll it), and neither does a
    /// bundle spanning several chains, but neither is forwarded: the first's signature was not
    /// checked, and an honest node bundles only changes of its own chain.
    pub fn of_message(&self) -> Single {
        let unknown = self.rejected.contains(&Rejection::UnknownDevice);
        if let Some(r) = self
            .rejected
            .iter()
            .find(|r| **r != Rejection::UnknownDevice)
        {
            Single::Rejected(*r)
        } else if unknown || self.chains > 1 {
            Single::Unvouched
        } else if !self.persist.is_empty() {
            Single::Admitted
        } else if self.held > 0 {
            Single::Held
        } else {
            Single::Duplicate
        }
    }
}

/// What became of one gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Single {
    Admitted,
    Duplicate,
    Held,
    /// Taken in as far as it could be, not to be forwarded (see [`Admitted::of_message`]).
    Unvouched,
    Rejected(Rejection),
}

/// One chain's tip, as a sync summary carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tip {
    pub chain: ChainKey,
    pub seq: u32,
    pub hash: Hash,
}

/// How much one sync message may carry.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub bytes: usize,
    pub changes: usize,
}

/// What a peer lacks, as far as its summary tells.
#[derive(Clone, Debug, Default)]
pub struct Served {
    pub changes: Vec<Vec<u8>>,
    pub forks: Vec<Fork>,
    /// More would have followed but for the budget.
    pub more: bool,
}

/// How far back a sync answer reaches when a peer's tip differs from ours at the same position
/// (a fork below it is found this many positions per round).
pub const FORK_PROBE_DEPTH: u32 = 8;
/// Most fork proofs one sync answer carries.
pub const FORKS_SERVED_MAX: usize = 64;

pub struct Ledger {
    anchor: Hash,
    chains: Chains,
    index: Index,
    roster: Roster,
    clock: HlcClock,
    local: Option<LocalDevice>,
    pending: Pending,
    forks: BTreeMap<ChainKey, Fork>,
    stats: LedgerStats,
    /// How much of the local chain is durable: summaries and answers to peers stop there (a
    /// position lost in a crash is written again, differently). `None`: all of it.
    own_durable: Option<u32>,
    planted: Option<Planted>,
}

/// A bug the simulator's self-check plants in a ledger, to show that its sweep finds it.
/// Nothing but the simulator sets one (`tests/tidy.rs` holds every other crate to that).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planted {
    /// The ledger before fork evidence had to be two verified changes: a change whose rival at
    /// its position came first in the batch (and failed its signature) is taken as evidence
    /// against the chain instead of extending it.
    RivalTakenAsEvidence,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("records", &self.index.len())
            .field("chains", &self.chains.count())
            .finish()
    }
}

/// A candidate sorted for admission.
enum Step {
    Duplicate,
    /// Another change at a position we hold: a fork if it is signed.
    Conflicts(Candidate),
    /// The next change of the chain but linking elsewhere: a fork below it if signed.
    Misplaced(Candidate),
    /// Not linkable yet: held if signed.
    Hold(Candidate),
}

impl Ledger {
    /// An empty ledger for an event.
    pub fn new(
        event_id: &str,
        roster: Roster,
        rules: HashMap<String, EntryRule>,
        local: Option<LocalDevice>,
    ) -> Ledger {
        Ledger {
            anchor: anchor(event_id),
            chains: Chains::default(),
            index: Index::new(rules),
            roster,
            clock: HlcClock::default(),
            local,
            pending: Pending::default(),
            forks: BTreeMap::new(),
            stats: LedgerStats::default(),
            own_durable: None,
            planted: None,
        }
    }

    /// Plant a bug (the simulator's self-check only).
    #[doc(hidden)]
    pub fn plant(&mut self, bug: Planted) {
        self.planted = Some(bug);
    }

    /// How much of the local chain is durable (see the field).
    pub fn set_own_durable(&mut self, seq: u32) {
        self.own_durable = Some(seq);
    }

    /// A write of our own changes failed: forget every local position past `durable`, as a
    /// restart would (the store does not hold them, and the device will write those positions
    /// again). Returns how many records went.
    pub fn take_back_local(&mut self, durable: u32) -> u64 {
        let Some(key) = self.local_chain() else {
            return 0;
        };
        if self.chains.len_of(key) <= durable {
            return 0;
        }
        self.chains.entry(key).truncate(durable + 1);
        self.index.drop_chain_from(key, durable + 1)
    }

    /// How far peers may see a chain: the local one up to what is durable.
    fn shown_len(&self, key: ChainKey, len: u32) -> u32 {
        match self.own_durable {
            Some(d) if Some(key) == self.local_chain() => len.min(d),
            _ => len,
        }
    }

    /// Take back the changes a store holds (only admitted ones were ever stored): each must
    /// have a canonical header, hold its record, come from a device in standing and link to its
    /// chain's tip; then each chain's tip is read in full and its signature checked
    /// ([`Self::cut_unsigned_tips`]), which vouches for the changes under it. Returns how many
    /// were refused (a store written by another version, damaged or edited on disk).
    ///
    /// The clock follows the restored records as it followed them when they arrived: our own
    /// records always (we stamped them), others' only up to [`crate::record::hlc::MAX_FORWARD_DRIFT_MS`]
    /// ahead of `now_ms`, so a peer's clock from the future is no more adopted after a restart
    /// than before it.
    pub fn restore<'a>(&mut self, now_ms: u64, stored: impl IntoIterator<Item = &'a [u8]>) -> u64 {
        let mut refused = 0;
        let own = self.local_chain();
        for bytes in stored {
            let ok = change::read_stored(bytes)
                .ok()
                .filter(|c| self.standing(c).is_ok() && self.links_to_tip(c))
                .map(|c| {
                    // Our own records: no bound (the clock stamped them, it must stay past them).
                    let at = if Some(c.chain()) == own {
                        u64::MAX / 2
                    } else {
                        now_ms
                    };
                    self.push(&c, bytes, at)
                });
            if ok.is_none() {
                refused += 1;
            }
        }
        refused += self.cut_unsigned_tips();
        self.stats.admitted = 0;
        refused
    }

    /// A restart trusts no more than the running node did. Restored chains are hash-linked
    /// (each record signs the hash of the change before it), so a chain's tip signature vouches
    /// for every change under it: the tips are checked in one batch, and a chain whose tip fails
    /// is cut back to its longest prefix whose last change verifies, found by bisection (a
    /// change after a bad one cannot link to it, so the good changes are a prefix). Returns the
    /// changes dropped.
    fn cut_unsigned_tips(&mut self) -> u64 {
        let keys: Vec<ChainKey> = self.chains.iter().map(|(k, _)| *k).collect();
        let tips: Vec<Option<Candidate>> = keys
            .iter()
            .map(|k| self.candidate_at(*k, self.chains.len_of(*k)))
            .collect();
        let present: Vec<&Candidate> = tips.iter().flatten().collect();
        let mut ok = self.verify(&present).into_iter();
        let mut dropped = 0;
        for (key, tip) in keys.into_iter().zip(&tips) {
            if tip.is_some() && ok.next().unwrap_or(false) {
                continue;
            }
            let len = self.chains.len_of(key);
            let (mut good, mut bad) = (0u32, len);
            while bad - good > 1 {
                let mid = good + (bad - good) / 2;
                let signed = self
                    .candidate_at(key, mid)
                    .is_some_and(|c| self.verify(&[&c]) == [true]);
                if signed {
                    good = mid;
                } else {
                    bad = mid;
                }
            }
            if good == 0 {
                self.chains.remove(key);
            } else {
                self.chains.entry(key).truncate(good + 1);
            }
            self.index.drop_chain_from(key, good + 1);
            dropped += u64::from(len - good);
        }
        dropped
    }

    fn candidate_at(&self, key: ChainKey, seq: u32) -> Option<Candidate> {
        change::read(self.chains.get(key)?.get(seq)?).ok()
    }

    fn links_to_tip(&self, c: &Candidate) -> bool {
        let key = c.chain();
        c.seq() == self.chains.len_of(key) + 1 && c.record.body.link == self.tip_or_anchor(key)
    }

    fn tip_or_anchor(&self, key: ChainKey) -> Hash {
        self.chains
            .get(key)
            .and_then(|l| l.tip())
            .unwrap_or(self.anchor)
    }

    /// Record a local scan at `now_ms`: sign, chain, index. Returns the record and the change
    /// bytes, which the caller must make durable before answering, then publish.
    pub fn record(
        &mut self,
        now_ms: u64,
        draft: Draft,
    ) -> Result<(ScanRecord, Vec<u8>), LedgerError> {
        let local = self.local.as_ref().ok_or(LedgerError::ReadOnly)?;
        let key = local.chain_key();
        let now_ms = clamp_time(now_ms);
        let hlc = match draft.wall_ms.map(clamp_time) {
            // A scan made earlier (an offline scan reconciled now) is ordered when it was made,
            // so the replay judges it there: its day, its place among the ticket's entries.
            Some(at) if at < now_ms => Hlc::new(at, 0),
            _ => self.clock.tick(now_ms),
        };
        let body = ScanBody {
            version: RECORD_VERSION,
            device: key.device,
            chain: key.chain,
            seq: self.chains.len_of(key) + 1,
            link: self.tip_or_anchor(key),
            ticket_id: draft.ticket_id,
            tier: draft.tier,
            gate: draft.gate,
            zone: draft.zone,
            direction: draft.direction,
            verdict: draft.verdict,
            reason: draft.reason,
            hlc: hlc.0,
            wall_ms: clamp_time(draft.wall_ms.unwrap_or(now_ms)),
            seen: draft.seen,
            annuls: draft.annuls,
            origin: draft.origin,
        };
        let record = ScanRecord::sign(body, &local.key)?;
        let (bytes, hash) = change::build_bytes(&record);
        self.chains.entry(key).push(&bytes, hash);
        self.index.insert(&record.body);
        Ok((record, bytes))
    }

    /// Take in remote changes (gossip, a sync message, a file) from `from`.
    pub fn admit(&mut self, now_ms: u64, from: PeerTag, blobs: &[Vec<u8>]) -> Admitted {
        let mut out = Admitted::default();
        let mut by_chain: BTreeMap<ChainKey, BTreeMap<u32, Candidate>> = BTreeMap::new();
        let mut later = Vec::new();
        for blob in blobs.iter().take(ADMIT_BATCH_MAX) {
            let c = match change::read(blob).and_then(|c| self.standing(&c).map(|_| c)) {
                Ok(c) => c,
                Err(r) => {
                    self.reject(r, &mut out);
                    continue;
                }
            };
            let slot = by_chain.entry(c.chain()).or_default();
            match slot.get(&c.seq()) {
                Some(first) if first.hash == c.hash => out.duplicates += 1,
                Some(_) => later.push(c),
                None => {
                    slot.insert(c.seq(), c);
                }
            }
        }
        out.chains = by_chain.len();
        let mut runs = Vec::new();
        let mut steps = Vec::new();
        for (key, candidates) in by_chain {
            let (run, rest) = self.sort_chain(key, candidates);
            if !run.is_empty() {
                runs.push(run);
            }
            steps.extend(rest);
        }
        self.admit_runs(runs, now_ms, &mut out);
        steps.extend(later.into_iter().map(Step::Conflicts));
        self.settle(steps, from, now_ms, &mut out);
        self.stats.duplicates += out.duplicates;
        out
    }

    /// Split one chain's candidates into the run that extends it and the rest.
    fn sort_chain(
        &self,
        key: ChainKey,
        candidates: BTreeMap<u32, Candidate>,
    ) -> (Vec<Candidate>, Vec<Step>) {
        let held = self.chains.len_of(key);
        let mut next = held + 1;
        let mut tip = self.tip_or_anchor(key);
        let mut run = Vec::new();
        let mut rest = Vec::new();
        for (seq, c) in candidates {
            if seq <= held {
                let ours = self.chains.get(key).and_then(|l| l.hash_at(seq));
                rest.push(if ours == Some(c.hash) {
                    Step::Duplicate
                } else {
                    Step::Conflicts(c)
                });
            } else if seq == next && c.record.body.link == tip {
                tip = c.hash;
                next += 1;
                run.push(c);
            } else if seq == next {
                rest.push(Step::Misplaced(c));
            } else {
                rest.push(Step::Hold(c));
            }
        }
        (run, rest)
    }

    /// Admit runs that extend their chains: one signature per run (the last change's, which
    /// binds the others through their links); when it fails, the longest prefix ending in a
    /// change whose own signature verifies.
    fn admit_runs(&mut self, runs: Vec<Vec<Candidate>>, now_ms: u64, out: &mut Admitted) {
        let tips: Vec<&Candidate> = runs.iter().filter_map(|r| r.last()).collect();
        let tips_ok = self.verify(&tips);
        drop(tips);
        for (run, ok) in runs.into_iter().zip(tips_ok) {
            let good = if ok {
                run.len()
            } else {
                let each = self.verify(&run.iter().collect::<Vec<_>>());
                each.iter().rposition(|v| *v).map_or(0, |i| i + 1)
            };
            let key = run[0].chain();
            let refused = run.len() - good;
            for c in run.into_iter().take(good) {
                self.take(c, now_ms, out);
            }
            for _ in 0..refused {
                self.reject(Rejection::BadSignature, out);
            }
            self.extend_from_pending(key, now_ms, out);
        }
    }

    /// Everything that did not extend a chain directly: forks, held changes.
    fn settle(&mut self, steps: Vec<Step>, from: PeerTag, now_ms: u64, out: &mut Admitted) {
        let mut check: Vec<Candidate> = Vec::new();
        let mut kinds = Vec::new();
        for s in steps {
            match s {
                Step::Duplicate => out.duplicates += 1,
                Step::Conflicts(c) => {
                    kinds.push(0u8);
                    check.push(c);
                }
                Step::Misplaced(c) if c.seq() == 1 => self.reject(Rejection::WrongEvent, out),
                Step::Misplaced(c) => {
                    kinds.push(1);
                    check.push(c);
                }
                Step::Hold(c) => {
                    kinds.push(2);
                    check.push(c);
                }
            }
        }
        let valid = self.verify(&check.iter().collect::<Vec<_>>());
        for ((c, kind), ok) in check.into_iter().zip(kinds).zip(valid) {
            if !ok {
                self.reject(Rejection::BadSignature, out);
                continue;
            }
            match kind {
                0 | 1 => self.fork_against_ours(c, from, now_ms, out),
                _ => self.hold(c, from, now_ms, out),
            }
        }
    }

    /// A signed change that disagrees with the chain we hold proves a fork. Only a change whose
    /// own signature verified comes here, and only one that truly disagrees proves anything: a
    /// change that extends the chain after all (its rival at that position came first in the
    /// batch and failed its signature) is taken, one further on is held.
    fn fork_against_ours(&mut self, c: Candidate, peer: PeerTag, now_ms: u64, out: &mut Admitted) {
        let key = c.chain();
        let held = self.chains.len_of(key);
        let planted = self.planted == Some(Planted::RivalTakenAsEvidence);
        if c.seq() > held + 1 && !planted {
            return self.hold(c, peer, now_ms, out);
        }
        if c.seq() == held + 1 && self.links_to_tip(&c) && !planted {
            self.take(c, now_ms, out);
            return self.extend_from_pending(key, now_ms, out);
        }
        let (from, ours_at) = if c.seq() <= held {
            (c.seq(), c.seq())
        } else {
            (c.seq() - 1, c.seq() - 1)
        };
        let Some(ours) = self.chains.get(key).and_then(|l| l.get(ours_at)) else {
            // Position moved under us (the chain was cut meanwhile): nothing to prove.
            out.duplicates += 1;
            return;
        };
        if ours_at == c.seq() && change::hash_of(ours) == c.hash {
            out.duplicates += 1;
            return;
        }
        let fork = Fork {
            chain: key,
            from,
            a: ours.to_vec(),
            b: c.bytes,
        };
        if self.prove_fork(fork) {
            out.forks.push(key);
        }
    }

    /// A signed change ahead of its chain: admitted if its predecessor came in this same
    /// batch, else held.
    fn hold(&mut self, c: Candidate, from: PeerTag, now_ms: u64, out: &mut Admitted) {
        let key = c.chain();
        if c.seq() <= self.chains.len_of(key) + 1 {
            if self.links_to_tip(&c) {
                self.take(c, now_ms, out);
                self.extend_from_pending(key, now_ms, out);
            } else {
                self.fork_against_ours(c, from, now_ms, out);
            }
            return;
        }
        if self.pending.hold(c, from) {
            out.held += 1;
        } else {
            self.stats.held_dropped += 1;
        }
    }

    /// After a chain grew, take the held changes that now extend it.
    fn extend_from_pending(&mut self, key: ChainKey, now_ms: u64, out: &mut Admitted) {
        loop {
            let next = self.chains.len_of(key) + 1;
            self.pending.discard_through(key, next - 1);
            let Some(c) = self.pending.take(key, next) else {
                return;
            };
            if let Err(r) = self.standing(&c) {
                self.reject(r, out);
                continue;
            }
            if !self.links_to_tip(&c) {
                self.fork_against_ours(c, 0, now_ms, out);
                return;
            }
            self.take(c, now_ms, out);
        }
    }

    fn reject(&mut self, r: Rejection, out: &mut Admitted) {
        self.stats.count(r);
        out.rejected.push(r);
    }

    /// Whether the record's author may have written it, here and now.
    fn standing(&self, c: &Candidate) -> Result<(), Rejection> {
        let body = &c.record.body;
        match self.roster.standing(body) {
            Standing::Unknown => return Err(Rejection::UnknownDevice),
            Standing::Revoked => return Err(Rejection::RevokedDevice),
            Standing::Enrolled => {}
        }
        if self
            .forks
            .get(&c.chain())
            .is_some_and(|f| body.seq >= f.from)
        {
            return Err(Rejection::ForkedChain);
        }
        if self.chains.get(c.chain()).is_none() && !self.room_for_chain(c.chain()) {
            return Err(Rejection::ChainLimit);
        }
        Ok(())
    }

    /// A device's chains are bounded; the smallest chain ids stay, so every replica keeps the
    /// same ones whatever the order they arrive in.
    fn room_for_chain(&self, key: ChainKey) -> bool {
        let theirs: Vec<ChainId> = self
            .chains
            .iter()
            .filter(|(k, _)| k.device == key.device)
            .map(|(k, _)| k.chain)
            .collect();
        theirs.len() < CHAINS_PER_DEVICE_MAX || theirs.iter().any(|c| *c > key.chain)
    }

    /// Check candidates' own signatures, in batches (a device unknown by now fails).
    fn verify(&self, candidates: &[&Candidate]) -> Vec<bool> {
        let keyed: Vec<Option<VerifyingKey>> = candidates
            .iter()
            .map(|c| self.roster.get(c.record.body.device).map(|d| d.key))
            .collect();
        let items: Vec<(&ScanRecord, VerifyingKey)> = candidates
            .iter()
            .zip(&keyed)
            .filter_map(|(c, k)| Some((&c.record, (*k)?)))
            .collect();
        let mut checked = crate::record::verify_many(&items).into_iter();
        keyed
            .iter()
            .map(|k| k.is_some() && checked.next().unwrap_or(false))
            .collect()
    }

    /// Append an admitted change to its chain and index its record.
    fn push(&mut self, c: &Candidate, bytes: &[u8], now_ms: u64) -> bool {
        let key = c.chain();
        self.make_room_for(key);
        self.chains.entry(key).push(bytes, c.hash);
        self.clock.observe(Hlc(c.record.body.hlc), now_ms);
        self.stats.admitted += 1;
        self.index.insert(&c.record.body)
    }

    /// [`Self::push`], reporting the change and its record in `out`.
    fn take(&mut self, c: Candidate, now_ms: u64, out: &mut Admitted) {
        if self.push(&c, &c.bytes, now_ms) {
            out.records.push(RecordRef::from_body(&c.record.body));
        }
        out.persist.push(c.bytes);
    }

    /// Evict a device's largest chain when a smaller one takes its place.
    fn make_room_for(&mut self, key: ChainKey) {
        if self.chains.get(key).is_some() {
            return;
        }
        let theirs: Vec<ChainKey> = self
            .chains
            .iter()
            .filter(|(k, _)| k.device == key.device)
            .map(|(k, _)| *k)
            .collect();
        if theirs.len() < CHAINS_PER_DEVICE_MAX {
            return;
        }
        if let Some(largest) = theirs.into_iter().max() {
            self.chains.remove(largest);
            self.index.drop_chain_from(largest, 1);
        }
    }

    /// Record a proven fork: drop the chain from `from` on. Returns whether this lowered (or
    /// set) the chain's cut.
    fn prove_fork(&mut self, fork: Fork) -> bool {
        if self
            .forks
            .get(&fork.chain)
            .is_some_and(|f| f.from <= fork.from)
        {
            return false;
        }
        let (key, from) = (fork.chain, fork.from);
        self.forks.insert(key, fork);
        self.chains.entry(key).truncate(from);
        self.stats.records_dropped_by_fork += self.index.drop_chain_from(key, from);
        self.pending.discard_through(key, u32::MAX);
        self.stats.forks_proven += 1;
        true
    }

    /// Check fork evidence from a peer (or the store) and apply it. `Ok(true)`: new.
    pub fn accept_fork(&mut self, a: &[u8], b: &[u8]) -> Result<bool, Rejection> {
        let ca = change::read(a)?;
        let cb = change::read(b)?;
        let key = ca.chain();
        let device = self
            .roster
            .get(key.device)
            .ok_or(Rejection::UnknownDevice)?;
        if cb.chain() != key || ca.record.verify(&device.key).is_err() {
            return Err(Rejection::BadSignature);
        }
        cb.record
            .verify(&device.key)
            .map_err(|_| Rejection::BadSignature)?;
        let same_place = ca.seq() == cb.seq() && ca.hash != cb.hash;
        let bad_link = cb.seq() == ca.seq() + 1 && cb.record.body.link != ca.hash;
        if !same_place && !bad_link {
            return Err(Rejection::NotCanonical);
        }
        Ok(self.prove_fork(Fork {
            chain: key,
            from: ca.seq(),
            a: a.to_vec(),
            b: b.to_vec(),
        }))
    }

    /// Our tips, one per chain (the local chain's as far as it is durable).
    pub fn summary(&self) -> Vec<Tip> {
        self.chains
            .iter()
            .filter_map(|(k, l)| {
                let seq = self.shown_len(*k, l.len());
                Some(Tip {
                    chain: *k,
                    seq,
                    hash: l.hash_at(seq)?,
                })
            })
            .collect()
    }

    /// The document's heads as Automerge defines them: the last change of every chain (no
    /// change depends on another chain's), sorted. Two replicas with the same heads hold the
    /// same changes.
    pub fn heads(&self) -> Vec<Hash> {
        let mut heads: Vec<Hash> = self.summary().iter().map(|t| t.hash).collect();
        heads.sort_unstable();
        heads
    }

    /// What a peer whose summary is `theirs` lacks, within `budget`. Fork evidence goes along
    /// every time: forks are rare (a device lying), each is two changes, and a peer that does
    /// not know of one must drop what it holds past it.
    pub fn serve(&self, theirs: &[Tip], budget: Budget) -> Served {
        let mut out = self.serve_changes(theirs, budget);
        out.forks = self
            .forks
            .values()
            .take(FORKS_SERVED_MAX)
            .cloned()
            .collect();
        out
    }

    fn serve_changes(&self, theirs: &[Tip], budget: Budget) -> Served {
        let peer: HashMap<ChainKey, (u32, Hash)> =
            theirs.iter().map(|t| (t.chain, (t.seq, t.hash))).collect();
        let mut out = Served::default();
        let mut bytes = 0usize;
        for (key, log) in self.chains.iter() {
            let len = self.shown_len(*key, log.len());
            let (their_seq, their_hash) = peer.get(key).copied().unwrap_or((0, [0; 32]));
            let range = if their_seq == 0 {
                1..=len
            } else if their_seq <= len && log.hash_at(their_seq) != Some(their_hash) {
                their_seq.saturating_sub(FORK_PROBE_DEPTH).max(1)..=their_seq
            } else {
                their_seq + 1..=len
            };
            for seq in range {
                let Some(c) = log.get(seq) else { break };
                if out.changes.len() >= budget.changes || bytes + c.len() > budget.bytes {
                    out.more = true;
                    return out;
                }
                bytes += c.len();
                out.changes.push(c.to_vec());
            }
        }
        out
    }

    /// The last `count` changes of our own chain that peers may be shown (durable ones), oldest
    /// first.
    pub fn own_tail(&self, count: u32) -> Vec<Vec<u8>> {
        let Some(key) = self.local_chain() else {
            return Vec::new();
        };
        let Some(log) = self.chains.get(key) else {
            return Vec::new();
        };
        let len = self.shown_len(key, log.len());
        (len.saturating_sub(count) + 1..=len)
            .filter_map(|seq| log.get(seq).map(<[u8]>::to_vec))
            .collect()
    }

    /// Revoke a device, keeping what `cut` keeps. Returns how many records left the index.
    pub fn revoke(&mut self, device: DeviceId, cut: &Cut) -> u64 {
        if !self.roster.revoke(device, cut) {
            return 0;
        }
        let effective = self
            .roster
            .get(device)
            .and_then(|d| d.cut.clone())
            .unwrap_or_default();
        let dropped = self.index.drop_revoked(device, &effective);
        self.stats.records_dropped_by_revocation += dropped;
        self.cut_chains(device, &effective);
        dropped
    }

    /// Forget a revoked device's changes past what its cut keeps, so every replica holds the
    /// same chains whether the revocation reached it before or after those changes (a replica
    /// that heard of it first refuses them; one that heard later drops them here).
    fn cut_chains(&mut self, device: DeviceId, cut: &Cut) {
        let doomed: Vec<(ChainKey, u32)> = self
            .chains
            .iter()
            .filter(|(k, _)| k.device == device)
            .filter_map(|(k, log)| {
                let keep = cut.keep.get(&k.chain).copied().unwrap_or(0);
                (log.len() > keep).then_some((*k, keep))
            })
            .collect();
        for (key, keep) in doomed {
            if keep == 0 {
                self.chains.remove(key);
            } else {
                self.chains.entry(key).truncate(keep + 1);
            }
        }
    }

    /// Enroll a device after the ledger was opened (an organizer bulletin). Its records come
    /// by sync (they were refused while it was unknown).
    pub fn add_device(&mut self, device: RosterDevice) -> bool {
        self.roster.insert(device)
    }

    /// Every admitted change, chain by chain in order: loading them into Automerge gives the
    /// document.
    pub fn changes(&self) -> impl Iterator<Item = &[u8]> {
        self.chains
            .iter()
            .flat_map(|(_, l)| (1..=l.len()).filter_map(move |s| l.get(s)))
    }

    pub fn forks(&self) -> impl Iterator<Item = &Fork> {
        self.forks.values()
    }

    /// Chains with changes held for a missing predecessor.
    pub fn gaps(&self) -> Vec<(ChainKey, u32)> {
        self.pending.gaps()
    }

    pub fn held(&self) -> usize {
        self.pending.len()
    }

    pub fn anchor(&self) -> Hash {
        self.anchor
    }

    pub fn chains(&self) -> &Chains {
        &self.chains
    }

    /// The entry rules in force changed (see [`crate::event::rules`]): returns how many tickets were
    /// judged again.
    pub fn set_rules(&mut self, rules: HashMap<String, EntryRule>) -> usize {
        self.index.set_rules(rules)
    }

    /// The strict zones and their room's start holders (before any record).
    pub fn set_strict(&mut self, zones: Vec<(String, crate::index::StrictZone)>) {
        self.index.set_strict(zones);
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    pub fn stats(&self) -> &LedgerStats {
        &self.stats
    }

    /// Order this device's next record after `hlc` (a record it has, dated ahead, that has come
    /// within what a clock follows since it arrived).
    pub fn follow(&mut self, hlc: Hlc, now_ms: u64) {
        self.clock.observe(hlc, now_ms);
    }

    pub fn clock(&self) -> Hlc {
        self.clock.last()
    }

    /// This device's signing key (a scanner pairing a phone signs its pass with it).
    pub fn local_key(&self) -> Option<&SigningKey> {
        self.local.as_ref().map(|l| &l.key)
    }

    pub fn local_device(&self) -> Option<DeviceId> {
        self.local.as_ref().map(LocalDevice::id)
    }

    pub fn local_chain(&self) -> Option<ChainKey> {
        self.local.as_ref().map(LocalDevice::chain_key)
    }
}
