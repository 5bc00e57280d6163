//! The libp2p behaviour of a gatemesh node and the swarm builder.
//!
//! - Admission: `allow_block_list` with only the enrolled devices' peer ids; any other peer's
//!   connection is denied during establishment (the PSK `pnet` cannot be used with QUIC).
//! - Fast path: gossipsub, anonymous messages (no author, sequence number or gossipsub
//!   signature), `validate_messages` (the node accepts or rejects each message after checking its
//!   records), content-hash message ids (a replayed change is the same message), flood publish
//!   for the lowest latency. Each change carries its device's signature, which the ledger
//!   checks once; a gossipsub signature would be checked again on every copy received,
//!   duplicates included, and would prove only which enrolled peer published, which the
//!   connection (QUIC with the peer's key, admitted by the allow-list) already proves for the
//!   peer that sent it. Messages that carry an author or a signature are refused (a node of an
//!   earlier version: sync still carries its changes).
//! - Repair: request-response `/gatemesh/sync/2` carrying the ledger's sync messages (tips and
//!   bounded batches of changes).
//! - identify and ping keep peers' addresses and liveness known.

use crate::codec::{SyncCodec, SYNC_FRAME_BYTES_MAX, SYNC_PROTOCOL};
use crate::MeshError;
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, ping, request_response, PeerId, Swarm,
};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Largest gossip message (one ledger change, a bundle of them, or one bulletin).
pub const GOSSIP_MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// Gossipsub heartbeat: short, so mesh repairs and IHAVE gossip happen within a fraction of a second.
pub const GOSSIP_HEARTBEAT: Duration = Duration::from_millis(200);
/// Gossipsub mesh degree (default 6).
pub const GOSSIP_MESH_N: usize = 3;
/// Established connections in all.
pub const CONNECTIONS_MAX: u32 = 512;
/// Connections per peer: two, so a restarted peer's new connection can replace the stale one.
pub const CONNECTIONS_PER_PEER_MAX: u32 = 2;
/// Connections being set up from outside.
pub const PENDING_INCOMING_MAX: u32 = 64;
/// A sync request unanswered for this long fails (and is retried by the periodic sync). Each
/// message carries at most a bounded batch, so this need not grow with the gap.
pub const SYNC_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent sync streams per connection.
pub const SYNC_STREAMS_MAX: usize = 8;
/// Identify/agent protocol version.
pub const PROTOCOL_VERSION: &str = "/gatemesh/1";

#[derive(NetworkBehaviour)]
pub struct MeshBehaviour {
    pub allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    pub limits: connection_limits::Behaviour,
    pub gossip: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<SyncCodec>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

/// What the swarm needs to know.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    pub keypair: Keypair,
    /// Peers allowed to connect (enrolled devices).
    pub allowed: Vec<PeerId>,
    /// The sync codec (its counter of refused frames is shared with the caller).
    pub sync_codec: SyncCodec,
}

/// The gossipsub configuration for 5–200 nodes on one LAN: low latency first.
pub fn gossip_config() -> Result<gossipsub::Config, MeshError> {
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| {
            let digest = Sha256::digest(&m.data);
            gossipsub::MessageId::from(digest[..20].to_vec())
        })
        .flood_publish(true)
        // The publisher floods to every peer; forwarding only repairs what flooding missed, so a
        // small mesh keeps duplicate receptions (each one decrypted, decoded, hashed) down.
        .mesh_n(GOSSIP_MESH_N)
        .mesh_n_low(GOSSIP_MESH_N - 1)
        .mesh_n_high(GOSSIP_MESH_N + 2)
        .mesh_outbound_min(1)
        .heartbeat_interval(GOSSIP_HEARTBEAT)
        .max_transmit_size(GOSSIP_MESSAGE_BYTES_MAX)
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| MeshError::Libp2p(e.to_string()))
}

/// A swarm on QUIC with the mesh behaviour. Call `listen_on` afterwards.
pub fn build_swarm(config: MeshConfig) -> Result<Swarm<MeshBehaviour>, MeshError> {
    let err = |e: &dyn std::fmt::Display| MeshError::Libp2p(e.to_string());
    let gossip = gossip_config()?;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair)
        .with_tokio()
        .with_quic_config(|mut c| {
            c.keep_alive_interval = Duration::from_secs(1);
            c.max_idle_timeout = 5_000;
            c.max_stream_data = SYNC_FRAME_BYTES_MAX as u32 + 1024;
            c
        })
        .with_behaviour(|key| {
            let mut allow =
                allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
            for p in &config.allowed {
                allow.allow_peer(*p);
            }
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_established(Some(CONNECTIONS_MAX))
                .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER_MAX))
                .with_max_pending_incoming(Some(PENDING_INCOMING_MAX));
            let gossip =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip)?;
            let sync = request_response::Behaviour::with_codec(
                config.sync_codec.clone(),
                [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(SYNC_REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(SYNC_STREAMS_MAX),
            );
            let identify = identify::Behaviour::new(identify::Config::new(
                PROTOCOL_VERSION.into(),
                key.public(),
            ));
            let ping =
                ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(2)));
            Ok(MeshBehaviour {
                allow,
                limits: connection_limits::Behaviour::new(limits),
                gossip,
                sync,
                identify,
                ping,
            })
        })
        .map_err(|e| err(&e))?
        // A stream's protocol is named and its first bytes sent in one flight (every node
        // speaks the same protocols): a sync request or a room ask costs one round trip, not two.
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(3600))
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build();
    Ok(swarm)
}

/// The libp2p peer id of a device's ed25519 public key bytes.
pub fn peer_id_of(public_key: &[u8; 32]) -> Result<PeerId, MeshError> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(public_key)
        .map_err(|e| MeshError::Libp2p(e.to_string()))?;
    Ok(PeerId::from_public_key(&libp2p::identity::PublicKey::from(
        pk,
    )))
}

/// The libp2p keypair of a device's ed25519 secret key bytes (the same key signs records).
pub fn keypair_of(secret: [u8; 32]) -> Result<Keypair, MeshError> {
    Keypair::ed25519_from_bytes(secret).map_err(|e| MeshError::Libp2p(e.to_string()))
}
