//! gatemesh node: the device daemon and the `gatemesh` CLI.
//!
//! Layout (noun modules; the pure ones take bytes and `now` and give bytes out):
//! - [`api`]: the HTTP API (axum); handlers ask the node's loop over a bounded queue.
//! - [`bulletin`]: organizer-signed, versioned revocations and additions spread on the mesh.
//! - [`signed`]: organizer- and device-signed JSON envelopes.
//! - [`event`]: the event package (`event.json`, organizer keys), pure parsing plus file edges.
//! - [`device`]: device identity and organizer-signed certificates; the roster built from them.
//! - [`ticket`]: the GM1 signed ticket format.
//! - [`manifest`]: the signed offline manifest (seed `offline-scanning-flow.md`).
//! - [`credential`]: what a scanned code is: GM1, legacy HMAC JSON or manifest code/NFC UID.
//! - [`policy`]: the decision, in the order DESIGN §5 fixes, with its reason codes.
//! - [`gate`]: a device's gate logic: credential + policy + ledger, pure.
//! - [`store`]: sled change log + snapshots, durable before an admit is answered.
//! - [`mesh`]: `node run`: the device on the mesh (swarm + gate + store in one loop).
//! - [`procs`]: driving `node run` processes (the demo, benchmarks, tests).
//! - [`qr`]: QR images of codes.
//! - [`demo`]: `gatemesh demo`, the one-command tour.
//! - [`cli`]: the organizer and steward commands.

pub mod api;
pub mod bridge;
pub mod bulletin;
pub mod cli;
pub mod credential;
pub mod demo;
pub mod device;
pub mod event;
pub mod gate;
pub mod manifest;
pub mod mesh;
pub mod offline;
pub mod policy;
pub mod procs;
pub mod qr;
pub mod signed;
pub mod stats;
pub mod store;
pub mod ticket;
pub mod web;

/// Milliseconds since the Unix epoch, from the system clock (edges only; the core takes `now`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
