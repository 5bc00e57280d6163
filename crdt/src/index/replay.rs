//! The policy replay: the one place that says which admits a ticket was entitled to.
//!
//! It reads a ticket's admits and annuls in ledger order (HLC, device id, counter) and says which
//! admits were legitimate, which were double entries, whether the holder is inside and how many
//! entries are left. Every replica that holds the same records replays the same list, so reaches
//! the same verdicts. The index keeps one replay per ticket and extends it by one step when a
//! record lands at the end of the list (the usual case: records arrive in time order), so a
//! ticket's next record costs the same however many it already has; a record that lands earlier,
//! or an annul that undoes an admit, replays the ticket again.

use crate::event::rules::EntryRule;
use crate::index::maps::FastMap;
use crate::record::date::festival_day;
use crate::record::hlc::Hlc;
use crate::record::{DeviceId, Direction, ScanRef, Verdict};

/// How long after an admit the device that made it may annul it; later annuls are ignored by
/// every replica's replay (measured between the two records' HLC times, both written by the
/// same device).
pub const ANNUL_WINDOW_MS: u64 = 120_000;

/// One record as the index keeps it: compact, strings interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub hlc: u64,
    pub wall_ms: u64,
    pub scan: ScanRef,
    pub annuls: Option<ScanRef>,
    pub gate: u16,
    pub zone: u16,
    pub tier: u16,
    pub reason: u16,
    pub direction: Direction,
    pub verdict: Verdict,
    /// Hash of the record's origin (reconciled offline scans), 0 for none.
    pub origin: u64,
}

impl Entry {
    pub fn order_key(&self) -> (u64, ScanRef) {
        (self.hlc, self.scan)
    }
    pub fn device(&self) -> DeviceId {
        self.scan.chain.device
    }
    /// Whether the replay reads this record (admits and annuls; denials never change it).
    pub fn replayed(&self) -> bool {
        self.verdict != Verdict::Deny
    }
}

/// What the replay has found so far on one ticket's list of admits and annuls.
#[derive(Clone, Debug)]
pub(crate) struct Replay {
    /// The rule it replays (the ticket's tier's).
    pub rule: EntryRule,
    /// Positions in the list of the admits the policy allowed, in order.
    pub legit: Vec<u32>,
    /// Positions of the admits beyond what the policy allows: double entries.
    pub double: Vec<u32>,
    /// Whether the holder is inside (last legit `in` not followed by an `out`).
    pub inside: bool,
    /// `in` admits still available.
    pub credits: u32,
    /// Festival day of the last legit `in` and the `in` admits it counts.
    pub day: Option<(u64, u32)>,
    /// Origins of the reconciled admits counted, sorted: one offline scan posted to several
    /// nodes counts once (its first record).
    origins: Vec<u64>,
    /// The one admit an annul undid.
    undone: Option<ScanRef>,
    /// How many entries of the list it has read.
    read: usize,
}

impl Replay {
    /// Replay the whole list under `rule`.
    pub fn run(list: &[Entry], rule: EntryRule) -> Replay {
        let mut r = Replay {
            rule,
            legit: Vec::new(),
            double: Vec::new(),
            inside: false,
            credits: rule.max_entries,
            day: None,
            origins: Vec::new(),
            undone: undone(list),
            read: 0,
        };
        for (i, e) in list.iter().enumerate() {
            r.step(i, e);
        }
        r.read = list.len();
        r
    }

    /// Bring the replay up to date after one entry was added at position `at` of `list`, under
    /// `rule`: one step when it was added at the end and changes nothing before it, else the
    /// whole list again.
    pub fn extend(&mut self, list: &[Entry], at: usize, rule: EntryRule) {
        let appended = at == self.read && at + 1 == list.len();
        let e = &list[at];
        // An annul added last changes the replay only if it is the first to undo an admit.
        let undoes = e.verdict == Verdict::Annul
            && self.undone.is_none()
            && within_window(list, at).iter().any(|a| annuls(e, a));
        if rule != self.rule || !appended || undoes {
            *self = Replay::run(list, rule);
            return;
        }
        self.step(at, e);
        self.read = list.len();
    }

    fn step(&mut self, i: usize, e: &Entry) {
        if e.verdict != Verdict::Admit || self.undone == Some(e.scan) {
            return;
        }
        if e.origin != 0 {
            match self.origins.binary_search(&e.origin) {
                Ok(_) => return,
                Err(at) => self.origins.insert(at, e.origin),
            }
        }
        let rule = self.rule;
        let day = festival_day(Hlc(e.hlc).wall_ms(), rule.day_start_ms);
        let today = match self.day {
            Some((d, n)) if d == day => n,
            _ => 0,
        };
        let at = i as u32;
        match e.direction {
            Direction::In if self.credits > 0 && (rule.per_day == 0 || today < rule.per_day) => {
                self.credits -= 1;
                self.inside = true;
                self.day = Some((day, today + 1));
                self.legit.push(at);
            }
            Direction::In => self.double.push(at),
            Direction::Out => {
                if self.inside && rule.reentry {
                    self.credits += 1;
                    // Re-entry the same day is not a new day's entry.
                    if let Some((d, n)) = self.day.filter(|(d, _)| *d == day) {
                        self.day = Some((d, n.saturating_sub(1)));
                    }
                }
                self.inside = false;
            }
        }
    }
}

/// One undo per ticket: the first annul (in ledger order) that annuls an admit is honoured,
/// later ones are not (admit, undo, admit, undo... would let a crowd in on one ticket).
fn undone(list: &[Entry]) -> Option<ScanRef> {
    if !list.iter().any(|e| e.verdict == Verdict::Annul) {
        return None;
    }
    let admits: FastMap<ScanRef, &Entry> = list
        .iter()
        .filter(|e| e.verdict == Verdict::Admit)
        .map(|e| (e.scan, e))
        .collect();
    list.iter().find_map(|a| {
        let target = admits.get(&a.annuls?)?;
        annuls(a, target).then_some(target.scan)
    })
}

/// The entries before `at` that the annul at `at` could still undo (those within
/// [`ANNUL_WINDOW_MS`] before it), found by their HLC.
fn within_window(list: &[Entry], at: usize) -> &[Entry] {
    let wall = Hlc(list[at].hlc).wall_ms();
    let from = Hlc::new(wall.saturating_sub(ANNUL_WINDOW_MS), 0).0;
    let start = list[..at].partition_point(|e| e.hlc < from);
    &list[start..at]
}

/// Whether `a` annuls admit `e`: an annul record naming it, by the device that admitted, after
/// it and within [`ANNUL_WINDOW_MS`] of it. Judged here, on records alone, so every replica
/// honours the same annuls whoever wrote them.
fn annuls(a: &Entry, e: &Entry) -> bool {
    a.verdict == Verdict::Annul
        && e.verdict == Verdict::Admit
        && a.annuls == Some(e.scan)
        && a.device() == e.device()
        && a.order_key() > e.order_key()
        && Hlc(a.hlc).wall_ms().saturating_sub(Hlc(e.hlc).wall_ms()) <= ANNUL_WINDOW_MS
}
