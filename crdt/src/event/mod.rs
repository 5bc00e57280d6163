//! Room `event`: what the organizer decided before the doors opened.
//!
//! Owns the event file (`config`: zones, gates, tiers and their entry rules, festival days),
//! device certificates and the roster they make (`certificate`, `roster`), the signed offline
//! manifest and the search over its attendees (`manifest`, `search`), phones' pairing passes
//! (`pass`), the entry rules in force
//! (`rules`) and organizer-signed envelopes (`signed`).
//!
//! May import: `record` and the leaves.

pub mod certificate;
mod config;
pub mod manifest;
pub mod pass;
pub mod roster;
pub mod rules;
pub mod search;
pub mod signed;

pub use config::*;
