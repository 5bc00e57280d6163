//! Room `record`: the signed scan record and its bytes, and the time it carries.
//!
//! Owns the record (`scan`: `ScanBody`, its limits, its place in a chain), the canonical
//! Automerge change that carries it (`change`), the hybrid logical clock (`hlc`) and the
//! calendar helpers every room formats times with (`date`).
//!
//! May import: the leaves (`json`, `reason`). Every other room may import this one.

pub mod change;
pub mod date;
pub mod hlc;
mod scan;

pub use scan::*;
