//! What a steward's phone knows of the ledger when its node stops answering: a compact picture
//! of who has come in, refreshed while the phone is online and checked against on the phone
//! (`node/web/gate.js`) while it is not.
//!
//! `GMS1` + postcard([`SnapshotHeader`]) + the entries: per ticket whose replay is not new (an
//! entry counted, inside, or revoked by bulletin), [`ENTRY_BYTES`] bytes, sorted: the first
//! [`HASH_BYTES`] bytes of SHA-256 of its id, credits left (255: 255 or more), entries counted
//! on the header's festival day, and a byte of flags (inside, revoked) and the index of the
//! gate of its last entry. 100,000 tickets in are 900,000 bytes. Ticket ids are hashed: the
//! phone learns who came in only for tickets it is shown. A hash prefix two tickets share
//! (about one lookup in 3·10⁹ at 100,000 tickets) makes the phone judge one by the other's
//! entries; the node judges every reconciled scan again.
//!
//! The rules in force, the pauses and the people inside each zone travel in the header, so the
//! phone judges by what the mesh judged by when the snapshot was taken.

use crate::gate::GateLogic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const SNAPSHOT_MAGIC: &[u8; 4] = b"GMS1";
/// Bytes of a ticket id's hash an entry keeps.
pub const HASH_BYTES: usize = 6;
/// Bytes per ticket.
pub const ENTRY_BYTES: usize = HASH_BYTES + 3;
/// Most tickets a snapshot holds (the manifest's own limit).
pub const SNAPSHOT_TICKETS_MAX: usize = crate::event::manifest::MANIFEST_TICKETS_MAX;
/// Largest header read (rules, zones, pauses and gate names of one event).
pub const SNAPSHOT_HEADER_BYTES_MAX: usize = 256 * 1024;
/// Flag: the holder is inside (a re-entry tier's exit gives an entry back).
pub const FLAG_INSIDE: u8 = 0x80;
/// Flag: the ticket was revoked by an organizer bulletin.
pub const FLAG_REVOKED: u8 = 0x40;
/// The gate-index bits of the flags byte; [`GATE_NONE`] for no gate (or one past 62).
pub const GATE_MASK: u8 = 0x3f;
pub const GATE_NONE: u8 = 0x3f;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub generated_ms: u64,
    /// The festival day of `generated_ms`: what an entry's day count counts.
    pub day: u64,
    pub rules: Vec<SnapshotRule>,
    /// People inside each zone.
    pub inside: Vec<(String, u64)>,
    /// Pauses in force: scope (0 event, 1 zone, 2 gate), name, since.
    pub pauses: Vec<(u8, String, u64)>,
    /// The event's gates, in the order entries index them.
    pub gates: Vec<String>,
    pub entries: u32,
}

/// A tier's entry rule in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRule {
    pub tier: String,
    pub max_entries: u32,
    pub reentry: bool,
    pub per_day: u32,
}

/// One ticket as a snapshot says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub credits: u32,
    pub today: u32,
    pub inside: bool,
    pub revoked: bool,
    pub gate: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a snapshot, or cut short")]
    Malformed,
    #[error("snapshot holds {0} tickets, over {SNAPSHOT_TICKETS_MAX}")]
    TooMany(u64),
}

/// The first [`HASH_BYTES`] of SHA-256 of a ticket id.
pub fn ticket_hash(ticket_id: &str) -> [u8; HASH_BYTES] {
    let d = Sha256::digest(ticket_id.as_bytes());
    let mut h = [0u8; HASH_BYTES];
    h.copy_from_slice(&d[..HASH_BYTES]);
    h
}

/// The snapshot of what `gate` knows now.
pub fn build(gate: &GateLogic, now_ms: u64) -> Vec<u8> {
    let config = gate.config();
    let index = gate.ledger().index();
    let day = config.festival_day(now_ms);
    let gates: Vec<String> = config.gates.iter().map(|g| g.name.clone()).collect();
    let mut entries: Vec<[u8; ENTRY_BYTES]> = Vec::new();
    let revoked = gate.revoked_tickets();
    for ticket in index.tickets() {
        if let Some(s) = index.standing(ticket) {
            let today = s.last_day.filter(|(d, _)| *d == day).map_or(0, |(_, n)| n);
            let at = s.last_gate.and_then(|g| gates.iter().position(|x| *x == g));
            let e = Entry {
                credits: s.credits,
                today,
                inside: s.inside,
                revoked: revoked.contains(ticket),
                gate: at,
            };
            entries.push(encode_entry(ticket, &e));
        }
    }
    for ticket in revoked.iter().filter(|t| index.standing(t).is_none()) {
        let rule = index.rule(&index.ticket_tier(ticket));
        let e = Entry {
            credits: rule.max_entries,
            today: 0,
            inside: false,
            revoked: true,
            gate: None,
        };
        entries.push(encode_entry(ticket, &e));
    }
    entries.sort_unstable();
    entries.truncate(SNAPSHOT_TICKETS_MAX);
    let header = header(gate, now_ms, day, gates, entries.len() as u32);
    let mut out = SNAPSHOT_MAGIC.to_vec();
    out.extend(postcard::to_allocvec(&header).unwrap_or_default());
    out.reserve(entries.len() * ENTRY_BYTES);
    for e in &entries {
        out.extend_from_slice(e);
    }
    out
}

fn header(
    gate: &GateLogic,
    now_ms: u64,
    day: u64,
    gates: Vec<String>,
    entries: u32,
) -> SnapshotHeader {
    let config = gate.config();
    let index = gate.ledger().index();
    let rules = (config.tiers.iter())
        .map(|t| {
            let r = index.rule(&t.name);
            SnapshotRule {
                tier: t.name.clone(),
                max_entries: r.max_entries,
                reentry: r.reentry,
                per_day: r.per_day,
            }
        })
        .collect();
    let inside = (config.zones.iter())
        .map(|z| (z.clone(), index.inside(z)))
        .collect();
    let pauses = (gate.pauses().into_iter())
        .map(|p| (p.scope as u8, p.name, p.since_ms))
        .collect();
    SnapshotHeader {
        generated_ms: now_ms,
        day,
        rules,
        inside,
        pauses,
        gates,
        entries,
    }
}

fn encode_entry(ticket: &str, e: &Entry) -> [u8; ENTRY_BYTES] {
    let mut b = [0u8; ENTRY_BYTES];
    b[..HASH_BYTES].copy_from_slice(&ticket_hash(ticket));
    b[HASH_BYTES] = e.credits.min(255) as u8;
    b[HASH_BYTES + 1] = e.today.min(255) as u8;
    let gate = e
        .gate
        .filter(|g| *g < GATE_NONE as usize)
        .map_or(GATE_NONE, |g| g as u8);
    let flags =
        gate | if e.inside { FLAG_INSIDE } else { 0 } | if e.revoked { FLAG_REVOKED } else { 0 };
    b[HASH_BYTES + 2] = flags;
    b
}

/// Read a snapshot: its header and its entries' bytes.
pub fn decode(bytes: &[u8]) -> Result<(SnapshotHeader, &[u8]), SnapshotError> {
    let rest = bytes
        .strip_prefix(SNAPSHOT_MAGIC.as_slice())
        .ok_or(SnapshotError::Malformed)?;
    let head = &rest[..rest.len().min(SNAPSHOT_HEADER_BYTES_MAX)];
    let (header, left): (SnapshotHeader, &[u8]) =
        postcard::take_from_bytes(head).map_err(|_| SnapshotError::Malformed)?;
    let entries = &rest[head.len() - left.len()..];
    if header.entries as usize > SNAPSHOT_TICKETS_MAX {
        return Err(SnapshotError::TooMany(header.entries.into()));
    }
    if entries.len() != header.entries as usize * ENTRY_BYTES {
        return Err(SnapshotError::Malformed);
    }
    Ok((header, entries))
}

/// What a snapshot's entries say of a ticket (none: nothing counted yet).
pub fn lookup(entries: &[u8], ticket_id: &str) -> Option<Entry> {
    let hash = ticket_hash(ticket_id);
    let n = entries.len() / ENTRY_BYTES;
    let at = |i: usize| &entries[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES];
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match at(mid)[..HASH_BYTES].cmp(&hash) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                let e = at(mid);
                let flags = e[HASH_BYTES + 2];
                let gate = flags & GATE_MASK;
                return Some(Entry {
                    credits: e[HASH_BYTES].into(),
                    today: e[HASH_BYTES + 1].into(),
                    inside: flags & FLAG_INSIDE != 0,
                    revoked: flags & FLAG_REVOKED != 0,
                    gate: (gate != GATE_NONE).then_some(gate as usize),
                });
            }
        }
    }
    None
}
