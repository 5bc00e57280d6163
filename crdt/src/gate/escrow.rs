//! A gate's side of a strict zone's room (`crate::index::room`): a gate admits into a strict
//! zone only with a unit of room it holds; one out of room says `zone_full`, "room is held by
//! other gates" when it knows others hold some, and asks them for room; a gate asked gives half
//! of what it holds (at least one unit, at most what was asked) to a gate it knows to be short,
//! by writing a room record, which travels and lands as any record does. In a split, each side
//! admits only the room its gates hold: the zone is never over capacity.

use crate::event::EventConfig;
use crate::gate::policy::{Denial, Reason};
use crate::index::StrictZone;
use crate::ledger::{Draft, Ledger};
use crate::record::{DeviceId, Direction, Verdict, ROOM_TICKET_PREFIX};

/// A gate asks for room when it holds fewer units than this (or than its fair share, when
/// smaller), and asks for twice it.
pub const ROOM_LOW_WATER: i64 = 8;
/// Most units one request asks for.
pub const ROOM_WANT_MAX: u32 = 10_000;

/// The strict zones of an event and their room's holders at the start.
pub fn strict_zones(config: &EventConfig) -> Vec<(String, StrictZone)> {
    (config.capacity_mode.keys())
        .filter(|z| config.is_strict(z))
        .filter_map(|z| {
            let holders = (config.room_holders.get(z)?.iter())
                .filter_map(|h| DeviceId::parse(h))
                .collect();
            let capacity = *config.capacity.get(z)?;
            Some((z.clone(), StrictZone { capacity, holders }))
        })
        .collect()
}

/// How little room is low for a gate in a zone: [`ROOM_LOW_WATER`], or the fair share of the
/// capacity among its start holders when that is smaller (a zone of 10 across four gates).
fn low_water(config: &EventConfig, zone: &str) -> i64 {
    let cap = config.capacity.get(zone).copied().unwrap_or(0) as i64;
    let holders = config.room_holders.get(zone).map_or(1, Vec::len).max(1) as i64;
    ROOM_LOW_WATER.min(cap / holders).max(1)
}

/// A strict zone admits with a unit this gate holds. `Ok` for any other zone.
pub fn check_room(ledger: &Ledger, zone: &str) -> Result<(), Denial> {
    let index = ledger.index();
    let Some(me) = ledger.local_device() else {
        return Ok(());
    };
    // A strict zone the index does not account for takes no one (fail closed).
    let room = index.room(zone, me).unwrap_or(0);
    if room >= 1 {
        return Ok(());
    }
    let elsewhere: i64 = (index.rooms(zone).into_iter())
        .filter(|(d, r)| *d != me && *r > 0)
        .map(|(_, r)| r)
        .sum();
    let message = match elsewhere {
        0 => format!("zone {zone} is full"),
        n => format!("room is held by other gates ({n} places): scan again in a moment"),
    };
    Err(Denial::new(Reason::ZoneFull, message))
}

/// What this gate should ask for: per strict zone where it is short, the units it wants and
/// the gates it knows to hold room, most first.
pub fn wanted(ledger: &Ledger, config: &EventConfig) -> Vec<(String, u32, Vec<DeviceId>)> {
    let Some(me) = ledger.local_device() else {
        return Vec::new();
    };
    let index = ledger.index();
    (strict_zones(config).into_iter())
        .filter_map(|(zone, _)| {
            let low = low_water(config, &zone);
            let room = index.room(&zone, me)?;
            if room >= low {
                return None;
            }
            let want = ((2 * low - room) as u32).min(ROOM_WANT_MAX);
            let mut donors: Vec<(DeviceId, i64)> = (index.rooms(&zone).into_iter())
                .filter(|(d, r)| *d != me && *r > 0)
                .collect();
            donors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            Some((zone, want, donors.into_iter().map(|(d, _)| d).collect()))
        })
        .collect()
}

/// Give room of `zone` to `to`, which asked for `want` units: half of what this gate holds (at
/// least one, at most `want`), or, when this gate is `busy` (people at it for the zone just
/// now), only what it holds above its own low water; nothing to a gate known to hold its low
/// water already (none can hoard room by asking again and again). The room record's change
/// and the units, for the caller to make durable and publish.
pub fn give(
    (ledger, config): (&mut Ledger, &EventConfig),
    now_ms: u64,
    to: DeviceId,
    (zone, want): (&str, u32),
    busy: bool,
) -> Option<(Vec<u8>, u32)> {
    let me = ledger.local_device()?;
    // Room goes to scanners only (an observer, HQ, holds none and admits no one).
    ledger.roster().get(to)?;
    let index = ledger.index();
    let room = index.room(zone, me)?;
    let theirs = index.room(zone, to).unwrap_or(0);
    let low = low_water(config, zone);
    let spare = match busy {
        true => room - low,
        false => (room / 2).max(1).min(room),
    };
    if to == me || spare < 1 || want == 0 || theirs >= low {
        return None;
    }
    let units = u32::try_from(spare).unwrap_or(u32::MAX).min(want);
    let draft = Draft {
        ticket_id: format!("{ROOM_TICKET_PREFIX}{zone}"),
        tier: units.to_string(),
        gate: to.to_string(),
        zone: zone.to_string(),
        direction: Direction::In,
        verdict: Verdict::Room,
        reason: "room".to_string(),
        seen: Vec::new(),
        annuls: None,
        origin: None,
        wall_ms: None,
    };
    let (_, change) = ledger.record(now_ms, draft).ok()?;
    Some((change, units))
}
