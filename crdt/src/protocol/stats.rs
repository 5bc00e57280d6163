//! Live figures for the dashboard and HQ (`GET /api/stats`), typed. They are read from the
//! index's running totals ([`crate::index::tally`]), so a request costs what the answer holds, not what
//! the ledger holds, and the same records give the same figures on every replica.
//!
//! The statistics follow seed `scan-validation-service.md` §Statistiques (total guests, checked
//! in, check-in rate, by ticket type, by time, by location, by scanner) and add what a mesh
//! knows: denials by reason, inside now per zone, double entries and peers.

use crate::index::tally::{Count, Tally};
use crate::index::Index;
use crate::record::date::iso;
use serde::Serialize;
use std::collections::HashMap;

/// Minutes of per-minute history in the statistics (the dashboard's chart).
pub const MINUTES_SHOWN: u64 = 60;
const MINUTE_MS: u64 = 60_000;

/// A peer as the node has seen it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerSeen {
    pub name: String,
    pub peer_id: String,
    pub online: bool,
    /// Last time a connection opened, closed or carried data (ms since the epoch).
    pub last_seen_ms: u64,
}

/// What the statistics need besides the index.
pub struct StatsInput<'a> {
    pub event_id: &'a str,
    /// Tickets issued (the manifest's size), when the node has a manifest.
    pub total_guests: Option<usize>,
    pub now_ms: u64,
    /// Device id → name, for the by-scanner figures.
    pub device_names: &'a HashMap<String, String>,
    pub peers: &'a [PeerSeen],
    /// Zone → capacity (the event's).
    pub capacity: &'a std::collections::BTreeMap<String, u64>,
    /// The pauses in force.
    pub pauses: Vec<crate::gate::pause::ActivePause>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub event_id: String,
    pub generated_at: String,
    pub total_guests: Option<usize>,
    pub checked_in_guests: u64,
    pub check_in_rate: Option<f64>,
    pub scans: u64,
    pub admitted: u64,
    pub denied: u64,
    pub admits_last_minute: u64,
    pub by_ticket_type: Vec<ByTier>,
    pub by_time: Vec<ByHour>,
    pub by_minute: Vec<ByMinute>,
    pub by_location: Vec<ByGate>,
    pub by_scanner: Vec<ByScanner>,
    pub by_reason: Vec<ByReason>,
    pub inside_now: Vec<InsideZone>,
    pub conflicts: ConflictCounts,
    pub peers: PeerCounts,
    /// Gates, zones or the whole event the organizer paused.
    pub paused: Vec<crate::gate::pause::ActivePause>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ByTier {
    pub tier: String,
    pub admitted: u64,
    pub denied: u64,
    pub checked_in: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ByHour {
    pub hour: String,
    pub admitted: u64,
    pub denied: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ByMinute {
    pub minute: String,
    pub admitted: u64,
    pub denied: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ByGate {
    pub gate: String,
    pub zone: String,
    pub admitted: u64,
    pub denied: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ByScanner {
    pub scanner_id: String,
    pub name: Option<String>,
    pub admitted: u64,
    pub denied: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ByReason {
    pub reason: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InsideZone {
    pub zone: String,
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// People inside beyond the capacity: admits made at the edge by nodes that had not yet
    /// heard of each other's (a split, or the same instant); reported, as double entries are.
    pub over_capacity: u64,
    /// A strict zone: the places each gate (device id) holds, as this node knows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<std::collections::BTreeMap<String, i64>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictCounts {
    pub tickets: usize,
    pub double_entries: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerCounts {
    pub online: usize,
    pub known: usize,
}

/// The statistics now.
pub fn compute(index: &Index, input: &StatsInput<'_>) -> Stats {
    let t = index.tally();
    let rate = input
        .total_guests
        .filter(|&n| n > 0)
        .map(|n| t.checked_in as f64 / n as f64);
    Stats {
        event_id: input.event_id.to_string(),
        generated_at: iso(input.now_ms),
        total_guests: input.total_guests,
        checked_in_guests: t.checked_in,
        check_in_rate: rate,
        scans: t.total.admitted + t.total.denied,
        admitted: t.total.admitted,
        denied: t.total.denied,
        admits_last_minute: t.admits_last_minute(input.now_ms),
        by_ticket_type: by_ticket_type(index, t),
        by_time: t
            .by_hour
            .iter()
            .map(|(h, c)| ByHour {
                hour: iso(*h),
                admitted: c.admitted,
                denied: c.denied,
            })
            .collect(),
        by_minute: minutes(&t.by_minute, input.now_ms),
        by_location: by_location(index, t),
        by_scanner: by_scanner(t, input.device_names),
        by_reason: by_reason(index, t),
        inside_now: inside_now(index, t, input.capacity),
        conflicts: ConflictCounts {
            tickets: index.conflict_tickets(),
            double_entries: index.conflict_count(),
        },
        peers: PeerCounts {
            online: input.peers.iter().filter(|p| p.online).count(),
            known: input.peers.len(),
        },
        paused: input.pauses.clone(),
    }
}

fn by_ticket_type(index: &Index, t: &Tally) -> Vec<ByTier> {
    let mut all: Vec<ByTier> = t
        .by_tier
        .iter()
        .map(|(tier, c)| ByTier {
            tier: index.name(*tier).to_string(),
            admitted: c.admitted,
            denied: c.denied,
            checked_in: t.checked_in_by_tier.get(tier).copied().unwrap_or(0),
        })
        .collect();
    all.sort_by(|a, b| a.tier.cmp(&b.tier));
    all
}

fn by_location(index: &Index, t: &Tally) -> Vec<ByGate> {
    let mut all: Vec<ByGate> = t
        .by_gate
        .iter()
        .map(|((g, z), c)| ByGate {
            gate: index.name(*g).to_string(),
            zone: index.name(*z).to_string(),
            admitted: c.admitted,
            denied: c.denied,
        })
        .collect();
    all.sort_by(|a, b| (&a.gate, &a.zone).cmp(&(&b.gate, &b.zone)));
    all
}

fn by_scanner(t: &Tally, names: &HashMap<String, String>) -> Vec<ByScanner> {
    let mut all: Vec<ByScanner> = t
        .by_device
        .iter()
        .map(|(d, c)| ByScanner {
            scanner_id: d.to_string(),
            name: names.get(&d.to_string()).cloned(),
            admitted: c.admitted,
            denied: c.denied,
        })
        .collect();
    all.sort_by(|a, b| a.scanner_id.cmp(&b.scanner_id));
    all
}

fn by_reason(index: &Index, t: &Tally) -> Vec<ByReason> {
    let mut all: Vec<ByReason> = t
        .by_reason
        .iter()
        .map(|(r, n)| ByReason {
            reason: index.name(*r).to_string(),
            count: *n,
        })
        .collect();
    all.sort_by(|a, b| a.reason.cmp(&b.reason));
    all
}

fn inside_now(
    index: &Index,
    t: &Tally,
    capacity: &std::collections::BTreeMap<String, u64>,
) -> Vec<InsideZone> {
    let zone = |zone: String, count: u64| {
        let capacity = capacity.get(&zone).copied();
        let room = (index.strict_capacity(&zone)).map(|_| {
            (index.rooms(&zone).into_iter())
                .map(|(d, r)| (d.to_string(), r))
                .collect()
        });
        InsideZone {
            over_capacity: capacity.map_or(0, |c| count.saturating_sub(c)),
            capacity,
            zone,
            count,
            room,
        }
    };
    let mut all: Vec<InsideZone> = t
        .inside_by_zone
        .iter()
        .map(|(z, n)| zone(index.name(*z).to_string(), *n))
        .collect();
    // A zone with a capacity and nobody inside is shown too.
    for z in capacity.keys() {
        if !all.iter().any(|i| &i.zone == z) {
            all.push(zone(z.clone(), 0));
        }
    }
    all.sort_by(|a, b| a.zone.cmp(&b.zone));
    all
}

/// The last [`MINUTES_SHOWN`] minutes up to `now_ms`, empty minutes included.
fn minutes(by_minute: &std::collections::BTreeMap<u64, Count>, now_ms: u64) -> Vec<ByMinute> {
    let last = now_ms / MINUTE_MS;
    let first = last.saturating_sub(MINUTES_SHOWN - 1);
    (first..=last)
        .map(|m| {
            let c = by_minute.get(&m).copied().unwrap_or_default();
            ByMinute {
                minute: iso(m * MINUTE_MS),
                admitted: c.admitted,
                denied: c.denied,
            }
        })
        .collect()
}
