//! The chains of admitted changes: per chain (a device's store), its changes in order, back to
//! back in one buffer, and the hash of the last one.
//!
//! A chain only grows at its end, by a change whose record links to the current tip; so two
//! replicas holding the same position of a chain hold the same change, and a summary of tips
//! (one per chain) says everything about what a replica holds.

use crate::change::{hash_of, Hash};
use crate::record::ChainKey;
use std::collections::BTreeMap;

/// One chain's changes.
#[derive(Clone, Debug, Default)]
pub struct ChainLog {
    bytes: Vec<u8>,
    /// End offset in `bytes` of the change at each position (position `i + 1` ends at
    /// `ends[i]`).
    ends: Vec<u32>,
    tip: Option<Hash>,
}

impl ChainLog {
    /// Number of changes held (the position of the tip).
    pub fn len(&self) -> u32 {
        self.ends.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn tip(&self) -> Option<Hash> {
        self.tip
    }

    /// The change at 1-based position `seq`.
    pub fn get(&self, seq: u32) -> Option<&[u8]> {
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.bytes.get(start..end)
    }

    /// Hash of the change at `seq`.
    pub fn hash_at(&self, seq: u32) -> Option<Hash> {
        if seq == self.len() {
            return self.tip;
        }
        self.get(seq).map(hash_of)
    }

    /// Append the next change (the caller checked that it links to the tip).
    pub fn push(&mut self, bytes: &[u8], hash: Hash) {
        self.bytes.extend_from_slice(bytes);
        self.ends.push(self.bytes.len() as u32);
        self.tip = Some(hash);
    }

    /// Forget positions from `seq` on (a fork was proven there).
    pub fn truncate(&mut self, seq: u32) {
        let keep = seq.saturating_sub(1) as usize;
        if keep >= self.ends.len() {
            return;
        }
        self.ends.truncate(keep);
        let end = self.ends.last().copied().unwrap_or(0) as usize;
        self.bytes.truncate(end);
        self.tip = self.get(self.len()).map(hash_of);
    }

    /// Bytes held, for statistics.
    pub fn bytes_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Every chain of the ledger.
#[derive(Clone, Debug, Default)]
pub struct Chains {
    chains: BTreeMap<ChainKey, ChainLog>,
}

impl Chains {
    pub fn get(&self, key: ChainKey) -> Option<&ChainLog> {
        self.chains.get(&key)
    }

    pub fn entry(&mut self, key: ChainKey) -> &mut ChainLog {
        self.chains.entry(key).or_default()
    }

    pub fn remove(&mut self, key: ChainKey) {
        self.chains.remove(&key);
    }

    pub fn len_of(&self, key: ChainKey) -> u32 {
        self.chains.get(&key).map_or(0, ChainLog::len)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ChainKey, &ChainLog)> {
        self.chains.iter()
    }

    /// Number of chains.
    pub fn count(&self) -> usize {
        self.chains.len()
    }

    /// Total changes held.
    pub fn changes(&self) -> u64 {
        self.chains.values().map(|c| u64::from(c.len())).sum()
    }
}
