//! The durable store: what was appended comes back after a reopen, before and after a snapshot,
//! and a ledger rebuilt from it is the same ledger.

use ed25519_dalek::SigningKey;
use gatemesh_crdt::{
    Direction, Draft, EntryRule, Ledger, LocalDevice, Roster, RosterDevice, Verdict,
};
use gatemesh_node::store::Store;
use std::collections::HashMap;

fn ledger(stored: Option<&gatemesh_node::store::Stored>) -> Ledger {
    let key = SigningKey::from_bytes(&[1; 32]);
    let mut roster = Roster::default();
    roster.insert(RosterDevice {
        key: key.verifying_key(),
        name: "a".into(),
        revoked_from: None,
    });
    let rules = HashMap::from([("general".to_string(), EntryRule::default())]);
    let genesis = Ledger::genesis();
    let base = stored
        .and_then(|s| s.snapshot.as_deref())
        .unwrap_or(&genesis);
    let log = stored
        .map(|s| s.log.iter().map(Vec::as_slice).collect::<Vec<_>>())
        .unwrap_or_default();
    Ledger::open(
        base,
        log,
        roster,
        rules,
        Some(LocalDevice {
            key,
            session: rand_session(),
        }),
    )
    .unwrap()
}

fn rand_session() -> [u8; 8] {
    std::process::id()
        .to_be_bytes()
        .repeat(2)
        .try_into()
        .unwrap()
}

fn admit(n: usize) -> Draft {
    Draft {
        ticket_id: format!("T{n}"),
        tier: "general".into(),
        gate: "north".into(),
        zone: "main".into(),
        direction: Direction::In,
        verdict: Verdict::Admit,
        reason: "ok".into(),
        prev: vec![],
        annuls: None,
    }
}

#[test]
fn reopen_rebuilds_the_identical_ledger_from_snapshot_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut l = ledger(None);
    for i in 0..30 {
        let (_, c) = l.record(i, admit(i as usize)).unwrap();
        store.append(&[c]).unwrap();
        if i == 14 {
            store.snapshot(&l.save()).unwrap();
            assert_eq!(store.log_len(), 0, "snapshot drops the log it covers");
        }
    }
    assert_eq!(store.log_len(), 15);
    let heads = l.heads();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let stored = store.read().unwrap();
    assert!(stored.snapshot.is_some());
    assert_eq!(stored.log.len(), 15);
    let mut back = ledger(Some(&stored));
    assert_eq!(back.heads(), heads);
    assert_eq!(back.index().len(), 30);
    for i in 0..30 {
        assert_eq!(back.index().replay(&format!("T{i}"), "general").credits, 0);
    }
    // The restarted device continues its counter: no scan id is reused.
    let (rec, _) = back.record(100, admit(99)).unwrap();
    assert_eq!(rec.body.counter, 30);
}

#[test]
fn oversized_blob_is_refused_and_nothing_stored_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.append(&[vec![1, 2, 3]]).unwrap();
    let big = vec![0u8; gatemesh_node::store::BLOB_BYTES_MAX + 1];
    assert!(store.append(&[big]).is_err());
    assert_eq!(store.read().unwrap().log, vec![vec![1, 2, 3]]);
}
