//! The gate's reason codes and a denial's words: what the credential readers and the policy
//! checks both answer with (a leaf of the gate's rooms).

use serde::Serialize;

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
    /// A live code (GM2) older than the event's window, or a static code for a tier that shows
    /// live codes only: a screenshot.
    CodeExpired,
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
    pub const ALL: [Reason; 14] = [
        Reason::Ok,
        Reason::Paused,
        Reason::Malformed,
        Reason::InvalidSignature,
        Reason::UnknownTicket,
        Reason::WrongEvent,
        Reason::Revoked,
        Reason::CodeExpired,
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
            Reason::CodeExpired => "code_expired",
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
            Reason::CodeExpired => "Old code: ask for the live code on the holder's phone",
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
