//! The start-up check of a binary against an image: whether the dynamic
//! loader would find everything the binary needs, decided the way glibc's
//! loader decides it, from the image's own files.
//!
//! It owns ELF reading (interpreter, `DT_NEEDED`, `DT_RPATH`/`DT_RUNPATH`,
//! version needs and definitions) and path lookup in a merged image tree.
//! It never looks at the host's files: a binary that runs here may still
//! fail in the image, and that is what this module is for.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use goblin::elf::Elf;
use goblin::elf::header::{EM_AARCH64, EM_X86_64};
use goblin::elf::symver::VER_FLG_WEAK;

use crate::rootfs::resolve;
use crate::tarfs::{Entry, EntryKind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("not an ELF executable: {0}")]
    NotElf(String),
    #[error("is built for {found}, not for {arch}")]
    WrongMachine { found: String, arch: String },
    #[error("is dynamically linked, but the image has no {interpreter} (its dynamic loader)")]
    MissingInterpreter { interpreter: String },
    #[error("needs {library}{}, which the image does not have (searched {searched})", needed_by_suffix(.needed_by))]
    MissingLibrary {
        library: String,
        needed_by: Option<String>,
        searched: String,
    },
    #[error(transparent)]
    MissingVersion(Box<MissingVersion>),
}

/// A symbol version a library in the image does not define.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "needs symbol version {version} of {library}{}, which the image's /{path}{} does not define (its newest is {newest})",
    needed_by_suffix(.needed_by),
    package_suffix(.package)
)]
pub struct MissingVersion {
    pub version: String,
    pub library: String,
    pub needed_by: Option<String>,
    /// Where the library is in the image, root-relative.
    pub path: String,
    /// The Debian package that installed it.
    pub package: Option<String>,
    pub newest: String,
}

fn needed_by_suffix(by: &Option<String>) -> String {
    by.as_ref()
        .map(|b| format!(" (needed by {b})"))
        .unwrap_or_default()
}

fn package_suffix(package: &Option<String>) -> String {
    package
        .as_ref()
        .map(|p| format!(" (from {p})"))
        .unwrap_or_default()
}

/// An image's merged file system: every layer's entries, upper ones
/// replacing lower ones, looked up with symlinks followed as `open(2)`
/// follows them.
#[derive(Debug, Default, Clone)]
pub struct ImageTree {
    entries: BTreeMap<String, Entry>,
}

impl ImageTree {
    /// Layers bottom to top, as the manifest lists them.
    pub fn from_layers(layers: impl IntoIterator<Item = Vec<Entry>>) -> Self {
        let mut tree = ImageTree::default();
        for layer in layers {
            tree.extend(layer);
        }
        tree
    }

    /// Every entry by canonical path.
    pub fn view(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    pub fn extend(&mut self, entries: impl IntoIterator<Item = Entry>) {
        self.entries
            .extend(entries.into_iter().map(|e| (e.path.clone(), e)));
    }

    /// The canonical root-relative path `path` leads to, every symlink
    /// on the way followed, if something is there.
    pub fn resolve(&self, path: &str) -> Option<String> {
        resolve(path, |p| self.entries.get(p).map(|e| &e.kind), true).ok()
    }

    /// A regular file's canonical path and contents.
    pub fn open(&self, path: &str) -> Option<(String, &[u8])> {
        let canonical = self.resolve(path)?;
        match &self.entries.get(&canonical)?.kind {
            EntryKind::File(bytes) => Some((canonical, bytes)),
            EntryKind::Hardlink(target) => match &self.entries.get(target)?.kind {
                EntryKind::File(bytes) => Some((canonical, bytes)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The Debian package that installed a file, from the `status.d`
    /// md5sums lists (whose paths predate usr-merge, hence the resolving).
    pub fn package_of(&self, canonical: &str) -> Option<String> {
        let (dir, file) = canonical.rsplit_once('/')?;
        self.entries
            .range("var/lib/dpkg/status.d/".to_owned()..)
            .take_while(|(p, _)| p.starts_with("var/lib/dpkg/status.d/"))
            .find_map(|(p, e)| {
                let package = p
                    .strip_prefix("var/lib/dpkg/status.d/")?
                    .strip_suffix(".md5sums")?;
                let EntryKind::File(bytes) = &e.kind else {
                    return None;
                };
                String::from_utf8_lossy(bytes)
                    .lines()
                    .filter_map(|l| l.split_once("  ").map(|(_, path)| path))
                    .any(|path| {
                        path.rsplit_once('/').is_some_and(|(d, f)| {
                            f == file && self.resolve(d).is_some_and(|d| d == dir)
                        })
                    })
                    .then(|| package.to_owned())
            })
    }
}

/// What one ELF object asks of the loader.
struct Object {
    /// How it is named in messages: the binary's name, or its soname.
    name: String,
    /// Directory it was loaded from, for `$ORIGIN`.
    origin: String,
    interpreter: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
    /// (library, version, weak)
    version_needs: Vec<(String, String, bool)>,
    versions_defined: BTreeSet<String>,
    machine: u16,
    is_64: bool,
}

impl Object {
    fn parse(name: &str, origin: &str, bytes: &[u8]) -> Result<Self, ElfError> {
        let elf = Elf::parse(bytes).map_err(|e| ElfError::NotElf(e.to_string()))?;
        let strings = |offset| elf.dynstrtab.get_at(offset).unwrap_or("").to_owned();
        let mut version_needs = Vec::new();
        if let Some(verneed) = &elf.verneed {
            for need in verneed.iter() {
                let library = strings(need.vn_file);
                for aux in need.iter() {
                    version_needs.push((
                        library.clone(),
                        strings(aux.vna_name),
                        aux.vna_flags & VER_FLG_WEAK != 0,
                    ));
                }
            }
        }
        let mut versions_defined = BTreeSet::new();
        if let Some(verdef) = &elf.verdef {
            for def in verdef.iter() {
                // The first name is the version itself; the rest are parents.
                if let Some(aux) = def.iter().next() {
                    versions_defined.insert(strings(aux.vda_name));
                }
            }
        }
        let split = |paths: &[&str]| -> Vec<String> {
            paths
                .iter()
                .flat_map(|p| p.split(':'))
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Ok(Object {
            name: name.to_owned(),
            origin: origin.to_owned(),
            interpreter: elf.interpreter.map(str::to_owned),
            needed: elf.libraries.iter().map(|s| (*s).to_owned()).collect(),
            rpath: split(&elf.rpaths),
            runpath: split(&elf.runpaths),
            version_needs,
            versions_defined,
            machine: elf.header.e_machine,
            is_64: elf.is_64,
        })
    }

    /// Directories searched for a library this object needs, in the
    /// loader's order: `DT_RPATH` (only without `DT_RUNPATH`),
    /// `DT_RUNPATH`, then the system directories (there is no
    /// `ld.so.cache` in these images).
    fn search_path(&self, system: &[String]) -> Vec<String> {
        let rpath = if self.runpath.is_empty() {
            &self.rpath[..]
        } else {
            &[][..]
        };
        rpath
            .iter()
            .chain(&self.runpath)
            .map(|d| {
                d.replace("${ORIGIN}", &format!("/{}", self.origin))
                    .replace("$ORIGIN", &format!("/{}", self.origin))
            })
            .chain(system.iter().cloned())
            .collect()
    }
}

fn machine_name(machine: u16) -> String {
    match machine {
        EM_X86_64 => "x86-64 (amd64)".into(),
        EM_AARCH64 => "AArch64 (arm64)".into(),
        other => format!("ELF machine {other}"),
    }
}

/// The ELF machine and the multiarch triplet of a Debian architecture.
fn debian_arch(arch: &str) -> Option<(u16, &'static str)> {
    match arch {
        "amd64" => Some((EM_X86_64, "x86_64-linux-gnu")),
        "arm64" => Some((EM_AARCH64, "aarch64-linux-gnu")),
        _ => None,
    }
}

/// Whether the dynamic loader of `tree` would start `binary` (named
/// `name` in messages) on `arch`: its interpreter exists, every library
/// it and its libraries need is found, and every symbol version they
/// need is defined by the library that should define it.
pub fn check(name: &str, binary: &[u8], arch: &str, tree: &ImageTree) -> Result<(), ElfError> {
    let (machine, triplet) = debian_arch(arch)
        .ok_or_else(|| ElfError::NotElf(format!("no ELF machine known for architecture {arch}")))?;
    let main = Object::parse(name, "", binary)?;
    if main.machine != machine {
        return Err(ElfError::WrongMachine {
            found: machine_name(main.machine),
            arch: machine_name(machine),
        });
    }
    let Some(interpreter) = &main.interpreter else {
        // Statically linked: the kernel needs nothing from the image.
        return Ok(());
    };
    let (interp_path, interp_bytes) =
        tree.open(interpreter)
            .ok_or_else(|| ElfError::MissingInterpreter {
                interpreter: interpreter.clone(),
            })?;
    let system: Vec<String> = [
        format!("/lib/{triplet}"),
        format!("/usr/lib/{triplet}"),
        "/lib".into(),
        "/usr/lib".into(),
    ]
    .into();
    // Loaded objects (path, versions they define) by the name they were
    // needed as; the interpreter is loaded first, under its file name.
    let mut loaded: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    let interp = Object::parse(interpreter, parent(&interp_path), interp_bytes)?;
    let interp_name = interpreter.rsplit('/').next().unwrap_or(interpreter);
    loaded.insert(
        interp_name.to_owned(),
        (interp_path.clone(), interp.versions_defined.clone()),
    );
    let mut queue = VecDeque::from([main, interp]);
    let mut objects = Vec::new();
    while let Some(object) = queue.pop_front() {
        for library in &object.needed {
            if loaded.contains_key(library) {
                continue;
            }
            let dirs = object.search_path(&system);
            let candidates: Vec<String> = if library.contains('/') {
                vec![library.clone()]
            } else {
                dirs.iter().map(|d| format!("{d}/{library}")).collect()
            };
            // The loader skips a library of the wrong class or machine.
            let found = candidates.iter().find_map(|c| {
                let (path, bytes) = tree.open(c)?;
                let lib = Object::parse(library, parent(&path), bytes).ok()?;
                (lib.machine == machine && lib.is_64 == object.is_64).then_some((path, lib))
            });
            let Some((path, lib)) = found else {
                return Err(ElfError::MissingLibrary {
                    library: library.clone(),
                    needed_by: (object.name != name).then(|| object.name.clone()),
                    searched: dirs.join(", "),
                });
            };
            loaded.insert(library.clone(), (path, lib.versions_defined.clone()));
            queue.push_back(lib);
        }
        objects.push(object);
    }
    for object in &objects {
        for (library, version, weak) in &object.version_needs {
            let Some((path, defined)) = loaded.get(library) else {
                continue;
            };
            // A library without version definitions satisfies any need
            // (the loader only warns), and weak needs are optional.
            if *weak || defined.is_empty() || defined.contains(version) {
                continue;
            }
            return Err(ElfError::MissingVersion(Box::new(MissingVersion {
                version: version.clone(),
                library: library.clone(),
                needed_by: (object.name != name).then(|| object.name.clone()),
                path: path.clone(),
                package: tree.package_of(path),
                newest: newest_like(defined, version),
            })));
        }
    }
    Ok(())
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// The highest defined version with the same prefix as `wanted`
/// (`GLIBC_2.36` for `GLIBC_2.38`), compared number by number.
fn newest_like(defined: &BTreeSet<String>, wanted: &str) -> String {
    let prefix = wanted.split('_').next().unwrap_or(wanted);
    let key = |v: &str| -> Vec<u64> {
        v.rsplit('_')
            .next()
            .unwrap_or("")
            .split('.')
            .map(|n| n.parse().unwrap_or(0))
            .collect()
    };
    defined
        .iter()
        .filter(|v| v.split('_').next() == Some(prefix) && v.contains('_'))
        .max_by(|a, b| key(a).cmp(&key(b)))
        .cloned()
        .unwrap_or_else(|| "none of that name".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: Vec<Entry>) -> ImageTree {
        ImageTree::from_layers([entries])
    }

    #[test]
    fn paths_resolve_through_symlinks_as_open_does() {
        let t = tree(vec![
            Entry::symlink("lib64", "usr/lib64"),
            Entry::dir("usr", 0o755),
            Entry::dir("usr/lib64", 0o755),
            Entry::symlink("usr/lib64/ld.so", "../lib/real/ld.so"),
            Entry::dir("usr/lib", 0o755),
            Entry::dir("usr/lib/real", 0o755),
            Entry::file("usr/lib/real/ld.so", 0o755, b"ld".to_vec()),
            Entry {
                kind: EntryKind::Hardlink("usr/lib/real/ld.so".into()),
                ..Entry::file("usr/lib/real/ld2.so", 0o755, Vec::new())
            },
            Entry::symlink("loop", "loop"),
            Entry::symlink("abs", "/usr/lib/real"),
        ]);
        assert_eq!(
            t.open("/lib64/ld.so"),
            Some(("usr/lib/real/ld.so".into(), &b"ld"[..]))
        );
        assert_eq!(t.open("/abs/ld2.so").map(|(_, b)| b), Some(&b"ld"[..]));
        assert_eq!(
            t.open("/usr/lib/real/../real/./ld.so").unwrap().0,
            "usr/lib/real/ld.so"
        );
        assert_eq!(t.open("/loop/x"), None);
        assert_eq!(t.open("/usr/lib/real/ld.so/x"), None);
        assert_eq!(t.open("/usr/lib"), None, "a directory is not a file");
        assert_eq!(t.open("/missing"), None);
    }

    #[test]
    fn the_package_of_a_file_comes_from_status_d_through_usr_merge() {
        let t = tree(vec![
            Entry::symlink("lib", "usr/lib"),
            Entry::dir("usr", 0o755),
            Entry::dir("usr/lib", 0o755),
            Entry::file("usr/lib/libc.so.6", 0o644, b"x".to_vec()),
            Entry::file(
                "var/lib/dpkg/status.d/libc6.md5sums",
                0o644,
                b"0123  lib/libc.so.6\n".to_vec(),
            ),
        ]);
        assert_eq!(t.package_of("usr/lib/libc.so.6").as_deref(), Some("libc6"));
        assert_eq!(t.package_of("usr/lib/other.so"), None);
    }

    #[test]
    fn newest_version_is_compared_number_by_number() {
        let defined: BTreeSet<String> = [
            "GLIBC_2.2.5",
            "GLIBC_2.9",
            "GLIBC_2.36",
            "GLIBC_PRIVATE",
            "libc.so.6",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(newest_like(&defined, "GLIBC_2.38"), "GLIBC_2.36");
        assert_eq!(newest_like(&defined, "GCC_3.0"), "none of that name");
    }

    /// The host's own `true` and its loader and C library: a real binary
    /// against a real (tiny) image tree.
    fn host_files() -> Option<(Vec<u8>, Vec<Entry>)> {
        if std::env::consts::ARCH != "x86_64" {
            return None;
        }
        let read = |p: &str| std::fs::read(p).ok();
        let binary = read("/usr/bin/true")?;
        let ld = read("/lib64/ld-linux-x86-64.so.2")?;
        let libc = read("/lib/x86_64-linux-gnu/libc.so.6")?;
        Some((
            binary,
            vec![
                Entry::dir("usr", 0o755),
                Entry::symlink("lib64", "usr/lib64"),
                Entry::symlink("lib", "usr/lib"),
                Entry::dir("usr/lib64", 0o755),
                Entry::file("usr/lib64/ld-linux-x86-64.so.2", 0o755, ld),
                Entry::dir("usr/lib", 0o755),
                Entry::dir("usr/lib/x86_64-linux-gnu", 0o755),
                Entry::file("usr/lib/x86_64-linux-gnu/libc.so.6", 0o644, libc),
            ],
        ))
    }

    #[test]
    fn a_host_binary_starts_with_its_loader_and_libc_and_not_without() {
        let Some((binary, entries)) = host_files() else {
            eprintln!("SKIPPED: needs an x86_64 Debian host");
            return;
        };
        assert_eq!(
            check("true", &binary, "amd64", &tree(entries.clone())),
            Ok(())
        );
        let no_libc: Vec<Entry> = entries
            .iter()
            .filter(|e| !e.path.ends_with("libc.so.6"))
            .cloned()
            .collect();
        assert!(matches!(
            check("true", &binary, "amd64", &tree(no_libc)),
            Err(ElfError::MissingLibrary { library, .. }) if library == "libc.so.6"
        ));
        assert!(matches!(
            check("true", &binary, "amd64", &ImageTree::default()),
            Err(ElfError::MissingInterpreter { .. })
        ));
        assert!(matches!(
            check("true", &binary, "arm64", &tree(entries)),
            Err(ElfError::WrongMachine { .. })
        ));
        assert!(matches!(
            check("x", b"#!/bin/sh\n", "amd64", &ImageTree::default()),
            Err(ElfError::NotElf(_))
        ));
    }
}
