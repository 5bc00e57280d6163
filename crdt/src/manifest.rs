//! The signed offline manifest (seed `offline-scanning-flow.md`): every ticket of the event with
//! its code, tier, zone, max scans and status. A scanner looks opaque barcodes and NFC wristband
//! UIDs up in it, and a `cancelled` status revokes a ticket of any format.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Most tickets one manifest may hold.
pub const MANIFEST_TICKETS_MAX: usize = 2_000_000;

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
}

/// A verified manifest with lookups by code, NFC UID and ticket id.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    pub body: Option<ManifestBody>,
    by_code: HashMap<String, usize>,
    by_ticket: HashMap<String, usize>,
}

impl Manifest {
    pub fn new(body: ManifestBody) -> Result<Manifest, ManifestError> {
        if body.tickets.len() > MANIFEST_TICKETS_MAX {
            return Err(ManifestError::TooMany(body.tickets.len()));
        }
        let mut by_code = HashMap::new();
        let mut by_ticket = HashMap::new();
        for (i, t) in body.tickets.iter().enumerate() {
            if by_ticket.insert(t.ticket_id.clone(), i).is_some() {
                return Err(ManifestError::Twice(t.ticket_id.clone()));
            }
            by_code.insert(normalize(&t.ticket_code), i);
            if let Some(uid) = &t.nfc_uid {
                by_code.insert(normalize(uid), i);
            }
        }
        Ok(Manifest {
            body: Some(body),
            by_code,
            by_ticket,
        })
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

/// NFC readers differ in case and separators (`04:A2:...` vs `04a2...`); barcodes do not care
/// about surrounding spaces.
fn normalize(code: &str) -> String {
    code.trim()
        .chars()
        .filter(|c| *c != ':')
        .flat_map(char::to_uppercase)
        .collect()
}
