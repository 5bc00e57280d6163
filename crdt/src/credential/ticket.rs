//! GM1, the default signed ticket: `GM1:` + base32(postcard(payload) || ed25519 signature).
//!
//! Base32 (RFC 4648, no padding) uses only A–Z and 2–7, and `:` is in the QR alphanumeric set,
//! so the whole code encodes in QR alphanumeric mode (5.5 bits per character instead of 8).
//! Verified offline with the organizer's public key named by `key_id`; no manifest needed.

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const GM1_PREFIX: &str = "GM1:";
/// Longest field inside a GM1 payload.
pub const GM1_FIELD_LEN_MAX: usize = 64;
const SIGNATURE_LEN: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketPayload {
    pub event_id: String,
    pub ticket_id: String,
    pub tier: String,
    pub key_id: String,
    /// Validity window, seconds since epoch.
    pub valid_from_s: u64,
    pub valid_until_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gm1Error {
    #[error("not a GM1 code")]
    NotGm1,
    #[error("GM1 code is not valid base32 or is cut short")]
    Malformed,
    #[error("GM1 signature does not verify")]
    BadSignature,
    #[error("GM1 code is signed with unknown key id {0}")]
    UnknownKey(String),
    #[error("GM1 field {0:?} is over {GM1_FIELD_LEN_MAX} bytes")]
    FieldTooLong(String),
}

/// Make the code for a ticket.
pub fn encode(payload: &TicketPayload, key: &SigningKey) -> Result<String, Gm1Error> {
    for f in [
        &payload.event_id,
        &payload.ticket_id,
        &payload.tier,
        &payload.key_id,
    ] {
        if f.len() > GM1_FIELD_LEN_MAX {
            return Err(Gm1Error::FieldTooLong(f.clone()));
        }
    }
    let mut bytes = postcard::to_allocvec(payload).map_err(|_| Gm1Error::Malformed)?;
    let sig = key.sign(&bytes);
    bytes.extend_from_slice(&sig.to_bytes());
    Ok(format!("{GM1_PREFIX}{}", BASE32_NOPAD.encode(&bytes)))
}

/// Decode a code without checking its signature: what the code claims.
pub fn decode_unverified(code: &str) -> Result<(TicketPayload, Vec<u8>, Signature), Gm1Error> {
    let rest = strip_prefix(code).ok_or(Gm1Error::NotGm1)?;
    let bytes = BASE32_NOPAD
        .decode(rest.to_ascii_uppercase().as_bytes())
        .map_err(|_| Gm1Error::Malformed)?;
    if bytes.len() <= SIGNATURE_LEN {
        return Err(Gm1Error::Malformed);
    }
    let (body, sig) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
    let (payload, rest): (TicketPayload, &[u8]) =
        postcard::take_from_bytes(body).map_err(|_| Gm1Error::Malformed)?;
    if !rest.is_empty() {
        return Err(Gm1Error::Malformed);
    }
    let sig = Signature::from_slice(sig).map_err(|_| Gm1Error::Malformed)?;
    Ok((payload, body.to_vec(), sig))
}

/// Decode and verify with the organizer keys in force.
/// On failure: the error and the ticket id the code claims, when it decoded that far.
pub fn verify(
    code: &str,
    keys: &HashMap<String, VerifyingKey>,
) -> Result<TicketPayload, (Gm1Error, Option<String>)> {
    let (payload, body, sig) = decode_unverified(code).map_err(|e| (e, None))?;
    let Some(key) = keys.get(&payload.key_id) else {
        return Err((
            Gm1Error::UnknownKey(payload.key_id.clone()),
            Some(payload.ticket_id),
        ));
    };
    match key.verify(&body, &sig) {
        Ok(()) => Ok(payload),
        Err(_) => Err((Gm1Error::BadSignature, Some(payload.ticket_id))),
    }
}

/// The part after `GM1:`, accepting a lower-case prefix (some scanners lower-case everything).
pub fn strip_prefix(code: &str) -> Option<&str> {
    let head = code.get(..GM1_PREFIX.len())?;
    head.eq_ignore_ascii_case(GM1_PREFIX)
        .then(|| &code[GM1_PREFIX.len()..])
}
