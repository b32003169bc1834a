//! A locked package's Debian changelog, read from its `.deb` (fetched
//! through the download cache, checked against the lock's sha256):
//! `usr/share/doc/<package>/changelog.Debian.gz`, plus the binNMU entries
//! of `changelog.Debian.<arch>.gz`. Where the doc directory is a symlink
//! to another package's (`libgcc-s1` → `gcc-14-base`), the changelog is
//! read from that package, when the lock has it.

use crate::definitions::Limits;
use crate::support::digest::Sha256Hex;
use std::collections::HashMap;
use std::io::Read;

use crate::debian::changelog::{self, ChangelogEntry};
use crate::debian::deb::read_deb;
use crate::download::pool::Pool;
use crate::lockfile::{LockedPackage, Lockfile};
use crate::tarfs::EntryKind;

/// The most a decompressed changelog may hold; Debian's longest (gcc's,
/// glibc's) are a few hundred KiB.
const MAX_CHANGELOG: u64 = 16 << 20;

/// What a package's doc directory holds.
#[derive(Clone)]
enum Found {
    Entries(Vec<ChangelogEntry>),
    /// The directory is a symlink to this package's.
    LinkTo(String),
    Nothing,
}

/// Changelogs already read, by the sha256 of the `.deb` that holds them.
pub(super) struct Changelogs<'a> {
    pool: &'a Pool<'a>,
    limits: Limits,
    read: HashMap<(Sha256Hex, String), Result<Found, String>>,
}

impl<'a> Changelogs<'a> {
    pub fn new(pool: &'a Pool<'a>, limits: Limits) -> Self {
        Changelogs {
            pool,
            limits,
            read: HashMap::new(),
        }
    }

    /// The changelog entries of `package` as the lock `lock` has it for
    /// `arch`, or why there are none.
    pub fn of(
        &mut self,
        lock: &Lockfile,
        arch: &str,
        package: &LockedPackage,
    ) -> Result<Vec<ChangelogEntry>, String> {
        let owner = match self.look(lock, package, &package.name)? {
            Found::Entries(entries) => return Ok(entries),
            Found::LinkTo(owner) => owner,
            Found::Nothing => {
                return Err(format!(
                    "{} {} ships no usr/share/doc/{}/changelog.Debian.gz",
                    package.name, package.version, package.name
                ));
            }
        };
        let Some(other) = lock.find(arch, &owner) else {
            return Err(format!(
                "its changelog is in package {owner}, which the lock does not have"
            ));
        };
        match self.look(lock, other, &owner)? {
            Found::Entries(entries) => Ok(entries),
            _ => Err(format!(
                "{owner} {} ships no usr/share/doc/{owner}/changelog.Debian.gz",
                other.version
            )),
        }
    }

    /// What `usr/share/doc/<doc>/` holds in `package`'s `.deb`, read once.
    fn look(
        &mut self,
        lock: &Lockfile,
        package: &LockedPackage,
        doc: &str,
    ) -> Result<Found, String> {
        let key = (package.sha256.clone(), doc.to_owned());
        if let Some(done) = self.read.get(&key) {
            return done.clone();
        }
        let result = self.read_deb(lock, package, doc);
        self.read.insert(key, result.clone());
        result
    }

    fn read_deb(
        &self,
        lock: &Lockfile,
        package: &LockedPackage,
        doc: &str,
    ) -> Result<Found, String> {
        let archive = lock
            .archive_of(&package.suite)
            .ok_or_else(|| format!("suite {} is not among the lock's releases", package.suite))?;
        let bytes = self
            .pool
            .fetch(archive, &package.filename, &package.sha256, package.size)
            .map_err(|e| e.to_string())?;
        let deb =
            read_deb(&bytes, &self.limits).map_err(|e| format!("{}: {e}", package.filename))?;
        let dir = format!("usr/share/doc/{doc}");
        let main = format!("{dir}/changelog.Debian.gz");
        let mut files: Vec<(&str, &[u8])> = Vec::new();
        for e in &deb.entries {
            match &e.kind {
                EntryKind::File(bytes)
                    if e.path
                        .strip_prefix(&dir)
                        .and_then(|rest| rest.strip_prefix("/changelog.Debian"))
                        .is_some_and(|rest| {
                            // `.gz`, or `.<arch>.gz` for binNMUs
                            rest.starts_with('.') && rest.ends_with(".gz") && !rest.contains('/')
                        }) =>
                {
                    files.push((&e.path, bytes));
                }
                EntryKind::Symlink(target) if e.path == dir => {
                    let owner = target.trim_end_matches('/').rsplit('/').next();
                    if let Some(owner) = owner.filter(|o| !o.is_empty() && *o != "." && *o != "..")
                    {
                        return Ok(Found::LinkTo(owner.to_owned()));
                    }
                }
                _ => {}
            }
        }
        if files.is_empty() {
            return Ok(Found::Nothing);
        }
        // changelog.Debian.<arch>.gz (binNMUs) before changelog.Debian.gz.
        files.sort_by_key(|(path, _)| *path == main);
        let mut entries = Vec::new();
        for (path, bytes) in files {
            let text = gunzip(bytes).map_err(|e| format!("{}: {path}: {e}", package.filename))?;
            entries.extend(changelog::parse(&text));
        }
        Ok(Found::Entries(entries))
    }
}

/// A gzip member as text, refused past [`MAX_CHANGELOG`] bytes.
fn gunzip(bytes: &[u8]) -> Result<String, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_CHANGELOG + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("corrupt gzip data: {e}"))?;
    if out.len() as u64 > MAX_CHANGELOG {
        return Err(format!("longer than {MAX_CHANGELOG} bytes"));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
