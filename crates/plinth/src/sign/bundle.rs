//! The sigstore bundle v0.3 with a DSSE envelope and a public-key hint, and
//! the OCI 1.1 referrer manifest that carries it: what cosign 3 writes for
//! `cosign sign --key K --tlog-upload=false` (its default, bundle format).
//!
//! Bundle JSON (sigstore-go `sign.Bundle`, serialised by protojson in
//! `dev.sigstore.bundle.v1.Bundle` field order):
//!
//! ```text
//! {"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
//!  "verificationMaterial":{"publicKey":{"hint":"<base64 sha256 of SPKI DER>"}},
//!  "dsseEnvelope":{"payload":"…","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"…"}]}}
//! ```
//!
//! Without a transparency log or timestamp authority cosign writes no
//! `tlogEntries` and no `timestampVerificationData` (protojson omits empty
//! repeated fields and unset messages), and the DSSE signature has no
//! `keyid`. cosign's protojson adds a random-per-binary space after some
//! commas, so its bytes are not reproducible; ours are compact.
//!
//! Referrer manifest (cosign `WriteAttestationNewBundleFormat` /
//! `WriteReferrer`): `artifactType` = the bundle media type, config = the
//! empty descriptor (which cosign also gives the `artifactType`), one layer
//! = the bundle blob with the bundle media type, `subject` = the signed
//! manifest (mediaType, digest, size), annotations
//! `dev.sigstore.bundle.content=dsse-envelope`,
//! `dev.sigstore.bundle.predicateType=<statement predicate type>`. cosign
//! also writes `org.opencontainers.image.created` with the wall clock;
//! plinth leaves it out, so that the same inputs give the same manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::image::FetchBlob;
use super::intoto::{STATEMENT_V01, STATEMENT_V1, Statement};
use super::key::{PublicKey, SigningKey};
use super::{Result, SignError, digest_hex, json_err};
use crate::oci::{Descriptor, MEDIA_TYPE_IMAGE_MANIFEST, Manifest, descriptor_for};
use crate::support::digest::sha256_digest;

pub const BUNDLE_V03_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The older spelling of the v0.3 media type, still accepted by readers.
const BUNDLE_V03_LEGACY_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";
pub const ANNOTATION_BUNDLE_CONTENT: &str = "dev.sigstore.bundle.content";
pub const ANNOTATION_BUNDLE_PREDICATE_TYPE: &str = "dev.sigstore.bundle.predicateType";
pub const BUNDLE_CONTENT_DSSE: &str = "dsse-envelope";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    /// Set in message-signature bundles (blobs); we only read it to refuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_signature: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<Envelope>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_certificate_chain: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlog_entries: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_verification_data: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    #[serde(default)]
    pub hint: String,
}

/// Signs `statement` into a bundle: DSSE over the statement JSON, public-key
/// hint of `key`, no transparency log entries, no timestamps. Returns the
/// bundle JSON bytes (the blob to push).
pub fn sign_bundle(key: &SigningKey, statement: &Statement) -> Result<Vec<u8>> {
    let envelope = Envelope::sign(key, IN_TOTO_PAYLOAD_TYPE, statement.to_json()?);
    let bundle = Bundle {
        media_type: BUNDLE_V03_MEDIA_TYPE.to_owned(),
        verification_material: VerificationMaterial {
            public_key: Some(PublicKeyIdentifier {
                hint: key.public_key().hint(),
            }),
            x509_certificate_chain: None,
            certificate: None,
            tlog_entries: Vec::new(),
            timestamp_verification_data: None,
        },
        message_signature: None,
        dsse_envelope: Some(envelope),
    };
    serde_json::to_vec(&bundle).map_err(json_err("bundle"))
}

/// Verifies bundle JSON with `key`: a v0.3 bundle with a DSSE envelope of an
/// in-toto statement, signed by `key`, with `manifest_digest` as a subject and
/// (if given) `predicate_type`. Returns the statement.
///
/// Key-based and offline, like `cosign verify --key K --insecure-ignore-tlog`:
/// transparency log entries and timestamps, if any, are not checked, and the
/// public-key hint is ignored (the protobuf spec calls it unauthenticated;
/// cosign's own verifier ignores it too).
pub fn verify_bundle(
    bundle_json: &[u8],
    key: &PublicKey,
    manifest_digest: &str,
    predicate_type: Option<&str>,
) -> Result<Statement> {
    digest_hex(manifest_digest)?;
    let bundle: Bundle = serde_json::from_slice(bundle_json).map_err(json_err("bundle"))?;
    if bundle.media_type != BUNDLE_V03_MEDIA_TYPE
        && bundle.media_type != BUNDLE_V03_LEGACY_MEDIA_TYPE
    {
        return Err(SignError::Unsupported(format!(
            "bundle media type {:?}",
            bundle.media_type
        )));
    }
    let material = &bundle.verification_material;
    if material.public_key.is_none() {
        let what = if material.certificate.is_some() || material.x509_certificate_chain.is_some() {
            "certificate (keyless) bundles need Fulcio roots; plinth verifies with a public key"
        } else {
            "bundle has no verification material"
        };
        return Err(SignError::Unsupported(what.into()));
    }
    let envelope = match (&bundle.dsse_envelope, &bundle.message_signature) {
        (Some(envelope), None) => envelope,
        (None, Some(_)) => {
            return Err(SignError::Unsupported(
                "message-signature bundle (a blob signature)".into(),
            ));
        }
        _ => {
            return Err(SignError::Invalid(
                "bundle needs exactly one of dsseEnvelope and messageSignature".into(),
            ));
        }
    };
    // The bundle spec allows exactly one DSSE signature.
    if envelope.signatures.len() != 1 {
        return Err(SignError::Invalid(format!(
            "bundle DSSE envelope has {} signatures, the bundle format allows one",
            envelope.signatures.len()
        )));
    }
    let payload = envelope.verify(key, IN_TOTO_PAYLOAD_TYPE)?;
    let statement = Statement::from_json(payload)?;
    if statement.statement_type != STATEMENT_V1 && statement.statement_type != STATEMENT_V01 {
        return Err(SignError::Unsupported(format!(
            "in-toto _type {:?}",
            statement.statement_type
        )));
    }
    if !statement.has_subject_digest(manifest_digest) {
        return Err(SignError::WrongSubject {
            what: "the signed bundle statement",
            expected: manifest_digest.to_owned(),
            found: statement.subject_digests(),
        });
    }
    if let Some(pt) = predicate_type
        && statement.predicate_type != pt
    {
        return Err(SignError::Mismatch {
            what: "bundle predicateType",
            expected: pt.to_owned(),
            found: statement.predicate_type,
        });
    }
    Ok(statement)
}

/// The referrer artifact for one bundle: push `bundle` (blob), the empty
/// config blob, then `manifest_bytes` by digest; add
/// [`BundleReferrer::index_descriptor`] to the `sha256-<hex>` fallback index
/// where the registry has no referrers API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleReferrer {
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub bundle_descriptor: Descriptor,
    pub bundle: Vec<u8>,
}

impl BundleReferrer {
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest_bytes)
    }

    /// The entry for a referrers list (API response or fallback tag index):
    /// the manifest's descriptor with its `artifactType` and annotations, as
    /// the distribution spec asks.
    pub fn index_descriptor(&self) -> Descriptor {
        let mut d = descriptor_for(MEDIA_TYPE_IMAGE_MANIFEST, &self.manifest_bytes);
        d.artifact_type = self.manifest.artifact_type.clone();
        d.annotations = self.manifest.annotations.clone();
        d
    }
}

/// Wraps `bundle` (JSON bytes from [`sign_bundle`]) in cosign's referrer
/// manifest for `subject` (the signed manifest's descriptor).
pub fn bundle_referrer(
    bundle: Vec<u8>,
    subject: &Descriptor,
    predicate_type: &str,
) -> Result<BundleReferrer> {
    digest_hex(&subject.digest)?;
    let bundle_descriptor = descriptor_for(BUNDLE_V03_MEDIA_TYPE, &bundle);
    let mut config = Descriptor::empty();
    config.artifact_type = Some(BUNDLE_V03_MEDIA_TYPE.to_owned());
    let annotations = BTreeMap::from([
        (
            ANNOTATION_BUNDLE_CONTENT.to_owned(),
            BUNDLE_CONTENT_DSSE.to_owned(),
        ),
        (
            ANNOTATION_BUNDLE_PREDICATE_TYPE.to_owned(),
            predicate_type.to_owned(),
        ),
    ]);
    // cosign copies only mediaType, digest and size of the subject.
    let subject = Descriptor {
        media_type: subject.media_type.clone(),
        digest: subject.digest.clone(),
        size: subject.size,
        platform: None,
        annotations: BTreeMap::new(),
        artifact_type: None,
    };
    let mut manifest = Manifest::image(config, vec![bundle_descriptor.clone()]);
    manifest.artifact_type = Some(BUNDLE_V03_MEDIA_TYPE.to_owned());
    manifest.subject = Some(subject);
    manifest.annotations = annotations;
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(json_err("bundle referrer manifest"))?;
    Ok(BundleReferrer {
        manifest,
        manifest_bytes,
        bundle_descriptor,
        bundle,
    })
}

/// Verifies a fetched referrer manifest and its bundle blob: the manifest is a
/// sigstore bundle artifact whose subject is `manifest_digest`, and the
/// bundle verifies ([`verify_bundle`]) for its annotated predicate type.
pub fn verify_bundle_referrer(
    manifest_bytes: &[u8],
    fetch: &mut FetchBlob<'_>,
    key: &PublicKey,
    manifest_digest: &str,
) -> Result<Statement> {
    let manifest: Manifest =
        serde_json::from_slice(manifest_bytes).map_err(json_err("referrer manifest"))?;
    if manifest.artifact_type.as_deref() != Some(BUNDLE_V03_MEDIA_TYPE) {
        return Err(SignError::Mismatch {
            what: "referrer artifactType",
            expected: BUNDLE_V03_MEDIA_TYPE.to_owned(),
            found: manifest.artifact_type.unwrap_or_default(),
        });
    }
    let subject = manifest
        .subject
        .as_ref()
        .map(|s| s.digest.as_str())
        .unwrap_or("");
    if subject != manifest_digest {
        return Err(SignError::Mismatch {
            what: "referrer subject",
            expected: manifest_digest.to_owned(),
            found: subject.to_owned(),
        });
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err(SignError::Invalid(format!(
            "bundle referrer has {} layers, expected 1",
            manifest.layers.len()
        )));
    };
    if layer.media_type != BUNDLE_V03_MEDIA_TYPE {
        return Err(SignError::Invalid(format!(
            "bundle layer media type {}",
            layer.media_type
        )));
    }
    let blob = fetch(layer)
        .ok_or_else(|| SignError::Invalid(format!("blob {} is missing", layer.digest)))?;
    if blob.len() as u64 != layer.size || sha256_digest(&blob) != layer.digest {
        return Err(SignError::Mismatch {
            what: "bundle blob digest",
            expected: layer.digest.clone(),
            found: sha256_digest(&blob),
        });
    }
    let predicate_type = manifest
        .annotations
        .get(ANNOTATION_BUNDLE_PREDICATE_TYPE)
        .map(String::as_str);
    verify_bundle(&blob, key, manifest_digest, predicate_type)
}
