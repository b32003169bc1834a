//! Software bills of materials for plinth's images: SPDX 2.3 JSON and
//! CycloneDX 1.6 JSON for every per-architecture image, and for every
//! multi-arch tag an index document that refers to the per-arch ones.
//!
//! A document lists the image (purl `pkg:oci/<name>@sha256:<digest>`), its
//! layers bottom to top, the operating system from os-release, the base
//! image it stands on, every Debian package with its licence (see
//! [`crate::debian::copyright`]), the files plinth generates (passwd, group,
//! os-release, the CA bundle, dpkg status records, ...), and any extra
//! components such as the Cargo crates linked into an application binary.
//! Relationships say which layer holds what.
//!
//! The documents are as reproducible as the images: the only time in them is
//! the distribution's epoch, the SPDX `documentNamespace` and the CycloneDX
//! `serialNumber` are derived from a hash of the rest of the document, every
//! map is a struct or a `BTreeMap`, and every list whose order carries no
//! meaning is sorted. The same input gives the same bytes.
//!
//! Shapes chosen, and why:
//! - SPDX forbids a package whose files were not analysed from containing
//!   files, and a layer's files mostly come from packages that are listed,
//!   not analysed. So each layer's generated files form a package of their
//!   own ("generated files"), with `filesAnalyzed: true` and a verification
//!   code, which the layer contains. SPDX requires a SHA-1 for every file,
//!   hence [`GeneratedFile::sha1`].
//! - In CycloneDX, containment is nesting (an "assembly"): the layers are
//!   top-level components and each holds its packages and files. The
//!   `dependencies` graph records that the image is built on its base image
//!   and, as Trivy does, that the operating system comprises the Debian
//!   packages.
//! - CycloneDX 1.6 cannot attach text to a licence expression. A licence
//!   that is plain SPDX is written as an expression; one with `LicenseRef-`
//!   parts is written as its list of licences (the refs by name, with text)
//!   and the exact expression goes into the property
//!   `plinth:license:expression`.

mod cyclonedx;
mod ids;
mod model;
mod spdx;

pub use cyclonedx::{cyclonedx, cyclonedx_index};
pub use spdx::{spdx, spdx_index};

use crate::debian::copyright::License;
use crate::support::digest::{sha1_hex, sha256_digest, sha256_hex};
use crate::support::time::EpochOutOfRange;

/// Where SPDX document namespaces live unless configured otherwise. The URI
/// only has to be unique; it is not fetched.
pub const DEFAULT_NAMESPACE: &str = "https://example.org/spdxdocs/plinth";

/// Everything the SBOM of one per-architecture image says.
#[derive(Debug, Clone)]
pub struct ImageSbomInput<'a> {
    /// Image name without registry or tag: `cc-debian13`.
    pub name: &'a str,
    /// `nonroot`, `latest`, ...
    pub tag: &'a str,
    /// OCI platform: `linux/amd64`, `linux/arm64/v8`.
    pub platform: &'a str,
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: &'a str,
    /// Seconds since 1970 (the lock's epoch, or `SOURCE_DATE_EPOCH`).
    pub epoch: u64,
    pub os: OsInfo,
    /// The purl `distro` qualifier: `debian-13`.
    pub distro: &'a str,
    /// Registry repository the image is pushed to, without the name
    /// (`registry.example.org/example`): the purl's `repository_url`. `None` when not
    /// configured.
    pub repository: Option<&'a str>,
    /// The image this one is built on, if any.
    pub base: Option<BaseRef>,
    /// Bottom to top, as in the manifest.
    pub layers: Vec<LayerSbom>,
    pub tool: Tool<'a>,
    /// Prefix of the SPDX document namespace; [`DEFAULT_NAMESPACE`] unless
    /// the organisation has its own.
    pub namespace: &'a str,
}

/// The generator, for SPDX `creators` and CycloneDX `metadata.tools`.
#[derive(Debug, Clone, Copy)]
pub struct Tool<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

/// Fields of the image's os-release.
#[derive(Debug, Clone, Default)]
pub struct OsInfo {
    /// `ID`: `debian`.
    pub id: String,
    /// `VERSION_ID`: `13`.
    pub version_id: String,
    /// `VERSION_CODENAME`: `trixie`.
    pub version_codename: String,
    /// `PRETTY_NAME`: `Distroless` by default.
    pub pretty_name: String,
    /// `NAME`: `Debian GNU/Linux`.
    pub name: String,
}

/// The image an image is built on.
#[derive(Debug, Clone)]
pub struct BaseRef {
    /// `base-debian13`.
    pub name: String,
    pub tag: String,
    /// `sha256:<hex>` of the base's per-arch manifest.
    pub manifest_digest: String,
    /// How many of the bottom layers are the base's.
    pub layers: usize,
}

/// One layer and what it brings.
#[derive(Debug, Clone, Default)]
pub struct LayerSbom {
    /// `sha256:<hex>` of the compressed blob (the manifest's digest).
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
    pub packages: Vec<PackageSbom>,
    pub files: Vec<GeneratedFile>,
    /// Components that are not Debian packages (Cargo crates, ...).
    pub components: Vec<Component>,
}

/// One installed Debian package.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PackageSbom {
    pub name: String,
    pub version: String,
    /// `amd64`, `all`, ...
    pub arch: String,
    /// Source package name (the binary's own name when `Source:` is absent).
    pub source: String,
    /// Source version (the binary's version when `Source:` has none).
    pub source_version: String,
    /// The `Maintainer` field: `Name <email>`.
    pub maintainer: String,
    /// sha256 of the `.deb`, hex.
    pub deb_sha256: String,
    /// Text of `/usr/share/doc/<name>/copyright`, if the package ships one.
    pub copyright: Option<String>,
}

impl PackageSbom {
    /// The source package, defaulting to the binary's name.
    pub fn source_name(&self) -> &str {
        if self.source.is_empty() {
            &self.name
        } else {
            &self.source
        }
    }

    /// The source version, defaulting to the binary's version.
    pub fn source_version(&self) -> &str {
        if self.source_version.is_empty() {
            &self.version
        } else {
            &self.source_version
        }
    }
}

/// A file no package owns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GeneratedFile {
    /// Absolute path in the image: `/etc/passwd`.
    pub path: String,
    pub sha256: String,
    /// SPDX 2.3 requires SHA-1 for files.
    pub sha1: String,
    /// The package the content was made from (the CA bundle from
    /// `ca-certificates`, `status.d/<pkg>` from `<pkg>`), if any. It must
    /// be one of the image's packages.
    pub generated_from: Option<String>,
}

impl GeneratedFile {
    /// Hashes `content`.
    pub fn new(path: &str, content: &[u8], generated_from: Option<&str>) -> Self {
        Self {
            path: path.to_owned(),
            sha256: sha256_hex(content),
            sha1: sha1_hex(content),
            generated_from: generated_from.map(str::to_owned),
        }
    }
}

/// A component that is not a Debian package.
#[derive(Debug, Clone)]
pub struct Component {
    pub kind: ComponentKind,
    pub name: String,
    pub version: String,
    /// `pkg:cargo/serde@1.0.219`.
    pub purl: String,
    /// From the component's own declaration, e.g. [`License::from_declared`].
    pub license: License,
    /// sha256 of the artefact (a crate's `.crate`), hex.
    pub sha256: Option<String>,
    /// Who supplies it (the registry a crate came from), free text.
    pub supplier: Option<String>,
}

/// CycloneDX component type / SPDX primary purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    Library,
    Application,
}

/// The per-arch documents a multi-arch tag refers to.
#[derive(Debug, Clone)]
pub struct IndexSbomInput<'a> {
    pub name: &'a str,
    pub tag: &'a str,
    /// `sha256:<hex>` of the image index.
    pub index_digest: &'a str,
    pub epoch: u64,
    pub repository: Option<&'a str>,
    pub tool: Tool<'a>,
    pub namespace: &'a str,
    pub images: Vec<IndexEntry<'a>>,
}

/// One platform of a multi-arch tag.
#[derive(Debug, Clone)]
pub struct IndexEntry<'a> {
    /// `linux/arm64/v8`.
    pub platform: &'a str,
    /// `sha256:<hex>` of that platform's manifest.
    pub manifest_digest: &'a str,
    /// That image's documents; the index of each format refers to the
    /// document of its own format.
    pub documents: &'a SbomPair,
}

/// A finished document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomDocument {
    pub kind: SbomKind,
    /// SPDX `documentNamespace` or CycloneDX `serialNumber` (`urn:uuid:...`).
    pub id: String,
    /// The exact bytes to store and hash.
    pub json: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbomKind {
    Spdx,
    CycloneDx,
}

impl SbomKind {
    /// Media type for an OCI artifact or referrer.
    pub fn media_type(self) -> &'static str {
        match self {
            SbomKind::Spdx => "application/spdx+json",
            SbomKind::CycloneDx => "application/vnd.cyclonedx+json",
        }
    }
}

impl SbomKind {
    /// The file-name extension of a document of this kind.
    pub fn extension(self) -> &'static str {
        match self {
            SbomKind::Spdx => "spdx.json",
            SbomKind::CycloneDx => "cdx.json",
        }
    }
}

impl SbomDocument {
    /// `sha256:<hex>` of the bytes.
    pub fn digest(&self) -> String {
        sha256_digest(&self.json)
    }
}

/// The same image or tag described in both formats plinth writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomPair {
    pub spdx: SbomDocument,
    pub cyclonedx: SbomDocument,
}

impl SbomPair {
    /// Both documents of one per-architecture image.
    pub fn image(input: &ImageSbomInput<'_>) -> Result<Self, SbomError> {
        Ok(SbomPair {
            spdx: spdx(input)?,
            cyclonedx: cyclonedx(input)?,
        })
    }

    /// Both index documents of one multi-arch tag.
    pub fn index(input: &IndexSbomInput<'_>) -> Result<Self, SbomError> {
        Ok(SbomPair {
            spdx: spdx_index(input)?,
            cyclonedx: cyclonedx_index(input)?,
        })
    }

    /// The document of `kind`.
    pub fn get(&self, kind: SbomKind) -> &SbomDocument {
        match kind {
            SbomKind::Spdx => &self.spdx,
            SbomKind::CycloneDx => &self.cyclonedx,
        }
    }

    /// SPDX, then CycloneDX.
    pub fn iter(&self) -> impl Iterator<Item = &SbomDocument> {
        [&self.spdx, &self.cyclonedx].into_iter()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SbomError {
    #[error("{what}: {value:?} is not a {algorithm} digest")]
    BadDigest {
        what: String,
        value: String,
        algorithm: &'static str,
    },
    #[error("package {0} appears more than once in the image")]
    DuplicatePackage(String),
    #[error("file {0} appears twice in one layer with different contents")]
    DuplicateFile(String),
    #[error("component {0} appears more than once in the image")]
    DuplicateComponent(String),
    #[error("file {path} says it was generated from {package}, which is not in the image")]
    UnknownSourcePackage { path: String, package: String },
    #[error(transparent)]
    Epoch(#[from] EpochOutOfRange),
    #[error("platform {0:?} is not os/arch[/variant]")]
    BadPlatform(String),
    #[error("serialising JSON: {0}")]
    Json(String),
}

#[cfg(test)]
mod tests;
