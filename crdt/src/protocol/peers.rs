//! The devices a replica may talk to: every enrolled device (its name, key and certificate), which
//! are connected now and when each was last seen, each connected peer's tips as its last sync
//! message gave them, and who may connect at all (enrolled, certificate valid, not revoked, not
//! blocked by the operator).

use crate::event::certificate::DeviceCertificate;
use crate::ledger::Tip;
use crate::protocol::stats::PeerSeen;
use crate::record::DeviceId;
use ed25519_dalek::VerifyingKey;
use std::collections::{BTreeMap, HashSet};

/// Most enrolled devices a replica keeps track of.
pub const PEERS_MAX: usize = crate::event::roster::ROSTER_DEVICES_MAX;

/// One enrolled device as this replica knows it.
#[derive(Clone, Debug)]
pub struct Peer {
    pub name: String,
    pub key: VerifyingKey,
    pub certificate: DeviceCertificate,
    pub online: bool,
    /// Last time a connection opened or closed (ms since the epoch; 0: never).
    pub last_seen_ms: u64,
    /// Tips from its last sync message (`None`: not known since it connected).
    pub tips: Option<Vec<Tip>>,
    /// One of our sync messages to it awaits an answer.
    pub in_flight: bool,
    /// A bulletin hand-over to it failed: retried on the next sync tick.
    pub bulletin_retry: bool,
    /// Its hello since it connected named our event configuration: until then its gossip is
    /// not taken (sync fetches it once it is).
    pub same_config: bool,
    /// Its hello came while a sync session with it was on its way: a full session is owed
    /// once that one ends (what it gossiped before the hello is fetched then, not at the next
    /// periodic round).
    pub sync_owed: bool,
    /// It refused our last sync (it has not had our hello: lost, or on a connection it
    /// replaced): no session is offered until its hello comes or the next periodic round, and
    /// our hello goes again.
    pub refused: bool,
    /// A hello lifted its refusal this round (once per round).
    pub refusal_lifted: bool,
    /// Its gossip subscription on this connection was taken (`Input::PeerListening`, once).
    pub listening: bool,
    /// The other configuration its last refused hello named (reported once per new one).
    pub other_config: Option<Vec<u8>>,
}

impl Peer {
    /// A connection with it opened (or replaced an older one) or closed: what we knew of the
    /// last one is forgotten.
    pub fn connection(&mut self, online: bool, now_ms: u64) {
        self.online = online;
        self.last_seen_ms = now_ms;
        self.tips = None;
        self.in_flight = false;
        self.same_config = false;
        self.sync_owed = false;
        self.refused = false;
        self.refusal_lifted = false;
        self.listening = false;
    }
}

#[derive(Clone, Debug, Default)]
pub struct Peers {
    peers: BTreeMap<DeviceId, Peer>,
    /// Cut off by the operator (`!block`).
    blocked: HashSet<DeviceId>,
    /// Cut off by a revocation bulletin.
    revoked: HashSet<DeviceId>,
}

impl Peers {
    /// Every enrolled device of these certificates (a second certificate of one device is
    /// ignored).
    pub fn from_certificates(certs: &[DeviceCertificate]) -> Peers {
        let mut p = Peers::default();
        for c in certs {
            p.enroll(c);
        }
        p
    }

    /// Add a device (a late enrollment). Returns false if known, unusable or over the bound.
    pub fn enroll(&mut self, c: &DeviceCertificate) -> bool {
        let (Some(id), Ok(key)) = (c.device(), c.verifying_key()) else {
            return false;
        };
        if self.peers.contains_key(&id) || self.peers.len() >= PEERS_MAX {
            return false;
        }
        self.peers.insert(
            id,
            Peer {
                name: c.name.clone(),
                key,
                certificate: c.clone(),
                online: false,
                last_seen_ms: 0,
                tips: None,
                in_flight: false,
                bulletin_retry: false,
                same_config: false,
                sync_owed: false,
                refused: false,
                refusal_lifted: false,
                listening: false,
                other_config: None,
            },
        );
        true
    }

    pub fn get(&self, id: DeviceId) -> Option<&Peer> {
        self.peers.get(&id)
    }

    pub fn get_mut(&mut self, id: DeviceId) -> Option<&mut Peer> {
        self.peers.get_mut(&id)
    }

    /// A device by name or 8-hex id.
    pub fn find(&self, who: &str) -> Option<DeviceId> {
        self.peers
            .iter()
            .find(|(id, p)| p.name == who || id.to_string() == who)
            .map(|(id, _)| *id)
    }

    pub fn name(&self, id: DeviceId) -> String {
        self.peers
            .get(&id)
            .map_or_else(|| id.to_string(), |p| p.name.clone())
    }

    /// Whether `id` may be connected to at `now_ms`.
    pub fn admissible(&self, id: DeviceId, now_ms: u64) -> bool {
        self.peers
            .get(&id)
            .is_some_and(|p| p.certificate.valid_at(now_ms))
            && !self.blocked.contains(&id)
            && !self.revoked.contains(&id)
    }

    pub fn set_blocked(&mut self, id: DeviceId, blocked: bool) {
        if blocked {
            self.blocked.insert(id);
        } else {
            self.blocked.remove(&id);
        }
    }

    pub fn revoke(&mut self, id: DeviceId) {
        self.revoked.insert(id);
    }

    /// Connected peers.
    pub fn online(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.online)
            .map(|(id, _)| *id)
    }

    pub fn in_flight(&self) -> usize {
        self.peers.values().filter(|p| p.in_flight).count()
    }

    pub fn all(&self) -> impl Iterator<Item = (&DeviceId, &Peer)> {
        self.peers.iter()
    }

    /// Every enrolled device seen at least once: online or not, and when last seen.
    pub fn seen(&self) -> Vec<PeerSeen> {
        let mut list: Vec<PeerSeen> = self
            .peers
            .iter()
            .filter(|(_, p)| p.last_seen_ms > 0)
            .map(|(id, p)| PeerSeen {
                name: p.name.clone(),
                peer_id: id.to_string(),
                online: p.online,
                last_seen_ms: p.last_seen_ms,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }
}
