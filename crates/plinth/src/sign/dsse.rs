//! DSSE (Dead Simple Signing Envelope) v1: the pre-authentication encoding,
//! the envelope JSON, signing and verification.
//!
//! The envelope's JSON field order is `payload`, `payloadType`,
//! `signatures[{sig, keyid}]`: the field order of sigstore's protobuf
//! `io.intoto.Envelope`, which is what cosign serialises in `.att` layers
//! (Go `encoding/json` of the generated struct) and in bundles (protojson).
//! cosign leaves `keyid` empty, and both serialisers then omit it.

use serde::{Deserialize, Serialize};

use super::key::{PublicKey, SigningKey};
use super::{Result, SignError, json_err};

pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`,
/// lengths as ASCII decimal byte counts. This, not the payload, is signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(with = "super::b64")]
    pub payload: Vec<u8>,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// DER ECDSA signature over [`pae`].
    #[serde(with = "super::b64")]
    pub sig: Vec<u8>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
}

impl Envelope {
    /// Signs `payload` with one signature and an empty key id, as cosign does.
    pub fn sign(key: &SigningKey, payload_type: &str, payload: Vec<u8>) -> Self {
        let sig = key.sign(&pae(payload_type, &payload));
        Self {
            payload,
            payload_type: payload_type.to_owned(),
            signatures: vec![Signature {
                sig,
                keyid: String::new(),
            }],
        }
    }

    /// Compact JSON as Go's `encoding/json` writes it (the `.att` layer blob).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        super::gojson::to_vec(self).map_err(json_err("DSSE envelope"))
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(json_err("DSSE envelope"))
    }

    /// The payload, if at least one signature verifies with `key` over the
    /// PAE of this envelope's type and payload, and the type is `payload_type`.
    pub fn verify(&self, key: &PublicKey, payload_type: &str) -> Result<&[u8]> {
        if self.payload_type != payload_type {
            return Err(SignError::Mismatch {
                what: "DSSE payloadType",
                expected: payload_type.to_owned(),
                found: self.payload_type.clone(),
            });
        }
        if self.signatures.is_empty() {
            return Err(SignError::Invalid("DSSE envelope has no signatures".into()));
        }
        let message = pae(&self.payload_type, &self.payload);
        if self.signatures.iter().any(|s| key.verify(&message, &s.sig)) {
            Ok(&self.payload)
        } else {
            Err(SignError::BadSignature("DSSE envelope"))
        }
    }
}
