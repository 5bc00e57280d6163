//! The seed's offline contract (`offline-scanning-flow.md`), for devices that are not mesh nodes:
//! they download a manifest before the event (`GET /offline/manifest/{eventId}?device_id=`),
//! scan on their own, and reconcile afterwards (`POST /offline/reconcile`).
//!
//! A reconciled scan enters the ledger as a record of the node that received it, carrying its
//! origin (`<device>@<scanned-at ms>`). The same scan posted again, to this node or any other,
//! is recognised by that origin: `DUPLICATE` here, and counted once by every replica's replay.
//! An offline admit of a ticket the mesh had already let in becomes a double entry, reported like
//! any other.
//!
//! Pure: request values and time in, the seed's response values and change bytes out.

use crate::gate::{GateError, GateLogic, OfflineOutcome};
use crate::manifest::TicketStatus;
use crate::stats::iso;
use serde::Deserialize;
use serde_json::{json, Value};

/// Most scans one reconcile request may carry.
pub const RECONCILE_SCANS_MAX: usize = 200;
/// Longest offline device id.
pub const DEVICE_ID_LEN_MAX: usize = 64;
/// How long a downloaded manifest is meant to be used.
pub const MANIFEST_TTL_MS: u64 = 24 * 3_600_000;

/// `POST /offline/reconcile` body, as the seed defines it (plus an optional gate).
#[derive(Debug, Deserialize)]
pub struct ReconcileRequest {
    pub device_id: String,
    pub scans: Vec<OfflineScan>,
}

#[derive(Debug, Deserialize)]
pub struct OfflineScan {
    pub ticket_id: String,
    /// RFC 3339 time the device scanned at.
    pub scanned_at: String,
    /// `ALLOW` or `DENY`.
    pub result: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// The device's own count; informative (the ledger counts entries itself).
    #[serde(default)]
    pub scan_count: Option<u32>,
    /// Which gate the device stood at; the receiving node's gate when absent.
    #[serde(default)]
    pub gate: Option<String>,
}

/// Why a whole request is refused (before any scan is looked at).
#[derive(Debug, PartialEq, Eq)]
pub struct RequestError {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> RequestError {
    RequestError {
        code,
        message: message.into(),
    }
}

/// Check a device id given by an offline device.
pub fn check_device_id(id: Option<&str>) -> Result<&str, RequestError> {
    match id.map(str::trim) {
        None | Some("") => Err(refuse(
            "MISSING_DEVICE_ID",
            "the device_id query parameter is required",
        )),
        Some(id) if id.len() > DEVICE_ID_LEN_MAX || id.contains('@') || id.chars().any(char::is_control) => Err(refuse(
            "INVALID_DEVICE_ID",
            format!("device_id is at most {DEVICE_ID_LEN_MAX} bytes, without '@' or control characters"),
        )),
        Some(id) => Ok(id),
    }
}

/// The seed's `OfflineManifest` for this event, with current scan counts from the ledger.
pub fn manifest(gate: &GateLogic, now_ms: u64) -> Option<Value> {
    let config = gate.config();
    let index = gate.ledger().index();
    let body = gate.manifest().body.as_ref()?;
    let tickets: Vec<Value> = body
        .tickets
        .iter()
        .map(|t| {
            let replay = index.replay(&t.ticket_id, &t.tier);
            let current = replay.entries.len() as u32;
            let status = if t.status == TicketStatus::Cancelled || gate.is_revoked(&t.ticket_id) {
                TicketStatus::Cancelled
            } else if replay.credits == 0 {
                TicketStatus::Used
            } else {
                TicketStatus::Valid
            };
            json!({
                "ticketId": t.ticket_id,
                "ticketCode": t.ticket_code,
                "tier": t.tier,
                "zone": t.zone,
                "maxScans": t.max_scans,
                "currentScans": current.max(t.current_scans),
                "status": status,
            })
        })
        .collect();
    let policies: Vec<Value> = config
        .tiers
        .iter()
        .map(|t| {
            json!({
                "tier": t.name, "maxEntries": t.max_entries, "reentry": t.reentry,
                "zones": t.zones, "duplicateWindowMs": t.double_scan_grace_ms,
            })
        })
        .collect();
    Some(json!({
        "eventId": config.event_id,
        "generatedAt": iso(now_ms),
        "expiresAt": iso(now_ms + MANIFEST_TTL_MS),
        "tickets": tickets,
        "policies": {"tiers": policies},
    }))
}

/// One reconciled scan's result, in the seed's shape, and the change to make durable.
pub struct Reconciled {
    pub result: Value,
    pub change: Option<Vec<u8>>,
}

fn result(ticket_id: &str, status: &str, message: impl Into<String>) -> Value {
    json!({"ticket_id": ticket_id, "status": status, "message": message.into()})
}

/// Reconcile one offline scan into the ledger (`default_gate` when the scan names none),
/// through the gate's policy ([`GateLogic::reconcile`]).
pub fn reconcile_one(
    gate: &mut GateLogic,
    now_ms: u64,
    device_id: &str,
    scan: &OfflineScan,
    default_gate: &str,
) -> Reconciled {
    let error = |message: String| Reconciled {
        result: result(&scan.ticket_id, "ERROR", message),
        change: None,
    };
    let scanned_at_ms = match humantime::parse_rfc3339_weak(scan.scanned_at.trim()) {
        Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Err(_) => return error(format!("scanned_at {:?} is before 1970", scan.scanned_at)),
        },
        Err(e) => return error(format!("scanned_at {:?}: {e}", scan.scanned_at)),
    };
    let allowed = match scan.result.as_str() {
        "ALLOW" => true,
        "DENY" => false,
        other => return error(format!("result {other:?} is neither ALLOW nor DENY")),
    };
    let input = crate::gate::OfflineScan {
        ticket_id: &scan.ticket_id,
        scanned_at_ms,
        allowed,
        reason: scan.reason.as_deref(),
        gate: scan.gate.as_deref().unwrap_or(default_gate),
        origin: format!("{device_id}@{scanned_at_ms}"),
    };
    match gate.reconcile(now_ms, input) {
        Ok(OfflineOutcome::Duplicate) => Reconciled {
            result: result(&scan.ticket_id, "DUPLICATE", "Already processed"),
            change: None,
        },
        Ok(OfflineOutcome::Recorded {
            scan_id,
            change,
            policy: None,
        }) => Reconciled {
            result: json!({
                "ticket_id": scan.ticket_id, "status": "SUCCESS", "message": "Scan reconciled",
                "scan_id": scan_id,
            }),
            change: Some(change),
        },
        Ok(OfflineOutcome::Recorded {
            scan_id,
            change,
            policy: Some(d),
        }) => Reconciled {
            result: json!({
                "ticket_id": scan.ticket_id, "status": "ERROR", "reason": d.reason.code(),
                "message": format!("recorded as a denial: {}", d.message), "scan_id": scan_id,
            }),
            change: Some(change),
        },
        Err(GateError::UnknownTicket(_)) => error(format!("Ticket {} not found", scan.ticket_id)),
        Err(GateError::UnknownGate(g)) => error(format!("Gate {g} not found")),
        Err(e) => error(e.to_string()),
    }
}

/// The seed's response around the per-scan results.
pub fn response(results: Vec<Value>) -> Value {
    let ok = results.iter().filter(|r| r["status"] == "SUCCESS").count();
    json!({
        "success": true,
        "reconciled": ok,
        "failed": results.len() - ok,
        "results": results,
    })
}

/// Parse and check a reconcile body.
pub fn parse_request(body: &[u8]) -> Result<ReconcileRequest, RequestError> {
    let req: ReconcileRequest = serde_json::from_slice(body)
        .map_err(|e| refuse("INVALID_REQUEST", format!("reconcile body: {e}")))?;
    check_device_id(Some(&req.device_id))?;
    if req.scans.len() > RECONCILE_SCANS_MAX {
        return Err(refuse(
            "TOO_MANY_SCANS",
            format!("at most {RECONCILE_SCANS_MAX} scans per request"),
        ));
    }
    Ok(req)
}
