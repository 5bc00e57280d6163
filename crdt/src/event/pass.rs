//! A steward's phone pairing pass: the phone's own device id and the credential it shows every
//! node of the event, instead of a shared staff token that a screenshot could pass around.
//!
//! `GMP1.` + base64url(postcard([`PassBody`])) + `.` + base64url(ed25519 signature of those
//! body bytes). The issuer is the organizer (`organizer:<key id>`, `gatemesh device enroll
//! --role offline`) or an enrolled scanner (`device:<8 hex>`, a supervisor pairing a phone
//! from the dashboard with the admin token), so any node verifies a pass with what it already
//! holds: the organizer keys and the roster. A phone is unpaired by an organizer bulletin
//! (`unpair`); a pass whose issuing scanner was revoked stops working with it.

use crate::record::DeviceId;
use data_encoding::BASE64URL_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

pub const PASS_PREFIX: &str = "GMP1.";
/// Longest pass read, in bytes.
pub const PASS_BYTES_MAX: usize = 1024;
/// Longest a pass may be valid for.
pub const PASS_VALID_MS_MAX: u64 = 400 * 24 * 3_600_000;
/// Longest phone name a supervisor gives (the device id adds a dash and 4 hex digits).
pub const PHONE_NAME_BYTES_MAX: usize = 40;

/// What a pass says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassBody {
    pub event_id: String,
    /// The phone's device id: what its reconciled scans carry as their origin.
    pub device_id: String,
    /// `organizer:<key id>` or `device:<8 hex digits>`.
    pub issuer: String,
    pub issued_ms: u64,
    pub until_ms: u64,
}

impl PassBody {
    /// A pass for `device_id` issued by `issuer` at `issued_ms`, valid until `until_ms` (at
    /// least a moment, at most [`PASS_VALID_MS_MAX`]).
    pub fn new(
        event_id: &str,
        device_id: &str,
        issuer: &Issuer,
        issued_ms: u64,
        until_ms: u64,
    ) -> PassBody {
        PassBody {
            event_id: event_id.to_string(),
            device_id: device_id.to_string(),
            issuer: issuer.label(),
            issued_ms,
            until_ms: until_ms.clamp(issued_ms + 1, issued_ms + PASS_VALID_MS_MAX),
        }
    }
}

/// Who signed a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issuer {
    Organizer(String),
    Device(DeviceId),
}

impl Issuer {
    pub fn label(&self) -> String {
        match self {
            Issuer::Organizer(k) => format!("organizer:{k}"),
            Issuer::Device(d) => format!("device:{d}"),
        }
    }

    fn parse(s: &str) -> Option<Issuer> {
        if let Some(k) = s.strip_prefix("organizer:") {
            return (!k.is_empty() && k.len() <= crate::event::NAME_LEN_MAX)
                .then(|| Issuer::Organizer(k.to_string()));
        }
        s.strip_prefix("device:")
            .and_then(DeviceId::parse)
            .map(Issuer::Device)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassError {
    #[error("not a pairing pass")]
    Malformed,
    #[error("the pass's signature does not verify")]
    BadSignature,
    #[error("the pass was issued by {0}, which this event does not know (or revoked)")]
    UnknownIssuer(String),
    #[error("the pass is for event {0}")]
    WrongEvent(String),
    #[error("the pass is not valid now")]
    Expired,
    #[error("phone {0} was unpaired by the organizer")]
    Unpaired(String),
}

impl PassError {
    /// Stable code for the HTTP API.
    pub fn code(&self) -> &'static str {
        match self {
            PassError::Malformed => "pass_malformed",
            PassError::BadSignature => "pass_bad_signature",
            PassError::UnknownIssuer(_) => "pass_unknown_issuer",
            PassError::WrongEvent(_) => "pass_wrong_event",
            PassError::Expired => "pass_expired",
            PassError::Unpaired(_) => "unpaired",
        }
    }
}

/// A pass as read, its signature not checked yet.
#[derive(Clone, Debug)]
pub struct PhonePass {
    pub body: PassBody,
    pub issuer: Issuer,
    signed: Vec<u8>,
    signature: Signature,
}

/// Sign a pass; the text a phone keeps.
pub fn issue(body: &PassBody, key: &SigningKey) -> String {
    let bytes = postcard::to_allocvec(body).unwrap_or_default();
    let sig = key.sign(&bytes);
    format!(
        "{PASS_PREFIX}{}.{}",
        BASE64URL_NOPAD.encode(&bytes),
        BASE64URL_NOPAD.encode(&sig.to_bytes())
    )
}

/// A phone's device id from the name a supervisor gave and a few bytes that tell two pairings
/// of one name apart: `<name>-<4 hex>`.
pub fn phone_device_id(name: &str, salt: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    let ok = !name.is_empty()
        && name.len() <= PHONE_NAME_BYTES_MAX
        && crate::event::offline_device_id_ok(name)
        && !name.contains(char::is_whitespace);
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(salt);
    ok.then(|| format!("{name}-{}", hex::encode(&h.finalize()[..2])))
}

/// Read a pass's text: its form, not its signature.
pub fn read(text: &str) -> Result<PhonePass, PassError> {
    if text.len() > PASS_BYTES_MAX {
        return Err(PassError::Malformed);
    }
    let rest = text.strip_prefix(PASS_PREFIX).ok_or(PassError::Malformed)?;
    let (body, sig) = rest.split_once('.').ok_or(PassError::Malformed)?;
    let signed = BASE64URL_NOPAD
        .decode(body.as_bytes())
        .map_err(|_| PassError::Malformed)?;
    let sig = BASE64URL_NOPAD
        .decode(sig.as_bytes())
        .map_err(|_| PassError::Malformed)?;
    let signature = Signature::from_slice(&sig).map_err(|_| PassError::Malformed)?;
    let (body, left): (PassBody, &[u8]) =
        postcard::take_from_bytes(&signed).map_err(|_| PassError::Malformed)?;
    let fields_ok = left.is_empty()
        && crate::event::offline_device_id_ok(&body.device_id)
        && body.event_id.len() <= crate::event::NAME_LEN_MAX
        && body.until_ms > body.issued_ms
        && body.until_ms - body.issued_ms <= PASS_VALID_MS_MAX;
    let issuer = Issuer::parse(&body.issuer).filter(|_| fields_ok);
    let issuer = issuer.ok_or(PassError::Malformed)?;
    Ok(PhonePass {
        body,
        issuer,
        signed,
        signature,
    })
}

impl PhonePass {
    /// Check the signature with the issuer's key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), PassError> {
        key.verify(&self.signed, &self.signature)
            .map_err(|_| PassError::BadSignature)
    }
}

/// What a node checks passes against: the organizer keys, the scanners that may issue passes
/// (enrolled, not revoked) and the phones the organizer unpaired. Built by the gate logic, kept
/// by the HTTP edge, renewed whenever a bulletin changes it.
#[derive(Clone, Debug, Default)]
pub struct PassCheck {
    pub event_id: String,
    pub organizer_keys: HashMap<String, VerifyingKey>,
    pub issuers: HashMap<DeviceId, VerifyingKey>,
    pub unpaired: HashSet<String>,
}

impl PassCheck {
    /// The pass's body when it is genuine, for this event, valid at `now_ms` and its phone
    /// still paired.
    pub fn check(&self, text: &str, now_ms: u64) -> Result<PassBody, PassError> {
        let pass = read(text)?;
        let key = match &pass.issuer {
            Issuer::Organizer(k) => self.organizer_keys.get(k),
            Issuer::Device(d) => self.issuers.get(d),
        };
        let key = key.ok_or_else(|| PassError::UnknownIssuer(pass.issuer.label()))?;
        pass.verify(key)?;
        if pass.body.event_id != self.event_id {
            return Err(PassError::WrongEvent(pass.body.event_id));
        }
        if !(pass.body.issued_ms.saturating_sub(CLOCK_SLACK_MS)..=pass.body.until_ms)
            .contains(&now_ms)
        {
            return Err(PassError::Expired);
        }
        if self.unpaired.contains(&pass.body.device_id) {
            return Err(PassError::Unpaired(pass.body.device_id));
        }
        Ok(pass.body)
    }
}

/// How far before its issue time a pass is taken (clocks of nodes differ).
const CLOCK_SLACK_MS: u64 = 10 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn check() -> PassCheck {
        PassCheck {
            event_id: "fest".into(),
            organizer_keys: [("k1".to_string(), key(1).verifying_key())].into(),
            issuers: [(
                DeviceId::from_public_key(&key(2).verifying_key()),
                key(2).verifying_key(),
            )]
            .into(),
            unpaired: HashSet::new(),
        }
    }

    fn body(issuer: &str) -> PassBody {
        PassBody {
            event_id: "fest".into(),
            device_id: "phone-7-ab12".into(),
            issuer: issuer.into(),
            issued_ms: 1_000_000,
            until_ms: 2_000_000,
        }
    }

    #[test]
    fn a_pass_verifies_by_its_issuer_and_is_refused_for_every_fault() {
        let c = check();
        let by_org = issue(&body("organizer:k1"), &key(1));
        assert_eq!(
            c.check(&by_org, 1_500_000).unwrap().device_id,
            "phone-7-ab12"
        );
        let dev = DeviceId::from_public_key(&key(2).verifying_key());
        let by_dev = issue(&body(&format!("device:{dev}")), &key(2));
        assert!(c.check(&by_dev, 1_500_000).is_ok());
        let code = |t: &str, now| c.check(t, now).unwrap_err().code();
        // Signed by another key than the issuer's.
        assert_eq!(
            code(&issue(&body("organizer:k1"), &key(3)), 1_500_000),
            "pass_bad_signature"
        );
        assert_eq!(
            code(&issue(&body("organizer:k9"), &key(1)), 1_500_000),
            "pass_unknown_issuer"
        );
        assert_eq!(
            code(&issue(&body("device:00000001"), &key(2)), 1_500_000),
            "pass_unknown_issuer"
        );
        assert_eq!(code(&by_org, 2_000_001), "pass_expired");
        let mut other = body("organizer:k1");
        other.event_id = "other".into();
        assert_eq!(code(&issue(&other, &key(1)), 1_500_000), "pass_wrong_event");
        for bad in [
            "",
            "GMP1.",
            "GMP1.abc",
            "GMP1.!!.!!",
            &by_org[..by_org.len() - 3],
            "x".repeat(2000).as_str(),
        ] {
            assert_eq!(code(bad, 1_500_000), "pass_malformed", "{bad}");
        }
        // A body with a bad device id or an endless validity is not a pass.
        let mut long = body("organizer:k1");
        long.until_ms = long.issued_ms + PASS_VALID_MS_MAX + 1;
        assert_eq!(code(&issue(&long, &key(1)), 1_500_000), "pass_malformed");
        let mut at = body("organizer:k1");
        at.device_id = "a@b".into();
        assert_eq!(code(&issue(&at, &key(1)), 1_500_000), "pass_malformed");
        let mut c2 = check();
        c2.unpaired.insert("phone-7-ab12".into());
        assert_eq!(c2.check(&by_org, 1_500_000).unwrap_err().code(), "unpaired");
    }

    #[test]
    fn phone_ids_carry_the_name_and_refuse_bad_names() {
        assert_eq!(
            phone_device_id("phone-7", b"x").unwrap().len(),
            "phone-7".len() + 5
        );
        assert_ne!(phone_device_id("p", b"1"), phone_device_id("p", b"2"));
        for bad in ["", "a b", "a@b", &"x".repeat(41)] {
            assert!(phone_device_id(bad, b"1").is_none(), "{bad}");
        }
    }
}
