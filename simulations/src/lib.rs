//! Benchmarks (`gatemesh-bench`) and, later, the deterministic mesh simulator.
//!
//! Each benchmark measures on this machine and reports what it measured: a readable table, or
//! one JSON object per line with `--json`. Goals are compared in BENCHMARKS.md, never asserted.

pub mod bench;
pub mod httpbench;
pub mod meshbench;
pub mod report;
