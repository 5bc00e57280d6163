//! Organizer bulletins: signed, versioned changes to the event after devices went out: revoked
//! tickets, revoked devices (their records from a given time on are ignored), added devices
//! (their certificates). A node applies a bulletin only if the organizer's signature verifies,
//! spreads it on `gatemesh/<event-id>/control`, and hands every bulletin it knows to each peer
//! that connects, so a device that was off hears of them too.

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
    /// Records of the device with a time at or after this are ignored.
    pub from_ms: u64,
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

/// Store a received bulletin in `dir/bulletins/<version>.json`, durably.
pub fn save(dir: &Path, b: &Bulletin) -> std::io::Result<()> {
    use std::io::Write;
    let d = dir.join(BULLETINS_DIR);
    std::fs::create_dir_all(&d)?;
    let path = d.join(format!("{:06}.json", b.version()));
    let mut f = std::fs::File::create(&path)?;
    f.write_all(b.bytes())?;
    f.sync_all()?;
    std::fs::File::open(&d)?.sync_all()
}
