//! `GET /metrics`: the node's figures in the Prometheus (OpenMetrics) text format, through
//! `prometheus-client`. Local decisions are counted and timed as they are answered; the
//! replica's and the transport's counters are mirrored into the registry when it is read.

use gatemesh_crdt::protocol::replica::Replica;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the decision latency histogram.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScanLabels {
    verdict: String,
    reason: String,
}

/// Counters the transport keeps (connections refused at admission, stale ones closed).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct TransportCounters {
    pub rejected_peers: u64,
    pub stale_connections_closed: u64,
}

pub struct Metrics {
    registry: Registry,
    scans: Family<ScanLabels, Counter>,
    decision: Histogram,
    mirrored: Vec<(&'static str, Counter)>,
    gauges: Vec<(&'static str, Gauge)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Counters mirrored from the replica and the transport: name (without `_total`), help.
const MIRRORED: [(&str, &str); 12] = [
    ("gatemesh_gossip_received_bytes", "Gossip payload bytes received."),
    ("gatemesh_gossip_sent_bytes", "Gossip payload bytes published."),
    ("gatemesh_sync_received_bytes", "Sync message bytes received."),
    ("gatemesh_sync_sent_bytes", "Sync message bytes sent."),
    ("gatemesh_sync_failures", "Sync rounds that failed."),
    ("gatemesh_rejected_peers", "Connections refused (not enrolled, revoked, over limits)."),
    ("gatemesh_rejected_messages", "Gossip, sync and bulletin messages refused."),
    ("gatemesh_rejected_records", "Changes refused by admission (malformed, unknown or revoked device, bad signature, forked chain)."),
    ("gatemesh_sync_frames_refused", "Sync frames refused by the codec (oversized, cut short)."),
    ("gatemesh_reconciled", "Offline scans reconciled into the ledger."),
    ("gatemesh_forks_proven", "Chains a device forked, proven and dropped from the fork on."),
    (
        "gatemesh_event_mismatch",
        "Peers refused because they judge by another event configuration.",
    ),
];

const GAUGES: [(&str, &str); 5] = [
    (
        "gatemesh_synced",
        "1 once the node has caught up with its peers since it started, 0 while it catches up.",
    ),
    ("gatemesh_peers_connected", "Enrolled peers connected now."),
    (
        "gatemesh_ledger_records",
        "Scan records in this node's ledger.",
    ),
    ("gatemesh_conflicts", "Double entries in the ledger."),
    (
        "gatemesh_changes_held",
        "Changes waiting for the change they link to.",
    ),
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let scans = Family::<ScanLabels, Counter>::default();
        registry.register(
            "gatemesh_scans",
            "Scans decided by this node, by verdict and reason.",
            scans.clone(),
        );
        let decision = Histogram::new(LATENCY_BUCKETS_S);
        registry.register(
            "gatemesh_decision_seconds",
            "Time from a scan to its durable answer.",
            decision.clone(),
        );
        let mut mirrored = Vec::new();
        for (name, help) in MIRRORED {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            mirrored.push((name, c));
        }
        let mut gauges = Vec::new();
        for (name, help) in GAUGES {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            gauges.push((name, g));
        }
        Metrics {
            registry,
            scans,
            decision,
            mirrored,
            gauges,
        }
    }
}

impl Metrics {
    /// One local decision and how long it took (decision and durable write).
    pub fn scan(&self, verdict: &str, reason: &str, seconds: f64) {
        self.scans
            .get_or_create(&ScanLabels {
                verdict: verdict.to_string(),
                reason: reason.to_string(),
            })
            .inc();
        self.decision.observe(seconds);
    }

    /// The text exposition, with the replica's and the transport's figures now.
    pub fn render(&self, replica: &Replica, transport: TransportCounters) -> String {
        let c = replica.counters();
        let ledger = replica.gate().ledger();
        let values = [
            c.gossip_bytes_in,
            c.gossip_bytes_out,
            c.sync_bytes_in,
            c.sync_bytes_out,
            c.sync_failures,
            transport.rejected_peers,
            c.rejected_messages,
            ledger.stats().rejected(),
            c.sync_frames_refused,
            c.reconciled,
            ledger.stats().forks_proven,
            c.event_mismatch,
        ];
        for ((_, counter), v) in self.mirrored.iter().zip(values) {
            let now = counter.get();
            if v > now {
                counter.inc_by(v - now);
            }
        }
        let gauges = [
            i64::from(replica.caught_up()),
            replica.peers().online().count() as i64,
            ledger.index().len() as i64,
            ledger.index().conflict_count() as i64,
            ledger.held() as i64,
        ];
        for ((_, g), v) in self.gauges.iter().zip(gauges) {
            g.set(v);
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
