//! The image build: lockfiles → `.deb` files (through the download cache)
//! → one rootfs per layer → gzip layers → configs, manifests, a multi-arch
//! index per tag → one OCI image layout per image repository.
//!
//! Reads no archive index and resolves nothing: the lockfiles are the only
//! package input, and a stale lock stops the build.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::app::AppImage;
use crate::cache::Cache;
use crate::deb::{Deb, read_deb};
use crate::definitions::{Image, hex};
use crate::entry::{Entry, EntryKind};
use crate::fetch::{FetchOptions, Fetcher};
use crate::layer::{Layer, write_layer};
use crate::lockfile::{LockedPackage, Lockfile};
use crate::mirrors::Mirrors;
use crate::oci::{
    self, Blob, ContainerConfig, Descriptor, History, ImageConfig, Index, LayoutWriter, Manifest,
    Platform, RootFs,
};
use crate::project::{Error, Progress, Project, Result};
use crate::rootfs::{GENERATED, Owners, Rootfs, View};
use crate::sbom::{
    self, GeneratedFile, ImageSbomInput, IndexEntry, IndexSbomInput, LayerSbom, OsInfo,
    PackageSbom, SbomDocument, SbomKind,
};
use crate::system;

mod apps;
pub use apps::APP_TAG;

/// Bumped whenever a code change alters layer bytes for the same inputs,
/// so that reused layers from an older plinth are never taken as current.
const LAYER_FORMAT: u32 = 3;

/// The four tags of every image, in output order.
pub const VARIANTS: [Variant; 4] = [
    Variant {
        tag: "latest",
        debug: false,
        nonroot: false,
    },
    Variant {
        tag: "nonroot",
        debug: false,
        nonroot: true,
    },
    Variant {
        tag: "debug",
        debug: true,
        nonroot: false,
    },
    Variant {
        tag: "debug-nonroot",
        debug: true,
        nonroot: true,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub tag: &'static str,
    pub debug: bool,
    pub nonroot: bool,
}

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
    pub apt_dir: PathBuf,
    /// Application images to build on the golden ones (see
    /// [`crate::app::discover`]).
    pub apps: Vec<AppImage>,
    /// Where their binaries are compiled (`target/plinth-apps`).
    pub app_target_dir: PathBuf,
    /// The `cargo` that compiles them.
    pub cargo: PathBuf,
}

/// One built tag of one image repository: every digest it is known by.
/// `lockfiles/digests.toml` records these; `verify` compares them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TagSummary {
    pub repository: String,
    pub tag: String,
    pub index: String,
    /// The SBOM documents of the whole multi-arch tag.
    pub spdx: String,
    pub cyclonedx: String,
    pub platform: Vec<PlatformSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlatformSummary {
    pub architecture: String,
    pub manifest: String,
    pub spdx: String,
    pub cyclonedx: String,
    /// Layer digests, bottom to top.
    pub layers: Vec<String>,
    /// Compressed bytes of all layers.
    pub size: u64,
}

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
    /// Cargo crates, in application layers only (never cached).
    #[serde(skip)]
    pub components: Vec<sbom::Component>,
}

#[derive(Debug)]
pub struct LayerBlob {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub bytes: Vec<u8>,
}

/// Builds the images and writes their layouts under `options.out_dir`.
pub fn build(
    project: &Project,
    cache: &Cache,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Vec<TagSummary>> {
    crate::lock::check(project)?;
    let defs = &project.definitions;
    let (wanted, apps) = selected_images(project, &options.apps, &options.images)?;
    let epochs = defs
        .distributions()
        .map(|(dist, _)| {
            let epoch = match options.source_date_epoch {
                Some(e) => e,
                None => Lockfile::read(&project.lockfile_path(dist))?.epoch,
            };
            Ok((dist.to_owned(), epoch))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    // Compiler errors come first: they are the likeliest failure.
    let compiled = apps::compile_all(project, &apps, &epochs, options, progress)?;
    let mirrors = Mirrors::resolve(&defs.settings, &options.apt_dir)?;
    let fetcher = Fetcher::new(options.fetch.clone());
    let mut summaries = Vec::new();
    let layer_cache = options.layer_cache.as_deref().map(LayerCache::new);
    // Every input is fetched, checked and built before the first output is
    // written, so a build that fails leaves the previous outputs as they were.
    let mut built = Vec::new();
    for (dist, _) in defs.distributions() {
        let lock = Lockfile::read(&project.lockfile_path(dist))?;
        let epoch = epochs[dist];
        let mut per_arch = BTreeMap::new();
        let mut missing = Vec::new();
        for arch in &defs.settings.architectures {
            let recipes = recipes(project, &lock, dist, arch, epoch, &wanted)?;
            match layer_cache.as_ref().and_then(|c| c.load_all(&recipes)) {
                Some(layers) => {
                    tracing::info!("{dist} {arch}: every layer reused from the layer cache");
                    per_arch.insert(arch.clone(), layers);
                }
                None => missing.push((arch.clone(), recipes)),
            }
        }
        if !missing.is_empty() {
            let needed = needed_packages(&lock, &wanted);
            let debs = fetch_all(
                &lock,
                &needed,
                cache,
                &mirrors,
                &fetcher,
                options.offline,
                progress,
            )?;
            for (arch, recipes) in missing {
                let layers =
                    build_arch(project, &lock, dist, &arch, epoch, &wanted, &debs, progress)?;
                if let Some(c) = &layer_cache {
                    c.store_all(&recipes, &layers);
                }
                per_arch.insert(arch, layers);
            }
        }
        built.push((dist, epoch, per_arch));
    }
    let bases: apps::Bases = built.iter().map(|(d, _, p)| (*d, p)).collect();
    let app_layers = compiled
        .iter()
        .map(|c| {
            let epoch = epochs[&c.app.distribution];
            Ok((c.app, apps::layers(project, c, &bases, epoch)?))
        })
        .collect::<Result<Vec<_>>>()?;
    // Stale sums must not outlive a write that fails half way; they are
    // written anew once every layout is in place.
    let sums = options.out_dir.join("SHA256SUMS");
    if let Err(e) = std::fs::remove_file(&sums)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(Error::Io {
            path: sums,
            source: e,
        });
    }
    let mut manifests = Manifests::new();
    for (dist, epoch, per_arch) in &built {
        summaries.extend(write_layouts(
            project,
            dist,
            *epoch,
            &wanted,
            per_arch,
            options,
            &mut manifests,
            progress,
        )?);
    }
    summaries.extend(apps::write_layouts(
        project,
        &app_layers,
        &bases,
        &epochs,
        &manifests,
        options,
        progress,
    )?);
    write_checksums(&options.out_dir)?;
    Ok(summaries)
}

/// `SHA256SUMS` over every file a release would publish: the layouts and
/// the SBOMs beside them, in path order.
fn write_checksums(out_dir: &Path) -> Result<()> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Temporary directories of a concurrent writer, and the sums.
            if name.starts_with('.') || name == "SHA256SUMS" {
                continue;
            }
            if path.is_dir() {
                walk(&path, base, out)?;
            } else if let Ok(rel) = path.strip_prefix(base) {
                out.push((rel.to_string_lossy().into_owned(), path.clone()));
            }
        }
        Ok(())
    }
    let io = |source| Error::Io {
        path: out_dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    walk(out_dir, out_dir, &mut files).map_err(io)?;
    files.sort();
    let lines: Vec<String> = files
        .par_iter()
        .map(|(rel, path)| {
            let bytes = std::fs::read(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            Ok(format!("{}  {rel}\n", hex(&Sha256::digest(&bytes))))
        })
        .collect::<Result<_>>()?;
    write_beside(&out_dir.join("SHA256SUMS"), lines.concat().as_bytes())
}

/// The requested golden images and everything they stand on, in
/// stacking order, and the requested application images (with their
/// bases among the golden ones).
fn selected_images<'a>(
    project: &Project,
    apps: &'a [AppImage],
    names: &[String],
) -> Result<(Vec<String>, Vec<&'a AppImage>)> {
    let all = project.definitions.image_names();
    if names.is_empty() {
        return Ok((all, apps.iter().collect()));
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
    Ok((
        all.into_iter().filter(|n| keep.contains(n)).collect(),
        chosen,
    ))
}

fn needed_packages<'l>(lock: &'l Lockfile, images: &[String]) -> Vec<&'l LockedPackage> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for img in lock.image.iter().filter(|i| images.contains(&i.name)) {
        for name in img.packages.iter().chain(&img.debug_packages) {
            if let Some(p) = lock.find(&img.architecture, name)
                && seen.insert(&p.sha256)
            {
                out.push(p);
            }
        }
    }
    out
}

/// Fetches every needed `.deb` through the cache and parses it. A cached
/// file that no longer matches is discarded and fetched again; a mirror
/// that serves other bytes than the lock names is an error.
fn fetch_all(
    lock: &Lockfile,
    needed: &[&LockedPackage],
    cache: &Cache,
    mirrors: &Mirrors,
    fetcher: &Fetcher,
    offline: bool,
    progress: &dyn Progress,
) -> Result<HashMap<String, Arc<Deb>>> {
    progress.begin(
        &format!("{}: packages", lock.distribution),
        needed.len() as u64,
    );
    let debs = needed
        .par_iter()
        .map(|p| {
            let bytes = fetch_deb(lock, p, cache, mirrors, fetcher, offline)?;
            let deb = read_deb(&bytes).map_err(|e| Error::Package {
                package: format!("{} {} ({})", p.name, p.version, p.filename),
                why: e.to_string(),
            })?;
            progress.step(&p.name);
            Ok((p.sha256.clone(), Arc::new(deb)))
        })
        .collect::<Result<HashMap<_, _>>>();
    progress.end();
    debs
}

fn fetch_deb(
    lock: &Lockfile,
    p: &LockedPackage,
    cache: &Cache,
    mirrors: &Mirrors,
    fetcher: &Fetcher,
    offline: bool,
) -> Result<Vec<u8>> {
    if let Some(bytes) = cache.get(&p.sha256) {
        return Ok(bytes);
    }
    if offline {
        return Err(Error::Package {
            package: p.filename.clone(),
            why: "not in the download cache, and --offline is set".into(),
        });
    }
    let archive = lock
        .release
        .iter()
        .find(|r| r.suite == p.suite)
        .map(|r| r.archive.as_str())
        .ok_or_else(|| Error::Package {
            package: p.name.clone(),
            why: format!("suite {} is not among the lock's releases", p.suite),
        })?;
    let url = format!("{}/{}", mirrors.url(archive)?, p.filename);
    let mut last = String::new();
    // One retry on a hash mismatch: a mirror mid-update can serve a stale file.
    for _ in 0..2 {
        let bytes = fetcher.get(&url)?;
        let sum = hex(&Sha256::digest(&bytes));
        if sum == p.sha256 {
            cache.put(&p.sha256, &bytes)?;
            return Ok(bytes);
        }
        last = sum;
    }
    Err(Error::Package {
        package: p.filename.clone(),
        why: format!(
            "sha256 mismatch: the lock says {}, the mirror served {last}",
            p.sha256
        ),
    })
}

/// A layer's tree before compression: image, whether it is the debug
/// layer, its packages, its entries, and what its SBOM says of it.
type PendingLayer = (String, bool, Vec<String>, Vec<Entry>, LayerContents);

/// The layers of every image and debug variant for one architecture:
/// image name → (own layer, debug layer).
type ArchLayers = BTreeMap<String, (BuiltLayer, BuiltLayer)>;

#[allow(clippy::too_many_arguments)]
fn build_arch(
    project: &Project,
    lock: &Lockfile,
    dist: &str,
    arch: &str,
    epoch: u64,
    images: &[String],
    debs: &HashMap<String, Arc<Deb>>,
    progress: &dyn Progress,
) -> Result<ArchLayers> {
    let defs = &project.definitions;
    let distribution = defs
        .distribution(dist)
        .ok_or_else(|| Error::Usage(format!("unknown distribution {dist}")))?;
    // Trees first (cheap, and each needs the one below), then compress all
    // distinct layers in parallel.
    let mut views: BTreeMap<String, (View, Owners)> = BTreeMap::new();
    let mut trees: Vec<PendingLayer> = Vec::new();
    for name in images {
        let (image, locked) = image_and_lock(project, lock, dist, arch, name)?;
        let empty = (View::new(), Owners::new());
        let lower = image
            .base
            .as_ref()
            .and_then(|b| views.get(b))
            .unwrap_or(&empty);
        let mut generated = Vec::new();
        if image.base.is_none() {
            generated.extend(system::usr_merge_links(arch));
            generated.extend(system::base_files(
                &defs.settings.os_release,
                distribution,
                epoch,
            ));
        }
        let ctx = LayerContext {
            lock,
            arch,
            epoch,
            debs,
            drop: &defs.settings.drop,
            image: &image,
        };
        let (own, own_owners, own_contents) = ctx.tree(&locked.packages, lower, generated)?;
        let mut view = lower.clone();
        view.0
            .extend(own.iter().map(|e| (e.path.clone(), e.clone())));
        view.1.extend(own_owners);
        let (debug, _, debug_contents) = ctx.tree(&locked.debug_packages, &view, Vec::new())?;
        trees.push((
            name.clone(),
            false,
            locked.packages.clone(),
            own,
            own_contents,
        ));
        trees.push((
            name.clone(),
            true,
            locked.debug_packages.clone(),
            debug,
            debug_contents,
        ));
        views.insert(name.clone(), view);
    }
    progress.begin(&format!("{dist} {arch}: layers"), trees.len() as u64);
    let built: Vec<Arc<LayerBlob>> = trees
        .par_iter()
        .map(|(name, _, _, entries, _)| {
            let layer: Layer = write_layer(entries, epoch).map_err(|e| Error::Package {
                package: format!("layer of {name} ({arch})"),
                why: e.to_string(),
            })?;
            progress.step(name);
            Ok(Arc::new(LayerBlob {
                digest: layer.digest,
                diff_id: layer.diff_id,
                size: layer.size,
                bytes: layer.blob,
            }))
        })
        .collect::<Result<_>>()?;
    progress.end();
    let mut out = ArchLayers::new();
    for ((name, debug, packages, _, contents), layer) in trees.into_iter().zip(built) {
        let built = BuiltLayer {
            contents: Arc::new(contents),
            description: if debug {
                format!("{name} debug tools: {}", packages.join(", "))
            } else {
                format!("{name}: {}", packages.join(", "))
            },
            layer,
            packages,
        };
        let slot = out
            .entry(name)
            .or_insert_with(|| (built.clone(), built.clone()));
        if debug {
            slot.1 = built;
        } else {
            slot.0 = built;
        }
    }
    Ok(out)
}

/// An image's definition and its entry in the lock for one architecture.
fn image_and_lock<'l>(
    project: &Project,
    lock: &'l Lockfile,
    dist: &str,
    arch: &str,
    name: &str,
) -> Result<(Image, &'l crate::lockfile::LockedImage)> {
    let image = project
        .definitions
        .image(name, dist)
        .ok_or_else(|| Error::Usage(format!("unknown image {name}")))?;
    let locked = lock.image(name, arch).ok_or_else(|| {
        Error::StaleLock(format!(
            "{}: no entry for image {name} ({arch}); run `cargo xtask lock`",
            project.lockfile_path(dist).display()
        ))
    })?;
    Ok((image, locked))
}

/// For each image: the keys of its own layer and its debug layer, computed
/// from everything that decides their bytes, before anything is unpacked.
type Recipes = BTreeMap<String, (String, String)>;

fn recipes(
    project: &Project,
    lock: &Lockfile,
    dist: &str,
    arch: &str,
    epoch: u64,
    images: &[String],
) -> Result<Recipes> {
    let defs = &project.definitions;
    let mut out = Recipes::new();
    for name in images {
        let (image, locked) = image_and_lock(project, lock, dist, arch, name)?;
        let below = image
            .base
            .as_ref()
            .and_then(|b| out.get(b))
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let sums = |names: &[String]| -> Vec<(String, String)> {
            names
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        lock.find(arch, n)
                            .map(|p| p.sha256.clone())
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
            hex(&Sha256::digest(inputs.to_string().as_bytes()))
        };
        let own = key(false, &below, sums(&locked.packages));
        let debug = key(true, &own, sums(&locked.debug_packages));
        out.insert(name.clone(), (own, debug));
    }
    Ok(out)
}

/// Built layers kept by recipe key (`target/plinth-layers`), so a build
/// with nothing changed unpacks and compresses nothing. `verify` never
/// uses it.
struct LayerCache {
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
    fn new(dir: &Path) -> Self {
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
        if oci::sha256_digest(&bytes) != meta.digest {
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

    fn load_all(&self, recipes: &Recipes) -> Option<ArchLayers> {
        recipes
            .iter()
            .map(|(name, (own, debug))| Some((name.clone(), (self.load(own)?, self.load(debug)?))))
            .collect()
    }

    /// Best effort: a cache that cannot be written only costs time.
    fn store_all(&self, recipes: &Recipes, layers: &ArchLayers) {
        for (name, (own_key, debug_key)) in recipes {
            let Some((own, debug)) = layers.get(name) else {
                continue;
            };
            for (key, l) in [(own_key, own), (debug_key, debug)] {
                let meta = CachedLayer {
                    digest: l.layer.digest.clone(),
                    diff_id: l.layer.diff_id.clone(),
                    description: l.description.clone(),
                    packages: l.packages.clone(),
                    contents: (*l.contents).clone(),
                };
                let blob = self.dir.join(l.layer.digest.trim_start_matches("sha256:"));
                let result =
                    crate::fsutil::write_atomically(&blob, &l.layer.bytes).and_then(|_| {
                        crate::fsutil::write_atomically(
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

/// The text of a package's `/usr/share/doc/<package>/copyright`.
fn copyright_file(package: &str, deb: &Deb) -> Option<String> {
    let path = format!("usr/share/doc/{package}/copyright");
    deb.entries.iter().find_map(|e| match &e.kind {
        EntryKind::File(bytes) if e.path == path => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        _ => None,
    })
}

/// What one layer's tree is made from.
struct LayerContext<'a> {
    lock: &'a Lockfile,
    arch: &'a str,
    epoch: u64,
    debs: &'a HashMap<String, Arc<Deb>>,
    drop: &'a [String],
    image: &'a Image,
}

impl LayerContext<'_> {
    /// A package's copyright text. Debian lets a package's doc directory be
    /// a symlink to that of a package from the same source it depends on
    /// (`libstdc++6` → `gcc-14-base`); the licence is then that one's.
    fn copyright_of(&self, name: &str, deb: &Deb) -> Option<String> {
        copyright_file(name, deb).or_else(|| {
            let dir = format!("usr/share/doc/{name}");
            let target = deb.entries.iter().find_map(|e| match &e.kind {
                EntryKind::Symlink(t) if e.path == dir => Some(t.trim_end_matches('/')),
                _ => None,
            })?;
            let other = target.rsplit('/').next()?;
            let p = self.lock.find(self.arch, other)?;
            copyright_file(other, self.debs.get(&p.sha256)?)
        })
    }

    /// The entries of a layer holding `packages` on top of `lower`.
    /// `generated` files go in first when they are links or directories
    /// (the usr-merge links must exist before any package path is
    /// resolved) and last otherwise (they replace package files, as
    /// os-release does).
    fn tree(
        &self,
        packages: &[String],
        (lower, lower_owners): &(View, Owners),
        generated: Vec<Entry>,
    ) -> Result<(Vec<Entry>, Owners, LayerContents)> {
        let mut contents = LayerContents::default();
        let winners: BTreeMap<String, String> = self
            .image
            .path_owner
            .iter()
            .map(|p| (p.path.trim_matches('/').to_owned(), p.package.clone()))
            .collect();
        let mut fs = Rootfs::new(lower, lower_owners, &winners, self.epoch);
        let rootfs_err = |e: crate::rootfs::RootfsError| Error::Package {
            package: format!("{} ({})", self.image.name, self.arch),
            why: e.to_string(),
        };
        let (structure, files): (Vec<Entry>, Vec<Entry>) = generated
            .into_iter()
            .partition(|e| !matches!(e.kind, EntryKind::File(_)));
        for e in structure {
            fs.add(e, GENERATED).map_err(rootfs_err)?;
        }
        let mut late = files;
        for name in packages {
            let p = self.lock.find(self.arch, name).ok_or_else(|| {
                Error::StaleLock(format!(
                    "lock has no package {name} for {}; run `cargo xtask lock`",
                    self.arch
                ))
            })?;
            let deb = self.debs.get(&p.sha256).ok_or_else(|| Error::Package {
                package: name.clone(),
                why: "not fetched".into(),
            })?;
            contents
                .packages
                .push(package_sbom(p, deb, self.copyright_of(name, deb)));
            let is_ca = self.image.ca_bundle.as_deref() == Some(name.as_str());
            if is_ca {
                let bundle =
                    system::ca_bundle(name, &deb.entries, &[], self.epoch).map_err(|e| {
                        Error::Package {
                            package: name.clone(),
                            why: e.to_string(),
                        }
                    })?;
                record_generated(&mut contents, &bundle, Some(name));
                late.push(bundle);
            }
            for e in &deb.entries {
                if keep(&e.path, self.drop, is_ca.then_some(name.as_str())) {
                    fs.add(e.clone(), name).map_err(rootfs_err)?;
                }
            }
            if deb.entries.iter().any(|e| e.path.ends_with("bin/busybox")) {
                for e in
                    system::busybox(name, &deb.entries, self.epoch).map_err(|e| Error::Package {
                        package: name.clone(),
                        why: e.to_string(),
                    })?
                {
                    fs.add(e, GENERATED).map_err(rootfs_err)?;
                }
            }
            for e in system::dpkg_status(name, &deb.control, deb.md5sums.as_deref(), self.epoch) {
                record_generated(&mut contents, &e, Some(name));
                fs.add(e, name).map_err(rootfs_err)?;
            }
        }
        for e in late {
            if !contents.generated.iter().any(|g| g.path[1..] == e.path) {
                record_generated(&mut contents, &e, None);
            }
            fs.add(e, GENERATED).map_err(rootfs_err)?;
        }
        let (entries, owners) = fs.finish().map_err(rootfs_err)?;
        Ok((entries, owners, contents))
    }
}

fn record_generated(contents: &mut LayerContents, e: &Entry, from: Option<&str>) {
    if let EntryKind::File(bytes) = &e.kind {
        contents
            .generated
            .push(GeneratedFile::new(&format!("/{}", e.path), bytes, from));
    }
}

fn package_sbom(p: &LockedPackage, deb: &Deb, copyright: Option<String>) -> PackageSbom {
    let maintainer = crate::control::parse(&deb.control)
        .ok()
        .and_then(|st| {
            st.first()
                .and_then(|s| s.get("Maintainer"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    PackageSbom {
        name: p.name.clone(),
        version: p.version.clone(),
        arch: p.architecture.clone(),
        source: p.source.clone(),
        source_version: p.source_version.clone(),
        maintainer,
        deb_sha256: p.sha256.clone(),
        copyright,
    }
}

/// Whether a package path goes into the image: copyright files always;
/// of the CA package nothing else; otherwise all but the dropped prefixes.
fn keep(path: &str, drop: &[String], only_copyright_of: Option<&str>) -> bool {
    let is_copyright = path.starts_with("usr/share/doc/") && path.ends_with("/copyright");
    if let Some(pkg) = only_copyright_of {
        return path == format!("usr/share/doc/{pkg}/copyright");
    }
    is_copyright
        || !drop.iter().any(|d| {
            let d = d.trim_matches('/');
            path == d || path.starts_with(&format!("{d}/"))
        })
}

/// Per-arch image manifests already written, by (repository, tag, arch):
/// what an image built on them names as its base.
type Manifests = BTreeMap<(String, String, String), Descriptor>;

/// What every layout of one distribution shares.
struct LayoutContext<'a> {
    epoch: u64,
    created: String,
    os: OsInfo,
    /// The purl `distro` qualifier: `debian-13`.
    distro: String,
    namespace: String,
    source_url: Option<&'a str>,
    sbom_dir: PathBuf,
}

impl<'a> LayoutContext<'a> {
    fn new(project: &'a Project, dist: &str, epoch: u64, out_dir: &Path) -> Result<Self> {
        let defs = &project.definitions;
        let distribution = defs
            .distribution(dist)
            .ok_or_else(|| Error::Usage(format!("unknown distribution {dist}")))?;
        Ok(LayoutContext {
            epoch,
            created: oci::rfc3339(epoch).map_err(oci_err)?,
            os: OsInfo {
                id: "debian".into(),
                version_id: distribution.version.clone(),
                version_codename: distribution.codename.clone(),
                pretty_name: defs.settings.os_release.pretty_name.clone(),
                name: "Debian GNU/Linux".into(),
            },
            distro: format!("debian-{}", distribution.version),
            namespace: defs.settings.sbom_namespace(),
            source_url: defs.settings.source_url.as_deref(),
            sbom_dir: out_dir.join("sbom"),
        })
    }
}

const TOOL: sbom::Tool<'static> = sbom::Tool {
    name: "plinth",
    version: env!("CARGO_PKG_VERSION"),
};

/// One platform of a tag, ready to be written.
struct PlatformImage<'a> {
    arch: &'a str,
    /// Layers bottom to top.
    chain: Vec<&'a BuiltLayer>,
    config: ImageConfig,
    /// The image it is built on: repository, tag, per-arch manifest, and
    /// how many of the bottom layers are that image's.
    base: Option<(String, String, Descriptor, usize)>,
}

/// One image repository's layout being assembled, tag by tag.
struct LayoutBuilder<'c> {
    repo: String,
    ctx: &'c LayoutContext<'c>,
    pending: PendingLayout,
    /// index.json's entries.
    top: Vec<Descriptor>,
}

impl<'c> LayoutBuilder<'c> {
    fn new(repo: String, ctx: &'c LayoutContext<'c>) -> Self {
        LayoutBuilder {
            repo,
            ctx,
            pending: PendingLayout::default(),
            top: Vec::new(),
        }
    }

    /// Adds a multi-arch tag, a per-arch tag for each platform, and their
    /// SBOMs; returns the tag's digests and each platform's manifest.
    fn add_tag(
        &mut self,
        tag: &str,
        platforms: Vec<PlatformImage<'_>>,
    ) -> Result<(TagSummary, Vec<(String, Descriptor)>)> {
        let mut manifests = Vec::new();
        let mut summaries = Vec::new();
        let mut docs: Vec<(String, SbomDocument, SbomDocument)> = Vec::new();
        for p in platforms {
            let (desc, summary, platform_docs) = self.add_platform(tag, p)?;
            manifests.push((summary.architecture.clone(), desc));
            summaries.push(summary);
            docs.push(platform_docs);
        }
        let index = Index::new(manifests.iter().map(|(_, d)| d.clone()).collect());
        let index_blob = Blob::json(oci::MEDIA_TYPE_IMAGE_INDEX, &index).map_err(oci_err)?;
        self.pending.add(
            index_blob.descriptor.digest.clone(),
            Content::Owned(index_blob.bytes.clone()),
        );
        self.top.push(
            index_blob
                .descriptor
                .clone()
                .with_annotation(oci::ANNOTATION_REF_NAME, tag),
        );
        let repo = self.repo.clone();
        let index_docs: Vec<SbomDocument> = [SbomKind::Spdx, SbomKind::CycloneDx]
            .into_iter()
            .map(|kind| {
                let input = IndexSbomInput {
                    name: &repo,
                    tag,
                    index_digest: &index_blob.descriptor.digest,
                    epoch: self.ctx.epoch,
                    repository: None,
                    tool: TOOL,
                    namespace: &self.ctx.namespace,
                    images: docs
                        .iter()
                        .zip(&summaries)
                        .map(|((platform, spdx, cdx), p)| IndexEntry {
                            platform,
                            manifest_digest: &p.manifest,
                            document: if kind == SbomKind::Spdx { spdx } else { cdx },
                        })
                        .collect(),
                };
                let result = if kind == SbomKind::Spdx {
                    sbom::spdx_index(&input)
                } else {
                    sbom::cyclonedx_index(&input)
                };
                result.map_err(|e| Error::Output(format!("SBOM of {repo}:{tag}: {e}")))
            })
            .collect::<Result<_>>()?;
        let subject = descriptor_only(&index_blob.descriptor);
        for doc in &index_docs {
            self.attach(doc, &subject, format!("{tag}.{}", extension(doc)))?;
        }
        let summary = TagSummary {
            repository: repo,
            tag: tag.to_owned(),
            index: index_blob.descriptor.digest.clone(),
            spdx: index_docs[0].digest(),
            cyclonedx: index_docs[1].digest(),
            platform: summaries,
        };
        Ok((summary, manifests))
    }

    fn add_platform(
        &mut self,
        tag: &str,
        p: PlatformImage<'_>,
    ) -> Result<(
        Descriptor,
        PlatformSummary,
        (String, SbomDocument, SbomDocument),
    )> {
        let arch = p.arch;
        let platform = Platform::from_debian_arch(arch)
            .ok_or_else(|| Error::Usage(format!("architecture {arch} has no OCI platform")))?;
        let config_blob = Blob::json(oci::MEDIA_TYPE_IMAGE_CONFIG, &p.config).map_err(oci_err)?;
        self.pending.add(
            config_blob.descriptor.digest.clone(),
            Content::Owned(config_blob.bytes.clone()),
        );
        let mut layer_descs = Vec::new();
        for l in &p.chain {
            self.pending
                .add(l.layer.digest.clone(), Content::Layer(l.layer.clone()));
            layer_descs.push(Descriptor {
                media_type: oci::MEDIA_TYPE_LAYER_GZIP.into(),
                digest: l.layer.digest.clone(),
                size: l.layer.size,
                ..Descriptor::empty()
            });
        }
        let mut manifest = Manifest::image(config_blob.descriptor.clone(), layer_descs);
        if let Some((base_repo, base_tag, d, _)) = &p.base {
            manifest.annotations.insert(
                oci::ANNOTATION_BASE_NAME.into(),
                format!("{base_repo}:{base_tag}"),
            );
            manifest
                .annotations
                .insert(oci::ANNOTATION_BASE_DIGEST.into(), d.digest.clone());
        }
        if let Some(url) = self.ctx.source_url {
            manifest
                .annotations
                .insert(oci::ANNOTATION_SOURCE.into(), url.to_owned());
        }
        let manifest_blob =
            Blob::json(oci::MEDIA_TYPE_IMAGE_MANIFEST, &manifest).map_err(oci_err)?;
        self.pending.add(
            manifest_blob.descriptor.digest.clone(),
            Content::Owned(manifest_blob.bytes.clone()),
        );
        let platform_name = platform_string(&platform);
        let desc = manifest_blob.descriptor.clone().with_platform(platform);
        let input = ImageSbomInput {
            name: &self.repo,
            tag,
            platform: &platform_name,
            manifest_digest: &desc.digest,
            epoch: self.ctx.epoch,
            os: self.ctx.os.clone(),
            distro: &self.ctx.distro,
            repository: None,
            base: p.base.as_ref().map(|(repo, tag, d, layers)| sbom::BaseRef {
                name: repo.clone(),
                tag: tag.clone(),
                manifest_digest: d.digest.clone(),
                layers: *layers,
            }),
            layers: p
                .chain
                .iter()
                .map(|l| LayerSbom {
                    digest: l.layer.digest.clone(),
                    diff_id: l.layer.diff_id.clone(),
                    packages: l.contents.packages.clone(),
                    files: l.contents.generated.clone(),
                    components: l.contents.components.clone(),
                })
                .collect(),
            tool: TOOL,
            namespace: &self.ctx.namespace,
        };
        let sbom_err =
            |e: sbom::SbomError| Error::Output(format!("SBOM of {}:{tag}-{arch}: {e}", self.repo));
        let spdx_doc = sbom::spdx(&input).map_err(sbom_err)?;
        let cdx_doc = sbom::cyclonedx(&input).map_err(sbom_err)?;
        let subject = descriptor_only(&manifest_blob.descriptor);
        for doc in [&spdx_doc, &cdx_doc] {
            self.attach(doc, &subject, format!("{tag}-{arch}.{}", extension(doc)))?;
        }
        // A per-architecture tag, for tools that cannot pick a platform
        // from an index (umoci).
        self.top.push(
            desc.clone()
                .with_annotation(oci::ANNOTATION_REF_NAME, format!("{tag}-{arch}")),
        );
        let summary = PlatformSummary {
            architecture: arch.to_owned(),
            manifest: desc.digest.clone(),
            spdx: spdx_doc.digest(),
            cyclonedx: cdx_doc.digest(),
            layers: p.chain.iter().map(|l| l.layer.digest.clone()).collect(),
            size: p.chain.iter().map(|l| l.layer.size).sum(),
        };
        Ok((desc, summary, (platform_name, spdx_doc, cdx_doc)))
    }

    /// Stores an SBOM in the layout as an OCI 1.1 referrer of `subject`,
    /// and beside it as `sbom/<repository>/<file>`.
    fn attach(&mut self, doc: &SbomDocument, subject: &Descriptor, file: String) -> Result<()> {
        let media_type = doc.kind.media_type();
        let layer = oci::descriptor_for(media_type, &doc.json);
        self.pending
            .add(layer.digest.clone(), Content::Owned(doc.json.clone()));
        self.pending.add(
            oci::EMPTY_DIGEST.to_owned(),
            Content::Owned(oci::EMPTY_BLOB.to_vec()),
        );
        let manifest = Manifest::artifact(media_type, vec![layer], subject.clone());
        let blob = Blob::json(oci::MEDIA_TYPE_IMAGE_MANIFEST, &manifest).map_err(oci_err)?;
        self.pending
            .add(blob.descriptor.digest.clone(), Content::Owned(blob.bytes));
        self.top
            .push(blob.descriptor.with_artifact_type(media_type));
        self.pending
            .beside(self.ctx.sbom_dir.join(&self.repo).join(file), &doc.json);
        Ok(())
    }

    /// Writes the layout: tags by name, then the untagged SBOM referrers
    /// by digest.
    fn write(mut self, out_dir: &Path) -> Result<()> {
        self.top.sort_by(|a, b| {
            let key = |d: &Descriptor| {
                (
                    !d.annotations.contains_key(oci::ANNOTATION_REF_NAME),
                    d.annotations.get(oci::ANNOTATION_REF_NAME).cloned(),
                    d.digest.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        self.pending
            .write(&out_dir.join(&self.repo), &Index::new(self.top))
    }
}

/// Writes one layout per golden image repository (`<image>-<distribution>`)
/// of one distribution, and records each per-arch manifest in `manifests`.
#[allow(clippy::too_many_arguments)]
fn write_layouts(
    project: &Project,
    dist: &str,
    epoch: u64,
    images: &[String],
    per_arch: &BTreeMap<String, ArchLayers>,
    options: &BuildOptions,
    manifests: &mut Manifests,
    progress: &dyn Progress,
) -> Result<Vec<TagSummary>> {
    let defs = &project.definitions;
    let ctx = LayoutContext::new(project, dist, epoch, &options.out_dir)?;
    let mut summaries = Vec::new();
    progress.begin(&format!("{dist}: layouts"), images.len() as u64);
    for name in images {
        let repo = format!("{name}-{dist}");
        let image = defs
            .image(name, dist)
            .ok_or_else(|| Error::Usage(format!("unknown image {name}")))?;
        let stack = defs.stack(name);
        let mut layout = LayoutBuilder::new(repo.clone(), &ctx);
        for variant in VARIANTS {
            let mut platforms = Vec::new();
            for (arch, layers) in per_arch {
                let chain = chain(&stack, layers, variant.debug.then_some(name.as_str()));
                let platform = Platform::from_debian_arch(arch).ok_or_else(|| {
                    Error::Usage(format!("architecture {arch} has no OCI platform"))
                })?;
                let base = image.base.as_ref().and_then(|b| {
                    let base_repo = format!("{b}-{dist}");
                    let key = (base_repo.clone(), variant.tag.to_owned(), arch.clone());
                    let d = manifests.get(&key)?;
                    Some((
                        base_repo,
                        variant.tag.to_owned(),
                        d.clone(),
                        defs.stack(b).len(),
                    ))
                });
                platforms.push(PlatformImage {
                    arch,
                    config: image_config(&ctx.created, arch, &platform, variant, &chain),
                    chain,
                    base,
                });
            }
            let (summary, platform_manifests) = layout.add_tag(variant.tag, platforms)?;
            for (arch, desc) in platform_manifests {
                manifests.insert((repo.clone(), variant.tag.to_owned(), arch), desc);
            }
            summaries.push(summary);
        }
        layout.write(&options.out_dir)?;
        progress.step(&repo);
    }
    progress.end();
    Ok(summaries)
}

/// The layers of `stack` (bottom to top) for one architecture, with the
/// debug layer of `debug_of` on top when given.
fn chain<'l>(
    stack: &[String],
    layers: &'l ArchLayers,
    debug_of: Option<&str>,
) -> Vec<&'l BuiltLayer> {
    let mut chain: Vec<&BuiltLayer> = stack
        .iter()
        .filter_map(|s| layers.get(s).map(|l| &l.0))
        .collect();
    if let Some(l) = debug_of.and_then(|name| layers.get(name)) {
        chain.push(&l.1);
    }
    chain
}

/// A descriptor with only media type, digest and size, as a `subject`.
fn descriptor_only(d: &Descriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        platform: None,
        annotations: BTreeMap::new(),
        artifact_type: None,
    }
}

fn extension(doc: &SbomDocument) -> &'static str {
    match doc.kind {
        SbomKind::Spdx => "spdx.json",
        SbomKind::CycloneDx => "cdx.json",
    }
}

/// Writes a file unless it already holds exactly these bytes.
fn write_beside(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|b| b == bytes) {
        return Ok(());
    }
    crate::fsutil::write_atomically(path, bytes).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

enum Content {
    Owned(Vec<u8>),
    Layer(Arc<LayerBlob>),
}

impl Content {
    fn bytes(&self) -> &[u8] {
        match self {
            Content::Owned(b) => b,
            Content::Layer(l) => &l.bytes,
        }
    }
}

/// A layout assembled in memory, written only when it differs from what
/// is already on disk: an unchanged rebuild rewrites nothing.
#[derive(Default)]
struct PendingLayout {
    blobs: BTreeMap<String, Content>,
    /// Files that describe the layout (its SBOMs), written only once the
    /// layout itself is in place, so they never describe a layout that
    /// failed to be written.
    beside: Vec<(PathBuf, Vec<u8>)>,
}

impl PendingLayout {
    fn beside(&mut self, path: PathBuf, bytes: &[u8]) {
        self.beside.push((path, bytes.to_vec()));
    }

    fn add(&mut self, digest: String, content: Content) {
        self.blobs.entry(digest).or_insert(content);
    }

    fn write(self, dir: &Path, index: &Index) -> Result<()> {
        let index_bytes = oci::json_bytes(index).map_err(oci_err)?;
        let unchanged = std::fs::read(dir.join("index.json")).is_ok_and(|b| b == index_bytes)
            && self.blobs.par_iter().all(|(digest, _)| {
                // Hash what is on disk, not just its size: a damaged blob
                // must be rewritten, not kept.
                let path = dir
                    .join("blobs/sha256")
                    .join(digest.trim_start_matches("sha256:"));
                std::fs::read(path).is_ok_and(|b| oci::sha256_digest(&b) == *digest)
            });
        if unchanged {
            tracing::info!("{}: unchanged", dir.display());
        } else {
            let mut writer = LayoutWriter::create(dir).map_err(oci_err)?;
            for (digest, content) in &self.blobs {
                writer.add_blob(digest, content.bytes()).map_err(oci_err)?;
            }
            writer.finish(index).map_err(oci_err)?;
        }
        for (path, bytes) in &self.beside {
            write_beside(path, bytes)?;
        }
        Ok(())
    }
}

fn image_config(
    created: &str,
    arch: &str,
    platform: &Platform,
    variant: Variant,
    chain: &[&BuiltLayer],
) -> ImageConfig {
    let mut path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned();
    if variant.debug {
        path.push_str(":/busybox");
    }
    let (user, workdir) = if variant.nonroot {
        (system::NONROOT_UID.to_string(), "/home/nonroot")
    } else {
        ("0".to_owned(), "/")
    };
    ImageConfig {
        created: Some(created.to_owned()),
        architecture: platform.architecture.clone(),
        os: "linux".into(),
        variant: platform.variant.clone(),
        config: ContainerConfig {
            user: Some(user),
            env: vec![
                format!("PATH={path}"),
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into(),
            ],
            entrypoint: variant.debug.then(|| vec!["/busybox/sh".to_owned()]),
            working_dir: Some(workdir.into()),
            ..ContainerConfig::default()
        },
        rootfs: RootFs::layers(chain.iter().map(|l| l.layer.diff_id.clone()).collect()),
        history: chain
            .iter()
            .map(|l| History {
                created: Some(created.to_owned()),
                created_by: Some(format!("plinth: {}", l.description)),
                comment: Some(format!("debian {arch}")),
                empty_layer: false,
            })
            .collect(),
    }
}

fn oci_err(e: oci::OciError) -> Error {
    Error::Output(e.to_string())
}

/// Where `cargo xtask images` writes by default.
pub fn default_out_dir(root: &Path) -> PathBuf {
    root.join("target/images")
}
