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
//!   undo of it that the ticket's replay honours (`index::replay`: the ticket's first, by the
//!   device that admitted, within the undo window); once per entry, however many exits name it;
//! - in flight: moved by a room record ([`crate::record::Verdict::Room`]) its giver wrote, not
//!   yet held by its receiver until the receiver holds the record.
//!
//! A room record is credited to its receiver for at most what its giver held just before it,
//! by the giver's clock: its start, the room credited to it and its entries closed before the
//! record, less what it spent and moved before it (records at one instant in record order; a
//! unit comes back no earlier than it was spent). However a stolen scanner orders and dates its
//! own records, it cannot make room from nothing.
//!
//! The accounts are a function of the records that stand, worked out again when they changed,
//! so any order of arrival and a restart give the same room. Records dropped (a revoked device
//! past its cut, a proven fork, an evicted chain) go as if never taken in; room a dropped chain
//! gave goes with it. A device's own room, from what it holds, is never above the truth: what
//! it lacks are others' records that only add to it, except the drop of a chain that gave it
//! room (what a stolen scanner can cost: the room it held, once on each branch of a fork, or
//! what it gave past its revocation's cut).

use crate::index::maps::FastMap;
use crate::index::replay::ANNUL_WINDOW_MS;
use crate::record::hlc::Hlc;
use crate::record::{room_move, DeviceId, Direction, ScanBody, ScanRef, Verdict};
use std::collections::{BTreeMap, HashSet};
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
    Undo {
        target: ScanRef,
        ticket: Box<str>,
        hlc: u64,
    },
    /// Room moved to another device.
    Move { to: DeviceId, units: u32, hlc: u64 },
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
    /// The entries closed.
    closed: HashSet<ScanRef>,
}

/// One strict zone: its start shares and the facts of its records.
#[derive(Clone, Debug, Default)]
struct Zone {
    start: BTreeMap<DeviceId, i64>,
    facts: FastMap<ScanRef, Fact>,
    /// The records some exit or undo names (a superset, once records are dropped).
    named: HashSet<ScanRef>,
    /// Each device's latest room record, by `(hlc, record)` (an upper bound, likewise).
    last_move: FastMap<DeviceId, (u64, ScanRef)>,
    /// The accounts, kept up to date by [`Zone::update`] where a fact changes no room record's
    /// credit, worked out again otherwise.
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
        let at = b.scan_ref();
        if z.facts.contains_key(&at) {
            return;
        }
        if !z.update(at, &fact) {
            z.worked = OnceLock::new();
        }
        match &fact {
            Fact::Exit { closes, .. } => _ = z.named.insert(*closes),
            Fact::Undo { target, .. } => _ = z.named.insert(*target),
            Fact::Move { hlc, .. } => {
                let last = z.last_move.entry(at.chain.device).or_insert((*hlc, at));
                *last = (*last).max((*hlc, at));
            }
            Fact::Entry { .. } => {}
        }
        z.facts.insert(at, fact);
    }

    /// Records of dropped chains (a revoked device past its cut, a proven fork, an evicted
    /// chain) go, as from a replica that never took them in: the room is a function of the
    /// records that stand, whatever arrived first, and a restart (which never takes them in)
    /// gives the same.
    pub(crate) fn drop_where(&mut self, doomed: impl Fn(&ScanRef) -> bool) {
        for z in self.zones.values_mut() {
            z.facts.retain(|at, _| !doomed(at));
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
            ticket: ticket(),
            hlc: b.hlc,
        }),
        (Verdict::Room, _) => {
            let (_, to, units) = room_move(b)?;
            Some(Fact::Move {
                to,
                units,
                hlc: b.hlc,
            })
        }
        _ => None,
    }
}

impl Zone {
    /// A new fact at `at`, taken into the accounts worked out already, where it changes no
    /// room record's credit: an entry after its device's last room record and named by no
    /// exit or undo yet (a gate admitting), an exit after the entry it closes, after its
    /// device's last room record and undone by nothing yet (a gate letting out). Whether it
    /// could (otherwise the accounts are worked out again).
    fn update(&mut self, at: ScanRef, fact: &Fact) -> bool {
        let Some(acc) = self.worked.get_mut() else {
            return true;
        };
        match fact {
            Fact::Entry { hlc, .. } => {
                let d = at.chain.device;
                let after = self.last_move.get(&d).is_none_or(|last| *last < (*hlc, at));
                if self.named.contains(&at) || !after {
                    return false;
                }
                *acc.room.entry(d).or_default() -= 1;
                true
            }
            Fact::Exit {
                closes,
                ticket,
                hlc,
            } => {
                let Some(Fact::Entry { ticket: t, hlc: e }) = self.facts.get(closes) else {
                    return true;
                };
                if t != ticket || hlc <= e {
                    return true;
                }
                let d = closes.chain.device;
                let after = self.last_move.get(&d).is_none_or(|last| last.0 <= *hlc);
                if self.named.contains(&at) || !after {
                    return false;
                }
                if acc.closed.insert(*closes) {
                    *acc.room.entry(d).or_default() += 1;
                }
                true
            }
            Fact::Undo { .. } | Fact::Move { .. } => false,
        }
    }

    /// The accounts from the facts: entries closed, then moves credited, then each device's
    /// room.
    fn work_out(&self) -> Accounts {
        let closed = self.closed();
        let returned = returned(&closed);
        let credited = self.credited(&returned);
        let mut room = self.start.clone();
        let mut add = |d: DeviceId, n: i64| *room.entry(d).or_default() += n;
        for (d, times) in &returned {
            add(*d, times.len() as i64);
        }
        for (at, f) in &self.facts {
            match f {
                Fact::Entry { .. } => add(at.chain.device, -1),
                Fact::Move { units, .. } => add(at.chain.device, -i64::from(*units)),
                _ => {}
            }
        }
        for (at, n) in &credited {
            if let Some(Fact::Move { to, .. }) = self.facts.get(at) {
                add(*to, *n);
            }
        }
        let closed = closed.into_keys().collect();
        Accounts { room, closed }
    }

    /// The entries closed, each at the time of the first record that closed it: an entry is
    /// closed by an exit of its ticket after it that was not undone, or by the undo of it that
    /// the ticket's replay honours.
    fn closed(&self) -> BTreeMap<ScanRef, u64> {
        let undone = self.undone();
        let mut closed: BTreeMap<ScanRef, u64> = BTreeMap::new();
        for (at, f) in &self.facts {
            let (entry, hlc) = match f {
                Fact::Exit { closes, hlc, .. } if !undone.contains(at) => (*closes, *hlc),
                Fact::Undo { target, hlc, .. } if undone.contains(target) => (*target, *hlc),
                _ => continue,
            };
            let Some(Fact::Entry {
                ticket,
                hlc: entered,
            }) = self.facts.get(&entry)
            else {
                continue;
            };
            if let Fact::Exit { ticket: t, .. } = f {
                if t != ticket || hlc <= *entered {
                    continue;
                }
            }
            let first = closed.entry(entry).or_insert(hlc);
            *first = (*first).min(hlc);
        }
        closed
    }

    /// The admits (entries, exits) undone, as the ticket's replay honours undos
    /// (`index::replay`): per ticket, the first undo in ledger order that names an admit of the
    /// same ticket by the same device, before it and within [`ANNUL_WINDOW_MS`] of it; the room
    /// comes back only for what the count of people inside takes back.
    fn undone(&self) -> HashSet<ScanRef> {
        let mut undos: Vec<((u64, ScanRef), &str, ScanRef)> = (self.facts.iter())
            .filter_map(|(at, f)| match f {
                Fact::Undo {
                    target,
                    ticket,
                    hlc,
                } => Some(((*hlc, *at), &**ticket, *target)),
                _ => None,
            })
            .collect();
        undos.sort_unstable();
        let mut tickets: HashSet<&str> = HashSet::new();
        let mut undone = HashSet::new();
        for ((hlc, at), ticket, target) in undos {
            let admitted = match self.facts.get(&target) {
                Some(Fact::Entry { ticket: t, hlc } | Fact::Exit { ticket: t, hlc, .. })
                    if &**t == ticket =>
                {
                    *hlc
                }
                _ => continue,
            };
            let late = Hlc(hlc).wall_ms().saturating_sub(Hlc(admitted).wall_ms());
            let honoured = at.chain.device == target.chain.device
                && (hlc, at) > (admitted, target)
                && late <= ANNUL_WINDOW_MS;
            if honoured && !tickets.contains(ticket) {
                tickets.insert(ticket);
                undone.insert(target);
            }
        }
        undone
    }

    /// How much of each move is credited: at most what its giver held just before it, by the
    /// giver's clock: its start, the room credited to it and the entries closed before the
    /// move, less what it spent and moved before it (ties ordered by record). Room that came
    /// to the giver after a move never pays for it, so no order of a stolen scanner's own
    /// records (moves first, admits and undos after; moves at one instant) makes room from
    /// nothing; an honest giver knew all it held when it gave, and its clock is past all of it.
    /// Credits only grow from one round to the next: worked out until they no longer change.
    fn credited(&self, returned: &BTreeMap<DeviceId, Vec<u64>>) -> BTreeMap<ScanRef, i64> {
        let debits = self.debits_by_time();
        let moves: Vec<(ScanRef, DeviceId, i64, u64)> = (self.facts.iter())
            .filter_map(|(at, f)| match f {
                Fact::Move { to, units, hlc } => Some((*at, *to, i64::from(*units), *hlc)),
                _ => None,
            })
            .collect();
        let mut credited: BTreeMap<ScanRef, i64> = BTreeMap::new();
        for _ in 0..CREDIT_ROUNDS_MAX {
            let credits = credits_by_time(&moves, &credited);
            let mut changed = false;
            for (at, _, units, hlc) in &moves {
                let giver = at.chain.device;
                let closed = (returned.get(&giver)).map_or(0, |t| t.partition_point(|h| h < hlc));
                let held = self.start.get(&giver).copied().unwrap_or(0)
                    + sum_while(credits.get(&giver), |t| t.0 < *hlc)
                    + closed as i64
                    - sum_while(debits.get(&giver), |t| *t < (*hlc, *at));
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

    /// Each device's debits (admits, moves) in the order of its clock (ties by record), with
    /// running sums.
    fn debits_by_time(&self) -> BTreeMap<DeviceId, Timeline> {
        let mut by: BTreeMap<DeviceId, Vec<Amount>> = BTreeMap::new();
        for (at, f) in &self.facts {
            let d = match f {
                Fact::Entry { hlc, .. } => ((*hlc, *at), 1),
                Fact::Move { units, hlc, .. } => ((*hlc, *at), i64::from(*units)),
                _ => continue,
            };
            by.entry(at.chain.device).or_default().push(d);
        }
        (by.into_iter()).map(|(d, v)| (d, timeline(v))).collect()
    }
}

/// An amount of room at a time (`(hlc, record)`).
type Amount = ((u64, ScanRef), i64);
/// Amounts in time order, with running sums.
type Timeline = (Vec<(u64, ScanRef)>, Vec<i64>);

fn timeline(mut v: Vec<Amount>) -> Timeline {
    v.sort_unstable();
    let times = v.iter().map(|(t, _)| *t).collect();
    let sums = (v.iter())
        .scan(0, |acc, (_, n)| {
            *acc += n;
            Some(*acc)
        })
        .collect();
    (times, sums)
}

/// The sum of a timeline's first amounts, while `earlier` holds of their times.
fn sum_while(line: Option<&Timeline>, earlier: impl Fn(&(u64, ScanRef)) -> bool) -> i64 {
    let Some((times, sums)) = line else {
        return 0;
    };
    match times.partition_point(earlier) {
        0 => 0,
        n => sums[n - 1],
    }
}

/// The room credited to each device by moves so far, in the order of the moves' clocks.
fn credits_by_time(
    moves: &[(ScanRef, DeviceId, i64, u64)],
    credited: &BTreeMap<ScanRef, i64>,
) -> BTreeMap<DeviceId, Timeline> {
    let mut by: BTreeMap<DeviceId, Vec<Amount>> = BTreeMap::new();
    for (at, to, _, hlc) in moves {
        let c = credited.get(at).copied().unwrap_or(0);
        if c > 0 {
            by.entry(*to).or_default().push(((*hlc, *at), c));
        }
    }
    (by.into_iter()).map(|(d, v)| (d, timeline(v))).collect()
}

/// The entries closed, by the device that admitted, at their closing times (sorted).
fn returned(closed: &BTreeMap<ScanRef, u64>) -> BTreeMap<DeviceId, Vec<u64>> {
    let mut returned: BTreeMap<DeviceId, Vec<u64>> = BTreeMap::new();
    for (entry, hlc) in closed {
        returned.entry(entry.chain.device).or_default().push(*hlc);
    }
    for times in returned.values_mut() {
        times.sort_unstable();
    }
    returned
}
