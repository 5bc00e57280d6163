//! Room `credential`: what a scanned code is, before any rule is applied.
//!
//! Owns the reading of the formats (`read`: GM1, GM2 live codes, legacy HMAC JSON, manifest
//! codes and NFC UIDs), the GM1 ticket format itself (`ticket`) and the rotating GM2 one
//! (`rotating`).
//!
//! May import: `record`, `event` and the leaves.

mod read;
pub mod rotating;
pub mod ticket;

pub use read::*;
