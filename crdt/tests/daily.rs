//! Daily limits (a weekend pass: one entry per festival day) give the same verdict on every
//! replica whatever order the records arrive in: which admits were legitimate, which were
//! double entries, and how many entries are left today.

mod common;

use common::*;
use gatemesh_crdt::record::date::{festival_day, DAY_MS};
use gatemesh_crdt::{Direction, Draft};
use proptest::prelude::*;

const DEVICES: u8 = 3;
const TICKETS: u8 = 3;

/// One admit: by which device, of which ticket, how far into the three festival days.
fn admits() -> impl Strategy<Value = Vec<(u8, u8, u64)>> {
    prop::collection::vec((1..=DEVICES, 0..TICKETS, 0..3 * DAY_MS), 1..24)
}

fn daypass(ticket: u8) -> Draft {
    Draft {
        tier: "daypass".into(),
        ..admit(&format!("P{ticket}"), Direction::In)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn daily_limits_agree_on_every_replica_in_any_merge_order(
        mut scans in admits(),
        orders in prop::collection::vec(any::<prop::sample::Index>(), 3),
    ) {
        // The first festival day starts at T0's day start; every device writes its admits in
        // time order (an HLC never goes back).
        let start = (T0 / DAY_MS) * DAY_MS + DAY_START_MS;
        scans.sort_by_key(|s| s.2);
        let mut writers: Vec<Replica> = (1..=DEVICES).map(|d| Replica::new(d, DEVICES)).collect();
        let mut changes = Vec::new();
        for (device, ticket, at) in &scans {
            let w = &mut writers[usize::from(*device) - 1];
            let (_, c) = w.record(start + at, daypass(*ticket));
            changes.push((u64::from(*device), c));
        }
        let mut pictures = Vec::new();
        for order in &orders {
            let mut r = Replica::new(DEVICES + 1, DEVICES + 1);
            let mut shuffled = changes.clone();
            let k = order.index(shuffled.len());
            shuffled.rotate_left(k);
            shuffled.reverse();
            for (from, c) in &shuffled {
                r.admit(start + 3 * DAY_MS, *from, std::slice::from_ref(c));
            }
            pictures.push(r);
        }
        let first = pictures[0].picture();
        for r in &pictures {
            prop_assert_eq!(&r.picture(), &first);
            prop_assert_eq!(&r.reopen().picture(), &first, "a restart judges the same");
        }
        // At most one legit entry per ticket per day, at most three in all; every other admit
        // is a reported double entry.
        let idx = pictures[0].ledger.index();
        let mut legit = 0;
        for t in 0..TICKETS {
            let replay = idx.replay(&format!("P{t}"), "daypass");
            let mut days: Vec<u64> = replay
                .entries
                .iter()
                .map(|e| festival_day(gatemesh_crdt::Hlc(e.hlc).wall_ms(), DAY_START_MS as i64))
                .collect();
            let n = days.len();
            days.dedup();
            prop_assert_eq!(days.len(), n, "two legit entries on one day");
            prop_assert!(n <= 3);
            legit += n;
        }
        prop_assert_eq!(idx.conflict_count() + legit, scans.len());
    }
}

#[test]
fn a_second_entry_the_same_day_is_double_and_the_next_day_is_fine() {
    let start = (T0 / DAY_MS) * DAY_MS + DAY_START_MS;
    let mut a = Replica::new(1, 2);
    let mut b = Replica::new(2, 2);
    // Day 1, 10:00 local at gate A; day 1, 23:00 at gate B (a split: neither saw the other).
    let (_, ca) = a.record(start + 4 * 3_600_000, daypass(0));
    let (_, cb) = b.record(start + 17 * 3_600_000, daypass(0));
    // Day 2, 05:59 local is still day 1 (the day starts at 06:00): a double entry too.
    let (_, cb2) = b.record(start + DAY_MS - 60_000, daypass(0));
    // Day 2, 06:01 local: a new day.
    let (_, cb3) = b.record(start + DAY_MS + 60_000, daypass(0));
    a.admit(start + 2 * DAY_MS, 2, &[cb, cb2, cb3]);
    b.admit(start + 2 * DAY_MS, 1, &[ca]);
    for r in [&a, &b] {
        let replay = r.ledger.index().replay("P0", "daypass");
        assert_eq!(replay.entries.len(), 2);
        assert_eq!(replay.double_entries.len(), 2);
        assert_eq!(replay.credits, 1);
        let day2 = festival_day(start + DAY_MS + 60_000, DAY_START_MS as i64);
        assert_eq!(replay.last_day, Some((day2, 1)));
    }
    assert_eq!(a.picture(), b.picture());
}

#[test]
fn an_offline_scan_reconciled_the_next_day_counts_for_the_day_it_was_made() {
    let start = (T0 / DAY_MS) * DAY_MS + DAY_START_MS;
    let mut a = Replica::new(1, 2);
    // Friday 20:00 local a phone admits offline; it reconciles on Saturday at 10:00.
    let friday = start + 14 * 3_600_000;
    let offline = Draft {
        origin: Some(format!("phone-7@{friday}")),
        wall_ms: Some(friday),
        ..daypass(0)
    };
    a.record(start + DAY_MS + 4 * 3_600_000, offline);
    // Saturday 11:00: the holder comes back; Saturday's entry is still theirs.
    a.record(start + DAY_MS + 5 * 3_600_000, daypass(0));
    let replay = a.ledger.index().replay("P0", "daypass");
    assert_eq!((replay.entries.len(), replay.double_entries.len()), (2, 0));
    let friday_day = festival_day(friday, DAY_START_MS as i64);
    assert_eq!(
        festival_day(
            gatemesh_crdt::Hlc(replay.entries[0].hlc).wall_ms(),
            DAY_START_MS as i64
        ),
        friday_day
    );
}
