//! `verify`: rebuild everything in a fresh directory with no layer reuse
//! and compare with the recorded digests, `lockfiles/digests.toml`. The
//! record is the judge: the rebuild passes when it matches the record,
//! whatever a reference directory holds. A reference layout (usually
//! `target/images`, possibly another branch's build) only explains a tag
//! that does not match the record, down to the layer and the path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::build::{BuildOptions, build};
use crate::diff::tree::{PathChange, TreeSummary, compare, layer_limits};
use crate::digests::{PlatformSummary, RecordedDigests, TagSummary};
use crate::download::cache::Cache;
use crate::error::{Error, Result};
use crate::oci::{self, Manifest};
use crate::project::{Progress, Project};
use crate::support::digest::sha256_digest;
use crate::tarfs::TarLimits;

#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Tags rebuilt.
    pub tags: usize,
    /// One line per difference between the rebuild and the record; empty
    /// when everything matches.
    pub differences: Vec<String>,
    /// For the tags that differ from the record, how the rebuild differs
    /// from the reference layouts: layer by layer, path by path.
    pub explanations: Vec<String>,
}

/// Rebuilds into `options.out_dir` (which should be empty and fresh) and
/// compares with `lockfiles/digests.toml`; a tag that differs is explained
/// against the layouts in `reference` (usually `target/images`) when given.
pub fn verify(
    project: &Project,
    cache: &Cache,
    options: &BuildOptions,
    reference: Option<&Path>,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let mut options = options.clone();
    options.layer_cache = None;
    let fresh = build(project, cache, &options, progress)?;
    let recorded_path = RecordedDigests::path(&project.lockfiles_dir());
    let recorded = RecordedDigests::read(&recorded_path)?;
    if recorded.image.is_empty() {
        return Ok(VerifyReport {
            tags: fresh.len(),
            differences: vec![format!(
                "{}: no recorded digests; run `cargo xtask images` and commit it",
                recorded_path.display()
            )],
            explanations: Vec::new(),
        });
    }
    let differences = recorded.differences(&fresh);
    let mismatched: Vec<(&TagSummary, Vec<&PlatformSummary>)> = fresh
        .iter()
        .map(|t| (t, unrecorded_platforms(&recorded, t)))
        .filter(|(_, platforms)| !platforms.is_empty())
        .collect();
    let explanations = match reference.filter(|r| r.is_dir()) {
        Some(reference) if !mismatched.is_empty() => {
            let limits = layer_limits(&project.definitions.settings.limits);
            explain(&mismatched, &options.out_dir, reference, &limits)?
        }
        _ => Vec::new(),
    };
    Ok(VerifyReport {
        tags: fresh.len(),
        differences,
        explanations,
    })
}

/// The per-architecture images of `tag` that the record does not hold as
/// rebuilt.
fn unrecorded_platforms<'a>(
    recorded: &RecordedDigests,
    tag: &'a TagSummary,
) -> Vec<&'a PlatformSummary> {
    let record = recorded
        .image
        .iter()
        .find(|r| r.repository == tag.repository && r.tag == tag.tag);
    tag.platform
        .iter()
        .filter(|p| {
            record.and_then(|r| r.platform.iter().find(|x| x.architecture == p.architecture))
                != Some(*p)
        })
        .collect()
}

/// Compares each rebuilt per-architecture image that the record does not
/// hold with the same tag in the reference layouts, layer by layer and,
/// inside a differing layer, path by path. Reference blobs are read as
/// they are, without trusting their file names, so a layout changed in
/// place is caught too.
fn explain(
    tags: &[(&TagSummary, Vec<&PlatformSummary>)],
    fresh_dir: &Path,
    reference: &Path,
    limits: &TarLimits,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut explained: BTreeSet<(String, String)> = BTreeSet::new();
    // Every tag of a repository shares most layers: hash each file once.
    let mut sums: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (tag, platforms) in tags {
        let ref_dir = reference.join(&tag.repository);
        if !ref_dir.join("index.json").exists() {
            out.push(format!(
                "{}:{}: not in the reference layouts {}",
                tag.repository,
                tag.tag,
                reference.display()
            ));
            continue;
        }
        for p in platforms {
            let here = format!("{}:{} ({})", tag.repository, tag.tag, p.architecture);
            let name = format!("{}-{}", tag.tag, p.architecture);
            let Some((ref_digest, ref_manifest)) = manifest_of(&ref_dir, &name)? else {
                out.push(format!(
                    "{here}: absent from the reference layout {}",
                    ref_dir.display()
                ));
                continue;
            };
            let mut same_layers = ref_manifest.layers.len() == p.layers.len();
            for (i, fresh_digest) in p.layers.iter().enumerate() {
                let Some(ref_desc) = ref_manifest.layers.get(i) else {
                    out.push(format!(
                        "{here}: layer {} is absent from the reference",
                        i + 1
                    ));
                    continue;
                };
                let ref_path = blob_path(&ref_dir, &ref_desc.digest);
                let ref_sum = match sums.get(&ref_path) {
                    Some(sum) => sum.clone(),
                    None => {
                        let sum = sha256_digest(&read_raw(&ref_path)?);
                        sums.insert(ref_path.clone(), sum.clone());
                        sum
                    }
                };
                if &ref_sum == fresh_digest {
                    continue;
                }
                same_layers = false;
                if !explained.insert((fresh_digest.clone(), ref_sum)) {
                    continue;
                }
                let ref_bytes = read_raw(&ref_path)?;
                let fresh_bytes =
                    read_raw(&blob_path(&fresh_dir.join(&tag.repository), fresh_digest))?;
                for line in layer_differences(&fresh_bytes, &ref_bytes, limits)? {
                    out.push(format!(
                        "{here}: layer {} ({}): {line}",
                        i + 1,
                        short(fresh_digest)
                    ));
                }
            }
            if same_layers && ref_digest == p.manifest {
                out.push(format!(
                    "{here}: the reference layout {} holds the rebuilt image: the record differs \
                     (run `cargo xtask images` and commit lockfiles/digests.toml)",
                    ref_dir.display()
                ));
            } else if same_layers {
                out.push(format!(
                    "{here}: the reference has the same layers; the image config differs"
                ));
            }
        }
    }
    Ok(out)
}

/// The digest and content of the manifest tagged `ref_name` in the layout
/// at `dir`.
fn manifest_of(dir: &Path, ref_name: &str) -> Result<Option<(String, Manifest)>> {
    let index = oci::read_layout(dir).map_err(|e| Error::Output(e.to_string()))?;
    match index.find_ref(ref_name) {
        Some(desc) => Ok(Some((
            desc.digest.clone(),
            oci::read_json(dir, desc).map_err(|e| Error::Output(e.to_string()))?,
        ))),
        None => Ok(None),
    }
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn read_raw(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

/// Path-by-path differences between two layers, as "/path: what"; the
/// reference layer (any file the user points at) is read within `limits`.
pub fn layer_differences(
    rebuilt: &[u8],
    reference: &[u8],
    limits: &TarLimits,
) -> Result<Vec<String>> {
    let read = |bytes: &[u8], which: &str| {
        TreeSummary::of_layer(bytes, limits)
            .map_err(|e| Error::Output(format!("reading the {which} layer: {e}")))
    };
    let a = read(rebuilt, "rebuilt")?;
    let b = read(reference, "reference")?;
    let mut out: Vec<String> = compare(&a.files, &b.files)
        .into_iter()
        .map(|(path, change)| match change {
            PathChange::Added => format!("/{path}: only in the rebuilt layer"),
            PathChange::Removed => format!("/{path}: only in the reference layer"),
            PathChange::Changed(aspects) => {
                let what: Vec<String> = aspects
                    .iter()
                    .map(|a| format!("{} {} (reference {})", a.what, a.new, a.old))
                    .collect();
                format!("/{path}: {}", what.join(", "))
            }
        })
        .collect();
    if out.is_empty() {
        out.push("same entries, different bytes (tar headers or compression)".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::write_layer;
    use crate::tarfs::Entry;

    #[test]
    fn names_each_kind_of_difference() {
        let base = vec![
            Entry::dir("etc", 0o755),
            Entry::file("etc/a", 0o644, &b"one"[..]),
            Entry::file("etc/b", 0o644, &b"same"[..]),
            Entry::symlink("etc/c", "a"),
        ];
        let mut changed = base.clone();
        changed[1] = Entry::file("etc/a", 0o600, &b"two"[..]);
        changed[2].mtime = 5;
        changed[3] = Entry::symlink("etc/c", "b");
        changed.push(Entry::file("etc/d", 0o644, &b""[..]));
        let a = write_layer(&changed, 10).unwrap();
        let b = write_layer(&base, 10).unwrap();
        let lines = layer_differences(&a.blob, &b.blob, &TarLimits::NONE).unwrap();
        assert!(
            lines[0].starts_with("/etc/a: content file sha256:"),
            "{lines:?}"
        );
        assert!(lines[0].contains("mode 0600 (reference 0644)"), "{lines:?}");
        assert_eq!(lines[1], "/etc/b: mtime 5 (reference 0)");
        assert_eq!(
            lines[2],
            "/etc/c: link target symlink to b (reference symlink to a)"
        );
        assert_eq!(lines[3], "/etc/d: only in the rebuilt layer");
    }
}
