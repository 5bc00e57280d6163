//! Durable storage of the ledger in sled: a log of change blobs plus a periodic snapshot.
//!
//! sled 0.34's `flush()` ends in `sync_file_range`, which does not make data durable (sled issue
//! #1452). So [`Store::append`] flushes and then `fdatasync`s sled's log file itself before it
//! returns: only then may the gate show green. Changes received from peers use
//! [`Store::append_relaxed`]: a power cut may lose them, and sync brings them back.
//!
//! Layout: tree `log` maps a big-endian u64 sequence number to one blob (an Automerge change or
//! a sync chunk, each loadable with `load_incremental`); tree `meta` holds the snapshot (a full
//! `save()`) and the sequence number it covers. A restart loads the snapshot and replays the log
//! after it.

use std::fs::File;
use std::path::{Path, PathBuf};

/// Take a snapshot after this many appended blobs.
pub const SNAPSHOT_EVERY_BLOBS: u64 = 20_000;
/// Largest blob stored.
pub const BLOB_BYTES_MAX: usize = 8 * 1024 * 1024;
const SNAPSHOT_KEY: &[u8] = b"snapshot";
const SNAPSHOT_SEQ_KEY: &[u8] = b"snapshot_seq";

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
}

pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// sled's single log file; fdatasync'd after every flush.
    data_file: File,
    next_seq: u64,
    since_snapshot: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

/// What a restart reads back.
#[derive(Debug, Default)]
pub struct Stored {
    pub snapshot: Option<Vec<u8>>,
    pub log: Vec<Vec<u8>>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        remove_unfinished_sled_snapshots(dir)?;
        let db = sled::Config::new().path(dir).open()?;
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        let data_file = File::open(dir.join("db"))?;
        let next_seq = match log.last()? {
            Some((k, _)) => seq_of(&k)? + 1,
            None => 0,
        };
        let mut store = Store {
            dir: dir.to_path_buf(),
            db,
            log,
            meta,
            data_file,
            next_seq,
            since_snapshot: 0,
        };
        store.since_snapshot = store.log.len() as u64;
        store.sync()?;
        sync_dir(dir)?;
        Ok(store)
    }

    /// Everything stored, in order.
    pub fn read(&self) -> Result<Stored, StoreError> {
        let snapshot = self.meta.get(SNAPSHOT_KEY)?.map(|v| v.to_vec());
        let log = self
            .log
            .iter()
            .values()
            .map(|v| v.map(|v| v.to_vec()))
            .collect::<Result<_, _>>()?;
        Ok(Stored { snapshot, log })
    }

    /// Append blobs and make them durable (flush + fdatasync) before returning: for local
    /// decisions, which must survive a power cut before the gate shows them.
    pub fn append(&mut self, blobs: &[Vec<u8>]) -> Result<(), StoreError> {
        if self.insert(blobs)? {
            self.sync()?;
        }
        Ok(())
    }

    /// Append blobs without waiting for the disk: for changes received from peers, which sync
    /// brings back if a power cut loses them. The next durable append (or sled's periodic flush)
    /// writes them out.
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
        for blob in blobs {
            batch.insert(&self.next_seq.to_be_bytes(), blob.as_slice());
            self.next_seq += 1;
        }
        self.log.apply_batch(batch)?;
        self.since_snapshot += blobs.len() as u64;
        Ok(true)
    }

    /// Whether enough was appended since the last snapshot to take a new one.
    pub fn wants_snapshot(&self) -> bool {
        self.since_snapshot >= SNAPSHOT_EVERY_BLOBS
    }

    /// Store a full snapshot covering everything appended so far, then drop the log before it.
    /// The snapshot is durable before the log goes.
    pub fn snapshot(&mut self, snapshot: &[u8]) -> Result<(), StoreError> {
        let covered = self.next_seq;
        let mut batch = sled::Batch::default();
        batch.insert(SNAPSHOT_KEY, snapshot);
        batch.insert(SNAPSHOT_SEQ_KEY, &covered.to_be_bytes());
        self.meta.apply_batch(batch)?;
        self.sync()?;
        for key in self.log.range(..covered.to_be_bytes()).keys() {
            self.log.remove(key?)?;
        }
        self.since_snapshot = 0;
        self.sync()
    }

    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// flush (sync_file_range inside sled) + fdatasync of the data file and any blob files.
    fn sync(&mut self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.data_file.sync_data()?;
        let blobs = self.dir.join("blobs");
        if blobs.is_dir() {
            for entry in std::fs::read_dir(&blobs)? {
                File::open(entry?.path())?.sync_data()?;
            }
            sync_dir(&blobs)?;
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

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("log key is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// fsync a directory so new file names in it survive a power cut.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}
