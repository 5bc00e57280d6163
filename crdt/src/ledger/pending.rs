//! Changes that arrived before the change they link to: held in memory, bounded per peer and in
//! total (count and bytes), never stored, and dropped with a counter when over the bound. Sync
//! brings back anything dropped; a peer flooding changes with missing links only fills its own
//! share.

use crate::record::change::Candidate;
use crate::record::ChainKey;
use std::collections::{BTreeMap, HashMap};

/// Most changes waiting in total.
pub const PENDING_CHANGES_MAX: usize = 8192;
/// Most bytes of changes waiting in total.
pub const PENDING_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Most changes waiting that one peer sent.
pub const PENDING_PER_PEER_MAX: usize = 2048;

/// Who handed a change over (an opaque tag the driver chooses per peer; 0 for local input).
pub type PeerTag = u64;

#[derive(Debug, Default)]
pub struct Pending {
    waiting: BTreeMap<(ChainKey, u32), (Candidate, PeerTag)>,
    per_peer: HashMap<PeerTag, usize>,
    bytes: usize,
    dropped: u64,
}

impl Pending {
    /// Hold a change until its predecessor arrives. Returns false (and counts it) when a bound
    /// is reached.
    pub fn hold(&mut self, candidate: Candidate, from: PeerTag) -> bool {
        let key = (candidate.chain(), candidate.seq());
        if self.waiting.contains_key(&key) {
            return true;
        }
        let share = self.per_peer.get(&from).copied().unwrap_or(0);
        let full = self.waiting.len() >= PENDING_CHANGES_MAX
            || self.bytes + candidate.bytes.len() > PENDING_BYTES_MAX
            || share >= PENDING_PER_PEER_MAX;
        if full {
            self.dropped += 1;
            return false;
        }
        self.bytes += candidate.bytes.len();
        *self.per_peer.entry(from).or_default() += 1;
        self.waiting.insert(key, (candidate, from));
        true
    }

    /// Take the change waiting at `(chain, seq)`, if any.
    pub fn take(&mut self, chain: ChainKey, seq: u32) -> Option<Candidate> {
        let (c, from) = self.waiting.remove(&(chain, seq))?;
        self.bytes -= c.bytes.len();
        if let Some(n) = self.per_peer.get_mut(&from) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&from);
            }
        }
        Some(c)
    }

    /// Drop everything waiting on `chain` at or below `seq` (it arrived another way, or the
    /// chain was cut).
    pub fn discard_through(&mut self, chain: ChainKey, seq: u32) {
        let keys: Vec<_> = self
            .waiting
            .range((chain, 0)..=(chain, seq))
            .map(|(k, _)| *k)
            .collect();
        for (c, s) in keys {
            self.take(c, s);
        }
    }

    /// Chains with changes waiting, and the first position each waits after.
    pub fn gaps(&self) -> Vec<(ChainKey, u32)> {
        let mut out: Vec<(ChainKey, u32)> = Vec::new();
        for (chain, seq) in self.waiting.keys() {
            if out.last().map(|(c, _)| c) != Some(chain) {
                out.push((*chain, *seq));
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
