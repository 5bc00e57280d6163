//! The ledger: the event's Automerge document plus the derived index, clock and roster.
//!
//! Genesis holds 256 bucket maps keyed `00`..`ff`. A scan is one map entry in its ticket's
//! bucket: key = scan id, value = signed record bytes. Only puts of new keys are ever made, so
//! concurrent writers never touch the same entry, and applying a change costs what the change
//! holds, not what the document holds.
//!
//! Everything here is bytes and time in, bytes out: [`Ledger::record`] returns the change bytes
//! to store and publish; [`Ledger::apply_changes`] and [`Ledger::receive_sync`] return the blobs
//! the caller must persist.

use crate::error::LedgerError;
use crate::hlc::{Hlc, HlcClock};
use crate::index::{EntryRule, Index, RecordRef};
use crate::record::{
    bucket_of, DeviceId, Direction, ScanBody, ScanRecord, Verdict, RECORD_VERSION,
};
use crate::roster::{Roster, RosterDevice};
use crate::BUCKETS;
use automerge::patches::TextRepresentation;
use automerge::sync::{self, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, Automerge, Change, ObjId, ObjType, PatchAction, PatchLog, ReadDoc, ScalarValue, Value,
    ROOT,
};
use ed25519_dalek::SigningKey;
use std::collections::HashMap;

/// Largest sync message accepted from a peer.
pub const SYNC_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest single change accepted (the fast path carries one record per change).
pub const CHANGE_BYTES_MAX: usize = 64 * 1024;
/// Most changes in one batch given to [`Ledger::apply_changes`].
pub const APPLY_BATCH_MAX: usize = 4096;
/// Actor id of the genesis change: fixed so every `event create` yields the same genesis.
const GENESIS_ACTOR: [u8; 8] = *b"gm-gnss1";

/// The key this device signs its records with.
#[derive(Clone, Debug)]
pub struct LocalDevice {
    pub key: SigningKey,
    /// Random per process start: the Automerge actor is `device id || session`, so a restarted
    /// device never reuses an actor sequence number.
    pub session: [u8; 8],
}

impl LocalDevice {
    pub fn id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.key.verifying_key())
    }
}

/// What the caller wants written; the ledger adds device, counter, HLC and signature.
#[derive(Clone, Debug)]
pub struct Draft {
    pub ticket_id: String,
    pub tier: String,
    pub gate: String,
    pub zone: String,
    pub direction: Direction,
    pub verdict: Verdict,
    pub reason: String,
    pub prev: Vec<String>,
    pub annuls: Option<String>,
}

/// Counters of what arrived and what was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LedgerStats {
    pub applied_records: u64,
    pub duplicate_records: u64,
    pub rejected_bad_signature: u64,
    pub rejected_unknown_device: u64,
    pub rejected_revoked_device: u64,
    pub rejected_malformed: u64,
}

impl LedgerStats {
    pub fn rejected(&self) -> u64 {
        self.rejected_bad_signature
            + self.rejected_unknown_device
            + self.rejected_revoked_device
            + self.rejected_malformed
    }
}

/// The result of taking remote data in.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// Records newly in the index.
    pub records: Vec<RecordRef>,
    /// Records refused (bad signature, unknown or revoked device, malformed).
    pub rejected: u64,
    /// Blobs (each loadable with `load_incremental`) the caller must persist.
    pub persist: Vec<Vec<u8>>,
    /// Some changes wait for dependencies we do not have: run the sync protocol.
    pub missing_deps: bool,
}

/// One peer's Automerge sync state.
#[derive(Debug, Default)]
pub struct SyncPeer {
    state: sync::State,
}

impl SyncPeer {
    pub fn new() -> SyncPeer {
        SyncPeer {
            state: sync::State::new(),
        }
    }

    /// The peer answered without a message (or the request failed): stop waiting for one, so
    /// the next round may speak again.
    pub fn clear_in_flight(&mut self) {
        self.state.in_flight = false;
    }
}

/// Why a gossiped change was refused before it touched the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ChangeRejection {
    #[error("change does not decode or is too large")]
    Undecodable,
    #[error("change's author is not an enrolled device")]
    UnknownDevice,
    #[error("change's author is a revoked device")]
    RevokedDevice,
}

pub struct Ledger {
    doc: Automerge,
    buckets: Vec<ObjId>,
    bucket_of_obj: HashMap<ObjId, u8>,
    index: Index,
    roster: Roster,
    clock: HlcClock,
    local: Option<(LocalDevice, u32)>,
    stats: LedgerStats,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("records", &self.index.len())
            .finish()
    }
}

/// One record of an untrusted document after its checks.
enum Verified {
    Good(Box<ScanBody>),
    Malformed,
    UnknownDevice,
    RevokedDevice,
    BadSignature,
}

impl Ledger {
    /// The genesis document: 256 empty bucket maps. Deterministic: the same bytes everywhere.
    pub fn genesis() -> Vec<u8> {
        let mut doc = Automerge::new().with_actor(ActorId::from(GENESIS_ACTOR));
        let mut tx = doc.transaction();
        for b in 0..BUCKETS {
            tx.put_object(ROOT, bucket_key(b as u8), ObjType::Map)
                .expect("fresh document accepts root puts");
        }
        tx.commit_with(CommitOptions::default().with_time(0));
        doc.save()
    }

    /// Open a ledger from a genesis or snapshot plus the persisted log blobs after it. The index
    /// is rebuilt from the document without verifying signatures: the local store is trusted.
    pub fn open<'a>(
        base: &[u8],
        log: impl IntoIterator<Item = &'a [u8]>,
        roster: Roster,
        rules: HashMap<String, EntryRule>,
        local: Option<LocalDevice>,
    ) -> Result<Ledger, LedgerError> {
        let mut doc = Automerge::load(base)?;
        for blob in log {
            doc.load_incremental(blob)?;
        }
        if let Some(l) = &local {
            let mut actor = l.id().0.to_be_bytes().to_vec();
            actor.extend_from_slice(&l.session);
            doc.set_actor(ActorId::from(actor));
        }
        let mut ledger = Ledger::from_doc(doc, roster, rules, local)?;
        ledger.rebuild_index();
        Ok(ledger)
    }

    /// A ledger over a loaded document, its index still empty.
    fn from_doc(
        doc: Automerge,
        roster: Roster,
        rules: HashMap<String, EntryRule>,
        local: Option<LocalDevice>,
    ) -> Result<Ledger, LedgerError> {
        let buckets = find_buckets(&doc)?;
        let bucket_of_obj = buckets
            .iter()
            .enumerate()
            .map(|(i, o)| (o.clone(), i as u8))
            .collect();
        Ok(Ledger {
            doc,
            buckets,
            bucket_of_obj,
            index: Index::new(rules),
            roster,
            clock: HlcClock::default(),
            local: local.map(|l| (l, 0)),
            stats: LedgerStats::default(),
        })
    }

    /// Open a ledger from bytes nobody vouches for (an export file): every record must decode,
    /// sit under its own scan id in its ticket's bucket, come from a device of the roster not
    /// revoked at its HLC, and carry a valid signature; the others are counted in
    /// [`LedgerStats`] and never indexed. Signatures are checked on `threads` threads.
    pub fn open_untrusted(
        base: &[u8],
        roster: Roster,
        rules: HashMap<String, EntryRule>,
        threads: usize,
    ) -> Result<Ledger, LedgerError> {
        let mut ledger = Ledger::from_doc(Automerge::load(base)?, roster, rules, None)?;
        let mut found: Vec<(u8, String, Vec<u8>)> = Vec::new();
        for b in 0..BUCKETS {
            let obj = ledger.buckets[b].clone();
            for item in ledger.doc.map_range(&obj, ..) {
                match item.value {
                    Value::Scalar(v) => match v.as_ref() {
                        ScalarValue::Bytes(bytes) => {
                            found.push((b as u8, item.key.to_string(), bytes.clone()))
                        }
                        _ => ledger.stats.rejected_malformed += 1,
                    },
                    Value::Object(_) => ledger.stats.rejected_malformed += 1,
                }
            }
        }
        // Decode and check signatures in parallel (in batches); admit in document order.
        let roster = &ledger.roster;
        let check = |part: &[(u8, String, Vec<u8>)]| -> Vec<Verified> {
            let mut out: Vec<Verified> = Vec::with_capacity(part.len());
            let mut pending: Vec<(usize, ScanRecord, ed25519_dalek::VerifyingKey)> = Vec::new();
            for (bucket, key, bytes) in part {
                let Ok(rec) = ScanRecord::decode(bytes) else {
                    out.push(Verified::Malformed);
                    continue;
                };
                if rec.scan_id() != *key || bucket_of(&rec.body.ticket_id) != *bucket {
                    out.push(Verified::Malformed);
                    continue;
                }
                match roster.get(rec.body.device) {
                    None => out.push(Verified::UnknownDevice),
                    Some(d) if d.revoked_from.is_some_and(|r| rec.body.hlc >= r.0) => {
                        out.push(Verified::RevokedDevice)
                    }
                    Some(d) => {
                        pending.push((out.len(), rec, d.key));
                        out.push(Verified::BadSignature); // until its signature is checked
                    }
                }
            }
            let items: Vec<(&ScanRecord, ed25519_dalek::VerifyingKey)> =
                pending.iter().map(|(_, r, k)| (r, *k)).collect();
            let good = crate::record::verify_many(&items);
            drop(items);
            for ((at, rec, _), ok) in pending.into_iter().zip(good) {
                if ok {
                    out[at] = Verified::Good(Box::new(rec.body));
                }
            }
            out
        };
        let threads = threads.clamp(1, 64);
        let chunk = found.len().div_ceil(threads).max(1);
        let verified: Vec<Verified> = std::thread::scope(|scope| {
            let handles: Vec<_> = found
                .chunks(chunk)
                .map(|part| scope.spawn(move || check(part)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for v in verified {
            match v {
                Verified::Good(body) => {
                    ledger.clock.observe(Hlc(body.hlc), u64::MAX / 2);
                    if ledger.index.insert(&body) {
                        ledger.stats.applied_records += 1;
                    } else {
                        ledger.stats.duplicate_records += 1;
                    }
                }
                Verified::Malformed => ledger.stats.rejected_malformed += 1,
                Verified::UnknownDevice => ledger.stats.rejected_unknown_device += 1,
                Verified::RevokedDevice => ledger.stats.rejected_revoked_device += 1,
                Verified::BadSignature => ledger.stats.rejected_bad_signature += 1,
            }
        }
        Ok(ledger)
    }

    fn rebuild_index(&mut self) {
        let local_id = self.local.as_ref().map(|(l, _)| l.id());
        let mut next_counter = 0u32;
        for b in 0..BUCKETS {
            let obj = self.buckets[b].clone();
            let values: Vec<Vec<u8>> = self
                .doc
                .map_range(&obj, ..)
                .filter_map(|item| match item.value {
                    Value::Scalar(v) => match v.as_ref() {
                        ScalarValue::Bytes(b) => Some(b.clone()),
                        _ => None,
                    },
                    Value::Object(_) => None,
                })
                .collect();
            for bytes in values {
                let Ok(rec) = ScanRecord::decode(&bytes) else {
                    self.stats.rejected_malformed += 1;
                    continue;
                };
                if !self.admissible_device(&rec.body) {
                    continue;
                }
                if Some(rec.body.device) == local_id {
                    next_counter = next_counter.max(rec.body.counter + 1);
                }
                self.clock.observe(Hlc(rec.body.hlc), u64::MAX / 2);
                self.index.insert(&rec.body);
            }
        }
        if let Some((_, c)) = &mut self.local {
            *c = next_counter;
        }
    }

    /// Unknown or revoked devices' records stay in the document but never enter the index.
    fn admissible_device(&mut self, body: &ScanBody) -> bool {
        match self.roster.get(body.device) {
            None => {
                self.stats.rejected_unknown_device += 1;
                false
            }
            Some(d) if d.revoked_from.is_some_and(|r| body.hlc >= r.0) => {
                self.stats.rejected_revoked_device += 1;
                false
            }
            Some(_) => true,
        }
    }

    /// Record a local scan at `now_ms`: sign, write, commit. Returns the record and the change
    /// bytes, which the caller must make durable before answering, then publish.
    pub fn record(
        &mut self,
        now_ms: u64,
        draft: Draft,
    ) -> Result<(ScanRecord, Vec<u8>), LedgerError> {
        self.record_with(now_ms, draft, None, now_ms)
    }

    /// Record a scan another, non-mesh device made offline and now reconciles through this
    /// device: `origin` names it (`<device>@<scanned-at ms>`), `wall_ms` is when it was made.
    pub fn record_reconciled(
        &mut self,
        now_ms: u64,
        draft: Draft,
        origin: String,
        wall_ms: u64,
    ) -> Result<(ScanRecord, Vec<u8>), LedgerError> {
        self.record_with(now_ms, draft, Some(origin), wall_ms)
    }

    fn record_with(
        &mut self,
        now_ms: u64,
        draft: Draft,
        origin: Option<String>,
        wall_ms: u64,
    ) -> Result<(ScanRecord, Vec<u8>), LedgerError> {
        let (local, counter) = self.local.as_mut().ok_or(LedgerError::ReadOnly)?;
        let hlc = self.clock.tick(now_ms);
        let body = ScanBody {
            version: RECORD_VERSION,
            device: local.id(),
            counter: *counter,
            ticket_id: draft.ticket_id,
            tier: draft.tier,
            gate: draft.gate,
            zone: draft.zone,
            direction: draft.direction,
            verdict: draft.verdict,
            reason: draft.reason,
            hlc: hlc.0,
            wall_ms,
            prev: draft.prev,
            annuls: draft.annuls,
            origin,
        };
        let record = ScanRecord::sign(body, &local.key)?;
        *counter += 1;
        let bucket = self.buckets[usize::from(bucket_of(&record.body.ticket_id))].clone();
        let mut tx = self.doc.transaction();
        tx.put(&bucket, record.scan_id(), record.bytes.clone())?;
        tx.commit_with(CommitOptions::default().with_time((now_ms / 1000) as i64));
        let change = self
            .doc
            .get_last_local_change()
            .ok_or(LedgerError::ReadOnly)?;
        self.index.insert(&record.body);
        Ok((record, change.raw_bytes().to_vec()))
    }

    /// Apply a batch of remote changes (each the bytes of one Automerge change).
    pub fn apply_changes(
        &mut self,
        now_ms: u64,
        blobs: &[Vec<u8>],
    ) -> Result<Applied, LedgerError> {
        let mut changes = Vec::new();
        let mut persist = Vec::new();
        for blob in blobs.iter().take(APPLY_BATCH_MAX) {
            if blob.len() > CHANGE_BYTES_MAX {
                return Err(LedgerError::TooLarge {
                    size: blob.len(),
                    limit: CHANGE_BYTES_MAX,
                });
            }
            let change = Change::from_bytes(blob.clone())?;
            if self.doc.get_change_by_hash(&change.hash()).is_none() {
                persist.push(blob.clone());
                changes.push(change);
            }
        }
        let mut log = PatchLog::active(TextRepresentation::Array);
        self.doc.apply_changes_log_patches(changes, &mut log)?;
        let mut applied = self.take_patches(&mut log, now_ms);
        applied.persist = persist;
        applied.missing_deps = !self.doc.get_missing_deps(&[]).is_empty();
        Ok(applied)
    }

    /// Check what can be checked of a change before applying it (the gossip fast path): it
    /// decodes (its checksum holds), is not oversized, and its author is an enrolled device that
    /// is not revoked. Its records are verified one by one when applied; a change with any
    /// refused record is reported in [`Applied::rejected`].
    pub fn check_change(&self, bytes: &[u8]) -> Result<(), ChangeRejection> {
        if bytes.len() > CHANGE_BYTES_MAX {
            return Err(ChangeRejection::Undecodable);
        }
        let change =
            Change::from_bytes(bytes.to_vec()).map_err(|_| ChangeRejection::Undecodable)?;
        let author = change.actor_id().to_bytes();
        let device = author
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| DeviceId(u32::from_be_bytes(b)))
            .ok_or(ChangeRejection::UnknownDevice)?;
        match self.roster.get(device) {
            None => Err(ChangeRejection::UnknownDevice),
            Some(d) if d.revoked_from.is_some() => Err(ChangeRejection::RevokedDevice),
            Some(_) => Ok(()),
        }
    }

    /// Make the next sync message for a peer, if there is anything to say.
    pub fn generate_sync(&self, peer: &mut SyncPeer) -> Option<Vec<u8>> {
        self.doc
            .generate_sync_message(&mut peer.state)
            .map(sync::Message::encode)
    }

    /// Take in a sync message from a peer.
    pub fn receive_sync(
        &mut self,
        peer: &mut SyncPeer,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Applied, LedgerError> {
        if bytes.len() > SYNC_MESSAGE_BYTES_MAX {
            return Err(LedgerError::TooLarge {
                size: bytes.len(),
                limit: SYNC_MESSAGE_BYTES_MAX,
            });
        }
        let message =
            sync::Message::decode(bytes).map_err(|e| LedgerError::BadSyncMessage(e.to_string()))?;
        let before = self.doc.get_heads();
        let mut log = PatchLog::active(TextRepresentation::Array);
        self.doc
            .receive_sync_message_log_patches(&mut peer.state, message, &mut log)?;
        let mut applied = self.take_patches(&mut log, now_ms);
        // The changes this message added, to persist. `get_changes` walks the change history
        // (linear in its length); this is the repair path, the fast path is `apply_changes`.
        if self.doc.get_heads() != before {
            applied.persist = self
                .doc
                .get_changes(&before)
                .into_iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect();
        }
        applied.missing_deps = !self.doc.get_missing_deps(&[]).is_empty();
        Ok(applied)
    }

    /// Turn the document patches of an apply into index inserts, verifying each new record.
    fn take_patches(&mut self, log: &mut PatchLog, now_ms: u64) -> Applied {
        let mut applied = Applied::default();
        for patch in self.doc.make_patches(log) {
            let PatchAction::PutMap {
                key,
                value: (Value::Scalar(v), _),
                ..
            } = patch.action
            else {
                continue;
            };
            let Some(&bucket) = self.bucket_of_obj.get(&patch.obj) else {
                continue;
            };
            let ScalarValue::Bytes(bytes) = v.as_ref() else {
                self.stats.rejected_malformed += 1;
                applied.rejected += 1;
                continue;
            };
            match self.admit_remote(bucket, &key, bytes, now_ms) {
                Ok(Some(r)) => applied.records.push(r),
                Ok(None) => {}
                Err(()) => applied.rejected += 1,
            }
        }
        applied
    }

    /// Verify one remote record and index it. `Ok(None)`: already held.
    fn admit_remote(
        &mut self,
        bucket: u8,
        key: &str,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Option<RecordRef>, ()> {
        let Ok(rec) = ScanRecord::decode(bytes) else {
            self.stats.rejected_malformed += 1;
            return Err(());
        };
        if rec.scan_id() != key || bucket_of(&rec.body.ticket_id) != bucket {
            self.stats.rejected_malformed += 1;
            return Err(());
        }
        if !self.admissible_device(&rec.body) {
            return Err(());
        }
        let key = self.roster.get(rec.body.device).map(|d| d.key).ok_or(())?;
        if rec.verify(&key).is_err() {
            self.stats.rejected_bad_signature += 1;
            return Err(());
        }
        self.clock.observe(Hlc(rec.body.hlc), now_ms);
        if !self.index.insert(&rec.body) {
            self.stats.duplicate_records += 1;
            return Ok(None);
        }
        self.stats.applied_records += 1;
        let ticket = rec.body.ticket_id.clone();
        Ok(self
            .index
            .records(&ticket)
            .into_iter()
            .find(|r| r.scan_id == rec.scan_id()))
    }

    /// Enroll a device after the ledger was opened (an organizer bulletin). Its records that
    /// arrived before, held back as from an unknown device, are verified and indexed now.
    /// Returns how many were indexed.
    pub fn add_device(&mut self, device: RosterDevice) -> u64 {
        let id = DeviceId::from_public_key(&device.key);
        if self.roster.get(id).is_some() || !self.roster.insert(device) {
            return 0;
        }
        let Some(key) = self.roster.get(id).map(|d| d.key) else {
            return 0;
        };
        let mut indexed = 0;
        for b in 0..BUCKETS {
            let obj = self.buckets[b].clone();
            let records: Vec<ScanRecord> = self
                .doc
                .map_range(&obj, ..)
                .filter_map(|item| match item.value {
                    Value::Scalar(v) => match v.as_ref() {
                        ScalarValue::Bytes(bytes) => ScanRecord::decode(bytes).ok(),
                        _ => None,
                    },
                    Value::Object(_) => None,
                })
                .filter(|r| r.body.device == id)
                .collect();
            for rec in records {
                if rec.verify(&key).is_ok() && self.index.insert(&rec.body) {
                    indexed += 1;
                }
            }
        }
        indexed
    }

    /// Revoke a device from `from` on: its records at or after that HLC leave the index.
    pub fn revoke_device(&mut self, device: DeviceId, from: Hlc) -> u64 {
        if !self.roster.revoke(device, from) {
            return 0;
        }
        let dropped = self.index.drop_device_from(device, from.0);
        self.stats.rejected_revoked_device += dropped;
        dropped
    }

    /// Full snapshot of the document.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    pub fn heads(&self) -> Vec<automerge::ChangeHash> {
        self.doc.get_heads()
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

    pub fn clock(&self) -> Hlc {
        self.clock.last()
    }

    pub fn local_device(&self) -> Option<DeviceId> {
        self.local.as_ref().map(|(l, _)| l.id())
    }
}

fn bucket_key(b: u8) -> String {
    format!("{b:02x}")
}

fn find_buckets(doc: &Automerge) -> Result<Vec<ObjId>, LedgerError> {
    (0..BUCKETS)
        .map(|b| match doc.get(ROOT, bucket_key(b as u8))? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(LedgerError::NotGenesis(format!(
                "bucket {} missing",
                bucket_key(b as u8)
            ))),
        })
        .collect()
}
