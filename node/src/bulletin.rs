//! Organizer bulletins: signed changes to the event after devices went out: revoked tickets,
//! revoked devices (their records are kept up to named positions of their chains, everything
//! else of theirs is ignored), added devices (their certificates). A node applies a bulletin only
//! if the organizer's signature verifies, spreads it on `gatemesh/<event-id>/control`, and hands
//! every bulletin it knows to each peer that connects, so a device that was off hears of them
//! too.
//!
//! Bulletins are identified by the hash of their bytes, not by their version number (which
//! orders them for people): two different bulletins with one number are two bulletins, and
//! their effects (unions of revocations and additions, the narrowest cut per device) do not
//! depend on the order they arrive in, so every node ends in the same state.

use crate::device::DeviceCertificate;
use crate::signed::{Signed, SignedError};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Directory of bulletins, in the event package (made by the organizer) and in a node's data
/// directory (received ones).
pub const BULLETINS_DIR: &str = "bulletins";
/// Largest bulletin accepted.
pub const BULLETIN_BYTES_MAX: usize = 256 * 1024;
/// Most revocations and additions in one bulletin.
pub const BULLETIN_ITEMS_MAX: usize = 10_000;
/// Most bulletins a node keeps.
pub const BULLETINS_MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRevocation {
    pub device_id: String,
    /// What stays of the device: on each named chain, records up to `through`. Anything else
    /// it wrote or writes is ignored. Positions are fixed by the device's hash chain, so it
    /// cannot add records "from before" later, whatever its clock says.
    #[serde(default)]
    pub keep: Vec<KeptChain>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptChain {
    /// Chain id, 8 hex digits.
    pub chain: String,
    pub through: u32,
}

impl DeviceRevocation {
    /// The ledger's form of this revocation; `None` when a chain id does not parse.
    pub fn cut(&self) -> Option<gatemesh_crdt::Cut> {
        let mut cut = gatemesh_crdt::Cut::default();
        for k in self.keep.iter().take(gatemesh_crdt::roster::CUT_CHAINS_MAX) {
            let id = gatemesh_crdt::DeviceId::parse(&k.chain)?;
            cut.keep.insert(gatemesh_crdt::ChainId(id.0), k.through);
        }
        Some(cut)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulletinBody {
    pub event_id: String,
    pub version: u64,
    pub issued_ms: u64,
    #[serde(default)]
    pub revoke_tickets: Vec<String>,
    #[serde(default)]
    pub revoke_devices: Vec<DeviceRevocation>,
    /// Organizer-signed device certificates.
    #[serde(default)]
    pub add_devices: Vec<Signed>,
}

/// A verified bulletin.
#[derive(Clone, Debug)]
pub struct Bulletin {
    pub body: BulletinBody,
    pub added: Vec<DeviceCertificate>,
    bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum BulletinError {
    #[error("bulletin is {0} bytes, over {BULLETIN_BYTES_MAX}")]
    TooLarge(usize),
    #[error("bulletin is not a signed document: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bulletin signature: {0}")]
    Signature(#[from] SignedError),
    #[error("bulletin is for event {0}")]
    WrongEvent(String),
    #[error("bulletin holds more than {BULLETIN_ITEMS_MAX} items")]
    TooManyItems,
    #[error("added device certificate: {0}")]
    Certificate(String),
    #[error("a ticket id, device id or chain in the bulletin is malformed")]
    BadItem,
}

impl BulletinError {
    /// Stable code for the CLI, the node's events and the HTTP API.
    pub fn code(&self) -> &'static str {
        match self {
            BulletinError::TooLarge(_) => "bulletin_too_large",
            BulletinError::Json(_) => "bulletin_malformed",
            BulletinError::Signature(_) => "bulletin_bad_signature",
            BulletinError::WrongEvent(_) => "bulletin_wrong_event",
            BulletinError::TooManyItems => "bulletin_too_many_items",
            BulletinError::Certificate(_) => "bulletin_bad_certificate",
            BulletinError::BadItem => "bulletin_bad_item",
        }
    }
}

impl Bulletin {
    /// Verify a bulletin's bytes against the event's organizer keys.
    pub fn from_bytes(
        bytes: &[u8],
        event_id: &str,
        keys: &HashMap<String, VerifyingKey>,
    ) -> Result<Bulletin, BulletinError> {
        if bytes.len() > BULLETIN_BYTES_MAX {
            return Err(BulletinError::TooLarge(bytes.len()));
        }
        let signed: Signed = serde_json::from_slice(bytes)?;
        let body: BulletinBody = signed.open(|id| keys.get(id).copied())?;
        if body.event_id != event_id {
            return Err(BulletinError::WrongEvent(body.event_id));
        }
        if body.revoke_tickets.len() + body.revoke_devices.len() + body.add_devices.len()
            > BULLETIN_ITEMS_MAX
        {
            return Err(BulletinError::TooManyItems);
        }
        let ids_ok = body.revoke_tickets.iter().all(|t| {
            !t.is_empty()
                && gatemesh_crdt::record::field_ok(t, gatemesh_crdt::record::FIELD_BYTES_MAX)
        });
        let cuts_ok = body.revoke_devices.iter().all(|r| {
            gatemesh_crdt::DeviceId::parse(&r.device_id).is_some()
                && r.keep.len() <= gatemesh_crdt::roster::CUT_CHAINS_MAX
                && r.cut().is_some()
        });
        if !ids_ok || !cuts_ok {
            return Err(BulletinError::BadItem);
        }
        let added = body
            .add_devices
            .iter()
            .map(|s| {
                let cert: DeviceCertificate = s
                    .open(|id| keys.get(id).copied())
                    .map_err(|e| BulletinError::Certificate(e.to_string()))?;
                cert.check(event_id)
                    .map_err(|e| BulletinError::Certificate(e.to_string()))?;
                Ok(cert)
            })
            .collect::<Result<_, BulletinError>>()?;
        Ok(Bulletin {
            body,
            added,
            bytes: bytes.to_vec(),
        })
    }

    pub fn read(
        path: &Path,
        event_id: &str,
        keys: &HashMap<String, VerifyingKey>,
    ) -> anyhow::Result<Bulletin> {
        let bytes = std::fs::read(path)?;
        Ok(Bulletin::from_bytes(&bytes, event_id, keys)?)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn version(&self) -> u64 {
        self.body.version
    }

    /// The bulletin's identity: SHA-256 of its bytes.
    pub fn hash(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(&self.bytes).into()
    }

    /// `<version>-<first 8 hex digits of the hash>`, for files and events.
    pub fn label(&self) -> String {
        format!("{:06}-{}", self.version(), &hex::encode(self.hash())[..8])
    }
}

/// Every bulletin in `dir/bulletins/` that verifies, by version. Files that do not verify are
/// reported in the second list and skipped.
pub fn load_dir(
    dir: &Path,
    event_id: &str,
    keys: &HashMap<String, VerifyingKey>,
) -> (Vec<Bulletin>, Vec<String>) {
    let mut found = Vec::new();
    let mut bad = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join(BULLETINS_DIR)) else {
        return (found, bad);
    };
    for e in entries.flatten().take(BULLETINS_MAX) {
        match Bulletin::read(&e.path(), event_id, keys) {
            Ok(b) => found.push(b),
            Err(err) => bad.push(format!("{}: {err:#}", e.path().display())),
        }
    }
    found.sort_by_key(Bulletin::version);
    (found, bad)
}

/// Store a received bulletin in `dir/bulletins/<version>-<hash>.json`, durably.
pub fn save(dir: &Path, b: &Bulletin) -> std::io::Result<()> {
    use std::io::Write;
    let d = dir.join(BULLETINS_DIR);
    std::fs::create_dir_all(&d)?;
    let path = d.join(format!("{}.json", b.label()));
    let mut f = std::fs::File::create(&path)?;
    f.write_all(b.bytes())?;
    f.sync_all()?;
    std::fs::File::open(&d)?.sync_all()
}
