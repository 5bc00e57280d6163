//! The swarm's loop: libp2p events become replica inputs, the replica's network outputs become
//! swarm calls. It owns the swarm, mDNS discovery, the dial rule, the stale-connection close and
//! the maps between libp2p peer ids and device ids; it decides nothing about the ledger.
//!
//! Two bounded channels link it to the node that owns the replica: [`NetEvent`]s in, network
//! [`Output`]s out. Tokens for gossip validations and sync responses are drawn here and kept in
//! bounded maps (the oldest is forgotten past the bound; libp2p times the message out).

use crate::behaviour::{self, MeshBehaviour, MeshBehaviourEvent};
use crate::discovery::{Discovered, Discovery};
use crate::{build_swarm, codec::SyncCodec, topics, MeshConfig, MeshError};
use futures::StreamExt;
use gatemesh_crdt::protocol::{Acceptance, Asked, Input, Output, Token, Topic};
use gatemesh_crdt::DeviceId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError, SwarmEvent};
use libp2p::{gossipsub, multiaddr::Protocol, request_response, Multiaddr, PeerId, Swarm};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often known peers (static `--peer` or discovered) are redialed while not connected.
pub const REDIAL_INTERVAL: Duration = Duration::from_millis(500);
/// The peer with the smaller id dials; the other dials too if no connection came within this.
pub const DIAL_FALLBACK: Duration = Duration::from_secs(1);
/// Most discovered peers remembered.
pub const KNOWN_PEERS_MAX: usize = 1024;
/// Gossip messages awaiting the replica's verdict, and sync requests awaiting its response.
pub const OUTSTANDING_MAX: usize = 8192;
/// Events to the node and commands from it, queued.
pub const CHANNEL_MAX: usize = 4096;

/// What the driver tells the node.
#[derive(Debug)]
pub enum NetEvent {
    /// For the replica.
    Input(Input),
    Started {
        peer_id: String,
    },
    Listening {
        addr: String,
    },
    /// A connection refused at admission (not enrolled, revoked, blocked).
    RejectedPeer {
        who: String,
        reason: String,
    },
    /// A message refused before the replica saw it (unknown topic or source).
    RejectedMessage {
        from: String,
        reason: String,
    },
    /// An older connection of a peer that connected again was closed.
    StaleClosed,
}

/// How the mesh runs.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    pub secret: [u8; 32],
    pub event_id: String,
    pub listen: Vec<Multiaddr>,
    pub peers: Vec<Multiaddr>,
    pub mdns: bool,
}

struct Driver {
    swarm: Swarm<MeshBehaviour>,
    events: mpsc::Sender<NetEvent>,
    ledger_topic: gossipsub::IdentTopic,
    control_topic: gossipsub::IdentTopic,
    device_of: HashMap<PeerId, DeviceId>,
    peer_of: HashMap<DeviceId, PeerId>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    known: HashMap<PeerId, (Vec<Multiaddr>, Instant)>,
    static_peers: Vec<Multiaddr>,
    local: PeerId,
    next_token: Token,
    validations: BTreeMap<Token, (gossipsub::MessageId, PeerId)>,
    responses: BTreeMap<Token, request_response::ResponseChannel<Vec<u8>>>,
    requests: HashMap<request_response::OutboundRequestId, (DeviceId, Asked)>,
    refused: Arc<AtomicU64>,
    refused_seen: u64,
}

/// Run the mesh until the command channel closes.
pub async fn run(
    config: DriverConfig,
    mut commands: mpsc::Receiver<Output>,
    events: mpsc::Sender<NetEvent>,
) -> Result<(), MeshError> {
    let mut d = Driver::new(&config, events)?;
    let _ = d
        .events
        .send(NetEvent::Started {
            peer_id: d.local.to_string(),
        })
        .await;
    let (_keep, idle) = mpsc::channel::<Discovered>(1);
    let mut discovered = idle;
    let mut discovery: Option<Discovery> = None;
    let mut redial = tokio::time::interval(REDIAL_INTERVAL);
    loop {
        tokio::select! {
            ev = d.swarm.select_next_some() => {
                if let (SwarmEvent::NewListenAddr { address, .. }, None, true) = (&ev, &discovery, config.mdns) {
                    if let Some(port) = quic_port(address) {
                        let (dsc, rx) = Discovery::start(&config.event_id, &d.local.to_string(), port)?;
                        discovery = Some(dsc);
                        discovered = rx;
                    }
                }
                d.on_swarm(ev).await;
            }
            Some(found) = discovered.recv() => d.on_discovered(found),
            cmd = commands.recv() => match cmd {
                Some(out) => d.carry_out(out),
                None => break,
            },
            _ = redial.tick() => d.redial().await,
        }
    }
    if let Some(dsc) = discovery {
        dsc.stop();
    }
    Ok(())
}

impl Driver {
    fn new(config: &DriverConfig, events: mpsc::Sender<NetEvent>) -> Result<Driver, MeshError> {
        let keypair = behaviour::keypair_of(config.secret)?;
        let local = keypair.public().to_peer_id();
        let codec = SyncCodec::default();
        let refused = codec.refused.clone();
        let mut swarm = build_swarm(MeshConfig {
            keypair,
            allowed: Vec::new(),
            sync_codec: codec,
        })?;
        let ledger_topic = gossipsub::IdentTopic::new(topics::ledger(&config.event_id));
        let control_topic = gossipsub::IdentTopic::new(topics::control(&config.event_id));
        let sub = |s: &mut Swarm<MeshBehaviour>, t: &gossipsub::IdentTopic| {
            s.behaviour_mut()
                .gossip
                .subscribe(t)
                .map_err(|e| MeshError::Libp2p(e.to_string()))
        };
        sub(&mut swarm, &ledger_topic)?;
        sub(&mut swarm, &control_topic)?;
        let listen = if config.listen.is_empty() {
            vec!["/ip4/0.0.0.0/udp/0/quic-v1"
                .parse()
                .map_err(|e: libp2p::multiaddr::Error| MeshError::Libp2p(e.to_string()))?]
        } else {
            config.listen.clone()
        };
        for addr in listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| MeshError::Address(addr.to_string(), e.to_string()))?;
        }
        for p in &config.peers {
            let _ = swarm.dial(p.clone());
        }
        Ok(Driver {
            swarm,
            events,
            ledger_topic,
            control_topic,
            device_of: HashMap::new(),
            peer_of: HashMap::new(),
            connections: HashMap::new(),
            known: HashMap::new(),
            static_peers: config.peers.clone(),
            local,
            next_token: 1,
            validations: BTreeMap::new(),
            responses: BTreeMap::new(),
            requests: HashMap::new(),
            refused,
            refused_seen: 0,
        })
    }

    async fn tell(&mut self, e: NetEvent) {
        let _ = self.events.send(e).await;
    }

    async fn input(&mut self, i: Input) {
        self.tell(NetEvent::Input(i)).await;
    }

    fn name(&self, p: &PeerId) -> String {
        self.device_of
            .get(p)
            .map_or_else(|| p.to_string(), |d| d.to_string())
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }

    async fn on_swarm(&mut self, ev: SwarmEvent<MeshBehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.tell(NetEvent::Listening {
                    addr: address.to_string(),
                })
                .await
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.on_connected(peer_id, connection_id, endpoint.is_listener())
                    .await
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => self.on_closed(peer_id, connection_id).await,
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                send_back_addr,
                ..
            } => {
                let who = send_back_addr.to_string();
                self.tell(NetEvent::RejectedPeer {
                    who,
                    reason: cause.to_string(),
                })
                .await
            }
            SwarmEvent::OutgoingConnectionError {
                error: DialError::Denied { cause },
                peer_id,
                ..
            } => {
                let who = peer_id.map(|p| p.to_string()).unwrap_or_default();
                self.tell(NetEvent::RejectedPeer {
                    who,
                    reason: cause.to_string(),
                })
                .await
            }
            SwarmEvent::Behaviour(MeshBehaviourEvent::Gossip(e)) => self.on_gossip(e).await,
            SwarmEvent::Behaviour(MeshBehaviourEvent::Sync(e)) => self.on_sync(e).await,
            _ => {}
        }
    }

    /// A new connection. When a peer we already hold a connection to connects to us again, the
    /// old one is stale (it restarted with the same key; rust-libp2p #5097): close it so gossip
    /// flows on the new one. Only the receiving side closes, so both ends agree on which stays.
    async fn on_connected(&mut self, peer: PeerId, id: ConnectionId, incoming: bool) {
        let list = self.connections.entry(peer).or_default();
        let first = list.is_empty();
        let stale: Vec<_> = if incoming {
            std::mem::take(list)
        } else {
            Vec::new()
        };
        list.push(id);
        for old in stale {
            self.swarm.close_connection(old);
            self.tell(NetEvent::StaleClosed).await;
        }
        if !first && !incoming {
            return; // a second dial of ours: the first connection carries on
        }
        if let Some(device) = self.device_of.get(&peer).copied() {
            self.input(Input::PeerUp { peer: device }).await;
        }
    }

    async fn on_closed(&mut self, peer: PeerId, id: ConnectionId) {
        let list = self.connections.entry(peer).or_default();
        list.retain(|c| *c != id);
        if list.is_empty() {
            self.connections.remove(&peer);
            if let Some(device) = self.device_of.get(&peer).copied() {
                self.input(Input::PeerDown { peer: device }).await;
            }
        }
    }

    async fn on_gossip(&mut self, e: gossipsub::Event) {
        let (propagation_source, message_id, message) = match e {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => (propagation_source, message_id, message),
            // What we published before it listened did not reach it: the replica syncs.
            gossipsub::Event::Subscribed { peer_id, topic }
                if topic == self.ledger_topic.hash() =>
            {
                if let Some(device) = self.device_of.get(&peer_id).copied() {
                    self.input(Input::PeerListening { peer: device }).await;
                }
                return;
            }
            _ => return,
        };
        let topic = if message.topic == self.ledger_topic.hash() {
            Some(Topic::Ledger)
        } else if message.topic == self.control_topic.hash() {
            Some(Topic::Control)
        } else {
            None
        };
        // The enrolled peer that sent it; the records inside carry their own signatures.
        let from = self.device_of.get(&propagation_source).copied();
        let (Some(topic), Some(from)) = (topic, from) else {
            self.validate(&message_id, &propagation_source, Acceptance::Reject);
            let from = self.name(&propagation_source);
            let reason = "sender not enrolled or unknown topic".to_string();
            return self.tell(NetEvent::RejectedMessage { from, reason }).await;
        };
        let token = self.token();
        self.validations
            .insert(token, (message_id, propagation_source));
        bound(&mut self.validations);
        self.input(Input::Gossip {
            from,
            token,
            topic,
            data: message.data,
        })
        .await;
    }

    fn validate(&mut self, id: &gossipsub::MessageId, from: &PeerId, a: Acceptance) {
        let acceptance = match a {
            Acceptance::Accept => gossipsub::MessageAcceptance::Accept,
            Acceptance::Ignore => gossipsub::MessageAcceptance::Ignore,
            Acceptance::Reject => gossipsub::MessageAcceptance::Reject,
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(id, from, acceptance);
    }

    async fn on_sync(&mut self, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message};
        match e {
            Event::Message { peer, message, .. } => {
                let Some(from) = self.device_of.get(&peer).copied() else {
                    return;
                };
                match message {
                    Message::Request {
                        request, channel, ..
                    } => {
                        let token = self.token();
                        self.responses.insert(token, channel);
                        bound(&mut self.responses);
                        self.input(Input::SyncRequest {
                            from,
                            token,
                            data: request,
                        })
                        .await;
                    }
                    Message::Response {
                        request_id,
                        response,
                    } => {
                        let input = match self.requests.remove(&request_id) {
                            Some((from, Asked::Sync)) => Input::SyncAnswer {
                                from,
                                data: response,
                            },
                            Some((from, Asked::Room)) => Input::RoomAnswer {
                                from,
                                data: response,
                            },
                            Some((_, Asked::Bulletin)) | None => return,
                        };
                        self.input(input).await;
                    }
                }
            }
            Event::OutboundFailure { request_id, .. } => {
                if let Some((from, asked)) = self.requests.remove(&request_id) {
                    self.input(Input::SyncFailed { from, asked }).await;
                }
            }
            Event::InboundFailure { peer, .. } => {
                let from = self.device_of.get(&peer).copied();
                self.input(Input::FrameRefused { from }).await;
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// Carry out one network output of the replica.
    fn carry_out(&mut self, out: Output) {
        match out {
            Output::Publish { topic, data } => {
                let t = match topic {
                    Topic::Ledger => self.ledger_topic.clone(),
                    Topic::Control => self.control_topic.clone(),
                };
                // No peer yet: the periodic sync carries it when one connects.
                if let Err(e) = self.swarm.behaviour_mut().gossip.publish(t, data) {
                    tracing::debug!("publish: {e}");
                }
            }
            Output::Send { to, data, asked } => {
                if let Some(peer) = self.peer_of.get(&to).copied() {
                    let id = self.swarm.behaviour_mut().sync.send_request(&peer, data);
                    self.requests.insert(id, (to, asked));
                }
            }
            Output::Respond { token, data } => {
                if let Some(channel) = self.responses.remove(&token) {
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, data);
                }
            }
            Output::Validate { token, acceptance } => {
                if let Some((id, from)) = self.validations.remove(&token) {
                    self.validate(&id, &from, acceptance);
                }
            }
            Output::Disconnect { peer } => {
                if let Some(p) = self.peer_of.get(&peer).copied() {
                    let _ = self.swarm.disconnect_peer_id(p);
                }
            }
            Output::Allow { peer, key } => self.allow(peer, key.as_bytes()),
            Output::Deny { peer } => {
                if let Some(p) = self.peer_of.get(&peer).copied() {
                    self.swarm.behaviour_mut().allow.disallow_peer(p);
                }
            }
            _ => {}
        }
    }

    fn allow(&mut self, device: DeviceId, key: &[u8; 32]) {
        let Ok(peer) = behaviour::peer_id_of(key) else {
            return;
        };
        self.device_of.insert(peer, device);
        self.peer_of.insert(device, peer);
        self.swarm.behaviour_mut().allow.allow_peer(peer);
        self.dial_known(peer);
    }

    fn on_discovered(&mut self, found: Discovered) {
        let Ok(peer) = found.peer_id.parse::<PeerId>() else {
            return;
        };
        if !self.device_of.contains_key(&peer) {
            return; // not enrolled: never dialed
        }
        if !self.known.contains_key(&peer) && self.known.len() >= KNOWN_PEERS_MAX {
            return;
        }
        let addrs = found.addrs.iter().map(|ip| {
            Multiaddr::from(*ip)
                .with(Protocol::Udp(found.port))
                .with(Protocol::QuicV1)
        });
        let entry = self
            .known
            .entry(peer)
            .or_insert_with(|| (Vec::new(), Instant::now()));
        for a in addrs {
            if !entry.0.contains(&a) {
                entry.0.push(a);
            }
        }
        self.dial_known(peer);
    }

    /// Dial a discovered peer if the fixed rule says we should: the smaller peer id dials at
    /// once, the larger only when nothing came after [`DIAL_FALLBACK`] (a peer that restarted
    /// while we still hold its old connection).
    fn dial_known(&mut self, peer: PeerId) {
        let Some((addrs, first_seen)) = self.known.get(&peer) else {
            return;
        };
        if !self.swarm.behaviour().allow.allowed_peers().contains(&peer) {
            return; // blocked
        }
        if self.swarm.is_connected(&peer)
            || (self.local > peer && first_seen.elapsed() < DIAL_FALLBACK)
        {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addrs.clone())
            .build();
        let _ = self.swarm.dial(opts);
    }

    async fn redial(&mut self) {
        let known: Vec<PeerId> = self.known.keys().copied().collect();
        for p in known {
            self.dial_known(p);
        }
        for addr in self.static_peers.clone() {
            let peer = addr.iter().find_map(|p| match p {
                Protocol::P2p(id) => Some(id),
                _ => None,
            });
            match peer {
                Some(p) if self.swarm.is_connected(&p) => {}
                Some(p) => {
                    let opts = DialOpts::peer_id(p)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .addresses(vec![addr])
                        .build();
                    let _ = self.swarm.dial(opts);
                }
                None => {
                    let _ = self.swarm.dial(addr);
                }
            }
        }
        // Frames the codec refused (oversized, cut short) are counted by the replica.
        let refused = self.refused.load(Ordering::Relaxed);
        for _ in self.refused_seen..refused {
            self.input(Input::FrameRefused { from: None }).await;
        }
        self.refused_seen = refused;
    }
}

/// Forget the oldest entries past [`OUTSTANDING_MAX`].
fn bound<V>(map: &mut BTreeMap<Token, V>) {
    while map.len() > OUTSTANDING_MAX {
        map.pop_first();
    }
}

fn quic_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Udp(port) => Some(port),
        _ => None,
    })
}
