//! A replica for tests: a ledger and the bytes its store would hold, with honest sync between
//! two replicas and a reopen from the stored bytes (a restart).

#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use gatemesh_crdt::{
    Budget, ChainId, DeviceId, Direction, Draft, EntryRule, Ledger, LocalDevice, Roster,
    RosterDevice, Verdict,
};
use std::collections::HashMap;

/// A time inside every test event (2026-05-28).
pub const T0: u64 = 1_780_000_000_000;
/// The time a reopened replica restarts at (after every test's scans).
pub const NOW: u64 = T0 + 86_400_000;
pub const EVENT: &str = "test-event";
/// Where a festival day starts in these tests: 06:00 at UTC+2.
pub const DAY_START_MS: u64 = 4 * 3_600_000;
/// Sync rounds between two replicas are bounded: the protocol converges in a few.
pub const SYNC_ROUNDS_MAX: usize = 64;

pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

pub fn device(n: u8) -> DeviceId {
    DeviceId::from_public_key(&key(n).verifying_key())
}

pub fn roster(n: u8) -> Roster {
    let mut r = Roster::default();
    for i in 1..=n {
        r.insert(RosterDevice {
            key: key(i).verifying_key(),
            name: format!("d{i}"),
            cut: None,
            supervisor: true,
        });
    }
    r
}

pub fn rules() -> HashMap<String, EntryRule> {
    HashMap::from([
        (
            "general".to_string(),
            EntryRule {
                max_entries: 1,
                reentry: false,
                ..EntryRule::default()
            },
        ),
        (
            "vip".to_string(),
            EntryRule {
                max_entries: 1,
                reentry: true,
                ..EntryRule::default()
            },
        ),
        (
            "weekend".to_string(),
            EntryRule {
                max_entries: 2,
                reentry: false,
                ..EntryRule::default()
            },
        ),
        (
            "daypass".to_string(),
            EntryRule {
                max_entries: 3,
                reentry: false,
                per_day: 1,
                day_start_ms: DAY_START_MS as i64,
            },
        ),
    ])
}

pub fn admit(ticket: &str, direction: Direction) -> Draft {
    Draft {
        ticket_id: ticket.into(),
        tier: "general".into(),
        gate: "north".into(),
        zone: "main".into(),
        direction,
        verdict: Verdict::Admit,
        reason: "ok".into(),
        seen: vec![],
        annuls: None,
        origin: None,
        wall_ms: None,
    }
}

pub struct Replica {
    pub ledger: Ledger,
    /// What the store holds: every change made or admitted, in order.
    pub store: Vec<Vec<u8>>,
    pub device: u8,
    pub devices: u8,
    pub chain: ChainId,
}

impl Replica {
    pub fn new(device: u8, devices: u8) -> Replica {
        Replica::with_chain(device, devices, ChainId(u32::from(device) * 1000))
    }

    pub fn with_chain(device: u8, devices: u8, chain: ChainId) -> Replica {
        let local = LocalDevice {
            key: key(device),
            chain,
        };
        Replica {
            ledger: Ledger::new(EVENT, roster(devices), rules(), Some(local)),
            store: Vec::new(),
            device,
            devices,
            chain,
        }
    }

    /// Record a local scan; the change is stored as the node makes it durable.
    pub fn record(&mut self, now: u64, draft: Draft) -> (gatemesh_crdt::ScanRecord, Vec<u8>) {
        let (r, c) = self.ledger.record(now, draft).unwrap();
        self.store.push(c.clone());
        (r, c)
    }

    pub fn admit(&mut self, now: u64, from: u64, blobs: &[Vec<u8>]) -> gatemesh_crdt::Admitted {
        let a = self.ledger.admit(now, from, blobs);
        self.store.extend(a.persist.iter().cloned());
        a
    }

    /// A restart: a new ledger from the stored bytes alone.
    pub fn reopen(&self) -> Replica {
        let mut r = Replica::with_chain(self.device, self.devices, self.chain);
        let refused = r.ledger.restore(NOW, self.store.iter().map(Vec::as_slice));
        assert_eq!(refused, 0, "the store holds only admitted changes");
        for f in self.ledger.forks() {
            r.ledger.accept_fork(&f.a, &f.b).unwrap();
        }
        r.store = self.store.clone();
        r
    }

    /// Everything a comparison needs: every ticket's records, the conflicts, the tips.
    pub fn picture(&self) -> String {
        let idx = self.ledger.index();
        let mut tickets: Vec<&str> = idx.tickets().collect();
        tickets.sort();
        let records: Vec<(String, Vec<String>)> = tickets
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    idx.records(t).iter().map(|r| r.scan_id.clone()).collect(),
                )
            })
            .collect();
        format!(
            "{records:?}\n{}\n{:?}",
            serde_json::to_string(&idx.conflicts()).unwrap(),
            self.ledger.summary()
        )
    }
}

const BUDGET: Budget = Budget {
    bytes: 64 * 1024,
    changes: 64,
};

/// Honest sync between two replicas until neither has anything for the other.
pub fn sync(a: &mut Replica, b: &mut Replica, now: u64) {
    for _ in 0..SYNC_ROUNDS_MAX {
        let to_b = a.ledger.serve(&b.ledger.summary(), BUDGET);
        let to_a = b.ledger.serve(&a.ledger.summary(), BUDGET);
        // Fork evidence rides along every answer; only changes keep a round going.
        let quiet = to_b.changes.is_empty() && to_a.changes.is_empty();
        for f in &to_b.forks {
            let _ = b.ledger.accept_fork(&f.a, &f.b);
        }
        for f in &to_a.forks {
            let _ = a.ledger.accept_fork(&f.a, &f.b);
        }
        b.admit(now, u64::from(a.device), &to_b.changes);
        a.admit(now, u64::from(b.device), &to_a.changes);
        if quiet {
            return;
        }
    }
    panic!("sync between {} and {} did not settle", a.device, b.device);
}

/// Sync every pair until all agree.
pub fn sync_all(nodes: &mut [Replica], now: u64) {
    for _ in 0..2 {
        for i in 0..nodes.len() {
            for j in 0..nodes.len() {
                if i != j {
                    let (a, b) = two(nodes, i, j);
                    sync(a, b, now);
                }
            }
        }
    }
}

pub fn two<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert_ne!(i, j);
    if i < j {
        let (l, r) = v.split_at_mut(j);
        (&mut l[i], &mut r[0])
    } else {
        let (l, r) = v.split_at_mut(i);
        (&mut r[0], &mut l[j])
    }
}
