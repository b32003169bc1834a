//! Stage 1, the lock: definitions + signed archive → lockfiles. This is the
//! only stage that reads archive indices; everything after it reads the
//! lockfiles alone.
//!
//! [`archive`] walks the chain of trust from `InRelease` to the `Packages`
//! indices, [`resolve`] computes each image's package closure, and this
//! module turns the result into [`Lockfile`]s: [`relock`] resolves every
//! distribution and writes nothing (what `lock --check-upstream` needs),
//! [`lock`] then writes the lockfiles that changed, only once every
//! distribution resolved.

pub mod archive;
pub mod resolve;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::debian::name::{PackageName, PoolPath};
use crate::definitions::Name;
use crate::download::cache::Cache;
use crate::download::http::{FetchOptions, Fetcher};
use crate::download::mirrors::{MirrorError, Mirrors};
use crate::lockfile::LockfileError;
use crate::lockfile::{
    FORMAT_VERSION, LockDiff, LockedImage, LockedLeftOut, LockedPackage, LockedRelease, Lockfile,
    Relocked,
};
use crate::net::{Environment, NetError, Network};
use crate::project::{Progress, Project};
use crate::support::digest::Sha256Hex;
use archive::{ArchiveClient, ArchiveError, Keyring, VerifiedSuite, key_paths};
use resolve::{Candidate, ResolveError, Selection, Universe};

/// Why the lock stage failed; one line naming the suite, index, package or
/// file concerned.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Lockfile(#[from] LockfileError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("unknown distribution {0}")]
    UnknownDistribution(String),
    /// Two images of one distribution resolve a package to two versions.
    #[error("{package}: {why}")]
    VersionClash { package: String, why: String },
    /// The current lockfile cannot be read, so a rollback cannot be ruled out.
    #[error(
        "{source}; without it a rollback of the archive cannot be ruled out: fix or remove it, or run `cargo xtask lock --allow-downgrade`"
    )]
    Unchecked { source: LockfileError },
    #[error("Packages index of suite {suite}: {why}")]
    Stanza { suite: String, why: String },
}

type Result<T, E = LockError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Use only the cache: the last verified `InRelease` of each suite and
    /// the indices it names.
    pub offline: bool,
    /// Where apt's configuration lives (`/etc/apt`).
    pub apt_dir: PathBuf,
    pub fetch: FetchOptions,
    /// The variables that decide trust and proxies (`SSL_CERT_FILE`,
    /// `https_proxy`, ...): the process's by default; tests give their own.
    pub network: Environment,
    /// The time against which signatures, `Valid-Until` and a Release
    /// `Date` in the future are checked.
    pub now: SystemTime,
    /// Accept a Release older than the one the current lockfile records
    /// (going back to an older snapshot on purpose). Without it, such a
    /// Release is refused as a replay.
    pub allow_downgrade: bool,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            offline: false,
            apt_dir: PathBuf::from("/etc/apt"),
            fetch: FetchOptions::default(),
            network: Environment::from_process(),
            now: SystemTime::now(),
            allow_downgrade: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct LockReport {
    pub diffs: Vec<LockDiff>,
    /// Exclusions no dependency needed, and similar advice.
    pub warnings: Vec<String>,
    /// Lockfiles rewritten (those whose content changed).
    pub written: Vec<PathBuf>,
}

/// Every distribution re-resolved against the archive, nothing written.
#[derive(Debug)]
pub struct Relock {
    pub distributions: Vec<Relocked>,
    /// Exclusions no dependency needed, and similar advice.
    pub warnings: Vec<String>,
}

impl Relock {
    /// Whether every lockfile already says what the archive says (see
    /// [`Relocked::is_current`]).
    pub fn is_current(&self) -> bool {
        self.distributions.iter().all(Relocked::is_current)
    }

    pub fn diffs(&self) -> Vec<LockDiff> {
        self.distributions.iter().map(Relocked::diff).collect()
    }

    /// Writes the lockfiles that are not current, each to a temporary
    /// file renamed into place, and returns their paths. A lockfile that
    /// is current stays as it is, even when Release files were signed
    /// again since: its epoch, and so every image digest, stays put.
    pub fn write(&self) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for d in self.distributions.iter().filter(|d| !d.is_current()) {
            d.new.write(&d.path)?;
            written.push(d.path.clone());
        }
        Ok(written)
    }
}

/// Resolves every distribution and writes the lockfiles that changed. All
/// distributions are resolved before any file is written, so a failure
/// leaves every lockfile as it was.
pub fn lock(
    project: &Project,
    cache: &Cache,
    options: &LockOptions,
    progress: &dyn Progress,
) -> Result<LockReport> {
    let relock = relock(project, cache, options, progress)?;
    crate::support::fs::remove_stale_temporaries(&project.lockfiles_dir());
    let written = relock.write()?;
    Ok(LockReport {
        diffs: relock.diffs(),
        warnings: relock.warnings,
        written,
    })
}

/// Resolves every distribution against the signed archive and reads the
/// lockfiles as they are; writes nothing.
pub fn relock(
    project: &Project,
    cache: &Cache,
    options: &LockOptions,
    progress: &dyn Progress,
) -> Result<Relock> {
    let mirrors = Mirrors::resolve(&project.definitions.settings, &options.apt_dir)?;
    // Offline nothing connects: the settings' CA files are not needed.
    let network = match options.offline {
        true => Network::machine(&options.network),
        false => Network::for_project(&options.network, project)?,
    };
    let fetcher = Fetcher::new(&network, options.fetch.clone());
    let mut warnings = Vec::new();
    let mut distributions = Vec::new();
    for (dist, _) in project.definitions.distributions() {
        let path = project.lockfile_path(dist);
        // The current lockfile is the record the archive must not fall
        // behind, and feeds the printed diff.
        let old = match path.exists().then(|| Lockfile::read(&path)).transpose() {
            Ok(old) => old,
            Err(e) if options.allow_downgrade => {
                warnings.push(format!("{e}; writing a new one"));
                None
            }
            Err(source) => return Err(LockError::Unchecked { source }),
        };
        let context = DistributionContext {
            project,
            dist_name: dist,
            recorded: old.as_ref().filter(|_| !options.allow_downgrade),
            path: &path,
        };
        let (new, warns) =
            lock_distribution(&context, &mirrors, &fetcher, cache, options, progress)?;
        warnings.extend(warns);
        distributions.push(Relocked {
            distribution: dist.to_owned(),
            path,
            old,
            new,
        });
    }
    Ok(Relock {
        distributions,
        warnings,
    })
}

/// One distribution to lock, and the lock it must not fall behind.
struct DistributionContext<'a> {
    project: &'a Project,
    dist_name: &'a str,
    /// The current lockfile, unless a downgrade is allowed.
    recorded: Option<&'a Lockfile>,
    /// Where it lives, for messages.
    path: &'a std::path::Path,
}

fn lock_distribution(
    context: &DistributionContext<'_>,
    mirrors: &Mirrors,
    fetcher: &Fetcher,
    cache: &Cache,
    options: &LockOptions,
    progress: &dyn Progress,
) -> Result<(Lockfile, Vec<String>)> {
    let (project, dist_name) = (context.project, context.dist_name);
    let defs = &project.definitions;
    let dist = defs
        .distribution(dist_name)
        .ok_or_else(|| LockError::UnknownDistribution(dist_name.to_owned()))?;
    let keyring = Keyring::load(&key_paths(&project.keys_dir(), &dist.keys))?;
    let client = ArchiveClient {
        fetcher,
        cache,
        keyring: &keyring,
        offline: options.offline,
        now: options.now,
        recorded: context.recorded.map_or(&[], |l| l.release.as_slice()),
        lockfile: context.path,
        index_limit: defs.settings.limits.index,
    };
    let archs = defs.architectures(dist_name);
    progress.begin(
        &format!("{dist_name}: indices"),
        (dist.suites.len() * (1 + archs.len() * dist.components.len())) as u64,
    );
    let suites: Vec<VerifiedSuite> = dist
        .suites
        .par_iter()
        .map(|s| {
            let v = client.suite(mirrors.url(&s.archive)?, &s.archive, &s.name)?;
            progress.step(&s.name);
            Ok(v)
        })
        .collect::<Result<_>>()?;
    let jobs: Vec<(usize, &str, &str)> = suites
        .iter()
        .enumerate()
        .flat_map(|(i, _)| {
            archs.iter().flat_map(move |a| {
                dist.components
                    .iter()
                    .map(move |c| (i, a.as_str(), c.as_str()))
            })
        })
        .collect();
    let texts: Vec<String> = jobs
        .par_iter()
        .map(|&(i, arch, component)| {
            let text = client.packages(&suites[i], component, arch);
            progress.step(&format!("{} {component}/{arch}", suites[i].name));
            Ok(text?)
        })
        .collect::<Result<_>>()?;
    progress.end();

    let epoch = suites
        .iter()
        .map(|s| s.release.date_epoch)
        .max()
        .unwrap_or(0);
    let release = suites
        .iter()
        .map(|s| LockedRelease {
            suite: s.name.clone(),
            archive: s.archive.clone(),
            date: s.release.date.clone(),
            inrelease_sha256: s.inrelease_sha256.clone(),
        })
        .collect();

    let image_names = defs.image_names();
    let per_arch: Vec<(Vec<LockedImage>, Vec<LockedPackage>, Vec<String>)> = archs
        .par_iter()
        .map(|arch| {
            let indices: Vec<(&str, &str)> = jobs
                .iter()
                .zip(&texts)
                .filter(|((_, a, _), _)| arch == a)
                .map(|((i, _, _), t)| (suites[*i].name.as_str(), t.as_str()))
                .collect();
            let universe = Universe::new(arch, &indices)?;
            resolve_arch(project, dist_name, arch, &universe, &image_names)
        })
        .collect::<Result<_>>()?;

    let mut images = Vec::new();
    let mut package = BTreeMap::new();
    let mut warnings = BTreeSet::new();
    for (arch, (imgs, pkgs, warns)) in archs.iter().zip(per_arch) {
        images.extend(imgs);
        package.insert(arch.clone(), pkgs);
        warnings.extend(warns);
    }
    // Images first by stacking order, then by architecture.
    images.sort_by_key(|i: &LockedImage| {
        (
            image_names.iter().position(|n| *n == i.name),
            archs.iter().position(|a| *a == i.architecture),
        )
    });
    let lock = Lockfile {
        format: FORMAT_VERSION,
        distribution: Name::parse(dist_name)
            .map_err(|e| LockError::UnknownDistribution(e.to_string()))?,
        codename: dist.codename.clone(),
        definitions_sha256: Sha256Hex::parse(&defs.lock_inputs_sha256(dist_name))
            .map_err(|e| LockError::UnknownDistribution(e.to_string()))?,
        epoch,
        release,
        image: images,
        package,
    };
    Ok((lock, warnings.into_iter().collect()))
}

type ArchLock = (Vec<LockedImage>, Vec<LockedPackage>, Vec<String>);

fn resolve_arch(
    project: &Project,
    dist: &str,
    arch: &Name,
    universe: &Universe,
    image_names: &[String],
) -> Result<ArchLock> {
    let defs = &project.definitions;
    let mut selections: BTreeMap<String, Selection> = BTreeMap::new();
    let mut images = Vec::new();
    let mut packages: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
    // Malformed stanzas no image needed (one that was needed failed the
    // resolution, naming it).
    let mut warnings: Vec<String> = universe
        .rejected()
        .iter()
        .map(|r| format!("{dist} ({arch}): skipped a malformed stanza that no image needs: {r}"))
        .collect();
    for name in image_names {
        let Some(image) = defs.image(name, dist) else {
            continue;
        };
        let empty = Selection::default();
        let base = match &image.base {
            Some(b) => selections.get(b.as_str()).unwrap_or(&empty),
            None => &empty,
        };
        let sel = universe.resolve(name, &image.packages, &image.exclude, base)?;
        let debug = universe.resolve(
            &format!("{name} (debug)"),
            &defs.settings.debug_packages,
            &image.exclude,
            &sel,
        )?;
        let own = record(universe, (dist, arch), name, &sel, &mut packages)?;
        let debug_own = record(
            universe,
            (dist, arch),
            &format!("{name} (debug)"),
            &debug,
            &mut packages,
        )?;
        for ex in &sel.unused_exclusions {
            if image
                .base
                .as_ref()
                .and_then(|b| defs.image(b, dist))
                .is_none_or(|b| !b.exclude.iter().any(|e| &e.package == ex))
            {
                warnings.push(format!(
                    "{dist} ({arch}): image {name}: exclusion {ex:?} is not needed by any package"
                ));
            }
        }
        let mut left_out: Vec<LockedLeftOut> = sel
            .left_out
            .iter()
            .map(|l| LockedLeftOut {
                package: l.package.clone(),
                wanted_by: l.wanted_by.clone(),
                relation: l.relation.clone(),
                reason: l.reason.clone(),
            })
            .collect();
        left_out.sort();
        images.push(LockedImage {
            name: image.name.clone(),
            architecture: arch.clone(),
            base: image.base.clone(),
            packages: own,
            debug_packages: debug_own,
            left_out,
        });
        selections.insert(name.clone(), sel);
    }
    let packages = packages
        .into_values()
        .map(|(id, reasons)| locked_package(universe.candidate(id), reasons))
        .collect::<Result<_>>()?;
    Ok((images, packages, warnings))
}

/// Adds the packages `sel` contributes to `packages`, with why each is
/// there, and returns their names.
fn record(
    universe: &Universe,
    (dist, arch): (&str, &str),
    label: &str,
    sel: &Selection,
    packages: &mut BTreeMap<String, (usize, BTreeSet<String>)>,
) -> Result<Vec<PackageName>> {
    let mut names = Vec::new();
    for &id in &sel.own {
        let c = universe.candidate(id);
        let entry = packages
            .entry(c.name.to_owned())
            .or_insert((id, BTreeSet::new()));
        if entry.0 != id {
            let other = universe.candidate(entry.0);
            return Err(LockError::VersionClash {
                package: format!("{} ({dist}, {arch})", c.name),
                why: format!(
                    "resolves to {} in one image and {} in {label}; name it in the lower image",
                    other.version, c.version
                ),
            });
        }
        for why in sel.reasons.get(c.name).into_iter().flatten() {
            entry.1.insert(format!("{label}: {why}"));
        }
        names.push(checked(c, PackageName::parse(c.name))?);
    }
    names.sort();
    Ok(names)
}

/// A candidate's value as its checked type. Candidates were checked when
/// the index was read, so this fails only if those checks and the types
/// ever disagree.
fn checked<T>(c: &Candidate, value: Result<T, impl std::fmt::Display>) -> Result<T> {
    value.map_err(|e| LockError::Stanza {
        suite: c.suite.to_owned(),
        why: format!("package {}: {e}", c.name),
    })
}

fn locked_package(c: &Candidate, reasons: BTreeSet<String>) -> Result<LockedPackage> {
    let (source, source_version) = match c.source {
        Some(s) => match s.split_once('(') {
            Some((name, v)) => (name.trim(), v.trim_end_matches(')').trim()),
            None => (s.trim(), c.version),
        },
        None => (c.name, c.version),
    };
    Ok(LockedPackage {
        name: checked(c, PackageName::parse(c.name))?,
        version: c.version.to_owned(),
        architecture: checked(c, Name::parse(c.architecture))?,
        source: source.to_owned(),
        source_version: source_version.to_owned(),
        suite: checked(c, Name::parse(c.suite))?,
        filename: checked(c, PoolPath::parse(c.filename))?,
        size: c.size,
        sha256: checked(c, Sha256Hex::parse(&c.sha256.to_ascii_lowercase()))?,
        required_by: reasons.into_iter().collect(),
    })
}
