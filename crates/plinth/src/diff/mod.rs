//! `diff`: two sets of images compared the way a reviewer needs it: which
//! tags moved, and for each per-architecture image of a moved tag its old
//! and new manifest digests and compressed sizes, the Debian packages that
//! changed (from the images' own `status.d` records) and the paths that
//! differ, and how. It is the explanation `verify` gives for one
//! layer, applied to whole images.
//!
//! [`source`] reads the two sides (layouts, or a registry), [`tree`]
//! summarises file systems and compares them. The result is data
//! ([`ImagesDiff`]) that prints as text and goes into the change report.

pub mod source;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::definitions::Limits;
use crate::error::{Error, Result};
use crate::oci::{Index, MEDIA_TYPE_IMAGE_INDEX, Manifest, Platform};
use crate::project::Progress;
use source::{Repository, Resolved, Side};
use tree::{PathChange, TreeSummary, compare};

/// How two sets of images differ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagesDiff {
    /// What was compared, as the user named it.
    pub old: String,
    pub new: String,
    /// Tags whose digest differs, or that exist on one side only.
    pub tags: Vec<TagDiff>,
    /// How many tags are the same on both sides.
    pub unchanged: usize,
}

/// One tag of one repository that moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagDiff {
    pub repository: String,
    pub tag: String,
    /// The digest the tag points at (a multi-arch index, usually); `None`
    /// on the side that lacks the tag.
    pub old_digest: Option<String>,
    pub new_digest: Option<String>,
    /// The per-architecture images that moved.
    pub platforms: Vec<PlatformDiff>,
}

/// One per-architecture image of a moved tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformDiff {
    /// The Debian architecture name (`amd64`), or the OCI platform where
    /// there is none.
    pub architecture: String,
    pub old_manifest: Option<String>,
    pub new_manifest: Option<String>,
    /// Compressed bytes of all layers.
    pub old_size: Option<u64>,
    pub new_size: Option<u64>,
    pub packages: Vec<PackageDiff>,
    /// Paths that differ in more than their modification time.
    pub files: Vec<FileDiff>,
    /// Paths whose modification time alone differs (it follows the lock's
    /// epoch, which moves with every re-lock).
    pub mtime_only: usize,
}

/// A Debian package whose `status.d` record differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageDiff {
    pub package: String,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
}

/// A path that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    /// Absolute path in the image.
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// For `changed`: what differs, old and new.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aspects: Vec<AspectDiff>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AspectDiff {
    pub what: String,
    pub old: String,
    pub new: String,
}

impl ImagesDiff {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

/// Compares every tag the two sides have in common or alone. At most one
/// side may be a registry; its repositories and tags are those the other
/// side names.
pub fn diff(old: &Side, new: &Side, progress: &dyn Progress) -> Result<ImagesDiff> {
    if old.is_registry() && new.is_registry() {
        return Err(Error::Usage(
            "diff compares a layout with a layout or with a registry, not two registries".into(),
        ));
    }
    let single = matches!(old, Side::Layout(_)) || matches!(new, Side::Layout(_));
    let names: BTreeSet<String> = if single {
        [old, new]
            .iter()
            .find(|s| matches!(s, Side::Layout(_)))
            .map(|s| s.repositories())
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .collect()
    } else {
        let mut names = old.repositories()?;
        names.extend(new.repositories()?);
        names.into_iter().collect()
    };
    let only_tag = old.tag().or(new.tag());
    let mut out = ImagesDiff {
        old: old.describe(),
        new: new.describe(),
        ..ImagesDiff::default()
    };
    let mut trees = Trees::default();
    for name in &names {
        let (a, b) = (old.repository(name, single), new.repository(name, single));
        let tags: BTreeSet<String> = match only_tag {
            Some(t) => BTreeSet::from([t.to_owned()]),
            None => a.tags()?.into_iter().chain(b.tags()?).collect(),
        };
        progress.begin(&format!("diff {name}"), tags.len() as u64);
        for tag in &tags {
            let (ra, rb) = (a.resolve(tag)?, b.resolve(tag)?);
            if ra.as_ref().map(|r| &r.digest) == rb.as_ref().map(|r| &r.digest) {
                out.unchanged += usize::from(ra.is_some());
            } else {
                let platforms = platforms_diff((&a, ra.as_ref()), (&b, rb.as_ref()), &mut trees)
                    .map_err(|e| Error::Output(format!("{name}:{tag}: {e}")))?;
                out.tags.push(TagDiff {
                    repository: name.clone(),
                    tag: tag.clone(),
                    old_digest: ra.map(|r| r.digest),
                    new_digest: rb.map(|r| r.digest),
                    platforms,
                });
            }
            progress.step(tag);
        }
        progress.end();
    }
    Ok(out)
}

/// The per-architecture manifests a tag points at, by architecture.
fn platforms_of(
    repo: &Repository<'_>,
    resolved: Option<&Resolved>,
) -> Result<BTreeMap<String, (String, Manifest)>> {
    let Some(r) = resolved else {
        return Ok(BTreeMap::new());
    };
    let parse = |bytes: &[u8], what: &str| {
        serde_json::from_slice::<Manifest>(bytes)
            .map_err(|e| Error::Output(format!("{what}: not an image manifest: {e}")))
    };
    let mut out = BTreeMap::new();
    if r.media_type == MEDIA_TYPE_IMAGE_INDEX || r.media_type.contains("manifest.list") {
        let index: Index = serde_json::from_slice(&r.bytes)
            .map_err(|e| Error::Output(format!("{}: not an image index: {e}", r.digest)))?;
        for desc in &index.manifests {
            let Some(platform) = &desc.platform else {
                continue;
            };
            let manifest = parse(&repo.read(desc)?, &desc.digest)?;
            out.insert(arch_name(platform), (desc.digest.clone(), manifest));
        }
    } else {
        #[derive(Deserialize)]
        struct ConfigPlatform {
            #[serde(default)]
            architecture: String,
            #[serde(default)]
            os: String,
            #[serde(default)]
            variant: Option<String>,
        }
        let manifest = parse(&r.bytes, &r.digest)?;
        let config: ConfigPlatform = serde_json::from_slice(&repo.read(&manifest.config)?)
            .map_err(|e| Error::Output(format!("{}: config: {e}", r.digest)))?;
        let platform = Platform {
            architecture: config.architecture,
            os: config.os,
            variant: config.variant,
        };
        out.insert(arch_name(&platform), (r.digest.clone(), manifest));
    }
    Ok(out)
}

fn arch_name(platform: &Platform) -> String {
    platform
        .debian_arch()
        .map_or_else(|| platform.to_string(), str::to_owned)
}

fn platforms_diff(
    (old_repo, old): (&Repository<'_>, Option<&Resolved>),
    (new_repo, new): (&Repository<'_>, Option<&Resolved>),
    trees: &mut Trees,
) -> Result<Vec<PlatformDiff>> {
    let before = platforms_of(old_repo, old)?;
    let after = platforms_of(new_repo, new)?;
    let archs: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut out = Vec::new();
    for arch in archs {
        let (a, b) = (before.get(arch), after.get(arch));
        if a.map(|m| &m.0) == b.map(|m| &m.0) {
            continue;
        }
        let size = |m: Option<&(String, Manifest)>| {
            m.map(|(_, m)| m.layers.iter().map(|l| l.size).sum::<u64>())
        };
        let layers = |m: Option<&(String, Manifest)>| {
            m.map(|(_, m)| {
                m.layers
                    .iter()
                    .map(|l| l.digest.clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
        };
        let (la, lb) = (layers(a), layers(b));
        let mut diff = PlatformDiff {
            architecture: arch.clone(),
            old_manifest: a.map(|m| m.0.clone()),
            new_manifest: b.map(|m| m.0.clone()),
            old_size: size(a),
            new_size: size(b),
            packages: Vec::new(),
            files: Vec::new(),
            mtime_only: 0,
        };
        if la != lb {
            let ta = trees.merged(old_repo, a.map(|m| &m.1))?;
            let tb = trees.merged(new_repo, b.map(|m| &m.1))?;
            diff.packages = package_changes(&ta.packages, &tb.packages);
            for (path, change) in compare(&tb.files, &ta.files) {
                if change.mtime_only() {
                    diff.mtime_only += 1;
                    continue;
                }
                diff.files.push(file_diff(format!("/{path}"), change));
            }
        }
        out.push(diff);
    }
    Ok(out)
}

fn package_changes(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<PackageDiff> {
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|n| old.get(*n) != new.get(*n))
        .map(|n| PackageDiff {
            package: n.clone(),
            old_version: old.get(n).cloned(),
            new_version: new.get(n).cloned(),
        })
        .collect()
}

fn file_diff(path: String, change: PathChange) -> FileDiff {
    let (change, aspects) = match change {
        PathChange::Added => ("added", Vec::new()),
        PathChange::Removed => ("removed", Vec::new()),
        PathChange::Changed(aspects) => (
            "changed",
            aspects
                .into_iter()
                .map(|a| AspectDiff {
                    what: a.what.to_owned(),
                    old: a.old,
                    new: a.new,
                })
                .collect(),
        ),
    };
    FileDiff {
        path,
        change: change.to_owned(),
        aspects,
    }
}

/// Layer summaries by digest (a digest names the same bytes on either
/// side) and merged image trees by their list of layers.
#[derive(Default)]
struct Trees {
    layers: HashMap<String, Arc<TreeSummary>>,
    images: HashMap<Vec<String>, Arc<TreeSummary>>,
}

impl Trees {
    fn merged(
        &mut self,
        repo: &Repository<'_>,
        manifest: Option<&Manifest>,
    ) -> Result<Arc<TreeSummary>> {
        let Some(manifest) = manifest else {
            return Ok(Arc::default());
        };
        let key: Vec<String> = manifest.layers.iter().map(|l| l.digest.clone()).collect();
        if let Some(t) = self.images.get(&key) {
            return Ok(t.clone());
        }
        let mut merged = TreeSummary::default();
        for desc in &manifest.layers {
            let layer = match self.layers.get(&desc.digest) {
                Some(l) => l.clone(),
                None => {
                    let limits = tree::layer_limits(&Limits::default());
                    let summary = TreeSummary::of_layer(&repo.read(desc)?, &limits)
                        .map_err(|e| Error::Output(format!("layer {}: {e}", desc.digest)))?;
                    let summary = Arc::new(summary);
                    self.layers.insert(desc.digest.clone(), summary.clone());
                    summary
                }
            };
            merged.overlay(&layer);
        }
        let merged = Arc::new(merged);
        self.images.insert(key, merged.clone());
        Ok(merged)
    }
}

impl fmt::Display for ImagesDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.tags {
            writeln!(
                f,
                "{}:{}  {} → {}",
                t.repository,
                t.tag,
                short(t.old_digest.as_deref()),
                short(t.new_digest.as_deref())
            )?;
            for p in &t.platforms {
                writeln!(
                    f,
                    "  {}  {} → {}  {} → {}",
                    p.architecture,
                    short(p.old_manifest.as_deref()),
                    short(p.new_manifest.as_deref()),
                    megabytes(p.old_size),
                    megabytes(p.new_size)
                )?;
                for pkg in &p.packages {
                    writeln!(f, "    {}", pkg.describe())?;
                }
                for file in &p.files {
                    writeln!(f, "    {}", file.describe())?;
                }
                if p.mtime_only > 0 {
                    writeln!(f, "    {} paths differ in mtime only", p.mtime_only)?;
                }
            }
        }
        writeln!(
            f,
            "{} tags differ, {} the same ({} → {})",
            self.tags.len(),
            self.unchanged,
            self.old,
            self.new
        )
    }
}

impl PackageDiff {
    /// `libzstd1 1.5.7+dfsg-1 → 1.5.7+dfsg-1+deb13u1`, `added x 1`.
    pub fn describe(&self) -> String {
        match (&self.old_version, &self.new_version) {
            (Some(a), Some(b)) => format!("{} {a} → {b}", self.package),
            (None, Some(b)) => format!("{} {b} added", self.package),
            (Some(a), None) => format!("{} {a} removed", self.package),
            (None, None) => self.package.clone(),
        }
    }
}

impl FileDiff {
    /// `/etc/a: mode 0644 → 0600`, `/etc/b: added`.
    pub fn describe(&self) -> String {
        if self.aspects.is_empty() {
            return format!("{}: {}", self.path, self.change);
        }
        let what: Vec<String> = self
            .aspects
            .iter()
            .map(|a| format!("{} {} → {}", a.what, a.old, a.new))
            .collect();
        format!("{}: {}", self.path, what.join(", "))
    }
}

/// A digest cut to `sha256:` and 12 hex digits, or `-` for none.
pub fn short(digest: Option<&str>) -> String {
    digest.map_or_else(|| "-".to_owned(), |d| d[..d.len().min(19)].to_owned())
}

/// Bytes as megabytes with one decimal, or `-` for none.
pub fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".to_owned(), |b| format!("{:.1} MB", b as f64 / 1e6))
}
