//! CycloneDX 1.6 JSON: the document of one per-architecture image and the
//! index document of a multi-arch tag.

use super::ids::{oci_purl, uuid_from};
use super::model::{
    Model, ModelComponent, ModelPackage, absolute, digest_hex, index_purl, non_empty,
    platform_arch, sorted_entries, split_maintainer, to_json,
};
use super::{
    ComponentKind, ImageSbomInput, IndexSbomInput, SbomDocument, SbomError, SbomKind, Tool,
};
use crate::debian::copyright::License;
use crate::support::digest::sha256_hex;
use crate::support::time::rfc3339;
use serde::Serialize;
use std::collections::BTreeSet;

// ---------------------------------------------------------------------------
// CycloneDX 1.6.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CdxBom {
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
pub(super) struct CdxMetadata {
    timestamp: String,
    lifecycles: Vec<CdxLifecycle>,
    tools: CdxTools,
    component: CdxComponent,
}

#[derive(Serialize)]
pub(super) struct CdxLifecycle {
    phase: &'static str,
}

#[derive(Serialize)]
pub(super) struct CdxTools {
    components: Vec<CdxComponent>,
}

#[derive(Serialize, Default)]
pub(super) struct CdxComponent {
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
pub(super) struct CdxOrganization {
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    contact: Vec<CdxContact>,
}

#[derive(Serialize)]
pub(super) struct CdxContact {
    email: String,
}

#[derive(Serialize)]
pub(super) struct CdxHash {
    alg: &'static str,
    content: String,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum CdxLicenseChoice {
    License {
        license: CdxLicense,
    },
    Expression {
        expression: String,
        acknowledgement: &'static str,
    },
}

#[derive(Serialize)]
pub(super) struct CdxLicense {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    acknowledgement: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<CdxText>,
}

#[derive(Serialize)]
pub(super) struct CdxText {
    #[serde(rename = "contentType")]
    content_type: &'static str,
    content: String,
}

#[derive(Serialize)]
pub(super) struct CdxExternalReference {
    url: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<CdxHash>,
}

#[derive(Serialize)]
pub(super) struct CdxProperty {
    name: String,
    value: String,
}

#[derive(Serialize)]
pub(super) struct CdxDependency {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(rename = "dependsOn")]
    depends_on: Vec<String>,
}

pub(super) fn prop(name: &str, value: &str) -> CdxProperty {
    CdxProperty {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

pub(super) fn sha256_hash(hex: &str) -> CdxHash {
    CdxHash {
        alg: "SHA-256",
        content: hex.to_ascii_lowercase(),
    }
}

pub(super) fn cdx_tools(tool: Tool<'_>) -> CdxTools {
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
pub(super) fn cdx_licenses(l: &License) -> (Vec<CdxLicenseChoice>, Option<String>) {
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
pub(super) fn expression_leaves(expr: &str) -> Vec<String> {
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

pub(super) fn cdx_supplier(maintainer: &str) -> Option<CdxOrganization> {
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

pub(super) fn cdx_package(p: &ModelPackage<'_>) -> CdxComponent {
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

pub(super) fn cdx_extra(c: &ModelComponent<'_>) -> CdxComponent {
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
            timestamp: m.created()?,
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
    let index_purl = index_purl(input)?;
    let mut components = Vec::new();
    let mut refs = Vec::new();
    for e in sorted_entries(input)? {
        let purl = oci_purl(
            input.name,
            e.manifest_digest,
            Some(&platform_arch(e.platform)?),
            input.repository,
            input.tag,
        );
        let serial = e.documents.cyclonedx.id.trim_start_matches("urn:uuid:");
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
                    content: sha256_hex(&e.documents.cyclonedx.json),
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
            timestamp: rfc3339(input.epoch)?,
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

pub(super) fn finish_cdx(mut bom: CdxBom) -> Result<SbomDocument, SbomError> {
    let draft = to_json(&bom)?;
    let serial = format!("urn:uuid:{}", uuid_from(&draft));
    bom.serial_number = Some(serial.clone());
    Ok(SbomDocument {
        kind: SbomKind::CycloneDx,
        id: serial,
        json: to_json(&bom)?,
    })
}
