//! Merge a gatemesh ledger (live, or from an export) into PostgreSQL for HQ.
//!
//! Not built yet: this crate holds nothing so far.
