//! Room of strict zones: a zone whose capacity must hold even across a split is an escrow (a
//! bounded counter, Balegas et al. 2015). Its capacity is shared out as units of room, each
//! held by one device at a time; a gate admits into the zone only with a unit it holds, so in a
//! split each side admits at most the room it holds and the zone is never over capacity.
//!
//! Every unit is in exactly one place:
//! - held by a device: its start share (`room_holders`), plus room moved to it, less room it
//!   moved away, less its admits into the zone, plus its admits that were closed;
//! - spent: an admit into the zone (any admit, a double entry too: someone walked in);
//! - returned to the admitting device when the entry is closed: by an exit of the zone that
//!   names it (the exit's `seen`, the last entry its gate knew) and was not undone, or by the
//!   admitting device's own undo of it; once per entry, however many exits name it;
//! - in flight: moved by a room record ([`crate::record::Verdict::Room`]) its giver wrote, not
//!   yet held by its receiver until the receiver holds the record.
//!
//! A room record is credited to its receiver for at most what its giver held before it (its
//! start, what it was credited and given back, less what it spent and moved earlier, by its own
//! clock): a stolen scanner's record cannot make room from nothing. Records dropped later (a
//! revoked device, a proven fork) keep what they took (their admits, their moves' debits) and
//! lose what they gave (credits, closings): a dropped chain cannot spend its room twice.
//!
//! The accounts are a function of the set of records, worked out again when it changed, so any
//! order of arrival and a restart give the same room; a device's own room, from what it holds,
//! is never above the truth (what it lacks are others' records that only add to it).

use crate::index::maps::FastMap;
use crate::record::{room_move, DeviceId, Direction, ScanBody, ScanRef, Verdict};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What one record means for room (records of strict zones only).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fact {
    /// An admit into the zone: it spends a unit of its device.
    Entry { ticket: Box<str>, hlc: u64 },
    /// An exit through a gate of the zone, naming the entry it closes.
    Exit {
        closes: ScanRef,
        ticket: Box<str>,
        hlc: u64,
    },
    /// An undo of one of the device's own admits (an entry, or an exit).
    Undo { target: ScanRef },
    /// Room moved to another device (`to` none: a dropped chain's move, a debit only).
    Move {
        to: Option<DeviceId>,
        units: u32,
        hlc: u64,
    },
}

/// A strict zone as the event file sets it: its capacity and its room's holders at the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrictZone {
    pub capacity: u64,
    pub holders: Vec<DeviceId>,
}

pub use crate::event::STRICT_CAPACITY_MAX;
/// Most rounds working out room records' credits (each round credits as much as the last or
/// more; honest records settle in two; a record left short by the bound is conservative).
const CREDIT_ROUNDS_MAX: usize = 64;

/// One zone's accounts, worked out from its facts.
#[derive(Clone, Debug, Default)]
struct Accounts {
    room: BTreeMap<DeviceId, i64>,
}

/// One strict zone: its start shares and the facts of its records.
#[derive(Clone, Debug, Default)]
struct Zone {
    start: BTreeMap<DeviceId, i64>,
    facts: FastMap<ScanRef, Fact>,
    /// The accounts, until a fact changes.
    worked: OnceLock<Accounts>,
}

/// The strict zones' room, from the records indexed.
#[derive(Clone, Debug, Default)]
pub struct RoomBook {
    zones: FastMap<u16, Zone>,
    capacity: FastMap<u16, u64>,
}

impl RoomBook {
    /// The strict zones (interned) and their start shares: the capacity shared among the
    /// holders in order, the first ones one more when it does not divide.
    pub(crate) fn new(zones: impl IntoIterator<Item = (u16, StrictZone)>) -> RoomBook {
        let mut book = RoomBook::default();
        for (id, z) in zones {
            let cap = z.capacity.min(STRICT_CAPACITY_MAX);
            let n = z.holders.len().max(1) as u64;
            let mut zone = Zone::default();
            for (i, d) in z.holders.iter().enumerate() {
                let share = cap / n + u64::from((i as u64) < cap % n);
                *zone.start.entry(*d).or_default() += share as i64;
            }
            book.zones.insert(id, zone);
            book.capacity.insert(id, cap);
        }
        book
    }

    pub(crate) fn is_strict(&self, zone: u16) -> bool {
        self.zones.contains_key(&zone)
    }

    /// Take one record in (`zone` its interned zone): what it means for a strict zone's room.
    pub(crate) fn record(&mut self, b: &ScanBody, zone: u16) {
        let Some(z) = self.zones.get_mut(&zone) else {
            return;
        };
        let Some(fact) = fact_of(b) else {
            return;
        };
        if z.facts.insert(b.scan_ref(), fact).is_none() {
            z.worked = OnceLock::new();
        }
    }

    /// Records of dropped chains (a revoked device, a proven fork): their admits and the debit
    /// of their moves stay; their moves' credits, exits and undos go.
    pub(crate) fn drop_where(&mut self, doomed: impl Fn(&ScanRef) -> bool) {
        for z in self.zones.values_mut() {
            let gone: Vec<ScanRef> = z.facts.keys().filter(|at| doomed(at)).copied().collect();
            for at in gone {
                match z.facts.remove(&at) {
                    Some(Fact::Move { units, hlc, .. }) => {
                        let debit = Fact::Move {
                            to: None,
                            units,
                            hlc,
                        };
                        z.facts.insert(at, debit);
                    }
                    Some(e @ Fact::Entry { .. }) => {
                        z.facts.insert(at, e);
                    }
                    _ => {}
                }
            }
            z.worked = OnceLock::new();
        }
    }

    /// The room `device` holds in a strict zone, as these records say (exact for a device's
    /// own, from what it holds).
    pub(crate) fn room(&self, zone: u16, device: DeviceId) -> i64 {
        self.accounts(zone)
            .and_then(|a| a.room.get(&device).copied())
            .unwrap_or(0)
    }

    /// Every device's room in a strict zone, as these records say.
    pub(crate) fn rooms(&self, zone: u16) -> BTreeMap<DeviceId, i64> {
        self.accounts(zone)
            .map(|a| a.room.clone())
            .unwrap_or_default()
    }

    fn accounts(&self, zone: u16) -> Option<&Accounts> {
        let z = self.zones.get(&zone)?;
        Some(z.worked.get_or_init(|| z.work_out()))
    }

    /// A zone's capacity, if it is strict.
    pub(crate) fn capacity(&self, zone: u16) -> Option<u64> {
        self.capacity.get(&zone).copied()
    }
}

/// A record's meaning for room (the caller knows its zone is strict).
fn fact_of(b: &ScanBody) -> Option<Fact> {
    let ticket = || b.ticket_id.as_str().into();
    match (b.verdict, b.direction) {
        (Verdict::Admit, Direction::In) => Some(Fact::Entry {
            ticket: ticket(),
            hlc: b.hlc,
        }),
        (Verdict::Admit, Direction::Out) => Some(Fact::Exit {
            closes: ScanRef::parse(b.seen.first()?)?,
            ticket: ticket(),
            hlc: b.hlc,
        }),
        (Verdict::Annul, _) => Some(Fact::Undo {
            target: ScanRef::parse(b.annuls.as_deref()?)?,
        }),
        (Verdict::Room, _) => {
            let (_, to, units) = room_move(b)?;
            Some(Fact::Move {
                to: Some(to),
                units,
                hlc: b.hlc,
            })
        }
        _ => None,
    }
}

impl Zone {
    /// The accounts from the facts: entries closed, then moves credited, then each device's
    /// room.
    fn work_out(&self) -> Accounts {
        let returned = self.returned();
        let credited = self.credited(&returned);
        let mut room = self.start.clone();
        let mut add = |d: DeviceId, n: i64| *room.entry(d).or_default() += n;
        for (d, n) in &returned {
            add(*d, *n);
        }
        for (at, f) in &self.facts {
            match f {
                Fact::Entry { .. } => add(at.chain.device, -1),
                Fact::Move { units, .. } => add(at.chain.device, -i64::from(*units)),
                _ => {}
            }
        }
        for (at, n) in &credited {
            if let Some(Fact::Move { to: Some(to), .. }) = self.facts.get(at) {
                add(*to, *n);
            }
        }
        Accounts { room }
    }

    /// Entries closed, counted by the device that admitted: an entry is closed by an exit of
    /// its ticket after it, not undone by the exit's own device, or by its own device's undo.
    fn returned(&self) -> BTreeMap<DeviceId, i64> {
        let undone: std::collections::HashSet<(ScanRef, DeviceId)> = (self.facts.iter())
            .filter_map(|(at, f)| match f {
                Fact::Undo { target } => Some((*target, at.chain.device)),
                _ => None,
            })
            .collect();
        let mut closed: BTreeMap<ScanRef, ()> = BTreeMap::new();
        for (at, f) in &self.facts {
            let entry = match f {
                Fact::Exit { closes, .. } => *closes,
                Fact::Undo { target } => *target,
                _ => continue,
            };
            if self.closes(*at, f, entry, &undone) {
                closed.insert(entry, ());
            }
        }
        let mut returned = BTreeMap::new();
        for entry in closed.keys() {
            *returned.entry(entry.chain.device).or_default() += 1;
        }
        returned
    }

    fn closes(
        &self,
        at: ScanRef,
        closer: &Fact,
        entry: ScanRef,
        undone: &std::collections::HashSet<(ScanRef, DeviceId)>,
    ) -> bool {
        let Some(Fact::Entry { ticket, hlc }) = self.facts.get(&entry) else {
            return false;
        };
        match closer {
            Fact::Exit {
                ticket: t, hlc: h, ..
            } => t == ticket && h > hlc && !undone.contains(&(at, at.chain.device)),
            Fact::Undo { .. } => at.chain.device == entry.chain.device,
            _ => false,
        }
    }

    /// How much of each move is credited: at most what its giver held before it, by the
    /// giver's clock (start, credited, given back, less what it spent and moved earlier).
    /// Credits only grow from one round to the next: worked out until they no longer change.
    fn credited(&self, returned: &BTreeMap<DeviceId, i64>) -> BTreeMap<ScanRef, i64> {
        let debits = self.debits_by_time();
        let moves: Vec<(ScanRef, DeviceId, i64, u64)> = (self.facts.iter())
            .filter_map(|(at, f)| match f {
                Fact::Move {
                    to: Some(to),
                    units,
                    hlc,
                } => Some((*at, *to, i64::from(*units), *hlc)),
                _ => None,
            })
            .collect();
        let before = |giver: DeviceId, hlc: u64| -> i64 {
            let Some((times, sums)) = debits.get(&giver) else {
                return 0;
            };
            let n = times.partition_point(|t| *t < hlc);
            if n == 0 {
                0
            } else {
                sums[n - 1]
            }
        };
        let mut credited: BTreeMap<ScanRef, i64> = BTreeMap::new();
        for _ in 0..CREDIT_ROUNDS_MAX {
            let mut credits_in: BTreeMap<DeviceId, i64> = BTreeMap::new();
            for (at, to, _, _) in &moves {
                *credits_in.entry(*to).or_default() += credited.get(at).copied().unwrap_or(0);
            }
            let mut changed = false;
            for (at, _, units, hlc) in &moves {
                let giver = at.chain.device;
                let held = self.start.get(&giver).copied().unwrap_or(0)
                    + credits_in.get(&giver).copied().unwrap_or(0)
                    + returned.get(&giver).copied().unwrap_or(0)
                    - before(giver, *hlc);
                let c = (*units).min(held.max(0));
                if credited.insert(*at, c) != Some(c) {
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        credited
    }

    /// Each device's debits (admits, moves) in the order of its clock, with running sums.
    fn debits_by_time(&self) -> BTreeMap<DeviceId, (Vec<u64>, Vec<i64>)> {
        let mut by: BTreeMap<DeviceId, Vec<(u64, i64)>> = BTreeMap::new();
        for (at, f) in &self.facts {
            let d = match f {
                Fact::Entry { hlc, .. } => (*hlc, 1),
                Fact::Move { units, hlc, .. } => (*hlc, i64::from(*units)),
                _ => continue,
            };
            by.entry(at.chain.device).or_default().push(d);
        }
        (by.into_iter())
            .map(|(d, mut v)| {
                v.sort_unstable();
                let times = v.iter().map(|(t, _)| *t).collect();
                let sums = (v.iter())
                    .scan(0, |acc, (_, n)| {
                        *acc += n;
                        Some(*acc)
                    })
                    .collect();
                (d, (times, sums))
            })
            .collect()
    }
}
