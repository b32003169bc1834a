//! The layer cache (`target/plinth-layers`): built layers kept by a key
//! computed from everything that decides their bytes, before anything is
//! unpacked, so a build with nothing changed unpacks and compresses
//! nothing. `verify` never uses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::layers::{ArchLayers, BuiltLayer, ImageLayers, LayerBlob, LayerContents};
use super::trees::image_and_lock;
use crate::debian::name::PackageName;
use crate::error::Result;
use crate::lockfile::{Lockfile, Lockfiles};
use crate::project::Project;
use crate::support::digest::{sha256_digest, sha256_hex};
use crate::support::fs::{remove_stale_temporaries, write_atomically};

/// Bumped whenever a code change alters layer bytes for the same inputs,
/// or what is kept beside them (`LayerContents`), so that reused layers
/// from an older plinth are never taken as current.
const LAYER_FORMAT: u32 = 4;

/// The cache keys of one image's own layer and debug layer.
pub(super) struct LayerKeys {
    own: String,
    debug: String,
}

/// For each image: the keys of its layers, computed from everything that
/// decides their bytes, before anything is unpacked.
pub(super) type Keys = BTreeMap<String, LayerKeys>;

pub(super) fn keys(
    project: &Project,
    locks: &Lockfiles,
    lock: &Lockfile,
    arch: &str,
    epoch: u64,
    images: &[String],
) -> Result<Keys> {
    let defs = &project.definitions;
    let dist = lock.distribution.as_str();
    let mut out = Keys::new();
    for name in images {
        let (image, locked) = image_and_lock(project, locks, lock, arch, name)?;
        let below = image
            .base
            .as_ref()
            .and_then(|b| out.get(b.as_str()))
            .map(|k| k.own.clone())
            .unwrap_or_default();
        let sums = |names: &[PackageName]| -> Vec<(String, String)> {
            names
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        lock.find(arch, n)
                            .map(|p| p.sha256.to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        };
        let key = |debug: bool, lower: &str, packages: Vec<(String, String)>| {
            let inputs = serde_json::json!({
                "format": LAYER_FORMAT,
                "plinth": env!("CARGO_PKG_VERSION"),
                "epoch": epoch,
                "arch": arch,
                "distribution": defs.distribution(dist),
                "settings": (&defs.settings.os_release, &defs.settings.drop),
                "image": (&image.ca_bundle, &image.path_owner, image.base.is_none()),
                "debug": debug,
                "lower": lower,
                "packages": packages,
            });
            sha256_hex(inputs.to_string().as_bytes())
        };
        let own = key(false, &below, sums(&locked.packages));
        let debug = key(true, &own, sums(&locked.debug_packages));
        out.insert(name.clone(), LayerKeys { own, debug });
    }
    Ok(out)
}

/// Built layers kept by recipe key (`target/plinth-layers`), so a build
/// with nothing changed unpacks and compresses nothing. `verify` never
/// uses it.
pub(super) struct LayerCache {
    dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedLayer {
    digest: String,
    diff_id: String,
    description: String,
    packages: Vec<String>,
    contents: LayerContents,
}

impl LayerCache {
    pub fn new(dir: &Path) -> Self {
        remove_stale_temporaries(dir);
        LayerCache {
            dir: dir.to_owned(),
        }
    }

    fn load(&self, key: &str) -> Option<BuiltLayer> {
        let meta: CachedLayer =
            serde_json::from_slice(&std::fs::read(self.dir.join(format!("{key}.json"))).ok()?)
                .ok()?;
        let bytes = std::fs::read(self.dir.join(meta.digest.trim_start_matches("sha256:"))).ok()?;
        // A damaged entry is rebuilt, never trusted.
        if sha256_digest(&bytes) != meta.digest {
            return None;
        }
        Some(BuiltLayer {
            layer: Arc::new(LayerBlob {
                digest: meta.digest,
                diff_id: meta.diff_id,
                size: bytes.len() as u64,
                bytes,
            }),
            packages: meta.packages,
            description: meta.description,
            contents: Arc::new(meta.contents),
        })
    }

    pub fn load_all(&self, keys: &Keys) -> Option<ArchLayers> {
        keys.iter()
            .map(|(name, k)| {
                let layers = ImageLayers {
                    own: self.load(&k.own)?,
                    debug: self.load(&k.debug)?,
                };
                Some((name.clone(), layers))
            })
            .collect()
    }

    /// Best effort: a cache that cannot be written only costs time.
    pub fn store_all(&self, keys: &Keys, layers: &ArchLayers) {
        for (name, k) in keys {
            let Some(built) = layers.get(name) else {
                continue;
            };
            for (key, l) in [(&k.own, &built.own), (&k.debug, &built.debug)] {
                let meta = CachedLayer {
                    digest: l.layer.digest.clone(),
                    diff_id: l.layer.diff_id.clone(),
                    description: l.description.clone(),
                    packages: l.packages.clone(),
                    contents: (*l.contents).clone(),
                };
                let blob = self.dir.join(l.layer.digest.trim_start_matches("sha256:"));
                let result = write_atomically(&blob, &l.layer.bytes).and_then(|_| {
                    write_atomically(
                        &self.dir.join(format!("{key}.json")),
                        &serde_json::to_vec(&meta).unwrap_or_default(),
                    )
                });
                if let Err(e) = result {
                    tracing::warn!("layer cache {}: {e}", self.dir.display());
                }
            }
        }
    }
}
