//! The signed offline manifest (seed `offline-scanning-flow.md`): every ticket of the event with
//! its code, tier, zone, max scans and status. A scanner looks opaque barcodes and NFC wristband
//! UIDs up in it, and a `cancelled` status revokes a ticket of any format. It also carries who
//! holds each ticket (name, order, notes): kept out of the QR code for privacy, shown to the
//! steward at decision time and searched when a code will not scan.

use crate::event::search::{SearchIndex, SEARCH_RESULTS_MAX};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

/// How a rotating ticket's static part is written where its code would be (codes.csv, the
/// manifest): no scanner takes it (it is no manifest code either); the wallet makes live codes
/// from it.
pub const ROTATING_STATIC_PREFIX: &str = "GM2S:";

/// Whether a manifest ticket's code is one a scanner looks up (not a signed code read by its
/// format, nor a rotating ticket's static part).
fn looked_up(code: &str) -> bool {
    let t = code.trim();
    let head = |p: &str| t.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let signed = head("GM1:") || head("GM2:") || head(ROTATING_STATIC_PREFIX);
    !(signed || t.starts_with('{') || t.is_empty() || t == "-")
}

/// Most tickets one manifest may hold.
pub const MANIFEST_TICKETS_MAX: usize = 2_000_000;
/// Longest attendee name or order reference, in bytes.
pub const ATTENDEE_FIELD_BYTES_MAX: usize = 128;
/// Longest note on a ticket, in bytes.
pub const NOTES_BYTES_MAX: usize = 256;

/// Who holds a ticket, as the organizer's guest list says. Every field is optional. E-mail
/// addresses are not here: the manifest goes to every scanner, they stay with the organizer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attendee {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// Seat, "check ID", wheelchair access...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Stop the steward even on an admit (amber screen, confirm by tap), with the notes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attention: bool,
}

impl Attendee {
    /// Check the limits: bytes, no control characters, no empty strings.
    pub fn check(&self) -> Result<(), &'static str> {
        let fields = [
            ("name", &self.name, ATTENDEE_FIELD_BYTES_MAX),
            ("order", &self.order, ATTENDEE_FIELD_BYTES_MAX),
            ("notes", &self.notes, NOTES_BYTES_MAX),
        ];
        for (name, value, max) in fields {
            if let Some(v) = value {
                let bad = v.trim().is_empty() || v.len() > max || v.chars().any(hidden_char);
                if bad {
                    return Err(name);
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    Valid,
    Used,
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestTicket {
    pub ticket_id: String,
    /// The code as scanned (barcode text, GM1 code or legacy JSON).
    pub ticket_code: String,
    pub tier: String,
    pub zone: String,
    pub max_scans: u32,
    pub current_scans: u32,
    pub status: TicketStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfc_uid: Option<String>,
    #[serde(flatten, default)]
    pub attendee: Attendee,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestBody {
    pub event_id: String,
    pub generated_at: u64,
    pub expires_at: u64,
    pub tickets: Vec<ManifestTicket>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest holds {0} tickets, over {MANIFEST_TICKETS_MAX}")]
    TooMany(usize),
    #[error("manifest lists ticket {0} twice")]
    Twice(String),
    #[error(
        "manifest ticket {0:?}: its id or tier is empty, too long or holds control characters"
    )]
    BadTicket(String),
    #[error("manifest ticket {0}: attendee {1} is empty, too long or holds control characters")]
    BadAttendee(String, &'static str),
}

/// A verified manifest with lookups by code, NFC UID and ticket id.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    pub body: Option<ManifestBody>,
    by_code: HashMap<String, usize>,
    by_ticket: HashMap<String, usize>,
    /// Built on the first search.
    search: OnceLock<SearchIndex>,
}

impl Manifest {
    pub fn new(body: ManifestBody) -> Result<Manifest, ManifestError> {
        if body.tickets.len() > MANIFEST_TICKETS_MAX {
            return Err(ManifestError::TooMany(body.tickets.len()));
        }
        let mut by_code = HashMap::new();
        let mut by_ticket = HashMap::new();
        for (i, t) in body.tickets.iter().enumerate() {
            let field = |s: &str| {
                !s.is_empty() && crate::record::field_ok(s, crate::record::FIELD_BYTES_MAX)
            };
            if !field(&t.ticket_id) || !field(&t.tier) {
                return Err(ManifestError::BadTicket(t.ticket_id.clone()));
            }
            t.attendee
                .check()
                .map_err(|f| ManifestError::BadAttendee(t.ticket_id.clone(), f))?;
            if by_ticket.insert(t.ticket_id.clone(), i).is_some() {
                return Err(ManifestError::Twice(t.ticket_id.clone()));
            }
            if looked_up(&t.ticket_code) {
                by_code.insert(normalize(&t.ticket_code), i);
            }
            if let Some(uid) = &t.nfc_uid {
                by_code.insert(normalize(uid), i);
            }
        }
        Ok(Manifest {
            body: Some(body),
            by_code,
            by_ticket,
            search: OnceLock::new(),
        })
    }

    /// Tickets whose attendee name, order reference or id hold every word of the query as a
    /// word prefix (accents and case ignored), at most [`SEARCH_RESULTS_MAX`].
    pub fn search(&self, query: &[String]) -> Vec<&ManifestTicket> {
        let tickets = self.tickets();
        let words_of = |i: usize| {
            searched_texts(&tickets[i])
                .flat_map(crate::event::search::words)
                .collect()
        };
        self.search_index()
            .find(query, SEARCH_RESULTS_MAX, words_of)
            .into_iter()
            .map(|i| &tickets[i])
            .collect()
    }

    /// The search index, built now if it is not yet (a node builds it as it starts, so the
    /// first search at a gate does not wait for it).
    pub fn search_index(&self) -> &SearchIndex {
        let tickets = self.tickets();
        self.search
            .get_or_init(|| SearchIndex::build(tickets.iter().map(searched_texts)))
    }

    pub fn by_code(&self, code: &str) -> Option<&ManifestTicket> {
        let body = self.body.as_ref()?;
        self.by_code
            .get(&normalize(code))
            .map(|&i| &body.tickets[i])
    }

    pub fn by_ticket(&self, ticket_id: &str) -> Option<&ManifestTicket> {
        let body = self.body.as_ref()?;
        self.by_ticket.get(ticket_id).map(|&i| &body.tickets[i])
    }

    pub fn tickets(&self) -> &[ManifestTicket] {
        self.body
            .as_ref()
            .map(|b| b.tickets.as_slice())
            .unwrap_or_default()
    }
}

/// Characters that hide or reorder text on a screen: controls, bidirectional overrides and
/// isolates, zero-width characters (a name must read as what it is).
fn hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// What a search looks at: the attendee's name and order, the ticket id (never the e-mail).
fn searched_texts(t: &ManifestTicket) -> impl Iterator<Item = &str> {
    let a = &t.attendee;
    [
        a.name.as_deref(),
        a.order.as_deref(),
        Some(t.ticket_id.as_str()),
    ]
    .into_iter()
    .flatten()
}

/// NFC readers differ in case and separators (`04:A2:...` vs `04a2...`); barcodes do not care
/// about surrounding spaces.
fn normalize(code: &str) -> String {
    code.trim()
        .chars()
        .filter(|c| *c != ':')
        .flat_map(char::to_uppercase)
        .collect()
}

/// What a steward's phone carries of the manifest (`manifest-phone.json`, signed by the
/// organizer beside `manifest.json`): only tickets it has something to say about (a barcode or
/// wristband to look up, a cancellation, a holder to show), and their codes as hashes, never
/// as codes: a phone is a steward's own device, and a code in it would be a ticket anyone with
/// the phone could show. GM1 codes need no entry (their signature is the ticket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneManifestBody {
    pub event_id: String,
    pub tickets: Vec<PhoneTicket>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneTicket {
    pub ticket_id: String,
    pub tier: String,
    pub zone: String,
    pub status: TicketStatus,
    /// [`code_hash`] of the ticket's barcode, when it is one a manifest lookup reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfc_hash: Option<String>,
    #[serde(flatten, default)]
    pub attendee: Attendee,
}

/// A barcode or wristband UID as a phone knows it: 16 bytes of SHA-256 of the event id and the
/// normalized code (the case, separators and spaces a manifest lookup ignores), in hex.
pub fn code_hash(event_id: &str, code: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"gatemesh code 1\n");
    h.update(event_id.as_bytes());
    h.update(b"\n");
    h.update(normalize(code).as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The phone's manifest of `body`.
pub fn phone_manifest(body: &ManifestBody) -> PhoneManifestBody {
    let tickets = (body.tickets.iter())
        .filter_map(|t| {
            let code = looked_up(&t.ticket_code).then(|| code_hash(&body.event_id, &t.ticket_code));
            let nfc_hash = t.nfc_uid.as_deref().map(|u| code_hash(&body.event_id, u));
            let says = code.is_some()
                || nfc_hash.is_some()
                || t.status == TicketStatus::Cancelled
                || t.attendee != Attendee::default();
            says.then(|| PhoneTicket {
                ticket_id: t.ticket_id.clone(),
                tier: t.tier.clone(),
                zone: t.zone.clone(),
                status: t.status,
                code_hash: code,
                nfc_hash,
                attendee: t.attendee.clone(),
            })
        })
        .collect();
    PhoneManifestBody {
        event_id: body.event_id.clone(),
        tickets,
    }
}
