//! Signing what a publish pushes: for every tag index and per-architecture
//! manifest, cosign's legacy signature (`sha256-<hex>.sig`), the
//! attestations (SPDX and CycloneDX SBOMs, SLSA provenance) in cosign's
//! `.att` image, and the same four statements as sigstore bundles stored
//! as referrers of the signed manifest.
//!
//! Each is merged with what the registry holds: another signer's layers and
//! referrers are kept, an identical one means nothing to push, and a new
//! attestation replaces only this key's older one of the same type.
//! Signatures are deterministic, so an unchanged set pushes nothing.

use std::collections::BTreeMap;

use super::TagReport;
use super::plan::{Document, RepoPlan, TagPlan, layout_err};
use super::push::Run;
use crate::error::{Error, Result};
use crate::oci::{self, Descriptor, MEDIA_TYPE_IMAGE_MANIFEST};
use crate::provenance::{Provenance, Subject};
use crate::sign::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::sign::image::{self, AttestationLayer, Existing, Merge, SignatureImage};
use crate::sign::intoto::{self, SbomFormat, Statement};
use crate::sign::{SigningKey, bundle, simple_signing};

/// The SBOM artifact types of the layouts, and the predicate each becomes.
const SBOM_FORMATS: [(&str, SbomFormat); 2] = [
    ("application/spdx+json", SbomFormat::SpdxJson),
    ("application/vnd.cyclonedx+json", SbomFormat::CycloneDx),
];

/// What `publish --sign` signs with, and the provenance it attests.
pub struct Signer<'a> {
    pub key: SigningKey,
    pub provenance: Provenance<'a>,
}

impl Run<'_> {
    /// Signs the tag's index and each per-architecture manifest; returns the
    /// bundle referrers to list in the `sha256-<hex>` fallback indexes, by
    /// subject.
    pub(super) fn sign_tag(
        &mut self,
        signer: &Signer<'_>,
        plan: &RepoPlan,
        repository: &str,
        tag: &TagPlan,
        report: &mut TagReport,
    ) -> Result<Vec<(String, Descriptor)>> {
        let name = simple_signing::docker_reference(&self.client.target().host, repository)?;
        let all_arches: Vec<String> = tag
            .arch_tags
            .iter()
            .filter_map(|(t, _)| t.strip_prefix(&format!("{}-", tag.name)).map(str::to_owned))
            .collect();
        let mut subjects = vec![(&tag.index, all_arches.clone())];
        for (arch_tag, digest) in &tag.arch_tags {
            if let Some(doc) = tag.children.iter().find(|c| &c.digest == digest) {
                let arch = arch_tag.strip_prefix(&format!("{}-", tag.name));
                subjects.push((doc, arch.map(str::to_owned).into_iter().collect()));
            }
        }
        let mut referrers = Vec::new();
        for (doc, architectures) in subjects {
            let subject = Subject {
                name: &name,
                digest: &doc.digest,
                repository: &plan.name,
                tag: &tag.name,
                architectures: &architectures,
            };
            let statements = self.statements(signer, &plan.dir, tag, &subject)?;
            self.push_signature(signer, repository, &name, doc, report)?;
            self.push_attestations(signer, repository, doc, &statements, report)?;
            let sign = intoto::cosign_sign_statement(&doc.digest)?;
            for statement in std::iter::once(&sign).chain(&statements) {
                let d = self.push_bundle(signer, repository, doc, statement, report)?;
                referrers.push((doc.digest.clone(), d));
            }
        }
        Ok(referrers)
    }

    /// The SBOM statements (from the layout's SBOM referrers of the
    /// subject) and the provenance, in that order.
    fn statements(
        &self,
        signer: &Signer<'_>,
        dir: &std::path::Path,
        tag: &TagPlan,
        subject: &Subject<'_>,
    ) -> Result<Vec<Statement>> {
        let mut out = Vec::new();
        for (artifact_type, format) in SBOM_FORMATS {
            let referrer = tag
                .referrers
                .iter()
                .find(|r| {
                    r.subject == subject.digest
                        && r.descriptor.artifact_type.as_deref() == Some(artifact_type)
                })
                .ok_or_else(|| {
                    Error::NotAsRecorded(format!(
                        "{}: no {artifact_type} SBOM refers to {}; run `cargo xtask images`",
                        dir.display(),
                        subject.digest
                    ))
                })?;
            // The artifact's one layer is the document (its config is empty).
            let layer = referrer.document.blobs.get(1).ok_or_else(|| {
                Error::NotAsRecorded(format!(
                    "{}: SBOM artifact {} has no document",
                    dir.display(),
                    referrer.document.digest
                ))
            })?;
            let json = oci::read_described(dir, layer).map_err(layout_err)?;
            out.push(intoto::sbom_statement(
                format,
                subject.name,
                subject.digest,
                &json,
                intoto::STATEMENT_V1,
            )?);
        }
        out.push(signer.provenance.statement(subject)?);
        Ok(out)
    }

    /// The `.sig` image with this key's layer added (or already there).
    fn push_signature(
        &mut self,
        signer: &Signer<'_>,
        repository: &str,
        name: &str,
        doc: &Document,
        report: &mut TagReport,
    ) -> Result<()> {
        let layer = simple_signing::sign(&signer.key, name, &doc.digest, &BTreeMap::new())?;
        let tag = image::signature_tag(&doc.digest)?;
        let existing = self.existing_image(repository, &tag)?;
        let merged = image::merge_signature(
            existing.as_ref().map(ExistingImage::borrow),
            &layer,
            &signer.key.public_key(),
        )?;
        if let Merge::Updated(img) = merged {
            let payload = layer.descriptor();
            self.ensure_bytes(repository, &payload, &layer.payload, report)?;
            self.push_image(repository, &tag, &img, report)?;
        }
        Ok(())
    }

    /// The `.att` image with this key's SBOM and provenance attestations.
    fn push_attestations(
        &mut self,
        signer: &Signer<'_>,
        repository: &str,
        doc: &Document,
        statements: &[Statement],
        report: &mut TagReport,
    ) -> Result<()> {
        let tag = image::attestation_tag(&doc.digest)?;
        let mut current = self.existing_image(repository, &tag)?;
        let mut changed = false;
        let public = signer.key.public_key();
        let mut new_layers: Vec<AttestationLayer> = Vec::new();
        for statement in statements {
            let layer = image::attest(&signer.key, statement)?;
            let client = self.client;
            // An older attestation of the same type by this key is replaced;
            // other signers' stay.
            let mut own = |d: &Descriptor| {
                client
                    .get_blob(repository, &d.digest)
                    .ok()
                    .flatten()
                    .and_then(|blob| Envelope::from_json(&blob).ok())
                    .is_some_and(|e| e.verify(&public, IN_TOTO_PAYLOAD_TYPE).is_ok())
            };
            let merged = image::merge_attestation(
                current.as_ref().map(ExistingImage::borrow),
                &layer,
                &mut own,
            )?;
            if let Merge::Updated(img) = merged {
                changed = true;
                current = Some(ExistingImage {
                    manifest: img.manifest_bytes,
                    config: img.config,
                });
                new_layers.push(layer);
            }
        }
        let Some(current) = current.filter(|_| changed) else {
            return Ok(());
        };
        for layer in &new_layers {
            self.ensure_bytes(repository, &layer.descriptor(), &layer.envelope, report)?;
        }
        let img = image_from(current)?;
        self.push_image(repository, &tag, &img, report)
    }

    /// One statement as a sigstore bundle referrer of `doc`; returns its
    /// entry for a referrers list.
    fn push_bundle(
        &mut self,
        signer: &Signer<'_>,
        repository: &str,
        doc: &Document,
        statement: &Statement,
        report: &mut TagReport,
    ) -> Result<Descriptor> {
        let bytes = bundle::sign_bundle(&signer.key, statement)?;
        let subject = Descriptor {
            media_type: doc.media_type.clone(),
            digest: doc.digest.clone(),
            size: doc.bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
            artifact_type: None,
        };
        let referrer = bundle::bundle_referrer(bytes, &subject, &statement.predicate_type)?;
        let entry = referrer.index_descriptor();
        let document = Document {
            digest: referrer.digest(),
            media_type: MEDIA_TYPE_IMAGE_MANIFEST.to_owned(),
            bytes: referrer.manifest_bytes,
            blobs: Vec::new(),
        };
        let key = (repository.to_owned(), document.digest.clone());
        if !self.present.contains(&key)
            && self
                .client
                .manifest_digest(repository, &document.digest)?
                .as_deref()
                != Some(document.digest.as_str())
        {
            self.ensure_bytes(
                repository,
                &referrer.bundle_descriptor,
                &referrer.bundle,
                report,
            )?;
            self.ensure_bytes(repository, &Descriptor::empty(), oci::EMPTY_BLOB, report)?;
        }
        self.ensure_manifest(repository, &document, report)?;
        Ok(entry)
    }

    /// The `.sig` or `.att` image under `tag`, with its config, if any.
    fn existing_image(&self, repository: &str, tag: &str) -> Result<Option<ExistingImage>> {
        let Some((_, manifest)) = self.client.get_manifest(repository, tag)? else {
            return Ok(None);
        };
        let parsed: oci::Manifest = serde_json::from_slice(&manifest).map_err(|_| {
            Error::Output(format!(
                "{}: tag {tag} is not an image manifest; not overwriting another tool's signatures",
                self.client.place(repository)
            ))
        })?;
        let config = self
            .client
            .get_blob(repository, &parsed.config.digest)?
            .ok_or_else(|| {
                Error::Output(format!(
                    "{}: the config of tag {tag} is missing",
                    self.client.place(repository)
                ))
            })?;
        Ok(Some(ExistingImage { manifest, config }))
    }

    /// The config blob, then the manifest under `tag`.
    fn push_image(
        &mut self,
        repository: &str,
        tag: &str,
        img: &SignatureImage,
        report: &mut TagReport,
    ) -> Result<()> {
        self.ensure_bytes(repository, img.config_descriptor(), &img.config, report)?;
        if !self.dry_run {
            self.client.put_manifest(
                repository,
                tag,
                MEDIA_TYPE_IMAGE_MANIFEST,
                &img.manifest_bytes,
            )?;
        }
        report.tags_pushed += 1;
        Ok(())
    }
}

/// A `.sig` or `.att` image's bytes, as fetched or as just merged.
struct ExistingImage {
    manifest: Vec<u8>,
    config: Vec<u8>,
}

impl ExistingImage {
    fn borrow(&self) -> Existing<'_> {
        Existing {
            manifest: &self.manifest,
            config: &self.config,
        }
    }
}

fn image_from(current: ExistingImage) -> Result<SignatureImage> {
    let manifest: oci::Manifest = serde_json::from_slice(&current.manifest)
        .map_err(|e| Error::Output(format!("attestation manifest: {e}")))?;
    Ok(SignatureImage {
        manifest,
        manifest_bytes: current.manifest,
        config: current.config,
    })
}
