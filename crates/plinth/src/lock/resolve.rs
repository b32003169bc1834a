//! The resolver: for one architecture, the closure of an image's packages
//! over `Pre-Depends` and `Depends`, choosing among `|` alternatives,
//! honouring versioned constraints and (versioned) `Provides`, taking the
//! highest version across suites, and cutting the dependencies an image
//! leaves out on purpose.
//!
//! Choices follow apt with equal pin priorities: a group already satisfied
//! by what is selected adds nothing; otherwise the first alternative that
//! can be satisfied wins, with its highest acceptable version.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::debian::control::{self, SyntaxError};
use crate::debian::name::{PackageName, PoolPath};
use crate::debian::relation::{self, Relation};
use crate::debian::version::Version;
use crate::definitions::Exclusion;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("Packages index of suite {suite}: {source}")]
    Index { suite: String, source: SyntaxError },
    #[error("{image} ({arch}): {}", .problems.join("; "))]
    Unsatisfiable {
        image: String,
        arch: String,
        problems: Vec<String>,
    },
}

/// One binary package of a Packages index, borrowing from the index text.
/// Its name is a valid package name, its filename a valid pool path and
/// its sha256 64 hex digits: a stanza that fails any check never becomes
/// a candidate.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub architecture: &'a str,
    pub suite: &'a str,
    pub source: Option<&'a str>,
    pub pre_depends: Option<&'a str>,
    pub depends: Option<&'a str>,
    pub provides: Option<&'a str>,
    pub filename: &'a str,
    pub size: u64,
    pub sha256: &'a str,
    pub maintainer: Option<&'a str>,
}

/// A stanza of an index that was left out because it is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected<'a> {
    pub suite: &'a str,
    /// Where the stanza starts in its index.
    pub line: usize,
    /// Its `Package` field as written, if it has one.
    pub package: Option<&'a str>,
    pub why: String,
}

impl std::fmt::Display for Rejected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Packages index of suite {}: ", self.suite)?;
        match self.package {
            Some(p) => write!(
                f,
                "package {:?} at line {}: {}",
                crate::support::text::shown(p),
                self.line,
                self.why
            ),
            None => write!(f, "stanza at line {}: {}", self.line, self.why),
        }
    }
}

/// Every package of every enabled suite for one architecture.
pub struct Universe<'a> {
    arch: String,
    candidates: Vec<Candidate<'a>>,
    /// Malformed stanzas, left out: an error only if an image needs them.
    rejected: Vec<Rejected<'a>>,
    /// name → candidates, highest version first.
    by_name: HashMap<&'a str, Vec<usize>>,
    /// virtual name → candidates that provide it.
    providers: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Universe<'a> {
    /// Indexes `(suite, Packages text)` pairs. Packages of another
    /// architecture than `arch` or `all` are ignored; malformed stanzas
    /// are set aside (see [`Universe::rejected`]).
    pub fn new(arch: &str, indices: &[(&'a str, &'a str)]) -> Result<Self, ResolveError> {
        let mut candidates = Vec::new();
        let mut rejected = Vec::new();
        for &(suite, text) in indices {
            control::for_each(text, |st| match candidate(suite, st) {
                Ok(c) if c.architecture == arch || c.architecture == "all" => candidates.push(c),
                Ok(_) => {}
                Err(why) => rejected.push(Rejected {
                    suite,
                    line: st.line,
                    package: st.get("Package"),
                    why,
                }),
            })
            .map_err(|source| ResolveError::Index {
                suite: suite.to_owned(),
                source,
            })?;
        }
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::with_capacity(candidates.len());
        let mut providers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, c) in candidates.iter().enumerate() {
            by_name.entry(c.name).or_default().push(i);
            for p in c.provides.into_iter().flat_map(|p| p.split(',')) {
                let name = p.trim().split([' ', '(', ':']).next().unwrap_or("");
                if !name.is_empty() {
                    providers.entry(name).or_default().push(i);
                }
            }
        }
        for list in by_name.values_mut().filter(|l| l.len() > 1) {
            // Versions were checked in `candidate`; the suite breaks ties
            // so that equal versions in two suites order the same each run.
            list.sort_by(|&a, &b| {
                let (ca, cb) = (&candidates[a], &candidates[b]);
                let va = Version::parse(ca.version).ok();
                let vb = Version::parse(cb.version).ok();
                vb.cmp(&va).then_with(|| ca.suite.cmp(cb.suite))
            });
        }
        Ok(Universe {
            arch: arch.to_owned(),
            candidates,
            rejected,
            by_name,
            providers,
        })
    }

    /// The malformed stanzas left out, in index order.
    pub fn rejected(&self) -> &[Rejected<'a>] {
        &self.rejected
    }

    /// The malformed stanza of `package`, if one was left out: what an
    /// image that needs it is told instead of "unknown package".
    pub fn rejected_stanza(&self, package: &str) -> Option<&Rejected<'a>> {
        self.rejected.iter().find(|r| r.package == Some(package))
    }

    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    pub fn candidate(&self, id: usize) -> &Candidate<'a> {
        &self.candidates[id]
    }

    /// Resolves an image's packages on top of `base` (the selection of the
    /// image it stands on, empty for the bottom image).
    pub fn resolve(
        &self,
        image: &str,
        packages: &[String],
        exclude: &[Exclusion],
        base: &Selection,
    ) -> Result<Selection, ResolveError> {
        let mut r = Resolver {
            u: self,
            selected: base.clone(),
            own: BTreeSet::new(),
            reasons: BTreeMap::new(),
            parent: BTreeMap::new(),
            left_out: Vec::new(),
            problems: Vec::new(),
            exclude,
            used_exclusions: BTreeSet::new(),
            parsed: HashMap::new(),
        };
        let mut queue = std::collections::VecDeque::new();
        for name in packages {
            if let Some(id) = r.request(name) {
                queue.push_back(id);
            }
        }
        while let Some(id) = queue.pop_front() {
            for dep in r.dependencies(id) {
                if let Some(new) = r.satisfy(id, &dep) {
                    queue.push_back(new);
                }
            }
        }
        // A package the image takes must not have a stanza that was left
        // out: it might have been the version to choose.
        for &id in &r.own {
            let name = self.candidates[id].name;
            if let Some(bad) = self.rejected_stanza(name) {
                r.problems.push(format!(
                    "{name} is needed, but one of its stanzas is malformed: {bad}"
                ));
            }
        }
        if !r.problems.is_empty() {
            return Err(ResolveError::Unsatisfiable {
                image: image.to_owned(),
                arch: self.arch.clone(),
                problems: r.problems,
            });
        }
        let mut selection = r.selected;
        selection.own = r.own.iter().copied().collect();
        selection.reasons = r.reasons;
        selection.left_out = r.left_out;
        selection.unused_exclusions = exclude
            .iter()
            .filter(|e| !r.used_exclusions.contains(&e.package))
            .map(|e| e.package.clone())
            .collect();
        Ok(selection)
    }
}

fn candidate<'a>(suite: &'a str, st: &control::Stanza<'a>) -> Result<Candidate<'a>, String> {
    // One pass over the fields: this runs for every stanza of every index.
    let mut f: [Option<&'a str>; 11] = [None; 11];
    for (name, value) in st.fields() {
        let slot = match name {
            "Package" => 0,
            "Version" => 1,
            "Architecture" => 2,
            "Source" => 3,
            "Pre-Depends" => 4,
            "Depends" => 5,
            "Provides" => 6,
            "Filename" => 7,
            "Size" => 8,
            "SHA256" => 9,
            "Maintainer" => 10,
            _ => continue,
        };
        f[slot] = Some(value);
    }
    let need = |i: usize, field: &str| f[i].ok_or_else(|| format!("no {field} field"));
    let name = need(0, "Package")?;
    PackageName::validate(name).map_err(|e| e.to_string())?;
    let version = need(1, "Version")?;
    Version::validate(version).map_err(|e| e.to_string())?;
    let architecture = need(2, "Architecture")?;
    crate::definitions::Name::parse(architecture).map_err(|e| format!("Architecture: {e}"))?;
    let filename = need(7, "Filename")?;
    PoolPath::validate(filename).map_err(|e| e.to_string())?;
    let sha256 = need(9, "SHA256")?;
    if !(sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(format!(
            "SHA256 {:?} is not 64 hex digits",
            crate::support::text::shown(sha256)
        ));
    }
    Ok(Candidate {
        name,
        version,
        architecture,
        suite,
        source: f[3],
        pre_depends: f[4],
        depends: f[5],
        provides: f[6],
        filename,
        size: need(8, "Size")?
            .parse()
            .map_err(|_| "Size is not a number".to_owned())?,
        sha256,
        maintainer: f[10],
    })
}

/// The packages chosen for an image: those of its base and its own.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// name → candidate id, for every package in the image.
    pub all: BTreeMap<String, usize>,
    /// The candidates this image adds on top of its base, by id.
    pub own: Vec<usize>,
    /// name → why it is in this image's own set.
    pub reasons: BTreeMap<String, BTreeSet<Reason>>,
    pub left_out: Vec<LeftOut>,
    pub unused_exclusions: Vec<String>,
}

/// Why a package is in an image's own set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The image definition names it.
    Requested,
    /// The named package depends on it.
    DependencyOf(String),
}

/// As the lockfile's `required-by` writes it: `requested`, or the package.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Requested => f.write_str("requested"),
            Reason::DependencyOf(package) => f.write_str(package),
        }
    }
}

/// A dependency cut by an exclusion.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeftOut {
    pub package: String,
    pub wanted_by: String,
    pub relation: String,
    pub reason: String,
}

struct Resolver<'u, 'a> {
    u: &'u Universe<'a>,
    selected: Selection,
    own: BTreeSet<usize>,
    reasons: BTreeMap<String, BTreeSet<Reason>>,
    parent: BTreeMap<String, String>,
    left_out: Vec<LeftOut>,
    problems: Vec<String>,
    exclude: &'u [Exclusion],
    used_exclusions: BTreeSet<String>,
    parsed: HashMap<usize, Vec<(String, Option<Version>)>>,
}

impl Resolver<'_, '_> {
    fn add(&mut self, id: usize, why: Reason) -> Option<usize> {
        let name = self.u.candidates[id].name.to_owned();
        if self.selected.all.contains_key(&name) {
            self.reasons.entry(name).or_default().insert(why);
            return None;
        }
        if let Reason::DependencyOf(by) = &why {
            self.parent.insert(name.clone(), by.clone());
        }
        self.reasons.entry(name.clone()).or_default().insert(why);
        self.selected.all.insert(name, id);
        self.own.insert(id);
        Some(id)
    }

    fn request(&mut self, name: &str) -> Option<usize> {
        if let Some(&id) = self.selected.all.get(name) {
            if self.own.contains(&id) {
                return None;
            }
            tracing::debug!("{name} is already in the base image");
            return None;
        }
        if let Some(id) = self.u.by_name.get(name).and_then(|l| l.first()) {
            return self.add(*id, Reason::Requested);
        }
        let providers = self.providers_of(name, None);
        match providers.as_slice() {
            [] => self.problems.push(match self.u.rejected_stanza(name) {
                Some(r) => format!("{name:?} is needed, but its stanza is malformed: {r}"),
                None => format!(
                    "unknown package {name:?}: no suite has it for {}",
                    self.u.arch
                ),
            }),
            [one] => return self.add(*one, Reason::Requested),
            many => {
                let names: Vec<_> = many.iter().map(|&i| self.u.candidates[i].name).collect();
                self.problems.push(format!(
                    "{name:?} is a virtual package provided by {}; name one of them",
                    names.join(", ")
                ))
            }
        }
        None
    }

    fn dependencies(&mut self, id: usize) -> Vec<Vec<Relation>> {
        let c = &self.u.candidates[id];
        let mut groups = Vec::new();
        for field in [c.pre_depends, c.depends].into_iter().flatten() {
            match relation::parse_field(field) {
                Ok(gs) => groups.extend(gs),
                Err(e) => self.problems.push(format!("{}: {}", c.name, e)),
            }
        }
        let arch = &self.u.arch;
        groups
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .filter(|r| r.applies_to(arch))
                    .collect::<Vec<_>>()
            })
            .filter(|g| !g.is_empty())
            .collect()
    }

    /// Satisfies one dependency group of `wanted_by`; returns a newly
    /// selected package, if any.
    fn satisfy(&mut self, wanted_by: usize, group: &[Relation]) -> Option<usize> {
        let by = self.u.candidates[wanted_by].name;
        if let Some(id) = group.iter().find_map(|r| self.satisfied_by_selection(r)) {
            let name = self.u.candidates[id].name.to_owned();
            if self.own.contains(&id) {
                self.reasons
                    .entry(name)
                    .or_default()
                    .insert(Reason::DependencyOf(by.to_owned()));
            }
            return None;
        }
        if let Some(ex) = group
            .iter()
            .find_map(|r| self.exclude.iter().find(|e| e.package == r.name))
        {
            self.used_exclusions.insert(ex.package.clone());
            let entry = LeftOut {
                package: ex.package.clone(),
                wanted_by: by.to_owned(),
                relation: relation::display_group(group),
                reason: ex.reason.clone(),
            };
            if !self.left_out.contains(&entry) {
                self.left_out.push(entry);
            }
            return None;
        }
        for r in group {
            if let Some(id) = self.best_candidate(r) {
                return self.add(id, Reason::DependencyOf(by.to_owned()));
            }
        }
        let chain = self.chain(by);
        let hint = match group.iter().find_map(|r| self.selected.all.get(&r.name)) {
            Some(&id) => format!(
                " ({} {} is already selected)",
                self.u.candidates[id].name, self.u.candidates[id].version
            ),
            None => match group.iter().find_map(|r| self.u.rejected_stanza(&r.name)) {
                Some(r) => format!(" (its stanza is malformed: {r})"),
                None => String::new(),
            },
        };
        self.problems.push(format!(
            "{chain} depends on {:?}, which no suite can satisfy{hint}",
            relation::display_group(group)
        ));
        None
    }

    fn satisfied_by_selection(&mut self, r: &Relation) -> Option<usize> {
        if let Some(&id) = self.selected.all.get(&r.name) {
            let v = Version::parse(self.u.candidates[id].version).ok()?;
            if r.accepts(&v) {
                return Some(id);
            }
        }
        let ids: Vec<usize> = self.selected.all.values().copied().collect();
        ids.into_iter().find(|&id| self.provides(id, r))
    }

    fn best_candidate(&mut self, r: &Relation) -> Option<usize> {
        if self.selected.all.contains_key(&r.name) {
            // A different version of a selected package cannot be added.
            return None;
        }
        let real = self.u.by_name.get(r.name.as_str()).and_then(|ids| {
            ids.iter().copied().find(|&id| {
                Version::parse(self.u.candidates[id].version).is_ok_and(|v| r.accepts(&v))
            })
        });
        real.or_else(|| {
            let mut providers = self.providers_of(&r.name, Some(r));
            providers.sort_by_key(|&id| self.u.candidates[id].name);
            providers.into_iter().next()
        })
    }

    fn providers_of(&mut self, name: &str, r: Option<&Relation>) -> Vec<usize> {
        let ids = self.u.providers.get(name).cloned().unwrap_or_default();
        ids.into_iter()
            .filter(|&id| {
                let probe = Relation {
                    name: name.to_owned(),
                    arch_qualifier: None,
                    constraint: r.and_then(|r| r.constraint.clone()),
                    arch_restriction: Vec::new(),
                };
                self.provides(id, &probe)
            })
            .collect()
    }

    /// Whether candidate `id` provides `r` (a versioned relation needs a
    /// versioned `Provides` that satisfies it, as dpkg requires).
    fn provides(&mut self, id: usize, r: &Relation) -> bool {
        let c = &self.u.candidates[id];
        let Some(field) = c.provides else {
            return false;
        };
        let list = self.parsed.entry(id).or_insert_with(|| {
            relation::parse_field(field)
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .map(|p| (p.name, p.constraint.map(|(_, v)| v)))
                .collect()
        });
        list.iter().any(|(name, version)| {
            name == &r.name
                && match (&r.constraint, version) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(_), Some(v)) => r.accepts(v),
                }
        })
    }

    fn chain(&self, name: &str) -> String {
        let mut chain = vec![name.to_owned()];
        let mut cur = name;
        while let Some(p) = self.parent.get(cur) {
            if chain.contains(p) {
                break;
            }
            chain.push(p.clone());
            cur = p;
        }
        chain.reverse();
        chain.join(" → ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "\
Package: app
Version: 1.0
Architecture: amd64
Pre-Depends: libc (>= 2)
Depends: mail-transport-agent | postfix, libfoo (>= 1:1.0), conf (>= 0.5) | conf-2.0, tool [amd64], other [arm64]
Filename: pool/a/app.deb
Size: 10
SHA256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa

Package: libc
Version: 2.1~rc1
Architecture: amd64
Filename: pool/l/libc-old.deb
Size: 10
SHA256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb

Package: libfoo
Version: 1:1.0-1
Architecture: amd64
Depends: libc
Filename: pool/l/libfoo.deb
Size: 1
SHA256: cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc

Package: tiny-mta
Version: 0.1
Architecture: all
Provides: mail-transport-agent
Filename: pool/t/tiny.deb
Size: 1
SHA256: dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd

Package: conf
Version: 1.0
Architecture: all
Provides: conf-2.0
Filename: pool/c/conf.deb
Size: 1
SHA256: eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee

Package: tool
Version: 1
Architecture: amd64
Filename: pool/t/tool.deb
Size: 1
SHA256: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
";
    const SECURITY: &str = "\
Package: libc
Version: 2.1
Architecture: amd64
Filename: pool/l/libc-new.deb
Size: 10
SHA256: 1111111111111111111111111111111111111111111111111111111111111111
";

    fn universe() -> Universe<'static> {
        Universe::new("amd64", &[("main", MAIN), ("security", SECURITY)]).unwrap()
    }

    fn names(u: &Universe, ids: &[usize]) -> Vec<String> {
        let mut v: Vec<String> = ids
            .iter()
            .map(|&i| u.candidate(i).name.to_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn closure_with_alternatives_virtuals_and_highest_version() {
        let u = universe();
        let sel = u
            .resolve("img", &["app".into()], &[], &Selection::default())
            .unwrap();
        assert_eq!(
            names(&u, &sel.own),
            ["app", "conf", "libc", "libfoo", "tiny-mta", "tool"]
        );
        let libc = u.candidate(sel.all["libc"]);
        assert_eq!((libc.version, libc.suite), ("2.1", "security"));
        assert!(sel.reasons["libfoo"].contains(&Reason::DependencyOf("app".into())));
        assert!(sel.reasons["app"].contains(&Reason::Requested));
    }

    #[test]
    fn exclusions_cut_groups_and_are_reported() {
        let u = universe();
        let ex = vec![Exclusion {
            package: "conf-2.0".into(),
            reason: "not needed".into(),
        }];
        let sel = u
            .resolve("img", &["app".into()], &ex, &Selection::default())
            .unwrap();
        assert!(!sel.all.contains_key("conf"));
        assert_eq!(sel.left_out[0].wanted_by, "app");
        assert_eq!(sel.left_out[0].relation, "conf (>= 0.5) | conf-2.0");
    }

    #[test]
    fn base_packages_are_not_repeated() {
        let u = universe();
        let base = u
            .resolve("base", &["libc".into()], &[], &Selection::default())
            .unwrap();
        let sel = u.resolve("top", &["libfoo".into()], &[], &base).unwrap();
        assert_eq!(names(&u, &sel.own), ["libfoo"]);
    }

    #[test]
    fn reports_unknown_and_unsatisfiable_with_chain() {
        let sha = "0".repeat(64);
        let text = format!(
            "Package: aa\nVersion: 1\nArchitecture: all\nDepends: bb\nFilename: pool/f.deb\nSize: 1\nSHA256: {sha}\n\nPackage: bb\nVersion: 1\nArchitecture: all\nDepends: cc (>= 2)\nFilename: pool/f.deb\nSize: 1\nSHA256: {sha}\n\nPackage: cc\nVersion: 1\nArchitecture: all\nFilename: pool/f.deb\nSize: 1\nSHA256: {sha}\n"
        );
        let u = Universe::new("amd64", &[("s", &text)]).unwrap();
        let err = u
            .resolve(
                "img",
                &["aa".into(), "nope".into()],
                &[],
                &Selection::default(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown package \"nope\""), "{err}");
        assert!(err.contains("aa → bb depends on \"cc (>= 2)\""), "{err}");
    }
}
