//! The in-memory root file system of one layer, seen on top of the layers
//! below it.
//!
//! It owns path canonicalisation: every path is resolved through the
//! directory symlinks already in the tree (so with `bin -> usr/bin` in the
//! bottom layer, a package's `bin/ls` lands at `usr/bin/ls`: usr-merge for
//! both distributions with one rule), a directory never replaces a symlink,
//! two packages shipping one path with different contents is an error
//! unless the definition names the winner, and hard-link groups are
//! re-pointed at the first path in sort order.
//!
//! [`system`] makes the files no package owns (users, os-release, the CA
//! bundle, dpkg records), which join the tree like package files.

pub mod system;

use std::collections::BTreeMap;

use crate::tarfs::{Entry, EntryKind};

/// Most symlinks followed while resolving one path, as Linux's limit.
const MAX_SYMLINK_HOPS: usize = 40;

/// Owner name of files plinth writes itself.
pub const GENERATED: &str = "(generated)";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RootfsError {
    #[error(
        "/{path}: shipped by both {first} and {second} with different contents; name the winner with [[path-owner]] in the image definition"
    )]
    Conflict {
        path: String,
        first: String,
        second: String,
    },
    #[error("/{path} ({owner}): too many levels of symbolic links")]
    SymlinkLoop { path: String, owner: String },
    #[error("/{path} ({owner}): {why}")]
    Invalid {
        path: String,
        owner: String,
        why: String,
    },
}

/// A path of a layer whose permissions grant more than reading and
/// running it: a setuid or setgid file, or a world-writable directory
/// without the sticky bit. Listed by the build and refused when
/// `forbid-special-modes` is set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecialMode {
    /// Absolute, as in the image (`/usr/bin/su`).
    pub path: String,
    /// The package that ships it (or [`GENERATED`]).
    pub package: String,
    pub mode: u32,
}

impl SpecialMode {
    /// What is special about it, in words.
    pub fn what(&self) -> &'static str {
        match (self.mode & 0o4000 != 0, self.mode & 0o2000 != 0) {
            (true, true) => "setuid and setgid",
            (true, false) => "setuid",
            (false, true) => "setgid",
            (false, false) => "world-writable directory without the sticky bit",
        }
    }
}

impl std::fmt::Display for SpecialMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}, mode {:04o}",
            self.path,
            self.package,
            self.what(),
            self.mode
        )
    }
}

/// The setuid and setgid files and the world-writable directories without
/// the sticky bit among `entries` (one layer's own, in path order), each
/// with the package `owners` names for it.
pub fn special_modes(entries: &[Entry], owners: &Owners) -> Vec<SpecialMode> {
    entries
        .iter()
        .filter(|e| match e.kind {
            // A hard link shares its target's mode, and the target is listed.
            EntryKind::File(_) => e.mode & 0o6000 != 0,
            EntryKind::Dir => e.mode & 0o002 != 0 && e.mode & 0o1000 == 0,
            EntryKind::Symlink(_) | EntryKind::Hardlink(_) => false,
        })
        .map(|e| SpecialMode {
            path: format!("/{}", e.path),
            package: owners
                .get(&e.path)
                .map_or_else(|| GENERATED.to_owned(), String::clone),
            mode: e.mode,
        })
        .collect()
}

/// The merged view of everything below a layer.
pub type View = BTreeMap<String, Entry>;

/// Which package put each path of a view there.
pub type Owners = BTreeMap<String, String>;

pub struct Rootfs<'a> {
    lower: &'a View,
    lower_owners: &'a Owners,
    own: BTreeMap<String, (Entry, String)>,
    winners: &'a BTreeMap<String, String>,
    epoch: u64,
}

impl<'a> Rootfs<'a> {
    /// A layer on top of `lower`; `winners` maps a path to the package that
    /// wins when several ship it.
    pub fn new(
        lower: &'a View,
        lower_owners: &'a Owners,
        winners: &'a BTreeMap<String, String>,
        epoch: u64,
    ) -> Self {
        Rootfs {
            lower,
            lower_owners,
            own: BTreeMap::new(),
            winners,
            epoch,
        }
    }

    /// The entry at a canonical path, in this layer or below.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.own
            .get(path)
            .map(|(e, _)| e)
            .or_else(|| self.lower.get(path))
    }

    /// Adds a package's entry (or a generated one, with owner
    /// [`GENERATED`], which replaces whatever a package put there).
    pub fn add(&mut self, mut entry: Entry, owner: &str) -> Result<(), RootfsError> {
        let path = self.canonical(&entry.path, owner)?;
        if path.is_empty() {
            return Ok(()); // the root itself
        }
        if let EntryKind::Hardlink(target) = &entry.kind {
            entry.kind = EntryKind::Hardlink(self.canonical(target, owner)?);
        }
        entry.path = path.clone();
        match self.get(&path) {
            None => {}
            Some(existing) => match (&existing.kind, &entry.kind) {
                // Directories merge; the first one's metadata stays. A
                // directory never replaces a symlink (usr-merge links).
                (EntryKind::Dir | EntryKind::Symlink(_), EntryKind::Dir) => return Ok(()),
                _ if same_contents(existing, &entry) => return Ok(()),
                _ if owner == GENERATED => {}
                _ => {
                    let first = match self.own.get(&path) {
                        Some((_, o)) => o.clone(),
                        None => self
                            .lower_owners
                            .get(&path)
                            .cloned()
                            .unwrap_or_else(|| "a lower layer".into()),
                    };
                    match self.winners.get(&path) {
                        Some(w) if w == owner => {}
                        Some(w) if *w == first => return Ok(()),
                        _ => {
                            return Err(RootfsError::Conflict {
                                path,
                                first,
                                second: owner.to_owned(),
                            });
                        }
                    }
                }
            },
        }
        self.own.insert(path, (entry, owner.to_owned()));
        Ok(())
    }

    /// Resolves `path` through the symlinks in the tree: every component
    /// but the last must resolve to a directory path inside the root.
    fn canonical(&self, path: &str, owner: &str) -> Result<String, RootfsError> {
        resolve(path, |p| self.get(p).map(|e| &e.kind), false).map_err(|e| match e {
            Unresolved::Loop => RootfsError::SymlinkLoop {
                path: path.to_owned(),
                owner: owner.to_owned(),
            },
            Unresolved::NotADirectory(prefix) => RootfsError::Invalid {
                path: path.to_owned(),
                owner: owner.to_owned(),
                why: format!("/{prefix} is a file, not a directory"),
            },
            Unresolved::Missing => RootfsError::Invalid {
                path: path.to_owned(),
                owner: owner.to_owned(),
                why: "does not resolve".into(),
            },
        })
    }

    /// This layer's entries, sorted, with every parent directory and hard
    /// links pointing at the first path of their group.
    pub fn finish(self) -> Result<(Vec<Entry>, Owners), RootfsError> {
        let owners: Owners = self
            .own
            .iter()
            .map(|(p, (_, o))| (p.clone(), o.clone()))
            .collect();
        let mut out: BTreeMap<String, Entry> =
            self.own.into_iter().map(|(p, (e, _))| (p, e)).collect();
        // Parents: as they are below, or plain root-owned 0755 directories.
        let paths: Vec<String> = out.keys().cloned().collect();
        for path in paths {
            let mut parent = path.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                parent = p;
                if out.contains_key(p) {
                    continue;
                }
                let dir = match self.lower.get(p) {
                    Some(e) if e.is_dir() => e.clone(),
                    _ => {
                        let mut d = Entry::dir(p, 0o755);
                        d.mtime = self.epoch;
                        d
                    }
                };
                out.insert(p.to_owned(), dir);
            }
        }
        relink_hardlinks(&mut out, self.lower);
        Ok((out.into_values().collect(), owners))
    }
}

fn same_contents(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid
}

/// Splits `path` relative to `base` into components, resolving `.` and
/// `..` (never above the root, as the kernel does).
/// Why a path does not resolve.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unresolved {
    /// More than [`MAX_SYMLINK_HOPS`] symlinks.
    Loop,
    /// A component before the last is a file (this prefix).
    NotADirectory(String),
    /// A component does not exist (only when the whole path must).
    Missing,
}

/// Resolves `path` (relative to the root; `..` stops at the root) through
/// the symlinks `lookup` finds. With `whole`, as `open(2)` does: every
/// component must exist and the last is followed too. Without, as a
/// package's entry is placed: the parents are followed and may be missing.
pub(crate) fn resolve<'e>(
    path: &str,
    lookup: impl Fn(&str) -> Option<&'e EntryKind>,
    whole: bool,
) -> Result<String, Unresolved> {
    let mut parts: Vec<String> = normalise(&[], path);
    let mut hops = 0;
    let mut i = 0;
    while i + usize::from(!whole) < parts.len() {
        let prefix = parts[..=i].join("/");
        match lookup(&prefix) {
            Some(EntryKind::Symlink(target)) => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(Unresolved::Loop);
                }
                let base = if target.starts_with('/') {
                    &[][..]
                } else {
                    &parts[..i]
                };
                let mut resolved = normalise(base, target);
                resolved.extend(parts[i + 1..].iter().cloned());
                parts = resolved;
                i = 0;
            }
            Some(EntryKind::File(_) | EntryKind::Hardlink(_)) if i + 1 < parts.len() => {
                return Err(Unresolved::NotADirectory(prefix));
            }
            None if whole => return Err(Unresolved::Missing),
            _ => i += 1,
        }
    }
    Ok(parts.join("/"))
}

fn normalise(base: &[String], path: &str) -> Vec<String> {
    let mut parts: Vec<String> = base.to_vec();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c.to_owned()),
        }
    }
    parts
}

/// Makes each hard-link group's first path (in sort order) hold the
/// contents and the others link to it; a link whose target lives in a
/// lower layer becomes a copy, since tar links cannot cross layers.
fn relink_hardlinks(out: &mut BTreeMap<String, Entry>, lower: &View) {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, e) in out.iter() {
        if let EntryKind::Hardlink(target) = &e.kind {
            groups.entry(target.clone()).or_default().push(path.clone());
        }
    }
    for (target, links) in groups {
        let source = out.get(&target).or_else(|| lower.get(&target)).cloned();
        let Some(source) = source.filter(|s| matches!(s.kind, EntryKind::File(_))) else {
            continue;
        };
        let in_layer = out.contains_key(&target);
        let mut members = links;
        if in_layer {
            members.push(target.clone());
        }
        members.sort();
        let first = members[0].clone();
        for (n, path) in members.iter().enumerate() {
            let Some(e) = out.get_mut(path) else { continue };
            let mode = if path == &target { e.mode } else { source.mode };
            *e = Entry {
                path: path.clone(),
                kind: if n == 0 || !in_layer {
                    source.kind.clone()
                } else {
                    EntryKind::Hardlink(first.clone())
                },
                mode,
                uid: source.uid,
                gid: source.gid,
                mtime: source.mtime,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_setuid_setgid_and_unsticky_world_writable_paths() {
        let entries = vec![
            Entry::dir("tmp", 0o1777),
            Entry::dir("var/drop", 0o777),
            Entry::file("usr/bin/ls", 0o755, &b"x"[..]),
            Entry::file("usr/bin/su", 0o4755, &b"x"[..]),
            Entry::file("usr/bin/wall", 0o2755, &b"x"[..]),
            Entry::file("usr/bin/both", 0o6755, &b"x"[..]),
            Entry::symlink("usr/bin/link", "su"),
        ];
        let owners: Owners = [("usr/bin/su".to_owned(), "login".to_owned())].into();
        let found: Vec<String> = special_modes(&entries, &owners)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "/var/drop ((generated)): world-writable directory without the sticky bit, mode 0777",
                "/usr/bin/su (login): setuid, mode 4755",
                "/usr/bin/wall ((generated)): setgid, mode 2755",
                "/usr/bin/both ((generated)): setuid and setgid, mode 6755",
            ]
        );
    }

    static NO_OWNERS: Owners = Owners::new();

    fn merged_base() -> View {
        let mut v = View::new();
        for (p, t) in [
            ("bin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            v.insert(p.into(), Entry::symlink(p, t));
        }
        for d in ["usr", "usr/bin", "usr/lib", "usr/lib64"] {
            v.insert(d.into(), Entry::dir(d, 0o755));
        }
        v
    }

    #[test]
    fn usr_merge_through_directory_symlinks() {
        let lower = merged_base();
        let winners = BTreeMap::new();
        let mut fs = Rootfs::new(&lower, &NO_OWNERS, &winners, 100);
        fs.add(Entry::dir("bin", 0o755), "pkg").unwrap();
        fs.add(Entry::dir("lib/x86_64-linux-gnu", 0o755), "pkg")
            .unwrap();
        fs.add(
            Entry::file("lib/x86_64-linux-gnu/libc.so.6", 0o755, &b"elf"[..]),
            "pkg",
        )
        .unwrap();
        fs.add(
            Entry::symlink("lib64/ld.so", "/lib/x86_64-linux-gnu/libc.so.6"),
            "pkg",
        )
        .unwrap();
        fs.add(Entry::file("bin/sh", 0o755, &b"sh"[..]), "pkg")
            .unwrap();
        let paths: Vec<String> = fs.finish().unwrap().0.into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "usr",
                "usr/bin",
                "usr/bin/sh",
                "usr/lib",
                "usr/lib/x86_64-linux-gnu",
                "usr/lib/x86_64-linux-gnu/libc.so.6",
                "usr/lib64",
                "usr/lib64/ld.so"
            ]
        );
    }

    #[test]
    fn conflicts_name_both_packages_unless_a_winner_is_named() {
        let lower = View::new();
        let none = BTreeMap::new();
        let mut fs = Rootfs::new(&lower, &NO_OWNERS, &none, 0);
        fs.add(Entry::dir("etc", 0o755), "a").unwrap();
        fs.add(Entry::file("etc/x", 0o644, &b"1"[..]), "a").unwrap();
        fs.add(Entry::file("etc/x", 0o644, &b"1"[..]), "b").unwrap();
        let err = fs
            .add(Entry::file("etc/x", 0o644, &b"2"[..]), "b")
            .unwrap_err();
        assert!(err.to_string().contains("shipped by both a and b"), "{err}");

        let winners = BTreeMap::from([("etc/x".to_owned(), "b".to_owned())]);
        let mut fs = Rootfs::new(&lower, &NO_OWNERS, &winners, 0);
        fs.add(Entry::file("etc/x", 0o644, &b"1"[..]), "a").unwrap();
        fs.add(Entry::file("etc/x", 0o644, &b"2"[..]), "b").unwrap();
        let out = fs.finish().unwrap().0;
        assert_eq!(out[1].kind, EntryKind::File(b"2"[..].into()));
    }

    #[test]
    fn symlink_loops_are_reported() {
        let mut lower = View::new();
        lower.insert("a".into(), Entry::symlink("a", "b"));
        lower.insert("b".into(), Entry::symlink("b", "a"));
        let none = BTreeMap::new();
        let mut fs = Rootfs::new(&lower, &NO_OWNERS, &none, 0);
        let err = fs
            .add(Entry::file("a/x", 0o644, &b""[..]), "p")
            .unwrap_err();
        assert!(matches!(err, RootfsError::SymlinkLoop { .. }), "{err}");
    }

    #[test]
    fn hard_links_point_at_the_first_path() {
        let lower = View::new();
        let none = BTreeMap::new();
        let mut fs = Rootfs::new(&lower, &NO_OWNERS, &none, 0);
        fs.add(Entry::file("z", 0o755, &b"bin"[..]), "p").unwrap();
        let mut link = Entry::file("a", 0, &b""[..]);
        link.kind = EntryKind::Hardlink("z".into());
        fs.add(link, "p").unwrap();
        let out = fs.finish().unwrap().0;
        assert_eq!(out[0].kind, EntryKind::File(b"bin"[..].into()));
        assert_eq!(out[0].mode, 0o755);
        assert_eq!(out[1].kind, EntryKind::Hardlink("a".into()));
    }

    #[test]
    fn escaping_symlinks_stay_inside_the_root() {
        let mut lower = View::new();
        lower.insert("etc".into(), Entry::dir("etc", 0o755));
        lower.insert("etc/up".into(), Entry::symlink("etc/up", "../../../etc"));
        let none = BTreeMap::new();
        let mut fs = Rootfs::new(&lower, &NO_OWNERS, &none, 0);
        fs.add(Entry::file("etc/up/f", 0o644, &b""[..]), "p")
            .unwrap();
        assert_eq!(fs.finish().unwrap().0.last().unwrap().path, "etc/f");
    }
}
