//! Image definitions: the TOML files in `images/`. `plinth.toml` holds the
//! settings shared by every image (distributions, suites, keys,
//! architectures, naming); every other `*.toml` file defines one image
//! family member (`static`, `base`, ...).
//!
//! This module owns parsing and validation, and the four variants every
//! image comes in ([`VARIANTS`]); it never touches the network.

mod name;
mod variant;

pub use name::{InvalidName, Name};
pub use variant::{VARIANTS, Variant};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::support::digest::sha256_hex;
use crate::support::size::ByteSize;
use crate::support::text::one_line;

/// The file in `images/` that holds the shared settings.
pub const SETTINGS_FILE: &str = "plinth.toml";

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Shared settings (`images/plinth.toml`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Debian architecture names the images are built for, unless a
    /// distribution sets its own (see [`Definitions::architectures`]).
    pub architectures: Vec<Name>,
    /// Packages that the `debug` variants add (busybox).
    pub debug_packages: Vec<String>,
    /// Path prefixes (relative to the root) whose files are left out of
    /// every image; `/usr/share/doc/*/copyright` files are always kept.
    #[serde(default)]
    pub drop: Vec<String>,
    pub os_release: OsRelease,
    /// Mirror base URLs per archive name (`debian`, `debian-security`);
    /// empty by default, so the host's apt configuration decides.
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    /// The repository URL, written as `org.opencontainers.image.source`.
    #[serde(default)]
    pub source_url: Option<String>,
    /// Prefix of SPDX document namespaces (a URI the organisation owns);
    /// defaults to `<os-release home-url>/spdx`.
    #[serde(default)]
    pub sbom_namespace: Option<String>,
    /// Ceilings on the work reading packages and indices may do.
    #[serde(default)]
    pub limits: Limits,
    /// CA files plinth trusts for its own HTTPS connections, on top of the
    /// machine's; they never go into an image.
    #[serde(default)]
    pub connections: Connections,
    /// Refuse to build an image holding a setuid or setgid file or a
    /// world-writable directory without the sticky bit (they are listed
    /// either way).
    #[serde(default)]
    pub forbid_special_modes: bool,
    pub distribution: BTreeMap<Name, Distribution>,
}

/// Ceilings on what reading packages and indices may unpack
/// (`[limits]` in `images/plinth.toml`). A package past one is refused
/// before it is unpacked further, so a hostile or broken input costs at
/// most this much memory and time. The defaults fit every package of
/// Debian 13 `main` by a wide margin: the largest (a kernel's debug
/// symbols) unpacks to 6.5 GiB, and the highest ratio of unpacked to
/// compressed size is 570.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Limits {
    /// One file of a package.
    pub entry: ByteSize,
    /// Everything one package's `data.tar` (or `control.tar`) unpacks to.
    pub package: ByteSize,
    /// A package may unpack to at most this many times its compressed
    /// size: what gives a compression bomb away long before the package
    /// ceiling.
    pub ratio: u64,
    /// The files of one layer.
    pub layer: ByteSize,
    /// One uncompressed `Packages` index.
    pub index: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            entry: ByteSize::gib(8),
            package: ByteSize::gib(16),
            ratio: 2000,
            layer: ByteSize::gib(32),
            index: ByteSize::gib(1),
        }
    }
}

impl Limits {
    /// What one member of `compressed` bytes may unpack to: the package
    /// ceiling, or less by the ratio.
    pub fn member_ceiling(&self, compressed: u64) -> u64 {
        self.package
            .0
            .min(compressed.max(1).saturating_mul(self.ratio))
    }
}

/// `[connections]`: the CAs plinth itself trusts when it connects to
/// mirrors, registries and token realms (an internal PKI, a
/// TLS-inspecting proxy), besides the machine's store. Not the CAs an
/// image carries. Paths are relative to the repository.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Connections {
    /// Trusted for every connection.
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    /// Trusted for one registry, by `HOST[:PORT]` as `--registry` names it.
    #[serde(default)]
    pub registry: BTreeMap<String, CaFiles>,
    /// Trusted for the mirror of one archive (`debian`, `debian-security`).
    #[serde(default)]
    pub mirror: BTreeMap<String, CaFiles>,
}

/// The CA files of one registry or mirror.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CaFiles {
    pub ca_files: Vec<PathBuf>,
}

impl Connections {
    /// Every list names files, every registry is a `HOST[:PORT]`, every
    /// mirror an archive some suite lives in.
    fn check(&self, archives: &BTreeSet<&str>) -> Result<(), String> {
        let lists = std::iter::once(("[connections]".to_owned(), &self.ca_files))
            .chain(
                self.registry
                    .iter()
                    .map(|(h, f)| (format!("[connections.registry.{h:?}]"), &f.ca_files)),
            )
            .chain(
                self.mirror
                    .iter()
                    .map(|(a, f)| (format!("[connections.mirror.{a:?}]"), &f.ca_files)),
            );
        for (table, files) in lists {
            if files.iter().any(|f| f.as_os_str().is_empty()) {
                return Err(format!("{table} ca-files names an empty path"));
            }
        }
        for host in self.registry.keys() {
            let (name, port) = host
                .rsplit_once(':')
                .map_or((host.as_str(), None), |(h, p)| (h, Some(p)));
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0));
            if !name_ok || !port_ok {
                return Err(format!(
                    "[connections.registry.{host:?}]: not a registry HOST[:PORT] (no scheme, no path)"
                ));
            }
        }
        if let Some(archive) = self.mirror.keys().find(|a| !archives.contains(a.as_str())) {
            return Err(format!(
                "[connections.mirror.{archive:?}]: no suite lives in archive {archive:?} (known: {})",
                archives.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }
}

impl Settings {
    pub fn sbom_namespace(&self) -> String {
        self.sbom_namespace
            .clone()
            .unwrap_or_else(|| format!("{}/spdx", self.os_release.home_url.trim_end_matches('/')))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OsRelease {
    pub pretty_name: String,
    pub home_url: String,
    pub support_url: String,
    pub bug_report_url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Distribution {
    /// `trixie`, `bookworm`.
    pub codename: Name,
    /// The architectures of this distribution's images, in place of the
    /// shared list: riscv64 exists in Debian 13, not in Debian 12.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<Name>>,
    /// `13`, `12`.
    pub version: String,
    /// Files in `keys/` whose public keys are trusted to sign the suites.
    pub keys: Vec<String>,
    pub components: Vec<Name>,
    pub suites: Vec<Suite>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Suite {
    pub name: Name,
    /// The archive the suite lives in (`debian`, `debian-security`); it
    /// selects the mirror.
    pub archive: Name,
}

/// One image file (`images/<name>.toml`), as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ImageFile {
    name: Name,
    description: String,
    #[serde(default)]
    base: Option<Name>,
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    exclude: Vec<Exclusion>,
    #[serde(default)]
    ca_bundle: Option<String>,
    #[serde(default)]
    path_owner: Vec<PathOwner>,
    #[serde(default)]
    distribution: BTreeMap<Name, DistributionPart>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DistributionPart {
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    exclude: Vec<Exclusion>,
}

/// A dependency the image deliberately leaves out.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Exclusion {
    /// A package or virtual package name; a dependency group that names it
    /// in any alternative is left unsatisfied on purpose.
    pub package: String,
    pub reason: String,
}

/// Settles a path that two packages of an image ship with different
/// contents.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PathOwner {
    pub path: String,
    pub package: String,
    pub reason: String,
}

/// An image as it applies to one distribution.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub name: Name,
    pub description: String,
    pub base: Option<Name>,
    /// Packages the image adds on top of its base.
    pub packages: Vec<String>,
    /// Its own exclusions and those of every image below it.
    pub exclude: Vec<Exclusion>,
    /// Package whose certificates become `/etc/ssl/certs/ca-certificates.crt`.
    pub ca_bundle: Option<String>,
    pub path_owner: Vec<PathOwner>,
}

/// Everything in `images/`, validated.
#[derive(Debug, Clone)]
pub struct Definitions {
    pub dir: PathBuf,
    pub settings: Settings,
    images: BTreeMap<String, ImageFile>,
}

impl Definitions {
    pub fn load(dir: &Path) -> Result<Self, DefinitionError> {
        let settings_path = dir.join(SETTINGS_FILE);
        let settings: Settings = parse_toml(&settings_path)?;
        let invalid = |path: &Path, message: String| DefinitionError::Invalid {
            path: path.to_owned(),
            message,
        };
        check_architectures(&settings.architectures)
            .map_err(|m| invalid(&settings_path, format!("`architectures` {m}")))?;
        let archives: BTreeSet<&str> = settings
            .distribution
            .values()
            .flat_map(|d| d.suites.iter().map(|s| s.archive.as_str()))
            .collect();
        settings
            .connections
            .check(&archives)
            .map_err(|m| invalid(&settings_path, m))?;
        for (name, dist) in &settings.distribution {
            if let Some(archs) = &dist.architectures {
                check_architectures(archs).map_err(|m| {
                    invalid(
                        &settings_path,
                        format!("distribution {name}: `architectures` {m}"),
                    )
                })?;
            }
            // Key files are read from `keys/`; a name with a slash could
            // make plinth trust a file from anywhere.
            if let Some(key) = dist.keys.iter().find(|k| !is_plain_file_name(k)) {
                return Err(invalid(
                    &settings_path,
                    format!(
                        "distribution {name}: key {:?} is not a file name in keys/",
                        crate::support::text::shown(key)
                    ),
                ));
            }
            if dist.suites.is_empty() || dist.keys.is_empty() || dist.components.is_empty() {
                return Err(invalid(
                    &settings_path,
                    format!(
                        "distribution {name}: `suites`, `keys` and `components` must not be empty"
                    ),
                ));
            }
        }

        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| DefinitionError::Read {
                path: dir.to_owned(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .filter(|p| p.file_name().is_some_and(|n| n != SETTINGS_FILE))
            .collect();
        files.sort();

        let mut images = BTreeMap::new();
        let mut origin = BTreeMap::new();
        for path in &files {
            let image: ImageFile = parse_toml(path)?;
            for d in image.distribution.keys() {
                if !settings.distribution.contains_key(d) {
                    return Err(invalid(path, format!("unknown distribution {d:?}")));
                }
            }
            if image.packages.is_empty()
                && image.distribution.values().all(|d| d.packages.is_empty())
                && image.base.is_none()
            {
                return Err(invalid(
                    path,
                    format!("image {:?} has no packages and no base", image.name),
                ));
            }
            if let Some(prev) = origin.insert(image.name.to_string(), path.clone()) {
                return Err(invalid(
                    path,
                    format!(
                        "image {:?} is also defined in {}",
                        image.name,
                        prev.display()
                    ),
                ));
            }
            images.insert(image.name.to_string(), image);
        }
        if images.is_empty() {
            return Err(invalid(dir, "no image definitions (*.toml) found".into()));
        }
        for (name, image) in &images {
            check_base_chain(name, &images).map_err(|m| invalid(&origin[name], m))?;
            let _ = image;
        }
        Ok(Definitions {
            dir: dir.to_owned(),
            settings,
            images,
        })
    }

    pub fn distributions(&self) -> impl Iterator<Item = (&str, &Distribution)> {
        self.settings
            .distribution
            .iter()
            .map(|(k, v)| (k.as_str(), v))
    }

    pub fn distribution(&self, name: &str) -> Option<&Distribution> {
        self.settings.distribution.get(name)
    }

    /// The architectures `dist`'s images are built for: its own list, or
    /// the shared one.
    pub fn architectures(&self, dist: &str) -> &[Name] {
        self.distribution(dist)
            .and_then(|d| d.architectures.as_deref())
            .unwrap_or(&self.settings.architectures)
    }

    /// Image names, bases before the images standing on them, then by name.
    pub fn image_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut names: Vec<&String> = self.images.keys().collect();
        names.sort_by_key(|n| (self.depth(n), n.to_string()));
        out.extend(names.into_iter().cloned());
        out
    }

    fn depth(&self, name: &str) -> usize {
        let mut depth = 0;
        let mut cur = self.images.get(name).and_then(|i| i.base.as_deref());
        while let Some(b) = cur {
            depth += 1;
            cur = self.images.get(b).and_then(|i| i.base.as_deref());
        }
        depth
    }

    /// The image `name` as it applies to distribution `dist`.
    pub fn image(&self, name: &str, dist: &str) -> Option<Image> {
        let file = self.images.get(name)?;
        let part = file.distribution.get(dist).cloned().unwrap_or_default();
        let mut packages = file.packages.clone();
        packages.extend(part.packages);
        let mut exclude: BTreeSet<Exclusion> = file.exclude.iter().cloned().collect();
        exclude.extend(part.exclude);
        if let Some(base) = &file.base {
            exclude.extend(self.image(base, dist)?.exclude);
        }
        Some(Image {
            name: file.name.clone(),
            description: file.description.clone(),
            base: file.base.clone(),
            packages,
            exclude: exclude.into_iter().collect(),
            ca_bundle: file.ca_bundle.clone(),
            path_owner: file.path_owner.clone(),
        })
    }

    /// The chain of images from the bottom one up to `name`.
    pub fn stack(&self, name: &str) -> Vec<String> {
        let mut chain = vec![name.to_owned()];
        let mut cur = self.images.get(name).and_then(|i| i.base.as_ref());
        while let Some(b) = cur {
            cur = self.images.get(b.as_str()).and_then(|i| i.base.as_ref());
            chain.push(b.to_string());
        }
        chain.reverse();
        chain
    }

    /// A checksum of everything that decides a distribution's lock: the
    /// architectures, suites, keys and each image's packages, exclusions
    /// and base. Comments, descriptions and formatting do not count, so
    /// `lock --check` fails only when re-resolving could give another lock.
    pub fn lock_inputs_sha256(&self, dist: &str) -> String {
        #[derive(Serialize)]
        struct Inputs<'a> {
            architectures: &'a [Name],
            debug_packages: &'a [String],
            distribution: Option<&'a Distribution>,
            images: Vec<Image>,
        }
        let images = self
            .image_names()
            .iter()
            .filter_map(|n| self.image(n, dist))
            // Descriptions do not count (blanked); reasons do, since the
            // lockfile records them beside what they cut.
            .map(|i| Image {
                description: String::new(),
                ..i
            })
            .collect();
        let inputs = Inputs {
            architectures: self.architectures(dist),
            debug_packages: &self.settings.debug_packages,
            distribution: self.distribution(dist),
            images,
        };
        let bytes = serde_json::to_vec(&inputs).unwrap_or_default();
        sha256_hex(&bytes)
    }
}

/// One path component that names a file: not empty, not `.` or `..`, no
/// slash or NUL.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// An architecture list is not empty and names each architecture once.
fn check_architectures(archs: &[Name]) -> Result<(), String> {
    if archs.is_empty() {
        return Err("is empty".into());
    }
    let mut seen = BTreeSet::new();
    match archs.iter().find(|a| !seen.insert(a.as_str())) {
        Some(a) => Err(format!("names {a:?} twice")),
        None => Ok(()),
    }
}

fn check_base_chain(name: &str, images: &BTreeMap<String, ImageFile>) -> Result<(), String> {
    let mut seen = vec![name.to_owned()];
    let mut cur = images[name].base.clone();
    while let Some(b) = cur {
        let Some(img) = images.get(b.as_str()) else {
            return Err(format!(
                "image {:?} stands on {:?}, which is not defined",
                seen.last().map(String::as_str).unwrap_or(name),
                b
            ));
        };
        if seen.iter().any(|s| *s == b) {
            seen.push(b.to_string());
            return Err(format!(
                "images stand on each other in a cycle: {}",
                seen.join(" → ")
            ));
        }
        seen.push(b.to_string());
        cur = img.base.clone();
    }
    Ok(())
}

fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DefinitionError> {
    let text = std::fs::read_to_string(path).map_err(|source| DefinitionError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| DefinitionError::Syntax {
        path: path.to_owned(),
        message: one_line(&e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections(text: &str) -> Connections {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn connections_name_files_registries_and_known_archives() {
        let archives = BTreeSet::from(["debian", "debian-security"]);
        let ok = connections(
            "ca-files = [\"corp.pem\"]\n\
             [registry.\"harbor.corp.example:8443\"]\nca-files = [\"h.pem\"]\n\
             [mirror.debian-security]\nca-files = [\"m.pem\"]\n",
        );
        assert_eq!(ok.check(&archives), Ok(()));
        for (text, why) in [
            (
                "ca-files = [\"\"]",
                "[connections] ca-files names an empty path",
            ),
            (
                "[registry.\"https://harbor.corp.example\"]\nca-files = []",
                "not a registry HOST[:PORT]",
            ),
            (
                "[registry.\"r.example:0\"]\nca-files = []",
                "not a registry HOST[:PORT]",
            ),
            (
                "[registry.\"r.example/x\"]\nca-files = []",
                "not a registry HOST[:PORT]",
            ),
            (
                "[mirror.ubuntu]\nca-files = []",
                "no suite lives in archive \"ubuntu\" (known: debian, debian-security)",
            ),
        ] {
            let err = connections(text).check(&archives).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        // A misspelt key is refused by the parser, not ignored.
        assert!(toml::from_str::<Connections>("ca-file = [\"x.pem\"]").is_err());
    }
}
