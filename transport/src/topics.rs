//! Gossip topic names, one pair per event.

/// `gatemesh/<event-id>/ledger`: every new ledger change, one per message.
pub fn ledger(event_id: &str) -> String {
    format!("gatemesh/{event_id}/ledger")
}

/// `gatemesh/<event-id>/control`: organizer-signed bulletins.
pub fn control(event_id: &str) -> String {
    format!("gatemesh/{event_id}/control")
}
