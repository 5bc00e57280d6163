//! The gatemesh mesh: libp2p over QUIC between enrolled devices.
//!
//! The only crate that names libp2p. Its [`driver`] runs the swarm: libp2p events become the
//! replica's inputs, the replica's network outputs become swarm calls; the node that owns the
//! replica decides everything about the ledger (a gossiped change is checked and written before
//! the driver reports it accepted).
//!
//! Layout:
//! - [`behaviour`]: the libp2p behaviour (gossipsub fast path, `/gatemesh/sync/2`
//!   request-response repair, identify, ping, allow-list admission) and the swarm builder.
//! - [`codec`]: length-prefixed, size-limited frames for the sync protocol.
//! - [`discovery`]: mDNS (mdns-sd) announce and browse of `_gatemesh._udp.local.`, loopback
//!   included, filtered by event id.
//! - [`driver`]: the swarm's loop (events in, outputs out), the dial rule, stale connections.
//! - [`topics`]: topic names.

pub mod behaviour;
pub mod codec;
pub mod discovery;
pub mod driver;
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
