//! Signed JSON envelopes: `{"key_id", "body", "signature"}` where `body` is the exact JSON text
//! that was signed. Keeping the signed text verbatim avoids any canonicalisation question.

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
    #[error("signed document is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("signature by key {0} does not verify")]
    BadSignature(String),
    #[error("no trusted key with id {0}")]
    UnknownKey(String),
}

impl Signed {
    pub fn sign<T: Serialize>(
        body: &T,
        key_id: &str,
        key: &SigningKey,
    ) -> Result<Signed, SignedError> {
        let body = serde_json::to_string(body)?;
        let signature = hex::encode(key.sign(body.as_bytes()).to_bytes());
        Ok(Signed {
            key_id: key_id.to_string(),
            body,
            signature,
        })
    }

    /// Verify with the key `lookup` gives for our key id, then parse the body.
    pub fn open<T: DeserializeOwned>(
        &self,
        lookup: impl Fn(&str) -> Option<VerifyingKey>,
    ) -> Result<T, SignedError> {
        let key =
            lookup(&self.key_id).ok_or_else(|| SignedError::UnknownKey(self.key_id.clone()))?;
        let bad = || SignedError::BadSignature(self.key_id.clone());
        let sig = hex::decode(&self.signature).map_err(|_| bad())?;
        let sig = Signature::from_slice(&sig).map_err(|_| bad())?;
        key.verify(self.body.as_bytes(), &sig).map_err(|_| bad())?;
        Ok(serde_json::from_str(&self.body)?)
    }
}
