//! Signatures and attestations as cosign and sigstore define them, as pure
//! functions over bytes: plinth's key-based signing format.
//!
//! - [`key`]: ECDSA P-256 keys: PKCS#8 and SEC1 PEM as `openssl` writes
//!   them, cosign's encrypted key file, public key PEM and hint, new key
//!   pairs. Secrets never reach `Debug`, an error or a log.
//! - [`simple_signing`]: cosign's legacy signature (a simple-signing
//!   payload and the `dev.cosignproject.cosign/signature` annotation).
//! - [`dsse`]: DSSE envelopes. [`intoto`]: in-toto statements, the SBOM
//!   predicates and SLSA provenance v1.
//! - [`image`]: the `sha256-<hex>.sig` and `.att` images, and adding one
//!   more signer's layers to them.
//! - [`bundle`]: the sigstore bundle v0.3 and the OCI 1.1 referrer that
//!   carries it.
//!
//! It owns the exact bytes of these documents and their verification. It
//! never talks to a registry (callers fetch and push; verification takes
//! a blob fetcher), reads no clock (nothing here is timestamped) and uses
//! no randomness when signing: ECDSA nonces come from RFC 6979, so the same
//! key and document always give the same bytes, and publishing an
//! unchanged set again pushes nothing.

pub mod bundle;
pub mod dsse;
mod gojson;
pub mod image;
pub mod intoto;
pub mod key;
pub mod simple_signing;

pub use key::{KeyError, KeyFile, KeyProblem, Password, PublicKey, SigningKey};

use crate::support::digest::is_lower_hex;

/// Why a document could not be built or did not verify. One line each.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("invalid digest {0:?}: expected sha256: and 64 lowercase hex digits")]
    InvalidDigest(String),
    #[error("{what}: invalid JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    #[error("{0}: the signature does not verify with the given public key")]
    BadSignature(&'static str),
    #[error("{what} is {found:?}, expected {expected:?}")]
    Mismatch {
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error(
        "{what}: {layers} layers, over cosign's limit of {}",
        image::MAX_LAYERS
    )]
    TooManyLayers { what: &'static str, layers: usize },
    #[error("blob {0} is missing")]
    MissingBlob(String),
    /// Signed by the key, but for another image.
    #[error("{what} names {found}, not {expected}")]
    WrongSubject {
        what: &'static str,
        expected: String,
        found: String,
    },
    /// No layer or referrer of the kind asked for.
    #[error("{0}")]
    Absent(String),
}

impl SignError {
    /// How much a failure says about the image: a document signed by the
    /// key for another image beats a malformed one, which beats a document
    /// of another key. Used to report the most telling of several.
    pub fn weight(&self) -> u8 {
        match self {
            Self::WrongSubject { .. } => 3,
            Self::BadSignature(_) => 1,
            Self::Absent(_) => 0,
            _ => 2,
        }
    }

    /// The most telling of `errors` ([`Self::weight`]), or `none` if empty.
    pub fn most_telling(errors: Vec<SignError>, none: impl FnOnce() -> SignError) -> SignError {
        errors
            .into_iter()
            .rev()
            .max_by_key(SignError::weight)
            .unwrap_or_else(none)
    }
}

pub type Result<T, E = SignError> = std::result::Result<T, E>;

fn json_err(what: &'static str) -> impl FnOnce(serde_json::Error) -> SignError {
    move |source| SignError::Json { what, source }
}

/// The 64 hex digits of a `sha256:` digest, or `None`.
fn sha256_hex(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| is_lower_hex(hex, 64))
}

/// The hex part of a `sha256:` digest, or [`SignError::InvalidDigest`].
fn digest_hex(digest: &str) -> Result<&str> {
    sha256_hex(digest).ok_or_else(|| SignError::InvalidDigest(digest.to_owned()))
}

/// Serde helpers for `[]byte` fields: Go and protojson write standard base64
/// with padding; DSSE readers must also accept URL-safe and unpadded forms.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        decode_lenient(&s).ok_or_else(|| serde::de::Error::custom("not base64"))
    }

    pub fn decode_lenient(s: &str) -> Option<Vec<u8>> {
        [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(s).ok())
    }
}

#[cfg(test)]
mod tests;
