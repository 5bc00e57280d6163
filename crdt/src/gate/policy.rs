//! The gate decision and its reason codes, in the order DESIGN §5 fixes: the first failure wins.
//!
//! `paused` → `malformed` → `invalid_signature` → `unknown_ticket` → `wrong_event` → `revoked`
//! → `code_expired` → `not_yet_valid` / `expired` → `wrong_zone` → `wrong_list` →
//! `already_redeemed` → `zone_full` → `ok`. A stale live code (a screenshot) is told after a
//! revocation (the ticket's own state wins) and before the ticket's validity. A pause stops the gate whatever the code; a full zone is told last, so a
//! used or wrong ticket hears its own reason.
//! The first three come from reading the credential ([`crate::credential`]); this module checks
//! the rest against the event, the gate and the ledger's replay.

use crate::credential::{Credential, Format};
use crate::event::{EventConfig, GateConfig, TierConfig};
pub use crate::reason::{Denial, Reason};
use crate::record::date::{day_name, fmt_ms};
use crate::TicketReplay;
use std::collections::HashSet;

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
    check_live(cred, event, tier, now_ms)?;
    check_window(cred, event, tier, now_ms)?;
    check_place(cred, tier, gate)?;
    Ok(tier)
}

/// A live code must be recent ([`crate::event::LiveCodes`]): made for a step that began at most
/// the window ago, and not further ahead than a wallet's clock may run. A tier that shows live
/// codes takes no static code (GM1, legacy); a manifest barcode is the organizer's own choice
/// for a ticket, and a hand check-in reads as one.
fn check_live(
    cred: &Credential,
    event: &EventConfig,
    tier: &TierConfig,
    now_ms: u64,
) -> Result<(), Denial> {
    use crate::credential::rotating::STEP_MS;
    let (window_ms, ahead_ms) = event.live_code_ms();
    let Some(step) = cred.live_step else {
        let static_code = matches!(cred.format, Format::Gm1 | Format::Legacy);
        return match tier.live_code && static_code {
            true => Err(Denial::new(
                Reason::CodeExpired,
                "this ticket shows a live code: ask the holder for it",
            )),
            false => Ok(()),
        };
    };
    let made = step.saturating_mul(STEP_MS);
    if made > now_ms.saturating_add(ahead_ms) {
        return Err(Denial::new(
            Reason::CodeExpired,
            "the live code is ahead of this scanner's clock: ask the holder to check the phone's time",
        ));
    }
    let age_s = now_ms.saturating_sub(made) / 1000;
    if now_ms.saturating_sub(made) > window_ms {
        return Err(Denial::new(
            Reason::CodeExpired,
            format!(
                "the code is {age_s} s old: ask for the live code (or check the phone's clock)"
            ),
        ));
    }
    Ok(())
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
