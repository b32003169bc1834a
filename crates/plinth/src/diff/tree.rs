//! The file system of a layer or an image, summarised path by path (kind,
//! content hash, mode, owner, mtime, link target) so that two of them can
//! be compared without holding their contents, and the Debian packages
//! their `status.d` records name.
//!
//! It owns what a difference between two entries is ([`PathChange`],
//! [`Aspect`]); `verify` and `diff` only word it.

use std::collections::BTreeMap;

use crate::debian::control;
use crate::definitions::Limits;
use crate::layer::read_layer;
use crate::support::digest::sha256_hex;
use crate::tarfs::{Entry, EntryKind, TarError, TarLimits};

/// Where dpkg's per-package records live in plinth's images (and in
/// distroless's).
const STATUS_D: &str = "var/lib/dpkg/status.d/";

/// What one path holds, without its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File { sha256: String },
    Symlink(String),
    Hardlink(String),
}

impl FileKind {
    fn describe(&self) -> String {
        match self {
            FileKind::Dir => "directory".to_owned(),
            FileKind::File { sha256 } => format!("file sha256:{}", &sha256[..12]),
            FileKind::Symlink(t) => format!("symlink to {t}"),
            FileKind::Hardlink(t) => format!("hard link to /{t}"),
        }
    }
}

/// Paths (root-relative, as in a tar) and what they hold; packages by
/// name with their version, from `status.d`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSummary {
    pub files: BTreeMap<String, FileSummary>,
    pub packages: BTreeMap<String, String>,
}

impl TreeSummary {
    /// Reads a gzip layer.
    pub fn of_layer(blob: &[u8], limits: &TarLimits) -> Result<Self, TarError> {
        Ok(Self::of_entries(read_layer(blob, limits)?))
    }

    pub fn of_entries(entries: Vec<Entry>) -> Self {
        let mut out = TreeSummary::default();
        for e in entries {
            let kind = match &e.kind {
                EntryKind::Dir => FileKind::Dir,
                EntryKind::File(bytes) => {
                    if let Some((name, version)) = status_record(&e.path, bytes) {
                        out.packages.insert(name, version);
                    }
                    FileKind::File {
                        sha256: sha256_hex(bytes),
                    }
                }
                EntryKind::Symlink(t) => FileKind::Symlink(t.clone()),
                EntryKind::Hardlink(t) => FileKind::Hardlink(t.clone()),
            };
            let summary = FileSummary {
                kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                mtime: e.mtime,
            };
            out.files.insert(e.path, summary);
        }
        out
    }

    /// `upper` laid over this tree, as an image's layers stack (plinth's
    /// layers only add; an OCI whiteout removes what it names).
    pub fn overlay(&mut self, upper: &TreeSummary) {
        for (path, file) in &upper.files {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            if name == ".wh..wh..opq" {
                // An opaque directory: nothing below shows through.
                let below = format!("{dir}/");
                self.files.retain(|p, _| !p.starts_with(&below));
                if below == STATUS_D {
                    self.packages.clear();
                }
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let gone = if dir.is_empty() {
                    hidden.to_owned()
                } else {
                    format!("{dir}/{hidden}")
                };
                self.files
                    .retain(|p, _| p != &gone && !p.starts_with(&format!("{gone}/")));
                if let Some(package) = gone.strip_prefix(STATUS_D) {
                    self.packages.remove(package);
                }
                continue;
            }
            self.files.insert(path.clone(), file.clone());
        }
        self.packages
            .extend(upper.packages.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// `(package, version)` of a `status.d/<package>` record.
fn status_record(path: &str, bytes: &[u8]) -> Option<(String, String)> {
    let name = path.strip_prefix(STATUS_D)?;
    if name.contains('/') || name.ends_with(".md5sums") {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let stanzas = control::parse(text).ok()?;
    let stanza = stanzas.first()?;
    Some((
        stanza.get("Package")?.to_owned(),
        stanza.get("Version")?.to_owned(),
    ))
}

/// How one path differs between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathChange {
    /// Only in the newer (or rebuilt) tree.
    Added,
    /// Only in the older (or reference) tree.
    Removed,
    Changed(Vec<Aspect>),
}

/// One way an entry differs: what, and its value on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aspect {
    /// `content`, `link target`, `type`, `mode`, `owner` or `mtime`.
    pub what: &'static str,
    pub new: String,
    pub old: String,
}

impl PathChange {
    /// Whether the only difference is the modification time, which moves
    /// with the lock's epoch.
    pub fn mtime_only(&self) -> bool {
        matches!(self, PathChange::Changed(a) if a.iter().all(|a| a.what == "mtime"))
    }
}

/// Every path that differs between `new` and `old`, in path order.
pub fn compare(
    new: &BTreeMap<String, FileSummary>,
    old: &BTreeMap<String, FileSummary>,
) -> Vec<(String, PathChange)> {
    let mut out = Vec::new();
    let mut paths: Vec<&String> = new.keys().chain(old.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let change = match (new.get(path), old.get(path)) {
            (Some(_), None) => PathChange::Added,
            (None, Some(_)) => PathChange::Removed,
            (Some(n), Some(o)) => {
                let aspects = aspects(n, o);
                if aspects.is_empty() {
                    continue;
                }
                PathChange::Changed(aspects)
            }
            (None, None) => continue,
        };
        out.push((path.clone(), change));
    }
    out
}

fn aspects(new: &FileSummary, old: &FileSummary) -> Vec<Aspect> {
    let mut out = Vec::new();
    let mut push = |what, new: String, old: String| out.push(Aspect { what, new, old });
    if new.kind != old.kind {
        let what = match (&new.kind, &old.kind) {
            (FileKind::File { .. }, FileKind::File { .. }) => "content",
            (FileKind::Symlink(_), FileKind::Symlink(_))
            | (FileKind::Hardlink(_), FileKind::Hardlink(_)) => "link target",
            _ => "type",
        };
        push(what, new.kind.describe(), old.kind.describe());
    }
    if new.mode != old.mode {
        push(
            "mode",
            format!("{:04o}", new.mode),
            format!("{:04o}", old.mode),
        );
    }
    if (new.uid, new.gid) != (old.uid, old.gid) {
        push(
            "owner",
            format!("{}:{}", new.uid, new.gid),
            format!("{}:{}", old.uid, old.gid),
        );
    }
    if new.mtime != old.mtime {
        push("mtime", new.mtime.to_string(), old.mtime.to_string());
    }
    out
}

/// The ceilings for reading a layer someone else may have made (a
/// reference layout, a registry's blob): `[limits]`'s per-file and
/// per-layer values.
pub fn layer_limits(limits: &Limits) -> TarLimits {
    TarLimits {
        entry: limits.entry.0,
        total: limits.layer.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: Vec<Entry>) -> TreeSummary {
        TreeSummary::of_entries(entries)
    }

    #[test]
    fn names_each_aspect_that_differs() {
        let base = vec![
            Entry::dir("etc", 0o755),
            Entry::file("etc/a", 0o644, &b"one"[..]),
            Entry::file("etc/b", 0o644, &b"same"[..]),
            Entry::symlink("etc/c", "a"),
            Entry::file("etc/gone", 0o644, &b""[..]),
        ];
        let mut changed = base.clone();
        changed[1] = Entry::file("etc/a", 0o600, &b"two"[..]);
        changed[2].mtime = 5;
        changed[3] = Entry::symlink("etc/c", "b");
        changed[4] = Entry::file("etc/d", 0o644, &b""[..]);
        changed[0].uid = 1;
        let diff = compare(&tree(changed).files, &tree(base).files);
        let shown: Vec<String> = diff
            .iter()
            .map(|(p, c)| match c {
                PathChange::Changed(a) => format!(
                    "{p}: {}",
                    a.iter()
                        .map(|a| format!("{} {} {}", a.what, a.new, a.old))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                other => format!("{p}: {other:?}"),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "etc: owner 1:0 0:0",
                format!(
                    "etc/a: content file sha256:{} file sha256:{}, mode 0600 0644",
                    &sha256_hex(b"two")[..12],
                    &sha256_hex(b"one")[..12]
                )
                .as_str(),
                "etc/b: mtime 5 0",
                "etc/c: link target symlink to b symlink to a",
                "etc/d: Added",
                "etc/gone: Removed",
            ]
        );
        assert!(diff[2].1.mtime_only());
        assert!(!diff[1].1.mtime_only());
    }

    #[test]
    fn reads_packages_from_status_d_and_honours_whiteouts() {
        let record = |name: &str, version: &str| {
            Entry::file(
                format!("var/lib/dpkg/status.d/{name}"),
                0o644,
                format!("Package: {name}\nStatus: install ok installed\nVersion: {version}\n")
                    .into_bytes(),
            )
        };
        let mut lower = tree(vec![
            record("libc6", "2.41-12"),
            Entry::file("var/lib/dpkg/status.d/libc6.md5sums", 0o644, &b"x"[..]),
            record("zlib1g", "1:1.3"),
            Entry::dir("opt", 0o755),
            Entry::file("opt/x", 0o644, &b"x"[..]),
        ]);
        let upper = tree(vec![
            record("libc6", "2.41-12+deb13u1"),
            Entry::file("var/lib/dpkg/status.d/.wh.zlib1g", 0o644, &b""[..]),
            Entry::file(".wh.opt", 0o644, &b""[..]),
        ]);
        lower.overlay(&upper);
        assert_eq!(
            lower.packages,
            BTreeMap::from([("libc6".to_owned(), "2.41-12+deb13u1".to_owned())])
        );
        assert!(!lower.files.contains_key("opt/x"));
        assert!(!lower.files.contains_key("opt"));
        assert!(!lower.files.contains_key("var/lib/dpkg/status.d/zlib1g"));
    }
}
