//! The enrolled Byzantine device: it holds a real device key and sends the trust issue's crafted
//! changes (a forged actor, a hijacked next sequence number, deletes, overwrites, root writes,
//! a flood of changes missing their predecessor, a fork of its own chain, and, once revoked,
//! records "from before" with backdated times).

use super::plan::Attack;
use super::world::{world, BYZ_CHAIN};
use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::{ActorId, Change, ChangeHash, ScalarValue};
use gatemesh_crdt::record::change::{self, Candidate, Hash};
use gatemesh_crdt::record::RECORD_VERSION;
use gatemesh_crdt::{ChainId, DeviceId, Direction, Hlc, ScanBody, ScanRecord, Verdict};
use std::collections::HashSet;

/// How many changes one flood sends.
const FLOOD: u32 = 64;

pub struct Byzantine {
    device: DeviceId,
    /// Its chain so far: (position, link, change) of each record it wrote.
    chain: Vec<(u32, Hash, Vec<u8>)>,
    /// Tickets it admitted (it may tell one node only, so honest admits of them can be double
    /// entries even while the network is whole).
    pub tickets: HashSet<String>,
    floods: u32,
}

impl Byzantine {
    pub fn new() -> Byzantine {
        Byzantine {
            device: world().byzantine().id(),
            chain: Vec::new(),
            tickets: HashSet::new(),
            floods: 0,
        }
    }

    fn body(&self, chain: u32, seq: u32, link: Hash, ticket: &str, at_ms: u64) -> ScanBody {
        ScanBody {
            version: RECORD_VERSION,
            device: self.device,
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
            hlc: Hlc::new(at_ms, 0).0,
            wall_ms: at_ms,
            seen: vec![],
            annuls: None,
            origin: None,
        }
    }

    fn sign(body: ScanBody) -> Option<ScanRecord> {
        ScanRecord::sign(body, &world().byzantine().key).ok()
    }

    /// The changes one attack sends. `honest` are changes honest nodes published.
    pub fn craft(
        &mut self,
        attack: Attack,
        ticket: &str,
        honest: &[Vec<u8>],
        now_ms: u64,
    ) -> Vec<Vec<u8>> {
        let target = honest.last().and_then(|c| change::read(c).ok());
        match (attack, target) {
            (Attack::Own, _) => self.own(ticket, now_ms),
            (Attack::Flood, _) => self.flood(ticket, now_ms),
            (Attack::Fork, _) => self.fork(now_ms),
            (_, None) => Vec::new(),
            (Attack::ForgedActor, Some(t)) => {
                let genuine = honest.last().cloned().unwrap_or_default();
                self.forged_actor(&t, &genuine, ticket, now_ms)
            }
            (Attack::Hijack, Some(t)) => self.hijack(&t, ticket, now_ms),
            (a, Some(t)) => crafted_edit(a, &t),
        }
    }

    /// Its next record (backdated a minute: after a revocation, records "from before").
    fn own(&mut self, ticket: &str, now_ms: u64) -> Vec<Vec<u8>> {
        let (seq, link) = match self.chain.last() {
            Some((s, _, c)) => (s + 1, change::hash_of(c)),
            None => (1, gatemesh_crdt::anchor(&world().package.config.event_id)),
        };
        let Some(r) =
            Self::sign(self.body(BYZ_CHAIN, seq, link, ticket, now_ms.saturating_sub(60_000)))
        else {
            return Vec::new();
        };
        self.tickets.insert(ticket.to_string());
        let (bytes, _) = change::build_bytes(&r);
        self.chain.push((seq, link, bytes.clone()));
        vec![bytes]
    }

    /// Changes of a chain of its own whose first never comes.
    fn flood(&mut self, ticket: &str, now_ms: u64) -> Vec<Vec<u8>> {
        self.floods += 1;
        let chain = BYZ_CHAIN + self.floods;
        let mut link = [0x5a; 32];
        let mut out = Vec::new();
        for seq in 2..2 + FLOOD {
            let Some(r) = Self::sign(self.body(chain, seq, link, ticket, now_ms)) else {
                break;
            };
            let (bytes, hash) = change::build_bytes(&r);
            link = hash;
            out.push(bytes);
        }
        out
    }

    /// Another record at a position it already wrote, signed just as well.
    fn fork(&mut self, now_ms: u64) -> Vec<Vec<u8>> {
        let Some((seq, link, _)) = self.chain.first().cloned() else {
            return Vec::new();
        };
        Self::sign(self.body(BYZ_CHAIN, seq, link, "FORKED", now_ms))
            .map(|r| vec![change::build_bytes(&r).0])
            .unwrap_or_default()
    }

    /// A record claiming the honest device's next position, signed with its own key; then a
    /// forged rival of the honest change `t` at its own position, placed before the genuine
    /// change in the same message (forged fork evidence: it must not cut the honest chain).
    fn forged_actor(
        &self,
        t: &Candidate,
        genuine: &[u8],
        ticket: &str,
        now_ms: u64,
    ) -> Vec<Vec<u8>> {
        let claim = |seq, link| {
            let mut body = self.body(BYZ_CHAIN, seq, link, ticket, now_ms);
            body.device = t.chain().device;
            body.chain = t.chain().chain;
            Self::sign(body).map(|r| change::build_bytes(&r).0)
        };
        let next = claim(t.seq() + 1, t.hash);
        let rival = claim(t.seq(), t.record.body.link);
        next.into_iter()
            .chain(rival)
            .chain((!genuine.is_empty()).then(|| genuine.to_vec()))
            .collect()
    }

    /// Its own record wrapped under the honest device's actor, that device's next sequence
    /// number and a dependency nobody has.
    fn hijack(&self, t: &Candidate, ticket: &str, now_ms: u64) -> Vec<Vec<u8>> {
        let anchor = gatemesh_crdt::anchor(&world().package.config.event_id);
        let Some(own) = Self::sign(self.body(BYZ_CHAIN + 1000, 1, anchor, ticket, now_ms)) else {
            return Vec::new();
        };
        let mut e = change::build(&own).decode();
        e.actor_id = ActorId::from(t.chain().actor_bytes().to_vec());
        e.seq = u64::from(t.seq()) + 1;
        e.start_op = std::num::NonZeroU64::new(e.seq).unwrap_or(std::num::NonZeroU64::MIN);
        e.deps = vec![ChangeHash([0xee; 32])];
        vec![Change::from(e).raw_bytes().to_vec()]
    }
}

impl Default for Byzantine {
    fn default() -> Self {
        Byzantine::new()
    }
}

/// A delete, an overwrite or a root write built around an honest change.
fn crafted_edit(attack: Attack, t: &Candidate) -> Vec<Vec<u8>> {
    let actor = ActorId::from(t.chain().actor_bytes().to_vec());
    let mut e = change::build(&t.record).decode();
    let key = Key::Map(t.record.scan_id().into());
    let pred = vec![OpId::new(u64::from(t.seq()), &actor)].into();
    match attack {
        Attack::Delete => {
            e.operations[0].key = key;
            e.operations[0].action = OpType::Delete;
            e.operations[0].pred = pred;
        }
        Attack::Overwrite => {
            e.operations[0].key = key;
            e.operations[0].pred = pred;
        }
        _ => {
            e.operations[0].key = Key::Map("00".into());
            e.operations[0].obj = ObjectId::Root;
            e.operations[0].action = OpType::Put(ScalarValue::Int(1));
        }
    }
    vec![Change::from(e).raw_bytes().to_vec()]
}
