//! The derived index: ticket → its records sorted by (HLC, device id, counter), and the replay
//! of the entry policy over that order.
//!
//! Every replica that holds the same records computes the same order, so the same replay, so the
//! same verdict on which admits were legitimate and which were double entries. The index is
//! never stored: it is rebuilt from the document on load and updated on every applied record.

use crate::event::roster::Cut;
pub use crate::event::rules::EntryRule;
use crate::index::maps::FastMap;
pub use crate::index::replay::ANNUL_WINDOW_MS;
use crate::index::replay::{Entry, Replay};
use crate::index::room::RoomBook;
pub use crate::index::room::StrictZone;
use crate::index::tally::{Seen, Tally, TicketState};
use crate::record::{ChainKey, DeviceId, Direction, ScanBody, ScanRef, Verdict};
use std::collections::{BTreeMap, HashMap};

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

/// Admits and annuls from which a ticket keeps its replay; below, a replay from scratch costs
/// less than keeping one (most tickets hold one or two records: the memory goes to the records).
const KEEP_REPLAY_FROM: usize = 8;

/// One ticket's records: the admits and annuls the replay reads, the denials beside them (a
/// camera held on one bad code adds denials only, and they never cost a replay), and, once it
/// has [`KEEP_REPLAY_FROM`] admits, the replay of them under the ticket's rule, kept up to date.
#[derive(Clone, Debug, Default)]
struct TicketLog {
    /// Admits and annuls in ledger order.
    admits: Vec<Entry>,
    /// What few tickets have (boxed: the ticket map's slots stay small).
    more: Option<Box<More>>,
}

#[derive(Clone, Debug, Default)]
struct More {
    /// Denials in ledger order.
    denials: Vec<Entry>,
    /// Origins (hashed) of the ticket's reconciled records, sorted.
    origins: Vec<u64>,
    kept: Option<Replay>,
}

impl TicketLog {
    fn list(&self, replayed: bool) -> &[Entry] {
        if replayed {
            &self.admits
        } else {
            self.denials()
        }
    }

    fn denials(&self) -> &[Entry] {
        self.more.as_ref().map_or(&[], |m| &m.denials)
    }

    fn origins(&self) -> &[u64] {
        self.more.as_ref().map_or(&[], |m| &m.origins)
    }

    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }

    /// Where `e` goes in its list, or None if that record is there already.
    fn place(&self, e: &Entry) -> Option<usize> {
        let list = self.list(e.replayed());
        list.binary_search_by(|x| x.order_key().cmp(&e.order_key()))
            .err()
    }

    fn len(&self) -> usize {
        self.admits.len() + self.denials().len()
    }

    /// Every record in ledger order (the two lists merged).
    fn merged(&self) -> Vec<&Entry> {
        let mut all: Vec<&Entry> = self.admits.iter().chain(self.denials()).collect();
        all.sort_unstable_by_key(|e| e.order_key());
        all
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.admits.iter().chain(self.denials())
    }

    /// The tier (interned) of the ticket's first admit.
    fn tier(&self) -> Option<u16> {
        self.admits
            .iter()
            .find(|e| e.verdict == Verdict::Admit)
            .map(|e| e.tier)
    }

    /// The replay under `rule`: the kept one when it is that rule's, else one from scratch.
    fn replay(&self, rule: EntryRule) -> std::borrow::Cow<'_, Replay> {
        match self.more.as_ref().and_then(|m| m.kept.as_ref()) {
            Some(r) if r.rule == rule => std::borrow::Cow::Borrowed(r),
            _ => std::borrow::Cow::Owned(Replay::run(&self.admits, rule)),
        }
    }

    /// Bring the kept replay up to date after an admit or annul was placed at `at`.
    fn replayed_at(&mut self, at: usize, rule: EntryRule) {
        if self.admits.len() < KEEP_REPLAY_FROM {
            if let Some(m) = self.more.as_mut() {
                m.kept = None;
            }
            return;
        }
        let admits = &self.admits;
        let more = self.more.get_or_insert_with(Box::default);
        match &mut more.kept {
            Some(r) => r.extend(admits, at, rule),
            None => more.kept = Some(Replay::run(admits, rule)),
        }
    }

    fn note_origin(&mut self, origin: u64) {
        let origins = &mut self.more().origins;
        if let Err(at) = origins.binary_search(&origin) {
            origins.insert(at, origin);
        }
    }

    /// The ticket's contribution to the per-ticket figures under `rule`, and its double
    /// entries.
    fn state(&self, rule: EntryRule) -> (TicketState, usize) {
        let r = self.replay(rule);
        let last = r.legit.last().map(|&i| &self.admits[i as usize]);
        let state = TicketState {
            checked_in: r.legit.first().and(self.tier()),
            inside: last.filter(|_| r.inside).map(|e| e.zone),
        };
        (state, r.double.len())
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

/// What the replay says of a ticket now, in brief ([`Index::standing`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketStanding {
    pub credits: u32,
    pub inside: bool,
    pub last_day: Option<(u64, u32)>,
    /// The gate of its last legitimate entry.
    pub last_gate: Option<String>,
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
    tickets: FastMap<Box<str>, TicketLog>,
    names: Names,
    rules: HashMap<String, EntryRule>,
    /// Tickets with at least one double entry → how many.
    conflicts: BTreeMap<Box<str>, usize>,
    records: u64,
    /// Origins of reconciled records (few), by scan.
    origins: FastMap<ScanRef, Box<str>>,
    /// Running totals for the statistics.
    tally: Tally,
    /// Strict zones' room.
    room: RoomBook,
    /// Gate pauses and the audit of supervisors' actions.
    actions: crate::index::actions::Actions,
}

impl Index {
    pub fn new(rules: HashMap<String, EntryRule>) -> Index {
        Index {
            rules,
            ..Index::default()
        }
    }

    /// The strict zones and their room's start holders (before any record is indexed: a
    /// ledger sets them as it is made, from the event file).
    pub fn set_strict(&mut self, zones: Vec<(String, StrictZone)>) {
        let zones: Vec<(u16, StrictZone)> = (zones.into_iter())
            .map(|(z, s)| (self.names.intern(&z), s))
            .collect();
        self.room = RoomBook::new(zones);
    }

    /// The room `device` holds in a strict zone (none for another zone): exact for the
    /// device's own, what these records say for another.
    pub fn room(&self, zone: &str, device: DeviceId) -> Option<i64> {
        let id = *self.names.ids.get(zone)?;
        self.room.is_strict(id).then(|| self.room.room(id, device))
    }

    /// Gate pauses and the audit of supervisors' actions.
    pub fn actions(&self) -> &crate::index::actions::Actions {
        &self.actions
    }

    /// Every device's room in a strict zone, as these records say.
    pub fn rooms(&self, zone: &str) -> BTreeMap<DeviceId, i64> {
        let Some(id) = self.names.ids.get(zone) else {
            return BTreeMap::new();
        };
        self.room.rooms(*id)
    }

    /// A strict zone's capacity (none for another zone).
    pub fn strict_capacity(&self, zone: &str) -> Option<u64> {
        self.room.capacity(*self.names.ids.get(zone)?)
    }

    /// The entry rules judged by now, per tier.
    pub fn rules(&self) -> &HashMap<String, EntryRule> {
        &self.rules
    }

    /// The entry rule a tier is judged by now.
    pub fn rule(&self, tier: &str) -> EntryRule {
        self.rules.get(tier).copied().unwrap_or_default()
    }

    /// The entry rules changed (an organizer's bulletin): every ticket whose tier's rule is
    /// another one now is replayed from its records, as if they had all come in under the new
    /// rules. Returns how many tickets were judged again.
    pub fn set_rules(&mut self, rules: HashMap<String, EntryRule>) -> usize {
        if rules == self.rules {
            return 0;
        }
        let old = std::mem::replace(&mut self.rules, rules);
        let changed: Vec<Box<str>> = (self.tickets.iter())
            .filter(|(_, log)| {
                let tier = log.tier();
                rule_of(&old, &self.names, tier) != rule_of(&self.rules, &self.names, tier)
            })
            .map(|(t, _)| t.clone())
            .collect();
        for t in &changed {
            self.replay_again(t);
        }
        if !changed.is_empty() {
            self.rebuild_tally();
        }
        changed.len()
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

    /// Insert one record. Returns false if it was already there. The ticket's replay moves by
    /// one step when the record is its latest admit; a denial leaves it as it is.
    pub fn insert(&mut self, body: &ScanBody) -> bool {
        let entry = self.entry(body);
        let log = self
            .tickets
            .entry(body.ticket_id.as_str().into())
            .or_default();
        let Some(at) = log.place(&entry) else {
            return false;
        };
        if entry.origin != 0 {
            log.note_origin(entry.origin);
        }
        // A denial changes no replay: only the totals move.
        let replayed = if entry.replayed() {
            let (before, _) = match log.admits.is_empty() {
                true => (TicketState::default(), 0),
                false => log.state(rule_of(&self.rules, &self.names, log.tier())),
            };
            log.admits.insert(at, entry);
            let rule = rule_of(&self.rules, &self.names, log.tier());
            log.replayed_at(at, rule);
            Some((before, log.state(rule)))
        } else {
            log.more().denials.insert(at, entry);
            None
        };
        self.records += 1;
        if let Some(o) = &body.origin {
            self.origins.insert(entry.scan, o.as_str().into());
        }
        self.tally.record(self.seen(&entry));
        self.room.record(body, entry.zone);
        self.actions.record(body);
        if let Some((before, (after, doubles))) = replayed {
            self.note_conflicts(&body.ticket_id, doubles);
            self.tally.ticket(before, after);
        }
        true
    }

    fn entry(&mut self, body: &ScanBody) -> Entry {
        Entry {
            hlc: body.hlc,
            wall_ms: body.wall_ms,
            scan: body.scan_ref(),
            annuls: body.annuls.as_deref().and_then(ScanRef::parse),
            gate: self.names.intern(&body.gate),
            zone: self.names.intern(&body.zone),
            tier: self.names.intern(&body.tier),
            reason: self.names.intern(&body.reason),
            direction: body.direction,
            verdict: body.verdict,
            // Only reconciled offline scans' origins merge records; a hand check-in's or a
            // phone's online scan's never does.
            origin: body
                .origin
                .as_deref()
                .filter(|o| !o.starts_with(crate::record::MANUAL_ORIGIN_PREFIX))
                .filter(|o| !o.starts_with(crate::record::LIVE_ORIGIN_PREFIX))
                .map_or(0, origin_hash),
        }
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

    /// The verdicts of the ticket's records that carry exactly this origin, whatever its kind.
    pub fn origin_verdicts(&self, ticket_id: &str, origin: &str) -> Vec<Verdict> {
        let Some(log) = self.tickets.get(ticket_id) else {
            return Vec::new();
        };
        log.iter()
            .filter(|e| self.origins.get(&e.scan).is_some_and(|o| &**o == origin))
            .map(|e| e.verdict)
            .collect()
    }

    /// Whether a record with this origin (a reconciled offline scan) is on the ticket.
    pub fn has_origin(&self, ticket_id: &str, origin: &str) -> bool {
        let h = origin_hash(origin);
        self.tickets
            .get(ticket_id)
            .is_some_and(|t| t.origins().binary_search(&h).is_ok())
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
        for (ticket, log) in self.tickets.iter_mut() {
            let before = log.len();
            gone.extend(log.iter().filter(|e| doomed(e)).map(|e| e.scan));
            log.admits.retain(|e| !doomed(e));
            if let Some(m) = log.more.as_mut() {
                m.denials.retain(|e| !doomed(e));
            }
            if log.len() != before {
                touched.push(ticket.clone());
            }
        }
        let dropped = gone.len() as u64;
        self.records -= dropped;
        let gone_set: std::collections::HashSet<ScanRef> = gone.iter().copied().collect();
        self.room.drop_where(|at| gone_set.contains(at));
        self.actions.drop_where(|at| gone_set.contains(at));
        for scan in gone {
            self.origins.remove(&scan);
        }
        for t in touched {
            self.replay_again(&t);
        }
        if dropped > 0 {
            self.rebuild_tally();
        }
        dropped
    }

    /// Replay a ticket from its first record (after records were dropped from it).
    fn replay_again(&mut self, ticket_id: &str) {
        let Some(log) = self.tickets.get(ticket_id) else {
            return;
        };
        if log.len() == 0 {
            self.tickets.remove(ticket_id);
            self.conflicts.remove(ticket_id);
            return;
        }
        let rule = rule_of(&self.rules, &self.names, log.tier());
        let Some(log) = self.tickets.get_mut(ticket_id) else {
            return;
        };
        let mut origins: Vec<u64> = log.iter().map(|e| e.origin).filter(|o| *o != 0).collect();
        origins.sort_unstable();
        origins.dedup();
        if let Some(m) = log.more.as_mut() {
            m.kept = None;
            m.origins = origins;
        }
        log.replayed_at(0, rule);
        let (_, doubles) = log.state(rule);
        self.note_conflicts(ticket_id, doubles);
    }

    /// All records of a ticket, in ledger order.
    pub fn records(&self, ticket_id: &str) -> Vec<RecordRef> {
        self.tickets
            .get(ticket_id)
            .map(|log| {
                let all = log.merged();
                all.iter().map(|e| self.to_ref(ticket_id, e)).collect()
            })
            .unwrap_or_default()
    }

    /// Replay the entry policy of `tier` over the ticket's records. The tier given by the caller
    /// wins over the tiers written in records (they are the same unless the organizer changed
    /// it). Under the ticket's own rule this reads the replay the index keeps.
    pub fn replay(&self, ticket_id: &str, tier: &str) -> TicketReplay {
        let rule = self.rule(tier);
        let Some(log) = self.tickets.get(ticket_id) else {
            return TicketReplay {
                credits: rule.max_entries,
                ..TicketReplay::default()
            };
        };
        let r = log.replay(rule);
        let at = |i: &u32| self.to_ref(ticket_id, &log.admits[*i as usize]);
        TicketReplay {
            entries: r.legit.iter().map(at).collect(),
            double_entries: r.double.iter().map(at).collect(),
            inside: r.inside,
            credits: r.credits,
            last_day: r.day,
        }
    }

    /// A ticket's standing under its tier's rule (the tier of its first admit), without the
    /// records themselves: what a phone's snapshot carries. `None` for a ticket the replay
    /// leaves as new (no admit counted).
    pub fn standing(&self, ticket_id: &str) -> Option<TicketStanding> {
        let log = self.tickets.get(ticket_id)?;
        let rule = self.rule(self.names.get(log.tier()?));
        let r = log.replay(rule);
        let last = r.legit.last().map(|&i| &log.admits[i as usize]);
        let fresh = r.credits == rule.max_entries && !r.inside && r.day.is_none();
        (!fresh).then(|| TicketStanding {
            credits: r.credits,
            inside: r.inside,
            last_day: r.day,
            last_gate: last.map(|e| self.names.get(e.gate).to_string()),
        })
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
        self.conflicts.values().sum()
    }

    /// Visit every record (for statistics), ticket by ticket in no particular order.
    pub fn for_each_record(&self, mut f: impl FnMut(&RecordRef)) {
        for (ticket, log) in &self.tickets {
            for e in log.iter() {
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
            .and_then(TicketLog::tier)
            .map(|t| self.names.get(t).to_string())
            .unwrap_or_default()
    }

    /// Note how many double entries a ticket has now.
    fn note_conflicts(&mut self, ticket_id: &str, doubles: usize) {
        if doubles == 0 {
            self.conflicts.remove(ticket_id);
        } else if let Some(n) = self.conflicts.get_mut(ticket_id) {
            *n = doubles;
        } else {
            self.conflicts.insert(ticket_id.into(), doubles);
        }
    }

    /// Recount every total (after records were dropped: rare).
    fn rebuild_tally(&mut self) {
        let mut tally = Tally::default();
        for log in self.tickets.values() {
            for e in log.iter() {
                tally.record(self.seen(e));
            }
            let (state, _) = log.state(rule_of(&self.rules, &self.names, log.tier()));
            tally.ticket(TicketState::default(), state);
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

/// The entry rule of a ticket whose first admit is of `tier` (interned).
fn rule_of(rules: &HashMap<String, EntryRule>, names: &Names, tier: Option<u16>) -> EntryRule {
    tier.and_then(|t| rules.get(names.get(t)).copied())
        .unwrap_or_default()
}

/// A reconciled scan's origin as the index keeps it (never 0).
fn origin_hash(origin: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(origin.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]).max(1)
}
