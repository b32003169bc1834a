//! The OCI data model: descriptors, platforms, image configs, manifests
//! and indexes, as serde structs whose field order and `BTreeMap`s fix
//! the key order of every document.

use super::blob::descriptor_for;
use super::{
    ANNOTATION_REF_NAME, EMPTY_BLOB, MEDIA_TYPE_EMPTY, MEDIA_TYPE_IMAGE_INDEX,
    MEDIA_TYPE_IMAGE_MANIFEST, SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

// ---------------------------------------------------------------------------
// Data model

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// The descriptor of [`EMPTY_BLOB`], the config of every artifact.
    pub fn empty() -> Self {
        descriptor_for(MEDIA_TYPE_EMPTY, EMPTY_BLOB)
    }

    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }

    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    pub fn with_artifact_type(mut self, artifact_type: impl Into<String>) -> Self {
        self.artifact_type = Some(artifact_type.into());
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// `os/architecture[/variant]`, as SBOMs and tools name a platform.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.variant {
            Some(v) => write!(f, "{}/{}/{v}", self.os, self.architecture),
            None => write!(f, "{}/{}", self.os, self.architecture),
        }
    }
}

/// Debian architecture names and the OCI platforms (architecture,
/// variant) they are published as. Variants follow what registries and
/// engines match on (`linux/arm64/v8`, `linux/arm/v7`), not Debian's names.
const DEBIAN_PLATFORMS: [(&str, &str, Option<&str>); 10] = [
    ("amd64", "amd64", None),
    ("arm64", "arm64", Some("v8")),
    ("armhf", "arm", Some("v7")),
    ("armel", "arm", Some("v5")),
    ("i386", "386", None),
    ("ppc64el", "ppc64le", None),
    ("s390x", "s390x", None),
    ("riscv64", "riscv64", None),
    ("mips64el", "mips64le", None),
    ("loong64", "loong64", None),
];

impl Platform {
    /// The OCI platform of a Debian architecture name, or `None` for one
    /// plinth does not know.
    pub fn from_debian_arch(arch: &str) -> Option<Self> {
        let (_, architecture, variant) = DEBIAN_PLATFORMS.iter().find(|(d, _, _)| *d == arch)?;
        Some(Self {
            architecture: (*architecture).to_owned(),
            os: "linux".to_owned(),
            variant: variant.map(str::to_owned),
        })
    }

    /// The Debian architecture name of a Linux platform, or `None` for one
    /// plinth does not know. A missing variant matches (`linux/arm64`).
    pub fn debian_arch(&self) -> Option<&'static str> {
        if self.os != "linux" {
            return None;
        }
        DEBIAN_PLATFORMS
            .iter()
            .find(|(_, a, v)| {
                *a == self.architecture && (self.variant.is_none() || self.variant.as_deref() == *v)
            })
            .map(|(d, _, _)| *d)
    }
}

/// The image configuration blob ([`MEDIA_TYPE_IMAGE_CONFIG`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// The execution parameters inside [`ImageConfig`]; the spec capitalises
/// these keys, unlike every other key in the config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    // `Some(vec![])` and `None` differ to engines (an empty list clears an
    // inherited value), so these stay options rather than skip-if-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
}

/// A JSON `{}`: the spec's value type for each exposed port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

impl RootFs {
    pub fn layers(diff_ids: Vec<String>) -> Self {
        Self {
            kind: "layers".to_owned(),
            diff_ids,
        }
    }
}

impl Default for RootFs {
    fn default() -> Self {
        Self::layers(Vec::new())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// An image manifest, or an artifact manifest when `artifact_type` is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    // The spec only says SHOULD, so manifests written by others may lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    pub fn image(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            media_type: Some(MEDIA_TYPE_IMAGE_MANIFEST.to_owned()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// An artifact (an SBOM, say) attached to `subject` as a referrer, with
    /// the empty config the spec prescribes for artifacts.
    pub fn artifact(
        artifact_type: impl Into<String>,
        layers: Vec<Descriptor>,
        subject: Descriptor,
    ) -> Self {
        Self {
            artifact_type: Some(artifact_type.into()),
            subject: Some(subject),
            ..Self::image(Descriptor::empty(), layers)
        }
    }
}

/// An image index; also the shape of a layout's `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    // The spec only says SHOULD, and skopeo 1.9 writes index.json without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    pub fn new(manifests: Vec<Descriptor>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            media_type: Some(MEDIA_TYPE_IMAGE_INDEX.to_owned()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The entry tagged `name` (by [`ANNOTATION_REF_NAME`]), as `oci:DIR:name`
    /// resolves it.
    pub fn find_ref(&self, name: &str) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .find(|d| d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(name))
    }
}
