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
//! Pure: typed requests and time in, the seed's response shapes and change bytes out (the HTTP
//! edge reads and writes the JSON).

use crate::event::manifest::TicketStatus;
use crate::event::{offline_device_id_ok, DEVICE_ID_LEN_MAX};
use crate::gate::{GateError, GateLogic, OfflineOutcome};
use crate::record::date::iso;
use crate::record::Direction;
use serde::{Deserialize, Serialize};

/// Most scans one reconcile request may carry.
pub const RECONCILE_SCANS_MAX: usize = 200;
/// How long a downloaded manifest is meant to be used.
pub const MANIFEST_TTL_MS: u64 = 24 * 3_600_000;

/// `POST /offline/reconcile` body, as the seed defines it (plus an optional gate).
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReconcileRequest {
    pub device_id: String,
    pub scans: Vec<OfflineScan>,
}

#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The code the device read (a steward's phone sends it): read again by the node, so the
    /// ticket is what the code proves (its signature checked here), not what the device says.
    #[serde(default)]
    pub code: Option<String>,
    /// `in` or `out`; the gate's when absent.
    #[serde(default)]
    pub direction: Option<String>,
}

/// Why a whole request is refused (before any scan is looked at).
#[derive(Debug, PartialEq, Eq)]
pub struct RequestError {
    pub code: &'static str,
    pub message: String,
}

pub fn refuse(code: &'static str, message: impl Into<String>) -> RequestError {
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
        Some(id) if !offline_device_id_ok(id) => Err(refuse(
            "INVALID_DEVICE_ID",
            format!(
                "device_id is at most {DEVICE_ID_LEN_MAX} bytes, without '@' or control characters"
            ),
        )),
        Some(id) => Ok(id),
    }
}

/// The seed's `OfflineManifest`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfflineManifest {
    pub event_id: String,
    pub generated_at: String,
    pub expires_at: String,
    pub tickets: Vec<OfflineTicket>,
    pub policies: Policies,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfflineTicket {
    pub ticket_id: String,
    pub ticket_code: String,
    pub tier: String,
    pub zone: String,
    pub max_scans: u32,
    pub current_scans: u32,
    pub status: TicketStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policies {
    pub tiers: Vec<TierPolicy>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierPolicy {
    pub tier: String,
    pub max_entries: u32,
    pub reentry: bool,
    pub zones: Vec<String>,
    pub duplicate_window_ms: u64,
}

/// The seed's `OfflineManifest` for this event, with current scan counts from the ledger.
pub fn manifest(gate: &GateLogic, now_ms: u64) -> Option<OfflineManifest> {
    let config = gate.config();
    let index = gate.ledger().index();
    let body = gate.manifest().body.as_ref()?;
    let tickets = body
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
            OfflineTicket {
                ticket_id: t.ticket_id.clone(),
                ticket_code: t.ticket_code.clone(),
                tier: t.tier.clone(),
                zone: t.zone.clone(),
                // What the gate allows now (the manifest says what it allowed at issue).
                max_scans: index.rule(&t.tier).max_entries,
                current_scans: current.max(t.current_scans),
                status,
            }
        })
        .collect();
    let tiers = config
        .tiers
        .iter()
        .map(|t| {
            // The rules in force: the package's as bulletins changed them.
            let rule = index.rule(&t.name);
            TierPolicy {
                tier: t.name.clone(),
                max_entries: rule.max_entries,
                reentry: rule.reentry,
                zones: t.zones.clone(),
                duplicate_window_ms: t.double_scan_grace_ms,
            }
        })
        .collect();
    Some(OfflineManifest {
        event_id: config.event_id.clone(),
        generated_at: iso(now_ms),
        expires_at: iso(now_ms + MANIFEST_TTL_MS),
        tickets,
        policies: Policies { tiers },
    })
}

/// What became of one reconciled scan, in the seed's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ScanStatus {
    Success,
    Duplicate,
    Error,
}

/// One reconciled scan's result, in the seed's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScanResult {
    pub ticket_id: String,
    pub status: ScanStatus,
    pub message: String,
    /// The policy's reason when an allowed scan was recorded as a denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_id: Option<String>,
}

/// One reconciled scan's result and the change to make durable.
pub struct Reconciled {
    pub result: ScanResult,
    pub change: Option<Vec<u8>>,
}

fn result(ticket_id: &str, status: ScanStatus, message: impl Into<String>) -> ScanResult {
    ScanResult {
        ticket_id: ticket_id.to_string(),
        status,
        message: message.into(),
        reason: None,
        scan_id: None,
    }
}

/// How long before its pass was issued a phone's scan may have been made (clocks differ).
pub const PHONE_SINCE_SLACK_MS: u64 = 10 * 60 * 1000;

/// Reconcile one offline scan into the ledger (`default_gate` when the scan names none),
/// through the gate's policy ([`GateLogic::reconcile`]). A phone's (`phone_since`: when its
/// pass was issued) must carry the code it read and be made since it was paired.
pub fn reconcile_one(
    gate: &mut GateLogic,
    (now_ms, phone_since): (u64, Option<u64>),
    device_id: &str,
    scan: &OfflineScan,
    default_gate: &str,
) -> Reconciled {
    let error = |message: String| Reconciled {
        result: result(&scan.ticket_id, ScanStatus::Error, message),
        change: None,
    };
    let scanned_at_ms = match humantime::parse_rfc3339_weak(scan.scanned_at.trim()) {
        Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Err(_) => return error(format!("scanned_at {:?} is before 1970", scan.scanned_at)),
        },
        Err(e) => return error(format!("scanned_at {:?}: {e}", scan.scanned_at)),
    };
    let (allowed, direction) = match result_and_direction(scan) {
        Ok(x) => x,
        Err(message) => return error(message),
    };
    if let Some(why) = phone_scan_refused(scan, scanned_at_ms, phone_since) {
        return error(why);
    }
    let input = crate::gate::OfflineScan {
        ticket_id: &scan.ticket_id,
        code: scan.code.as_deref().map(str::as_bytes),
        direction,
        scanned_at_ms,
        allowed,
        reason: scan.reason.as_deref(),
        gate: scan.gate.as_deref().unwrap_or(default_gate),
        origin: format!("{device_id}@{scanned_at_ms}"),
    };
    match gate.reconcile(now_ms, input) {
        Ok(OfflineOutcome::Duplicate) => Reconciled {
            result: result(&scan.ticket_id, ScanStatus::Duplicate, "Already processed"),
            change: None,
        },
        Ok(OfflineOutcome::Recorded {
            scan_id,
            change,
            policy,
        }) => {
            let mut r = match &policy {
                None => result(&scan.ticket_id, ScanStatus::Success, "Scan reconciled"),
                Some(d) => result(
                    &scan.ticket_id,
                    ScanStatus::Error,
                    format!("recorded as a denial: {}", d.message),
                ),
            };
            r.reason = policy.map(|d| d.reason.code().to_string());
            r.scan_id = Some(scan_id);
            Reconciled {
                result: r,
                change: Some(change),
            }
        }
        Err(GateError::UnknownTicket(_)) => error(format!("Ticket {} not found", scan.ticket_id)),
        Err(GateError::UnknownGate(g)) => error(format!("Gate {g} not found")),
        Err(GateError::TicketMismatch(t)) => error(format!(
            "the code is for ticket {t}, not {}",
            scan.ticket_id
        )),
        Err(e) => error(e.to_string()),
    }
}

/// Why a phone's scan is refused before it is judged: a phone sends the code it read (the node
/// reads it again) and scans made since it was paired.
fn phone_scan_refused(
    scan: &OfflineScan,
    scanned_at_ms: u64,
    phone_since: Option<u64>,
) -> Option<String> {
    let since = phone_since?;
    if scan.code.is_none() {
        return Some("a phone's scan carries the code it read".into());
    }
    (scanned_at_ms < since.saturating_sub(PHONE_SINCE_SLACK_MS)).then(|| {
        format!(
            "scanned_at {:?} is before this phone was paired",
            scan.scanned_at
        )
    })
}

/// What the device decided (`ALLOW` or `DENY`) and which way the holder went.
fn result_and_direction(scan: &OfflineScan) -> Result<(bool, Option<Direction>), String> {
    let allowed = match scan.result.as_str() {
        "ALLOW" => true,
        "DENY" => false,
        other => return Err(format!("result {other:?} is neither ALLOW nor DENY")),
    };
    let direction = match scan.direction.as_deref() {
        None => None,
        Some("in") => Some(Direction::In),
        Some("out") => Some(Direction::Out),
        Some(other) => return Err(format!("direction {other:?} is neither in nor out")),
    };
    Ok((allowed, direction))
}

/// The seed's response around the per-scan results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReconcileResponse {
    pub success: bool,
    pub reconciled: usize,
    pub failed: usize,
    pub results: Vec<ScanResult>,
}

impl ReconcileResponse {
    pub fn new(results: Vec<ScanResult>) -> ReconcileResponse {
        let ok = results
            .iter()
            .filter(|r| r.status == ScanStatus::Success)
            .count();
        ReconcileResponse {
            success: true,
            reconciled: ok,
            failed: results.len() - ok,
            results,
        }
    }
}

/// Check a parsed reconcile request: the device id and the number of scans.
pub fn check_request(req: &ReconcileRequest) -> Result<(), RequestError> {
    check_device_id(Some(&req.device_id))?;
    if req.scans.len() > RECONCILE_SCANS_MAX {
        return Err(refuse(
            "TOO_MANY_SCANS",
            format!("at most {RECONCILE_SCANS_MAX} scans per request"),
        ));
    }
    Ok(())
}

/// What a steward's phone needs to decide on its own when its node does not answer
/// (`GET /offline/pack`): the event's rules as the gate policy reads them, already worked out
/// (festival days as day numbers, the day's start in ms), and the limits the credential readers
/// hold codes to, so the page applies these values and holds no second copy of them. The node
/// adds the signed manifest's envelope; the snapshot ([`crate::gate::snapshot`]) brings what
/// changes during the event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OfflinePack {
    pub format: u32,
    pub event_id: String,
    pub legacy_event_id: String,
    pub name: String,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
    pub day_start_ms: i64,
    pub organizer_keys: Vec<crate::event::OrganizerKey>,
    pub gates: Vec<crate::event::GateConfig>,
    pub tiers: Vec<PackTier>,
    pub capacity: std::collections::BTreeMap<String, u64>,
    /// The event file's fingerprint: a pack from another file is another event's.
    pub fingerprint: String,
    pub limits: PackLimits,
    /// How recent a live code (GM2) must be.
    pub live: PackLive,
    /// Strict zones: a phone holds none of their room and admits no one into them offline.
    pub strict_zones: Vec<String>,
}

/// Live codes' time step and the window and clock lead the event allows, in ms.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PackLive {
    pub step_ms: u64,
    pub window_ms: u64,
    pub ahead_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PackTier {
    pub name: String,
    pub zones: Vec<String>,
    pub valid_from_ms: Option<u64>,
    pub valid_until_ms: Option<u64>,
    pub grace_ms: u64,
    /// Festival day numbers (days since 1970 as `day_starts` cuts them); empty: every day.
    pub valid_days: Vec<u64>,
    pub attention: Option<String>,
    /// The tier shows live codes only.
    pub live_code: bool,
}

/// The credential readers' limits, in bytes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PackLimits {
    pub code_bytes: usize,
    pub ticket_id_bytes: usize,
    pub manifest_code_len: usize,
    pub claimed_id_bytes: usize,
    pub legacy_future_skew_ms: u64,
    /// No ticket's id starts with it (the ledger's room records do).
    pub reserved_ticket_prefix: &'static str,
}

/// The format of [`OfflinePack`] this version writes.
pub const PACK_FORMAT: u32 = 1;

/// The pack for `gate`'s event.
pub fn pack(gate: &GateLogic) -> OfflinePack {
    let c = gate.config();
    let tiers = (c.tiers.iter())
        .map(|t| PackTier {
            name: t.name.clone(),
            zones: t.zones.clone(),
            valid_from_ms: t.valid_from_ms,
            valid_until_ms: t.valid_until_ms,
            grace_ms: t.double_scan_grace_ms,
            valid_days: c.valid_days(t),
            attention: t.attention.clone(),
            live_code: t.live_code,
        })
        .collect();
    let (window_ms, ahead_ms) = c.live_code_ms();
    OfflinePack {
        format: PACK_FORMAT,
        event_id: c.event_id.clone(),
        legacy_event_id: c.legacy.event_id.clone(),
        name: c.name.clone(),
        valid_from_ms: c.valid_from_ms,
        valid_until_ms: c.valid_until_ms,
        day_start_ms: c.day_start_ms(),
        organizer_keys: c.organizer_keys.clone(),
        gates: c.gates.clone(),
        tiers,
        capacity: c.capacity.clone(),
        fingerprint: hex::encode(c.fingerprint()),
        limits: PackLimits {
            code_bytes: crate::credential::CODE_BYTES_MAX,
            ticket_id_bytes: crate::credential::TICKET_ID_BYTES_MAX,
            manifest_code_len: crate::credential::MANIFEST_CODE_LEN_MAX,
            claimed_id_bytes: crate::credential::CLAIMED_ID_BYTES_MAX,
            legacy_future_skew_ms: crate::credential::LEGACY_FUTURE_SKEW_MS,
            reserved_ticket_prefix: crate::record::ROOM_TICKET_PREFIX,
        },
        live: PackLive {
            step_ms: crate::credential::rotating::STEP_MS,
            window_ms,
            ahead_ms,
        },
        strict_zones: (c.capacity_mode.keys())
            .filter(|z| c.is_strict(z))
            .cloned()
            .collect(),
    }
}
