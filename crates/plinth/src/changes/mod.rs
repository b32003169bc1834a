//! The change report: what a re-lock changes, why, and what it touches,
//! written as Markdown (a pull-request body) and JSON (for tooling).
//!
//! Per distribution it lists every package added, removed, upgraded,
//! downgraded or moved, with versions, suites and architectures (a
//! security update says so); for each, the entries of its Debian changelog
//! between the two versions and the CVE identifiers they mention
//! ([`changelogs`]); the image repositories and tags it touches
//! ([`touched`]); exclusions no package needs any more and new
//! dependencies that need a decision. Once the images are rebuilt,
//! [`ChangeReport::images`] holds what `diff` found between the old and
//! new images: digests, compressed sizes, packages and files.
//! [`markdown`] renders it.
//!
//! It reads the lockfiles before and after a re-lock and the new `.deb`s
//! (through the download cache); it never writes a lockfile.

mod changelogs;
pub mod markdown;
pub mod touched;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apps::AppImage;
use crate::debian::changelog::{self, ChangelogEntry};
use crate::definitions::Definitions;
use crate::diff::ImagesDiff;
use crate::download::pool::Pool;
use crate::error::{Error, Result};
use crate::lockfile::{ChangeKind, LockedPackage, Lockfile, PackageChange, Relocked};
use crate::project::{Progress, Project};
use crate::support::fs::write_atomically;
use changelogs::Changelogs;
use touched::{TouchedRepository, touched};

/// The version of the JSON shape.
pub const FORMAT_VERSION: u32 = 1;

/// Everything a re-lock changes, for a pull request and for tooling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeReport {
    pub format: u32,
    /// Whether every lockfile was already current with the archive.
    pub current: bool,
    pub distributions: Vec<DistributionChanges>,
    /// Every CVE identifier the changelog entries mention, sorted.
    pub cves: Vec<String>,
    /// How the rebuilt images differ from the old ones, once `diff` has
    /// compared them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImagesDiff>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributionChanges {
    pub distribution: String,
    pub codename: String,
    /// The lockfile, relative to the project.
    pub lockfile: String,
    pub current: bool,
    /// The Release files, as locked before and as found now.
    pub releases: Vec<ReleaseChange>,
    /// The lock's epoch (every timestamp in the images) before and after.
    /// When a re-lock moves it, every image of the distribution gets new
    /// digests, not only those a changed package touches.
    #[serde(default)]
    pub old_epoch: Option<u64>,
    pub new_epoch: u64,
    pub changes: Vec<Change>,
    /// Exclusions in the definitions that no package needs any more.
    pub unused_exclusions: Vec<UnusedExclusion>,
    /// Packages a dependency now pulls in: keep them, or exclude them
    /// with a reason.
    pub new_dependencies: Vec<NewDependency>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseChange {
    pub suite: String,
    pub old_date: Option<String>,
    pub new_date: String,
}

/// One package change, the same on each of its architectures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub package: String,
    pub change: ChangeKind,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    pub old_suite: Option<String>,
    pub new_suite: Option<String>,
    /// The new version comes from a security suite.
    pub security: bool,
    pub architectures: Vec<String>,
    /// The source package.
    pub source: String,
    /// Why the lock has it (after the change; before, for a removal).
    pub required_by: Vec<String>,
    /// The repositories and tags whose images change with it.
    pub images: Vec<TouchedRepository>,
    /// The changelog entries between the old and the new version.
    pub changelog: Vec<Entry>,
    /// Why there are no changelog entries, where one would be expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changelog_note: Option<String>,
    /// CVE identifiers those entries mention.
    pub cves: Vec<String>,
}

/// One Debian changelog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub version: String,
    pub distribution: String,
    pub urgency: String,
    pub text: String,
    pub cves: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnusedExclusion {
    pub image: String,
    pub package: String,
    pub reason: String,
    /// Some image needed it before this re-lock.
    pub since_this_change: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDependency {
    pub package: String,
    pub version: String,
    pub architectures: Vec<String>,
    /// `<image>: <package that depends on it>`.
    pub wanted_by: Vec<String>,
}

impl ChangeReport {
    /// The report of a re-lock: `relocked` holds every distribution's
    /// lockfile before and after, `apps` the application images (they
    /// move with their bases), `pool` serves the new `.deb`s whose
    /// changelogs are read. A changelog that cannot be had is a note in
    /// the report, not a failure.
    pub fn new(
        project: &Project,
        relocked: &[Relocked],
        apps: &[AppImage],
        pool: &Pool<'_>,
        progress: &dyn Progress,
    ) -> Self {
        let mut changelogs = Changelogs::new(pool, project.definitions.settings.limits);
        let diffs: Vec<_> = relocked.iter().map(Relocked::diff).collect();
        let total = diffs.iter().map(|d| d.changes.len()).sum::<usize>();
        progress.begin("changelogs", total as u64);
        let distributions: Vec<DistributionChanges> = relocked
            .iter()
            .zip(&diffs)
            .map(|(r, diff)| {
                let changes = diff
                    .changes
                    .iter()
                    .map(|c| {
                        let change = describe(&project.definitions, apps, r, c, &mut changelogs);
                        progress.step(&c.package);
                        change
                    })
                    .collect();
                DistributionChanges {
                    distribution: r.distribution.clone(),
                    codename: r.new.codename.to_string(),
                    lockfile: r
                        .path
                        .strip_prefix(&project.root)
                        .unwrap_or(&r.path)
                        .display()
                        .to_string(),
                    current: r.is_current(),
                    releases: releases(r),
                    old_epoch: r.old.as_ref().map(|o| o.epoch),
                    new_epoch: r.new.epoch,
                    new_dependencies: new_dependencies(diff.changes.as_slice(), &r.new),
                    unused_exclusions: unused_exclusions(&project.definitions, r),
                    changes,
                }
            })
            .collect();
        progress.end();
        let cves: BTreeSet<String> = distributions
            .iter()
            .flat_map(|d| &d.changes)
            .flat_map(|c| c.cves.iter().cloned())
            .collect();
        ChangeReport {
            format: FORMAT_VERSION,
            current: relocked.iter().all(Relocked::is_current),
            distributions,
            cves: cves.into_iter().collect(),
            images: None,
        }
    }

    /// The two files of a report named `path`: `<path>.md` and
    /// `<path>.json`, where a `.md` or `.json` extension on `path` is
    /// replaced rather than extended.
    pub fn paths(path: &Path) -> (PathBuf, PathBuf) {
        let stem = match path.extension().and_then(|e| e.to_str()) {
            Some("md" | "json") => path.with_extension(""),
            _ => path.to_owned(),
        };
        let with = |ext: &str| {
            let mut name = stem.clone().into_os_string();
            name.push(ext);
            PathBuf::from(name)
        };
        (with(".md"), with(".json"))
    }

    /// The report written at `path` (its JSON file), or `None` if there
    /// is none yet.
    pub fn read(path: &Path) -> Result<Option<Self>> {
        let (_, json) = Self::paths(path);
        let bytes = match std::fs::read(&json) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path: json, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Usage(format!("{}: not a change report: {e}", json.display())))
    }

    /// Writes the Markdown and JSON files (each under a temporary name,
    /// then renamed) and returns their paths.
    pub fn write(&self, path: &Path) -> Result<(PathBuf, PathBuf)> {
        let (md, json) = Self::paths(path);
        let mut body = serde_json::to_vec_pretty(self).map_err(|e| Error::Output(e.to_string()))?;
        body.push(b'\n');
        for (file, bytes) in [(&json, body), (&md, markdown::render(self).into_bytes())] {
            write_atomically(file, &bytes).map_err(|source| Error::Io {
                path: file.clone(),
                source,
            })?;
        }
        Ok((md, json))
    }

    /// Package changes over every distribution.
    pub fn change_count(&self) -> usize {
        self.distributions.iter().map(|d| d.changes.len()).sum()
    }
}

fn describe(
    definitions: &Definitions,
    apps: &[AppImage],
    r: &Relocked,
    c: &PackageChange,
    changelogs: &mut Changelogs<'_>,
) -> Change {
    let first_arch = c
        .architectures
        .iter()
        .next()
        .map(String::as_str)
        .unwrap_or("");
    let old = r.old.as_ref().and_then(|l| l.find(first_arch, &c.package));
    let new = r.new.find(first_arch, &c.package);
    let locked = new.or(old);
    let required_by = locked.map(|p| p.required_by.clone()).unwrap_or_default();
    let images = touched(
        definitions,
        apps,
        &r.distribution,
        &c.architectures,
        &required_by,
    );
    let (changelog, changelog_note) = match (c.kind, old, new) {
        (ChangeKind::Upgraded, Some(old), Some(new)) => {
            match changelogs.of(&r.new, first_arch, new) {
                Ok(entries) => {
                    let range = range(old, new);
                    let picked: Vec<Entry> = changelog::between(&entries, &range.0, &range.1)
                        .into_iter()
                        .map(entry)
                        .collect();
                    let note = picked.is_empty().then(|| {
                        format!(
                            "the changelog has no entry between {} and {}",
                            range.0, range.1
                        )
                    });
                    (picked, note)
                }
                Err(why) => (Vec::new(), Some(format!("no changelog: {why}"))),
            }
        }
        (ChangeKind::Downgraded, Some(old), Some(new)) => (
            Vec::new(),
            Some(format!(
                "a downgrade: the changes after {} up to {} are withdrawn",
                new.version, old.version
            )),
        ),
        _ => (Vec::new(), None),
    };
    let cves: BTreeSet<String> = changelog.iter().flat_map(|e| e.cves.clone()).collect();
    Change {
        package: c.package.clone(),
        change: c.kind,
        old_version: c.old.as_ref().map(|v| v.version.clone()),
        new_version: c.new.as_ref().map(|v| v.version.clone()),
        old_suite: c.old.as_ref().map(|v| v.suite.clone()),
        new_suite: c.new.as_ref().map(|v| v.suite.clone()),
        security: c.is_security(),
        architectures: c.architectures.iter().cloned().collect(),
        source: locked.map(|p| p.source.clone()).unwrap_or_default(),
        required_by,
        images,
        changelog,
        changelog_note,
        cves: cves.into_iter().collect(),
    }
}

/// The versions an upgrade spans, as changelog entries are numbered: from
/// the old source version up to the new version, binNMU included (its
/// entry carries the binary version `<source>+bN`).
fn range(old: &LockedPackage, new: &LockedPackage) -> (String, String) {
    let upper = if new
        .version
        .starts_with(&format!("{}+b", new.source_version))
    {
        new.version.clone()
    } else {
        new.source_version.clone()
    };
    (old.source_version.clone(), upper)
}

fn entry(e: &ChangelogEntry) -> Entry {
    Entry {
        version: e.version.clone(),
        distribution: e.distribution.clone(),
        urgency: e.urgency.clone(),
        text: e.text.clone(),
        cves: e.cves.clone(),
    }
}

fn releases(r: &Relocked) -> Vec<ReleaseChange> {
    r.new
        .release
        .iter()
        .map(|n| ReleaseChange {
            suite: n.suite.to_string(),
            old_date: r
                .old
                .as_ref()
                .and_then(|o| o.release.iter().find(|x| x.suite == n.suite))
                .map(|o| o.date.clone()),
            new_date: n.date.clone(),
        })
        .collect()
}

/// Added packages that no image asks for by name: a dependency brought
/// them in, and the definitions should say whether they stay.
fn new_dependencies(changes: &[PackageChange], new: &Lockfile) -> Vec<NewDependency> {
    changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Added)
        .filter_map(|c| {
            let arch = c.architectures.iter().next()?;
            let p = new.find(arch, &c.package)?;
            let requested = p.required_by.iter().any(|w| w.ends_with(": requested"));
            (!requested).then(|| NewDependency {
                package: p.name.to_string(),
                version: p.version.clone(),
                architectures: c.architectures.iter().cloned().collect(),
                wanted_by: p.required_by.clone(),
            })
        })
        .collect()
}

/// Each image's own exclusions that no image standing on it (itself
/// included) cuts any more, on any architecture.
fn unused_exclusions(definitions: &Definitions, r: &Relocked) -> Vec<UnusedExclusion> {
    let dist = &r.distribution;
    // Which (image, excluded package) pairs cut something in a lock.
    let cuts = |lock: &Lockfile| -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for image in &lock.image {
            for below in definitions.stack(&image.name) {
                for l in &image.left_out {
                    out.insert((below.clone(), l.package.clone()));
                }
            }
        }
        out
    };
    let now = cuts(&r.new);
    let before = r.old.as_ref().map(cuts).unwrap_or_default();
    let mut out = Vec::new();
    for name in definitions.image_names() {
        let Some(image) = definitions.image(&name, dist) else {
            continue;
        };
        let inherited: Vec<_> = image
            .base
            .as_deref()
            .and_then(|b| definitions.image(b, dist))
            .map(|b| b.exclude)
            .unwrap_or_default();
        for ex in image.exclude.iter().filter(|e| !inherited.contains(e)) {
            let key = (name.clone(), ex.package.clone());
            if !now.contains(&key) {
                out.push(UnusedExclusion {
                    image: name.clone(),
                    package: ex.package.clone(),
                    reason: ex.reason.clone(),
                    since_this_change: before.contains(&key),
                });
            }
        }
    }
    out
}
