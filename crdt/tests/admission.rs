//! The ledger admits only what its author signed (the trust issue's defects 1, 2, 4, 5, 7, 9
//! and forks): after each hostile input, honest replicas agree, every replica reopened from what
//! its store holds still agrees, and every acknowledged admit is present.

mod common;

use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::{ActorId, Change, ChangeHash, ExpandedChange, ScalarValue};
use common::*;
use gatemesh_crdt::ledger::pending::PENDING_PER_PEER_MAX;
use gatemesh_crdt::record::change::{self, build};
use gatemesh_crdt::{
    ChainId, Cut, Direction, Draft, Hlc, Rejection, ScanBody, ScanRecord, Verdict, ANNUL_WINDOW_MS,
};
use std::collections::BTreeMap;

/// A record body of `device`'s chain `chain` at `seq`, linking to `link`.
fn body(device: u8, chain: u32, seq: u32, link: [u8; 32], ticket: &str, t: u64) -> ScanBody {
    ScanBody {
        version: gatemesh_crdt::record::RECORD_VERSION,
        device: common::device(device),
        chain: ChainId(chain),
        seq,
        link,
        ticket_id: ticket.into(),
        tier: "general".into(),
        gate: "north".into(),
        zone: "main".into(),
        direction: Direction::In,
        verdict: Verdict::Admit,
        reason: "ok".into(),
        hlc: Hlc::new(t, 0).0,
        wall_ms: t,
        seen: vec![],
        annuls: None,
        origin: None,
    }
}

fn signed(b: ScanBody, by: u8) -> ScanRecord {
    ScanRecord::sign(b, &key(by)).unwrap()
}

fn canonical(r: &ScanRecord) -> Vec<u8> {
    change::build_bytes(r).0
}

/// A canonical change edited by `edit`: what a rogue writer sends.
fn crafted(r: &ScanRecord, edit: impl FnOnce(&mut ExpandedChange)) -> Vec<u8> {
    let mut e = build(r).decode();
    edit(&mut e);
    Change::from(e).raw_bytes().to_vec()
}

/// Honest replicas a (device 1) and b (device 2) with some admits each, synced.
fn honest_pair() -> (Replica, Replica) {
    let (mut a, mut b) = (Replica::new(1, 3), Replica::new(2, 3));
    for i in 0..3 {
        a.record(T0 + i, admit(&format!("A{i}"), Direction::In));
        b.record(T0 + i, admit(&format!("B{i}"), Direction::In));
    }
    sync(&mut a, &mut b, T0 + 10);
    (a, b)
}

fn assert_agree_and_reopen(nodes: &[&Replica]) {
    let first = nodes[0].picture();
    for n in nodes {
        assert_eq!(n.picture(), first, "replicas disagree");
        assert_eq!(n.reopen().picture(), first, "a reopened replica disagrees");
    }
}

#[test]
fn a_record_signed_by_another_device_is_refused_and_still_refused_after_restart() {
    let (mut a, mut b) = honest_pair();
    // Device 3 (enrolled) signs a record claiming to be device 1's next one.
    let tip = a
        .ledger
        .summary()
        .into_iter()
        .find(|t| t.chain.device == device(1))
        .unwrap();
    let forged = signed(body(1, 1000, tip.seq + 1, tip.hash, "X", T0 + 20), 3);
    let got = b.admit(T0 + 21, 3, &[canonical(&forged)]);
    assert_eq!(got.rejected, vec![Rejection::BadSignature]);
    assert!(got.persist.is_empty());
    assert!(b.ledger.index().records("X").is_empty());
    // The real device 1 goes on writing; its next change is admitted everywhere.
    a.record(T0 + 22, admit("A9", Direction::In));
    sync(&mut a, &mut b, T0 + 23);
    assert_eq!(b.ledger.index().records("A9").len(), 1);
    assert_agree_and_reopen(&[&a, &b]);
}

#[test]
fn a_change_hijacking_another_actors_next_sequence_number_is_refused() {
    let (mut a, mut b) = (Replica::new(1, 3), Replica::new(2, 3));
    let (real, _) = a.record(T0, admit("A0", Direction::In));
    sync(&mut a, &mut b, T0 + 1);
    // The attacker's own signed record, wrapped in a change under device 1's actor with
    // device 1's next sequence number and a dependency nobody has.
    let own = signed(body(3, 7, 1, gatemesh_crdt::anchor(EVENT), "Z", T0 + 2), 3);
    let hijack = crafted(&own, |e| {
        e.actor_id = ActorId::from(real.body.chain_key().actor_bytes().to_vec());
        e.seq = 2;
        e.start_op = 2.try_into().unwrap();
        e.deps = vec![ChangeHash([0xee; 32])];
    });
    // And device 1's own record re-wrapped under the attacker's actor.
    let rewrapped = crafted(&real, |e| e.actor_id = ActorId::from(vec![3u8; 8]));
    for bad in [hijack, rewrapped] {
        let got = b.admit(T0 + 3, 3, &[bad]);
        assert_eq!(got.rejected, vec![Rejection::NotCanonical]);
        assert_eq!(b.ledger.held(), 0, "nothing is held for a refused change");
    }
    a.record(T0 + 4, admit("A1", Direction::In));
    sync(&mut a, &mut b, T0 + 5);
    assert_eq!(b.ledger.index().records("A1").len(), 1);
    assert_agree_and_reopen(&[&a, &b]);
}

#[test]
fn root_writes_deletes_overwrites_and_unknown_objects_are_refused_but_the_rest_of_the_batch_lands()
{
    let (mut a, mut b) = (Replica::new(1, 3), Replica::new(2, 3));
    let (r0, c0) = a.record(T0, admit("A0", Direction::In));
    let (r1, c1) = a.record(T0 + 1, admit("A1", Direction::In));
    let (_, c2) = a.record(T0 + 2, admit("A2", Direction::In));
    let actor = ActorId::from(r0.body.chain_key().actor_bytes().to_vec());
    let root_write = crafted(&r1, |e| {
        e.operations[0].key = Key::Map("00".into());
        e.operations[0].action = OpType::Put(ScalarValue::Int(1));
    });
    let delete = crafted(&r1, |e| {
        e.operations[0].key = Key::Map(r0.scan_id().into());
        e.operations[0].action = OpType::Delete;
        e.operations[0].pred = vec![OpId::new(1, &actor)].into();
    });
    let overwrite = crafted(&r1, |e| {
        e.operations[0].key = Key::Map(r0.scan_id().into());
        e.operations[0].pred = vec![OpId::new(1, &actor)].into();
    });
    let unknown_object = crafted(&r1, |e| {
        e.operations[0].obj = ObjectId::Id(OpId::new(99, &actor));
    });
    let batch = vec![c0, root_write, delete, overwrite, unknown_object, c1, c2];
    let got = b.admit(T0 + 3, 1, &batch);
    assert_eq!(got.rejected.len(), 4);
    assert!(got.rejected.iter().all(|r| *r == Rejection::NotCanonical));
    assert_eq!(
        got.persist.len(),
        3,
        "the honest changes around them are admitted"
    );
    assert_eq!(got.records.len(), 3);
    assert_agree_and_reopen(&[&a, &b]);
}

#[test]
fn annuls_count_only_from_the_admitting_device_within_the_window_on_every_replica() {
    let (mut a, mut b) = (Replica::new(1, 3), Replica::new(2, 3));
    let (x, _) = a.record(T0, admit("X", Direction::In));
    let (y, _) = a.record(T0 + 1, admit("Y", Direction::In));
    let (z, _) = a.record(T0 + 2, admit("Z", Direction::In));
    sync(&mut a, &mut b, T0 + 3);
    let annul = |t: &str, target: &ScanRecord| Draft {
        verdict: Verdict::Annul,
        reason: "annul".into(),
        annuls: Some(target.scan_id()),
        ..admit(t, Direction::In)
    };
    b.record(T0 + 10, annul("X", &x)); // another device: ignored
    a.record(T0 + 2 + ANNUL_WINDOW_MS + 1_000, annul("Y", &y)); // too late: ignored
    a.record(T0 + 2 + ANNUL_WINDOW_MS + 1_001, annul("Z", &z)); // too late as well
    let (w, _) = a.record(T0 + 2 + ANNUL_WINDOW_MS + 2_000, admit("W", Direction::In));
    a.record(T0 + 2 + ANNUL_WINDOW_MS + 3_000, annul("W", &w)); // in time: honoured
    sync(&mut a, &mut b, T0 + 3 * ANNUL_WINDOW_MS);
    for n in [&a, &b] {
        let idx = n.ledger.index();
        for t in ["X", "Y", "Z"] {
            assert_eq!(
                idx.replay(t, "general").credits,
                0,
                "{t}: the annul must not count"
            );
        }
        assert_eq!(idx.replay("W", "general").credits, 1);
    }
    assert_agree_and_reopen(&[&a, &b]);
}

#[test]
fn a_revocation_keeps_what_it_names_and_cannot_be_backdated() {
    let (mut a, mut b) = (Replica::new(1, 3), Replica::new(2, 3));
    for i in 0..3 {
        b.record(T0 + 100 + i, admit(&format!("B{i}"), Direction::In));
    }
    sync(&mut a, &mut b, T0 + 200);
    // The organizer revokes device 2 keeping its chain up to position 2.
    let chain = b.chain;
    let cut = Cut {
        keep: BTreeMap::from([(chain, 2)]),
    };
    assert_eq!(a.ledger.revoke(device(2), &cut), 1, "B2 leaves the index");
    // The stolen device goes on, writing "earlier" times; and starts a fresh chain.
    let tip = b
        .ledger
        .summary()
        .into_iter()
        .find(|t| t.chain.chain == chain)
        .unwrap();
    let backdated = signed(body(2, chain.0, tip.seq + 1, tip.hash, "LATE", T0 + 1), 2);
    let fresh_chain = signed(
        body(2, 5, 1, gatemesh_crdt::anchor(EVENT), "NEW", T0 + 1),
        2,
    );
    let got = a.admit(
        T0 + 300,
        2,
        &[canonical(&backdated), canonical(&fresh_chain)],
    );
    assert_eq!(
        got.rejected,
        vec![Rejection::RevokedDevice, Rejection::RevokedDevice]
    );
    let idx = a.ledger.index();
    assert_eq!(idx.records("B0").len() + idx.records("B1").len(), 2);
    assert!(idx.records("B2").is_empty() && idx.records("LATE").is_empty());
    // A second revocation keeping more changes nothing: only what both keep stays.
    let wider = Cut {
        keep: BTreeMap::from([(chain, 3)]),
    };
    a.ledger.revoke(device(2), &wider);
    assert!(a.ledger.index().records("B2").is_empty());
}

#[test]
fn a_forged_codes_denial_never_decides_a_tickets_tier() {
    let (mut a, mut b) = (Replica::new(1, 3), Replica::new(2, 3));
    // First in order: a denial of a forged code claiming ticket W, with no tier.
    let denial = Draft {
        tier: String::new(),
        verdict: Verdict::Deny,
        reason: "invalid_signature".into(),
        ..admit("W", Direction::In)
    };
    a.record(T0, denial);
    let weekend = |d| Draft {
        tier: "weekend".into(),
        ..admit("W", d)
    };
    a.record(T0 + 1, weekend(Direction::In));
    b.record(T0 + 2, weekend(Direction::In));
    sync(&mut a, &mut b, T0 + 3);
    for n in [&a, &b] {
        assert_eq!(n.ledger.index().ticket_tier("W"), "weekend");
        assert!(
            n.ledger.index().conflicts().is_empty(),
            "two entries of a two-entry pass"
        );
    }
    assert_agree_and_reopen(&[&a, &b]);
}

#[test]
fn changes_waiting_for_a_predecessor_are_bounded_and_never_stored() {
    let (mut a, _) = honest_pair();
    // Device 3 floods changes of its own chain whose first change never comes.
    let mut flood = Vec::new();
    let mut link = [1u8; 32];
    let sent = PENDING_PER_PEER_MAX as u32 + 100;
    for seq in 2..sent + 2 {
        let r = signed(body(3, 9, seq, link, &format!("F{seq}"), T0 + 50), 3);
        let (bytes, hash) = change::build_bytes(&r);
        link = hash;
        flood.push(bytes);
    }
    let got = a.admit(T0 + 60, 3, &flood);
    assert_eq!(got.held as usize, PENDING_PER_PEER_MAX);
    assert_eq!(a.ledger.stats().held_dropped, 100);
    assert!(got.persist.is_empty());
    assert!(a.ledger.index().records("F2").is_empty());
    // Another peer still has room.
    let r = signed(body(3, 10, 2, [2; 32], "G", T0 + 61), 3);
    assert_eq!(a.admit(T0 + 62, 4, &[canonical(&r)]).held, 1);
    // Nothing of it survives a restart.
    assert_eq!(a.reopen().ledger.held(), 0);
}

#[test]
fn a_device_that_forks_its_chain_loses_it_from_the_fork_on_every_replica() {
    let (mut a, mut b) = (Replica::new(1, 3), Replica::new(2, 3));
    // Device 3 writes 10 changes both replicas hold, then two different continuations.
    let mut prefix = Vec::new();
    let mut link = gatemesh_crdt::anchor(EVENT);
    for seq in 1..=10 {
        let r = signed(
            body(3, 4, seq, link, &format!("P{seq}"), T0 + u64::from(seq)),
            3,
        );
        let (bytes, hash) = change::build_bytes(&r);
        link = hash;
        prefix.push(bytes);
    }
    let branch = |name: &str| {
        let mut out = Vec::new();
        let mut l = link;
        for seq in 11..=30 {
            let r = signed(
                body(3, 4, seq, l, &format!("{name}{seq}"), T0 + u64::from(seq)),
                3,
            );
            let (bytes, hash) = change::build_bytes(&r);
            l = hash;
            out.push(bytes);
        }
        out
    };
    a.admit(T0 + 40, 3, &[prefix.clone(), branch("X")].concat());
    b.admit(T0 + 40, 3, &[prefix, branch("Y")].concat());
    assert_eq!(a.ledger.index().len(), 30);
    a.record(T0 + 41, admit("A", Direction::In));
    b.record(T0 + 41, admit("B", Direction::In));
    sync(&mut a, &mut b, T0 + 50);
    for n in [&a, &b] {
        let fork = n.ledger.forks().next().expect("the fork is proven");
        assert_eq!(fork.from, 11);
        assert_eq!(
            n.ledger.index().records("P10").len(),
            1,
            "the common part stays"
        );
        assert!(n.ledger.index().records("X11").is_empty());
        assert!(n.ledger.index().records("Y11").is_empty());
        assert_eq!(n.ledger.index().records("A").len(), 1);
    }
    assert_agree_and_reopen(&[&a, &b]);
    // A third replica that never saw either branch learns of the fork by sync alone.
    let mut c = Replica::new(1, 3);
    sync(&mut a, &mut c, T0 + 60);
    assert_eq!(c.ledger.forks().next().map(|f| f.from), Some(11));
}

#[test]
fn records_of_another_event_and_unknown_devices_are_refused() {
    let (_, mut b) = honest_pair();
    let other_event = signed(body(1, 77, 1, gatemesh_crdt::anchor("other"), "O", T0), 1);
    let unknown = signed(body(9, 1, 1, gatemesh_crdt::anchor(EVENT), "U", T0), 9);
    let got = b.admit(T0 + 1, 1, &[canonical(&other_event), canonical(&unknown)]);
    let mut why = got.rejected.clone();
    why.sort_by_key(Rejection::code);
    assert_eq!(why, vec![Rejection::UnknownDevice, Rejection::WrongEvent]);
}

#[test]
fn a_store_with_forged_changes_appended_is_cut_back_to_what_its_author_signed_on_restart() {
    let (mut a, mut b) = honest_pair();
    for i in 3..40 {
        a.record(T0 + 20 + i, admit(&format!("A{i}"), Direction::In));
    }
    sync(&mut a, &mut b, T0 + 100);
    let honest = b.picture();
    let tip = b
        .ledger
        .summary()
        .into_iter()
        .find(|t| t.chain.device == device(1))
        .unwrap();
    // Whoever can write b's store appends records to device 1's chain, hash-linked correctly
    // (hashes need no key) but signed with another enrolled device's key.
    let mut tampered = b.store.clone();
    let (mut link, mut seq) = (tip.hash, tip.seq);
    for i in 0..25 {
        seq += 1;
        let forged = signed(
            body(1, tip.chain.chain.0, seq, link, &format!("F{i}"), T0 + 200),
            3,
        );
        let bytes = canonical(&forged);
        link = change::hash_of(&bytes);
        tampered.push(bytes);
    }
    let mut reopened = Replica::with_chain(2, 3, b.chain);
    let refused = reopened
        .ledger
        .restore(NOW, tampered.iter().map(Vec::as_slice));
    assert_eq!(
        refused, 25,
        "every forged change is refused, no genuine one"
    );
    assert_eq!(reopened.picture(), honest);
    assert!(reopened.ledger.index().records("F0").is_empty());
    // The genuine chain goes on: device 1's next record still links and lands.
    a.record(T0 + 300, admit("A99", Direction::In));
    reopened.store = b.store.clone();
    sync(&mut a, &mut reopened, T0 + 301);
    assert_eq!(reopened.ledger.index().records("A99").len(), 1);
    // An edited tip (its author's signature no longer matches) is cut back as well.
    let mut edited = b.store.clone();
    let last = edited.len() - 1;
    let mut tip_body = change::read(&edited[last]).unwrap().record.body;
    tip_body.ticket_id = "EDITED".into();
    edited[last] = canonical(&signed(tip_body, 3));
    let mut reopened = Replica::with_chain(2, 3, b.chain);
    assert_eq!(
        reopened
            .ledger
            .restore(NOW, edited.iter().map(Vec::as_slice)),
        1
    );
    assert!(reopened.ledger.index().records("EDITED").is_empty());
}

/// A change at a chain's next position that fails its signature, placed before the genuine one
/// (in a sync message or an export), is no fork evidence: fork evidence is two changes that
/// both verify under the device's key (issue 20, item 1).
#[test]
fn a_forged_rival_of_a_genuine_change_is_refused_and_the_chain_is_kept() {
    let mut a = Replica::new(1, 3);
    for i in 0..10 {
        a.record(T0 + i, admit(&format!("A{i}"), Direction::In));
    }
    let genuine = change::read(&a.store[5]).unwrap().record.body;
    let mut rival = genuine.clone();
    rival.ticket_id = "FORGED".into();
    let forged = canonical(&signed(rival, 3));
    for (name, at) in [("export", 5), ("after its predecessors", 6), ("first", 0)] {
        let mut batch = a.store.clone();
        batch.insert(at, forged.clone());
        let mut b = Replica::new(2, 3);
        let got = b.admit(T0 + 20, 1, &batch);
        assert_eq!(got.rejected, vec![Rejection::BadSignature], "{name}");
        assert!(b.ledger.forks().next().is_none(), "{name}: no fork");
        assert_eq!(b.ledger.index().len(), 10, "{name}: every genuine record");
        assert!(b.ledger.index().records("FORGED").is_empty());
        assert_agree_and_reopen(&[&a, &b]);
    }
    // In two deliveries: the forged one alone at the next position, then the genuine chain.
    let mut b = Replica::new(2, 3);
    b.admit(T0 + 20, 1, &a.store[..5]);
    assert_eq!(
        b.admit(T0 + 21, 3, &[forged]).rejected,
        vec![Rejection::BadSignature]
    );
    b.admit(T0 + 22, 1, &a.store[5..]);
    assert_eq!(b.ledger.index().len(), 10);
    assert_agree_and_reopen(&[&a, &b]);
}

/// Issue 20, item 2: a peer's clock from the future is no more adopted after a restart than by
/// the running node (the clock bound is the same on both paths).
#[test]
fn a_restart_does_not_adopt_a_peers_clock_from_the_future() {
    let (mut a, mut b) = (Replica::new(1, 3), Replica::new(2, 3));
    let three_days = 3 * 86_400_000;
    let ahead = signed(
        body(
            3,
            5,
            1,
            gatemesh_crdt::anchor(EVENT),
            "FUTURE",
            NOW + three_days,
        ),
        3,
    );
    a.record(T0, admit("A0", Direction::In));
    assert_eq!(a.admit(NOW, 3, &[canonical(&ahead)]).persist.len(), 1);
    let running = a.ledger.clock();
    assert!(
        running.wall_ms() < NOW + 600_000,
        "the running node caps it"
    );
    let mut back = a.reopen();
    assert_eq!(
        back.ledger.clock(),
        running,
        "the restart has the same clock"
    );
    let (r, _) = back.record(NOW + 1, admit("A1", Direction::In));
    assert!(Hlc(r.body.hlc).wall_ms() < NOW + 600_000);
    sync(&mut back, &mut b, NOW + 2);
    assert_agree_and_reopen(&[&back, &b]);
}

/// Issue 20, item 6: a local change whose write failed is taken back, so the position the
/// device writes next is the only one there ever was: no peer sees two signed changes there.
#[test]
fn a_failed_write_takes_its_position_back() {
    let (mut a, mut b) = (Replica::new(1, 3), Replica::new(2, 3));
    a.record(T0, admit("A0", Direction::In));
    a.ledger.set_own_durable(1);
    // The write of A1 fails: the store never holds it.
    let (lost, _) = a.ledger.record(T0 + 1, admit("A1", Direction::In)).unwrap();
    assert_eq!(a.ledger.take_back_local(1), 1);
    assert!(a.ledger.index().records("A1").is_empty());
    let (next, _) = a.record(T0 + 2, admit("A2", Direction::In));
    assert_eq!(next.body.seq, lost.body.seq, "the position is written once");
    a.ledger.set_own_durable(2);
    sync(&mut a, &mut b, T0 + 3);
    assert!(b.ledger.forks().next().is_none());
    assert_agree_and_reopen(&[&a, &b]);
}
