//! Partition schedules: devices admit on what they can see, gossip reaches their side of a
//! split in any order and more than once, sync repairs, nodes restart from what their store
//! holds, and one enrolled device lies (forks its chain, sends forged and crafted changes).
//! After healing every honest replica holds the same records and the same conflict list, that
//! list is exactly the admits the policy did not allow, reopening any replica from its store
//! changes nothing, and while the network is whole no double entry happens.

mod common;

use common::*;
use gatemesh_crdt::record::change;
use gatemesh_crdt::{ChainId, Direction, Draft, Hlc, ScanBody, ScanRecord, Verdict};
use proptest::prelude::*;

const HONEST: usize = 4;
/// Device number of the liar (enrolled like the others).
const LIAR: u8 = 9;
const TICKETS: u8 = 6;

#[derive(Clone, Debug)]
enum Step {
    /// A device scans a ticket and admits it if its own view allows.
    Scan {
        device: usize,
        ticket: u8,
    },
    /// Gossip of the last `back`-th change of a device reaches one node late (reordering and
    /// duplication).
    Late {
        from: usize,
        to: usize,
        back: usize,
    },
    /// The network splits: devices whose bit is set are on side B.
    Split {
        side_b: u8,
    },
    Heal,
    /// A node restarts from its store.
    Restart {
        device: usize,
    },
    /// The liar sends one node a change on a branch of its own chain that no other node gets.
    Lie {
        to: usize,
        ticket: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..HONEST, 0..TICKETS).prop_map(|(device, ticket)| Step::Scan { device, ticket }),
        2 => (0..HONEST, 0..HONEST, 0..4usize).prop_map(|(from, to, back)| Step::Late { from, to, back }),
        1 => (1u8..(1 << HONEST) - 1).prop_map(|side_b| Step::Split { side_b }),
        1 => Just(Step::Heal),
        1 => (0..HONEST).prop_map(|device| Step::Restart { device }),
        1 => (0..HONEST, 0..TICKETS).prop_map(|(to, ticket)| Step::Lie { to, ticket }),
    ]
}

struct World {
    nodes: Vec<Replica>,
    /// Every change each device made, in order (what gossip carries).
    made: Vec<Vec<Vec<u8>>>,
    side_b: u8,
    admits: u64,
    whole_doubles: u64,
    /// The liar's chain: one honest prefix everyone may get, and a position counter.
    liar_seq: u32,
    liar_link: [u8; 32],
    /// Tickets the liar admitted: it may tell one node only, so an honest admit there can be a
    /// double entry even while the network is whole.
    liar_tickets: std::collections::HashSet<String>,
}

impl World {
    fn new() -> World {
        World {
            nodes: (0..HONEST)
                .map(|d| Replica::new(d as u8 + 1, LIAR))
                .collect(),
            made: vec![Vec::new(); HONEST],
            side_b: 0,
            admits: 0,
            whole_doubles: 0,
            liar_seq: 0,
            liar_link: gatemesh_crdt::anchor(EVENT),
            liar_tickets: Default::default(),
        }
    }

    fn same_side(&self, a: usize, b: usize) -> bool {
        (self.side_b >> a & 1) == (self.side_b >> b & 1)
    }

    fn scan(&mut self, device: usize, ticket: u8, now: u64) {
        let id = format!("T{ticket}");
        let allowed = self.nodes[device]
            .ledger
            .index()
            .replay(&id, "general")
            .credits
            > 0;
        let draft = Draft {
            verdict: if allowed {
                Verdict::Admit
            } else {
                Verdict::Deny
            },
            reason: if allowed { "ok" } else { "already_redeemed" }.into(),
            gate: format!("g{device}"),
            ..admit(&id, Direction::In)
        };
        let (record, change) = self.nodes[device].record(now, draft);
        self.made[device].push(change.clone());
        if allowed {
            self.admits += 1;
        }
        // Gossip within the device's side, then sync repairs anything missing.
        let peers: Vec<usize> = (0..HONEST)
            .filter(|&o| o != device && self.same_side(device, o))
            .collect();
        for other in peers {
            self.nodes[other].admit(now, device as u64 + 1, std::slice::from_ref(&change));
            let (a, b) = two(&mut self.nodes, device, other);
            sync(a, b, now);
        }
        if self.side_b == 0 && allowed && !self.liar_tickets.contains(&id) {
            for n in &self.nodes {
                let doubles = n.ledger.index().replay(&id, "general").double_entries;
                if doubles.iter().any(|r| r.scan_id == record.scan_id()) {
                    self.whole_doubles += 1;
                }
            }
        }
    }

    /// The liar writes the next position of its chain twice: one version to `to`, another
    /// (signed just as well) nowhere yet; plus a forged record claiming an honest device.
    fn lie(&mut self, to: usize, ticket: u8, now: u64) {
        self.liar_seq += 1;
        self.liar_tickets.insert(format!("T{ticket}"));
        let (seq, link) = (self.liar_seq, self.liar_link);
        let body = |t: &str| ScanBody {
            version: gatemesh_crdt::record::RECORD_VERSION,
            device: device(LIAR),
            chain: ChainId(1),
            seq,
            link,
            ticket_id: t.into(),
            tier: "general".into(),
            gate: "g9".into(),
            zone: "main".into(),
            direction: Direction::In,
            verdict: Verdict::Admit,
            reason: "ok".into(),
            hlc: Hlc::new(now, 0).0,
            wall_ms: now,
            seen: vec![],
            annuls: None,
            origin: None,
        };
        let one = ScanRecord::sign(body(&format!("T{ticket}")), &key(LIAR)).unwrap();
        let other = ScanRecord::sign(body("L"), &key(LIAR)).unwrap();
        let (one_bytes, one_hash) = change::build_bytes(&one);
        let (other_bytes, _) = change::build_bytes(&other);
        self.liar_link = one_hash;
        let mut forged_body = body("F");
        forged_body.device = device(1);
        let forged = ScanRecord::sign(forged_body, &key(LIAR)).unwrap();
        let n = &mut self.nodes[to];
        n.admit(
            now,
            u64::from(LIAR),
            &[one_bytes, change::build_bytes(&forged).0],
        );
        let peer = (to + 1) % HONEST;
        self.nodes[peer].admit(now, u64::from(LIAR), &[other_bytes]);
    }

    fn run(&mut self, steps: &[Step]) {
        for (t, s) in steps.iter().enumerate() {
            let now = T0 + t as u64 * 10;
            match *s {
                Step::Scan { device, ticket } => self.scan(device, ticket, now),
                Step::Late { from, to, back } => {
                    let made = &self.made[from];
                    if from != to && back < made.len() {
                        let c = made[made.len() - 1 - back].clone();
                        self.nodes[to].admit(now, from as u64 + 1, &[c]);
                    }
                }
                Step::Split { side_b } => self.side_b = side_b,
                Step::Heal => {
                    self.side_b = 0;
                    sync_all(&mut self.nodes, now);
                }
                Step::Restart { device } => self.nodes[device] = self.nodes[device].reopen(),
                Step::Lie { to, ticket } => self.lie(to, ticket, now),
            }
        }
        self.side_b = 0;
        sync_all(&mut self.nodes, T0 + 1_000_000);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn splits_heal_to_one_ledger_and_every_double_entry_is_reported(steps in prop::collection::vec(step(), 1..60)) {
        let mut w = World::new();
        w.run(&steps);
        let first = w.nodes[0].picture();
        for n in &w.nodes {
            prop_assert_eq!(&n.picture(), &first);
            prop_assert_eq!(&n.reopen().picture(), &first);
        }
        // Every change an honest device made (each acknowledged) is held by every replica.
        for (d, made) in w.made.iter().enumerate() {
            let chain = w.nodes[d].ledger.local_chain().unwrap();
            for n in &w.nodes {
                prop_assert_eq!(n.ledger.chains().len_of(chain) as usize, made.len());
            }
        }
        // Every admit beyond one per ticket is a reported double entry, and nothing else is;
        // the liar's chain counts too where it was not forked.
        let idx = w.nodes[0].ledger.index();
        let tickets: Vec<String> = (0..TICKETS).map(|t| format!("T{t}")).collect();
        let legit: u64 = tickets.iter().map(|t| idx.replay(t, "general").entries.len() as u64).sum();
        let liar_admits: u64 = tickets.iter().map(|t| idx.records(t).iter()
            .filter(|r| r.device == device(LIAR).to_string()).count() as u64).sum();
        prop_assert_eq!(idx.conflict_count() as u64, w.admits + liar_admits - legit);
        prop_assert_eq!(w.whole_doubles, 0);
    }
}
