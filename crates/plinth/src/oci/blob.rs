//! Content and its descriptor together, so what is stored is always what
//! was hashed; and the strict check of a digest that becomes a file name.

use super::model::Descriptor;
use super::{OciError, Result};
use crate::support::digest::sha256_digest;
use serde::Serialize;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// Bytes, digests, time

/// Compact JSON of `value`, the exact bytes that get hashed and stored.
///
/// Serialisation of plinth's types cannot fail; the `Result` is for
/// arbitrary `T` (a map with non-string keys, a failing `Serialize` impl).
pub fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(OciError::Serialize)
}

pub fn descriptor_for(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
        artifact_type: None,
    }
}

/// Content with its descriptor, so what is stored is always what was hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            descriptor: descriptor_for(media_type, &bytes),
            bytes,
        }
    }

    pub fn json<T: Serialize>(media_type: &str, value: &T) -> Result<Self> {
        Ok(Self::new(media_type, json_bytes(value)?))
    }
}

/// The hex part of a `sha256:` digest. Strict, because it becomes a file name
/// and must never name anything outside `blobs/sha256`.
pub(super) fn digest_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        _ => Err(OciError::InvalidDigest {
            digest: digest.to_owned(),
        }),
    }
}
