//! The simulated network: what travels, its condition (splits, one-way cuts, loss,
//! duplication), latency, and delivery to the replicas, where the harness faults that concern
//! the network act. Sync is request-response, as on `/gatemesh/sync/2`: a request or its answer
//! that cannot arrive comes back as a failure to the asker after [`REQUEST_TIMEOUT_MS`].

use super::world::world;
use super::{Fault, Sim};
use gatemesh_crdt::protocol::{Asked, Input, Topic, KIND_BULLETIN, KIND_HELLO};
use rand::Rng;

/// How long a sync request waits for its answer before it fails.
pub const REQUEST_TIMEOUT_MS: u64 = 300;
/// Most messages in flight at once; beyond it the network drops (a bounded queue).
const IN_FLIGHT_MAX: usize = 200_000;

/// What travels.
#[derive(Clone, Debug)]
pub enum Payload {
    Gossip {
        topic: Topic,
        data: Vec<u8>,
    },
    Request {
        token: u64,
        data: Vec<u8>,
    },
    Answer {
        token: u64,
        data: Vec<u8>,
    },
    /// The request `token` got no answer.
    Failed {
        token: u64,
    },
}

#[derive(Debug)]
pub struct Msg {
    pub at: u64,
    pub seq: u64,
    pub from: usize,
    pub to: usize,
    pub payload: Payload,
}

impl PartialEq for Msg {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Msg {}
impl PartialOrd for Msg {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Msg {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq)) // a min-heap
    }
}

/// The network's condition now.
#[derive(Clone, Debug, Default)]
pub struct Net {
    /// Symmetric split: side of each node.
    pub split: Option<Vec<bool>>,
    /// One-way: messages from `.0` to `.1` are lost.
    pub oneway: Option<(usize, usize)>,
    pub loss: f64,
    pub dup: f64,
}

impl Net {
    pub fn whole(&self) -> bool {
        self.split.is_none() && self.oneway.is_none() && self.loss == 0.0
    }
    fn passes(&self, from: usize, to: usize) -> bool {
        if let Some(side) = &self.split {
            if side[from] != side[to] {
                return false;
            }
        }
        self.oneway != Some((from, to))
    }
}

/// One hello request in this many is lost silently.
const HELLO_LOST_EVERY: u64 = 7;

impl Sim {
    fn push(&mut self, at: u64, from: usize, to: usize, payload: Payload) {
        if self.queue.len() >= IN_FLIGHT_MAX {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        self.queue.push(Msg {
            at,
            seq,
            from,
            to,
            payload,
        });
    }

    /// The exchange `token` failed: the asker hears of it after the timeout.
    fn fail_later(&mut self, token: u64) {
        if let Some(r) = self.requests.get(&token).copied() {
            self.push(
                self.now + REQUEST_TIMEOUT_MS,
                r.to,
                r.from,
                Payload::Failed { token },
            );
        }
    }

    pub(super) fn send(&mut self, from: usize, to: usize, payload: Payload) {
        self.outcome.messages += 1;
        // One hello in HELLO_LOST_EVERY is lost without a word, as on a connection the peer
        // was replacing: the asker hears of no failure (picked by the token, so the seed's
        // draws stay as they were).
        if let Payload::Request { token, data } = &payload {
            if data.first() == Some(&KIND_HELLO) && token % HELLO_LOST_EVERY == 0 {
                return;
            }
        }
        if !self.net.passes(from, to) || self.rng.gen_bool(self.net.loss) {
            if let Payload::Request { token, .. } | Payload::Answer { token, .. } = payload {
                self.fail_later(token);
            }
            return;
        }
        // Gossip may arrive twice; a request-response stream does not.
        let gossip = matches!(payload, Payload::Gossip { .. });
        let copies = if gossip && self.rng.gen_bool(self.net.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let latency = self.rng.gen_range(1..=40);
            self.push(self.now + latency, from, to, payload.clone());
        }
    }

    pub(super) fn deliver(&mut self, m: Msg) {
        if self.nodes[m.to].replica.is_none() {
            if let Payload::Request { token, .. } = m.payload {
                self.fail_later(token);
            }
            return; // down: the message is lost
        }
        if self.fault == Some(Fault::MergeDropsRecords) && m.to == 0 {
            return self.drop_at_zero(m);
        }
        let from = self.devices[m.from];
        match m.payload {
            Payload::Gossip { topic, data } => self.gossip(m.from, m.to, topic, data),
            Payload::Request { token, data } => {
                if self.bulletin_ignored(m.to, &data) {
                    return self.send(
                        m.to,
                        m.from,
                        Payload::Answer {
                            token,
                            data: Vec::new(),
                        },
                    );
                }
                self.input(m.to, Input::SyncRequest { from, token, data });
            }
            Payload::Answer { token, data } => {
                match self.requests.remove(&token).map(|r| r.asked) {
                    Some(Asked::Sync) => self.input(m.to, Input::SyncAnswer { from, data }),
                    Some(Asked::Room) => self.input(m.to, Input::RoomAnswer { from, data }),
                    Some(Asked::Bulletin) | None => {}
                }
            }
            Payload::Failed { token } => {
                if let Some(r) = self.requests.remove(&token) {
                    let from = self.devices[r.to];
                    self.input(
                        m.to,
                        Input::SyncFailed {
                            from,
                            asked: r.asked,
                        },
                    );
                }
            }
        }
    }

    fn gossip(&mut self, from: usize, to: usize, topic: Topic, data: Vec<u8>) {
        let from_device = self.devices[from];
        match (topic, self.fault) {
            (Topic::Ledger, Some(Fault::StaleIndex)) => {
                let at = self.now + 5_000;
                self.nodes[to].late.push((at, from, data));
            }
            (Topic::Control, _) if self.bulletin_ignored(to, &data) => {}
            _ => self.input(
                to,
                Input::Gossip {
                    from: from_device,
                    token: 0,
                    topic,
                    data,
                },
            ),
        }
    }

    /// Whether a bulletin reaching node `n` is kept from its replica (fault BulletinsIgnored);
    /// either way the node now holds it.
    fn bulletin_ignored(&mut self, n: usize, data: &[u8]) -> bool {
        let body = match data.split_first() {
            Some((&KIND_BULLETIN, b)) => b,
            _ => data,
        };
        if body == world().refund.bytes() {
            self.nodes[n].has_refund = true;
        }
        self.fault == Some(Fault::BulletinsIgnored)
            && (body.first() == Some(&b'{') || data.first() == Some(&KIND_BULLETIN))
    }

    /// Fault MergeDropsRecords: node 0 takes nothing in; its sync exchanges end empty.
    fn drop_at_zero(&mut self, m: Msg) {
        match m.payload {
            Payload::Request { token, .. } => self.send(
                0,
                m.from,
                Payload::Answer {
                    token,
                    data: Vec::new(),
                },
            ),
            Payload::Answer { token, .. } | Payload::Failed { token } => {
                if let Some(r) = self.requests.remove(&token) {
                    let from = self.devices[r.to];
                    self.input(
                        0,
                        Input::SyncAnswer {
                            from,
                            data: Vec::new(),
                        },
                    );
                }
            }
            Payload::Gossip { .. } => {}
        }
    }
}
