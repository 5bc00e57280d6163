//! Live figures for the dashboard and HQ (`GET /api/stats`) and the Prometheus text of
//! `GET /metrics`. Pure: the figures are computed from the ledger's index and what the caller
//! passes in (time, peers), so the same records give the same statistics on every replica.
//!
//! The statistics follow seed `scan-validation-service.md` §Statistiques (total guests, checked
//! in, check-in rate, by ticket type, by time, by location, by scanner) and add what a mesh
//! knows: denials by reason, inside now per zone, double entries and peers.

use gatemesh_crdt::{Index, Verdict};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Minutes of per-minute history in the statistics (the dashboard's chart).
pub const MINUTES_SHOWN: u64 = 60;
const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;

/// A peer as the node has seen it.
#[derive(Clone, Debug, Serialize)]
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
}

#[derive(Default)]
struct Count {
    admitted: u64,
    denied: u64,
}

impl Count {
    fn add(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Admit => self.admitted += 1,
            Verdict::Deny => self.denied += 1,
            Verdict::Annul => {}
        }
    }
}

/// Compute the statistics.
pub fn compute(index: &Index, input: &StatsInput<'_>) -> Value {
    let mut total = Count::default();
    let mut tiers: BTreeMap<String, Count> = BTreeMap::new();
    let mut hours: BTreeMap<u64, Count> = BTreeMap::new();
    let mut minutes: BTreeMap<u64, Count> = BTreeMap::new();
    let mut gates: BTreeMap<(String, String), Count> = BTreeMap::new();
    let mut scanners: BTreeMap<String, Count> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_minute = 0u64;
    let first_minute = (input.now_ms / MINUTE_MS).saturating_sub(MINUTES_SHOWN - 1);
    index.for_each_record(|r| {
        if r.verdict == Verdict::Annul {
            return;
        }
        total.add(r.verdict);
        if !r.tier.is_empty() {
            // (unreadable codes have no tier)
            tiers.entry(r.tier.clone()).or_default().add(r.verdict);
        }
        hours
            .entry(r.wall_ms / HOUR_MS * HOUR_MS)
            .or_default()
            .add(r.verdict);
        let minute = r.wall_ms / MINUTE_MS;
        if minute >= first_minute && minute <= input.now_ms / MINUTE_MS {
            minutes.entry(minute).or_default().add(r.verdict);
        }
        if r.verdict == Verdict::Admit
            && r.wall_ms <= input.now_ms
            && input.now_ms - r.wall_ms < MINUTE_MS
        {
            last_minute += 1;
        }
        gates
            .entry((r.gate.clone(), r.zone.clone()))
            .or_default()
            .add(r.verdict);
        scanners.entry(r.device.clone()).or_default().add(r.verdict);
        if r.verdict == Verdict::Deny {
            *reasons.entry(r.reason.clone()).or_default() += 1;
        }
    });
    // Per ticket: checked in (a legitimate entry ever), inside now (by the zone of the last
    // legitimate entry), double entries.
    let mut checked_in = 0u64;
    let mut checked_in_by_tier: BTreeMap<String, u64> = BTreeMap::new();
    let mut inside: BTreeMap<String, u64> = BTreeMap::new();
    for ticket in index.tickets() {
        let tier = index.ticket_tier(ticket);
        let replay = index.replay(ticket, &tier);
        if let Some(last) = replay.entries.last() {
            checked_in += 1;
            *checked_in_by_tier.entry(tier).or_default() += 1;
            if replay.inside {
                *inside.entry(last.zone.clone()).or_default() += 1;
            }
        }
    }
    let conflicts = index.conflicts();
    let double_entries: usize = conflicts.iter().map(|c| c.double_entries.len()).sum();
    let rate = input
        .total_guests
        .filter(|&n| n > 0)
        .map(|n| checked_in as f64 / n as f64);
    let name = |d: &str| input.device_names.get(d).cloned();
    json!({
        "eventId": input.event_id,
        "generatedAt": iso(input.now_ms),
        "totalGuests": input.total_guests,
        "checkedInGuests": checked_in,
        "checkInRate": rate,
        "scans": total.admitted + total.denied,
        "admitted": total.admitted,
        "denied": total.denied,
        "admitsLastMinute": last_minute,
        "byTicketType": tiers.iter().map(|(t, c)| json!({
            "tier": t, "admitted": c.admitted, "denied": c.denied,
            "checkedIn": checked_in_by_tier.get(t).copied().unwrap_or(0),
        })).collect::<Vec<_>>(),
        "byTime": hours.iter().map(|(h, c)| json!({
            "hour": iso(*h), "admitted": c.admitted, "denied": c.denied,
        })).collect::<Vec<_>>(),
        "byMinute": (first_minute..=input.now_ms / MINUTE_MS).map(|m| {
            let c = minutes.get(&m);
            json!({
                "minute": iso(m * MINUTE_MS),
                "admitted": c.map_or(0, |c| c.admitted),
                "denied": c.map_or(0, |c| c.denied),
            })
        }).collect::<Vec<_>>(),
        "byLocation": gates.iter().map(|((g, z), c)| json!({
            "gate": g, "zone": z, "admitted": c.admitted, "denied": c.denied,
        })).collect::<Vec<_>>(),
        "byScanner": scanners.iter().map(|(d, c)| json!({
            "scannerId": d, "name": name(d), "admitted": c.admitted, "denied": c.denied,
        })).collect::<Vec<_>>(),
        "byReason": reasons.iter().map(|(r, n)| json!({"reason": r, "count": n})).collect::<Vec<_>>(),
        "insideNow": inside.iter().map(|(z, n)| json!({"zone": z, "count": n})).collect::<Vec<_>>(),
        "conflicts": {"tickets": conflicts.len(), "doubleEntries": double_entries},
        "peers": {
            "online": input.peers.iter().filter(|p| p.online).count(),
            "known": input.peers.len(),
        },
    })
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub fn iso(ms: u64) -> String {
    // Past year 9999 there is no RFC 3339 date (humantime would panic): clamp.
    let ms = ms.min(gatemesh_crdt::record::TIME_MAX_MS);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Upper bounds (seconds) of the decision latency histogram.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Counters the node keeps for `/metrics` beyond the mesh's own.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Local decisions by (verdict, reason), repeats included.
    scans: BTreeMap<(String, String), u64>,
    latency_counts: [u64; LATENCY_BUCKETS_S.len()],
    latency_sum_s: f64,
    latency_count: u64,
    pub reconciled: u64,
}

impl Metrics {
    /// One local decision and how long it took (decision and durable write).
    pub fn scan(&mut self, verdict: &str, reason: &str, seconds: f64) {
        *self
            .scans
            .entry((verdict.to_string(), reason.to_string()))
            .or_default() += 1;
        for (i, bound) in LATENCY_BUCKETS_S.iter().enumerate() {
            if seconds <= *bound {
                self.latency_counts[i] += 1;
            }
        }
        self.latency_sum_s += seconds;
        self.latency_count += 1;
    }

    /// Prometheus text exposition: these counters and the given gauges and counters.
    pub fn render(&self, gauges: &[(&str, &str, &str, u64)]) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        out.push_str("# HELP gatemesh_scans_total Scans decided by this node, by verdict and reason.\n# TYPE gatemesh_scans_total counter\n");
        for ((verdict, reason), n) in &self.scans {
            let _ = writeln!(
                out,
                "gatemesh_scans_total{{verdict=\"{verdict}\",reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP gatemesh_decision_seconds Time from a scan to its durable answer.\n# TYPE gatemesh_decision_seconds histogram\n");
        for (bound, n) in LATENCY_BUCKETS_S.iter().zip(self.latency_counts) {
            let _ = writeln!(
                out,
                "gatemesh_decision_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "gatemesh_decision_seconds_bucket{{le=\"+Inf\"}} {}\ngatemesh_decision_seconds_sum {}\ngatemesh_decision_seconds_count {}",
            self.latency_count, self.latency_sum_s, self.latency_count
        );
        let _ = writeln!(
            out,
            "# HELP gatemesh_reconciled_total Offline scans reconciled into the ledger.\n# TYPE gatemesh_reconciled_total counter\ngatemesh_reconciled_total {}",
            self.reconciled
        );
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}
