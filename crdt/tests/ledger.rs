//! Ledger behaviour: recording, remote apply, rejection of bad records, sync, save/load, and the
//! merge property: any order, any duplication, any partition schedule, same result.

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ReadDoc, ROOT};
use ed25519_dalek::SigningKey;
use gatemesh_crdt::record::bucket_of;
use gatemesh_crdt::{
    Direction, Draft, EntryRule, Hlc, Ledger, LocalDevice, Roster, RosterDevice, ScanBody,
    ScanRecord, SyncPeer, Verdict,
};
use proptest::prelude::*;
use std::collections::HashMap;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn roster(n: u8) -> Roster {
    let mut r = Roster::default();
    for i in 1..=n {
        r.insert(RosterDevice {
            key: key(i).verifying_key(),
            name: format!("d{i}"),
            revoked_from: None,
        });
    }
    r
}

fn rules() -> HashMap<String, EntryRule> {
    HashMap::from([
        (
            "general".to_string(),
            EntryRule {
                max_entries: 1,
                reentry: false,
            },
        ),
        (
            "vip".to_string(),
            EntryRule {
                max_entries: 1,
                reentry: true,
            },
        ),
    ])
}

fn node(device: u8, devices: u8) -> Ledger {
    let local = LocalDevice {
        key: key(device),
        session: [device; 8],
    };
    Ledger::open(
        &Ledger::genesis(),
        [],
        roster(devices),
        rules(),
        Some(local),
    )
    .unwrap()
}

fn admit(ticket: &str, direction: Direction) -> Draft {
    Draft {
        ticket_id: ticket.into(),
        tier: "general".into(),
        gate: "north".into(),
        zone: "main".into(),
        direction,
        verdict: Verdict::Admit,
        reason: "ok".into(),
        prev: vec![],
        annuls: None,
    }
}

/// A full picture of a replica for comparisons.
fn picture(l: &Ledger, tickets: &[String]) -> (Vec<Vec<String>>, String) {
    let records = tickets
        .iter()
        .map(|t| {
            l.index()
                .records(t)
                .iter()
                .map(|r| r.scan_id.clone())
                .collect()
        })
        .collect();
    (
        records,
        serde_json::to_string(&l.index().conflicts()).unwrap(),
    )
}

#[test]
fn genesis_is_deterministic() {
    assert_eq!(Ledger::genesis(), Ledger::genesis());
}

#[test]
fn remote_admit_is_seen_and_second_admit_is_a_double_entry() {
    let (mut a, mut b) = (node(1, 2), node(2, 2));
    let (_, change) = a.record(1_000, admit("T1", Direction::In)).unwrap();
    let applied = b
        .apply_changes(1_001, std::slice::from_ref(&change))
        .unwrap();
    assert_eq!(applied.records.len(), 1);
    assert_eq!(applied.persist.len(), 1);
    assert_eq!(b.index().replay("T1", "general").credits, 0);
    // Same change again: nothing new to persist or index.
    let again = b.apply_changes(1_002, &[change]).unwrap();
    assert!(again.records.is_empty() && again.persist.is_empty());
    // b did not look and admitted anyway (as during a split): a double entry everywhere.
    let (_, c2) = b.record(1_003, admit("T1", Direction::In)).unwrap();
    a.apply_changes(1_004, &[c2]).unwrap();
    for l in [&a, &b] {
        let conflicts = l.index().conflicts();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].double_entries.len(), 1);
        assert_eq!(
            conflicts[0].entries[0].device,
            a.local_device().unwrap().to_string()
        );
    }
}

#[test]
fn a_reconciled_offline_scan_posted_to_two_nodes_counts_once() {
    let (mut a, mut b) = (node(1, 2), node(2, 2));
    let origin = "handheld-7@1700000000000".to_string();
    let (_, ca) = a
        .record_reconciled(2_000, admit("T9", Direction::In), origin.clone(), 1_000)
        .unwrap();
    let (rb, cb) = b
        .record_reconciled(2_001, admit("T9", Direction::In), origin.clone(), 1_000)
        .unwrap();
    assert_eq!(rb.body.wall_ms, 1_000);
    a.apply_changes(2_002, &[cb]).unwrap();
    b.apply_changes(2_003, &[ca]).unwrap();
    for l in [&a, &b] {
        assert!(l.index().has_origin("T9", &origin));
        assert_eq!(l.index().records("T9").len(), 2);
        let r = l.index().replay("T9", "general");
        assert_eq!(r.entries.len(), 1, "one entry, not two");
        assert!(r.double_entries.is_empty());
        assert!(l.index().conflicts().is_empty());
    }
    // A different offline scan of the same ticket is a second entry: a double entry.
    let (_, c) = a
        .record_reconciled(
            2_004,
            admit("T9", Direction::In),
            "handheld-8@1".into(),
            1_500,
        )
        .unwrap();
    b.apply_changes(2_005, &[c]).unwrap();
    assert_eq!(b.index().replay("T9", "general").double_entries.len(), 1);
}

#[test]
fn reentry_needs_an_out_and_annul_gives_the_entry_back() {
    let mut a = node(1, 1);
    let vip = |d| Draft {
        tier: "vip".into(),
        ..admit("V", d)
    };
    a.record(1, vip(Direction::In)).unwrap();
    assert_eq!(a.index().replay("V", "vip").credits, 0);
    a.record(2, vip(Direction::Out)).unwrap();
    let r = a.index().replay("V", "vip");
    assert_eq!((r.credits, r.inside), (1, false));
    let (rec, _) = a.record(3, admit("G", Direction::In)).unwrap();
    let annul = Draft {
        verdict: Verdict::Annul,
        reason: "annul".into(),
        annuls: Some(rec.scan_id()),
        ..admit("G", Direction::In)
    };
    a.record(4, annul).unwrap();
    assert_eq!(a.index().replay("G", "general").credits, 1);
}

/// Put raw bytes into a bucket of a fresh document built on genesis, as a rogue writer would.
fn forged_change(bucket_key: &str, key: &str, value: Vec<u8>) -> Vec<u8> {
    let actor = ActorId::from(gatemesh_crdt::record::bucket_of(key).to_be_bytes());
    let mut doc = Automerge::load(&Ledger::genesis())
        .unwrap()
        .with_actor(actor);
    let (_, bucket) = doc.get(ROOT, bucket_key).unwrap().unwrap();
    let mut tx = doc.transaction();
    tx.put(&bucket, key, value).unwrap();
    tx.commit();
    doc.get_last_local_change().unwrap().raw_bytes().to_vec()
}

fn body_from(device: &SigningKey, ticket: &str) -> ScanBody {
    ScanBody {
        version: 1,
        device: gatemesh_crdt::DeviceId::from_public_key(&device.verifying_key()),
        counter: 0,
        ticket_id: ticket.into(),
        tier: "general".into(),
        gate: "north".into(),
        zone: "main".into(),
        direction: Direction::In,
        verdict: Verdict::Admit,
        reason: "ok".into(),
        hlc: Hlc::new(5, 0).0,
        wall_ms: 5,
        prev: vec![],
        annuls: None,
        origin: None,
    }
}

#[test]
fn bad_signature_unknown_device_and_misplaced_records_are_ignored_and_counted() {
    let mut b = node(2, 2);
    let bucket = |t: &str| format!("{:02x}", bucket_of(t));
    // Claims to be device 1, signed by device 3's key.
    let forged = ScanRecord::sign(body_from(&key(1), "T"), &key(3)).unwrap();
    // Device 4 is not enrolled.
    let unknown = ScanRecord::sign(body_from(&key(4), "U"), &key(4)).unwrap();
    // Valid record, wrong key (moved to another scan id).
    let moved = ScanRecord::sign(body_from(&key(1), "M"), &key(1)).unwrap();
    let changes = vec![
        forged_change(&bucket("T"), &forged.scan_id(), forged.bytes.clone()),
        forged_change(&bucket("U"), &unknown.scan_id(), unknown.bytes.clone()),
        forged_change(&bucket("M"), "0000beef-1", moved.bytes.clone()),
        forged_change(&bucket("X"), "junk", vec![1, 2, 3]),
    ];
    for c in changes {
        let applied = b.apply_changes(10, &[c]).unwrap();
        assert_eq!((applied.records.len(), applied.rejected), (0, 1));
    }
    let s = b.stats();
    assert_eq!(
        (
            s.rejected_bad_signature,
            s.rejected_unknown_device,
            s.rejected_malformed
        ),
        (1, 1, 2)
    );
    assert!(b.index().is_empty());
}

#[test]
fn garbage_change_and_sync_bytes_are_errors_not_panics() {
    let mut b = node(2, 2);
    assert!(b
        .apply_changes(1, &[vec![0x85, 0x6f, 0x4a, 0x83, 1, 2]])
        .is_err());
    assert!(b.apply_changes(1, &[vec![0; 70 * 1024]]).is_err());
    let mut peer = SyncPeer::new();
    assert!(b.receive_sync(&mut peer, &[0x42, 0, 1], 1).is_err());
    assert!(b.index().is_empty());
}

#[test]
fn revoked_device_records_after_revocation_leave_the_index() {
    let (mut a, mut b) = (node(1, 2), node(2, 2));
    let (_, c1) = a.record(1_000, admit("A", Direction::In)).unwrap();
    let (r2, c2) = a.record(2_000, admit("B", Direction::In)).unwrap();
    b.apply_changes(2_001, &[c1, c2]).unwrap();
    let dropped = b.revoke_device(a.local_device().unwrap(), Hlc(r2.body.hlc));
    assert_eq!(dropped, 1);
    assert_eq!(b.index().records("A").len(), 1);
    assert!(b.index().records("B").is_empty());
    let (_, c3) = a.record(3_000, admit("C", Direction::In)).unwrap();
    assert_eq!(b.apply_changes(3_001, &[c3]).unwrap().rejected, 1);
}

#[test]
fn sync_protocol_brings_a_new_replica_up_to_date_and_save_load_keeps_everything() {
    let (mut a, mut b) = (node(1, 2), node(2, 2));
    for i in 0..50 {
        a.record(i, admit(&format!("T{i}"), Direction::In)).unwrap();
    }
    let (mut pa, mut pb) = (SyncPeer::new(), SyncPeer::new());
    let mut persisted = Vec::new();
    for _round in 0..10 {
        let m1 = a.generate_sync(&mut pa);
        if let Some(m) = &m1 {
            persisted.extend(b.receive_sync(&mut pb, m, 100).unwrap().persist);
        }
        let m2 = b.generate_sync(&mut pb);
        if let Some(m) = &m2 {
            a.receive_sync(&mut pa, m, 100).unwrap();
        }
        if m1.is_none() && m2.is_none() {
            break;
        }
    }
    assert_eq!(a.heads(), b.heads());
    assert_eq!(b.index().len(), 50);
    // Restart b from genesis + what it persisted: same state, counter continues after its own.
    let reopened = Ledger::open(
        &Ledger::genesis(),
        persisted.iter().map(Vec::as_slice),
        roster(2),
        rules(),
        Some(LocalDevice {
            key: key(2),
            session: [7; 8],
        }),
    )
    .unwrap();
    assert_eq!(reopened.heads(), b.heads());
    assert_eq!(reopened.index().len(), 50);
    // Snapshot load of a: its own counter continues, no scan id reused.
    let mut a2 = Ledger::open(
        &a.save(),
        [],
        roster(2),
        rules(),
        Some(LocalDevice {
            key: key(1),
            session: [8; 8],
        }),
    )
    .unwrap();
    let (rec, _) = a2.record(200, admit("NEW", Direction::In)).unwrap();
    assert_eq!(rec.body.counter, 50);
    assert!(Hlc(rec.body.hlc) > Hlc::new(49, 0));
}

/// A scenario: each device records admits on a few shared tickets (screenshots), producing
/// changes; then the changes are delivered to every replica in a drawn order, with duplicates
/// and in drawn batches.
fn run_scenario(
    scans: &[(u8, u8, bool)],
    order_seed: &[usize],
    batch: usize,
) -> Vec<(Vec<Vec<String>>, String)> {
    const DEVICES: u8 = 3;
    let mut nodes: Vec<Ledger> = (1..=DEVICES).map(|d| node(d, DEVICES)).collect();
    let mut changes = Vec::new();
    for (i, &(dev, ticket, out)) in scans.iter().enumerate() {
        let dir = if out { Direction::Out } else { Direction::In };
        let draft = Draft {
            tier: if ticket % 2 == 0 {
                "general".into()
            } else {
                "vip".into()
            },
            ..admit(&format!("T{ticket}"), dir)
        };
        let (_, c) = nodes[usize::from(dev % DEVICES)]
            .record(i as u64 * 10, draft)
            .unwrap();
        changes.push(c);
    }
    let tickets: Vec<String> = (0..8).map(|t| format!("T{t}")).collect();
    let mut out = Vec::new();
    for (n, node) in nodes.iter_mut().enumerate() {
        // A drawn permutation with duplicates, different per replica.
        let mut delivery: Vec<Vec<u8>> = order_seed
            .iter()
            .map(|&s| changes[(s + n * 7) % changes.len()].clone())
            .collect();
        delivery.extend(changes.iter().cloned()); // everything arrives in the end
        for chunk in delivery.chunks(batch.max(1)) {
            node.apply_changes(10_000, chunk).unwrap();
        }
        out.push(picture(node, &tickets));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn replicas_converge_whatever_the_delivery(
        scans in prop::collection::vec((0u8..3, 0u8..8, prop::bool::weighted(0.2)), 1..40),
        order in prop::collection::vec(0usize..1000, 0..80),
        batch in 1usize..8,
    ) {
        let pictures = run_scenario(&scans, &order, batch);
        for p in &pictures[1..] {
            prop_assert_eq!(p, &pictures[0]);
        }
    }
}

#[test]
fn check_change_accepts_enrolled_authors_and_refuses_garbage_and_strangers() {
    use gatemesh_crdt::ChangeRejection;
    let (mut a, mut b) = (node(1, 2), node(2, 2));
    let (_, change) = a.record(1_000, admit("T1", Direction::In)).unwrap();
    assert_eq!(b.check_change(&change), Ok(()));
    let mut cut = change.clone();
    cut.truncate(change.len() - 3);
    assert_eq!(b.check_change(&cut), Err(ChangeRejection::Undecodable));
    assert_eq!(
        b.check_change(b"garbage"),
        Err(ChangeRejection::Undecodable)
    );
    let mut stranger = node(5, 5);
    let (_, c) = stranger.record(1_000, admit("T9", Direction::In)).unwrap();
    assert_eq!(b.check_change(&c), Err(ChangeRejection::UnknownDevice));
    b.revoke_device(a.local_device().unwrap(), Hlc(0));
    assert_eq!(b.check_change(&change), Err(ChangeRejection::RevokedDevice));
}

#[test]
fn an_untrusted_document_keeps_only_records_that_verify() {
    let mut a = node(1, 2);
    let mut rogue = node(9, 9); // a device the event never enrolled (the roster has 1 and 2)
    a.record(1_000, admit("T1", Direction::In)).unwrap();
    a.record(1_001, admit("T2", Direction::In)).unwrap();
    let (_, forged) = rogue.record(1_002, admit("T3", Direction::In)).unwrap();
    a.apply_changes(1_003, &[forged]).unwrap();
    let bytes = a.save();
    for threads in [1, 2, 3] {
        let l = Ledger::open_untrusted(&bytes, roster(2), rules(), threads).unwrap();
        assert_eq!(l.index().len(), 2);
        assert_eq!(l.stats().rejected_unknown_device, 1);
        assert_eq!(l.stats().rejected(), 1);
        assert!(l.index().records("T3").is_empty());
        assert_eq!(l.heads(), a.heads());
    }
    assert!(Ledger::open_untrusted(&bytes[..bytes.len() / 2], roster(2), rules(), 2).is_err());
}

#[test]
fn batch_verification_finds_the_one_bad_signature() {
    let records: Vec<ScanRecord> = (0..130)
        .map(|i| ScanRecord::sign(body_from(&key(1), &format!("T{i}")), &key(1)).unwrap())
        .collect();
    let mut bad = records.clone();
    let last = bad[77].bytes.len() - 1;
    bad[77].bytes[last] ^= 1;
    let wrong_key = key(2).verifying_key();
    for (set, keys, want_bad) in [
        (&records, None, vec![]),
        (&bad, None, vec![77]),
        (&records, Some(5), vec![5]),
    ] {
        let items: Vec<_> = set
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let k = if Some(i) == keys {
                    wrong_key
                } else {
                    key(1).verifying_key()
                };
                (r, k)
            })
            .collect();
        let ok = gatemesh_crdt::record::verify_many(&items);
        let failed: Vec<usize> = ok
            .iter()
            .enumerate()
            .filter(|(_, ok)| !**ok)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(failed, want_bad);
    }
}
