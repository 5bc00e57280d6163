//! The libp2p mesh (QUIC, mDNS discovery, gossip fast path, sync repair, enrolled devices only).
//!
//! Not built yet: this crate holds nothing so far. The ledger it will carry is `gatemesh-crdt`,
//! whose `Ledger::apply_changes`, `generate_sync` and `receive_sync` are the entry points it will
//! drive.
