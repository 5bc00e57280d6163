//! The gate decision and its reason codes, in the order DESIGN §5 fixes: the first failure wins.
//!
//! `paused` → `malformed` → `invalid_signature` → `unknown_ticket` → `wrong_event` → `revoked`
//! → `not_yet_valid` / `expired` → `wrong_zone` → `wrong_list` → `already_redeemed` →
//! `zone_full` → `ok`. A pause stops the gate whatever the code; a full zone is told last, so a
//! used or wrong ticket hears its own reason.
//! The first three come from reading the credential ([`crate::credential`]); this module checks
//! the rest against the event, the gate and the ledger's replay.

use crate::credential::Credential;
use crate::event::{EventConfig, GateConfig, TierConfig};
use crate::TicketReplay;
use serde::Serialize;
use std::collections::HashSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Ok,
    /// The organizer paused this gate, its zone or the event.
    Paused,
    Malformed,
    InvalidSignature,
    UnknownTicket,
    WrongEvent,
    Revoked,
    NotYetValid,
    Expired,
    WrongZone,
    /// The gate's check-in list does not take this ticket's tier (a VIP or staff door).
    WrongList,
    AlreadyRedeemed,
    /// The zone holds its capacity now; exits make room.
    ZoneFull,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::Ok,
        Reason::Paused,
        Reason::Malformed,
        Reason::InvalidSignature,
        Reason::UnknownTicket,
        Reason::WrongEvent,
        Reason::Revoked,
        Reason::NotYetValid,
        Reason::Expired,
        Reason::WrongZone,
        Reason::WrongList,
        Reason::AlreadyRedeemed,
        Reason::ZoneFull,
    ];

    /// The stable code, as in the HTTP contract and the ledger records.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Paused => "paused",
            Reason::ZoneFull => "zone_full",
            Reason::Malformed => "malformed",
            Reason::InvalidSignature => "invalid_signature",
            Reason::UnknownTicket => "unknown_ticket",
            Reason::WrongEvent => "wrong_event",
            Reason::Revoked => "revoked",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::WrongZone => "wrong_zone",
            Reason::WrongList => "wrong_list",
            Reason::AlreadyRedeemed => "already_redeemed",
        }
    }

    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// What a steward reads on the screen.
    pub fn words(self) -> &'static str {
        match self {
            Reason::Ok => "Welcome in",
            Reason::Paused => "Entry paused by the organizer: let nobody in",
            Reason::ZoneFull => "Zone full: wait for people to leave",
            Reason::Malformed => "Not a ticket code",
            Reason::InvalidSignature => "Forged or damaged ticket",
            Reason::UnknownTicket => "Ticket not known",
            Reason::WrongEvent => "Ticket for another event",
            Reason::Revoked => "Ticket cancelled",
            Reason::NotYetValid => "Ticket not valid yet",
            Reason::Expired => "Ticket expired",
            Reason::WrongZone => "Ticket not valid for this zone",
            Reason::WrongList => "Not this door: ticket type not on its list",
            Reason::AlreadyRedeemed => "Already used",
        }
    }
}

/// A denial with its reason and a sentence for the log and the screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    pub message: String,
}

impl Denial {
    pub fn new(reason: Reason, message: impl Into<String>) -> Denial {
        Denial {
            reason,
            message: message.into(),
        }
    }
}

/// Checks after the credential is read and before the ledger: event, revocation, validity, zone.
/// Returns the tier whose policy applies.
pub fn check_ticket<'e>(
    cred: &Credential,
    event: &'e EventConfig,
    gate: &GateConfig,
    revoked: &HashSet<String>,
    now_ms: u64,
) -> Result<&'e TierConfig, Denial> {
    if cred.event_id != event.event_id && cred.event_id != event.legacy.event_id {
        return Err(Denial::new(
            Reason::WrongEvent,
            format!("ticket is for event {}", cred.event_id),
        ));
    }
    let tier = event.tier(&cred.tier).ok_or_else(|| {
        Denial::new(
            Reason::UnknownTicket,
            format!("tier {} is not sold for this event", cred.tier),
        )
    })?;
    if cred.revoked || revoked.contains(&cred.ticket_id) {
        return Err(Denial::new(
            Reason::Revoked,
            "ticket was cancelled by the organizer",
        ));
    }
    check_window(cred, event, tier, now_ms)?;
    check_place(cred, tier, gate)?;
    Ok(tier)
}

/// The ticket's validity now: the narrowest of the event's, the tier's and the code's windows,
/// then the tier's festival days.
fn check_window(
    cred: &Credential,
    event: &EventConfig,
    tier: &TierConfig,
    now_ms: u64,
) -> Result<(), Denial> {
    let from = [
        Some(event.valid_from_ms),
        tier.valid_from_ms,
        cred.valid_from_ms,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    let until = [
        Some(event.valid_until_ms),
        tier.valid_until_ms,
        cred.valid_until_ms,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(u64::MAX);
    if now_ms < from {
        return Err(Denial::new(
            Reason::NotYetValid,
            format!("valid from {}", fmt_ms(from)),
        ));
    }
    if now_ms > until {
        return Err(Denial::new(
            Reason::Expired,
            format!("valid until {}", fmt_ms(until)),
        ));
    }
    check_day(&event.valid_days(tier), event.festival_day(now_ms))?;
    Ok(())
}

/// Where the ticket may go: the gate's zone, then the gate's check-in list.
fn check_place(cred: &Credential, tier: &TierConfig, gate: &GateConfig) -> Result<(), Denial> {
    let zone_ok =
        tier.zones.contains(&gate.zone) || cred.zone.as_deref() == Some(gate.zone.as_str());
    if !zone_ok {
        return Err(Denial::new(
            Reason::WrongZone,
            format!("tier {} does not enter zone {}", tier.name, gate.zone),
        ));
    }
    if !gate.tiers.is_empty() && !gate.tiers.contains(&tier.name) {
        return Err(Denial::new(
            Reason::WrongList,
            format!(
                "gate {} admits {} only, not {}",
                gate.name,
                gate.tiers.join(", "),
                tier.name
            ),
        ));
    }
    Ok(())
}

/// The ledger check for an `in` scan: no credit left, or the day's entries used (`per_day`, 0
/// for none, on festival day `today`), means already redeemed.
pub fn check_entry(replay: &TicketReplay, per_day: u32, today: u64) -> Result<(), Denial> {
    let day_used = per_day > 0
        && replay
            .last_day
            .is_some_and(|(d, n)| d == today && n >= per_day);
    if replay.credits == 0 || day_used {
        let when = if day_used && replay.credits > 0 {
            "today "
        } else {
            ""
        };
        let msg = match replay.entries.last() {
            Some(e) => format!(
                "entered {when}at gate {} ({}) by device {}",
                e.gate,
                fmt_ms(e.wall_ms),
                e.device
            ),
            None => "no entries left".to_string(),
        };
        return Err(Denial::new(Reason::AlreadyRedeemed, msg));
    }
    Ok(())
}

/// Whether a ticket limited to some festival days (`valid_days`, as day numbers) may enter on
/// `today`: before its first day it is not valid yet, after its last day expired, and on a
/// day between that is not one of them, not valid yet (a later day is).
pub fn check_day(valid_days: &[u64], today: u64) -> Result<(), Denial> {
    if valid_days.is_empty() || valid_days.contains(&today) {
        return Ok(());
    }
    let days = valid_days
        .iter()
        .map(|d| day_name(*d))
        .collect::<Vec<_>>()
        .join(", ");
    if valid_days.iter().any(|d| *d > today) {
        Err(Denial::new(Reason::NotYetValid, format!("valid on {days}")))
    } else {
        Err(Denial::new(Reason::Expired, format!("was valid on {days}")))
    }
}

/// A festival day as its date (`2026-07-10`).
pub fn day_name(day: u64) -> String {
    fmt_ms(day.saturating_mul(crate::index::DAY_MS))[..10].to_string()
}

/// RFC 3339 time for messages.
pub fn fmt_ms(ms: u64) -> String {
    // Past year 9999 there is no RFC 3339 date (humantime would panic): clamp.
    let ms = ms.min(crate::record::TIME_MAX_MS);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}
