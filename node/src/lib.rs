//! gatemesh node: the device. The pure core (`gatemesh_crdt`: ledger, event model, gate logic,
//! the replica's protocol) is driven here by real I/O: files, the store, the clock, the network
//! (through `gatemesh_transport`), HTTP and standard input/output.
//!
//! Layout (noun modules):
//! - [`package`]: the event package on disk (event, certificates, manifest, keys, bulletins).
//! - [`organizer`]: the organizer's work: event, tickets, devices, bulletins.
//! - [`guestlist`]: the organizer's guest list as CSV, column mapping and row checks.
//! - [`device`]: opening a device: package, identity, store, ledger, bulletins.
//! - [`store`]: sled change log, durable before an admit is answered.
//! - [`node`]: `node run`: the actor owning the replica and the store.
//! - [`input`]: the one standard-input reader (`scan`, `node run`).
//! - [`events`]: the replica's events as JSON lines and live-stream values.
//! - [`api`]: the HTTP API (axum); handlers ask the node over a bounded queue.
//! - [`phone`]: a steward's phone's offline pack and snapshot, and pairing phones.
//! - [`metrics`]: `/metrics` (prometheus-client).
//! - [`openapi`]: the API's OpenAPI document (utoipa).
//! - [`web`]: the scanner page and the dashboard.
//! - [`bridge`]: the ledger side of the bridge to PostgreSQL (export, import, live).
//! - [`qr`]: QR images of codes.
//! - [`wallet`]: a rotating ticket's wallet page (live codes with no network).
//! - [`tls`]: the event CA, device certificates and the HTTPS listener (rustls).
//!
//! The command line, the demo and the process driver live in the binary (`main.rs`).

pub mod api;
pub mod apierror;
pub mod bridge;
pub mod conns;
pub mod device;
pub mod events;
pub mod guestlist;
pub mod input;
pub mod metrics;
pub mod node;
pub mod openapi;
pub mod organizer;
pub mod package;
pub mod phone;
pub mod qr;
pub mod store;
pub mod supervisor;
pub mod supervisor_api;
pub mod tls;
pub mod wallet;
pub mod web;

/// Milliseconds since the Unix epoch, from the system clock (edges only; the core takes `now`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
