//! Errors of the ledger crate: one enum, each variant says what happened.

use crate::record::RecordError;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger document is not a gatemesh genesis: {0}")]
    NotGenesis(String),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("change bytes do not decode: {0}")]
    BadChange(#[from] automerge::LoadChangeError),
    #[error("sync message does not decode: {0}")]
    BadSyncMessage(String),
    #[error("message of {size} bytes is over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("this ledger has no local device key, it cannot record")]
    ReadOnly,
    #[error("record: {0}")]
    Record(#[from] RecordError),
    #[error("scan id {0} already exists")]
    DuplicateScanId(String),
}
