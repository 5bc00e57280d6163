//! What each fuzz target does with the bytes it is given, the event it does it in, and the seed
//! corpus. `fuzz/` (cargo-fuzz, libFuzzer) calls [`run`] from one binary per target; the tests
//! here run every committed corpus file and every crasher kept as a regression through the same
//! function, so a crash found once stays fixed without the fuzzer installed.
//!
//! Every target takes bytes from outside the way a node does, through the pure core, and checks
//! more than "no panic" where it can: a record the gate writes is admitted by its peers, a
//! change is read the same on arrival and from the store, and a restart from what admission
//! persisted takes back exactly that and nothing a damaged store adds.

pub mod world;

pub use world::{seeds, NOW};

use gatemesh_crdt::credential;
use gatemesh_crdt::gate::bulletin::Bulletin;
use gatemesh_crdt::gate::offline::ReconcileRequest;
use gatemesh_crdt::gate::ScanRequest;
use gatemesh_crdt::json;
use gatemesh_crdt::ledger::export;
use gatemesh_crdt::protocol::{Input, Output, Topic, KIND_HELLO, KIND_ROOM, KIND_SYNC};
use gatemesh_crdt::record::change;
use gatemesh_crdt::{Ledger, ScanRecord, SyncMessage};
use std::collections::HashSet;
use world::{device_id, World};

/// The fuzz targets, by name.
pub const TARGETS: [&str; 10] = [
    "credential",
    "record",
    "change",
    "sync",
    "bulletin",
    "export",
    "reconcile",
    "json",
    "search",
    "pass",
];

/// Run one target on one input.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "credential" => credential(data),
        "record" => record(data),
        "change" => changes(data),
        "sync" => sync(data),
        "bulletin" => bulletin(data),
        "export" => export_file(data),
        "reconcile" => reconcile(data),
        "json" => json_doc(data),
        "search" => search(data),
        "pass" => pass(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// Bytes as pieces: each a little-endian u16 length, then that many bytes (the last piece takes
/// what is left).
pub fn pieces(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let body = &rest[2..];
        let take = len.min(body.len());
        out.push(body[..take].to_vec());
        rest = &body[take..];
    }
    out
}

/// The inverse of [`pieces`].
pub fn framed(pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        out.extend_from_slice(&(p.len() as u16).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// A scanned code: read, decided and recorded by the gate; whatever the code, the record it
/// writes is one its peers admit.
fn credential(data: &[u8]) {
    let w = World::new();
    let _ = credential::read(data, w.readers());
    let mut gate = w.gate(1);
    let outcome = gate.scan(
        NOW,
        ScanRequest {
            code: data,
            gate: "north",
            direction: None,
            manual: false,
            origin: None,
        },
    );
    if let Ok(Some(change)) = outcome.map(|o| o.change) {
        let mut peer = w.ledger(2);
        let got = peer.admit(NOW, 1, &[change]);
        assert_eq!(
            got.persist.len(),
            1,
            "a peer refused a gate's record: {got:?}"
        );
    }
}

/// A record's bytes: decoded the same whole or as a prefix, and stable when re-read.
fn record(data: &[u8]) {
    if let Ok(r) = ScanRecord::decode(data) {
        assert_eq!(ScanRecord::decode(&r.bytes).as_ref(), Ok(&r));
        assert_eq!(ScanRecord::decode_prefix(data).as_ref(), Ok(&r));
    }
    if let Ok(r) = ScanRecord::decode_prefix(data) {
        assert_eq!(ScanRecord::decode(&r.bytes).as_ref(), Ok(&r));
    }
}

/// Changes as a peer sends them and as a damaged store holds them.
fn changes(data: &[u8]) {
    gossip_bundle(data);
    if let Ok(c) = change::read(data) {
        let stored = change::read_stored(data).expect("a canonical change reads from the store");
        assert_eq!((stored.record, stored.hash), (c.record, c.hash));
    }
    let blobs = pieces(data);
    for b in &blobs {
        let _ = change::read(b);
        let _ = change::read_stored(b);
    }
    let w = World::new();
    let mut live = w.ledger(1);
    let admitted = live.admit(NOW, 2, &blobs);
    assert_restart_takes_back(&w, &live, &admitted.persist);
    // The same bytes handed to a restart as a store: never more than admission takes.
    let mut restored = w.ledger(1);
    restored.restore(NOW, blobs.iter().map(Vec::as_slice));
    let admitted: HashSet<&[u8]> = live.changes().collect();
    for c in restored.changes() {
        assert!(
            admitted.contains(c),
            "a restart took a change admission refused"
        );
    }
}

/// A ledger gossip message: a bundle decodes only in its one encoding, and its changes go
/// through admission like any other.
fn gossip_bundle(data: &[u8]) {
    use gatemesh_crdt::protocol::bundle;
    let Ok(parts) = bundle::decode(data) else {
        return;
    };
    let parts: Vec<Vec<u8>> = parts.into_iter().map(<[u8]>::to_vec).collect();
    if parts.len() > 1 {
        assert!(parts.len() <= bundle::BUNDLE_CHANGES_MAX);
        assert_eq!(bundle::encode(&parts), data, "a bundle has one encoding");
        let w = World::new();
        let mut live = w.ledger(1);
        let admitted = live.admit(NOW, 2, &parts);
        assert_restart_takes_back(&w, &live, &admitted.persist);
    }
}

/// A ledger reopened from what it persisted holds what the running ledger held.
fn assert_restart_takes_back(w: &World, live: &Ledger, persisted: &[Vec<u8>]) {
    let mut back = w.ledger(1);
    let refused = back.restore(NOW, persisted.iter().map(Vec::as_slice));
    assert_eq!(refused, 0, "a restart refused what admission persisted");
    assert_eq!(back.summary(), live.summary());
    assert_eq!(back.index().len(), live.index().len());
    assert_eq!(back.index().rooms("vip"), live.index().rooms("vip"));
    let audit =
        |l: &Ledger| -> Vec<_> { l.index().actions().latest(usize::MAX).cloned().collect() };
    assert_eq!(
        audit(&back),
        audit(live),
        "a restart holds the same supervisors' actions"
    );
    let pauses = |l: &Ledger| {
        let roster = l.roster();
        (l.index().actions()).gate_pauses(NOW + 1_500, |d| roster.is_supervisor(d))
    };
    assert_eq!(pauses(&back), pauses(live));
}

/// A message from an enrolled peer: first byte chooses sync request, sync answer, ledger gossip,
/// control gossip, an ask for room or the answer to one; the rest is the message.
fn sync(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let _ = SyncMessage::decode(rest);
    let w = World::new();
    let mut replica = w.replica(1);
    let from = device_id(2);
    // An enrolled peer on the same event configuration (its hello first, as a node sends it).
    let fingerprint = replica.gate().config().fingerprint();
    drive(
        &mut replica,
        Input::SyncRequest {
            from,
            token: 6,
            data: [&[KIND_HELLO][..], &fingerprint].concat(),
        },
    );
    let input = match kind % 6 {
        0 => Input::SyncRequest {
            from,
            token: 7,
            data: [&[KIND_SYNC][..], rest].concat(),
        },
        1 => Input::SyncAnswer {
            from,
            data: rest.to_vec(),
        },
        2 => Input::Gossip {
            from,
            token: 7,
            topic: Topic::Ledger,
            data: rest.to_vec(),
        },
        3 => Input::Gossip {
            from,
            token: 7,
            topic: Topic::Control,
            data: rest.to_vec(),
        },
        4 => Input::SyncRequest {
            from,
            token: 7,
            data: [&[KIND_ROOM][..], rest].concat(),
        },
        _ => Input::RoomAnswer {
            from,
            data: rest.to_vec(),
        },
    };
    let persisted = drive(&mut replica, input);
    let live = replica.gate().ledger();
    assert_restart_takes_back(&w, live, &persisted);
}

/// Hand `input` to the replica and complete every write it asks for; the changes written.
fn drive(replica: &mut gatemesh_crdt::Replica, input: Input) -> Vec<Vec<u8>> {
    let mut written = Vec::new();
    let mut queue = vec![input];
    while let Some(input) = queue.pop() {
        for out in replica.handle(NOW, input) {
            if let Output::Persist { id, changes, .. } = out {
                written.extend(changes);
                queue.push(Input::Persisted { upto: id });
            }
        }
    }
    written
}

/// A bulletin: read alone, and handed over by a peer. A genuine one reads back the same from
/// its own bytes; taking it twice is taking it once; and it gives the same state whether it
/// comes before or after the seed bulletin (bulletins commute).
fn bulletin(data: &[u8]) {
    let w = World::new();
    if let Ok(b) = Bulletin::from_bytes(data, world::EVENT, &w.organizer_keys()) {
        let again = Bulletin::from_bytes(b.bytes(), world::EVENT, &w.organizer_keys());
        assert_eq!(again.map(|a| a.body).ok(), Some(b.body));
    }
    let take = |replica: &mut gatemesh_crdt::Replica, bytes: &[u8]| {
        drive(
            replica,
            Input::Bulletin {
                id: None,
                from: Some(device_id(2)),
                bytes: bytes.to_vec(),
            },
        )
    };
    let seed = world::bulletin_bytes(&w);
    let mut first = w.replica(1);
    take(&mut first, data);
    let once = picture(&first);
    take(&mut first, data);
    assert_eq!(
        picture(&first),
        once,
        "a bulletin taken twice differs from once"
    );
    take(&mut first, &seed);
    let mut second = w.replica(1);
    take(&mut second, &seed);
    take(&mut second, data);
    assert_eq!(
        picture(&first),
        picture(&second),
        "bulletins do not commute"
    );
}

/// What bulletins change in a replica: its roster (keys, cuts), pauses, revoked tickets,
/// entry rules in force, conflicts and chains held.
fn picture(r: &gatemesh_crdt::Replica) -> String {
    let g = r.gate();
    let mut roster: Vec<String> = (g.ledger().roster().iter())
        .map(|(id, d)| format!("{id}:{}:{:?}:{:?}", d.name, d.key.as_bytes(), d.cut))
        .collect();
    roster.sort();
    let revoked: Vec<&str> = (g.manifest().tickets().iter())
        .map(|t| t.ticket_id.as_str())
        .filter(|t| g.is_revoked(t))
        .collect();
    let mut pauses: Vec<String> = g.pauses().iter().map(|p| format!("{p:?}")).collect();
    pauses.sort();
    let rules: Vec<String> = (g.config().tiers.iter())
        .map(|t| format!("{}:{:?}", t.name, g.ledger().index().rule(&t.name)))
        .collect();
    format!(
        "{roster:?}\n{pauses:?}\n{revoked:?}\n{rules:?}\n{:?}\n{:?}",
        g.ledger().index().conflicts(),
        g.ledger().summary()
    )
}

/// An export file taken through the bridge's reading and the ledger's admission.
fn export_file(data: &[u8]) {
    let Ok((_, ledger_bytes)) = export::read(data, world::EVENT) else {
        return;
    };
    let blobs: Vec<Vec<u8>> = export::chunks(ledger_bytes).map(<[u8]>::to_vec).collect();
    let w = World::new();
    let mut ledger = w.ledger(1);
    let admitted = ledger.admit(NOW, 0, &blobs);
    assert_restart_takes_back(&w, &ledger, &admitted.persist);
}

/// `POST /offline/reconcile`: the body as the HTTP edge reads it, then the replica.
fn reconcile(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<ReconcileRequest>(data) else {
        return;
    };
    let w = World::new();
    let mut replica = w.replica(1);
    let persisted = drive(
        &mut replica,
        Input::Reconcile {
            id: 1,
            request,
            by: if data.len().is_multiple_of(2) {
                gatemesh_crdt::protocol::Reconciler::Admin
            } else {
                gatemesh_crdt::protocol::Reconciler::Phone {
                    device: "h1".into(),
                    since_ms: 0,
                }
            },
        },
    );
    assert_restart_takes_back(&w, replica.gate().ledger(), &persisted);
}

/// A phone's pairing pass, as a bearer token every node checks: any text is refused with its
/// code or is a pass this event's organizer or one of its scanners signed, for this event,
/// within its bounded validity, with a device id a reconcile may carry.
fn pass(data: &[u8]) {
    use gatemesh_crdt::event::pass;
    let text = String::from_utf8_lossy(data);
    let w = World::new();
    let check = w.gate(1).pass_check();
    match check.check(&text, NOW) {
        Ok(body) => {
            assert_eq!(body.event_id, world::EVENT);
            assert!(gatemesh_crdt::event::offline_device_id_ok(&body.device_id));
            assert!(body.until_ms - body.issued_ms <= pass::PASS_VALID_MS_MAX);
            assert!(!check.unpaired.contains(&body.device_id));
        }
        Err(e) => assert!(e.code().starts_with("pass_") || e.code() == "unpaired"),
    }
    let _ = pass::read(&text);
}

/// JSON documents the core reads: the strict reader, into each type it reads.
/// A steward's search box: any text is refused with a code or answered with at most
/// [`gatemesh_crdt::event::search::SEARCH_RESULTS_MAX`] tickets, each holding every query word as a
/// word prefix of its name, order or id.
fn search(data: &[u8]) {
    use gatemesh_crdt::event::search;
    let w = World::new();
    let q = String::from_utf8_lossy(data);
    let Ok(query) = search::parse_query(&q) else {
        return;
    };
    let hits = w.manifest().search(&query);
    assert!(hits.len() <= search::SEARCH_RESULTS_MAX);
    for t in hits {
        let a = &t.attendee;
        let text = [
            a.name.as_deref(),
            a.order.as_deref(),
            Some(t.ticket_id.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let words = search::words(&text);
        for q in &query {
            assert!(
                words.iter().any(|w| w.starts_with(q.as_str())),
                "{q} not in {text}"
            );
        }
    }
}

fn json_doc(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = json::parse(text) else {
        return;
    };
    // What the parser accepts is JSON (a second, well-kept parser agrees).
    assert!(
        serde_json::from_str::<serde_json::Value>(text).is_ok(),
        "accepted what is not JSON: {text:?}"
    );
    let _ = json::from_value::<gatemesh_crdt::event::signed::Signed>(value.clone());
    let _ = json::from_value::<gatemesh_crdt::event::certificate::DeviceCertificate>(value.clone());
    let _ = json::from_value::<gatemesh_crdt::gate::bulletin::BulletinBody>(value.clone());
    let _ = json::from_value::<export::ExportHeader>(value);
}
