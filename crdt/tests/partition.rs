//! Partition schedules: devices admit on what they can see, sync only with their side of a
//! split, and heal. After healing every replica holds the same records and the same conflict
//! list, and that list is exactly the admits the policy did not allow. While the network is
//! whole, no double entry happens.

use ed25519_dalek::SigningKey;
use gatemesh_crdt::{
    Direction, Draft, EntryRule, Ledger, LocalDevice, Roster, RosterDevice, SyncPeer, Verdict,
};
use proptest::prelude::*;
use std::collections::HashMap;

const DEVICES: usize = 4;
const TICKETS: u8 = 6;
/// Sync rounds are bounded: the protocol converges in a few round trips.
const SYNC_ROUNDS_MAX: usize = 16;

fn ledgers() -> Vec<Ledger> {
    let mut roster = Roster::default();
    for d in 0..DEVICES {
        roster.insert(RosterDevice {
            key: SigningKey::from_bytes(&[d as u8 + 1; 32]).verifying_key(),
            name: format!("d{d}"),
            revoked_from: None,
        });
    }
    let rules = HashMap::from([(
        "general".to_string(),
        EntryRule {
            max_entries: 1,
            reentry: false,
        },
    )]);
    (0..DEVICES)
        .map(|d| {
            let local = LocalDevice {
                key: SigningKey::from_bytes(&[d as u8 + 1; 32]),
                session: [d as u8; 8],
            };
            Ledger::open(
                &Ledger::genesis(),
                [],
                roster.clone(),
                rules.clone(),
                Some(local),
            )
            .unwrap()
        })
        .collect()
}

/// Run the sync protocol between two replicas until neither has anything to say.
fn sync_pair(
    nodes: &mut [Ledger],
    peers: &mut HashMap<(usize, usize), SyncPeer>,
    a: usize,
    b: usize,
    now: u64,
) {
    for _ in 0..SYNC_ROUNDS_MAX {
        let mut quiet = true;
        for (from, to) in [(a, b), (b, a)] {
            let msg = nodes[from].generate_sync(peers.entry((from, to)).or_default());
            if let Some(m) = msg {
                quiet = false;
                nodes[to]
                    .receive_sync(peers.entry((to, from)).or_default(), &m, now)
                    .unwrap();
            }
        }
        if quiet {
            return;
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// Device scans a ticket and admits it if its own view allows.
    Scan {
        device: usize,
        ticket: u8,
    },
    /// The network splits: devices whose bit is set are on side B.
    Split {
        side_b: u8,
    },
    Heal,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..DEVICES, 0..TICKETS).prop_map(|(device, ticket)| Step::Scan { device, ticket }),
        1 => (1u8..(1 << DEVICES) - 1).prop_map(|side_b| Step::Split { side_b }),
        1 => Just(Step::Heal),
    ]
}

fn run(steps: &[Step]) -> (Vec<Ledger>, u64, u64) {
    let mut nodes = ledgers();
    let mut peers = HashMap::new();
    let mut side_b = 0u8;
    let (mut admits, mut admits_while_whole_beyond_policy) = (0u64, 0u64);
    for (t, s) in steps.iter().enumerate() {
        let now = 1_000 + t as u64 * 10;
        match *s {
            Step::Split { side_b: b } => side_b = b,
            Step::Heal => {
                side_b = 0;
                heal(&mut nodes, &mut peers, now);
            }
            Step::Scan { device, ticket } => {
                let id = format!("T{ticket}");
                let allowed = nodes[device].index().replay(&id, "general").credits > 0;
                let verdict = if allowed {
                    Verdict::Admit
                } else {
                    Verdict::Deny
                };
                let draft = Draft {
                    ticket_id: id.clone(),
                    tier: "general".into(),
                    gate: format!("g{device}"),
                    zone: "main".into(),
                    direction: Direction::In,
                    verdict,
                    reason: if allowed {
                        "ok".into()
                    } else {
                        "already_redeemed".into()
                    },
                    prev: vec![],
                    annuls: None,
                };
                let (record, _) = nodes[device].record(now, draft).unwrap();
                if allowed {
                    admits += 1;
                }
                // Gossip within the device's side of the split.
                let mine = side_b >> device & 1;
                for other in (0..DEVICES).filter(|&o| o != device && side_b >> o & 1 == mine) {
                    sync_pair(&mut nodes, &mut peers, device, other, now);
                }
                if side_b == 0 && allowed {
                    // Whole network, everyone synced: this admit must not be a double entry on
                    // any replica.
                    for n in &nodes {
                        let doubles = n.index().replay(&id, "general").double_entries;
                        if doubles.iter().any(|r| r.scan_id == record.scan_id()) {
                            admits_while_whole_beyond_policy += 1;
                        }
                    }
                }
            }
        }
    }
    heal(&mut nodes, &mut peers, 1_000_000);
    (nodes, admits, admits_while_whole_beyond_policy)
}

/// Everyone syncs with everyone, twice (what reached b from c must reach a too).
fn heal(nodes: &mut [Ledger], peers: &mut HashMap<(usize, usize), SyncPeer>, now: u64) {
    for _ in 0..2 {
        for a in 0..DEVICES {
            for b in (a + 1)..DEVICES {
                sync_pair(nodes, peers, a, b, now);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn splits_heal_to_one_ledger_and_every_double_entry_is_reported(steps in prop::collection::vec(step(), 1..60)) {
        let (nodes, admits, whole_doubles) = run(&steps);
        let tickets: Vec<String> = (0..TICKETS).map(|t| format!("T{t}")).collect();
        let picture = |l: &Ledger| {
            let recs: Vec<Vec<String>> = tickets.iter().map(|t| l.index().records(t).into_iter().map(|r| r.scan_id).collect()).collect();
            (l.heads(), recs, serde_json::to_string(&l.index().conflicts()).unwrap())
        };
        let first = picture(&nodes[0]);
        for n in &nodes[1..] {
            prop_assert_eq!(&picture(n), &first);
        }
        // Every admit beyond one per ticket is a reported double entry, and nothing else is.
        let legit: u64 = tickets.iter().map(|t| nodes[0].index().replay(t, "general").entries.len() as u64).sum();
        prop_assert_eq!(nodes[0].index().conflict_count() as u64, admits - legit);
        prop_assert_eq!(whole_doubles, 0);
    }
}
