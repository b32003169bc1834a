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

mod plan;
mod push;
mod signatures;

pub use signatures::Signer;

use std::collections::HashSet;

use std::path::PathBuf;

use rayon::prelude::*;

use crate::digests::RecordedDigests;

use crate::error::Result;
use crate::project::Progress;

use crate::registry::Client;
use plan::RepoPlan;
use push::{Holders, Run, verify_tags};

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
///
/// With a `signer`, every index and per-architecture manifest is signed and
/// attested (see [`Signer`]) before its tag is pushed.
pub fn publish(
    client: &Client,
    recorded: &RecordedDigests,
    options: &PublishOptions,
    signer: Option<&Signer<'_>>,
    progress: &dyn Progress,
) -> Result<PublishReport> {
    let selected = recorded.select(&options.images, &options.tags)?;
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
                signer,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digests::{PlatformSummary, TagSummary};

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
        let selected = recorded.select(&strings(images), &strings(tags))?;
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
        let e = RecordedDigests::default()
            .select(&[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("run `cargo xtask images`"), "{e}");
    }
}
