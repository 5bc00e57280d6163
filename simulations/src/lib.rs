//! Benchmarks (`gatemesh-bench`) and the deterministic mesh simulator (`gatemesh-sim`).
//!
//! Each benchmark measures on this machine and reports what it measured: a readable table, or
//! one JSON object per line with `--json`. Goals are compared in BENCHMARKS.md, never asserted.

pub mod baseline;
pub mod bench;
pub mod bridgebench;
pub mod catchupbench;
pub mod httpbench;
pub mod meshbench;
pub mod phonebench;
pub mod report;
pub mod roombench;
pub mod searchbench;
pub mod sim;
pub mod statsbench;
pub mod venuebench;
