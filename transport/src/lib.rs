//! The gatemesh mesh: libp2p over QUIC between enrolled devices.
//!
//! This crate builds and describes the network parts; the node's event loop owns the swarm and the
//! ledger together, so a gossiped change is validated against the ledger before it is accepted.
//!
//! Layout:
//! - [`behaviour`]: the libp2p behaviour (gossipsub fast path, `/gatemesh/sync/2`
//!   request-response repair, identify, ping, allow-list admission) and the swarm builder.
//! - [`codec`]: length-prefixed, size-limited frames for the sync protocol.
//! - [`discovery`]: mDNS (mdns-sd) announce and browse of `_gatemesh._udp.local.`, loopback
//!   included, filtered by event id.
//! - [`topics`]: topic names.

pub mod behaviour;
pub mod codec;
pub mod discovery;
pub mod topics;

pub use behaviour::{build_swarm, MeshBehaviour, MeshBehaviourEvent, MeshConfig};
pub use discovery::{Discovered, Discovery};
pub use libp2p;

/// Errors of the mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("libp2p: {0}")]
    Libp2p(String),
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
    #[error("address {0}: {1}")]
    Address(String, String),
}
