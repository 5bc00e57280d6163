//! Durable storage of the ledger in sled: the admitted changes in the order they were admitted,
//! this store's chain id, and proven forks.
//!
//! sled 0.34's `flush()` ends in `sync_file_range`, which does not make data durable (sled issue
//! #1452). So [`Store::append`] flushes and then `fdatasync`s sled's log file itself before it
//! returns: only then may the gate show green. Changes received from peers use
//! [`Store::append_relaxed`]: a power cut may lose them, and sync brings them back.
//!
//! Layout (format 2): tree `changes` maps a big-endian u64 sequence number to a group of
//! canonical changes appended together (each a big-endian u32 length and the change; a group
//! holds up to [`GROUP_BYTES_MAX`], so a restart reads a few thousand values, not one per
//! record); tree `meta` holds `format`, `chain` (this store's chain id, drawn once) and `forks`
//! (fork evidence). The changes are the whole state: there is nothing to snapshot. A store of
//! format 1 (the earlier Automerge document) is refused with a message saying what to do.

use gatemesh_crdt::{ChainId, ForkProof};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Largest blob stored.
pub const BLOB_BYTES_MAX: usize = 64 * 1024;
/// Largest group of changes stored as one value (a single larger blob is a group alone).
pub const GROUP_BYTES_MAX: usize = 16 * 1024;
/// The store layout this version writes and reads.
pub const STORE_FORMAT: u32 = 2;
/// Most fork proofs kept.
pub const FORKS_KEPT_MAX: usize = 4096;
const FORMAT_KEY: &[u8] = b"format";
const CHAIN_KEY: &[u8] = b"chain";
const FORKS_KEY: &[u8] = b"forks";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob of {0} bytes is over the limit of {BLOB_BYTES_MAX}")]
    TooLarge(usize),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "store {0} was written by an earlier gatemesh (ledger format 1, one Automerge document); \
         this version keeps the ledger as chains of signed changes (format {STORE_FORMAT}). \
         Stores belong to one event: start this device with a new --data directory (peers \
         bring the event's records back by sync), or export the old store with the earlier \
         version first"
    )]
    OldFormat(String),
}

impl StoreError {
    /// Stable code for the CLI and the node's events.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::OldFormat(_) => "store_old_format",
            StoreError::TooLarge(_) => "store_blob_too_large",
            StoreError::Corrupt(_) => "store_corrupt",
            StoreError::Sled(_) | StoreError::Io(_) => "store_error",
        }
    }
}

pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    changes: sled::Tree,
    meta: sled::Tree,
    /// sled's single log file; fdatasync'd after every flush.
    data_file: File,
    /// sled's blob files (large values) already made durable, with their length then: sled
    /// writes each once, so a durable append syncs only new ones (or one still growing when it
    /// was last synced).
    synced_blobs: std::collections::HashSet<(std::ffi::OsString, u64)>,
    next_seq: u64,
    chain: ChainId,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        remove_unfinished_sled_snapshots(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .open()?;
        if db.tree_names().iter().any(|n| n.as_ref() == b"log") {
            return Err(StoreError::OldFormat(dir.display().to_string()));
        }
        let changes = db.open_tree("changes")?;
        let meta = db.open_tree("meta")?;
        let data_file = File::open(dir.join("db"))?;
        let next_seq = match changes.last()? {
            Some((k, _)) => seq_of(&k)? + 1,
            None => 0,
        };
        let chain = match meta.get(CHAIN_KEY)? {
            Some(v) => {
                ChainId(u32::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                    StoreError::Corrupt("chain id is not 4 bytes".into())
                })?))
            }
            None => {
                let chain = ChainId(rand::random());
                meta.insert(FORMAT_KEY, &STORE_FORMAT.to_be_bytes())?;
                meta.insert(CHAIN_KEY, &chain.0.to_be_bytes())?;
                chain
            }
        };
        let mut store = Store {
            dir: dir.to_path_buf(),
            db,
            changes,
            meta,
            data_file,
            synced_blobs: Default::default(),
            next_seq,
            chain,
        };
        store.sync()?;
        sync_dir(dir)?;
        Ok(store)
    }

    /// This store's chain: a device writes its records on it.
    pub fn chain(&self) -> ChainId {
        self.chain
    }

    /// Every stored change, in the order it was admitted.
    pub fn changes(&self) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_ {
        self.changes.iter().values().flat_map(|group| match group {
            Ok(g) => split_group(&g),
            Err(e) => vec![Err(e.into())],
        })
    }

    /// Append changes and make them durable (flush + fdatasync) before returning: for local
    /// decisions, which must survive a power cut before the gate shows them.
    pub fn append(&mut self, blobs: &[Vec<u8>]) -> Result<(), StoreError> {
        if self.insert(blobs)? {
            self.sync()?;
        }
        Ok(())
    }

    /// Append changes without waiting for the disk: for changes received from peers, which
    /// sync brings back if a power cut loses them. The next durable append (or sled's periodic
    /// flush) writes them out; sled writes in order, so a durable local change is never
    /// durable without every change received before it.
    pub fn append_relaxed(&mut self, blobs: &[Vec<u8>]) -> Result<(), StoreError> {
        self.insert(blobs).map(|_| ())
    }

    fn insert(&mut self, blobs: &[Vec<u8>]) -> Result<bool, StoreError> {
        if blobs.is_empty() {
            return Ok(false);
        }
        if let Some(big) = blobs.iter().find(|b| b.len() > BLOB_BYTES_MAX) {
            return Err(StoreError::TooLarge(big.len()));
        }
        let mut batch = sled::Batch::default();
        let mut group = Vec::new();
        for blob in blobs {
            if !group.is_empty() && group.len() + 4 + blob.len() > GROUP_BYTES_MAX {
                batch.insert(&self.next_seq.to_be_bytes(), std::mem::take(&mut group));
                self.next_seq += 1;
            }
            group.extend_from_slice(&(blob.len() as u32).to_be_bytes());
            group.extend_from_slice(blob);
        }
        batch.insert(&self.next_seq.to_be_bytes(), group);
        self.next_seq += 1;
        self.changes.apply_batch(batch)?;
        Ok(true)
    }

    /// Keep proven forks (pairs of changes), durably: a restart must not take back what the
    /// running node dropped.
    pub fn save_forks(&mut self, forks: &[ForkProof]) -> Result<(), StoreError> {
        let kept = &forks[..forks.len().min(FORKS_KEPT_MAX)];
        let bytes = postcard::to_allocvec(kept)
            .map_err(|e| StoreError::Corrupt(format!("encoding forks: {e}")))?;
        self.meta.insert(FORKS_KEY, bytes)?;
        self.sync()
    }

    pub fn forks(&self) -> Result<Vec<ForkProof>, StoreError> {
        match self.meta.get(FORKS_KEY)? {
            None => Ok(Vec::new()),
            Some(v) => postcard::from_bytes(&v)
                .map_err(|e| StoreError::Corrupt(format!("forks do not decode: {e}"))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Make everything appended so far durable (the graceful stop).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.sync()
    }

    /// flush (sync_file_range inside sled) + fdatasync of the data file and any blob files.
    fn sync(&mut self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.data_file.sync_data()?;
        let blobs = self.dir.join("blobs");
        if blobs.is_dir() {
            let mut new = false;
            for entry in std::fs::read_dir(&blobs)? {
                let entry = entry?;
                // sled removes blob files it no longer needs, possibly while this loop runs.
                let len = match entry.metadata() {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                let key = (entry.file_name(), len);
                if self.synced_blobs.contains(&key) {
                    continue;
                }
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data()?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                }
                self.synced_blobs.insert(key);
                new = true;
            }
            if new {
                sync_dir(&blobs)?;
            }
        }
        Ok(())
    }
}

/// sled 0.34 writes its page-table snapshot to `snap.<lsn>.generating`, syncs it, then renames
/// it to `snap.<lsn>`; but on open it reads the lexicographically last `snap.*` file, which is a
/// `.generating` one if a kill came before the rename, and a torn one makes open fail with
/// "Read corrupted data" (sled issues #1509, #1527; caught here by the SIGKILL test). An
/// unrenamed snapshot is unfinished by construction: remove it, sled recovers from the previous
/// snapshot and its log.
fn remove_unfinished_sled_snapshots(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The changes of one stored group; a group whose framing is damaged yields an error for what
/// cannot be read.
fn split_group(group: &[u8]) -> Vec<Result<Vec<u8>, StoreError>> {
    let mut out = Vec::new();
    let mut rest = group;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            out.push(Err(StoreError::Corrupt("a change's length is cut".into())));
            break;
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some(change) = tail.get(..len) else {
            out.push(Err(StoreError::Corrupt("a change is cut".into())));
            break;
        };
        out.push(Ok(change.to_vec()));
        rest = &tail[len..];
    }
    out
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("change key is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// fsync a directory so new file names in it survive a power cut.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}
