//! The sync message: repair between two replicas in bounded pieces.
//!
//! A sync session is a few request-answer exchanges. Each message carries the sender's tips
//! (one per chain: a few hundred bytes per device), the changes the sender knows the receiver
//! lacks (from the receiver's last tips; at most [`BATCH`] per message), and fork proofs. The
//! one who opened the session sends again while either side had something for the other; so
//! any gap, however large, is repaired in messages of bounded size, and a session always ends.

use crate::event::roster::ROSTER_DEVICES_MAX;
use crate::ledger::{Budget, Fork, ForkProof, Ledger, Tip, FORKS_SERVED_MAX};
use crate::record::change::CHANGE_BYTES_MAX;
use serde::{Deserialize, Serialize};

/// Changes one message carries at most.
pub const BATCH: Budget = Budget {
    bytes: 1024 * 1024,
    changes: 4096,
};
/// Most tips a message may carry (every chain of the largest roster).
pub const TIPS_MAX: usize = ROSTER_DEVICES_MAX * crate::ledger::CHAINS_PER_DEVICE_MAX;
/// Largest encoded sync message accepted.
pub const SYNC_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
const SYNC_VERSION: u8 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMessage {
    pub version: u8,
    pub tips: Vec<Tip>,
    pub changes: Vec<Vec<u8>>,
    pub forks: Vec<ForkProof>,
    /// The sender had more for the receiver than fitted.
    pub more: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("sync message of {0} bytes is over {SYNC_MESSAGE_BYTES_MAX}")]
    TooLarge(usize),
    #[error("sync message does not decode")]
    Undecodable,
    #[error("sync message version {0} is not spoken here")]
    Version(u8),
    #[error("sync message carries more than its limits allow")]
    OverLimits,
}

impl SyncError {
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::TooLarge(_) => "sync_too_large",
            SyncError::Undecodable => "sync_undecodable",
            SyncError::Version(_) => "sync_version",
            SyncError::OverLimits => "sync_over_limits",
        }
    }
}

impl SyncMessage {
    /// What `ledger` says to a peer whose last tips were `theirs` (`None`: not known yet).
    pub fn from_ledger(ledger: &Ledger, theirs: Option<&[Tip]>) -> SyncMessage {
        let served = theirs.map(|t| ledger.serve(t, BATCH)).unwrap_or_default();
        let forks = ledger
            .forks()
            .take(FORKS_SERVED_MAX)
            .map(|f: &Fork| (f.a.clone(), f.b.clone()))
            .collect();
        SyncMessage {
            version: SYNC_VERSION,
            tips: ledger.summary(),
            changes: served.changes,
            forks,
            more: served.more,
        }
    }

    /// Whether this message carries anything for its receiver besides tips.
    pub fn carries_changes(&self) -> bool {
        !self.changes.is_empty() || self.more
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<SyncMessage, SyncError> {
        if bytes.len() > SYNC_MESSAGE_BYTES_MAX {
            return Err(SyncError::TooLarge(bytes.len()));
        }
        let (m, rest) =
            postcard::take_from_bytes::<SyncMessage>(bytes).map_err(|_| SyncError::Undecodable)?;
        if !rest.is_empty() {
            return Err(SyncError::Undecodable);
        }
        if m.version != SYNC_VERSION {
            return Err(SyncError::Version(m.version));
        }
        let over = m.tips.len() > TIPS_MAX
            || m.changes.len() > BATCH.changes
            || m.forks.len() > FORKS_SERVED_MAX
            || m.changes.iter().any(|c| c.len() > CHANGE_BYTES_MAX)
            || m.forks
                .iter()
                .any(|(a, b)| a.len() > CHANGE_BYTES_MAX || b.len() > CHANGE_BYTES_MAX);
        if over {
            return Err(SyncError::OverLimits);
        }
        Ok(m)
    }
}
