//! What a publish pushes, read from the layouts and checked against the
//! record before anything is sent: per repository, the selected tags, their
//! blobs, manifests and SBOM referrers, in push order.

use crate::digests::TagSummary;
use crate::error::{Error, Result};
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::registry::manifest_media_type;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// The plan

/// A manifest or index: its exact stored bytes.
pub(super) struct Document {
    pub(super) digest: String,
    pub(super) media_type: String,
    pub(super) bytes: Vec<u8>,
    /// The blobs it refers to (config and layers); none for an index.
    pub(super) blobs: Vec<Descriptor>,
}

impl Document {
    pub(super) fn read(dir: &Path, desc: &Descriptor) -> Result<Self> {
        let bytes = oci::read_described(dir, desc).map_err(layout_err)?;
        let media_type = manifest_media_type(&bytes);
        let blobs = if media_type == oci::MEDIA_TYPE_IMAGE_INDEX {
            Vec::new()
        } else {
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                Error::NotAsRecorded(format!(
                    "{}: manifest {} is not valid: {e}",
                    dir.display(),
                    desc.digest
                ))
            })?;
            std::iter::once(m.config).chain(m.layers).collect()
        };
        Ok(Document {
            digest: desc.digest.clone(),
            media_type,
            bytes,
            blobs,
        })
    }
}

/// An SBOM artifact whose subject is one of a tag's documents.
pub(super) struct Referrer {
    pub(super) document: Document,
    pub(super) subject: String,
    /// Its entry in a referrers index: artifact type and annotations.
    pub(super) descriptor: Descriptor,
}

pub(super) struct TagPlan {
    pub(super) name: String,
    pub(super) index: Document,
    pub(super) children: Vec<Document>,
    /// `(tag-arch, digest of the per-arch manifest)`.
    pub(super) arch_tags: Vec<(String, String)>,
    pub(super) referrers: Vec<Referrer>,
}

pub(super) struct RepoPlan {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) tags: Vec<TagPlan>,
}

impl RepoPlan {
    /// Reads the layout and checks every selected tag against the record.
    pub(super) fn load(out_dir: &Path, name: &str, recorded: &[&TagSummary]) -> Result<Self> {
        let dir = out_dir.join(name);
        let index = oci::read_layout(&dir).map_err(layout_err)?;
        let mut referrers: Vec<(Descriptor, Manifest)> = Vec::new();
        for d in index.manifests.iter().filter(|d| d.artifact_type.is_some()) {
            let m: Manifest = oci::read_json(&dir, d).map_err(layout_err)?;
            referrers.push((d.clone(), m));
        }
        let mut tags = Vec::new();
        for summary in recorded {
            tags.push(TagPlan::load(&dir, &index, summary, &referrers)?);
        }
        Ok(RepoPlan {
            name: name.to_owned(),
            dir,
            tags,
        })
    }
}

impl TagPlan {
    pub(super) fn load(
        dir: &Path,
        layout: &Index,
        summary: &TagSummary,
        referrers: &[(Descriptor, Manifest)],
    ) -> Result<Self> {
        let stale = |tag: &str| {
            Error::NotAsRecorded(format!(
                "{}:{tag} is not what lockfiles/digests.toml records; run `cargo xtask images`",
                dir.display()
            ))
        };
        let desc = layout
            .find_ref(&summary.tag)
            .filter(|d| d.digest == summary.index)
            .ok_or_else(|| stale(&summary.tag))?;
        let index = Document::read(dir, desc)?;
        let parsed: Index = oci::read_json(dir, desc).map_err(layout_err)?;
        let children = parsed
            .manifests
            .iter()
            .map(|d| Document::read(dir, d))
            .collect::<Result<Vec<_>>>()?;
        let mut arch_tags = Vec::new();
        for p in &summary.platform {
            let tag = format!("{}-{}", summary.tag, p.architecture);
            let ok = layout
                .find_ref(&tag)
                .is_some_and(|d| d.digest == p.manifest)
                && children.iter().any(|c| c.digest == p.manifest);
            if !ok {
                return Err(stale(&tag));
            }
            arch_tags.push((tag, p.manifest.clone()));
        }
        let subjects: HashSet<&str> = std::iter::once(index.digest.as_str())
            .chain(children.iter().map(|c| c.digest.as_str()))
            .collect();
        let referrers = referrers
            .iter()
            .filter_map(|(d, m)| {
                let subject = m.subject.as_ref()?;
                subjects
                    .contains(subject.digest.as_str())
                    .then(|| Referrer::load(dir, d, m, &subject.digest))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TagPlan {
            name: summary.tag.clone(),
            index,
            children,
            arch_tags,
            referrers,
        })
    }
}

impl Referrer {
    pub(super) fn load(
        dir: &Path,
        desc: &Descriptor,
        manifest: &Manifest,
        subject: &str,
    ) -> Result<Self> {
        let descriptor = Descriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size,
            platform: None,
            annotations: manifest.annotations.clone(),
            artifact_type: manifest
                .artifact_type
                .clone()
                .or_else(|| desc.artifact_type.clone()),
        };
        Ok(Referrer {
            document: Document::read(dir, desc)?,
            subject: subject.to_owned(),
            descriptor,
        })
    }
}

pub(super) fn layout_err(e: oci::OciError) -> Error {
    Error::NotAsRecorded(format!("{e}; run `cargo xtask images`"))
}
