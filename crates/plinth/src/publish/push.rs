//! Pushing one repository's plan: blobs (mounted from another repository
//! of the run where one holds them), manifests, indexes, referrers, tags,
//! each only when the registry lacks it; then every tag read back.

use super::TagReport;
use super::plan::{Document, RepoPlan, TagPlan, layout_err};
use super::signatures::Signer;
use crate::error::{Error, Result};
use crate::oci::{self, Descriptor, Index};
use crate::registry::{Client, RegistryError, Upload};
use crate::support::digest::sha256_digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

// ---------------------------------------------------------------------------
// Pushing

pub(super) struct Run<'a> {
    pub(super) client: &'a Client,
    pub(super) dry_run: bool,
    /// Sign every pushed index and manifest with this (`--sign`).
    pub(super) signer: Option<&'a Signer<'a>>,
    /// `(repository, digest)` known to be in the registry (or, in a dry
    /// run, that would be).
    pub(super) present: HashSet<(String, String)>,
    pub(super) holders: &'a Holders,
}

pub(super) fn count(report: &mut TagReport, blob: &Descriptor, mounted: bool) {
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
pub(super) struct Holders {
    /// `None`: some repository is uploading it right now.
    pub(super) map: Mutex<HashMap<String, Option<String>>>,
    pub(super) changed: Condvar,
}

impl Holders {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Option<String>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A repository to mount `digest` from; `None` makes the caller its
    /// uploader, who must then [`hold`](Self::hold) or
    /// [`release`](Self::release) it. Waits while another uploads it.
    pub(super) fn claim(&self, digest: &str) -> Option<String> {
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

    pub(super) fn hold(&self, digest: &str, repository: &str) {
        let mut map = self.lock();
        let slot = map.entry(digest.to_owned()).or_default();
        if slot.is_none() {
            *slot = Some(repository.to_owned());
            self.changed.notify_all();
        }
    }

    /// An upload failed: let a waiting repository try.
    pub(super) fn release(&self, digest: &str) {
        let mut map = self.lock();
        if map.get(digest).is_some_and(Option::is_none) {
            map.remove(digest);
        }
        self.changed.notify_all();
    }

    /// The holder if any, else records `repository` (dry runs).
    pub(super) fn first_or(&self, digest: &str, repository: &str) -> Option<String> {
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
    pub(super) fn push_tag(
        &mut self,
        plan: &RepoPlan,
        repository: &str,
        tag: &TagPlan,
    ) -> Result<TagReport> {
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
        // Signatures before tags: a tag that appears is already signed.
        let signed = match self.signer {
            Some(signer) => self.sign_tag(signer, plan, repository, tag, &mut report)?,
            None => Vec::new(),
        };
        let mut by_subject: BTreeMap<&str, Vec<&Descriptor>> = BTreeMap::new();
        for r in &tag.referrers {
            by_subject
                .entry(&r.subject)
                .or_default()
                .push(&r.descriptor);
        }
        for (subject, d) in &signed {
            by_subject.entry(subject).or_default().push(d);
        }
        if !by_subject.is_empty() && !self.client.referrers_api(repository, &tag.index.digest)? {
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

    pub(super) fn ensure_blob(
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
            // Checked, then streamed from the file: a layer never sits in
            // memory whole.
            let uploaded = oci::described_blob_file(dir, blob)
                .map_err(layout_err)
                .and_then(|path| {
                    let from = from.as_deref().filter(|r| *r != repository);
                    Ok(self.client.upload_blob_file(
                        repository,
                        &blob.digest,
                        &path,
                        blob.size,
                        from,
                    )?)
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

    /// A blob made here (a signature payload, an envelope, a config):
    /// uploaded unless the registry has it.
    pub(super) fn ensure_bytes(
        &mut self,
        repository: &str,
        blob: &Descriptor,
        bytes: &[u8],
        report: &mut TagReport,
    ) -> Result<()> {
        let key = (repository.to_owned(), blob.digest.clone());
        if self.present.contains(&key) {
            return Ok(());
        }
        if !self.client.blob_exists(repository, &blob.digest)? {
            if !self.dry_run {
                self.client
                    .upload_blob(repository, &blob.digest, bytes, None)?;
            }
            count(report, blob, false);
        }
        self.present.insert(key);
        Ok(())
    }

    pub(super) fn ensure_manifest(
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
    pub(super) fn ensure_fallback(
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

    pub(super) fn ensure_tag(
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
pub(super) fn verify_tags(client: &Client, plan: &RepoPlan) -> Result<()> {
    let repository = client.target().repository(&plan.name);
    for tag in &plan.tags {
        let expected = std::iter::once((tag.name.as_str(), tag.index.digest.as_str()))
            .chain(tag.arch_tags.iter().map(|(n, d)| (n.as_str(), d.as_str())));
        for (name, digest) in expected {
            let served = client
                .get_manifest(&repository, name)?
                .map(|(_, bytes)| sha256_digest(&bytes));
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
