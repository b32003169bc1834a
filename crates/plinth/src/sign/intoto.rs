//! in-toto statements: the SBOM attestations, SLSA provenance v1 and the
//! statement cosign 3 signs for `cosign sign`.
//!
//! Field order follows the protobuf definitions cosign serialises with
//! protojson (`in_toto_attestation.v1.Statement`: `_type`, `subject`,
//! `predicateType`, `predicate`; `ResourceDescriptor`: `name`, `uri`,
//! `digest`, `content`, `downloadLocation`, `mediaType`, `annotations`).
//! Predicates are `serde_json::Value` objects, whose keys serialise sorted:
//! cosign passes every predicate through `structpb.Struct`, and protojson
//! writes a Struct's keys sorted, so an SBOM inside a cosign attestation has
//! sorted keys too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Result, SignError, digest_hex, json_err};

/// in-toto Statement v1, the current specification.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// What `cosign attest` still writes as `_type` (in-toto-golang's
/// `StatementInTotoV01`), for every predicate type, in cosign 3.1 too.
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";

pub const PREDICATE_SPDX: &str = "https://spdx.dev/Document";
pub const PREDICATE_CYCLONEDX: &str = "https://cyclonedx.org/bom";
pub const PREDICATE_SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// The predicate of the statement `cosign sign` signs in the bundle format.
pub const PREDICATE_COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    #[serde(default)]
    pub predicate: serde_json::Value,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `Some(empty)` serialises as `{}`: cosign's sign statement has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, serde_json::Value>>,
}

impl ResourceDescriptor {
    /// A subject naming an image by its sha256 digest.
    pub fn image(name: Option<&str>, manifest_digest: &str) -> Result<Self> {
        let hex = digest_hex(manifest_digest)?;
        Ok(Self {
            name: name.map(str::to_owned),
            digest: BTreeMap::from([("sha256".to_owned(), hex.to_owned())]),
            ..Self::default()
        })
    }
}

impl Statement {
    /// Compact JSON (protojson writes no HTML escapes, so plain serde_json).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(json_err("in-toto statement"))
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(json_err("in-toto statement"))
    }

    /// The subjects' sha256 digests, for messages.
    pub fn subject_digests(&self) -> String {
        let all: Vec<String> = self
            .subject
            .iter()
            .filter_map(|s| s.digest.get("sha256"))
            .map(|hex| format!("sha256:{hex}"))
            .collect();
        if all.is_empty() {
            "no sha256 subject".to_owned()
        } else {
            all.join(", ")
        }
    }

    /// Whether a subject names `manifest_digest` (cosign's
    /// `IntotoSubjectClaimVerifier` looks at the sha256 entries only).
    pub fn has_subject_digest(&self, manifest_digest: &str) -> bool {
        let Some(hex) = super::sha256_hex(manifest_digest) else {
            return false;
        };
        self.subject
            .iter()
            .any(|s| s.digest.get("sha256").map(String::as_str) == Some(hex))
    }
}

/// The statement `cosign sign` (cosign 3, bundle format) signs:
/// `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":HEX},"annotations":{}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`.
/// No subject name; `annotations` is the (empty) `structpb.Struct` of `-a`
/// options, present even when empty; the predicate is an empty Struct.
pub fn cosign_sign_statement(manifest_digest: &str) -> Result<Statement> {
    let mut subject = ResourceDescriptor::image(None, manifest_digest)?;
    subject.annotations = Some(BTreeMap::new());
    Ok(Statement {
        statement_type: STATEMENT_V1.to_owned(),
        subject: vec![subject],
        predicate_type: PREDICATE_COSIGN_SIGN.to_owned(),
        predicate: serde_json::Value::Object(serde_json::Map::new()),
    })
}

/// The SBOM formats `cosign attest --type spdxjson|cyclonedx` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbomFormat {
    SpdxJson,
    CycloneDx,
}

impl SbomFormat {
    pub fn predicate_type(self) -> &'static str {
        match self {
            Self::SpdxJson => PREDICATE_SPDX,
            Self::CycloneDx => PREDICATE_CYCLONEDX,
        }
    }
}

/// An SBOM attestation statement as `cosign attest --type spdxjson|cyclonedx`
/// builds it: one subject `{"name": REPOSITORY, "digest": {"sha256": HEX}}`
/// where REPOSITORY is [`super::simple_signing::docker_reference`]'s form,
/// the SBOM JSON object as predicate. `statement_type` is [`STATEMENT_V01`]
/// to match cosign, or [`STATEMENT_V1`].
pub fn sbom_statement(
    format: SbomFormat,
    repository: &str,
    manifest_digest: &str,
    sbom_json: &[u8],
    statement_type: &str,
) -> Result<Statement> {
    let predicate: serde_json::Value =
        serde_json::from_slice(sbom_json).map_err(json_err("SBOM"))?;
    if !predicate.is_object() {
        // structpb.NewStruct takes a map: cosign rejects non-object SBOMs too.
        return Err(SignError::Invalid(
            "SBOM: the document is not a JSON object".into(),
        ));
    }
    Ok(Statement {
        statement_type: statement_type.to_owned(),
        subject: vec![ResourceDescriptor::image(
            Some(repository),
            manifest_digest,
        )?],
        predicate_type: format.predicate_type().to_owned(),
        predicate,
    })
}

/// SLSA provenance v1 predicate (`https://slsa.dev/provenance/v1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// A URI naming how to read the parameters, e.g. plinth's own build type.
    pub build_type: String,
    /// Inputs under the caller's control (image name, lockfile digest ...).
    pub external_parameters: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_parameters: Option<serde_json::Value>,
    /// The `.deb` files and base inputs, with digests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BuildMetadata>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Builder {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builder_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// RFC 3339; for reproducible output, the build's SOURCE_DATE_EPOCH, not now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}

/// A SLSA provenance v1 statement (in-toto Statement v1) for `subjects`.
pub fn provenance_statement(
    subjects: Vec<ResourceDescriptor>,
    provenance: &Provenance,
) -> Result<Statement> {
    if subjects.is_empty() {
        return Err(SignError::Invalid("provenance: no subjects".into()));
    }
    // Through Value, like every predicate here: sorted keys, as cosign's
    // `attest --type slsaprovenance1` (protojson → structpb) writes them.
    let predicate = serde_json::to_value(provenance).map_err(json_err("SLSA provenance"))?;
    Ok(Statement {
        statement_type: STATEMENT_V1.to_owned(),
        subject: subjects,
        predicate_type: PREDICATE_SLSA_PROVENANCE_V1.to_owned(),
        predicate,
    })
}
