//! `verify`: rebuild everything in a fresh directory with no layer reuse,
//! compare with the recorded digests, and explain each difference down to
//! the file when a reference layout is at hand.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::build::{BuildOptions, build};
use crate::digests::RecordedDigests;
use crate::digests::TagSummary;
use crate::download::cache::Cache;
use crate::error::{Error, Result};
use crate::layer::read_layer;
use crate::oci::{self, Manifest};
use crate::project::{Progress, Project};
use crate::support::digest::{sha256_digest, sha256_hex};
use crate::tarfs::{Entry, EntryKind, TarLimits};

#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Tags rebuilt.
    pub tags: usize,
    /// One line per difference; empty when everything matches.
    pub differences: Vec<String>,
}

/// Rebuilds into `options.out_dir` (which should be empty and fresh) and
/// compares with `lockfiles/digests.toml`, and with the layouts in
/// `reference` (usually `target/images`) when given.
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
    let mut differences = if recorded.image.is_empty() {
        vec![format!(
            "{}: no recorded digests; run `cargo xtask images` and commit it",
            recorded_path.display()
        )]
    } else {
        recorded.differences(&fresh)
    };
    if let Some(reference) = reference.filter(|r| r.is_dir()) {
        let limits = &project.definitions.settings.limits;
        let limits = TarLimits {
            entry: limits.entry.0,
            total: limits.layer.0,
        };
        differences.extend(explain(&fresh, &options.out_dir, reference, &limits)?);
    }
    Ok(VerifyReport {
        tags: fresh.len(),
        differences,
    })
}

/// Compares each rebuilt per-architecture image with the same tag in the
/// reference layouts, layer by layer and, inside a differing layer, path
/// by path. Reference blobs are read as they are, without trusting their
/// file names, so a layout changed in place is caught too.
fn explain(
    fresh: &[TagSummary],
    fresh_dir: &Path,
    reference: &Path,
    limits: &TarLimits,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut explained: BTreeSet<(String, String)> = BTreeSet::new();
    // Every tag of a repository shares most layers: hash each file once.
    let mut sums: BTreeMap<PathBuf, String> = BTreeMap::new();
    for tag in fresh {
        let ref_dir = reference.join(&tag.repository);
        if !ref_dir.join("index.json").exists() {
            continue;
        }
        for p in &tag.platform {
            let here = format!("{}:{} ({})", tag.repository, tag.tag, p.architecture);
            let name = format!("{}-{}", tag.tag, p.architecture);
            let Some(ref_manifest) = manifest_of(&ref_dir, &name)? else {
                out.push(format!(
                    "{here}: absent from the reference layout {}",
                    ref_dir.display()
                ));
                continue;
            };
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
                if &ref_sum == fresh_digest || !explained.insert((fresh_digest.clone(), ref_sum)) {
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
        }
    }
    Ok(out)
}

fn manifest_of(dir: &Path, ref_name: &str) -> Result<Option<Manifest>> {
    let index = oci::read_layout(dir).map_err(|e| Error::Output(e.to_string()))?;
    match index.find_ref(ref_name) {
        Some(desc) => Ok(Some(
            oci::read_json(dir, desc).map_err(|e| Error::Output(e.to_string()))?,
        )),
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
        read_layer(bytes, limits)
            .map_err(|e| Error::Output(format!("reading the {which} layer: {e}")))
    };
    let index = |entries: Vec<Entry>| -> BTreeMap<String, Entry> {
        entries.into_iter().map(|e| (e.path.clone(), e)).collect()
    };
    let a = index(read(rebuilt, "rebuilt")?);
    let b = index(read(reference, "reference")?);
    let mut out = Vec::new();
    for path in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        match (a.get(path), b.get(path)) {
            (Some(_), None) => out.push(format!("/{path}: only in the rebuilt layer")),
            (None, Some(_)) => out.push(format!("/{path}: only in the reference layer")),
            (Some(x), Some(y)) => {
                let what = entry_differences(x, y);
                if !what.is_empty() {
                    out.push(format!("/{path}: {}", what.join(", ")));
                }
            }
            (None, None) => {}
        }
    }
    if out.is_empty() {
        out.push("same entries, different bytes (tar headers or compression)".into());
    }
    Ok(out)
}

fn entry_differences(rebuilt: &Entry, reference: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    let describe = |e: &Entry| match &e.kind {
        EntryKind::Dir => "directory".to_owned(),
        EntryKind::File(b) => format!("file sha256:{}", &sha256_hex(b)[..12]),
        EntryKind::Symlink(t) => format!("symlink to {t}"),
        EntryKind::Hardlink(t) => format!("hard link to /{t}"),
    };
    if rebuilt.kind != reference.kind {
        let kind = match (&rebuilt.kind, &reference.kind) {
            (EntryKind::File(_), EntryKind::File(_)) => "content",
            (EntryKind::Symlink(_), EntryKind::Symlink(_))
            | (EntryKind::Hardlink(_), EntryKind::Hardlink(_)) => "link target",
            _ => "type",
        };
        out.push(format!(
            "{kind} {} (reference {})",
            describe(rebuilt),
            describe(reference)
        ));
    }
    if rebuilt.mode != reference.mode {
        out.push(format!(
            "mode {:04o} (reference {:04o})",
            rebuilt.mode, reference.mode
        ));
    }
    if (rebuilt.uid, rebuilt.gid) != (reference.uid, reference.gid) {
        out.push(format!(
            "owner {}:{} (reference {}:{})",
            rebuilt.uid, rebuilt.gid, reference.uid, reference.gid
        ));
    }
    if rebuilt.mtime != reference.mtime {
        out.push(format!(
            "mtime {} (reference {})",
            rebuilt.mtime, reference.mtime
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::write_layer;

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
