//! Stage 2, the build: lockfiles → `.deb` files (through the download
//! cache) → one root file system per layer → gzip layers → configs,
//! manifests, a multi-arch index per tag and SBOMs → one OCI image layout
//! per image repository, and the digests of every tag.
//!
//! [`build`] is the whole stage as a short list of named steps, each in a
//! module of its own: [`debs`] (fetch and check the packages), [`trees`]
//! (unpack them into one tree per layer and compress it), [`layer_cache`]
//! (reuse layers whose inputs did not change), [`apps`] (application
//! images on top), [`layouts`] (write the layouts and SBOMs).
//!
//! Reads no archive index and resolves nothing: the lockfiles are the only
//! package input, and a stale lock stops the build. Every input is
//! fetched, checked and built before the first output is written, so a
//! build that fails leaves the previous outputs as they were.

mod apps;
mod debs;
mod layer_cache;
mod layers;
mod layouts;
mod trees;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub use apps::APP_TAG;
pub use layers::{BuiltLayer, ImageLayers, LayerBlob, LayerContents};

use crate::apps::AppImage;
use crate::digests::TagSummary;
use crate::download::cache::Cache;
use crate::download::http::FetchOptions;
use crate::error::{Error, Result};
use crate::lockfile::Lockfiles;
use crate::net::Environment;
use crate::project::{Progress, Project};
use debs::Downloader;
use layer_cache::LayerCache;
use layers::{ArchLayers, DistributionLayers};

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where the OCI layouts go (`target/images`).
    pub out_dir: PathBuf,
    /// Where built layers are kept for reuse; `None` builds every layer.
    pub layer_cache: Option<PathBuf>,
    pub offline: bool,
    /// Image names to build (with what they stand on); empty for all.
    pub images: Vec<String>,
    /// `SOURCE_DATE_EPOCH`, overriding each lockfile's epoch.
    pub source_date_epoch: Option<u64>,
    pub fetch: FetchOptions,
    /// The variables that decide trust and proxies (`SSL_CERT_FILE`,
    /// `https_proxy`, ...) for downloads.
    pub network: Environment,
    pub apt_dir: PathBuf,
    /// Application images to build on the golden ones (see
    /// [`crate::apps::discover`]).
    pub apps: Vec<AppImage>,
    /// Where their binaries are compiled (`target/plinth-apps`).
    pub app_target_dir: PathBuf,
    /// The `cargo` that compiles them.
    pub cargo: PathBuf,
    /// Architectures the application images leave out of this run, though
    /// they declare them; such a build is not the recorded one.
    pub skip_app_architectures: Vec<String>,
}

/// What a build was asked for: golden images (with everything they stand
/// on, in stacking order) and application images.
struct Selection<'a> {
    images: Vec<String>,
    apps: Vec<&'a AppImage>,
}

/// Builds the images and writes their layouts under `options.out_dir`.
pub fn build(
    project: &Project,
    cache: &Cache,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Vec<TagSummary>> {
    let locks = project.lockfiles()?;
    let selection = select(project, &options.apps, &options.images)?;
    let epochs = epochs(project, &locks, options)?;
    // Compiler errors come first: they are the likeliest failure.
    let compiled = apps::compile_all(project, &selection.apps, &epochs, options, progress)?;
    let golden = golden_layers(
        project, &locks, &selection, &epochs, cache, options, progress,
    )?;
    let app_layers = apps::build_layers(project, &compiled, &golden, &epochs)?;
    layouts::write_all(
        project,
        &selection.images,
        &golden,
        &app_layers,
        &epochs,
        options,
        progress,
    )
}

/// Each distribution's epoch: the lock's, or `SOURCE_DATE_EPOCH`.
fn epochs(
    project: &Project,
    locks: &Lockfiles,
    options: &BuildOptions,
) -> Result<BTreeMap<String, u64>> {
    project
        .definitions
        .distributions()
        .map(|(dist, _)| {
            let epoch = match options.source_date_epoch {
                Some(e) => e,
                None => locks.get(dist)?.epoch,
            };
            Ok((dist.to_owned(), epoch))
        })
        .collect()
}

/// The layers of every selected golden image, per distribution and
/// architecture: from the layer cache where every input is unchanged,
/// otherwise fetched, unpacked and compressed.
#[allow(clippy::too_many_arguments)]
fn golden_layers(
    project: &Project,
    locks: &Lockfiles,
    selection: &Selection<'_>,
    epochs: &BTreeMap<String, u64>,
    cache: &Cache,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Vec<DistributionLayers>> {
    let defs = &project.definitions;
    let downloader = Downloader::new(project, cache, options)?;
    let layer_cache = options.layer_cache.as_deref().map(LayerCache::new);
    let mut out = Vec::new();
    for (dist, _) in defs.distributions() {
        let lock = locks.get(dist)?;
        let epoch = epochs[dist];
        let mut per_arch = BTreeMap::new();
        let mut missing = Vec::new();
        for arch in defs.architectures(dist) {
            let keys = layer_cache::keys(project, locks, lock, arch, epoch, &selection.images)?;
            match layer_cache.as_ref().and_then(|c| c.load_all(&keys)) {
                Some(layers) => {
                    tracing::info!("{dist} {arch}: every layer reused from the layer cache");
                    per_arch.insert(arch.to_string(), layers);
                }
                None => missing.push((arch.to_string(), keys)),
            }
        }
        if !missing.is_empty() {
            let debs = downloader.fetch_all(lock, &selection.images, progress)?;
            for (arch, keys) in missing {
                let context = trees::ArchContext {
                    project,
                    locks,
                    lock,
                    arch: &arch,
                    epoch,
                    debs: &debs,
                };
                let layers: ArchLayers = context.build(&selection.images, progress)?;
                if let Some(c) = &layer_cache {
                    c.store_all(&keys, &layers);
                }
                per_arch.insert(arch, layers);
            }
        }
        for (arch, layers) in &per_arch {
            list_special_modes(dist, arch, layers);
        }
        out.push(DistributionLayers {
            distribution: dist.to_owned(),
            epoch,
            per_arch,
        });
    }
    Ok(out)
}

/// Warns of every setuid or setgid file and world-writable directory
/// without the sticky bit in the layers (reused or built), naming image,
/// package and path: the build's list of what a reviewer should look at.
fn list_special_modes(dist: &str, arch: &str, layers: &ArchLayers) {
    for (image, layers) in layers {
        for (layer, which) in [(&layers.own, ""), (&layers.debug, " (debug layer)")] {
            for special in &layer.contents.special {
                tracing::warn!("{image} {dist} {arch}{which}: {special}");
            }
        }
    }
}

/// The requested golden images and everything they stand on, in
/// stacking order, and the requested application images (with their
/// bases among the golden ones).
fn select<'a>(project: &Project, apps: &'a [AppImage], names: &[String]) -> Result<Selection<'a>> {
    let all = project.definitions.image_names();
    if names.is_empty() {
        return Ok(Selection {
            images: all,
            apps: apps.iter().collect(),
        });
    }
    let mut keep = BTreeSet::new();
    let mut chosen = Vec::new();
    for n in names {
        if let Some(app) = apps.iter().find(|a| &a.name == n) {
            keep.extend(project.definitions.stack(&app.base));
            chosen.push(app);
        } else if all.contains(n) {
            keep.extend(project.definitions.stack(n));
        } else {
            let app_names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "unknown image {n:?}; images/ defines {}{}",
                all.join(", "),
                if app_names.is_empty() {
                    String::new()
                } else {
                    format!(" and the workspace declares {}", app_names.join(", "))
                }
            )));
        }
    }
    Ok(Selection {
        images: all.into_iter().filter(|n| keep.contains(n)).collect(),
        apps: chosen,
    })
}
