//! What a replica answers when asked (read-only, typed): one ticket, the double entries, its
//! status, the statistics, the peers, the seed's offline manifest and the journal the bridge
//! reads. The edges (HTTP, standard output) turn these into their formats.

use crate::event::GateConfig;
use crate::gate::offline::OfflineManifest;
use crate::index::Conflict;
use crate::ledger::LedgerStats;
use crate::protocol::replica::{Counters, Replica};
use crate::protocol::stats::{PeerSeen, Stats, StatsInput};
use crate::RecordRef;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// One ticket as the ledger knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TicketView {
    pub ticket: String,
    pub tier: String,
    pub records: Vec<RecordRef>,
    pub entries: Vec<RecordRef>,
    pub double_entries: Vec<RecordRef>,
    pub inside: bool,
    pub entries_left: u32,
}

/// One supervisor's action, as the audit shows it. A steward's device's gate pause is listed
/// with `role: "steward"`: it is in the ledger, and it stops nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub action: crate::index::actions::ActionKind,
    /// The device's clock when it acted.
    pub at_ms: u64,
    pub scan_id: String,
    /// The ticket undone or checked in (none for a gate pause).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ticket_id: String,
    pub gate: String,
    pub device: String,
    pub device_name: String,
    pub role: &'static str,
}

/// One chain, as a status shows it (the organizer names chains in a revocation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainView {
    pub device: String,
    pub name: String,
    pub chain: String,
    pub position: u32,
    pub tip: String,
}

/// A ticket with double entries, briefly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConflictBrief {
    pub ticket: String,
    pub double_entries: Vec<String>,
}

/// What `!status` and `GET /api/status` show.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    pub event_id: String,
    pub event_name: String,
    /// The event configuration this node judges by (`EventConfig::fingerprint`, hex): nodes
    /// pair only with peers on the same one.
    pub event_config: String,
    /// Caught up with its peers since it started (answers say `synced: false` until then).
    pub synced: bool,
    pub device: Option<String>,
    pub gate: String,
    pub gates: Vec<GateConfig>,
    /// The document's heads: the last change of every chain.
    pub heads: Vec<String>,
    pub chains: Vec<ChainView>,
    /// Changes held for a missing predecessor.
    pub held: usize,
    pub records: u64,
    pub conflicts: Vec<ConflictBrief>,
    pub peers: Vec<String>,
    pub ledger: LedgerStats,
    pub mesh: Counters,
}

/// Records `from..next` of the journal and the double entries of their tickets now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JournalPage {
    pub records: Vec<RecordRef>,
    pub next: usize,
    pub conflicts: Vec<JournalConflict>,
    pub rejected: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JournalConflict {
    pub ticket_id: String,
    pub entries: Vec<String>,
    pub double_entries: Vec<String>,
}

/// A ticket found by search: who holds it and whether it may still come in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SearchHit {
    pub ticket_id: String,
    pub tier: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    pub cancelled: bool,
    pub inside: bool,
    pub entries: usize,
    pub entries_left: u32,
}

/// Why a query has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    pub code: &'static str,
    pub message: String,
}

impl Replica {
    /// One ticket's records, legitimate entries, double entries and entries left.
    pub fn ticket(&self, id: &str) -> Result<TicketView, QueryError> {
        let index = self.gate.ledger().index();
        let records = index.records(id);
        if records.is_empty() {
            return Err(QueryError {
                code: "unknown_ticket",
                message: format!("no scan of ticket {id} in this ledger"),
            });
        }
        let tier = index.ticket_tier(id);
        let replay = index.replay(id, &tier);
        Ok(TicketView {
            ticket: id.to_string(),
            tier,
            records,
            entries: replay.entries,
            double_entries: replay.double_entries,
            inside: replay.inside,
            entries_left: replay.credits,
        })
    }

    /// Tickets whose attendee name, order or id start with the query's words (accents and
    /// case ignored), at most [`crate::event::search::SEARCH_RESULTS_MAX`], with their entries now.
    pub fn search(&self, q: &str) -> Result<Vec<SearchHit>, QueryError> {
        let words = crate::event::search::parse_query(q).map_err(|e| QueryError {
            code: "invalid_query",
            message: e.to_string(),
        })?;
        let index = self.gate.ledger().index();
        let hits = self.gate.manifest().search(&words).into_iter().map(|t| {
            let replay = index.replay(&t.ticket_id, &t.tier);
            SearchHit {
                ticket_id: t.ticket_id.clone(),
                tier: t.tier.clone(),
                name: t.attendee.name.clone(),
                order: t.attendee.order.clone(),
                notes: t.attendee.notes.clone(),
                cancelled: t.status == crate::event::manifest::TicketStatus::Cancelled
                    || self.gate.is_revoked(&t.ticket_id),
                inside: replay.inside,
                entries: replay.entries.len(),
                entries_left: replay.credits,
            }
        });
        Ok(hits.collect())
    }

    /// Build what the first questions would otherwise wait for (the search index: 1.x s for
    /// half a million tickets). A node calls it as it starts, before it answers anything.
    pub fn prepare(&self) {
        self.gate.manifest().search_index();
    }

    /// The pauses in force at `now_ms` (gates, zones, the event): the organizer's, then
    /// supervisors' gate pauses.
    pub fn pauses(&self, now_ms: u64) -> Vec<crate::gate::pause::ActivePause> {
        let mut all = self.gate.pauses();
        all.extend(self.gate.gate_pauses(now_ms));
        all
    }

    /// The latest `max` supervisors' actions (undos, hand check-ins, gate pauses), newest
    /// first, each with the device that signed it (none dated further ahead of `now_ms` than
    /// clocks are followed).
    pub fn audit(&self, now_ms: u64, max: usize) -> Vec<AuditRow> {
        let ledger = self.gate.ledger();
        let roster = ledger.roster();
        (ledger.index().actions().latest_at(now_ms, max))
            .map(|a| {
                let device = roster.get(a.device());
                let supervisor = roster.is_supervisor(a.device());
                AuditRow {
                    action: a.kind,
                    at_ms: a.wall_ms,
                    scan_id: a.scan.to_string(),
                    ticket_id: a.ticket_id.to_string(),
                    gate: a.gate.to_string(),
                    device: a.device().to_string(),
                    device_name: device.map(|d| d.name.clone()).unwrap_or_default(),
                    role: if supervisor { "supervisor" } else { "steward" },
                }
            })
            .collect()
    }

    pub fn conflicts(&self) -> Vec<Conflict> {
        self.gate.ledger().index().conflicts()
    }

    pub fn status(&self) -> Status {
        let ledger = self.gate.ledger();
        let config = self.gate.config();
        let conflicts = ledger
            .index()
            .conflicts()
            .into_iter()
            .map(|c| ConflictBrief {
                ticket: c.ticket_id,
                double_entries: c.double_entries.into_iter().map(|r| r.scan_id).collect(),
            })
            .collect();
        let mut peers: Vec<String> = self.peers.online().map(|p| self.peers.name(p)).collect();
        peers.sort();
        Status {
            event_id: config.event_id.clone(),
            event_name: config.name.clone(),
            event_config: self.event_config(),
            synced: self.caught_up(),
            device: ledger.local_device().map(|d| d.to_string()),
            gate: self.config.gate.clone(),
            gates: config.gates.clone(),
            heads: ledger.heads().iter().map(hex::encode).collect(),
            chains: self.chains(),
            held: ledger.held(),
            records: ledger.index().len(),
            conflicts,
            peers,
            ledger: ledger.stats().clone(),
            mesh: self.counters.clone(),
        }
    }

    /// Every chain: device, its name, chain id, position of the tip, tip hash.
    pub fn chains(&self) -> Vec<ChainView> {
        self.gate
            .ledger()
            .summary()
            .iter()
            .map(|t| ChainView {
                device: t.chain.device.to_string(),
                name: self
                    .peers
                    .get(t.chain.device)
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                chain: t.chain.chain.to_string(),
                position: t.seq,
                tip: hex::encode(t.hash),
            })
            .collect()
    }

    pub fn stats(&self, now_ms: u64) -> Stats {
        let names: HashMap<String, String> = self
            .peers
            .all()
            .map(|(id, p)| (id.to_string(), p.name.clone()))
            .collect();
        let peers = self.peers.seen();
        let total_guests = self.gate.manifest().body.as_ref().map(|b| b.tickets.len());
        crate::protocol::stats::compute(
            self.gate.ledger().index(),
            &StatsInput {
                event_id: &self.gate.config().event_id,
                total_guests,
                now_ms,
                device_names: &names,
                peers: &peers,
                capacity: &self.gate.config().capacity,
                pauses: self.gate.pauses(),
            },
        )
    }

    pub fn peers_seen(&self) -> Vec<PeerSeen> {
        self.peers.seen()
    }

    /// The seed's offline manifest of `event_id`, with current scan counts.
    pub fn offline_manifest(
        &self,
        event_id: &str,
        now_ms: u64,
    ) -> Result<OfflineManifest, QueryError> {
        let ours = &self.gate.config().event_id;
        if event_id != ours {
            return Err(QueryError {
                code: "EVENT_NOT_FOUND",
                message: format!("this node serves event {ours}"),
            });
        }
        crate::gate::offline::manifest(&self.gate, now_ms).ok_or_else(|| QueryError {
            code: "NO_MANIFEST",
            message: "the event package has no ticket manifest".into(),
        })
    }

    /// Records `from..from + max` of the journal (empty without one).
    pub fn journal_page(&self, from: usize, max: usize) -> JournalPage {
        let journal = self.journal.as_deref().unwrap_or_default();
        let page = journal
            .get(from..journal.len().min(from.saturating_add(max)))
            .unwrap_or_default();
        let index = self.gate.ledger().index();
        let tickets: BTreeSet<&str> = page.iter().map(|r| r.ticket_id.as_str()).collect();
        let conflicts = tickets
            .into_iter()
            .filter_map(|t| {
                let replay = index.replay(t, &index.ticket_tier(t));
                (!replay.double_entries.is_empty()).then(|| JournalConflict {
                    ticket_id: t.to_string(),
                    entries: replay.entries.into_iter().map(|r| r.scan_id).collect(),
                    double_entries: replay
                        .double_entries
                        .into_iter()
                        .map(|r| r.scan_id)
                        .collect(),
                })
            })
            .collect();
        JournalPage {
            records: page.to_vec(),
            next: from + page.len(),
            conflicts,
            rejected: self.gate.ledger().stats().rejected(),
        }
    }
}
