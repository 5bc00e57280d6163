//! The index keeps one replay per ticket and moves it by a step when a record lands last; these
//! properties hold it to a replay from scratch: the same records inserted in any order give the
//! same entries, double entries, credits, conflicts and totals, and dropping a chain's records
//! gives what an index built without them gives.

use gatemesh_crdt::{
    ChainId, ChainKey, DeviceId, Direction, EntryRule, Hlc, Index, ScanBody, ScanRef, Verdict,
};
use proptest::prelude::*;
use std::collections::HashMap;

const T0: u64 = 1_800_000_000_000;

#[derive(Clone, Debug)]
struct Gen {
    device: u32,
    ticket: u8,
    verdict: u8,
    out: bool,
    /// Milliseconds after T0 (hours apart, minutes apart or the same instant).
    at_ms: u64,
    /// For an annul: which earlier record of the same device it names.
    target: usize,
    vip: bool,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        1u32..4,
        0u8..2,
        0u8..10,
        any::<bool>(),
        prop_oneof![0u64..5, 0u64..600_000, 0u64..(3 * 86_400_000)],
        0usize..8,
        any::<bool>(),
    )
        .prop_map(|(device, ticket, verdict, out, at_ms, target, vip)| Gen {
            device,
            ticket,
            verdict,
            out,
            at_ms,
            target,
            vip,
        })
}

/// Records as devices would write them: each device's chain in its own time order.
fn bodies(gens: &[Gen]) -> Vec<ScanBody> {
    let mut seq: HashMap<u32, u32> = HashMap::new();
    let mut last_hlc: HashMap<u32, u64> = HashMap::new();
    let mut out: Vec<ScanBody> = Vec::new();
    let mut sorted = gens.to_vec();
    sorted.sort_by_key(|g| g.at_ms);
    for g in sorted {
        let s = seq.entry(g.device).or_default();
        *s += 1;
        let hlc = Hlc::new(T0 + g.at_ms, 0)
            .0
            .max(last_hlc.get(&g.device).map_or(0, |h| h + 1));
        last_hlc.insert(g.device, hlc);
        let mine: Vec<&ScanBody> = out.iter().filter(|b| b.device.0 == g.device).collect();
        let (verdict, annuls) = match g.verdict {
            0..=5 => (Verdict::Admit, None),
            6..=7 => (Verdict::Deny, None),
            _ => match mine.get(g.target % mine.len().max(1)) {
                Some(t) => (Verdict::Annul, Some(t.scan_id())),
                None => (Verdict::Deny, None),
            },
        };
        out.push(ScanBody {
            version: 1,
            device: DeviceId(g.device),
            chain: ChainId(1),
            seq: *s,
            link: [0; 32],
            ticket_id: format!("T{}", g.ticket),
            tier: if g.vip { "vip" } else { "day" }.into(),
            gate: "north".into(),
            zone: "main".into(),
            direction: if g.out { Direction::Out } else { Direction::In },
            verdict,
            reason: "ok".into(),
            hlc,
            wall_ms: T0 + g.at_ms,
            seen: Vec::new(),
            annuls,
            origin: (g.verdict == 5).then(|| format!("phone@{}", g.at_ms / 7)),
        });
    }
    out
}

fn rules() -> HashMap<String, EntryRule> {
    HashMap::from([
        (
            "vip".to_string(),
            EntryRule {
                max_entries: 3,
                reentry: true,
                per_day: 1,
                day_start_ms: 4 * 3_600_000,
            },
        ),
        ("day".to_string(), EntryRule::default()),
    ])
}

fn index_of<'a>(records: impl IntoIterator<Item = &'a ScanBody>) -> Index {
    let mut ix = Index::new(rules());
    for b in records {
        ix.insert(b);
    }
    ix
}

/// Everything the index says about its records, for comparing two indexes.
fn view(ix: &Index) -> String {
    let mut out = String::new();
    for t in ["T0", "T1"] {
        for tier in ["vip", "day", ""] {
            out.push_str(&format!("{t}/{tier}: {:?}\n", ix.replay(t, tier)));
        }
        out.push_str(&format!("{t}: {:?}\n", ix.records(t)));
    }
    let tally = ix.tally();
    out.push_str(&format!(
        "{:?} {:?} {} {} {} {} {}\n",
        ix.conflicts(),
        tally.total,
        ix.conflict_count(),
        ix.conflict_tickets(),
        ix.inside("main"),
        ix.len(),
        ix.has_origin("T0", "phone@0"),
    ));
    // Names are interned in arrival order: compare them by name.
    let mut checked: Vec<_> = (tally.checked_in_by_tier.iter())
        .map(|(t, n)| (ix.name(*t).to_string(), *n))
        .collect();
    checked.sort();
    out.push_str(&format!("{checked:?}"));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_same_records_in_any_order_give_the_same_index(
        gens in prop::collection::vec(gen(), 1..40),
        order in any::<prop::sample::Index>(),
        swaps in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..40),
    ) {
        let records = bodies(&gens);
        let mut in_time = records.clone();
        in_time.sort_by_key(|b| (b.hlc, b.device, b.seq));
        let mut shuffled = records.clone();
        shuffled.rotate_left(order.index(records.len()));
        for (a, b) in swaps {
            let (a, b) = (a.index(records.len()), b.index(records.len()));
            shuffled.swap(a, b);
        }
        let a = index_of(&in_time);
        let b = index_of(&shuffled);
        prop_assert_eq!(view(&a), view(&b));
        // Twice is once.
        let c = index_of(shuffled.iter().chain(&in_time));
        prop_assert_eq!(view(&a), view(&c));
    }

    #[test]
    fn dropping_a_chain_gives_the_index_built_without_it(
        gens in prop::collection::vec(gen(), 1..40),
        from in 1u32..10,
    ) {
        let records = bodies(&gens);
        let mut ix = index_of(&records);
        let chain = ChainKey { device: DeviceId(2), chain: ChainId(1) };
        ix.drop_chain_from(chain, from);
        let kept = records.iter().filter(|b| {
            let r: ScanRef = b.scan_ref();
            r.chain != chain || r.seq < from
        });
        prop_assert_eq!(view(&ix), view(&index_of(kept)));
    }
}
