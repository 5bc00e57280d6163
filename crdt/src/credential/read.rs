//! What a scanned code is. Three formats must work (DESIGN §4):
//! 1. GM1 signed tickets (`GM1:` prefix), verified with the organizer keys;
//! 2. legacy HMAC JSON codes (a JSON object), verified with the event's HMAC secret;
//! 3. manifest codes: opaque barcode text or an NFC UID looked up in the signed manifest.
//!
//! Reading stops at the first failure among `malformed`, `invalid_signature`, `unknown_ticket`;
//! the later checks are [`crate::gate::policy`]'s.

use crate::credential::rotating::{self, Gm2Error};
use crate::credential::ticket::{self, Gm1Error};
use crate::event::manifest::{Manifest, TicketStatus};
use crate::event::LegacyConfig;
use crate::json::{self, Value};
use crate::reason::{Denial, Reason};
use ed25519_dalek::VerifyingKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;

/// Any input longer than this is `malformed` (DESIGN §4).
pub const CODE_BYTES_MAX: usize = 2048;
/// Default age after which a legacy code is `expired` (`QR_EXPIRY_HOURS`).
pub const LEGACY_EXPIRY_HOURS_DEFAULT: u64 = 24;
/// How far in the future a legacy code's timestamp may be (device clocks disagree).
pub const LEGACY_FUTURE_SKEW_MS: u64 = 5 * 60 * 1000;
/// Longest manifest code or NFC UID.
pub const MANIFEST_CODE_LEN_MAX: usize = 256;
/// Longest ticket id kept from an untrusted code (for the denial record), in bytes.
pub const CLAIMED_ID_BYTES_MAX: usize = 64;
/// Longest ticket id of a readable code, in bytes: the ledger's record field limit, so every
/// id read is one the ledger, the store and PostgreSQL can hold. Longer is `malformed`.
pub const TICKET_ID_BYTES_MAX: usize = crate::record::FIELD_BYTES_MAX;
/// The seven fields a legacy code must carry.
const LEGACY_FIELDS: [&str; 7] = [
    "ticketId",
    "eventId",
    "guestId",
    "ticketCode",
    "timestamp",
    "signature",
    "checksum",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Gm1,
    /// A rotating ticket's live code ([`crate::credential::rotating`]).
    Gm2,
    Legacy,
    Manifest,
}

/// A code that was read and whose signature (or manifest entry) checks out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub format: Format,
    pub ticket_id: String,
    pub event_id: String,
    pub tier: String,
    pub valid_from_ms: Option<u64>,
    pub valid_until_ms: Option<u64>,
    /// Zone a manifest entry names (in addition to the tier's zones).
    pub zone: Option<String>,
    /// Cancelled in the manifest.
    pub revoked: bool,
    /// For a live code (GM2): the time step its wallet signed (how recent it is is the
    /// policy's to judge).
    pub live_step: Option<u64>,
}

/// A code that could not be read, with the ticket id it claimed, when it claimed one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub denial: Denial,
    pub claimed_ticket: Option<String>,
}

/// The event's legacy HMAC secret and expiry.
#[derive(Clone)]
pub struct LegacySecret {
    pub secret: Vec<u8>,
    pub expiry_ms: u64,
}

impl std::fmt::Debug for LegacySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacySecret")
            .field("expiry_ms", &self.expiry_ms)
            .finish_non_exhaustive()
    }
}

/// What reading needs to know.
#[derive(Clone, Copy, Debug)]
pub struct Readers<'a> {
    pub organizer_keys: &'a HashMap<String, VerifyingKey>,
    pub legacy: &'a LegacyConfig,
    pub legacy_secret: Option<&'a LegacySecret>,
    pub manifest: &'a Manifest,
}

fn unreadable(reason: Reason, msg: impl Into<String>, claimed: Option<&str>) -> Unreadable {
    Unreadable {
        denial: Denial::new(reason, msg),
        claimed_ticket: claimed.and_then(claimed_id),
    }
}

/// The ticket id an unreadable code claims, as a denial record may carry it: cut to
/// [`CLAIMED_ID_BYTES_MAX`] bytes at a character boundary; none if empty or holding control
/// characters.
fn claimed_id(c: &str) -> Option<String> {
    let mut end = c.len().min(CLAIMED_ID_BYTES_MAX);
    while !c.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &c[..end];
    (!cut.is_empty() && !cut.chars().any(char::is_control)).then(|| cut.to_string())
}

/// Whether a ticket id read from a valid code can be recorded as it is.
pub fn ticket_id_ok(id: &str) -> bool {
    !id.is_empty()
        && crate::record::field_ok(id, TICKET_ID_BYTES_MAX)
        && !id.starts_with(crate::record::ROOM_TICKET_PREFIX)
}

/// Read a scanned code.
pub fn read(input: &[u8], r: Readers<'_>) -> Result<Credential, Unreadable> {
    if input.is_empty() {
        return Err(unreadable(Reason::Malformed, "code is empty", None));
    }
    if input.len() > CODE_BYTES_MAX {
        return Err(unreadable(
            Reason::Malformed,
            format!("code is {} bytes, over {CODE_BYTES_MAX}", input.len()),
            None,
        ));
    }
    let Ok(text) = std::str::from_utf8(input) else {
        return Err(unreadable(
            Reason::Malformed,
            "code is not UTF-8 text",
            None,
        ));
    };
    let text = text.trim_end_matches(['\r', '\n']);
    let mut cred = if ticket::strip_prefix(text).is_some() {
        read_gm1(text, r)?
    } else if rotating::is_gm2(text) {
        read_gm2(text, r)?
    } else if text.trim_start().starts_with('{') {
        read_legacy(text, r)?
    } else {
        read_manifest_code(text, r)?
    };
    if !ticket_id_ok(&cred.ticket_id) || !crate::record::field_ok(&cred.tier, TICKET_ID_BYTES_MAX) {
        return Err(unreadable(
            Reason::Malformed,
            format!(
                "ticket id is empty, over {TICKET_ID_BYTES_MAX} bytes or holds control characters"
            ),
            None,
        ));
    }
    if let Some(entry) = r.manifest.by_ticket(&cred.ticket_id) {
        cred.revoked |= entry.status == TicketStatus::Cancelled;
    }
    Ok(cred)
}

fn read_gm1(text: &str, r: Readers<'_>) -> Result<Credential, Unreadable> {
    match ticket::verify(text, r.organizer_keys) {
        Ok(p) => Ok(Credential {
            format: Format::Gm1,
            ticket_id: p.ticket_id,
            event_id: p.event_id,
            tier: p.tier,
            valid_from_ms: Some(p.valid_from_s.saturating_mul(1000)),
            valid_until_ms: Some(p.valid_until_s.saturating_mul(1000)),
            zone: None,
            revoked: false,
            live_step: None,
        }),
        Err((Gm1Error::NotGm1 | Gm1Error::Malformed, _)) => Err(unreadable(
            Reason::Malformed,
            "GM1 code is damaged or cut short",
            None,
        )),
        Err((e, claimed)) => Err(unreadable(
            Reason::InvalidSignature,
            e.to_string(),
            claimed.as_deref(),
        )),
    }
}

fn read_gm2(text: &str, r: Readers<'_>) -> Result<Credential, Unreadable> {
    match rotating::verify(text, r.organizer_keys) {
        Ok(live) => Ok(Credential {
            format: Format::Gm2,
            ticket_id: live.payload.ticket_id,
            event_id: live.payload.event_id,
            tier: live.payload.tier,
            valid_from_ms: Some(live.payload.valid_from_s.saturating_mul(1000)),
            valid_until_ms: Some(live.payload.valid_until_s.saturating_mul(1000)),
            zone: None,
            revoked: false,
            live_step: Some(live.step),
        }),
        Err((Gm2Error::NotGm2 | Gm2Error::Malformed, _)) => Err(unreadable(
            Reason::Malformed,
            "GM2 code is damaged or cut short",
            None,
        )),
        Err((e, claimed)) => Err(unreadable(
            Reason::InvalidSignature,
            e.to_string(),
            claimed.as_deref(),
        )),
    }
}

/// A legacy code's fields as JavaScript's JSON.stringify writes them (what the HMAC signs),
/// with the plain ticket and event ids, the timestamp and the signature.
struct LegacyFields {
    signed: String,
    ticket_id: String,
    event_id: String,
    timestamp_ms: u64,
    signature: String,
}

fn read_legacy(text: &str, r: Readers<'_>) -> Result<Credential, Unreadable> {
    let f = legacy_fields(text)?;
    let Some(secret) = r.legacy_secret else {
        return Err(unreadable(
            Reason::InvalidSignature,
            "this node has no HMAC secret for legacy codes",
            Some(&f.ticket_id),
        ));
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&secret.secret).expect("HMAC takes any key length");
    mac.update(f.signed.as_bytes());
    let sig_ok = hex::decode(&f.signature).is_ok_and(|sig| mac.verify_slice(&sig).is_ok());
    if !sig_ok {
        return Err(unreadable(
            Reason::InvalidSignature,
            "legacy HMAC signature does not match",
            Some(&f.ticket_id),
        ));
    }
    Ok(Credential {
        format: Format::Legacy,
        ticket_id: f.ticket_id,
        event_id: f.event_id,
        tier: r.legacy.tier.clone(),
        valid_from_ms: Some(f.timestamp_ms.saturating_sub(LEGACY_FUTURE_SKEW_MS)),
        valid_until_ms: Some(f.timestamp_ms.saturating_add(secret.expiry_ms)),
        zone: None,
        revoked: false,
        live_step: None,
    })
}

fn legacy_fields(text: &str) -> Result<LegacyFields, Unreadable> {
    let malformed = |why: &str| unreadable(Reason::Malformed, why.to_string(), None);
    let obj = match json::parse(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err(malformed("legacy code is not a JSON object")),
    };
    let field = |k: &str| obj.get(k).unwrap_or(&Value::Null);
    if let Some(missing) = LEGACY_FIELDS.iter().find(|f| obj.get(f).is_none()) {
        return Err(malformed(&format!("legacy code has no {missing}")));
    }
    let scalar = |k: &str| -> Option<String> { js_scalar(field(k)) };
    let (Some(ticket_id), Some(event_id), Some(guest), Some(code), Some(ts)) = (
        scalar("ticketId"),
        scalar("eventId"),
        scalar("guestId"),
        scalar("ticketCode"),
        scalar("timestamp"),
    ) else {
        return Err(malformed("legacy code fields must be strings or numbers"));
    };
    let number = match field("timestamp") {
        Value::Number(n) => n.parse::<f64>().ok(),
        _ => None,
    };
    let Some(timestamp_ms) = number.filter(|t| t.is_finite() && *t >= 0.0) else {
        return Err(malformed(
            "legacy timestamp is not a number of milliseconds",
        ));
    };
    let Value::String(signature) = field("signature") else {
        return Err(malformed("legacy signature is not a string"));
    };
    // Exactly JSON.stringify({ticketId, eventId, guestId, ticketCode, timestamp}).
    let signed = format!("{{\"ticketId\":{ticket_id},\"eventId\":{event_id},\"guestId\":{guest},\"ticketCode\":{code},\"timestamp\":{ts}}}");
    Ok(LegacyFields {
        signed,
        ticket_id: plain(field("ticketId"), &ticket_id),
        event_id: plain(field("eventId"), &event_id),
        timestamp_ms: timestamp_ms as u64,
        signature: signature.clone(),
    })
}

/// A JSON scalar as JavaScript's JSON.stringify writes it; `None` for objects, arrays, null.
fn js_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(js_string(s)),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => {
            if let Ok(u) = n.parse::<u64>() {
                return Some(u.to_string());
            }
            if let Ok(i) = n.parse::<i64>() {
                return Some(i.to_string());
            }
            let f = n.parse::<f64>().ok().filter(|f| f.is_finite())?;
            // JS prints integral doubles below 1e21 without a fraction.
            if f.fract() == 0.0 && f.abs() < 1e21 {
                Some(format!("{f:.0}"))
            } else {
                Some(format!("{f}"))
            }
        }
        _ => None,
    }
}

/// A string as JSON.stringify quotes it: `"` and `\` escaped, control characters as `\b \f
/// \n \r \t` or `\u00xx`, everything else as it is.
pub fn js_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value as an id: strings without quotes, numbers as written.
fn plain(v: &Value, js: &str) -> String {
    match v {
        Value::String(s) => s.clone(),
        _ => js.to_string(),
    }
}

fn read_manifest_code(text: &str, r: Readers<'_>) -> Result<Credential, Unreadable> {
    let trimmed = text.trim();
    let printable = trimmed.bytes().all(|b| (0x20..0x7f).contains(&b));
    if trimmed.is_empty() || trimmed.len() > MANIFEST_CODE_LEN_MAX || !printable {
        return Err(unreadable(
            Reason::Malformed,
            "code matches no ticket format",
            None,
        ));
    }
    let Some(entry) = r.manifest.by_code(trimmed) else {
        return Err(unreadable(
            Reason::UnknownTicket,
            "code is not in the ticket manifest",
            None,
        ));
    };
    let event_id = r
        .manifest
        .body
        .as_ref()
        .map(|b| b.event_id.clone())
        .unwrap_or_default();
    Ok(Credential {
        format: Format::Manifest,
        ticket_id: entry.ticket_id.clone(),
        event_id,
        tier: entry.tier.clone(),
        valid_from_ms: None,
        valid_until_ms: None,
        zone: Some(entry.zone.clone()),
        revoked: entry.status == TicketStatus::Cancelled,
        live_step: None,
    })
}

/// Make a legacy code exactly as the seed's generator does (for `tickets issue --format legacy`
/// and tests).
pub fn make_legacy_code(
    ticket_id: &str,
    event_id: &str,
    guest_id: &str,
    ticket_code: &str,
    timestamp_ms: u64,
    secret: &[u8],
) -> String {
    let q = js_string;
    let signed = format!(
        "{{\"ticketId\":{},\"eventId\":{},\"guestId\":{},\"ticketCode\":{},\"timestamp\":{timestamp_ms}}}",
        q(ticket_id), q(event_id), q(guest_id), q(ticket_code)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let checksum = hex::encode(&<Sha256 as sha2::Digest>::digest(signed.as_bytes())[..4]);
    format!(
        "{},\"signature\":\"{signature}\",\"checksum\":\"{checksum}\"}}",
        &signed[..signed.len() - 1]
    )
}
