//! Device identity and the organizer-signed certificate that enrolls it.
//!
//! A device key is an ed25519 key (the same bytes become the device's libp2p identity). The
//! certificate binds event id, device public key, name, role and validity, signed by an organizer
//! key. The roster, the set of devices whose records count, is built from these certificates.

use crate::event::roster::{Roster, RosterDevice, ROSTER_DEVICES_MAX};
use crate::record::DeviceId;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// How far a device's clock may be off when its certificate's validity is checked.
pub const CERT_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;
/// Longest device name, in bytes.
pub const DEVICE_NAME_BYTES_MAX: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A steward's scanner: scans tickets and searches, and writes their records.
    Scanner,
    /// A supervisor's device: scans like a steward's, and may also undo an admit, check a
    /// holder in by hand and pause its gate for [`crate::record::GATE_PAUSE_MS`].
    Supervisor,
    /// Reads the mesh only (the HQ bridge, a dashboard laptop).
    Observer,
}

impl Role {
    /// Whether the device writes records (a steward's or a supervisor's scanner).
    pub fn writes(self) -> bool {
        matches!(self, Role::Scanner | Role::Supervisor)
    }

    /// `steward`, `supervisor`, `observer`: what the pages and the audit call it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Scanner => "steward",
            Role::Supervisor => "supervisor",
            Role::Observer => "observer",
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("certificate of device {name} is for event {event}, not {expected}")]
    WrongEvent {
        name: String,
        event: String,
        expected: String,
    },
    #[error("certificate of device {0} is never valid")]
    NeverValid(String),
    #[error("certificate of device {0} names the wrong device id")]
    WrongDeviceId(String),
    #[error("certificate of device {0} has a bad name (1..={DEVICE_NAME_BYTES_MAX} bytes, no control characters)")]
    BadName(String),
    #[error("{0}")]
    BadKey(#[from] KeyError),
    #[error("roster is full ({ROSTER_DEVICES_MAX} devices)")]
    RosterFull,
}

/// A key that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("public key must be 64 hex digits of an ed25519 point")]
    Public,
    #[error("secret key must be 64 hex digits")]
    Secret,
}

impl DeviceCertificate {
    /// Check what a certificate says about itself against the event it claims to belong to.
    pub fn check(&self, event_id: &str) -> Result<(), CertificateError> {
        if self.event_id != event_id {
            return Err(CertificateError::WrongEvent {
                name: self.name.clone(),
                event: self.event_id.clone(),
                expected: event_id.to_string(),
            });
        }
        let name_ok =
            !self.name.is_empty() && crate::record::field_ok(&self.name, DEVICE_NAME_BYTES_MAX);
        if !name_ok {
            return Err(CertificateError::BadName(self.name.clone()));
        }
        if self.valid_from_ms > self.valid_until_ms {
            return Err(CertificateError::NeverValid(self.name.clone()));
        }
        let key = self.verifying_key()?;
        if DeviceId::from_public_key(&key).to_string() != self.device_id {
            return Err(CertificateError::WrongDeviceId(self.name.clone()));
        }
        Ok(())
    }

    /// Whether the certificate is valid at `now_ms` (with [`CERT_CLOCK_SKEW_MS`] of slack).
    pub fn valid_at(&self, now_ms: u64) -> bool {
        now_ms.saturating_add(CERT_CLOCK_SKEW_MS) >= self.valid_from_ms
            && now_ms <= self.valid_until_ms.saturating_add(CERT_CLOCK_SKEW_MS)
    }

    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        parse_public_key(&self.public_key)
    }

    pub fn device(&self) -> Option<DeviceId> {
        DeviceId::parse(&self.device_id)
    }
}

pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, KeyError> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(KeyError::Public)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Public)
}

pub fn parse_secret_key(hex_key: &str) -> Result<SigningKey, KeyError> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(KeyError::Secret)?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// The roster of writers: every steward's and supervisor's certificate.
pub fn roster_from(certs: &[DeviceCertificate]) -> Result<Roster, CertificateError> {
    let mut roster = Roster::default();
    for c in certs.iter().filter(|c| c.role.writes()) {
        let device = RosterDevice {
            key: c.verifying_key()?,
            name: c.name.clone(),
            cut: None,
            supervisor: c.role == Role::Supervisor,
        };
        if !roster.insert(device) {
            return Err(CertificateError::RosterFull);
        }
    }
    Ok(roster)
}

/// A device's own key and its certificate.
#[derive(Clone, Debug)]
pub struct DeviceIdentity {
    pub key: SigningKey,
    pub certificate: DeviceCertificate,
}

impl DeviceIdentity {
    pub fn id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.key.verifying_key())
    }
}
