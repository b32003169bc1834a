//! What the build makes of each image before it becomes a layout: its
//! layers, compressed, with what their SBOMs say of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::rootfs::SpecialMode;
use crate::sbom::{Component, GeneratedFile, PackageSbom};

/// A layer and where it came from, for history and SBOMs.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    pub layer: Arc<LayerBlob>,
    pub packages: Vec<String>,
    pub description: String,
    pub contents: Arc<LayerContents>,
}

/// What a layer holds, as its SBOM lists it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LayerContents {
    pub packages: Vec<PackageSbom>,
    pub generated: Vec<GeneratedFile>,
    /// Its setuid and setgid files and world-writable directories
    /// without the sticky bit.
    #[serde(default)]
    pub special: Vec<SpecialMode>,
    /// Cargo crates, in application layers only (never cached).
    #[serde(skip)]
    pub components: Vec<Component>,
}

/// A compressed layer: its bytes and the two digests an image names it by.
#[derive(Debug)]
pub struct LayerBlob {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub bytes: Vec<u8>,
}

/// The two layers one image adds on top of its base, for one
/// architecture: its packages, and the debug tools of its debug variants.
#[derive(Debug, Clone)]
pub struct ImageLayers {
    pub own: BuiltLayer,
    pub debug: BuiltLayer,
}

/// The layers of every image for one architecture, by image name.
pub(super) type ArchLayers = BTreeMap<String, ImageLayers>;

/// The golden layers of one distribution, per architecture.
pub(super) struct DistributionLayers {
    pub distribution: String,
    pub epoch: u64,
    pub per_arch: BTreeMap<String, ArchLayers>,
}
