//! Opening a device: its event package, its own key and certificate, its store, and the ledger
//! rebuilt from what the store holds, with the bulletins of the event package and of the
//! device's data directory applied. The same opening serves `scan`, `node run`, `ledger`,
//! `export` and the bridge.

use crate::package;
use crate::store::Store;
use anyhow::Context;
use gatemesh_crdt::event::certificate::{DeviceCertificate, DeviceIdentity};
use gatemesh_crdt::gate::GateLogic;
use gatemesh_crdt::protocol::replica::{Replica, ReplicaConfig};
use std::path::{Path, PathBuf};

pub struct OpenDevice {
    pub gate: GateLogic,
    pub store: Store,
    pub identity: Option<DeviceIdentity>,
    pub certificates: Vec<DeviceCertificate>,
    /// Stored changes the ledger refused on opening (a damaged store, or records of devices
    /// revoked since).
    pub refused_at_open: u64,
    /// Bulletin files that did not verify, with why.
    pub bad_bulletins: Vec<String>,
    pub event_dir: PathBuf,
}

impl std::fmt::Debug for OpenDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDevice")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl OpenDevice {
    /// The device's replica (it takes the gate logic); the store stays with the caller.
    pub fn into_replica(self, config: ReplicaConfig) -> (Replica, Store) {
        let replica = Replica::new(self.gate, &self.certificates, config);
        (replica, self.store)
    }
}

/// Open a device: `device_dir` holds its key and certificate (none: read-only), `data` its
/// store, `hmac_file` the legacy HMAC secret (else `QR_SIGNATURE_SECRET`).
pub fn open(
    event_dir: &Path,
    device_dir: Option<&Path>,
    data: &Path,
    hmac_file: Option<&Path>,
) -> anyhow::Result<OpenDevice> {
    let package = package::load(event_dir)?;
    let keys = package.config.organizer_verifying_keys()?;
    let device = device_dir
        .map(|d| package::load_identity(d, &package.config.event_id, &keys))
        .transpose()?;
    let store = Store::open(data).with_context(|| format!("opening store {}", data.display()))?;
    let forks = store.forks()?;
    let mut bad_bulletins = Vec::new();
    let mut bulletins = Vec::new();
    for dir in [event_dir, data] {
        let (found, bad) = package::load_bulletins(dir, &package.config.event_id, &keys);
        bad_bulletins.extend(bad);
        bulletins.extend(found);
    }
    let changes: Vec<Vec<u8>> = store.changes().collect::<Result<_, _>>()?;
    // The roster the bulletins made comes before the store, as it was for the running node.
    let (ledger, refused) = GateLogic::open_ledger(
        &package,
        device.as_ref(),
        store.chain(),
        &bulletins,
        &forks,
        changes.iter().map(Vec::as_slice),
        crate::now_ms(),
    )?;
    drop(changes);
    let mut gate = GateLogic::new(&package, ledger, package::legacy_secret(hmac_file)?)?;
    for (b, e) in gate.restore_bulletins(&bulletins) {
        bad_bulletins.push(format!("{}: {e}", b.label()));
    }
    Ok(OpenDevice {
        gate,
        store,
        identity: device,
        certificates: package.certificates,
        refused_at_open: refused,
        bad_bulletins,
        event_dir: event_dir.to_path_buf(),
    })
}
