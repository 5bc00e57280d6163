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

use crate::event::certificate::DeviceCertificate;
use crate::event::signed::{Signed, SignedError};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
    pub fn cut(&self) -> Option<crate::Cut> {
        let mut cut = crate::Cut::default();
        for k in self.keep.iter().take(crate::event::roster::CUT_CHAINS_MAX) {
            let id = crate::DeviceId::parse(&k.chain)?;
            cut.keep.insert(crate::ChainId(id.0), k.through);
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
    /// Pause or resume gates, zones or the event (the latest order per target wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<crate::gate::pause::PauseOrder>,
    /// Change tiers' entry rules (laid over the package's in bulletin order: `rules`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<crate::event::rules::RuleChange>,
    /// Phones unpaired (their device ids): nodes refuse their passes and their reconciles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpair: Vec<String>,
}

/// A verified bulletin.
#[derive(Clone, Debug)]
pub struct Bulletin {
    pub body: BulletinBody,
    pub added: Vec<DeviceCertificate>,
    /// SHA-256 of the signed body ([`Bulletin::hash`]).
    id: [u8; 32],
    bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum BulletinError {
    #[error("bulletin is {0} bytes, over {BULLETIN_BYTES_MAX}")]
    TooLarge(usize),
    #[error("bulletin is not a signed document: {0}")]
    Json(#[from] crate::json::JsonError),
    #[error("bulletin signature: {0}")]
    Signature(SignedError),
    #[error("bulletin is for event {0}")]
    WrongEvent(String),
    #[error("bulletin holds more than {BULLETIN_ITEMS_MAX} items")]
    TooManyItems,
    #[error("added device certificate: {0}")]
    Certificate(String),
    #[error("a ticket id, device id or chain in the bulletin is malformed")]
    BadItem,
    #[error("bulletin is not UTF-8 text")]
    NotText,
}

impl BulletinError {
    /// A JSON fault is `malformed`; anything else about the envelope is its signature.
    fn from_signed(e: SignedError) -> BulletinError {
        match e {
            SignedError::Json(j) => BulletinError::Json(j),
            other => BulletinError::Signature(other),
        }
    }

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
            BulletinError::NotText => "bulletin_malformed",
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
        let text = std::str::from_utf8(bytes).map_err(|_| BulletinError::NotText)?;
        let signed = Signed::from_json(text).map_err(BulletinError::from_signed)?;
        let body: BulletinBody = signed
            .open(|id| keys.get(id).copied())
            .map_err(BulletinError::from_signed)?;
        if body.event_id != event_id {
            return Err(BulletinError::WrongEvent(body.event_id));
        }
        if body.revoke_tickets.len()
            + body.revoke_devices.len()
            + body.add_devices.len()
            + body.unpair.len()
            > BULLETIN_ITEMS_MAX
        {
            return Err(BulletinError::TooManyItems);
        }
        let ids_ok = body
            .revoke_tickets
            .iter()
            .all(|t| !t.is_empty() && crate::record::field_ok(t, crate::record::FIELD_BYTES_MAX));
        let cuts_ok = body.revoke_devices.iter().all(|r| {
            crate::DeviceId::parse(&r.device_id).is_some()
                && r.keep.len() <= crate::event::roster::CUT_CHAINS_MAX
                && r.cut().is_some()
        });
        let pauses_ok = body.pauses.len() <= crate::gate::pause::PAUSE_ORDERS_MAX
            && body
                .pauses
                .iter()
                .all(crate::gate::pause::PauseOrder::is_valid);
        let rules_ok = body.rules.len() <= crate::event::rules::RULE_CHANGES_MAX
            && body
                .rules
                .iter()
                .all(crate::event::rules::RuleChange::is_valid);
        let phones_ok = body
            .unpair
            .iter()
            .all(|d| crate::event::offline_device_id_ok(d));
        if !ids_ok || !cuts_ok || !pauses_ok || !rules_ok || !phones_ok {
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
        use sha2::Digest;
        Ok(Bulletin {
            body,
            added,
            id: sha2::Sha256::digest(signed.body.as_bytes()).into(),
            bytes: bytes.to_vec(),
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn version(&self) -> u64 {
        self.body.version
    }

    /// The bulletin's identity: SHA-256 of the body the organizer signed. The envelope around
    /// it (key order, spaces, the signature's hex case) makes no other bulletin: an enrolled
    /// device that re-encodes one cannot fill a node's bulletins or pick a tie's winner.
    pub fn hash(&self) -> [u8; 32] {
        self.id
    }

    /// `<version>-<first 8 hex digits of the hash>`, for files and events.
    pub fn label(&self) -> String {
        format!("{:06}-{}", self.version(), &hex::encode(self.hash())[..8])
    }
}
