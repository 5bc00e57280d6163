//! Room `credential`: what a scanned code is, before any rule is applied.
//!
//! Owns the reading of the three formats (`read`: GM1, legacy HMAC JSON, manifest codes and NFC
//! UIDs) and the GM1 ticket format itself (`ticket`).
//!
//! May import: `record`, `event` and the leaves.

mod read;
pub mod ticket;

pub use read::*;
