//! The signed scan record: what one device saw and decided for one ticket at one moment.
//!
//! Encoding: `postcard(ScanBody) || ed25519 signature (64 bytes)`, the signature made by the
//! device key over the body bytes. The record is the value of one map entry in the ledger; its
//! key is the scan id, which is also inside the signed body so nobody can move a record.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Encoding version written in every record.
pub const RECORD_VERSION: u8 = 1;
/// Largest encoded record accepted (body + signature).
pub const RECORD_BYTES_MAX: usize = 1024;
/// Longest ticket id, gate, zone, tier or reason string inside a record.
pub const FIELD_LEN_MAX: usize = 128;
/// Most previous-scan references one record may carry.
pub const PREV_REFS_MAX: usize = 16;
const SIGNATURE_LEN: usize = 64;

/// Short device id: the first four bytes of SHA-256 of the device's public key, shown as 8 hex
/// digits. Enrollment refuses a second device with the same short id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceId(pub u32);

impl DeviceId {
    pub fn from_public_key(key: &VerifyingKey) -> DeviceId {
        let digest = Sha256::digest(key.as_bytes());
        DeviceId(u32::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3],
        ]))
    }
    pub fn parse(s: &str) -> Option<DeviceId> {
        if s.len() != 8 {
            return None;
        }
        u32::from_str_radix(s, 16).ok().map(DeviceId)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Which way the holder walks through the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// The answer the gate gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Admit,
    Deny,
    /// Not a scan: cancels the admit named in `annuls` (undo by a steward).
    Annul,
}

/// The signed content of a scan record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanBody {
    pub version: u8,
    pub device: DeviceId,
    pub counter: u32,
    pub ticket_id: String,
    pub tier: String,
    pub gate: String,
    pub zone: String,
    pub direction: Direction,
    pub verdict: Verdict,
    pub reason: String,
    pub hlc: u64,
    /// Device wall time, for display only; ordering uses `hlc`.
    pub wall_ms: u64,
    /// Scan ids of the earlier records of this ticket the device knew when it decided.
    pub prev: Vec<String>,
    /// For `Verdict::Annul`: the scan id being cancelled.
    pub annuls: Option<String>,
    /// For a scan reconciled from an offline device (not a mesh node):
    /// `<device>@<scanned-at ms>`. Records with the same origin on one ticket are one scan, so a
    /// reconciled scan is counted once however many nodes it was posted to.
    pub origin: Option<String>,
}

impl ScanBody {
    /// `<device-short-id>-<counter>`: unique per device, so concurrent writers never collide.
    pub fn scan_id(&self) -> String {
        scan_id(self.device, self.counter)
    }
}

pub fn scan_id(device: DeviceId, counter: u32) -> String {
    format!("{device}-{counter}")
}

/// Parse `<8 hex>-<counter>`.
pub fn parse_scan_id(s: &str) -> Option<(DeviceId, u32)> {
    let (d, c) = s.split_once('-')?;
    Some((DeviceId::parse(d)?, c.parse().ok()?))
}

/// Bucket of a ticket: first byte of SHA-256 of its id.
pub fn bucket_of(ticket_id: &str) -> u8 {
    Sha256::digest(ticket_id.as_bytes())[0]
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {0} bytes, over the limit of {RECORD_BYTES_MAX}")]
    TooLarge(usize),
    #[error("record is too short to hold a signature")]
    Truncated,
    #[error("record body does not decode")]
    Undecodable,
    #[error("record version {0} is not supported")]
    Version(u8),
    #[error("record field {0} is too long or too many")]
    FieldTooLong(&'static str),
    #[error("record signature does not verify")]
    BadSignature,
}

/// A decoded record with its encoded form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRecord {
    pub body: ScanBody,
    pub bytes: Vec<u8>,
}

impl ScanRecord {
    /// Encode and sign `body` with the device key.
    pub fn sign(body: ScanBody, key: &SigningKey) -> Result<ScanRecord, RecordError> {
        check_fields(&body)?;
        let mut bytes = postcard::to_allocvec(&body).map_err(|_| RecordError::Undecodable)?;
        let signature = key.sign(&bytes);
        bytes.extend_from_slice(&signature.to_bytes());
        if bytes.len() > RECORD_BYTES_MAX {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        Ok(ScanRecord { body, bytes })
    }

    /// Decode without checking the signature (the local store is trusted on restart).
    pub fn decode(bytes: &[u8]) -> Result<ScanRecord, RecordError> {
        let (body_bytes, _) = split(bytes)?;
        let body: ScanBody =
            postcard::from_bytes(body_bytes).map_err(|_| RecordError::Undecodable)?;
        if body.version != RECORD_VERSION {
            return Err(RecordError::Version(body.version));
        }
        check_fields(&body)?;
        Ok(ScanRecord {
            body,
            bytes: bytes.to_vec(),
        })
    }

    /// Check the device signature over the body.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), RecordError> {
        let (body_bytes, sig) = split(&self.bytes)?;
        let sig = Signature::from_slice(sig).map_err(|_| RecordError::BadSignature)?;
        key.verify(body_bytes, &sig)
            .map_err(|_| RecordError::BadSignature)
    }

    pub fn scan_id(&self) -> String {
        self.body.scan_id()
    }

    /// The signed bytes and the signature, for batch verification.
    pub fn signed_parts(&self) -> Result<(&[u8], Signature), RecordError> {
        let (body_bytes, sig) = split(&self.bytes)?;
        let sig = Signature::from_slice(sig).map_err(|_| RecordError::BadSignature)?;
        Ok((body_bytes, sig))
    }
}

/// Check many records' signatures at once (ed25519 batch verification, about twice as fast
/// per record); when a batch fails, each of its records is checked alone. Returns, per record,
/// whether its signature verifies.
pub fn verify_many(items: &[(&ScanRecord, VerifyingKey)]) -> Vec<bool> {
    const BATCH: usize = 64;
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(BATCH) {
        let parts: Vec<Option<(&[u8], Signature)>> =
            chunk.iter().map(|(r, _)| r.signed_parts().ok()).collect();
        let all_parts = parts.iter().all(Option::is_some);
        let batch_ok = all_parts && {
            let messages: Vec<&[u8]> = parts.iter().flatten().map(|(m, _)| *m).collect();
            let signatures: Vec<Signature> = parts.iter().flatten().map(|(_, s)| *s).collect();
            let keys: Vec<VerifyingKey> = chunk.iter().map(|(_, k)| *k).collect();
            ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
        };
        if batch_ok {
            out.extend(std::iter::repeat_n(true, chunk.len()));
        } else {
            out.extend(chunk.iter().map(|(r, k)| r.verify(k).is_ok()));
        }
    }
    out
}

fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), RecordError> {
    if bytes.len() > RECORD_BYTES_MAX {
        return Err(RecordError::TooLarge(bytes.len()));
    }
    if bytes.len() <= SIGNATURE_LEN {
        return Err(RecordError::Truncated);
    }
    Ok(bytes.split_at(bytes.len() - SIGNATURE_LEN))
}

fn check_fields(b: &ScanBody) -> Result<(), RecordError> {
    let fields = [
        ("ticket_id", &b.ticket_id),
        ("tier", &b.tier),
        ("gate", &b.gate),
        ("zone", &b.zone),
        ("reason", &b.reason),
    ];
    for (name, value) in fields {
        if value.len() > FIELD_LEN_MAX {
            return Err(RecordError::FieldTooLong(name));
        }
    }
    if b.prev.len() > PREV_REFS_MAX || b.prev.iter().any(|p| p.len() > FIELD_LEN_MAX) {
        return Err(RecordError::FieldTooLong("prev"));
    }
    if b.annuls.as_ref().is_some_and(|a| a.len() > FIELD_LEN_MAX) {
        return Err(RecordError::FieldTooLong("annuls"));
    }
    if b.origin.as_ref().is_some_and(|a| a.len() > FIELD_LEN_MAX) {
        return Err(RecordError::FieldTooLong("origin"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> ScanBody {
        ScanBody {
            version: RECORD_VERSION,
            device: DeviceId(0xabcdef01),
            counter: 7,
            ticket_id: "T-1".into(),
            tier: "general".into(),
            gate: "north".into(),
            zone: "main".into(),
            direction: Direction::In,
            verdict: Verdict::Admit,
            reason: "ok".into(),
            hlc: 42,
            wall_ms: 1,
            prev: vec![],
            annuls: None,
            origin: None,
        }
    }

    #[test]
    fn sign_decode_verify_roundtrip() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let rec = ScanRecord::sign(body(), &key).unwrap();
        let back = ScanRecord::decode(&rec.bytes).unwrap();
        assert_eq!(back.body, body());
        back.verify(&key.verifying_key()).unwrap();
        assert_eq!(back.scan_id(), "abcdef01-7");
        assert_eq!(parse_scan_id("abcdef01-7"), Some((DeviceId(0xabcdef01), 7)));
    }

    #[test]
    fn any_flipped_byte_fails_decode_or_verify() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let rec = ScanRecord::sign(body(), &key).unwrap();
        for i in 0..rec.bytes.len() {
            let mut bytes = rec.bytes.clone();
            bytes[i] ^= 0x01;
            let ok = ScanRecord::decode(&bytes)
                .and_then(|r| r.verify(&key.verifying_key()))
                .is_ok();
            assert!(!ok, "flip at {i} was accepted");
        }
    }

    #[test]
    fn oversized_and_truncated_are_refused() {
        assert_eq!(ScanRecord::decode(&[0; 10]), Err(RecordError::Truncated));
        assert_eq!(
            ScanRecord::decode(&vec![0; RECORD_BYTES_MAX + 1]),
            Err(RecordError::TooLarge(RECORD_BYTES_MAX + 1))
        );
        let mut long = body();
        long.ticket_id = "x".repeat(FIELD_LEN_MAX + 1);
        let key = SigningKey::from_bytes(&[7; 32]);
        assert_eq!(
            ScanRecord::sign(long, &key),
            Err(RecordError::FieldTooLong("ticket_id"))
        );
    }
}
