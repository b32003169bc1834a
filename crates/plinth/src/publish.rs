//! Publishing: pushes what `build` wrote, exactly as written, to a
//! registry through [`crate::registry`].
//!
//! It owns the plan (which tags, which blobs and manifests, in which
//! order), the check that every layout is what `lockfiles/digests.toml`
//! records, idempotence (ask before every upload and every manifest push),
//! the referrers tag-schema fallback for registries without the referrers
//! API, and the read-back of every tag afterwards.
//!
//! It never re-serialises a stored manifest or index: the bytes pushed
//! are the layout's bytes, so the registry's digests are the recorded ones.
//! The only documents it writes itself are the fallback `sha256-<hex>`
//! referrer indexes, which the distribution spec defines as registry-side
//! bookkeeping.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use rayon::prelude::*;

use crate::build::TagSummary;
use crate::digests::RecordedDigests;
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::project::{Error, Progress, Result};
use crate::registry::{Client, RegistryError, Upload, manifest_media_type};

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Where the OCI layouts are (`target/images`).
    pub out_dir: PathBuf,
    /// Image repositories (`static-debian13`) or images (`static`, every
    /// distribution); all when empty.
    pub images: Vec<String>,
    /// Tags as recorded (`latest`, `nonroot`, ...); each brings its
    /// per-architecture tags. All when empty.
    pub tags: Vec<String>,
    /// Ask the registry what it lacks, change nothing.
    pub dry_run: bool,
}

/// What happened to one recorded tag (with its per-architecture tags and
/// SBOMs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagReport {
    /// The repository in the registry (with the prefix).
    pub repository: String,
    pub tag: String,
    /// The index digest the tag points at.
    pub digest: String,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_mounted: usize,
    /// Manifests, indexes and referrer indexes pushed by digest.
    pub manifests_pushed: usize,
    /// Tags (re)pointed.
    pub tags_pushed: usize,
}

impl TagReport {
    pub fn unchanged(&self) -> bool {
        self.blobs_uploaded == 0
            && self.blobs_mounted == 0
            && self.manifests_pushed == 0
            && self.tags_pushed == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// `host[:port]/prefix`.
    pub registry: String,
    pub dry_run: bool,
    /// Whether the registry has the referrers API (else the tag schema
    /// fallback was used); `None` when no SBOM needed pushing.
    pub referrers_api: Option<bool>,
    pub tags: Vec<TagReport>,
}

impl PublishReport {
    pub fn blobs_uploaded(&self) -> usize {
        self.tags.iter().map(|t| t.blobs_uploaded).sum()
    }
    pub fn bytes_uploaded(&self) -> u64 {
        self.tags.iter().map(|t| t.bytes_uploaded).sum()
    }
    pub fn blobs_mounted(&self) -> usize {
        self.tags.iter().map(|t| t.blobs_mounted).sum()
    }
    pub fn manifests_pushed(&self) -> usize {
        self.tags.iter().map(|t| t.manifests_pushed).sum()
    }
    pub fn tags_pushed(&self) -> usize {
        self.tags.iter().map(|t| t.tags_pushed).sum()
    }
}

/// Pushes the selected tags' blobs, manifests, indexes, SBOM referrers and
/// tags, skipping whatever the registry already has, then reads every tag
/// back and checks its digest. Nothing is sent before every selected
/// layout has been checked against `recorded`.
pub fn publish(
    client: &Client,
    recorded: &RecordedDigests,
    options: &PublishOptions,
    progress: &dyn Progress,
) -> Result<PublishReport> {
    let selected = select(recorded, &options.images, &options.tags)?;
    let plans = selected
        .iter()
        .map(|(repo, tags)| RepoPlan::load(&options.out_dir, repo, tags))
        .collect::<Result<Vec<_>>>()?;
    client.ping()?;

    // Repositories go in parallel: each is a chain of requests that wait on
    // the registry. A blob goes up once; the other repositories mount it.
    let holders = Holders::default();
    let total = plans.iter().map(|p| p.tags.len() as u64).sum();
    progress.begin("publish", total);
    let reports = plans
        .par_iter()
        .map(|plan| {
            let mut run = Run {
                client,
                dry_run: options.dry_run,
                present: HashSet::new(),
                holders: &holders,
            };
            let repository = client.target().repository(&plan.name);
            let mut reports = Vec::new();
            for tag in &plan.tags {
                reports.push(run.push_tag(plan, &repository, tag)?);
                progress.step(&format!("{}:{}", plan.name, tag.name));
            }
            if !options.dry_run {
                verify_tags(client, plan)?;
            }
            Ok(reports)
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    progress.end();
    Ok(PublishReport {
        registry: client.target().to_string(),
        dry_run: options.dry_run,
        referrers_api: client.known_referrers_api(),
        tags: reports,
    })
}

// ---------------------------------------------------------------------------
// Selection and the plan

/// The recorded tags to publish, by layout name.
fn select<'a>(
    recorded: &'a RecordedDigests,
    images: &[String],
    tags: &[String],
) -> Result<BTreeMap<&'a str, Vec<&'a TagSummary>>> {
    if recorded.image.is_empty() {
        return Err(Error::Usage(
            "lockfiles/digests.toml records no images; run `cargo xtask images` first".into(),
        ));
    }
    let repos: BTreeSet<&str> = recorded
        .image
        .iter()
        .map(|t| t.repository.as_str())
        .collect();
    let known_tags: BTreeSet<&str> = recorded.image.iter().map(|t| t.tag.as_str()).collect();
    for name in images {
        if !repos.iter().any(|r| names_repository(name, r)) {
            return Err(Error::Usage(format!(
                "no image {name:?} in lockfiles/digests.toml (known: {})",
                repos.iter().copied().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    for tag in tags {
        if !known_tags.contains(tag.as_str()) {
            return Err(Error::Usage(format!(
                "no tag {tag:?} in lockfiles/digests.toml (known: {})",
                known_tags.iter().copied().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let mut out: BTreeMap<&str, Vec<&TagSummary>> = BTreeMap::new();
    for t in &recorded.image {
        let image_ok =
            images.is_empty() || images.iter().any(|n| names_repository(n, &t.repository));
        let tag_ok = tags.is_empty() || tags.contains(&t.tag);
        if image_ok && tag_ok {
            out.entry(t.repository.as_str()).or_default().push(t);
        }
    }
    Ok(out)
}

/// `static` names `static-debian13` and `static-debian12`, not
/// `static-nossl-debian13`: distributions carry no `-`.
fn names_repository(name: &str, repository: &str) -> bool {
    repository == name
        || repository
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|dist| !dist.is_empty() && !dist.contains('-'))
}

/// A manifest or index: its exact stored bytes.
struct Document {
    digest: String,
    media_type: String,
    bytes: Vec<u8>,
    /// The blobs it refers to (config and layers); none for an index.
    blobs: Vec<Descriptor>,
}

impl Document {
    fn read(dir: &Path, desc: &Descriptor) -> Result<Self> {
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
struct Referrer {
    document: Document,
    subject: String,
    /// Its entry in a referrers index: artifact type and annotations.
    descriptor: Descriptor,
}

struct TagPlan {
    name: String,
    index: Document,
    children: Vec<Document>,
    /// `(tag-arch, digest of the per-arch manifest)`.
    arch_tags: Vec<(String, String)>,
    referrers: Vec<Referrer>,
}

struct RepoPlan {
    name: String,
    dir: PathBuf,
    tags: Vec<TagPlan>,
}

impl RepoPlan {
    /// Reads the layout and checks every selected tag against the record.
    fn load(out_dir: &Path, name: &str, recorded: &[&TagSummary]) -> Result<Self> {
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
    fn load(
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
    fn load(dir: &Path, desc: &Descriptor, manifest: &Manifest, subject: &str) -> Result<Self> {
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

fn layout_err(e: oci::OciError) -> Error {
    Error::NotAsRecorded(format!("{e}; run `cargo xtask images`"))
}

// ---------------------------------------------------------------------------
// Pushing

struct Run<'a> {
    client: &'a Client,
    dry_run: bool,
    /// `(repository, digest)` known to be in the registry (or, in a dry
    /// run, that would be).
    present: HashSet<(String, String)>,
    holders: &'a Holders,
}

fn count(report: &mut TagReport, blob: &Descriptor, mounted: bool) {
    if mounted {
        report.blobs_mounted += 1;
    } else {
        report.blobs_uploaded += 1;
        report.bytes_uploaded += blob.size;
    }
}

/// Which repository holds each blob, shared by the repositories pushed in
/// parallel, so that a blob goes up once and the others mount it.
#[derive(Default)]
struct Holders {
    /// `None`: some repository is uploading it right now.
    map: Mutex<HashMap<String, Option<String>>>,
    changed: Condvar,
}

impl Holders {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Option<String>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A repository to mount `digest` from; `None` makes the caller its
    /// uploader, who must then [`hold`](Self::hold) or
    /// [`release`](Self::release) it. Waits while another uploads it.
    fn claim(&self, digest: &str) -> Option<String> {
        let mut map = self.lock();
        loop {
            match map.get(digest) {
                Some(Some(holder)) => return Some(holder.clone()),
                Some(None) => {
                    map = self
                        .changed
                        .wait(map)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                None => {
                    map.insert(digest.to_owned(), None);
                    return None;
                }
            }
        }
    }

    fn hold(&self, digest: &str, repository: &str) {
        let mut map = self.lock();
        let slot = map.entry(digest.to_owned()).or_default();
        if slot.is_none() {
            *slot = Some(repository.to_owned());
            self.changed.notify_all();
        }
    }

    /// An upload failed: let a waiting repository try.
    fn release(&self, digest: &str) {
        let mut map = self.lock();
        if map.get(digest).is_some_and(Option::is_none) {
            map.remove(digest);
        }
        self.changed.notify_all();
    }

    /// The holder if any, else records `repository` (dry runs).
    fn first_or(&self, digest: &str, repository: &str) -> Option<String> {
        let mut map = self.lock();
        let slot = map.entry(digest.to_owned()).or_default();
        match slot {
            Some(holder) => Some(holder.clone()),
            None => {
                *slot = Some(repository.to_owned());
                None
            }
        }
    }
}

impl Run<'_> {
    /// Blobs, then per-arch manifests, the index, the SBOMs and their
    /// fallback indexes, then the tags: each only after what it refers to.
    fn push_tag(&mut self, plan: &RepoPlan, repository: &str, tag: &TagPlan) -> Result<TagReport> {
        let mut report = TagReport {
            repository: repository.to_owned(),
            tag: tag.name.clone(),
            digest: tag.index.digest.clone(),
            ..TagReport::default()
        };
        let documents = tag
            .children
            .iter()
            .chain(tag.referrers.iter().map(|r| &r.document));
        for blob in documents.flat_map(|d| &d.blobs) {
            self.ensure_blob(&plan.dir, repository, blob, &mut report)?;
        }
        for doc in tag.children.iter().chain([&tag.index]) {
            self.ensure_manifest(repository, doc, &mut report)?;
        }
        for r in &tag.referrers {
            self.ensure_manifest(repository, &r.document, &mut report)?;
        }
        if !tag.referrers.is_empty() && !self.client.referrers_api(repository, &tag.index.digest)? {
            let mut by_subject: BTreeMap<&str, Vec<&Descriptor>> = BTreeMap::new();
            for r in &tag.referrers {
                by_subject
                    .entry(&r.subject)
                    .or_default()
                    .push(&r.descriptor);
            }
            for (subject, descriptors) in by_subject {
                self.ensure_fallback(repository, subject, &descriptors, &mut report)?;
            }
        }
        let mut tags = vec![(tag.name.as_str(), &tag.index)];
        for (name, digest) in &tag.arch_tags {
            if let Some(doc) = tag.children.iter().find(|c| &c.digest == digest) {
                tags.push((name.as_str(), doc));
            }
        }
        for (name, doc) in tags {
            self.ensure_tag(repository, name, doc, &mut report)?;
        }
        Ok(report)
    }

    fn ensure_blob(
        &mut self,
        dir: &Path,
        repository: &str,
        blob: &Descriptor,
        report: &mut TagReport,
    ) -> Result<()> {
        let key = (repository.to_owned(), blob.digest.clone());
        if self.present.contains(&key) {
            return Ok(());
        }
        if self.client.blob_exists(repository, &blob.digest)? {
            self.holders.hold(&blob.digest, repository);
        } else if self.dry_run {
            let mounted = self.holders.first_or(&blob.digest, repository).is_some();
            count(report, blob, mounted);
        } else {
            let from = self.holders.claim(&blob.digest);
            let uploaded = oci::read_described(dir, blob)
                .map_err(layout_err)
                .and_then(|bytes| {
                    let from = from.as_deref().filter(|r| *r != repository);
                    Ok(self
                        .client
                        .upload_blob(repository, &blob.digest, &bytes, from)?)
                });
            match uploaded {
                Ok(how) => {
                    self.holders.hold(&blob.digest, repository);
                    count(report, blob, how == Upload::Mounted);
                }
                Err(e) => {
                    if from.is_none() {
                        self.holders.release(&blob.digest);
                    }
                    return Err(e);
                }
            }
        }
        self.present.insert(key);
        Ok(())
    }

    fn ensure_manifest(
        &mut self,
        repository: &str,
        doc: &Document,
        report: &mut TagReport,
    ) -> Result<()> {
        let key = (repository.to_owned(), doc.digest.clone());
        if self.present.contains(&key) {
            return Ok(());
        }
        let there = self.client.manifest_digest(repository, &doc.digest)?;
        if there.as_deref() != Some(doc.digest.as_str()) {
            if !self.dry_run
                && self
                    .client
                    .put_manifest(repository, &doc.digest, &doc.media_type, &doc.bytes)?
            {
                self.client.note_referrers_api();
            }
            report.manifests_pushed += 1;
        }
        self.present.insert(key);
        Ok(())
    }

    /// The referrers tag schema: an index tagged `sha256-<hex>` listing the
    /// subject's referrers, merged with whatever other tools put there.
    fn ensure_fallback(
        &mut self,
        repository: &str,
        subject: &str,
        descriptors: &[&Descriptor],
        report: &mut TagReport,
    ) -> Result<()> {
        let tag = subject.replacen(':', "-", 1);
        let mut merged = match self.client.get_manifest(repository, &tag)? {
            Some((_, bytes)) => {
                serde_json::from_slice::<Index>(&bytes)
                    .map_err(|_| {
                        Error::Registry(RegistryError {
                            place: self.client.place(repository),
                            what: format!(
                                "tag {tag} is not an image index; not overwriting another tool's referrers"
                            ),
                            unauthorized: false,
                        })
                    })?
                    .manifests
            }
            None => Vec::new(),
        };
        let before = merged.len();
        for d in descriptors {
            if !merged.iter().any(|m| m.digest == d.digest) {
                merged.push((*d).clone());
            }
        }
        if merged.len() == before {
            return Ok(());
        }
        let bytes =
            oci::json_bytes(&Index::new(merged)).map_err(|e| Error::Output(e.to_string()))?;
        if !self.dry_run {
            self.client
                .put_manifest(repository, &tag, oci::MEDIA_TYPE_IMAGE_INDEX, &bytes)?;
        }
        report.manifests_pushed += 1;
        Ok(())
    }

    fn ensure_tag(
        &mut self,
        repository: &str,
        tag: &str,
        doc: &Document,
        report: &mut TagReport,
    ) -> Result<()> {
        if self.client.manifest_digest(repository, tag)?.as_deref() == Some(doc.digest.as_str()) {
            return Ok(());
        }
        if !self.dry_run {
            self.client
                .put_manifest(repository, tag, &doc.media_type, &doc.bytes)?;
        }
        report.tags_pushed += 1;
        Ok(())
    }
}

/// Reads every pushed tag back and compares the digest of the bytes the
/// registry serves with the recorded one.
fn verify_tags(client: &Client, plan: &RepoPlan) -> Result<()> {
    let repository = client.target().repository(&plan.name);
    for tag in &plan.tags {
        let expected = std::iter::once((tag.name.as_str(), tag.index.digest.as_str()))
            .chain(tag.arch_tags.iter().map(|(n, d)| (n.as_str(), d.as_str())));
        for (name, digest) in expected {
            let served = client
                .get_manifest(&repository, name)?
                .map(|(_, bytes)| oci::sha256_digest(&bytes));
            if served.as_deref() != Some(digest) {
                return Err(Error::Registry(RegistryError {
                    place: client.place(&repository),
                    what: format!(
                        "tag {name} reads back as {}, but lockfiles/digests.toml records {digest}",
                        served.as_deref().unwrap_or("nothing")
                    ),
                    unauthorized: false,
                }));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::PlatformSummary;

    fn recorded() -> RecordedDigests {
        let tag = |repository: &str, tag: &str| TagSummary {
            repository: repository.into(),
            tag: tag.into(),
            index: "sha256:i".into(),
            spdx: "sha256:s".into(),
            cyclonedx: "sha256:c".into(),
            platform: vec![PlatformSummary {
                architecture: "amd64".into(),
                manifest: "sha256:m".into(),
                spdx: "sha256:s".into(),
                cyclonedx: "sha256:c".into(),
                layers: vec![],
                size: 0,
            }],
        };
        RecordedDigests {
            image: vec![
                tag("base-debian13", "latest"),
                tag("base-nossl-debian13", "latest"),
                tag("base-nossl-debian13", "nonroot"),
                tag("static-debian12", "latest"),
            ],
        }
    }

    fn chosen(images: &[&str], tags: &[&str]) -> Result<Vec<String>> {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let recorded = recorded();
        let selected = select(&recorded, &strings(images), &strings(tags))?;
        Ok(selected
            .values()
            .flatten()
            .map(|t| format!("{}:{}", t.repository, t.tag))
            .collect())
    }

    #[test]
    fn selects_by_image_repository_and_tag() {
        assert_eq!(chosen(&[], &[]).unwrap().len(), 4);
        assert_eq!(chosen(&["base"], &[]).unwrap(), ["base-debian13:latest"]);
        assert_eq!(
            chosen(&["base-nossl-debian13"], &["nonroot"]).unwrap(),
            ["base-nossl-debian13:nonroot"]
        );
        assert_eq!(
            chosen(&[], &["latest"]).unwrap(),
            [
                "base-debian13:latest",
                "base-nossl-debian13:latest",
                "static-debian12:latest"
            ]
        );
        let e = chosen(&["cc"], &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("no image \"cc\" in lockfiles/digests.toml (known: base-debian13"),
            "{e}"
        );
        let e = chosen(&[], &["edge"]).unwrap_err().to_string();
        assert!(e.contains("no tag \"edge\""), "{e}");
        let e = select(&RecordedDigests::default(), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("run `cargo xtask images`"), "{e}");
    }
}
