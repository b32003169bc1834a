//! The `.sig` and `.att` images cosign keeps next to a signed image, and
//! adding one more signer's layer to them.
//!
//! Layout (cosign `pkg/oci/empty`, `pkg/oci/mutate`, go-containerregistry
//! `mutate.Append`), OCI media types (cosign's default):
//! - tag `sha256-<hex>.sig` / `sha256-<hex>.att` in the image's repository;
//! - manifest `application/vnd.oci.image.manifest.v1+json`, no annotations;
//! - config `application/vnd.oci.image.config.v1+json`, the JSON
//!   go-containerregistry writes for an empty image with layers appended:
//!   `{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"},…],"os":"","rootfs":{"type":"layers","diff_ids":[<layer digests>]},"config":{}}`
//!   (one zero-time history entry and one diff_id per layer; layers are not
//!   compressed, so a diff_id is the layer digest);
//! - `.sig` layers: [`super::simple_signing::SIMPLE_SIGNING_MEDIA_TYPE`] with
//!   the signature annotation;
//! - `.att` layers: `application/vnd.dsse.envelope.v1+json` holding a DSSE
//!   envelope, annotations `predicateType` and an empty
//!   `dev.cosignproject.cosign/signature` (cosign's static layer always sets
//!   that key; for attestations the signature is inside the envelope).
//!
//! The manifest is serialised with plinth's own `Manifest` (key order
//! mediaType, digest, size in descriptors) rather than go-containerregistry's
//! (mediaType, size, digest): registries and cosign parse it, nobody
//! compares its bytes, and cosign's own are never reproducible anyway
//! (Go's ECDSA nonces are random).

use serde::{Deserialize, Serialize};

use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::intoto::Statement;
use super::key::{PublicKey, SigningKey};
use super::simple_signing::{
    self, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SignatureLayer, SimpleSigning,
};
use super::{Result, SignError, digest_hex, json_err};
use crate::oci::{Descriptor, MEDIA_TYPE_IMAGE_CONFIG, Manifest, descriptor_for};
use crate::support::digest::sha256_digest;

pub const DSSE_ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// cosign refuses `.sig`/`.att` images with more layers than this
/// (`pkg/oci/mutate/signatures.go`); so do we, also as a bound on hostile input.
pub const MAX_LAYERS: usize = 1000;

/// Go's zero `time.Time`, which go-containerregistry writes for "no time".
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `sha256-<hex>.sig`, the tag of the signatures of `manifest_digest`.
pub fn signature_tag(manifest_digest: &str) -> Result<String> {
    Ok(format!("sha256-{}.sig", digest_hex(manifest_digest)?))
}

/// `sha256-<hex>.att`, the tag of the attestations of `manifest_digest`.
pub fn attestation_tag(manifest_digest: &str) -> Result<String> {
    Ok(format!("sha256-{}.att", digest_hex(manifest_digest)?))
}

/// An `.att` layer: a DSSE envelope blob and its predicate type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationLayer {
    pub envelope: Vec<u8>,
    pub predicate_type: String,
}

impl AttestationLayer {
    pub fn descriptor(&self) -> Descriptor {
        let mut d = descriptor_for(DSSE_ENVELOPE_MEDIA_TYPE, &self.envelope);
        d.annotations.insert(
            PREDICATE_TYPE_ANNOTATION.to_owned(),
            self.predicate_type.clone(),
        );
        d.annotations
            .insert(SIGNATURE_ANNOTATION.to_owned(), String::new());
        d
    }
}

/// Signs `statement` into an `.att` layer (DSSE, in-toto payload type).
pub fn attest(key: &SigningKey, statement: &Statement) -> Result<AttestationLayer> {
    let envelope = Envelope::sign(key, IN_TOTO_PAYLOAD_TYPE, statement.to_json()?);
    Ok(AttestationLayer {
        envelope: envelope.to_json()?,
        predicate_type: statement.predicate_type.clone(),
    })
}

/// A `.sig` or `.att` image ready to push: push `config`, any layer blob the
/// registry lacks, then `manifest_bytes` under the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureImage {
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub config: Vec<u8>,
}

impl SignatureImage {
    pub fn config_descriptor(&self) -> &Descriptor {
        &self.manifest.config
    }

    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest_bytes)
    }
}

/// The `.sig` or `.att` image already in the registry, as fetched.
#[derive(Clone, Copy, Debug)]
pub struct Existing<'a> {
    pub manifest: &'a [u8],
    pub config: &'a [u8],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The layer is already there (same signer, same payload): push nothing.
    Unchanged,
    /// Push this image (and the new layer's blob).
    Updated(Box<SignatureImage>),
}

// go-containerregistry's ConfigFile, the fields cosign's images use, in Go's
// field order; `history` entries keep Go's order too.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct GoConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default = "go_zero_time")]
    created: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    history: Vec<GoHistory>,
    #[serde(default)]
    os: String,
    rootfs: GoRootFs,
    #[serde(default = "empty_object")]
    config: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct GoHistory {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    author: String,
    #[serde(default = "go_zero_time")]
    created: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    created_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    comment: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    empty_layer: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct GoRootFs {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<String>,
}

fn go_zero_time() -> String {
    GO_ZERO_TIME.to_owned()
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl GoConfig {
    fn empty() -> Self {
        Self {
            architecture: String::new(),
            created: go_zero_time(),
            history: Vec::new(),
            os: String::new(),
            rootfs: GoRootFs {
                kind: "layers".to_owned(),
                diff_ids: Vec::new(),
            },
            config: empty_object(),
        }
    }

    /// What `mutate.Append` does to the config for one uncompressed layer.
    fn append(&mut self, layer: &Descriptor) {
        self.history.push(GoHistory {
            author: String::new(),
            created: go_zero_time(),
            created_by: String::new(),
            comment: String::new(),
            empty_layer: false,
        });
        self.rootfs.diff_ids.push(layer.digest.clone());
    }
}

fn build(config: &GoConfig, layers: Vec<Descriptor>) -> Result<SignatureImage> {
    let config_bytes = super::gojson::to_vec(config).map_err(json_err("signature image config"))?;
    let manifest = Manifest::image(
        descriptor_for(MEDIA_TYPE_IMAGE_CONFIG, &config_bytes),
        layers,
    );
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(json_err("signature image manifest"))?;
    Ok(SignatureImage {
        manifest,
        manifest_bytes,
        config: config_bytes,
    })
}

/// A new image holding `layers` (descriptors of [`SignatureLayer`]s or
/// [`AttestationLayer`]s), in this order.
pub fn new_image(layers: Vec<Descriptor>) -> Result<SignatureImage> {
    if layers.len() > MAX_LAYERS {
        return Err(SignError::TooManyLayers {
            what: "new signature image",
            layers: layers.len(),
        });
    }
    let mut config = GoConfig::empty();
    for layer in &layers {
        config.append(layer);
    }
    build(&config, layers)
}

fn parse_existing(existing: Existing<'_>) -> Result<(Manifest, GoConfig)> {
    let manifest: Manifest = serde_json::from_slice(existing.manifest)
        .map_err(json_err("existing signature manifest"))?;
    if manifest.layers.len() >= MAX_LAYERS {
        return Err(SignError::TooManyLayers {
            what: "existing signature image",
            layers: manifest.layers.len(),
        });
    }
    if sha256_digest(existing.config) != manifest.config.digest {
        return Err(SignError::Mismatch {
            what: "existing signature image config digest",
            expected: manifest.config.digest.clone(),
            found: sha256_digest(existing.config),
        });
    }
    let config: GoConfig =
        serde_json::from_slice(existing.config).map_err(json_err("existing signature config"))?;
    Ok((manifest, config))
}

fn append_to(existing: Option<Existing<'_>>, layer: Descriptor) -> Result<SignatureImage> {
    let Some(existing) = existing else {
        return new_image(vec![layer]);
    };
    let (manifest, mut config) = parse_existing(existing)?;
    config.append(&layer);
    let mut layers = manifest.layers;
    layers.push(layer);
    build(&config, layers)
}

/// Adds `layer`, signed by `signer`'s key, to the `.sig` image `existing`
/// (or starts one). Like cosign's duplicate detector, a layer with the same
/// payload and media type whose signature verifies with `signer` counts as
/// already present, so signing twice changes nothing; other signers' layers
/// are kept in order.
pub fn merge_signature(
    existing: Option<Existing<'_>>,
    layer: &SignatureLayer,
    signer: &PublicKey,
) -> Result<Merge> {
    let new = layer.descriptor();
    if let Some(existing) = existing {
        let (manifest, _) = parse_existing(existing)?;
        let duplicate = manifest.layers.iter().any(|d| {
            d.media_type == SIMPLE_SIGNING_MEDIA_TYPE
                && d.digest == new.digest
                && d.annotations.get(SIGNATURE_ANNOTATION).is_some_and(|sig| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(sig)
                        .is_ok_and(|der| signer.verify(&layer.payload, &der))
                })
        });
        if duplicate {
            return Ok(Merge::Unchanged);
        }
    }
    append_to(existing, new).map(|i| Merge::Updated(Box::new(i)))
}

/// Adds an attestation layer to the `.att` image `existing` (or starts one).
/// An identical layer already there means no change: envelopes are
/// deterministic, so re-attesting the same statement with the same key is
/// a no-op. `replaces` says which existing layers of the same predicate
/// type the new one supersedes: plinth passes "signed by the same key", so
/// a new provenance replaces its own older one and keeps other signers';
/// `|_| true` is `cosign attest --replace`, `|_| false` appends.
pub fn merge_attestation(
    existing: Option<Existing<'_>>,
    layer: &AttestationLayer,
    replaces: &mut dyn FnMut(&Descriptor) -> bool,
) -> Result<Merge> {
    let new = layer.descriptor();
    let Some(existing) = existing else {
        return new_image(vec![new]).map(|i| Merge::Updated(Box::new(i)));
    };
    let (manifest, config) = parse_existing(existing)?;
    let present = manifest.layers.contains(&new);
    let mut dropped = Vec::new();
    for d in &manifest.layers {
        let same_type = d
            .annotations
            .get(PREDICATE_TYPE_ANNOTATION)
            .is_some_and(|t| *t == layer.predicate_type);
        if same_type && *d != new && replaces(d) {
            dropped.push(d.clone());
        }
    }
    if dropped.is_empty() {
        if present {
            return Ok(Merge::Unchanged);
        }
        let mut config = config;
        config.append(&new);
        let mut layers = manifest.layers;
        layers.push(new);
        return build(&config, layers).map(|i| Merge::Updated(Box::new(i)));
    }
    // Rebuild the config from the kept layers, as cosign's replace does by
    // appending them to an empty image.
    let mut layers: Vec<Descriptor> = manifest
        .layers
        .into_iter()
        .filter(|d| !dropped.contains(d) && *d != new)
        .collect();
    layers.push(new);
    new_image(layers).map(|i| Merge::Updated(Box::new(i)))
}

/// Fetches a layer blob; `None` if the registry does not have it.
pub type FetchBlob<'a> = dyn FnMut(&Descriptor) -> Option<Vec<u8>> + 'a;

/// A fetched blob, checked against its descriptor.
pub(super) fn fetch_checked(fetch: &mut FetchBlob<'_>, d: &Descriptor) -> Result<Vec<u8>> {
    let blob = fetch(d).ok_or_else(|| SignError::MissingBlob(d.digest.clone()))?;
    if blob.len() as u64 != d.size || sha256_digest(&blob) != d.digest {
        return Err(SignError::Mismatch {
            what: "layer blob digest",
            expected: d.digest.clone(),
            found: sha256_digest(&blob),
        });
    }
    Ok(blob)
}

fn parse_manifest(bytes: &[u8], what: &'static str) -> Result<Manifest> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(json_err(what))?;
    if manifest.layers.len() > MAX_LAYERS {
        return Err(SignError::TooManyLayers {
            what,
            layers: manifest.layers.len(),
        });
    }
    Ok(manifest)
}

/// Verifies a fetched `.sig` image: every simple-signing layer whose blob
/// matches its descriptor and whose signature verifies with `key` over a
/// payload naming `manifest_digest` (and `docker_reference`, if given)
/// counts. Succeeds with the payloads of those layers if there is at least
/// one, as `cosign verify --key` does; layers of other signers are skipped.
/// Otherwise the most telling failure: a layer signed by `key` for another
/// image ([`SignError::WrongSubject`]) before layers of other keys
/// ([`SignError::BadSignature`]).
pub fn verify_signature_image(
    manifest_bytes: &[u8],
    fetch: &mut FetchBlob<'_>,
    key: &PublicKey,
    manifest_digest: &str,
    docker_reference: Option<&str>,
) -> Result<Vec<SimpleSigning>> {
    digest_hex(manifest_digest)?;
    let manifest = parse_manifest(manifest_bytes, "signature manifest")?;
    let mut verified = Vec::new();
    let mut failures = Vec::new();
    for d in &manifest.layers {
        let outcome = (|| {
            if d.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
                return Err(SignError::Invalid(format!(
                    "signature layer of media type {}",
                    d.media_type
                )));
            }
            let sig = d.annotations.get(SIGNATURE_ANNOTATION).ok_or_else(|| {
                SignError::Invalid("signature layer without a signature annotation".into())
            })?;
            let payload = fetch_checked(fetch, d)?;
            simple_signing::verify(&payload, sig, key, manifest_digest, docker_reference)
        })();
        match outcome {
            Ok(doc) => verified.push(doc),
            Err(e) => failures.push(e),
        }
    }
    if verified.is_empty() {
        return Err(SignError::most_telling(failures, || {
            SignError::Absent("the signature image has no layers".into())
        }));
    }
    Ok(verified)
}

/// Verifies one `.att` layer blob: a DSSE envelope signed by `key` whose
/// in-toto statement has `manifest_digest` as a subject.
pub fn verify_attestation(
    envelope_json: &[u8],
    key: &PublicKey,
    manifest_digest: &str,
) -> Result<Statement> {
    let envelope = Envelope::from_json(envelope_json)?;
    let payload = envelope.verify(key, IN_TOTO_PAYLOAD_TYPE)?;
    let statement = Statement::from_json(payload)?;
    if !statement.has_subject_digest(manifest_digest) {
        return Err(SignError::WrongSubject {
            what: "the signed attestation",
            expected: manifest_digest.to_owned(),
            found: statement.subject_digests(),
        });
    }
    Ok(statement)
}

/// Verifies a fetched `.att` image; returns the statements of the layers
/// of `predicate_type` signed by `key` for `manifest_digest` (the type is
/// checked in the signed statement, not just the annotation). Without
/// such a layer, [`SignError::Absent`] if no layer claims the type, else
/// the most telling failure.
pub fn verify_attestation_image(
    manifest_bytes: &[u8],
    fetch: &mut FetchBlob<'_>,
    key: &PublicKey,
    manifest_digest: &str,
    predicate_type: &str,
) -> Result<Vec<Statement>> {
    digest_hex(manifest_digest)?;
    let manifest = parse_manifest(manifest_bytes, "attestation manifest")?;
    let mut verified = Vec::new();
    let mut failures = Vec::new();
    let claimed = manifest.layers.iter().filter(|d| {
        d.media_type == DSSE_ENVELOPE_MEDIA_TYPE
            && d.annotations
                .get(PREDICATE_TYPE_ANNOTATION)
                .map(String::as_str)
                == Some(predicate_type)
    });
    for d in claimed {
        let outcome = fetch_checked(fetch, d)
            .and_then(|blob| verify_attestation(&blob, key, manifest_digest));
        match outcome {
            Ok(st) if st.predicate_type == predicate_type => verified.push(st),
            Ok(st) => failures.push(SignError::Mismatch {
                what: "signed predicate type",
                expected: predicate_type.to_owned(),
                found: st.predicate_type,
            }),
            Err(e) => failures.push(e),
        }
    }
    if verified.is_empty() {
        return Err(SignError::most_telling(failures, || {
            SignError::Absent(format!("no {predicate_type} attestation"))
        }));
    }
    Ok(verified)
}
