//! The durable store: what was appended comes back after a reopen, a ledger rebuilt from it is
//! the same ledger and continues its chain, and a store of the earlier format is refused with a
//! message saying what to do.

use ed25519_dalek::SigningKey;
use gatemesh_crdt::{
    ChainId, Direction, Draft, EntryRule, Ledger, LocalDevice, Roster, RosterDevice, Verdict,
};
use gatemesh_node::store::{Store, StoreError};
use std::collections::HashMap;

const T0: u64 = 1_780_000_000_000;

fn ledger(chain: ChainId) -> Ledger {
    let key = SigningKey::from_bytes(&[1; 32]);
    let mut roster = Roster::default();
    roster.insert(RosterDevice {
        key: key.verifying_key(),
        name: "a".into(),
        cut: None,
        supervisor: true,
    });
    let rules = HashMap::from([("general".to_string(), EntryRule::default())]);
    Ledger::new(
        "store-test",
        roster,
        rules,
        Some(LocalDevice { key, chain }),
    )
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
        seen: vec![],
        annuls: None,
        origin: None,
        wall_ms: None,
    }
}

#[test]
fn reopen_rebuilds_the_identical_ledger_and_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let chain = store.chain();
    let mut l = ledger(chain);
    for i in 0..30 {
        let (_, c) = l.record(T0 + i, admit(i as usize)).unwrap();
        store.append(&[c]).unwrap();
    }
    let tips = l.summary();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.chain(),
        chain,
        "the chain id is the store's, for good"
    );
    let mut back = ledger(store.chain());
    let stored: Vec<_> = store.changes().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        back.restore(gatemesh_node::now_ms(), stored.iter().map(|c| c.as_ref())),
        0
    );
    assert_eq!(back.summary(), tips);
    assert_eq!(back.index().len(), 30);
    for i in 0..30 {
        assert_eq!(back.index().replay(&format!("T{i}"), "general").credits, 0);
    }
    // The restarted device continues its chain: no position is written twice.
    let (rec, _) = back.record(T0 + 100, admit(99)).unwrap();
    assert_eq!(rec.body.seq, 31);
    // A fresh store is a fresh chain.
    let other = tempfile::tempdir().unwrap();
    assert_ne!(Store::open(other.path()).unwrap().chain(), chain);
}

#[test]
fn oversized_blob_is_refused_and_nothing_stored_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.append(&[vec![1, 2, 3]]).unwrap();
    let big = vec![0u8; gatemesh_node::store::BLOB_BYTES_MAX + 1];
    assert!(store.append(&[big]).is_err());
    let held: Vec<Vec<u8>> = store.changes().map(|c| c.unwrap()).collect();
    assert_eq!(held, vec![vec![1, 2, 3]]);
}

#[test]
fn fork_proofs_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.save_forks(&[(vec![1], vec![2])]).unwrap();
    drop(store);
    assert_eq!(
        Store::open(dir.path()).unwrap().forks().unwrap(),
        vec![(vec![1], vec![2])]
    );
}

#[test]
fn a_store_of_the_earlier_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("log").unwrap().insert(b"x", b"y").unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::OldFormat(_)));
    assert_eq!(err.code(), "store_old_format");
    assert!(err.to_string().contains("new --data directory"), "{err}");
}

#[test]
fn changes_appended_together_come_back_in_order_across_groups_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let mut b = i.to_be_bytes().to_vec();
            b.resize(100 + (i as usize * 7) % 400, i as u8);
            b
        })
        .collect();
    let mut store = Store::open(dir.path()).unwrap();
    store.append(&blobs[..600]).unwrap();
    store.append_relaxed(&blobs[600..601]).unwrap();
    store.append(&blobs[601..]).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let back: Vec<Vec<u8>> = store.changes().map(Result::unwrap).collect();
    assert_eq!(back, blobs);
}
