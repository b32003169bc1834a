//! SPDX 2.3 JSON: the document of one per-architecture image and the
//! index document of a multi-arch tag.

use super::ids::{oci_purl, uuid_from};
use super::model::{
    Model, absolute, deb_file_name, digest_hex, index_purl, non_empty, platform_arch,
    sorted_entries, split_maintainer, to_json,
};
use super::{
    ComponentKind, GeneratedFile, ImageSbomInput, IndexSbomInput, SbomDocument, SbomError,
    SbomKind, Tool,
};
use crate::debian::copyright::{self};
use crate::support::digest::{sha1_hex, sha256_hex};
use crate::support::time::rfc3339;
use serde::Serialize;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// SPDX 2.3.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpdxDocumentJson {
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
pub(super) struct SpdxCreationInfo {
    created: String,
    creators: Vec<String>,
    license_list_version: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpdxExternalDocumentRef {
    external_document_id: String,
    spdx_document: String,
    checksum: SpdxChecksum,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpdxPackage {
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
pub(super) struct SpdxVerificationCode {
    package_verification_code_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpdxChecksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpdxExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpdxFile {
    file_name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    checksums: Vec<SpdxChecksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpdxExtractedLicensingInfo {
    license_id: String,
    extracted_text: String,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpdxRelationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

pub(super) fn rel(a: &str, ty: &'static str, b: &str) -> SpdxRelationship {
    SpdxRelationship {
        spdx_element_id: a.to_owned(),
        relationship_type: ty,
        related_spdx_element: b.to_owned(),
    }
}

pub(super) fn purl_ref(purl: &str) -> Vec<SpdxExternalRef> {
    vec![SpdxExternalRef {
        reference_category: "PACKAGE-MANAGER",
        reference_type: "purl",
        reference_locator: purl.to_owned(),
    }]
}

pub(super) fn sha256_checksum(hex: &str) -> SpdxChecksum {
    SpdxChecksum {
        algorithm: "SHA256",
        checksum_value: hex.to_ascii_lowercase(),
    }
}

pub(super) const SPDX_IMAGE: &str = "SPDXRef-Image";

pub(super) const SPDX_OS: &str = "SPDXRef-OperatingSystem";

pub(super) const SPDX_BASE: &str = "SPDXRef-BaseImage";

pub(super) fn spdx_layer_id(i: usize) -> String {
    format!("SPDXRef-Layer-{i}")
}

/// The SPDX 2.3 document of one per-arch image.
pub fn spdx(input: &ImageSbomInput<'_>) -> Result<SbomDocument, SbomError> {
    let m = Model::new(input)?;
    let created = m.created()?;
    let mut packages = Vec::new();
    let mut files = Vec::new();
    let mut rels = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", SPDX_IMAGE)];

    packages.push(SpdxPackage {
        built_date: Some(created.clone()),
        ..container_package(
            input.name,
            SPDX_IMAGE,
            input.manifest_digest,
            format!(
                "Container image {}:{} for {}",
                input.name, input.tag, input.platform
            ),
            &m.image_purl,
        )
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
        packages.push(container_package(
            &base.name,
            SPDX_BASE,
            &base.manifest_digest,
            format!("Base image {}:{}", base.name, base.tag),
            purl,
        ));
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
                    format!("{file_id}-{}", &sha256_hex(f.path.as_bytes())[..8])
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
    let index_purl = index_purl(input)?;
    let mut packages = vec![SpdxPackage {
        built_date: Some(rfc3339(input.epoch)?),
        ..container_package(
            input.name,
            "SPDXRef-ImageIndex",
            input.index_digest,
            format!("Multi-platform image index {}:{}", input.name, input.tag),
            &index_purl,
        )
    }];
    let mut rels = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-ImageIndex")];
    let mut ext = Vec::new();
    for e in sorted_entries(input)? {
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
        packages.push(container_package(
            input.name,
            &pkg_id,
            e.manifest_digest,
            format!(
                "Container image {}:{} for {}",
                input.name, input.tag, e.platform
            ),
            &purl,
        ));
        ext.push(SpdxExternalDocumentRef {
            external_document_id: doc_ref.clone(),
            spdx_document: e.documents.spdx.id.clone(),
            // SPDX 2.3 (6.6) asks for the SHA-1 of the referenced document.
            checksum: SpdxChecksum {
                algorithm: "SHA1",
                checksum_value: sha1_hex(&e.documents.spdx.json),
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
        creation_info: spdx_creation_info(rfc3339(input.epoch)?, input.tool),
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

/// The package of an image, an image index or a base image: named by its
/// repository, identified by its digest and purl.
fn container_package(
    name: &str,
    spdx_id: &str,
    digest: &str,
    description: String,
    purl: &str,
) -> SpdxPackage {
    SpdxPackage {
        name: name.to_owned(),
        spdx_id: spdx_id.to_owned(),
        version_info: Some(digest.to_owned()),
        download_location: "NOASSERTION",
        checksums: vec![sha256_checksum(digest_hex(digest))],
        description: Some(description),
        external_refs: purl_ref(purl),
        primary_package_purpose: Some("CONTAINER"),
        ..Default::default()
    }
}

pub(super) fn spdx_creation_info(created: String, tool: Tool<'_>) -> SpdxCreationInfo {
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
pub(super) fn finish_spdx(
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
pub(super) fn verification_code(files: &[&GeneratedFile]) -> String {
    let mut sums: Vec<String> = files.iter().map(|f| f.sha1.to_ascii_lowercase()).collect();
    sums.sort();
    sha1_hex(sums.concat().as_bytes())
}

/// `Organization: name (email)`. Parentheses in the name would confuse the
/// actor syntax, so they are dropped.
pub(super) fn spdx_actor(kind: &str, name: &str, email: Option<&str>) -> Option<String> {
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
