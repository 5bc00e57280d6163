//! Signed JSON envelopes: `{"key_id", "body", "signature"}` where `body` is the exact JSON text
//! that was signed. Keeping the signed text verbatim avoids any canonicalisation question: the
//! signature is checked over the bytes as they came, then those bytes are read.

use crate::json::{self, JsonError};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub key_id: String,
    pub body: String,
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SignedError {
    #[error("signed document is not valid JSON of the expected shape: {0}")]
    Json(#[from] JsonError),
    #[error("signature by key {0} does not verify")]
    BadSignature(String),
    #[error("no trusted key with id {0}")]
    UnknownKey(String),
}

impl Signed {
    /// Sign a body already written as JSON text.
    pub fn sign_text(body: String, key_id: &str, key: &SigningKey) -> Signed {
        let signature = hex::encode(key.sign(body.as_bytes()).to_bytes());
        Signed {
            key_id: key_id.to_string(),
            body,
            signature,
        }
    }

    /// Read an envelope from its JSON text.
    pub fn from_json(text: &str) -> Result<Signed, SignedError> {
        Ok(json::from_value(json::parse(text)?)?)
    }

    /// Check the signature with the key `lookup` gives for our key id; the signed text.
    pub fn verify(
        &self,
        lookup: impl Fn(&str) -> Option<VerifyingKey>,
    ) -> Result<&str, SignedError> {
        let key =
            lookup(&self.key_id).ok_or_else(|| SignedError::UnknownKey(self.key_id.clone()))?;
        let bad = || SignedError::BadSignature(self.key_id.clone());
        let sig = hex::decode(&self.signature).map_err(|_| bad())?;
        let sig = Signature::from_slice(&sig).map_err(|_| bad())?;
        key.verify(self.body.as_bytes(), &sig).map_err(|_| bad())?;
        Ok(&self.body)
    }

    /// Verify, then read the body.
    pub fn open<T: DeserializeOwned>(
        &self,
        lookup: impl Fn(&str) -> Option<VerifyingKey>,
    ) -> Result<T, SignedError> {
        let text = self.verify(lookup)?;
        Ok(json::from_value(json::parse(text)?)?)
    }
}
