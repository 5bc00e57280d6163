//! Ledger behaviour: recording, remote admission, double entries, re-entry, annuls, offline
//! origins, sync in bounded pieces, and a reopen from the store.

mod common;

use common::*;
use gatemesh_crdt::ledger::sync::{SyncMessage, BATCH};
use gatemesh_crdt::{Direction, Draft, Single, Verdict};

#[test]
fn a_remote_admit_is_seen_and_a_second_admit_is_a_double_entry_everywhere() {
    let (mut a, mut b) = (Replica::new(1, 2), Replica::new(2, 2));
    let (_, change) = a.record(T0, admit("T1", Direction::In));
    let got = b.admit(T0 + 1, 1, std::slice::from_ref(&change));
    assert_eq!((got.records.len(), got.persist.len()), (1, 1));
    assert_eq!(got.of_message(), Single::Admitted);
    assert_eq!(b.ledger.index().replay("T1", "general").credits, 0);
    // The same change again: nothing new to store or index.
    let again = b.admit(T0 + 2, 1, &[change]);
    assert_eq!(again.of_message(), Single::Duplicate);
    assert!(again.records.is_empty() && again.persist.is_empty());
    // b did not look and admitted anyway (as during a split): a double entry everywhere.
    let (_, c2) = b.record(T0 + 3, admit("T1", Direction::In));
    a.admit(T0 + 4, 2, &[c2]);
    for l in [&a.ledger, &b.ledger] {
        let conflicts = l.index().conflicts();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].double_entries.len(), 1);
        assert_eq!(conflicts[0].entries[0].device, device(1).to_string());
    }
}

#[test]
fn a_reconciled_offline_scan_posted_to_two_nodes_counts_once() {
    let (mut a, mut b) = (Replica::new(1, 2), Replica::new(2, 2));
    let origin = "handheld-7@1780000000000".to_string();
    let offline = |o: &str| Draft {
        origin: Some(o.to_string()),
        wall_ms: Some(T0 - 1_000),
        ..admit("T9", Direction::In)
    };
    let (_, ca) = a.record(T0, offline(&origin));
    let (rb, cb) = b.record(T0 + 1, offline(&origin));
    assert_eq!(rb.body.wall_ms, T0 - 1_000);
    a.admit(T0 + 2, 2, &[cb]);
    b.admit(T0 + 3, 1, &[ca]);
    for l in [&a.ledger, &b.ledger] {
        assert!(l.index().has_origin("T9", &origin));
        assert_eq!(l.index().records("T9").len(), 2);
        let r = l.index().replay("T9", "general");
        assert_eq!(r.entries.len(), 1, "one entry, not two");
        assert!(r.double_entries.is_empty() && l.index().conflicts().is_empty());
    }
    // A different offline scan of the same ticket is a second entry: a double entry.
    let (_, c) = a.record(T0 + 4, offline("handheld-8@1780000000001"));
    b.admit(T0 + 5, 1, &[c]);
    assert_eq!(
        b.ledger
            .index()
            .replay("T9", "general")
            .double_entries
            .len(),
        1
    );
}

#[test]
fn reentry_needs_an_out_and_an_annul_gives_the_entry_back() {
    let mut a = Replica::new(1, 1);
    let vip = |d| Draft {
        tier: "vip".into(),
        ..admit("V", d)
    };
    a.record(T0, vip(Direction::In));
    assert_eq!(a.ledger.index().replay("V", "vip").credits, 0);
    a.record(T0 + 1, vip(Direction::Out));
    let r = a.ledger.index().replay("V", "vip");
    assert_eq!((r.credits, r.inside), (1, false));
    let (rec, _) = a.record(T0 + 2, admit("G", Direction::In));
    let annul = Draft {
        verdict: Verdict::Annul,
        reason: "annul".into(),
        annuls: Some(rec.scan_id()),
        ..admit("G", Direction::In)
    };
    a.record(T0 + 3, annul);
    assert_eq!(a.ledger.index().replay("G", "general").credits, 1);
    assert_eq!(a.reopen().picture(), a.picture());
}

#[test]
fn a_gap_larger_than_one_message_is_repaired_in_bounded_messages() {
    let (mut a, mut b) = (Replica::new(1, 2), Replica::new(2, 2));
    let n = BATCH.changes * 2 + 10;
    for i in 0..n {
        a.record(T0 + i as u64, admit(&format!("T{i}"), Direction::In));
    }
    let mut messages = 0;
    let mut theirs = None;
    loop {
        // b asks with its tips; a answers with a bounded batch.
        let ask = SyncMessage::from_ledger(&b.ledger, theirs.as_deref());
        let answer = SyncMessage::from_ledger(&a.ledger, Some(&ask.tips));
        let bytes = answer.encode();
        assert!(bytes.len() <= gatemesh_crdt::ledger::sync::SYNC_MESSAGE_BYTES_MAX);
        let answer = SyncMessage::decode(&bytes).unwrap();
        assert!(answer.changes.len() <= BATCH.changes);
        b.admit(T0 + n as u64, 1, &answer.changes);
        theirs = Some(answer.tips.clone());
        messages += 1;
        if !answer.more {
            break;
        }
        assert!(messages < 10, "the repair must end");
    }
    assert_eq!(messages, 3);
    assert_eq!(b.ledger.index().len(), n as u64);
    assert_eq!(b.reopen().picture(), a.picture());
}

#[test]
fn only_one_undo_per_ticket_counts_on_every_replica() {
    let mut a = Replica::new(1, 2);
    let mut b = Replica::new(2, 2);
    let undo = |scan_id: String| Draft {
        verdict: Verdict::Annul,
        reason: "annul".into(),
        annuls: Some(scan_id),
        ..admit("G", Direction::In)
    };
    // A stolen scanner loops admit, undo, admit, undo: the second undo is not honoured.
    let mut changes = Vec::new();
    for t in 0..2u64 {
        let (rec, c1) = a.record(T0 + 10 * t, admit("G", Direction::In));
        let (_, c2) = a.record(T0 + 10 * t + 1, undo(rec.scan_id()));
        changes.extend([c1, c2]);
    }
    let (_, c3) = a.record(T0 + 30, admit("G", Direction::In));
    changes.push(c3);
    b.admit(T0 + 40, 1, &changes);
    for r in [&a, &b, &a.reopen()] {
        let replay = r.ledger.index().replay("G", "general");
        assert_eq!(replay.entries.len(), 1, "the second admit counts");
        assert_eq!(
            replay.double_entries.len(),
            1,
            "the third is a double entry"
        );
    }
}

#[test]
fn a_record_claiming_another_devices_hand_check_in_is_refused_and_never_merges() {
    let mut a = Replica::new(1, 2);
    let mine = format!("manual:{}@{}", device(1), T0);
    let theirs = format!("manual:{}@{}", device(2), T0);
    let hand = |origin: &str| Draft {
        origin: Some(origin.to_string()),
        ..admit("H", Direction::In)
    };
    assert!(
        a.ledger.record(T0, hand(&theirs)).is_err(),
        "names another device"
    );
    assert!(a.ledger.record(T0, hand("manual:zz")).is_err());
    a.record(T0, hand(&mine));
    // The same origin again (a copy) is a second entry, so a double entry, not merged away.
    a.record(T0 + 10, hand(&mine));
    let replay = a.ledger.index().replay("H", "general");
    assert_eq!((replay.entries.len(), replay.double_entries.len()), (1, 1));
}
