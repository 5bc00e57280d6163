//! Running totals behind the statistics, kept as records are indexed, so `GET /api/stats` reads
//! them instead of walking every record (a dashboard asks every two seconds; a festival holds
//! half a million records).
//!
//! Per record (added once, when indexed): counts by verdict, tier, hour, minute, gate and zone,
//! device and denial reason. Per ticket (moved when its replay changes): checked in, by tier,
//! and inside now by zone. Strings are the index's interned name ids.

use crate::record::{DeviceId, Verdict};
use std::collections::BTreeMap;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
/// How far behind the newest admit the per-second admit counts are kept ("admits in the last
/// minute" looks one minute back).
const RECENT_MS: u64 = 10 * MINUTE_MS;

/// Admits and denials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub admitted: u64,
    pub denied: u64,
}

impl Count {
    fn add(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Admit => self.admitted += 1,
            Verdict::Deny => self.denied += 1,
            Verdict::Annul | Verdict::Room | Verdict::Pause => {}
        }
    }
}

/// What one ticket adds to the per-ticket figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TicketState {
    /// The tier of a ticket with at least one legitimate entry.
    pub checked_in: Option<u16>,
    /// The zone it is inside now.
    pub inside: Option<u16>,
}

/// One indexed record, as the tally needs it.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    pub verdict: Verdict,
    pub wall_ms: u64,
    pub tier: Option<u16>,
    pub gate: u16,
    pub zone: u16,
    pub reason: u16,
    pub device: DeviceId,
}

#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub total: Count,
    pub by_tier: crate::index::maps::FastMap<u16, Count>,
    pub by_hour: BTreeMap<u64, Count>,
    pub by_minute: BTreeMap<u64, Count>,
    pub by_gate: crate::index::maps::FastMap<(u16, u16), Count>,
    pub by_device: crate::index::maps::FastMap<DeviceId, Count>,
    pub by_reason: crate::index::maps::FastMap<u16, u64>,
    pub checked_in: u64,
    pub checked_in_by_tier: crate::index::maps::FastMap<u16, u64>,
    pub inside_by_zone: crate::index::maps::FastMap<u16, u64>,
    /// Admits per second of wall time, for the last [`RECENT_MS`] before the newest.
    admits_by_second: BTreeMap<u64, u32>,
}

impl Tally {
    /// A record was indexed.
    pub fn record(&mut self, r: Seen) {
        if matches!(r.verdict, Verdict::Annul | Verdict::Room | Verdict::Pause) {
            return;
        }
        self.total.add(r.verdict);
        if let Some(t) = r.tier {
            self.by_tier.entry(t).or_default().add(r.verdict);
        }
        self.by_hour
            .entry(r.wall_ms / HOUR_MS * HOUR_MS)
            .or_default()
            .add(r.verdict);
        self.by_minute
            .entry(r.wall_ms / MINUTE_MS)
            .or_default()
            .add(r.verdict);
        self.by_gate
            .entry((r.gate, r.zone))
            .or_default()
            .add(r.verdict);
        self.by_device.entry(r.device).or_default().add(r.verdict);
        if r.verdict == Verdict::Deny {
            *self.by_reason.entry(r.reason).or_default() += 1;
        }
        if r.verdict == Verdict::Admit {
            self.admit_at(r.wall_ms);
        }
    }

    fn admit_at(&mut self, wall_ms: u64) {
        let second = wall_ms / 1000;
        let newest = self
            .admits_by_second
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        if second + RECENT_MS / 1000 < newest {
            return;
        }
        *self.admits_by_second.entry(second).or_default() += 1;
        let horizon = newest.max(second).saturating_sub(RECENT_MS / 1000);
        while self
            .admits_by_second
            .first_key_value()
            .is_some_and(|(s, _)| *s < horizon)
        {
            self.admits_by_second.pop_first();
        }
    }

    /// A ticket's replay changed from `before` to `after`.
    pub fn ticket(&mut self, before: TicketState, after: TicketState) {
        if before == after {
            return;
        }
        if let Some(t) = before.checked_in {
            self.checked_in -= 1;
            dec(&mut self.checked_in_by_tier, t);
        }
        if let Some(z) = before.inside {
            dec(&mut self.inside_by_zone, z);
        }
        if let Some(t) = after.checked_in {
            self.checked_in += 1;
            *self.checked_in_by_tier.entry(t).or_default() += 1;
        }
        if let Some(z) = after.inside {
            *self.inside_by_zone.entry(z).or_default() += 1;
        }
    }

    /// Admits with a wall time in the minute before `now_ms`.
    pub fn admits_last_minute(&self, now_ms: u64) -> u64 {
        let now = now_ms / 1000;
        self.admits_by_second
            .range(now.saturating_sub(59)..=now)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }
}

fn dec(map: &mut crate::index::maps::FastMap<u16, u64>, key: u16) {
    if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&key);
        }
    }
}
