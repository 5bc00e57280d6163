//! The replica's events as the node shows them: JSON lines on standard output (`{"event": ...}`),
//! and the same values on the live stream (`GET /api/stream`) for the ones a page follows.

use gatemesh_crdt::gate::Decision;
use gatemesh_crdt::protocol::peers::Peers;
use gatemesh_crdt::protocol::Event;
use gatemesh_crdt::DeviceId;
use serde_json::{json, Value};
use std::io::Write;

/// Print one JSON line on standard output.
pub fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Microseconds since the Unix epoch (event timestamps, for propagation measurements).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A decision as the API answers it: its fields and `words` for the screen.
pub fn decision(d: &Decision) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    v["words"] = json!(if d.repeat {
        "Already let in by this scanner just now"
    } else {
        d.reason.words()
    });
    v
}

/// An event as a JSON line, and whether the live stream carries it too.
pub fn event(e: &Event, peers: &Peers) -> (Value, bool) {
    let name = |d: &DeviceId| peers.name(*d);
    if let Some(v) = room(e, &name) {
        return (v, true);
    }
    match e {
        Event::Scan(d) => {
            let mut v = decision(d);
            v["event"] = json!("scan");
            v["at_us"] = json!(now_us());
            (v, true)
        }
        Event::Applied { via, from, records } => {
            let ids: Vec<&str> = records.iter().map(|r| r.scan_id.as_str()).collect();
            let v = json!({"event": "applied", "via": via, "from": name(from), "records": ids, "at_us": now_us()});
            (v, true)
        }
        Event::PeerConnected(p) => (json!({"event": "peer_connected", "peer": name(p)}), true),
        Event::PeerDisconnected(p) => {
            (json!({"event": "peer_disconnected", "peer": name(p)}), true)
        }
        Event::Rejected { from, reason } => {
            let peer = from.as_ref().map(name);
            (
                json!({"event": "rejected_message", "peer": peer, "reason": reason}),
                false,
            )
        }
        Event::EventMismatch { peer, theirs, ours } => (mismatch(&name(peer), theirs, ours), true),
        Event::RejectedChanges { from, via, reasons } => (
            json!({"event": "rejected_changes", "peer": name(from), "via": via, "reasons": reasons}),
            false,
        ),
        Event::Fork { chain, from } => (
            json!({"event": "fork", "chain": chain.to_string(), "from": from}),
            false,
        ),
        Event::Bulletin {
            version,
            label,
            effect,
        } => (bulletin(*version, label, effect), false),
        Event::Conflicts { double_entries } => (
            json!({"event": "double_entries", "count": double_entries}),
            false,
        ),
        Event::Reconciled {
            device,
            reconciled,
            failed,
        } => (
            json!({"event": "reconciled", "device": device, "reconciled": reconciled, "failed": failed}),
            false,
        ),
        Event::Blocked { devices, block } => {
            let names: Vec<String> = devices.iter().map(name).collect();
            let kind = if *block { "block" } else { "unblock" };
            (json!({"event": kind, "peers": names}), false)
        }
        Event::Error { code, message } => (
            json!({"event": "error", "error": code, "message": message}),
            false,
        ),
        Event::RoomAsked { .. } | Event::RoomGiven { .. } | Event::RoomReceived { .. } => {
            (Value::Null, false)
        }
    }
}

/// A peer with another event file: the steward is told why it is refused.
fn mismatch(peer: &str, theirs: &impl serde::Serialize, ours: &impl serde::Serialize) -> Value {
    json!({"event": "event_mismatch", "peer": peer, "theirs": theirs, "ours": ours,
        "reason": "event_mismatch",
        "message": "this scanner has another event.json: it judges by other rules and is refused until both have the same file"})
}

/// Room of a strict zone asked for, given or received, with the time (`at_us`) it happened.
fn room(e: &Event, name: &dyn Fn(&DeviceId) -> String) -> Option<Value> {
    let at = now_us();
    Some(match e {
        Event::RoomAsked { zone, want, asked } => {
            let asked: Vec<String> = asked.iter().map(name).collect();
            json!({"event": "room_asked", "zone": zone, "want": want, "asked": asked, "at_us": at})
        }
        Event::RoomGiven { zone, to, units } => {
            json!({"event": "room_given", "zone": zone, "to": name(to), "units": units, "at_us": at})
        }
        Event::RoomReceived { zone, from, units } => {
            json!({"event": "room_received", "zone": zone, "from": name(from), "units": units, "at_us": at})
        }
        _ => return None,
    })
}

fn bulletin(version: u64, label: &str, effect: &gatemesh_crdt::gate::BulletinEffect) -> Value {
    let revoked: Vec<Value> = effect
        .revoked_devices
        .iter()
        .map(|(d, dropped)| json!({"device": d.to_string(), "records_dropped": dropped}))
        .collect();
    let added: Vec<Value> = effect
        .added_devices
        .iter()
        .map(|(c, n)| json!({"device": c.name, "records_indexed": n}))
        .collect();
    json!({
        "event": "bulletin",
        "version": version,
        "label": label,
        "revoked_tickets": effect.revoked_tickets,
        "pauses": effect.pauses,
        "rules": effect.rules,
        "rejudged": effect.rejudged,
        "revoked_devices": revoked,
        "added_devices": added,
    })
}
