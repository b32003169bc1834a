//! Software bills of materials for plinth's images: SPDX 2.3 JSON and
//! CycloneDX 1.6 JSON for every per-architecture image, and for every
//! multi-arch tag an index document that refers to the per-arch ones.
//!
//! A document lists the image (purl `pkg:oci/<name>@sha256:<digest>`), its
//! layers bottom to top, the operating system from os-release, the base
//! image it stands on, every Debian package with its licence (see
//! [`crate::copyright`]), the files plinth generates (passwd, group,
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

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::copyright::{self, ExtractedLicense, License};

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
            sha256: hex(&Sha256::digest(content)),
            sha1: hex(&sha1(content)),
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
    /// That image's document, of the kind the index is.
    pub document: &'a SbomDocument,
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

impl SbomDocument {
    /// `sha256:<hex>` of the bytes.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex(&Sha256::digest(&self.json)))
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
    #[error("index entry {platform}: expected a {expected:?} document")]
    WrongDocumentKind {
        platform: String,
        expected: SbomKind,
    },
    #[error("platform {0:?} is not os/arch[/variant]")]
    BadPlatform(String),
    #[error("serialising JSON: {0}")]
    Json(String),
}

// ---------------------------------------------------------------------------
// The model both formats are written from.

/// The input checked and put in canonical order, with licences resolved to
/// document-unique `LicenseRef-` ids.
struct Model<'a> {
    input: &'a ImageSbomInput<'a>,
    image_purl: String,
    base_purl: Option<String>,
    layers: Vec<ModelLayer<'a>>,
    extracted: Vec<ExtractedLicense>,
}

struct ModelLayer<'a> {
    index: usize,
    layer: &'a LayerSbom,
    /// Sorted by (name, arch).
    packages: Vec<ModelPackage<'a>>,
    /// Sorted by path.
    files: Vec<&'a GeneratedFile>,
    /// Sorted by purl.
    components: Vec<ModelComponent<'a>>,
}

struct ModelPackage<'a> {
    pkg: &'a PackageSbom,
    purl: String,
    spdx_id: String,
    /// Index into the licences handed to [`resolve_license_refs`].
    license_index: usize,
    license: License,
}

struct ModelComponent<'a> {
    comp: &'a Component,
    spdx_id: String,
    license_index: usize,
    license: License,
}

impl<'a> Model<'a> {
    fn new(input: &'a ImageSbomInput<'a>) -> Result<Self, SbomError> {
        check_digest("manifest digest", input.manifest_digest)?;
        let oci_arch = platform_arch(input.platform)?;
        let image_purl = oci_purl(
            input.name,
            input.manifest_digest,
            Some(&oci_arch),
            input.repository,
            input.tag,
        );
        let base_purl = match &input.base {
            Some(b) => {
                check_digest("base manifest digest", &b.manifest_digest)?;
                Some(oci_purl(
                    &b.name,
                    &b.manifest_digest,
                    Some(&oci_arch),
                    input.repository,
                    &b.tag,
                ))
            }
            None => None,
        };

        let mut seen_pkgs = BTreeSet::new();
        let mut seen_comps = BTreeSet::new();
        let mut licenses: Vec<License> = Vec::new();
        let mut layers = Vec::new();
        for (index, layer) in input.layers.iter().enumerate() {
            check_digest(&format!("layer {index} digest"), &layer.digest)?;
            check_digest(&format!("layer {index} diff_id"), &layer.diff_id)?;
            let mut packages = Vec::new();
            for pkg in &layer.packages {
                check_hex(&format!("package {} sha256", pkg.name), &pkg.deb_sha256, 64)?;
                if !seen_pkgs.insert((pkg.name.clone(), pkg.arch.clone())) {
                    return Err(SbomError::DuplicatePackage(format!(
                        "{}:{}",
                        pkg.name, pkg.arch
                    )));
                }
                // Binaries of one source ship one copyright file: naming a
                // free-form file's LicenseRef after the source lets them
                // share one entry instead of repeating a 60 KB text.
                licenses.push(copyright::license_from_copyright(
                    pkg.source_name(),
                    pkg.copyright.as_deref(),
                ));
                packages.push(ModelPackage {
                    pkg,
                    purl: deb_purl(pkg, input.distro),
                    spdx_id: format!(
                        "SPDXRef-Package-deb-{}-{}",
                        copyright::sanitise(&pkg.name),
                        copyright::sanitise(&pkg.arch)
                    ),
                    license_index: licenses.len() - 1,
                    license: License::no_assertion(),
                });
            }
            packages.sort_by(|a, b| (&a.pkg.name, &a.pkg.arch).cmp(&(&b.pkg.name, &b.pkg.arch)));

            let mut files: Vec<&GeneratedFile> = layer.files.iter().collect();
            for f in &files {
                check_hex(&format!("{} sha256", f.path), &f.sha256, 64)?;
                check_hex(&format!("{} sha1", f.path), &f.sha1, 40)?;
            }
            files.sort_by(|a, b| (&a.path, &a.sha256).cmp(&(&b.path, &b.sha256)));
            // The same entry twice is harmless; one path with two contents
            // in one layer is a bug upstream of here.
            files.dedup_by(|a, b| a == b);
            if let Some(w) = files.windows(2).find(|w| w[0].path == w[1].path) {
                return Err(SbomError::DuplicateFile(w[0].path.clone()));
            }

            let mut components = Vec::new();
            for comp in &layer.components {
                if let Some(h) = &comp.sha256 {
                    check_hex(&format!("{} sha256", comp.purl), h, 64)?;
                }
                if !seen_comps.insert(comp.purl.clone()) {
                    return Err(SbomError::DuplicateComponent(comp.purl.clone()));
                }
                licenses.push(comp.license.clone());
                components.push(ModelComponent {
                    comp,
                    spdx_id: format!(
                        "SPDXRef-Package-{}",
                        copyright::sanitise(comp.purl.trim_start_matches("pkg:"))
                    ),
                    license_index: licenses.len() - 1,
                    license: License::no_assertion(),
                });
            }
            components.sort_by(|a, b| a.comp.purl.cmp(&b.comp.purl));
            layers.push(ModelLayer {
                index,
                layer,
                packages,
                files,
                components,
            });
        }

        // A file generated from a package must name one that is listed.
        for l in &layers {
            for f in &l.files {
                if let Some(from) = &f.generated_from
                    && !seen_pkgs.iter().any(|(n, _)| n == from)
                {
                    return Err(SbomError::UnknownSourcePackage {
                        path: f.path.clone(),
                        package: from.clone(),
                    });
                }
            }
        }

        let (resolved, extracted) = resolve_license_refs(licenses);
        for l in &mut layers {
            for p in &mut l.packages {
                p.license = resolved[p.license_index].clone();
            }
            for c in &mut l.components {
                c.license = resolved[c.license_index].clone();
            }
        }

        let mut model = Model {
            input,
            image_purl,
            base_purl,
            layers,
            extracted,
        };
        model.make_spdx_ids_unique();
        Ok(model)
    }

    /// Sanitising can map two names to one id (`a+b` and `aplusb`); every
    /// member of such a group gets a suffix from its purl, so the result
    /// does not depend on order.
    fn make_spdx_ids_unique(&mut self) {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for l in &self.layers {
            for p in &l.packages {
                *count.entry(p.spdx_id.clone()).or_default() += 1;
            }
            for c in &l.components {
                *count.entry(c.spdx_id.clone()).or_default() += 1;
            }
        }
        for l in &mut self.layers {
            for p in &mut l.packages {
                if count[&p.spdx_id] > 1 {
                    p.spdx_id = format!("{}-{}", p.spdx_id, &hex_sha256(p.purl.as_bytes())[..8]);
                }
            }
            for c in &mut l.components {
                if count[&c.spdx_id] > 1 {
                    c.spdx_id =
                        format!("{}-{}", c.spdx_id, &hex_sha256(c.comp.purl.as_bytes())[..8]);
                }
            }
        }
    }

    fn created(&self) -> String {
        rfc3339(self.input.epoch)
    }
}

/// Two packages may both use `LicenseRef-public-domain` with different
/// texts; a document may define each id once. Ids whose texts differ get a
/// suffix from their text (every variant, so no package is privileged), and
/// the expressions are rewritten to match. Same id with the same text is
/// shared.
fn resolve_license_refs(licenses: Vec<License>) -> (Vec<License>, Vec<ExtractedLicense>) {
    let mut texts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in &licenses {
        for r in &l.refs {
            texts
                .entry(r.id.clone())
                .or_default()
                .insert(r.text.clone());
        }
    }
    let mut all: BTreeMap<String, ExtractedLicense> = BTreeMap::new();
    let resolved = licenses
        .into_iter()
        .map(|mut l| {
            let mut renames: BTreeMap<String, String> = BTreeMap::new();
            for r in &mut l.refs {
                if texts.get(&r.id).is_some_and(|t| t.len() > 1) {
                    let new_id = format!("{}-{}", r.id, &hex_sha256(r.text.as_bytes())[..8]);
                    renames.insert(r.id.clone(), new_id.clone());
                    r.id = new_id;
                }
                all.entry(r.id.clone()).or_insert_with(|| r.clone());
            }
            if let Some(e) = &l.expression
                && !renames.is_empty()
            {
                l.expression = Some(rename_tokens(e, &renames));
            }
            l.refs.sort();
            l
        })
        .collect();
    (resolved, all.into_values().collect())
}

/// Replaces whole identifiers in an SPDX expression.
fn rename_tokens(expr: &str, renames: &BTreeMap<String, String>) -> String {
    let is_id = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | ':');
    let mut out = String::with_capacity(expr.len());
    let mut token = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if is_id(c) {
            token.push(c);
            continue;
        }
        if !token.is_empty() {
            out.push_str(renames.get(&token).unwrap_or(&token));
            token.clear();
        }
        out.push(c);
    }
    out.pop();
    out
}

// ---------------------------------------------------------------------------
// SPDX 2.3.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxDocumentJson {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: SpdxCreationInfo,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_document_refs: Vec<SpdxExternalDocumentRef>,
    packages: Vec<SpdxPackage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<SpdxFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    has_extracted_licensing_infos: Vec<SpdxExtractedLicensingInfo>,
    relationships: Vec<SpdxRelationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxCreationInfo {
    created: String,
    creators: Vec<String>,
    license_list_version: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxExternalDocumentRef {
    external_document_id: String,
    spdx_document: String,
    checksum: SpdxChecksum,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supplier: Option<String>,
    download_location: &'static str,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_verification_code: Option<SpdxVerificationCode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<SpdxChecksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    license_concluded: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    license_declared: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copyright_text: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<SpdxExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_package_purpose: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    built_date: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxVerificationCode {
    package_verification_code_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxChecksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxFile {
    file_name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    checksums: Vec<SpdxChecksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxExtractedLicensingInfo {
    license_id: String,
    extracted_text: String,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxRelationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

fn rel(a: &str, ty: &'static str, b: &str) -> SpdxRelationship {
    SpdxRelationship {
        spdx_element_id: a.to_owned(),
        relationship_type: ty,
        related_spdx_element: b.to_owned(),
    }
}

fn purl_ref(purl: &str) -> Vec<SpdxExternalRef> {
    vec![SpdxExternalRef {
        reference_category: "PACKAGE-MANAGER",
        reference_type: "purl",
        reference_locator: purl.to_owned(),
    }]
}

fn sha256_checksum(hex: &str) -> SpdxChecksum {
    SpdxChecksum {
        algorithm: "SHA256",
        checksum_value: hex.to_ascii_lowercase(),
    }
}

const SPDX_IMAGE: &str = "SPDXRef-Image";
const SPDX_OS: &str = "SPDXRef-OperatingSystem";
const SPDX_BASE: &str = "SPDXRef-BaseImage";

fn spdx_layer_id(i: usize) -> String {
    format!("SPDXRef-Layer-{i}")
}

/// The SPDX 2.3 document of one per-arch image.
pub fn spdx(input: &ImageSbomInput<'_>) -> Result<SbomDocument, SbomError> {
    let m = Model::new(input)?;
    let created = m.created();
    let mut packages = Vec::new();
    let mut files = Vec::new();
    let mut rels = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", SPDX_IMAGE)];

    packages.push(SpdxPackage {
        name: input.name.to_owned(),
        spdx_id: SPDX_IMAGE.to_owned(),
        version_info: Some(input.manifest_digest.to_owned()),
        download_location: "NOASSERTION",
        checksums: vec![sha256_checksum(digest_hex(input.manifest_digest))],
        description: Some(format!(
            "Container image {}:{} for {}",
            input.name, input.tag, input.platform
        )),
        external_refs: purl_ref(&m.image_purl),
        primary_package_purpose: Some("CONTAINER"),
        built_date: Some(created.clone()),
        ..Default::default()
    });

    packages.push(SpdxPackage {
        name: input.os.id.clone(),
        spdx_id: SPDX_OS.to_owned(),
        version_info: Some(input.os.version_id.clone()),
        download_location: "NOASSERTION",
        description: non_empty(&input.os.pretty_name),
        comment: Some(format!(
            "os-release: NAME=\"{}\" VERSION_CODENAME={}",
            input.os.name, input.os.version_codename
        )),
        primary_package_purpose: Some("OPERATING-SYSTEM"),
        ..Default::default()
    });
    rels.push(rel(SPDX_IMAGE, "CONTAINS", SPDX_OS));

    if let (Some(base), Some(purl)) = (&input.base, &m.base_purl) {
        packages.push(SpdxPackage {
            name: base.name.clone(),
            spdx_id: SPDX_BASE.to_owned(),
            version_info: Some(base.manifest_digest.clone()),
            download_location: "NOASSERTION",
            checksums: vec![sha256_checksum(digest_hex(&base.manifest_digest))],
            description: Some(format!("Base image {}:{}", base.name, base.tag)),
            external_refs: purl_ref(purl),
            primary_package_purpose: Some("CONTAINER"),
            ..Default::default()
        });
        rels.push(rel(SPDX_IMAGE, "DESCENDANT_OF", SPDX_BASE));
    }

    // All deb packages by name, for GENERATED_FROM.
    let mut pkg_ids: BTreeMap<&str, &str> = BTreeMap::new();
    for l in &m.layers {
        for p in &l.packages {
            pkg_ids
                .entry(p.pkg.name.as_str())
                .or_insert(p.spdx_id.as_str());
        }
    }

    for l in &m.layers {
        let layer_id = spdx_layer_id(l.index);
        packages.push(SpdxPackage {
            name: l.layer.digest.clone(),
            spdx_id: layer_id.clone(),
            download_location: "NOASSERTION",
            checksums: vec![sha256_checksum(digest_hex(&l.layer.digest))],
            comment: Some(format!(
                "Layer {} of {}; diff_id {}",
                l.index, input.name, l.layer.diff_id
            )),
            primary_package_purpose: Some("ARCHIVE"),
            ..Default::default()
        });
        rels.push(rel(SPDX_IMAGE, "CONTAINS", &layer_id));
        if input.base.as_ref().is_some_and(|b| l.index < b.layers) {
            rels.push(rel(SPDX_BASE, "CONTAINS", &layer_id));
        }

        for p in &l.packages {
            let pkg = p.pkg;
            let (supplier_name, supplier_email) = split_maintainer(&pkg.maintainer);
            packages.push(SpdxPackage {
                name: pkg.name.clone(),
                spdx_id: p.spdx_id.clone(),
                version_info: Some(pkg.version.clone()),
                package_file_name: Some(deb_file_name(pkg)),
                supplier: spdx_actor("Organization", &supplier_name, supplier_email.as_deref()),
                download_location: "NOASSERTION",
                checksums: vec![sha256_checksum(&pkg.deb_sha256)],
                source_info: Some(format!(
                    "built package from: {} {}",
                    pkg.source_name(),
                    pkg.source_version()
                )),
                license_concluded: Some("NOASSERTION".to_owned()),
                license_declared: Some(p.license.spdx_expression().to_owned()),
                copyright_text: Some("NOASSERTION"),
                external_refs: purl_ref(&p.purl),
                primary_package_purpose: Some("INSTALL"),
                ..Default::default()
            });
            rels.push(rel(&layer_id, "CONTAINS", &p.spdx_id));
        }

        for c in &l.components {
            let comp = c.comp;
            packages.push(SpdxPackage {
                name: comp.name.clone(),
                spdx_id: c.spdx_id.clone(),
                version_info: Some(comp.version.clone()),
                supplier: comp
                    .supplier
                    .as_deref()
                    .and_then(|s| spdx_actor("Organization", s, None)),
                download_location: "NOASSERTION",
                checksums: comp.sha256.iter().map(|h| sha256_checksum(h)).collect(),
                license_concluded: Some("NOASSERTION".to_owned()),
                license_declared: Some(c.license.spdx_expression().to_owned()),
                copyright_text: Some("NOASSERTION"),
                external_refs: purl_ref(&comp.purl),
                primary_package_purpose: Some(match comp.kind {
                    ComponentKind::Library => "LIBRARY",
                    ComponentKind::Application => "APPLICATION",
                }),
                ..Default::default()
            });
            rels.push(rel(&layer_id, "CONTAINS", &c.spdx_id));
        }

        if !l.files.is_empty() {
            let gen_id = format!("SPDXRef-GeneratedFiles-{}", l.index);
            packages.push(SpdxPackage {
                name: format!("plinth-generated-files-layer-{}", l.index),
                spdx_id: gen_id.clone(),
                supplier: None,
                download_location: "NONE",
                files_analyzed: true,
                package_verification_code: Some(SpdxVerificationCode {
                    package_verification_code_value: verification_code(&l.files),
                }),
                description: Some(format!(
                    "Files that {} wrote into layer {} and no package owns",
                    input.tool.name, l.index
                )),
                primary_package_purpose: Some("FILE"),
                ..Default::default()
            });
            rels.push(rel(&layer_id, "CONTAINS", &gen_id));
            for f in &l.files {
                let file_id = format!("SPDXRef-File-{}-{}", l.index, copyright::sanitise(&f.path));
                // Two paths of a layer sanitise to one id only if they differ
                // in characters outside [A-Za-z0-9.]: both get a hash suffix.
                let file_id = if l.files.iter().any(|o| {
                    o.path != f.path && copyright::sanitise(&o.path) == copyright::sanitise(&f.path)
                }) {
                    format!("{file_id}-{}", &hex_sha256(f.path.as_bytes())[..8])
                } else {
                    file_id
                };
                files.push(SpdxFile {
                    file_name: format!(".{}", absolute(&f.path)),
                    spdx_id: file_id.clone(),
                    checksums: vec![
                        SpdxChecksum {
                            algorithm: "SHA1",
                            checksum_value: f.sha1.to_ascii_lowercase(),
                        },
                        sha256_checksum(&f.sha256),
                    ],
                    comment: None,
                });
                rels.push(rel(&gen_id, "CONTAINS", &file_id));
                if let Some(from) = &f.generated_from
                    && let Some(pid) = pkg_ids.get(from.as_str())
                {
                    rels.push(rel(&file_id, "GENERATED_FROM", pid));
                }
            }
        }
    }

    let doc = SpdxDocumentJson {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: format!("{}:{} {}", input.name, input.tag, input.platform),
        document_namespace: String::new(),
        creation_info: spdx_creation_info(created, input.tool),
        external_document_refs: Vec::new(),
        packages,
        files,
        has_extracted_licensing_infos: m
            .extracted
            .iter()
            .map(|e| SpdxExtractedLicensingInfo {
                license_id: e.id.clone(),
                extracted_text: e.text.clone(),
                name: e.name.clone(),
            })
            .collect(),
        relationships: rels,
    };
    let slug = format!(
        "{}-{}-{}",
        copyright::sanitise(input.name),
        copyright::sanitise(input.tag),
        copyright::sanitise(input.platform)
    );
    finish_spdx(doc, input.namespace, &slug)
}

/// The SPDX document of a multi-arch tag: the index, one package per
/// platform, and for each platform a reference to its own document.
pub fn spdx_index(input: &IndexSbomInput<'_>) -> Result<SbomDocument, SbomError> {
    check_digest("index digest", input.index_digest)?;
    let index_purl = oci_purl(
        input.name,
        input.index_digest,
        None,
        input.repository,
        input.tag,
    );
    let mut packages = vec![SpdxPackage {
        name: input.name.to_owned(),
        spdx_id: "SPDXRef-ImageIndex".to_owned(),
        version_info: Some(input.index_digest.to_owned()),
        download_location: "NOASSERTION",
        checksums: vec![sha256_checksum(digest_hex(input.index_digest))],
        description: Some(format!(
            "Multi-platform image index {}:{}",
            input.name, input.tag
        )),
        external_refs: purl_ref(&index_purl),
        primary_package_purpose: Some("CONTAINER"),
        built_date: Some(rfc3339(input.epoch)),
        ..Default::default()
    }];
    let mut rels = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-ImageIndex")];
    let mut ext = Vec::new();
    for e in sorted_entries(input, SbomKind::Spdx)? {
        let slug = copyright::sanitise(e.platform);
        let pkg_id = format!("SPDXRef-Image-{slug}");
        let doc_ref = format!("DocumentRef-{slug}");
        let purl = oci_purl(
            input.name,
            e.manifest_digest,
            Some(&platform_arch(e.platform)?),
            input.repository,
            input.tag,
        );
        packages.push(SpdxPackage {
            name: input.name.to_owned(),
            spdx_id: pkg_id.clone(),
            version_info: Some(e.manifest_digest.to_owned()),
            download_location: "NOASSERTION",
            checksums: vec![sha256_checksum(digest_hex(e.manifest_digest))],
            description: Some(format!(
                "Container image {}:{} for {}",
                input.name, input.tag, e.platform
            )),
            external_refs: purl_ref(&purl),
            primary_package_purpose: Some("CONTAINER"),
            ..Default::default()
        });
        ext.push(SpdxExternalDocumentRef {
            external_document_id: doc_ref.clone(),
            spdx_document: e.document.id.clone(),
            // SPDX 2.3 (6.6) asks for the SHA-1 of the referenced document.
            checksum: SpdxChecksum {
                algorithm: "SHA1",
                checksum_value: hex(&sha1(&e.document.json)),
            },
        });
        rels.push(rel("SPDXRef-ImageIndex", "CONTAINS", &pkg_id));
        rels.push(rel(
            &pkg_id,
            "DESCRIBED_BY",
            &format!("{doc_ref}:SPDXRef-DOCUMENT"),
        ));
    }
    let doc = SpdxDocumentJson {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: format!("{}:{} index", input.name, input.tag),
        document_namespace: String::new(),
        creation_info: spdx_creation_info(rfc3339(input.epoch), input.tool),
        external_document_refs: ext,
        packages,
        files: Vec::new(),
        has_extracted_licensing_infos: Vec::new(),
        relationships: rels,
    };
    let slug = format!(
        "{}-{}-index",
        copyright::sanitise(input.name),
        copyright::sanitise(input.tag)
    );
    finish_spdx(doc, input.namespace, &slug)
}

fn spdx_creation_info(created: String, tool: Tool<'_>) -> SpdxCreationInfo {
    // SPDX wants `M.N`; the crate reports `3.29.0`.
    let list: Vec<&str> = spdx::license_version().split('.').take(2).collect();
    SpdxCreationInfo {
        created,
        creators: vec![format!("Tool: {}-{}", tool.name, tool.version)],
        license_list_version: list.join("."),
    }
}

/// Serialises with an empty namespace, derives the namespace from the hash
/// of those bytes, and serialises again.
fn finish_spdx(
    mut doc: SpdxDocumentJson,
    namespace: &str,
    slug: &str,
) -> Result<SbomDocument, SbomError> {
    let draft = to_json(&doc)?;
    let uuid = uuid_from(&draft);
    doc.document_namespace = format!("{}/{slug}-{uuid}", namespace.trim_end_matches('/'));
    Ok(SbomDocument {
        kind: SbomKind::Spdx,
        id: doc.document_namespace.clone(),
        json: to_json(&doc)?,
    })
}

/// SPDX package verification code (7.9): SHA-1 over the sorted SHA-1s.
fn verification_code(files: &[&GeneratedFile]) -> String {
    let mut sums: Vec<String> = files.iter().map(|f| f.sha1.to_ascii_lowercase()).collect();
    sums.sort();
    hex(&sha1(sums.concat().as_bytes()))
}

/// `Organization: name (email)`. Parentheses in the name would confuse the
/// actor syntax, so they are dropped.
fn spdx_actor(kind: &str, name: &str, email: Option<&str>) -> Option<String> {
    let name: String = name
        .chars()
        .filter(|c| !matches!(c, '(' | ')'))
        .collect::<String>()
        .trim()
        .to_owned();
    if name.is_empty() {
        return None;
    }
    Some(match email {
        Some(e) => format!("{kind}: {name} ({e})"),
        None => format!("{kind}: {name}"),
    })
}

// ---------------------------------------------------------------------------
// CycloneDX 1.6.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CdxBom {
    bom_format: &'static str,
    spec_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial_number: Option<String>,
    version: u32,
    metadata: CdxMetadata,
    components: Vec<CdxComponent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dependencies: Vec<CdxDependency>,
}

#[derive(Serialize)]
struct CdxMetadata {
    timestamp: String,
    lifecycles: Vec<CdxLifecycle>,
    tools: CdxTools,
    component: CdxComponent,
}

#[derive(Serialize)]
struct CdxLifecycle {
    phase: &'static str,
}

#[derive(Serialize)]
struct CdxTools {
    components: Vec<CdxComponent>,
}

#[derive(Serialize, Default)]
struct CdxComponent {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    bom_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supplier: Option<CdxOrganization>,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<CdxHash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    licenses: Vec<CdxLicenseChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(rename = "externalReferences", skip_serializing_if = "Vec::is_empty")]
    external_references: Vec<CdxExternalReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<CdxProperty>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<CdxComponent>,
}

#[derive(Serialize)]
struct CdxOrganization {
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    contact: Vec<CdxContact>,
}

#[derive(Serialize)]
struct CdxContact {
    email: String,
}

#[derive(Serialize)]
struct CdxHash {
    alg: &'static str,
    content: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum CdxLicenseChoice {
    License {
        license: CdxLicense,
    },
    Expression {
        expression: String,
        acknowledgement: &'static str,
    },
}

#[derive(Serialize)]
struct CdxLicense {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    acknowledgement: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<CdxText>,
}

#[derive(Serialize)]
struct CdxText {
    #[serde(rename = "contentType")]
    content_type: &'static str,
    content: String,
}

#[derive(Serialize)]
struct CdxExternalReference {
    url: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<CdxHash>,
}

#[derive(Serialize)]
struct CdxProperty {
    name: String,
    value: String,
}

#[derive(Serialize)]
struct CdxDependency {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(rename = "dependsOn")]
    depends_on: Vec<String>,
}

fn prop(name: &str, value: &str) -> CdxProperty {
    CdxProperty {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn sha256_hash(hex: &str) -> CdxHash {
    CdxHash {
        alg: "SHA-256",
        content: hex.to_ascii_lowercase(),
    }
}

fn cdx_tools(tool: Tool<'_>) -> CdxTools {
    CdxTools {
        components: vec![CdxComponent {
            kind: "application",
            name: tool.name.to_owned(),
            version: Some(tool.version.to_owned()),
            ..Default::default()
        }],
    }
}

/// A licence in CycloneDX form; `None` for NOASSERTION (CycloneDX says
/// nothing rather than "unknown"). The second value is the exact
/// expression when the list form had to be used.
fn cdx_licenses(l: &License) -> (Vec<CdxLicenseChoice>, Option<String>) {
    let Some(expr) = &l.expression else {
        return (Vec::new(), None);
    };
    if l.refs.is_empty() {
        let single = !expr.contains(' ') && !expr.ends_with('+');
        let choice = if single {
            CdxLicenseChoice::License {
                license: CdxLicense {
                    id: Some(expr.clone()),
                    name: None,
                    acknowledgement: "declared",
                    text: None,
                },
            }
        } else {
            CdxLicenseChoice::Expression {
                expression: expr.clone(),
                acknowledgement: "declared",
            }
        };
        return (vec![choice], None);
    }
    // List form: each distinct licence once, in a stable order.
    let mut leaves: BTreeSet<String> = BTreeSet::new();
    for leaf in expression_leaves(expr) {
        leaves.insert(leaf);
    }
    let choices = leaves
        .into_iter()
        .map(|leaf| {
            if let Some(r) = l.refs.iter().find(|r| r.id == leaf) {
                CdxLicense {
                    id: None,
                    name: Some(r.name.clone()),
                    acknowledgement: "declared",
                    text: Some(CdxText {
                        content_type: "text/plain",
                        content: r.text.clone(),
                    }),
                }
            } else if leaf.contains(' ') || leaf.ends_with('+') {
                // `X WITH Y` or `X+`: not an id, so a name.
                CdxLicense {
                    id: None,
                    name: Some(leaf),
                    acknowledgement: "declared",
                    text: None,
                }
            } else {
                CdxLicense {
                    id: Some(leaf),
                    name: None,
                    acknowledgement: "declared",
                    text: None,
                }
            }
        })
        .map(|license| CdxLicenseChoice::License { license })
        .collect();
    (choices, Some(expr.clone()))
}

/// The licences an expression names: ids, `id+`, `id WITH exception`.
fn expression_leaves(expr: &str) -> Vec<String> {
    let spaced = expr.replace(['(', ')'], " ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        if t == "AND" || t == "OR" {
            i += 1;
        } else if tokens.get(i + 1) == Some(&"WITH") && i + 2 < tokens.len() {
            out.push(format!("{t} WITH {}", tokens[i + 2]));
            i += 3;
        } else {
            out.push(t.to_owned());
            i += 1;
        }
    }
    out
}

fn cdx_supplier(maintainer: &str) -> Option<CdxOrganization> {
    let (name, email) = split_maintainer(maintainer);
    if name.is_empty() {
        return None;
    }
    Some(CdxOrganization {
        name,
        contact: email
            .map(|email| CdxContact { email })
            .into_iter()
            .collect(),
    })
}

fn cdx_package(p: &ModelPackage<'_>) -> CdxComponent {
    let pkg = p.pkg;
    let (licenses, exact) = cdx_licenses(&p.license);
    let mut properties = vec![
        prop("plinth:deb:arch", &pkg.arch),
        prop("plinth:deb:source", pkg.source_name()),
        prop("plinth:deb:source-version", pkg.source_version()),
    ];
    if let Some(e) = exact {
        properties.push(prop("plinth:license:expression", &e));
    }
    properties.sort_by(|a, b| a.name.cmp(&b.name));
    CdxComponent {
        kind: "library",
        bom_ref: Some(p.purl.clone()),
        supplier: cdx_supplier(&pkg.maintainer),
        name: pkg.name.clone(),
        version: Some(pkg.version.clone()),
        hashes: vec![sha256_hash(&pkg.deb_sha256)],
        licenses,
        purl: Some(p.purl.clone()),
        properties,
        ..Default::default()
    }
}

fn cdx_extra(c: &ModelComponent<'_>) -> CdxComponent {
    let comp = c.comp;
    let (licenses, exact) = cdx_licenses(&c.license);
    CdxComponent {
        kind: match comp.kind {
            ComponentKind::Library => "library",
            ComponentKind::Application => "application",
        },
        bom_ref: Some(comp.purl.clone()),
        supplier: comp.supplier.as_ref().map(|s| CdxOrganization {
            name: s.clone(),
            contact: Vec::new(),
        }),
        name: comp.name.clone(),
        version: Some(comp.version.clone()),
        hashes: comp.sha256.iter().map(|h| sha256_hash(h)).collect(),
        licenses,
        purl: Some(comp.purl.clone()),
        properties: exact
            .map(|e| prop("plinth:license:expression", &e))
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// The CycloneDX 1.6 document of one per-arch image.
pub fn cyclonedx(input: &ImageSbomInput<'_>) -> Result<SbomDocument, SbomError> {
    let m = Model::new(input)?;
    let image = CdxComponent {
        kind: "container",
        bom_ref: Some(m.image_purl.clone()),
        name: input.name.to_owned(),
        version: Some(input.manifest_digest.to_owned()),
        hashes: vec![sha256_hash(digest_hex(input.manifest_digest))],
        purl: Some(m.image_purl.clone()),
        properties: vec![
            prop("plinth:image:platform", input.platform),
            prop("plinth:image:tag", input.tag),
        ],
        ..Default::default()
    };
    let os_ref = format!("os:{}@{}", input.os.id, input.os.version_id);
    let mut components = vec![CdxComponent {
        kind: "operating-system",
        bom_ref: Some(os_ref.clone()),
        name: input.os.id.clone(),
        version: Some(input.os.version_id.clone()),
        description: non_empty(&input.os.pretty_name),
        properties: vec![
            prop("plinth:os-release:NAME", &input.os.name),
            prop(
                "plinth:os-release:VERSION_CODENAME",
                &input.os.version_codename,
            ),
        ],
        ..Default::default()
    }];
    let mut dependencies = Vec::new();
    if let (Some(base), Some(purl)) = (&input.base, &m.base_purl) {
        components.push(CdxComponent {
            kind: "container",
            bom_ref: Some(purl.clone()),
            name: base.name.clone(),
            version: Some(base.manifest_digest.clone()),
            hashes: vec![sha256_hash(digest_hex(&base.manifest_digest))],
            purl: Some(purl.clone()),
            properties: vec![prop("plinth:image:tag", &base.tag)],
            ..Default::default()
        });
        dependencies.push(CdxDependency {
            reference: m.image_purl.clone(),
            depends_on: vec![purl.clone()],
        });
    }
    let mut deb_refs = Vec::new();
    for l in &m.layers {
        let mut nested = Vec::new();
        for p in &l.packages {
            deb_refs.push(p.purl.clone());
            nested.push(cdx_package(p));
        }
        for c in &l.components {
            nested.push(cdx_extra(c));
        }
        for f in &l.files {
            let mut properties = Vec::new();
            if let Some(from) = &f.generated_from {
                properties.push(prop("plinth:file:generated-from", from));
            }
            nested.push(CdxComponent {
                kind: "file",
                bom_ref: Some(format!("file:{}:{}", l.index, absolute(&f.path))),
                name: absolute(&f.path),
                hashes: vec![
                    CdxHash {
                        alg: "SHA-1",
                        content: f.sha1.to_ascii_lowercase(),
                    },
                    sha256_hash(&f.sha256),
                ],
                properties,
                ..Default::default()
            });
        }
        let mut properties = vec![
            prop("plinth:layer:diff_id", &l.layer.diff_id),
            prop("plinth:layer:index", &l.index.to_string()),
        ];
        if let Some(b) = input.base.as_ref().filter(|b| l.index < b.layers) {
            properties.push(prop("plinth:layer:from-base", &b.name));
        }
        components.push(CdxComponent {
            kind: "file",
            bom_ref: Some(format!("layer:{}:{}", l.index, l.layer.digest)),
            name: l.layer.digest.clone(),
            description: Some(format!("Layer {} of {}", l.index, input.name)),
            hashes: vec![sha256_hash(digest_hex(&l.layer.digest))],
            properties,
            components: nested,
            ..Default::default()
        });
    }
    deb_refs.sort();
    if !deb_refs.is_empty() {
        dependencies.push(CdxDependency {
            reference: os_ref,
            depends_on: deb_refs,
        });
    }
    let bom = CdxBom {
        bom_format: "CycloneDX",
        spec_version: "1.6",
        serial_number: None,
        version: 1,
        metadata: CdxMetadata {
            timestamp: m.created(),
            lifecycles: vec![CdxLifecycle { phase: "build" }],
            tools: cdx_tools(input.tool),
            component: image,
        },
        components,
        dependencies,
    };
    finish_cdx(bom)
}

/// The CycloneDX document of a multi-arch tag: the index, and one
/// component per platform linking to that platform's BOM (BOM-Link).
pub fn cyclonedx_index(input: &IndexSbomInput<'_>) -> Result<SbomDocument, SbomError> {
    check_digest("index digest", input.index_digest)?;
    let index_purl = oci_purl(
        input.name,
        input.index_digest,
        None,
        input.repository,
        input.tag,
    );
    let mut components = Vec::new();
    let mut refs = Vec::new();
    for e in sorted_entries(input, SbomKind::CycloneDx)? {
        let purl = oci_purl(
            input.name,
            e.manifest_digest,
            Some(&platform_arch(e.platform)?),
            input.repository,
            input.tag,
        );
        let serial = e.document.id.trim_start_matches("urn:uuid:");
        refs.push(purl.clone());
        components.push(CdxComponent {
            kind: "container",
            bom_ref: Some(purl.clone()),
            name: input.name.to_owned(),
            version: Some(e.manifest_digest.to_owned()),
            hashes: vec![sha256_hash(digest_hex(e.manifest_digest))],
            purl: Some(purl),
            external_references: vec![CdxExternalReference {
                url: format!("urn:cdx:{serial}/1"),
                kind: "bom",
                hashes: vec![CdxHash {
                    alg: "SHA-256",
                    content: hex(&Sha256::digest(&e.document.json)),
                }],
            }],
            properties: vec![prop("plinth:image:platform", e.platform)],
            ..Default::default()
        });
    }
    let bom = CdxBom {
        bom_format: "CycloneDX",
        spec_version: "1.6",
        serial_number: None,
        version: 1,
        metadata: CdxMetadata {
            timestamp: rfc3339(input.epoch),
            lifecycles: vec![CdxLifecycle { phase: "build" }],
            tools: cdx_tools(input.tool),
            component: CdxComponent {
                kind: "container",
                bom_ref: Some(index_purl.clone()),
                name: input.name.to_owned(),
                version: Some(input.index_digest.to_owned()),
                hashes: vec![sha256_hash(digest_hex(input.index_digest))],
                purl: Some(index_purl.clone()),
                properties: vec![prop("plinth:image:tag", input.tag)],
                ..Default::default()
            },
        },
        components,
        dependencies: vec![CdxDependency {
            reference: index_purl,
            depends_on: refs,
        }],
    };
    finish_cdx(bom)
}

fn finish_cdx(mut bom: CdxBom) -> Result<SbomDocument, SbomError> {
    let draft = to_json(&bom)?;
    let serial = format!("urn:uuid:{}", uuid_from(&draft));
    bom.serial_number = Some(serial.clone());
    Ok(SbomDocument {
        kind: SbomKind::CycloneDx,
        id: serial,
        json: to_json(&bom)?,
    })
}

fn sorted_entries<'a>(
    input: &'a IndexSbomInput<'a>,
    kind: SbomKind,
) -> Result<Vec<&'a IndexEntry<'a>>, SbomError> {
    let mut v: Vec<&IndexEntry> = input.images.iter().collect();
    for e in &v {
        check_digest(
            &format!("{} manifest digest", e.platform),
            e.manifest_digest,
        )?;
        platform_arch(e.platform)?;
        if e.document.kind != kind {
            return Err(SbomError::WrongDocumentKind {
                platform: e.platform.to_owned(),
                expected: kind,
            });
        }
    }
    v.sort_by(|a, b| a.platform.cmp(b.platform));
    Ok(v)
}

// ---------------------------------------------------------------------------
// Identifiers, purls, hashes, time.

/// `pkg:deb/debian/<name>@<version>?arch=..&distro=..[&upstream=..]`.
/// `upstream` names the source package when it differs, as syft writes it:
/// vulnerability data for Debian is keyed by source package.
fn deb_purl(p: &PackageSbom, distro: &str) -> String {
    let mut q = vec![("arch", p.arch.clone()), ("distro", distro.to_owned())];
    let (source, source_version) = (p.source_name(), p.source_version());
    if source != p.name || source_version != p.version {
        let upstream = if source_version != p.version {
            format!("{source}@{source_version}")
        } else {
            source.to_owned()
        };
        q.push(("upstream", upstream));
    }
    purl("deb", Some("debian"), &p.name, &p.version, &q)
}

fn oci_purl(
    name: &str,
    digest: &str,
    arch: Option<&str>,
    repository: Option<&str>,
    tag: &str,
) -> String {
    let mut q = Vec::new();
    if let Some(a) = arch {
        q.push(("arch", a.to_owned()));
    }
    if let Some(r) = repository {
        q.push((
            "repository_url",
            format!("{}/{name}", r.trim_end_matches('/')),
        ));
    }
    q.push(("tag", tag.to_owned()));
    purl("oci", None, name, digest, &q)
}

/// A purl in canonical form: qualifiers sorted by key, each part
/// percent-encoded except for unreserved characters and `:` (the purl
/// specification says `:` is never encoded), `/` kept in qualifier values.
fn purl(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, String)],
) -> String {
    let mut s = format!("pkg:{ty}/");
    if let Some(ns) = namespace {
        s.push_str(&pct(ns, false));
        s.push('/');
    }
    s.push_str(&pct(name, false));
    s.push('@');
    s.push_str(&pct(version, false));
    let mut q: Vec<&(&str, String)> = qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    q.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (k, v)) in q.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&pct(v, true));
    }
    s
}

fn pct(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b':')
            || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `linux/arm64/v8` → `arm64`.
fn platform_arch(platform: &str) -> Result<String, SbomError> {
    let mut parts = platform.split('/');
    match (parts.next(), parts.next()) {
        (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => Ok(arch.to_owned()),
        _ => Err(SbomError::BadPlatform(platform.to_owned())),
    }
}

/// `libc6_2.41-12_amd64.deb`: Debian's file name drops the epoch.
fn deb_file_name(p: &PackageSbom) -> String {
    let version = p
        .version
        .split_once(':')
        .map_or(p.version.as_str(), |(_, v)| v);
    format!("{}_{}_{}.deb", p.name, version, p.arch)
}

/// `Name <email>` → (`Name`, `email`). The email is kept only when it
/// looks like one, since CycloneDX validates it as an address.
fn split_maintainer(m: &str) -> (String, Option<String>) {
    let m = m.trim();
    if let (Some(open), true) = (m.rfind('<'), m.ends_with('>')) {
        let name = m[..open].trim().to_owned();
        let email = m[open + 1..m.len() - 1].trim();
        let plausible = email.contains('@')
            && !email.starts_with('@')
            && !email.ends_with('@')
            && email
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';'));
        let name = if name.is_empty() {
            email.to_owned()
        } else {
            name
        };
        return (name, plausible.then(|| email.to_owned()));
    }
    (m.to_owned(), None)
}

fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn check_digest(what: &str, value: &str) -> Result<(), SbomError> {
    match value.strip_prefix("sha256:") {
        Some(h) if is_hex(h, 64) => Ok(()),
        _ => Err(SbomError::BadDigest {
            what: what.to_owned(),
            value: value.to_owned(),
            algorithm: "sha256:<64 hex>",
        }),
    }
}

fn check_hex(what: &str, value: &str, len: usize) -> Result<(), SbomError> {
    if is_hex(value, len) {
        Ok(())
    } else {
        Err(SbomError::BadDigest {
            what: what.to_owned(),
            value: value.to_owned(),
            algorithm: if len == 40 {
                "SHA-1 hex"
            } else {
                "SHA-256 hex"
            },
        })
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, SbomError> {
    let mut out = serde_json::to_vec_pretty(v).map_err(|e| SbomError::Json(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// A UUID from the SHA-256 of `bytes`, with the version nibble 8 (RFC 9562:
/// custom, here "derived from content") and the RFC variant bits.
fn uuid_from(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut u = [0u8; 16];
    u.copy_from_slice(&d[..16]);
    u[6] = (u[6] & 0x0f) | 0x80;
    u[8] = (u[8] & 0x3f) | 0x80;
    let h = hex(&u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// RFC 3339 UTC (`1970-01-01T00:00:00Z`) from seconds since the epoch,
/// without a time library: days to a civil date in the proleptic Gregorian
/// calendar, counting in 400-year eras that start on 1 March so that the
/// leap day falls at the end of the year.
fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    let (h, min, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    // Shift the origin to 0000-03-01, which is 719_468 days before 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from 1 March
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{min:02}:{s:02}Z")
}

/// SHA-1 (FIPS 180-4), needed only because SPDX 2.3 requires it for files,
/// verification codes and external document references; not used for
/// anything that needs collision resistance.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hi, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hi = hi.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, v) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    #[test]
    fn sha1_known_answers() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex(&sha1(input)), *want);
        }
        assert_eq!(
            hex(&sha1(&vec![b'a'; 1_000_000])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
        // Every length around the padding boundary against a 64-byte block.
        for n in 50..70 {
            let data = vec![b'x'; n];
            assert_eq!(sha1(&data).len(), 20);
        }
    }

    #[test]
    fn rfc3339_from_epoch() {
        for (t, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (68_256_000, "1972-03-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(t), want, "{t}");
        }
    }

    #[test]
    fn purls() {
        let p = PackageSbom {
            name: "libstdc++6".into(),
            version: "12.2.0-14+deb12u1".into(),
            arch: "amd64".into(),
            source: "gcc-12".into(),
            source_version: "12.2.0-14+deb12u1".into(),
            ..Default::default()
        };
        assert_eq!(
            deb_purl(&p, "debian-12"),
            "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12&upstream=gcc-12"
        );
        let z = PackageSbom {
            name: "zlib1g".into(),
            version: "1:1.2.13.dfsg-1".into(),
            arch: "amd64".into(),
            source: "zlib".into(),
            source_version: "1:1.2.13.dfsg-1".into(),
            ..Default::default()
        };
        assert_eq!(
            deb_purl(&z, "debian-12"),
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib"
        );
        assert_eq!(deb_file_name(&z), "zlib1g_1.2.13.dfsg-1_amd64.deb");
        let same = PackageSbom {
            name: "tzdata".into(),
            version: "2025b-0+deb12u2".into(),
            arch: "all".into(),
            source: "tzdata".into(),
            source_version: "2025b-0+deb12u2".into(),
            ..Default::default()
        };
        assert!(!deb_purl(&same, "debian-12").contains("upstream"));
        let bin_nmu = PackageSbom {
            source_version: "2025b-0".into(),
            ..same
        };
        assert!(deb_purl(&bin_nmu, "debian-12").ends_with("&upstream=tzdata%402025b-0"));
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            oci_purl(
                "cc-debian13",
                &d,
                Some("arm64"),
                Some("registry.example.org/org/"),
                "nonroot"
            ),
            format!(
                "pkg:oci/cc-debian13@{d}?arch=arm64&repository_url=registry.example.org/org/cc-debian13&tag=nonroot"
            )
        );
    }

    #[test]
    fn maintainers() {
        assert_eq!(
            split_maintainer("GNU Libc Maintainers <debian-glibc@lists.example.org>"),
            (
                "GNU Libc Maintainers".to_owned(),
                Some("debian-glibc@lists.example.org".to_owned())
            )
        );
        assert_eq!(split_maintainer("Nobody"), ("Nobody".to_owned(), None));
        assert_eq!(split_maintainer("X <not an email>").1, None);
        assert_eq!(
            spdx_actor("Organization", "A (B) C", Some("a@b")).as_deref(),
            Some("Organization: A B C (a@b)")
        );
    }

    #[test]
    fn conflicting_license_refs_are_renamed() {
        let mk = |text: &str| License {
            expression: Some("MIT AND LicenseRef-public-domain".into()),
            refs: vec![ExtractedLicense {
                id: "LicenseRef-public-domain".into(),
                name: "public-domain".into(),
                text: text.into(),
            }],
        };
        let (out, all) = resolve_license_refs(vec![mk("one"), mk("two"), mk("one")]);
        assert_eq!(all.len(), 2);
        assert_eq!(out[0], out[2]);
        assert_ne!(out[0].expression, out[1].expression);
        for l in &out {
            let e = l.expression.as_deref().unwrap();
            assert!(e.starts_with("MIT AND LicenseRef-public-domain-"), "{e}");
            assert!(e.contains(&l.refs[0].id));
        }
        let (out, all) = resolve_license_refs(vec![mk("same"), mk("same")]);
        assert_eq!(all.len(), 1);
        assert_eq!(
            out[0].expression.as_deref(),
            Some("MIT AND LicenseRef-public-domain")
        );
    }

    #[test]
    fn cyclonedx_licence_forms() {
        let (c, e) = cdx_licenses(&License::from_declared("MIT"));
        assert!(e.is_none());
        assert!(serde_json::to_string(&c).unwrap().contains(r#""id":"MIT""#));
        let (c, _) = cdx_licenses(&License::from_declared("MIT OR Apache-2.0"));
        assert!(
            serde_json::to_string(&c)
                .unwrap()
                .contains(r#""expression":"MIT OR Apache-2.0""#)
        );
        let l = copyright::license_from_copyright(
            "p",
            Some(
                "Format: x\n\nFiles: *\nCopyright: a\nLicense: GPL-2+ with Autoconf exception or public-domain\n\n\
                 License: public-domain\n Do what you like.\n",
            ),
        );
        let (c, e) = cdx_licenses(&l);
        assert_eq!(
            e.as_deref(),
            Some("GPL-2.0-or-later WITH Autoconf-exception-2.0 OR LicenseRef-public-domain")
        );
        let j = serde_json::to_string(&c).unwrap();
        assert!(
            j.contains(r#""name":"GPL-2.0-or-later WITH Autoconf-exception-2.0""#),
            "{j}"
        );
        assert!(j.contains(r#""content":"Do what you like.""#), "{j}");
        assert!(cdx_licenses(&License::no_assertion()).0.is_empty());
    }

    // -- A realistic image -------------------------------------------------

    struct Fixture {
        layers: Vec<LayerSbom>,
        /// Manifest digest per platform.
        manifests: BTreeMap<&'static str, String>,
    }

    fn host_copyright(pkg: &str) -> Option<String> {
        std::fs::read(format!("/usr/share/doc/{pkg}/copyright"))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn fake_sha256(s: &str) -> String {
        hex_sha256(s.as_bytes())
    }

    fn digest(s: &str) -> String {
        format!("sha256:{}", fake_sha256(s))
    }

    fn deb(name: &str, version: &str, arch: &str, source: &str, maint: &str) -> PackageSbom {
        PackageSbom {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            source: source.into(),
            source_version: version.into(),
            maintainer: maint.into(),
            deb_sha256: fake_sha256(&format!("{name}_{version}_{arch}.deb")),
            copyright: host_copyright(name),
        }
    }

    fn fixture() -> Fixture {
        let glibc = "GNU Libc Maintainers <debian-glibc@lists.example.org>";
        let gcc = "Debian GCC Maintainers <debian-gcc@lists.example.org>";
        let passwd = b"root:x:0:0:root:/root:/sbin/nologin\n";
        let mut static_files = vec![
            GeneratedFile::new("/etc/passwd", passwd, None),
            GeneratedFile::new("/etc/group", b"root:x:0:\n", None),
            GeneratedFile::new("/usr/lib/os-release", b"ID=\"debian\"\n", None),
            GeneratedFile::new("/etc/nsswitch.conf", b"passwd: compat\n", None),
            GeneratedFile::new(
                "/etc/ssl/certs/ca-certificates.crt",
                b"-----BEGIN CERTIFICATE-----\n",
                Some("ca-certificates"),
            ),
        ];
        for p in [
            "base-files",
            "netbase",
            "tzdata",
            "ca-certificates",
            "media-types",
        ] {
            static_files.push(GeneratedFile::new(
                &format!("/var/lib/dpkg/status.d/{p}"),
                format!("Package: {p}\n").as_bytes(),
                Some(p),
            ));
        }
        let layers = vec![
            LayerSbom {
                digest: digest("layer0"),
                diff_id: digest("diff0"),
                packages: vec![
                    deb(
                        "base-files",
                        "12.4+deb12u11",
                        "amd64",
                        "base-files",
                        "Santiago Vila <sanvila@example.org>",
                    ),
                    deb(
                        "netbase",
                        "6.4",
                        "all",
                        "netbase",
                        "Marco d'Itri <md@linux.it>",
                    ),
                    deb("tzdata", "2025b-0+deb12u2", "all", "tzdata", glibc),
                    deb(
                        "ca-certificates",
                        "20230311+deb12u1",
                        "all",
                        "ca-certificates",
                        "Julien Cristau <jcristau@example.org>",
                    ),
                    deb(
                        "media-types",
                        "10.0.0",
                        "all",
                        "media-types",
                        "Mime-Support Packagers <team+debian-mimesupport-packagers@tracker.example.org>",
                    ),
                ],
                files: static_files,
                components: Vec::new(),
            },
            LayerSbom {
                digest: digest("layer1"),
                diff_id: digest("diff1"),
                packages: vec![
                    deb("libc6", "2.36-9+deb12u14", "amd64", "glibc", glibc),
                    deb(
                        "libssl3",
                        "3.0.19-1~deb12u2",
                        "amd64",
                        "openssl",
                        "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>",
                    ),
                    deb(
                        "zlib1g",
                        "1:1.2.13.dfsg-1",
                        "amd64",
                        "zlib",
                        "Mark Brown <broonie@example.org>",
                    ),
                ],
                files: vec![GeneratedFile::new(
                    "/var/lib/dpkg/status.d/libc6",
                    b"Package: libc6\n",
                    Some("libc6"),
                )],
                components: Vec::new(),
            },
            LayerSbom {
                digest: digest("layer2"),
                diff_id: digest("diff2"),
                packages: vec![
                    deb("libgcc-s1", "12.2.0-14+deb12u1", "amd64", "gcc-12", gcc),
                    deb("libstdc++6", "12.2.0-14+deb12u1", "amd64", "gcc-12", gcc),
                    deb("gcc-12-base", "12.2.0-14+deb12u1", "amd64", "gcc-12", gcc),
                    // A package with no copyright file at all.
                    PackageSbom {
                        copyright: None,
                        ..deb("libgomp1", "12.2.0-14+deb12u1", "amd64", "gcc-12", gcc)
                    },
                ],
                files: Vec::new(),
                components: Vec::new(),
            },
            LayerSbom {
                digest: digest("layer3"),
                diff_id: digest("diff3"),
                packages: Vec::new(),
                files: vec![GeneratedFile::new("/app/server", b"\x7fELF", None)],
                components: vec![
                    Component {
                        kind: ComponentKind::Library,
                        name: "serde".into(),
                        version: "1.0.219".into(),
                        purl: "pkg:cargo/serde@1.0.219".into(),
                        license: License::from_declared("MIT OR Apache-2.0"),
                        sha256: Some(fake_sha256("serde")),
                        supplier: Some("the organisation".into()),
                    },
                    Component {
                        kind: ComponentKind::Library,
                        name: "oldcrate".into(),
                        version: "0.1.0".into(),
                        purl: "pkg:cargo/oldcrate@0.1.0".into(),
                        license: License::from_declared("MIT/Apache-2.0"),
                        sha256: None,
                        supplier: None,
                    },
                    Component {
                        kind: ComponentKind::Library,
                        name: "weird".into(),
                        version: "2.0.0".into(),
                        purl: "pkg:cargo/weird@2.0.0".into(),
                        license: License::from_declared("Some Custom Licence"),
                        sha256: None,
                        supplier: None,
                    },
                ],
            },
        ];
        let manifests = ["linux/amd64", "linux/arm64/v8"]
            .into_iter()
            .map(|p| (p, digest(&format!("manifest-{p}"))))
            .collect();
        Fixture { layers, manifests }
    }

    fn input<'a>(f: &'a Fixture, platform: &'static str) -> ImageSbomInput<'a> {
        ImageSbomInput {
            name: "cc-debian12",
            tag: "nonroot",
            platform,
            manifest_digest: &f.manifests[platform],
            epoch: 1_700_000_000,
            os: OsInfo {
                id: "debian".into(),
                version_id: "12".into(),
                version_codename: "bookworm".into(),
                pretty_name: "Distroless".into(),
                name: "Debian GNU/Linux".into(),
            },
            distro: "debian-12",
            repository: Some("registry.example.org/example"),
            base: Some(BaseRef {
                name: "base-debian12".into(),
                tag: "nonroot".into(),
                manifest_digest: digest("base-manifest"),
                layers: 2,
            }),
            layers: f.layers.clone(),
            tool: Tool {
                name: "plinth",
                version: "0.1.0",
            },
            namespace: DEFAULT_NAMESPACE,
        }
    }

    #[test]
    fn byte_identical_and_order_independent() {
        let f = fixture();
        let a = input(&f, "linux/amd64");
        let s1 = spdx(&a).unwrap();
        let s2 = spdx(&a).unwrap();
        assert_eq!(s1, s2);
        let c1 = cyclonedx(&a).unwrap();
        assert_eq!(c1, cyclonedx(&a).unwrap());

        // Packages, files and components in another order: same bytes.
        let mut shuffled = input(&f, "linux/amd64");
        for l in &mut shuffled.layers {
            l.packages.reverse();
            l.files.reverse();
            l.components.reverse();
        }
        assert_eq!(spdx(&shuffled).unwrap(), s1);
        assert_eq!(cyclonedx(&shuffled).unwrap(), c1);

        // The id is derived from content: another epoch, another id.
        let mut later = input(&f, "linux/amd64");
        later.epoch += 1;
        assert_ne!(spdx(&later).unwrap().id, s1.id);
        assert_ne!(cyclonedx(&later).unwrap().id, c1.id);
        assert!(c1.id.starts_with("urn:uuid:"));
        assert_eq!(&c1.id[23..24], "8", "UUID version nibble");
    }

    fn deb_set(f: &Fixture) -> BTreeSet<(String, String)> {
        f.layers
            .iter()
            .flat_map(|l| &l.packages)
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect()
    }

    #[test]
    fn package_lists_equal_the_input() {
        let f = fixture();
        let a = input(&f, "linux/amd64");
        let want = deb_set(&f);

        let doc: serde_json::Value = serde_json::from_slice(&spdx(&a).unwrap().json).unwrap();
        let got: BTreeSet<(String, String)> = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["externalRefs"][0]["referenceLocator"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("pkg:deb/"))
            })
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["versionInfo"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, want);
        // Licences: NOASSERTION only where there is no copyright file.
        for p in doc["packages"].as_array().unwrap() {
            if p["name"] == "libgomp1" {
                assert_eq!(p["licenseDeclared"], "NOASSERTION");
            } else if p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|u| u.starts_with("pkg:deb/"))
            {
                assert_ne!(p["licenseDeclared"], "NOASSERTION", "{}", p["name"]);
            }
        }
        let files = doc["files"].as_array().unwrap();
        let n_files: usize = f.layers.iter().map(|l| l.files.len()).sum();
        assert_eq!(files.len(), n_files);

        let doc: serde_json::Value = serde_json::from_slice(&cyclonedx(&a).unwrap().json).unwrap();
        let mut got = BTreeSet::new();
        let mut crates = BTreeSet::new();
        fn walk(
            v: &serde_json::Value,
            debs: &mut BTreeSet<(String, String)>,
            crates: &mut BTreeSet<String>,
        ) {
            for c in v.as_array().into_iter().flatten() {
                let purl = c["purl"].as_str().unwrap_or("");
                if purl.starts_with("pkg:deb/") {
                    debs.insert((
                        c["name"].as_str().unwrap().to_owned(),
                        c["version"].as_str().unwrap().to_owned(),
                    ));
                } else if purl.starts_with("pkg:cargo/") {
                    crates.insert(purl.to_owned());
                }
                walk(&c["components"], debs, crates);
            }
        }
        walk(&doc["components"], &mut got, &mut crates);
        assert_eq!(got, want);
        assert_eq!(crates.len(), 3);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let f = fixture();
        let mut a = input(&f, "linux/amd64");
        a.manifest_digest = "sha256:nothex";
        assert!(matches!(spdx(&a), Err(SbomError::BadDigest { .. })));
        let mut a = input(&f, "linux/amd64");
        let dup = a.layers[1].packages[0].clone();
        a.layers[2].packages.push(dup);
        assert!(matches!(cyclonedx(&a), Err(SbomError::DuplicatePackage(_))));
        let mut a = input(&f, "linux/amd64");
        let twice = GeneratedFile::new("/etc/passwd", b"other", None);
        a.layers[0].files.push(twice);
        assert!(matches!(spdx(&a), Err(SbomError::DuplicateFile(_))));
        let mut a = input(&f, "linux/amd64");
        let same = a.layers[0].files[0].clone();
        a.layers[0].files.push(same);
        assert!(spdx(&a).is_ok());
        let mut a = input(&f, "linux/amd64");
        a.layers[0].files[0].generated_from = Some("nope".into());
        assert!(matches!(
            spdx(&a),
            Err(SbomError::UnknownSourcePackage { .. })
        ));
        let mut a = input(&f, "linux/amd64");
        a.platform = "amd64";
        assert!(matches!(spdx(&a), Err(SbomError::BadPlatform(_))));
    }

    // -- External validators -----------------------------------------------

    /// `PLINTH_VALIDATORS_VENV/bin/<name>`, else `<name>` on PATH.
    fn find_tool(name: &str) -> Option<PathBuf> {
        if let Some(venv) = std::env::var_os("PLINTH_VALIDATORS_VENV") {
            let p = Path::new(&venv).join("bin").join(name);
            return p.is_file().then_some(p);
        }
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }

    /// The directory of CycloneDX schemas shipped in cyclonedx-python-lib,
    /// asked of the Python next to check-jsonschema.
    fn cyclonedx_schema_dir(check_jsonschema: &Path) -> Option<PathBuf> {
        let python = check_jsonschema.parent()?.join("python3");
        let out = Command::new(python)
            .args([
                "-c",
                "import os, cyclonedx.schema._res as r; print(os.path.dirname(r.__file__))",
            ])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        dir.join("bom-1.6.SNAPSHOT.schema.json")
            .is_file()
            .then_some(dir)
    }

    fn skip_or_fail(why: &str) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("validators required under CI: {why}");
        }
        eprintln!(
            "skip: {why} (set PLINTH_VALIDATORS_VENV to a venv with spdx-tools, check-jsonschema and cyclonedx-python-lib)"
        );
    }

    #[test]
    fn documents_pass_the_reference_validators() {
        let Some(pyspdxtools) = find_tool("pyspdxtools") else {
            return skip_or_fail("pyspdxtools not found");
        };
        let Some(check) = find_tool("check-jsonschema") else {
            return skip_or_fail("check-jsonschema not found");
        };
        let Some(schemas) = cyclonedx_schema_dir(&check) else {
            return skip_or_fail("cyclonedx-python-lib's schemas not found");
        };

        // PLINTH_SBOM_KEEP=DIR keeps the documents there for reading.
        let keep = std::env::var_os("PLINTH_SBOM_KEEP").map(PathBuf::from);
        let dir = keep.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("plinth-sbom-test-{}", std::process::id()))
        });
        std::fs::create_dir_all(&dir).unwrap();
        let f = fixture();
        let mut spdx_docs = Vec::new();
        let mut cdx_docs = Vec::new();
        for platform in ["linux/amd64", "linux/arm64/v8"] {
            let a = input(&f, platform);
            spdx_docs.push((platform, a.manifest_digest, spdx(&a).unwrap()));
            cdx_docs.push((platform, a.manifest_digest, cyclonedx(&a).unwrap()));
        }
        fn index<'a>(docs: &'a [(&'a str, &'a str, SbomDocument)]) -> Vec<IndexEntry<'a>> {
            docs.iter()
                .map(|(platform, digest, doc)| IndexEntry {
                    platform,
                    manifest_digest: digest,
                    document: doc,
                })
                .collect()
        }
        let idx_digest = digest("index");
        let idx = |images| IndexSbomInput {
            name: "cc-debian12",
            tag: "nonroot",
            index_digest: &idx_digest,
            epoch: 1_700_000_000,
            repository: None,
            tool: Tool {
                name: "plinth",
                version: "0.1.0",
            },
            namespace: DEFAULT_NAMESPACE,
            images,
        };
        let spdx_index_doc = spdx_index(&idx(index(&spdx_docs))).unwrap();
        let cdx_index_doc = cyclonedx_index(&idx(index(&cdx_docs))).unwrap();
        assert_eq!(spdx_index_doc, spdx_index(&idx(index(&spdx_docs))).unwrap());
        assert!(matches!(
            spdx_index(&idx(index(&cdx_docs))),
            Err(SbomError::WrongDocumentKind { .. })
        ));

        let mut spdx_files = Vec::new();
        let mut cdx_files = Vec::new();
        for (i, (_, _, d)) in spdx_docs.iter().enumerate() {
            spdx_files.push((dir.join(format!("image-{i}.spdx.json")), d.json.clone()));
        }
        spdx_files.push((dir.join("index.spdx.json"), spdx_index_doc.json.clone()));
        for (i, (_, _, d)) in cdx_docs.iter().enumerate() {
            cdx_files.push((dir.join(format!("image-{i}.cdx.json")), d.json.clone()));
        }
        cdx_files.push((dir.join("index.cdx.json"), cdx_index_doc.json.clone()));

        for (path, bytes) in &spdx_files {
            std::fs::write(path, bytes).unwrap();
            let out = Command::new(&pyspdxtools)
                .arg("-i")
                .arg(path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pyspdxtools -i {}:\n{}{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let schema = schemas.join("bom-1.6.SNAPSHOT.schema.json");
        for (path, bytes) in &cdx_files {
            std::fs::write(path, bytes).unwrap();
            // The schema refers to spdx.SNAPSHOT.schema.json and
            // jsf-0.82.SNAPSHOT.schema.json by relative name: with the base
            // URI on the local file they resolve beside it, offline.
            let out = Command::new(&check)
                .arg("--base-uri")
                .arg(format!("file://{}", schema.display()))
                .arg("--schemafile")
                .arg(&schema)
                .arg(path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "check-jsonschema {}:\n{}{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if keep.is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    /// Every package documented on the host, with its real copyright file,
    /// in one image, through both validators. About a minute; run on demand
    /// with `cargo test -- --ignored`.
    #[test]
    #[ignore]
    fn all_host_copyright_files_validate() {
        let pyspdxtools = find_tool("pyspdxtools").expect("pyspdxtools");
        let check = find_tool("check-jsonschema").expect("check-jsonschema");
        let schema = cyclonedx_schema_dir(&check)
            .expect("cyclonedx-python-lib schemas")
            .join("bom-1.6.SNAPSHOT.schema.json");
        let mut names: Vec<String> = std::fs::read_dir("/usr/share/doc")
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let packages: Vec<PackageSbom> = names
            .iter()
            .filter_map(|n| {
                let text = std::fs::read(format!("/usr/share/doc/{n}/copyright")).ok()?;
                Some(PackageSbom {
                    name: n.clone(),
                    version: "1.0-1".into(),
                    arch: "amd64".into(),
                    source: n.clone(),
                    source_version: "1.0-1".into(),
                    maintainer: "Someone <someone@example.org>".into(),
                    deb_sha256: hex_sha256(n.as_bytes()),
                    copyright: Some(String::from_utf8_lossy(&text).into_owned()),
                })
            })
            .collect();
        let d = format!("sha256:{}", "ab".repeat(32));
        let input = ImageSbomInput {
            name: "host",
            tag: "latest",
            platform: "linux/amd64",
            manifest_digest: &d,
            epoch: 0,
            os: OsInfo::default(),
            distro: "debian-12",
            repository: None,
            base: None,
            layers: vec![LayerSbom {
                digest: d.clone(),
                diff_id: d.clone(),
                packages,
                files: Vec::new(),
                components: Vec::new(),
            }],
            tool: Tool {
                name: "plinth",
                version: "0.1.0",
            },
            namespace: DEFAULT_NAMESPACE,
        };
        let dir = std::env::temp_dir().join("plinth-host-sbom");
        std::fs::create_dir_all(&dir).unwrap();
        let s = dir.join("host.spdx.json");
        let c = dir.join("host.cdx.json");
        std::fs::write(&s, spdx(&input).unwrap().json).unwrap();
        std::fs::write(&c, cyclonedx(&input).unwrap().json).unwrap();
        let out = Command::new(&pyspdxtools)
            .arg("-i")
            .arg(&s)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(&check)
            .arg("--base-uri")
            .arg(format!("file://{}", schema.display()))
            .arg("--schemafile")
            .arg(&schema)
            .arg(&c)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
