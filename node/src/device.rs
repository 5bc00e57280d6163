//! Device identity and the organizer-signed certificate that enrolls it.
//!
//! A device key is an ed25519 key (the same bytes become the device's libp2p identity). The
//! certificate binds event id, device public key, name, role and validity, signed by an organizer
//! key. The roster, the set of devices whose records count, is built from these certificates.

use crate::event::{parse_public_key, parse_secret_key};
use crate::signed::Signed;
use anyhow::{bail, Context};
use ed25519_dalek::{SigningKey, VerifyingKey};
use gatemesh_crdt::{DeviceId, Roster, RosterDevice};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const DEVICE_KEY_FILE: &str = "device.key";
pub const DEVICE_CERT_FILE: &str = "device.cert.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Scans tickets and writes records.
    Scanner,
    /// Reads the mesh only (the HQ bridge, a dashboard laptop).
    Observer,
}

/// How far a device's clock may be off when its certificate's validity is checked.
pub const CERT_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCertificate {
    pub event_id: String,
    pub device_id: String,
    pub public_key: String,
    pub name: String,
    pub role: Role,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
}

impl DeviceCertificate {
    /// Read a signed certificate and check it against the event's organizer keys.
    pub fn load(
        path: &Path,
        event_id: &str,
        keys: &HashMap<String, VerifyingKey>,
    ) -> anyhow::Result<DeviceCertificate> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let signed: Signed =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let cert: DeviceCertificate = signed
            .open(|id| keys.get(id).copied())
            .with_context(|| format!("device certificate {}", path.display()))?;
        cert.check(event_id)?;
        Ok(cert)
    }

    pub fn check(&self, event_id: &str) -> anyhow::Result<()> {
        if self.event_id != event_id {
            bail!(
                "certificate of device {} is for event {}, not {event_id}",
                self.name,
                self.event_id
            );
        }
        if self.valid_from_ms > self.valid_until_ms {
            bail!("certificate of device {} is never valid", self.name);
        }
        let key = self.verifying_key()?;
        if DeviceId::from_public_key(&key).to_string() != self.device_id {
            bail!(
                "certificate of device {} names the wrong device id",
                self.name
            );
        }
        Ok(())
    }

    /// Whether the certificate is valid at `now_ms` (with [`CERT_CLOCK_SKEW_MS`] of slack).
    pub fn valid_at(&self, now_ms: u64) -> bool {
        now_ms.saturating_add(CERT_CLOCK_SKEW_MS) >= self.valid_from_ms
            && now_ms <= self.valid_until_ms.saturating_add(CERT_CLOCK_SKEW_MS)
    }

    pub fn verifying_key(&self) -> anyhow::Result<VerifyingKey> {
        parse_public_key(&self.public_key)
    }
}

/// The roster of writers: every scanner certificate.
pub fn roster_from(certs: &[DeviceCertificate]) -> anyhow::Result<Roster> {
    let mut roster = Roster::default();
    for c in certs.iter().filter(|c| c.role == Role::Scanner) {
        let device = RosterDevice {
            key: c.verifying_key()?,
            name: c.name.clone(),
            cut: None,
        };
        if !roster.insert(device) {
            bail!(
                "roster is full ({} devices)",
                gatemesh_crdt::roster::ROSTER_DEVICES_MAX
            );
        }
    }
    Ok(roster)
}

/// A device's own files: its secret key and its certificate.
#[derive(Clone, Debug)]
pub struct DeviceIdentity {
    pub key: SigningKey,
    pub certificate: DeviceCertificate,
}

impl DeviceIdentity {
    pub fn load(
        dir: &Path,
        event_id: &str,
        keys: &HashMap<String, VerifyingKey>,
    ) -> anyhow::Result<DeviceIdentity> {
        let key_path = dir.join(DEVICE_KEY_FILE);
        let key = parse_secret_key(
            &std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?,
        )?;
        let certificate = DeviceCertificate::load(&dir.join(DEVICE_CERT_FILE), event_id, keys)?;
        if certificate.verifying_key()? != key.verifying_key() {
            bail!(
                "{} does not match the certificate's public key",
                key_path.display()
            );
        }
        Ok(DeviceIdentity { key, certificate })
    }

    pub fn id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.key.verifying_key())
    }
}
