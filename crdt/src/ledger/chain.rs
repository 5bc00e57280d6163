//! The chains of admitted changes: per chain (a device's store), its changes in order, back to
//! back in one buffer, and the hash of the last one.
//!
//! A chain only grows at its end, by a change whose record links to the current tip; so two
//! replicas holding the same position of a chain hold the same change, and a summary of tips
//! (one per chain) says everything about what a replica holds.

use crate::record::change::{hash_of, Hash};
use crate::record::ChainKey;
use std::collections::BTreeMap;

/// Bytes of one block of a chain's changes. Blocks are allocated at this size and never grow,
/// so a chain of half a million changes holds what they weigh, not up to twice that (as one
/// growing buffer would after its last doubling).
const BLOCK_BYTES: usize = 256 * 1024;

/// One chain's changes.
#[derive(Clone, Debug, Default)]
pub struct ChainLog {
    /// Changes back to back; a change never straddles two blocks (the rest of a block that
    /// cannot hold the next change is left empty).
    blocks: Vec<Vec<u8>>,
    /// End offset of the change at each position (position `i + 1` ends at `ends[i]`),
    /// counted over the blocks as if laid end to end at [`BLOCK_BYTES`] each.
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
        let previous = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let block = end.checked_sub(1)? / BLOCK_BYTES;
        let start = previous.max(block * BLOCK_BYTES);
        self.blocks
            .get(block)?
            .get(start - block * BLOCK_BYTES..end - block * BLOCK_BYTES)
    }

    /// Hash of the change at `seq`.
    pub fn hash_at(&self, seq: u32) -> Option<Hash> {
        if seq == self.len() {
            return self.tip;
        }
        self.get(seq).map(hash_of)
    }

    /// Append the next change (the caller checked that it links to the tip, and that it is
    /// under [`BLOCK_BYTES`]).
    pub fn push(&mut self, bytes: &[u8], hash: Hash) {
        let fits = self
            .blocks
            .last()
            .is_some_and(|b| b.len() + bytes.len() <= BLOCK_BYTES);
        if !fits {
            self.blocks
                .push(Vec::with_capacity(BLOCK_BYTES.max(bytes.len())));
        }
        let last = self.blocks.len() - 1;
        let block = &mut self.blocks[last];
        block.extend_from_slice(bytes);
        self.ends.push((last * BLOCK_BYTES + block.len()) as u32);
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
        let blocks = end.div_ceil(BLOCK_BYTES);
        self.blocks.truncate(blocks);
        if let Some(last) = self.blocks.last_mut() {
            last.truncate(end - (blocks - 1) * BLOCK_BYTES);
        }
        self.tip = self.get(self.len()).map(hash_of);
    }

    /// Bytes held, for statistics.
    pub fn bytes_len(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn change(i: u32) -> Vec<u8> {
        let mut c = i.to_be_bytes().to_vec();
        c.resize(100 + (i as usize * 37) % 3000, (i % 251) as u8);
        c
    }

    #[test]
    fn changes_come_back_across_blocks_and_after_truncation() {
        let mut log = ChainLog::default();
        let all: Vec<Vec<u8>> = (0..600).map(change).collect();
        for c in &all {
            log.push(c, hash_of(c));
        }
        assert!(log.blocks.len() > 3, "the test crosses blocks");
        for (i, c) in all.iter().enumerate() {
            assert_eq!(log.get(i as u32 + 1), Some(c.as_slice()), "change {i}");
        }
        assert_eq!(log.get(0), None);
        assert_eq!(log.get(601), None);
        for cut in [599, 400, 173, 1] {
            log.truncate(cut + 1);
            assert_eq!(log.len(), cut);
            assert_eq!(log.tip(), Some(hash_of(&all[cut as usize - 1])));
            assert_eq!(log.get(cut), Some(all[cut as usize - 1].as_slice()));
            assert_eq!(log.get(cut + 1), None);
        }
        for c in &all[1..] {
            log.push(c, hash_of(c));
        }
        for (i, c) in all.iter().enumerate() {
            assert_eq!(
                log.get(i as u32 + 1),
                Some(c.as_slice()),
                "change {i} again"
            );
        }
        log.truncate(1);
        assert!(log.is_empty() && log.blocks.is_empty() && log.tip().is_none());
    }
}
