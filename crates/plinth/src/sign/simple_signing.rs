//! cosign's legacy container signature: a "simple signing" payload blob and
//! its signature in a layer annotation (cosign `specs/SIGNATURE_SPEC.md`).
//!
//! Payload bytes, as sigstore's `pkg/signature/payload` marshals them with
//! Go's `encoding/json` (struct order, then `optional` as a Go map, which is
//! `null` when `cosign sign` got no `-a` annotations):
//!
//! ```text
//! {"critical":{"identity":{"docker-reference":"registry.example/org/app"},"image":{"docker-manifest-digest":"sha256:…"},"type":"cosign container image signature"},"optional":null}
//! ```
//!
//! The signature is ECDSA P-256 over SHA-256 of exactly those bytes, ASN.1
//! DER, standard base64 in the `dev.cosignproject.cosign/signature`
//! annotation of the layer descriptor.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::key::{PublicKey, SigningKey};
use super::{Result, SignError, digest_hex, json_err};
use crate::oci::{Descriptor, descriptor_for};

pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";

/// The payload document. Field order is the Go struct's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
    /// Go `map[string]any` without `omitempty`: `null` when absent.
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The `docker-reference` of a repository as pushed: `HOST[:PORT]/PATH`,
/// what go-containerregistry's `Repository.Name()` gives for a registry
/// named with a `.`, a `:` or `localhost`. Checked, since it is written
/// into signed payloads: no tag, no digest, no scheme, no white space.
pub fn docker_reference(host: &str, repository: &str) -> Result<String> {
    let bad = |why: &str| SignError::Invalid(format!("repository {host}/{repository}: {why}"));
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return Err(bad("not a registry host"));
    }
    if repository.is_empty()
        || !repository
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'/'))
    {
        return Err(bad("repository paths have only a-z 0-9 _ - . /"));
    }
    Ok(format!("{host}/{repository}"))
}

/// The payload bytes for `manifest_digest` claimed as `docker_reference`
/// (see [`docker_reference`]). `optional` are cosign's
/// `-a key=value` annotations; empty gives `"optional":null` as cosign does.
pub fn payload(
    docker_reference: &str,
    manifest_digest: &str,
    optional: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    digest_hex(manifest_digest)?;
    let doc = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: docker_reference.to_owned(),
            },
            image: Image {
                docker_manifest_digest: manifest_digest.to_owned(),
            },
            kind: COSIGN_SIGNATURE_TYPE.to_owned(),
        },
        optional: (!optional.is_empty()).then(|| {
            optional
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect()
        }),
    };
    super::gojson::to_vec(&doc).map_err(json_err("simple signing payload"))
}

/// One signer's layer of a `.sig` image: the payload blob and its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLayer {
    pub payload: Vec<u8>,
    /// Standard base64 of the DER signature (the annotation value).
    pub signature: String,
}

impl SignatureLayer {
    /// The layer descriptor for the `.sig` manifest: the payload blob with the
    /// signature annotation, nothing else (key-based, no transparency log:
    /// no certificate, chain, bundle or timestamp annotations).
    pub fn descriptor(&self) -> Descriptor {
        let mut d = descriptor_for(SIMPLE_SIGNING_MEDIA_TYPE, &self.payload);
        d.annotations
            .insert(SIGNATURE_ANNOTATION.to_owned(), self.signature.clone());
        d
    }
}

/// Builds and signs the payload for one image.
pub fn sign(
    key: &SigningKey,
    docker_reference: &str,
    manifest_digest: &str,
    optional: &BTreeMap<String, String>,
) -> Result<SignatureLayer> {
    let payload = payload(docker_reference, manifest_digest, optional)?;
    let signature = STANDARD.encode(key.sign(&payload));
    Ok(SignatureLayer { payload, signature })
}

/// Checks a payload and its annotation value: the signature verifies with
/// `key` over the payload bytes, the payload is a cosign signature of
/// `manifest_digest`, and, when `docker_reference` is given, claims that
/// name. (cosign itself ignores `docker-reference`, as its spec says; plinth
/// knows where it published, so it can check.)
pub fn verify(
    payload: &[u8],
    signature_b64: &str,
    key: &PublicKey,
    manifest_digest: &str,
    docker_reference: Option<&str>,
) -> Result<SimpleSigning> {
    digest_hex(manifest_digest)?;
    let signature = STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| SignError::Base64("signature annotation"))?;
    // Signature first: nothing in an unauthenticated payload is looked at.
    if !key.verify(payload, &signature) {
        return Err(SignError::BadSignature("simple signing payload"));
    }
    let doc: SimpleSigning =
        serde_json::from_slice(payload).map_err(json_err("simple signing payload"))?;
    if doc.critical.kind != COSIGN_SIGNATURE_TYPE {
        return Err(SignError::Mismatch {
            what: "critical.type",
            expected: COSIGN_SIGNATURE_TYPE.to_owned(),
            found: doc.critical.kind,
        });
    }
    if doc.critical.image.docker_manifest_digest != manifest_digest {
        return Err(SignError::WrongSubject {
            what: "the signed payload",
            expected: manifest_digest.to_owned(),
            found: doc.critical.image.docker_manifest_digest,
        });
    }
    if let Some(reference) = docker_reference
        && doc.critical.identity.docker_reference != reference
    {
        return Err(SignError::Mismatch {
            what: "critical.identity.docker-reference",
            expected: reference.to_owned(),
            found: doc.critical.identity.docker_reference,
        });
    }
    Ok(doc)
}
