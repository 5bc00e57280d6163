//! GM2, the rotating ticket: a code a screenshot cannot pass, verified with no network and no
//! scanner-held secret.
//!
//! `GM2:` + base32(postcard([`RotatingPayload`]) || organizer signature || postcard(step) ||
//! holder signature). The organizer signs the static part, which names a public key made for
//! this ticket alone (`holder`); the holder's wallet keeps the matching private key and signs
//! the current time step ([`STEP_MS`], 15 s) with it, so its QR code changes every step. A
//! scanner checks both signatures with public keys only: a stolen scanner cannot make a live
//! code, and a screenshot stops working once its step is older than the window the event
//! allows (`code_expired`, [`crate::event::LiveCodes`]).

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const GM2_PREFIX: &str = "GM2:";
pub use crate::event::manifest::ROTATING_STATIC_PREFIX as STATIC_PREFIX;
/// How long one live code is shown before the next.
pub const STEP_MS: u64 = 15_000;
const SIGNATURE_LEN: usize = 64;
/// What the organizer's signature covers before the payload (a GM1 payload's signature can
/// never stand for a GM2 one, nor the other way).
const STATIC_DOMAIN: &[u8] = b"gatemesh rotating ticket 1\n";
/// What the holder's signature covers before the ticket id and the step.
const LIVE_DOMAIN: &[u8] = b"gatemesh live code 1\n";

/// The static part of a rotating ticket: a GM1 payload and the holder's public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatingPayload {
    pub event_id: String,
    pub ticket_id: String,
    pub tier: String,
    pub key_id: String,
    pub valid_from_s: u64,
    pub valid_until_s: u64,
    /// The ed25519 public key of this ticket's wallet.
    pub holder: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gm2Error {
    #[error("not a GM2 code")]
    NotGm2,
    #[error("GM2 code is not valid base32 or is cut short")]
    Malformed,
    #[error("GM2 code is signed with unknown key id {0}")]
    UnknownKey(String),
    #[error("GM2 ticket's organizer signature does not verify")]
    BadSignature,
    #[error("GM2 live code's signature does not verify: not made by this ticket's wallet")]
    BadLiveSignature,
}

/// A rotating ticket's live code, read and checked: its ticket and the step it was made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveCode {
    pub payload: RotatingPayload,
    pub step: u64,
}

/// The time step a time falls in.
pub fn step_of(ms: u64) -> u64 {
    ms / STEP_MS
}

/// The static part the organizer issues: payload and signature, as the wallet keeps them.
pub fn static_part(payload: &RotatingPayload, key: &SigningKey) -> Vec<u8> {
    let mut bytes = postcard::to_allocvec(payload).unwrap_or_default();
    let sig = key.sign(&[STATIC_DOMAIN, &bytes].concat());
    bytes.extend_from_slice(&sig.to_bytes());
    bytes
}

/// What the wallet signs for `step`.
pub fn live_message(ticket_id: &str, step: u64) -> Vec<u8> {
    [
        LIVE_DOMAIN,
        ticket_id.as_bytes(),
        b"\n",
        &step.to_be_bytes(),
    ]
    .concat()
}

/// The live code for `step`, as the wallet shows it (the wallet page does the same in
/// JavaScript; tests and the CLI use this one).
pub fn live_code(static_part: &[u8], ticket_id: &str, holder: &SigningKey, step: u64) -> String {
    let mut bytes = static_part.to_vec();
    bytes.extend(postcard::to_allocvec(&step).unwrap_or_default());
    bytes.extend_from_slice(&holder.sign(&live_message(ticket_id, step)).to_bytes());
    format!("{GM2_PREFIX}{}", BASE32_NOPAD.encode(&bytes))
}

/// The parts of a GM2 code, unchecked.
struct Parts {
    payload: RotatingPayload,
    signed: Vec<u8>,
    signature: Signature,
    step: u64,
    live: Signature,
}

fn parts(code: &str) -> Result<Parts, Gm2Error> {
    let head = code.get(..GM2_PREFIX.len()).ok_or(Gm2Error::NotGm2)?;
    if !head.eq_ignore_ascii_case(GM2_PREFIX) {
        return Err(Gm2Error::NotGm2);
    }
    let rest = code[GM2_PREFIX.len()..].to_ascii_uppercase();
    let bytes = BASE32_NOPAD
        .decode(rest.as_bytes())
        .map_err(|_| Gm2Error::Malformed)?;
    let (payload, after): (RotatingPayload, &[u8]) =
        postcard::take_from_bytes(&bytes).map_err(|_| Gm2Error::Malformed)?;
    let signed = bytes[..bytes.len() - after.len()].to_vec();
    let sig = after.get(..SIGNATURE_LEN).ok_or(Gm2Error::Malformed)?;
    let (step, live): (u64, &[u8]) =
        postcard::take_from_bytes(&after[SIGNATURE_LEN..]).map_err(|_| Gm2Error::Malformed)?;
    if live.len() != SIGNATURE_LEN {
        return Err(Gm2Error::Malformed);
    }
    let signature = Signature::from_slice(sig).map_err(|_| Gm2Error::Malformed)?;
    let live = Signature::from_slice(live).map_err(|_| Gm2Error::Malformed)?;
    Ok(Parts {
        payload,
        signed,
        signature,
        step,
        live,
    })
}

/// Read a GM2 code and check both signatures: the organizer's (key named by `key_id`) over the
/// static part, the holder's over the ticket and the step. On failure: the error and the ticket
/// id the code claims, when it decoded that far. Whether the step is recent is the policy's.
pub fn verify(
    code: &str,
    keys: &HashMap<String, VerifyingKey>,
) -> Result<LiveCode, (Gm2Error, Option<String>)> {
    let p = parts(code).map_err(|e| (e, None))?;
    let claimed = Some(p.payload.ticket_id.clone());
    let Some(key) = keys.get(&p.payload.key_id) else {
        return Err((Gm2Error::UnknownKey(p.payload.key_id.clone()), claimed));
    };
    let message = [STATIC_DOMAIN, &p.signed].concat();
    if key.verify(&message, &p.signature).is_err() {
        return Err((Gm2Error::BadSignature, claimed));
    }
    let holder = VerifyingKey::from_bytes(&p.payload.holder)
        .map_err(|_| (Gm2Error::BadLiveSignature, claimed.clone()))?;
    let live = live_message(&p.payload.ticket_id, p.step);
    if holder.verify(&live, &p.live).is_err() {
        return Err((Gm2Error::BadLiveSignature, claimed));
    }
    Ok(LiveCode {
        payload: p.payload,
        step: p.step,
    })
}

/// Whether a code names itself GM2 (any case).
pub fn is_gm2(code: &str) -> bool {
    code.get(..GM2_PREFIX.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(GM2_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> HashMap<String, VerifyingKey> {
        [(
            "k1".to_string(),
            SigningKey::from_bytes(&[1; 32]).verifying_key(),
        )]
        .into()
    }

    fn ticket(holder: &SigningKey) -> Vec<u8> {
        let p = RotatingPayload {
            event_id: "fest".into(),
            ticket_id: "R1".into(),
            tier: "general".into(),
            key_id: "k1".into(),
            valid_from_s: 0,
            valid_until_s: 4_000_000_000,
            holder: holder.verifying_key().to_bytes(),
        };
        static_part(&p, &SigningKey::from_bytes(&[1; 32]))
    }

    #[test]
    fn a_live_code_verifies_and_every_forgery_is_told_apart() {
        let holder = SigningKey::from_bytes(&[7; 32]);
        let s = ticket(&holder);
        let code = live_code(&s, "R1", &holder, 1000);
        let read = verify(&code, &keys()).unwrap();
        assert_eq!((read.payload.ticket_id.as_str(), read.step), ("R1", 1000));
        assert_eq!(verify(&code.to_lowercase(), &keys()).unwrap().step, 1000);
        // A scanner that knows the ticket's static part but not the wallet's key cannot make
        // the next live code.
        let other = SigningKey::from_bytes(&[8; 32]);
        let forged = live_code(&s, "R1", &other, 1001);
        assert_eq!(
            verify(&forged, &keys()).unwrap_err().0,
            Gm2Error::BadLiveSignature
        );
        // The static part signed by another key, or a key the event does not have.
        let mut s2 = s.clone();
        s2[3] ^= 1;
        let bad = live_code(&s2, "R1", &holder, 1000);
        assert!(matches!(
            verify(&bad, &keys()).unwrap_err().0,
            Gm2Error::BadSignature | Gm2Error::Malformed | Gm2Error::UnknownKey(_)
        ));
        for cut in [&code[..10], &code[..code.len() - 5], "GM2:", "GM2"] {
            assert!(verify(cut, &keys()).is_err(), "{cut}");
        }
        assert_eq!(verify("GM1:AAAA", &keys()).unwrap_err().0, Gm2Error::NotGm2);
    }
}
