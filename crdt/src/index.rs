//! The derived index: ticket → its records sorted by (HLC, device id, counter), and the replay
//! of the entry policy over that order.
//!
//! Every replica that holds the same records computes the same order, so the same replay, so the
//! same verdict on which admits were legitimate and which were double entries. The index is
//! never stored: it is rebuilt from the document on load and updated on every applied record.

use crate::hlc::Hlc;
use crate::record::{ChainKey, DeviceId, Direction, ScanBody, ScanRef, Verdict};
use crate::roster::Cut;
use crate::tally::{Seen, Tally, TicketState};
use std::collections::{BTreeMap, HashMap};

/// The index's maps: keyed by what records say (ticket ids, names, scan refs), hashed with
/// foldhash's quality hasher, seeded per map (several times faster than SipHash on short keys;
/// a restart re-indexes every record through these maps).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// How long after an admit the device that made it may annul it; later annuls are ignored by
/// every replica's replay (measured between the two records' HLC times, both written by the
/// same device).
pub const ANNUL_WINDOW_MS: u64 = 120_000;

/// What the policy allows for one tier, as far as the ledger's replay needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRule {
    /// How many `in` admits a ticket gets (credits).
    pub max_entries: u32,
    /// An `out` scan while inside gives one credit back.
    pub reentry: bool,
    /// Most `in` admits in one festival day (a weekend pass: one a day); 0, no daily limit.
    pub per_day: u32,
    /// When the festival day named by a date starts, in ms after that date's midnight UTC
    /// (06:00 local at UTC+2: 4 h; 00:00 local at UTC+2: -2 h).
    pub day_start_ms: i64,
}

impl Default for EntryRule {
    fn default() -> Self {
        EntryRule {
            max_entries: 1,
            reentry: false,
            per_day: 0,
            day_start_ms: 0,
        }
    }
}

/// One day in ms.
pub const DAY_MS: u64 = 86_400_000;

/// The festival day a time falls in, as days since 1970-01-01: the local date the day started
/// on (`day_start_ms` as in [`EntryRule`]).
pub fn festival_day(ms: u64, day_start_ms: i64) -> u64 {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    ms.saturating_sub(day_start_ms)
        .div_euclid(DAY_MS as i64)
        .max(0) as u64
}

/// Interned short strings (gates, zones, tiers, reasons): a handful of distinct values shared by
/// hundreds of thousands of records.
#[derive(Clone, Debug, Default)]
struct Names {
    names: Vec<Box<str>>,
    ids: FastMap<Box<str>, u16>,
}

/// Most distinct gate/zone/tier/reason names the index holds; beyond it names share "other".
const NAMES_MAX: usize = u16::MAX as usize - 1;

impl Names {
    fn intern(&mut self, s: &str) -> u16 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        if self.names.len() >= NAMES_MAX {
            return self.intern_overflow();
        }
        let id = self.names.len() as u16;
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }
    fn intern_overflow(&mut self) -> u16 {
        const OTHER: &str = "other";
        match self.ids.get(OTHER) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u16;
                self.names.push(OTHER.into());
                self.ids.insert(OTHER.into(), id);
                id
            }
        }
    }
    fn get(&self, id: u16) -> &str {
        &self.names[usize::from(id)]
    }
}

/// One record as the index keeps it: compact, strings interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    hlc: u64,
    wall_ms: u64,
    scan: ScanRef,
    annuls: Option<ScanRef>,
    gate: u16,
    zone: u16,
    tier: u16,
    reason: u16,
    direction: Direction,
    verdict: Verdict,
    /// Hash of the record's origin (reconciled offline scans), 0 for none.
    origin: u64,
}

impl Entry {
    fn order_key(&self) -> (u64, ScanRef) {
        (self.hlc, self.scan)
    }
    fn device(&self) -> DeviceId {
        self.scan.chain.device
    }
}

/// A record as callers see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RecordRef {
    pub scan_id: String,
    pub ticket_id: String,
    pub device: String,
    pub tier: String,
    pub gate: String,
    pub zone: String,
    pub direction: Direction,
    pub verdict: Verdict,
    pub reason: String,
    pub hlc: u64,
    pub wall_ms: u64,
    pub annuls: Option<String>,
    /// For a scan reconciled from an offline device: its origin (`<device>@<scanned-at ms>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl RecordRef {
    pub fn from_body(b: &ScanBody) -> RecordRef {
        RecordRef {
            scan_id: b.scan_id(),
            ticket_id: b.ticket_id.clone(),
            device: b.device.to_string(),
            tier: b.tier.clone(),
            gate: b.gate.clone(),
            zone: b.zone.clone(),
            direction: b.direction,
            verdict: b.verdict,
            reason: b.reason.clone(),
            hlc: b.hlc,
            wall_ms: b.wall_ms,
            annuls: b.annuls.clone(),
            origin: b.origin.clone(),
        }
    }
}

/// The outcome of replaying the policy over one ticket's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketReplay {
    /// Admits (`in`) the policy allowed, in order.
    pub entries: Vec<RecordRef>,
    /// Admits beyond what the policy allows: double entries.
    pub double_entries: Vec<RecordRef>,
    /// Whether the holder is inside now (last legit `in` not followed by an `out`).
    pub inside: bool,
    /// `in` admits still available.
    pub credits: u32,
    /// The festival day of the last legitimate `in` admit and how many that day counted (what
    /// a daily limit is checked against).
    pub last_day: Option<(u64, u32)>,
}

/// A double entry on one ticket: what was legitimately admitted and what came in beyond it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    pub ticket_id: String,
    pub entries: Vec<RecordRef>,
    pub double_entries: Vec<RecordRef>,
}

#[derive(Clone, Debug, Default)]
pub struct Index {
    tickets: FastMap<Box<str>, Vec<Entry>>,
    names: Names,
    rules: HashMap<String, EntryRule>,
    /// Tickets with at least one double entry → the double entries.
    conflicts: BTreeMap<Box<str>, Vec<ScanRef>>,
    records: u64,
    /// Origins of reconciled records (few), by scan.
    origins: FastMap<ScanRef, Box<str>>,
    /// Running totals for the statistics.
    tally: Tally,
}

impl Index {
    pub fn new(rules: HashMap<String, EntryRule>) -> Index {
        Index {
            rules,
            ..Index::default()
        }
    }

    /// Number of records held (all verdicts).
    pub fn len(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    pub fn ticket_count(&self) -> usize {
        self.tickets.len()
    }

    pub fn contains(&self, ticket_id: &str, scan: ScanRef) -> bool {
        self.tickets
            .get(ticket_id)
            .is_some_and(|v| v.iter().any(|e| e.scan == scan))
    }

    /// Insert one record. Returns false if it was already there. Conflicts of the ticket are
    /// recomputed.
    pub fn insert(&mut self, body: &ScanBody) -> bool {
        let scan = body.scan_ref();
        if self.contains(&body.ticket_id, scan) {
            return false;
        }
        let entry = Entry {
            hlc: body.hlc,
            wall_ms: body.wall_ms,
            scan,
            annuls: body.annuls.as_deref().and_then(ScanRef::parse),
            gate: self.names.intern(&body.gate),
            zone: self.names.intern(&body.zone),
            tier: self.names.intern(&body.tier),
            reason: self.names.intern(&body.reason),
            direction: body.direction,
            verdict: body.verdict,
            // Only offline origins merge records; a hand check-in's never does.
            origin: body
                .origin
                .as_deref()
                .filter(|o| !o.starts_with(crate::record::MANUAL_ORIGIN_PREFIX))
                .map_or(0, origin_hash),
        };
        let before = self.ticket_state(&body.ticket_id);
        let list = self
            .tickets
            .entry(body.ticket_id.as_str().into())
            .or_default();
        let at = list.partition_point(|e| e.order_key() < entry.order_key());
        list.insert(at, entry);
        self.records += 1;
        if let Some(o) = &body.origin {
            self.origins.insert(scan, o.as_str().into());
        }
        self.tally.record(self.seen(&entry));
        let after = self.refresh_conflicts(&body.ticket_id);
        self.tally.ticket(before, after);
        true
    }

    fn seen(&self, e: &Entry) -> Seen {
        Seen {
            verdict: e.verdict,
            wall_ms: e.wall_ms,
            // Unreadable codes have no tier.
            tier: (!self.names.get(e.tier).is_empty()).then_some(e.tier),
            gate: e.gate,
            zone: e.zone,
            reason: e.reason,
            device: e.device(),
        }
    }

    /// The running totals behind the statistics.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// People inside a zone now (the merged running total).
    pub fn inside(&self, zone: &str) -> u64 {
        let Some(id) = self.names.ids.get(zone) else {
            return 0;
        };
        self.tally.inside_by_zone.get(id).copied().unwrap_or(0)
    }

    /// An interned gate, zone, tier or reason name.
    pub fn name(&self, id: u16) -> &str {
        self.names.get(id)
    }

    /// A ticket's contribution to the per-ticket figures, from its replay.
    fn ticket_state(&self, ticket_id: &str) -> TicketState {
        let Some(list) = self.tickets.get(ticket_id) else {
            return TicketState::default();
        };
        let (tier, rule) = self.tier_rule(list);
        let r = replay_entries(list, rule);
        TicketState {
            checked_in: r.legit.first().and(tier),
            inside: r.legit.last().filter(|_| r.inside).map(|e| e.zone),
        }
    }

    /// The tier (interned) of a ticket's first admit and its entry rule.
    fn tier_rule(&self, list: &[Entry]) -> (Option<u16>, EntryRule) {
        let tier = list
            .iter()
            .find(|e| e.verdict == Verdict::Admit)
            .map(|e| e.tier);
        let rule = tier
            .and_then(|t| self.rules.get(self.names.get(t)).copied())
            .unwrap_or_default();
        (tier, rule)
    }

    /// Whether a record with this origin (a reconciled offline scan) is on the ticket.
    pub fn has_origin(&self, ticket_id: &str, origin: &str) -> bool {
        let h = origin_hash(origin);
        self.tickets
            .get(ticket_id)
            .is_some_and(|v| v.iter().any(|e| e.origin == h))
    }

    /// Drop a chain's records from position `from` on (a fork was proven there). Returns how
    /// many were dropped.
    pub fn drop_chain_from(&mut self, chain: ChainKey, from: u32) -> u64 {
        self.drop_where(|e| e.scan.chain == chain && e.scan.seq >= from)
    }

    /// Drop a revoked device's records that its cut does not keep. Returns how many.
    pub fn drop_revoked(&mut self, device: DeviceId, cut: &Cut) -> u64 {
        self.drop_where(|e| {
            e.device() == device
                && cut
                    .keep
                    .get(&e.scan.chain.chain)
                    .is_none_or(|last| e.scan.seq > *last)
        })
    }

    fn drop_where(&mut self, doomed: impl Fn(&Entry) -> bool) -> u64 {
        let mut touched = Vec::new();
        let mut gone = Vec::new();
        for (ticket, list) in self.tickets.iter_mut() {
            let before = list.len();
            gone.extend(list.iter().filter(|e| doomed(e)).map(|e| e.scan));
            list.retain(|e| !doomed(e));
            if list.len() != before {
                touched.push(ticket.clone());
            }
        }
        let dropped = gone.len() as u64;
        self.records -= dropped;
        for scan in gone {
            self.origins.remove(&scan);
        }
        if dropped > 0 {
            self.rebuild_tally();
        }
        for t in touched {
            if self.tickets.get(&t).is_some_and(Vec::is_empty) {
                self.tickets.remove(&t);
            }
            self.refresh_conflicts(&t);
        }
        dropped
    }

    /// All records of a ticket, in ledger order.
    pub fn records(&self, ticket_id: &str) -> Vec<RecordRef> {
        self.tickets
            .get(ticket_id)
            .map(|list| list.iter().map(|e| self.to_ref(ticket_id, e)).collect())
            .unwrap_or_default()
    }

    /// Replay the entry policy of `tier` over the ticket's records. The tier given by the caller
    /// wins over the tiers written in records (they are the same unless the organizer changed
    /// it).
    pub fn replay(&self, ticket_id: &str, tier: &str) -> TicketReplay {
        let rule = self.rules.get(tier).copied().unwrap_or_default();
        let Some(list) = self.tickets.get(ticket_id) else {
            return TicketReplay {
                credits: rule.max_entries,
                ..TicketReplay::default()
            };
        };
        let r = replay_entries(list, rule);
        TicketReplay {
            entries: r.legit.iter().map(|e| self.to_ref(ticket_id, e)).collect(),
            double_entries: r.double.iter().map(|e| self.to_ref(ticket_id, e)).collect(),
            inside: r.inside,
            credits: r.credits,
            last_day: r.day,
        }
    }

    /// Every ticket with double entries, ordered by ticket id.
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.conflicts
            .keys()
            .map(|t| {
                let tier = self.ticket_tier(t);
                let r = self.replay(t, &tier);
                Conflict {
                    ticket_id: t.to_string(),
                    entries: r.entries,
                    double_entries: r.double_entries,
                }
            })
            .collect()
    }

    /// Tickets with at least one double entry.
    pub fn conflict_tickets(&self) -> usize {
        self.conflicts.len()
    }

    pub fn conflict_count(&self) -> usize {
        self.conflicts.values().map(Vec::len).sum()
    }

    /// Visit every record (for statistics), ticket by ticket in no particular order.
    pub fn for_each_record(&self, mut f: impl FnMut(&RecordRef)) {
        for (ticket, list) in &self.tickets {
            for e in list {
                f(&self.to_ref(ticket, e));
            }
        }
    }

    /// Every ticket with at least one record, in no particular order.
    pub fn tickets(&self) -> impl Iterator<Item = &str> {
        self.tickets.keys().map(|k| &**k)
    }

    /// Tier of a ticket as its first admit says: admits are written from a verified credential;
    /// a denial may carry anything a forged code claimed, so it never decides the tier.
    pub fn ticket_tier(&self, ticket_id: &str) -> String {
        self.tickets
            .get(ticket_id)
            .and_then(|l| l.iter().find(|e| e.verdict == Verdict::Admit))
            .map(|e| self.names.get(e.tier).to_string())
            .unwrap_or_default()
    }

    /// Recompute a ticket's double entries; returns its per-ticket figures.
    fn refresh_conflicts(&mut self, ticket_id: &str) -> TicketState {
        let (double, state) = match self.tickets.get(ticket_id) {
            Some(list) => {
                let (tier, rule) = self.tier_rule(list);
                let r = replay_entries(list, rule);
                let state = TicketState {
                    checked_in: r.legit.first().and(tier),
                    inside: r.legit.last().filter(|_| r.inside).map(|e| e.zone),
                };
                (r.double.iter().map(|e| e.scan).collect::<Vec<_>>(), state)
            }
            None => (Vec::new(), TicketState::default()),
        };
        if double.is_empty() {
            self.conflicts.remove(ticket_id);
        } else {
            self.conflicts.insert(ticket_id.into(), double);
        }
        state
    }

    /// Recount every total (after records were dropped: rare).
    fn rebuild_tally(&mut self) {
        let mut tally = Tally::default();
        for (ticket, list) in &self.tickets {
            for e in list {
                tally.record(self.seen(e));
            }
            tally.ticket(TicketState::default(), self.ticket_state(ticket));
        }
        self.tally = tally;
    }

    fn to_ref(&self, ticket_id: &str, e: &Entry) -> RecordRef {
        RecordRef {
            scan_id: e.scan.to_string(),
            ticket_id: ticket_id.to_string(),
            device: e.device().to_string(),
            tier: self.names.get(e.tier).to_string(),
            gate: self.names.get(e.gate).to_string(),
            zone: self.names.get(e.zone).to_string(),
            direction: e.direction,
            verdict: e.verdict,
            reason: self.names.get(e.reason).to_string(),
            hlc: e.hlc,
            wall_ms: e.wall_ms,
            annuls: e.annuls.map(|a| a.to_string()),
            origin: self.origins.get(&e.scan).map(|o| o.to_string()),
        }
    }
}

/// A reconciled scan's origin as the index keeps it (never 0).
fn origin_hash(origin: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(origin.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]).max(1)
}

/// What the policy replay finds on one ticket.
struct Replayed<'a> {
    legit: Vec<&'a Entry>,
    double: Vec<&'a Entry>,
    inside: bool,
    credits: u32,
    /// Festival day of the last legit `in` and the `in` admits it counts.
    day: Option<(u64, u32)>,
}

/// The policy replay: the one place that says which admits a ticket was entitled to. Records
/// come in HLC order, so festival days only move forward along the list; a daily limit counts
/// the legit admits of the record's own day (its HLC time, the same on every replica).
fn replay_entries(list: &[Entry], rule: EntryRule) -> Replayed<'_> {
    // One undo per ticket: the first annul (in ledger order) that annuls an admit is honoured,
    // later ones are not (admit, undo, admit, undo... would let a crowd in on one ticket).
    let undone = list.iter().find_map(|a| {
        list.iter()
            .find(|e| e.verdict == Verdict::Admit && annuls(a, e))
            .map(|e| e.scan)
    });
    let annulled = |e: &Entry| undone == Some(e.scan);
    let mut r = Replayed {
        legit: Vec::new(),
        double: Vec::new(),
        inside: false,
        credits: rule.max_entries,
        day: None,
    };
    let mut origins = Vec::new();
    for e in list.iter().filter(|e| e.verdict == Verdict::Admit) {
        if annulled(e) {
            continue;
        }
        // A reconciled offline scan posted to several nodes counts once (its first record).
        if e.origin != 0 {
            if origins.contains(&e.origin) {
                continue;
            }
            origins.push(e.origin);
        }
        let day = festival_day(Hlc(e.hlc).wall_ms(), rule.day_start_ms);
        let today = match r.day {
            Some((d, n)) if d == day => n,
            _ => 0,
        };
        match e.direction {
            Direction::In if r.credits > 0 && (rule.per_day == 0 || today < rule.per_day) => {
                r.credits -= 1;
                r.inside = true;
                r.day = Some((day, today + 1));
                r.legit.push(e);
            }
            Direction::In => r.double.push(e),
            Direction::Out => {
                if r.inside && rule.reentry {
                    r.credits += 1;
                    // Re-entry the same day is not a new day's entry.
                    if let Some((d, n)) = r.day.filter(|(d, _)| *d == day) {
                        r.day = Some((d, n.saturating_sub(1)));
                    }
                }
                r.inside = false;
            }
        }
    }
    r
}

/// Whether `a` annuls admit `e`: an annul record naming it, by the device that admitted, after
/// it and within [`ANNUL_WINDOW_MS`] of it. Judged here, on records alone, so every replica
/// honours the same annuls whoever wrote them.
fn annuls(a: &Entry, e: &Entry) -> bool {
    a.verdict == Verdict::Annul
        && a.annuls == Some(e.scan)
        && a.device() == e.device()
        && a.order_key() > e.order_key()
        && Hlc(a.hlc).wall_ms().saturating_sub(Hlc(e.hlc).wall_ms()) <= ANNUL_WINDOW_MS
}
