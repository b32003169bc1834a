//! The model both formats are written from: the input checked and put in
//! canonical order (packages, files and components sorted, ids made
//! unique, licences resolved to document-unique `LicenseRef-` ids), and
//! the small checks and conversions both writers share.

use super::ids::{deb_purl, oci_purl};
use super::{
    Component, GeneratedFile, ImageSbomInput, IndexEntry, IndexSbomInput, LayerSbom, PackageSbom,
    SbomError,
};
use crate::debian::copyright::{self, ExtractedLicense, License};
use crate::support::digest::{is_lower_hex, sha256_hex};
use crate::support::time::rfc3339;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------
// The model both formats are written from.

/// The input checked and put in canonical order, with licences resolved to
/// document-unique `LicenseRef-` ids.
pub(super) struct Model<'a> {
    pub(super) input: &'a ImageSbomInput<'a>,
    pub(super) image_purl: String,
    pub(super) base_purl: Option<String>,
    pub(super) layers: Vec<ModelLayer<'a>>,
    pub(super) extracted: Vec<ExtractedLicense>,
}

pub(super) struct ModelLayer<'a> {
    pub(super) index: usize,
    pub(super) layer: &'a LayerSbom,
    /// Sorted by (name, arch).
    pub(super) packages: Vec<ModelPackage<'a>>,
    /// Sorted by path.
    pub(super) files: Vec<&'a GeneratedFile>,
    /// Sorted by purl.
    pub(super) components: Vec<ModelComponent<'a>>,
}

pub(super) struct ModelPackage<'a> {
    pub(super) pkg: &'a PackageSbom,
    pub(super) purl: String,
    pub(super) spdx_id: String,
    /// Index into the licences handed to [`resolve_license_refs`].
    pub(super) license_index: usize,
    pub(super) license: License,
}

pub(super) struct ModelComponent<'a> {
    pub(super) comp: &'a Component,
    pub(super) spdx_id: String,
    pub(super) license_index: usize,
    pub(super) license: License,
}

impl<'a> Model<'a> {
    pub(super) fn new(input: &'a ImageSbomInput<'a>) -> Result<Self, SbomError> {
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
                    p.spdx_id = format!("{}-{}", p.spdx_id, &sha256_hex(p.purl.as_bytes())[..8]);
                }
            }
            for c in &mut l.components {
                if count[&c.spdx_id] > 1 {
                    c.spdx_id =
                        format!("{}-{}", c.spdx_id, &sha256_hex(c.comp.purl.as_bytes())[..8]);
                }
            }
        }
    }

    pub(super) fn created(&self) -> Result<String, SbomError> {
        Ok(rfc3339(self.input.epoch)?)
    }
}

/// Two packages may both use `LicenseRef-public-domain` with different
/// texts; a document may define each id once. Ids whose texts differ get a
/// suffix from their text (every variant, so no package is privileged), and
/// the expressions are rewritten to match. Same id with the same text is
/// shared.
pub(super) fn resolve_license_refs(
    licenses: Vec<License>,
) -> (Vec<License>, Vec<ExtractedLicense>) {
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
                    let new_id = format!("{}-{}", r.id, &sha256_hex(r.text.as_bytes())[..8]);
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
pub(super) fn rename_tokens(expr: &str, renames: &BTreeMap<String, String>) -> String {
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

/// The purl of a multi-arch tag's index, once its digest is checked.
pub(super) fn index_purl(input: &IndexSbomInput<'_>) -> Result<String, SbomError> {
    check_digest("index digest", input.index_digest)?;
    Ok(oci_purl(
        input.name,
        input.index_digest,
        None,
        input.repository,
        input.tag,
    ))
}

pub(super) fn sorted_entries<'a>(
    input: &'a IndexSbomInput<'a>,
) -> Result<Vec<&'a IndexEntry<'a>>, SbomError> {
    let mut v: Vec<&IndexEntry> = input.images.iter().collect();
    for e in &v {
        check_digest(
            &format!("{} manifest digest", e.platform),
            e.manifest_digest,
        )?;
        platform_arch(e.platform)?;
    }
    v.sort_by(|a, b| a.platform.cmp(b.platform));
    Ok(v)
}

/// `linux/arm64/v8` → `arm64`.
pub(super) fn platform_arch(platform: &str) -> Result<String, SbomError> {
    let mut parts = platform.split('/');
    match (parts.next(), parts.next()) {
        (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => Ok(arch.to_owned()),
        _ => Err(SbomError::BadPlatform(platform.to_owned())),
    }
}

/// `libc6_2.41-12_amd64.deb`: Debian's file name drops the epoch.
pub(super) fn deb_file_name(p: &PackageSbom) -> String {
    let version = p
        .version
        .split_once(':')
        .map_or(p.version.as_str(), |(_, v)| v);
    format!("{}_{}_{}.deb", p.name, version, p.arch)
}

/// `Name <email>` → (`Name`, `email`). The email is kept only when it
/// looks like one, since CycloneDX validates it as an address.
pub(super) fn split_maintainer(m: &str) -> (String, Option<String>) {
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

pub(super) fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

pub(super) fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

pub(super) fn check_digest(what: &str, value: &str) -> Result<(), SbomError> {
    match value.strip_prefix("sha256:") {
        Some(h) if is_lower_hex(h, 64) => Ok(()),
        _ => Err(SbomError::BadDigest {
            what: what.to_owned(),
            value: value.to_owned(),
            algorithm: "sha256:<64 hex>",
        }),
    }
}

pub(super) fn check_hex(what: &str, value: &str, len: usize) -> Result<(), SbomError> {
    if is_lower_hex(value, len) {
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

pub(super) fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, SbomError> {
    let mut out = serde_json::to_vec_pretty(v).map_err(|e| SbomError::Json(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}
