//! Application images within a build: compile each opted-in package's
//! binaries, refuse any that could not start on their base, and lay the
//! binaries and declared files on top of the golden image as one layer.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::BuildOptions;
use super::layers::{ArchLayers, BuiltLayer, DistributionLayers, LayerBlob, LayerContents};
use super::layouts::{
    BaseImage, LayoutBuilder, LayoutContext, Manifests, PlatformImage, chain, image_config,
};
use crate::apps::compile::{self, CompileError, Request};
use crate::apps::elf::{self, ImageTree};
use crate::apps::{self, AppImage};
use crate::definitions::{VARIANTS, Variant};
use crate::digests::TagSummary;
use crate::error::{Error, Refusal, Result};
use crate::layer::{read_layer, write_layer};
use crate::oci::{self, Empty, ImageConfig, Platform};
use crate::project::{Progress, Project};
use crate::rootfs::{GENERATED, Owners, Rootfs, RootfsError};
use crate::sbom::{Component, GeneratedFile};
use crate::tarfs::{Entry, TarLimits};

/// The tag every application image gets (and `latest-<arch>`).
pub const APP_TAG: &str = "latest";

/// Where binaries go in the image.
const BIN_DIR: &str = "usr/local/bin";

/// An application's compiled binaries and crates, per architecture.
pub(super) struct Compiled<'a> {
    pub app: &'a AppImage,
    /// arch → (binary name, bytes), in the order the table lists them.
    pub binaries: BTreeMap<String, Vec<(String, Vec<u8>)>>,
    /// arch → the crates linked in.
    pub crates: BTreeMap<String, Vec<Component>>,
}

/// Builds every application's binaries for each architecture this
/// machine can build for; the others are skipped with a warning.
pub(super) fn compile_all<'a>(
    project: &Project,
    apps: &[&'a AppImage],
    epochs: &BTreeMap<String, u64>,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Vec<Compiled<'a>>> {
    if apps.is_empty() {
        return Ok(Vec::new());
    }
    // Every declared architecture must be buildable here (or skipped for
    // this run on purpose): an image never quietly loses a platform.
    let mut toolchains = BTreeMap::new();
    for app in apps {
        for arch in wanted_architectures(app, options) {
            if toolchains.contains_key(arch) {
                continue;
            }
            let toolchain = compile::toolchain(&options.cargo, arch).map_err(|why| {
                CompileError::Unavailable {
                    image: app.name.clone(),
                    arch: arch.clone(),
                    why,
                }
            })?;
            toolchains.insert(arch.clone(), toolchain);
        }
    }
    let checksums = apps::lock_checksums(&project.root);
    let mut crates_by_target = BTreeMap::new();
    let builds = apps
        .iter()
        .map(|a| wanted_architectures(a, options).count())
        .sum::<usize>();
    progress.begin("applications: cargo build", builds as u64);
    let mut out = Vec::new();
    for app in apps {
        let epoch = epochs.get(&app.distribution).copied().unwrap_or(0);
        let mut compiled = Compiled {
            app,
            binaries: BTreeMap::new(),
            crates: BTreeMap::new(),
        };
        for arch in wanted_architectures(app, options) {
            let toolchain = &toolchains[arch];
            let request = Request {
                package: &app.package,
                binaries: &app.binaries,
                static_link: app.static_link(),
                epoch,
                offline: options.offline,
            };
            let bytes = compile::build_binaries(
                &project.root,
                toolchain,
                &options.app_target_dir,
                &request,
            )?;
            compiled.binaries.insert(
                arch.clone(),
                app.binaries.iter().cloned().zip(bytes).collect(),
            );
            if !crates_by_target.contains_key(toolchain.target) {
                let metadata =
                    apps::metadata(&project.root, &options.cargo, Some(toolchain.target))?;
                crates_by_target.insert(toolchain.target, metadata);
            }
            compiled.crates.insert(
                arch.clone(),
                apps::crate_tree(
                    &crates_by_target[toolchain.target],
                    &app.package,
                    &checksums,
                ),
            );
            progress.step(&app.name);
        }
        out.push(compiled);
    }
    progress.end();
    Ok(out)
}

/// The architectures of `app` this run builds: the declared ones, less
/// those the caller skips.
fn wanted_architectures<'a>(
    app: &'a AppImage,
    options: &'a BuildOptions,
) -> impl Iterator<Item = &'a String> {
    app.architectures
        .iter()
        .filter(|a| !options.skip_app_architectures.contains(a))
}

fn variant(app: &AppImage) -> Variant {
    VARIANTS
        .into_iter()
        .find(|v| v.tag == app.variant)
        .unwrap_or(VARIANTS[1])
}

/// The merged file system of an image's layers.
fn tree(chain: &[&BuiltLayer]) -> Result<ImageTree> {
    let layers = chain
        .iter()
        .map(|l| {
            // Layers this build made: nothing to bound.
            read_layer(&l.layer.bytes, &TarLimits::NONE)
                .map_err(|e| Error::Output(format!("reading layer {}: {e}", l.layer.digest)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ImageTree::from_layers(layers))
}

/// One application's layer per architecture.
pub(super) struct AppLayers<'a> {
    app: &'a AppImage,
    per_arch: BTreeMap<String, BuiltLayer>,
}

/// The golden layers of `app`'s distribution, per architecture.
fn golden_of<'g>(
    golden: &'g [DistributionLayers],
    app: &AppImage,
) -> Result<&'g BTreeMap<String, ArchLayers>> {
    golden
        .iter()
        .find(|d| d.distribution == app.distribution)
        .map(|d| &d.per_arch)
        .ok_or_else(|| {
            Error::Usage(format!(
                "{}: distribution {} was not built",
                app.name, app.distribution
            ))
        })
}

/// Checks every application's binaries against their base and builds the
/// application layers.
pub(super) fn build_layers<'a>(
    project: &Project,
    compiled: &[Compiled<'a>],
    golden: &[DistributionLayers],
    epochs: &BTreeMap<String, u64>,
) -> Result<Vec<AppLayers<'a>>> {
    compiled
        .iter()
        .map(|c| {
            let epoch = epochs.get(&c.app.distribution).copied().unwrap_or(0);
            Ok(AppLayers {
                app: c.app,
                per_arch: layers(project, c, golden, epoch)?,
            })
        })
        .collect()
}

/// Checks each binary against its base and builds the application
/// layer, per architecture.
fn layers(
    project: &Project,
    compiled: &Compiled<'_>,
    golden: &[DistributionLayers],
    epoch: u64,
) -> Result<BTreeMap<String, BuiltLayer>> {
    let app = compiled.app;
    let defs = &project.definitions;
    let per_arch = golden_of(golden, app)?;
    let debug_of = variant(app).debug.then_some(app.base.as_str());
    let mut out = BTreeMap::new();
    for (arch, binaries) in &compiled.binaries {
        let layers = per_arch.get(arch).ok_or_else(|| {
            Error::Usage(format!("{}: architecture {arch} was not built", app.name))
        })?;
        let base_chain = chain(&defs.stack(&app.base), layers, debug_of);
        let base_tree = tree(&base_chain)?;
        for (binary, bytes) in binaries {
            if let Err(problem) = elf::check(binary, bytes, arch, &base_tree) {
                return Err(Error::Refused(Box::new(Refusal {
                    image: app.name.clone(),
                    binary: binary.clone(),
                    arch: arch.clone(),
                    base: format!("{}:{}", app.base_repository(), app.variant),
                    hint: hint(project, golden, arch, binary, bytes, debug_of.is_some())?,
                    problem,
                })));
            }
        }
        let crates = compiled.crates.get(arch).cloned().unwrap_or_default();
        out.insert(
            arch.clone(),
            app_layer(app, binaries, crates, &base_tree, epoch)?,
        );
    }
    Ok(out)
}

/// Which golden image would start the binary, smallest first, newest
/// distribution first.
fn hint(
    project: &Project,
    golden: &[DistributionLayers],
    arch: &str,
    binary: &str,
    bytes: &[u8],
    debug: bool,
) -> Result<String> {
    let defs = &project.definitions;
    let mut by_newest: Vec<&DistributionLayers> = golden.iter().collect();
    by_newest.sort_by_key(|d| {
        std::cmp::Reverse(
            defs.distribution(&d.distribution)
                .and_then(|x| x.version.parse::<u64>().ok())
                .unwrap_or(0),
        )
    });
    for d in by_newest {
        let dist = &d.distribution;
        let Some(layers) = d.per_arch.get(arch) else {
            continue;
        };
        for image in defs.image_names() {
            if !layers.contains_key(&image) {
                continue;
            }
            let base_chain = chain(&defs.stack(&image), layers, debug.then_some(&image));
            if elf::check(binary, bytes, arch, &tree(&base_chain)?).is_ok() {
                return Ok(format!("{image}-{dist} provides it"));
            }
        }
    }
    Ok(
        "no golden image built here provides it; add the package that does to an image definition"
            .into(),
    )
}

/// The layer holding only the binaries and the declared files (and any
/// parent directory the base lacks), owned by root.
fn app_layer(
    app: &AppImage,
    binaries: &[(String, Vec<u8>)],
    crates: Vec<Component>,
    base: &ImageTree,
    epoch: u64,
) -> Result<BuiltLayer> {
    let no_winners = BTreeMap::new();
    let no_owners = Owners::new();
    let mut fs = Rootfs::new(base.view(), &no_owners, &no_winners, epoch);
    let mut contents = LayerContents {
        components: crates,
        ..LayerContents::default()
    };
    let rootfs_err = |e: RootfsError| Error::Package {
        package: app.name.clone(),
        why: e.to_string(),
    };
    let mut files = Vec::new();
    for (name, bytes) in binaries {
        files.push((format!("{BIN_DIR}/{name}"), 0o755, bytes.clone()));
    }
    for f in &app.files {
        let bytes = std::fs::read(&f.source).map_err(|source| Error::Io {
            path: f.source.clone(),
            source,
        })?;
        files.push((f.path.clone(), f.mode, bytes));
    }
    for (path, mode, bytes) in files {
        contents
            .generated
            .push(GeneratedFile::new(&format!("/{path}"), &bytes, None));
        let mut entry = Entry::file(path, mode, bytes);
        entry.mtime = epoch;
        // The application's own files may deliberately replace the base's.
        fs.add(entry, GENERATED).map_err(rootfs_err)?;
    }
    let (entries, _) = fs.finish().map_err(rootfs_err)?;
    let layer = write_layer(&entries, epoch).map_err(|e| Error::Package {
        package: format!("layer of {}", app.name),
        why: e.to_string(),
    })?;
    Ok(BuiltLayer {
        layer: Arc::new(LayerBlob {
            digest: layer.digest,
            diff_id: layer.diff_id,
            size: layer.size,
            bytes: layer.blob,
        }),
        packages: Vec::new(),
        description: format!(
            "{} {}: {}",
            app.package,
            app.version,
            contents
                .generated
                .iter()
                .map(|g| g.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        contents: Arc::new(contents),
    })
}

/// Writes each application's layout: one multi-arch tag over the
/// platforms it was built for.
pub(super) fn write_layouts(
    project: &Project,
    apps: &[AppLayers<'_>],
    golden: &[DistributionLayers],
    epochs: &BTreeMap<String, u64>,
    manifests: &Manifests,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Vec<TagSummary>> {
    let defs = &project.definitions;
    let mut summaries = Vec::new();
    progress.begin("applications: layouts", apps.len() as u64);
    for AppLayers {
        app,
        per_arch: app_layers,
    } in apps
    {
        let dist = app.distribution.as_str();
        let epoch = epochs.get(dist).copied().unwrap_or(0);
        let ctx = LayoutContext::new(project, dist, epoch, &options.out_dir)?;
        let per_arch = golden_of(golden, app)?;
        let variant = variant(app);
        let base_repo = app.base_repository();
        let mut platforms = Vec::new();
        for (arch, app_layer) in app_layers {
            let Some(layers) = per_arch.get(arch) else {
                continue;
            };
            let mut layer_chain = chain(
                &defs.stack(&app.base),
                layers,
                variant.debug.then_some(app.base.as_str()),
            );
            let base_layers = layer_chain.len();
            layer_chain.push(app_layer);
            let base_manifest = manifests
                .get(&base_repo, variant.tag, arch)
                .ok_or_else(|| {
                    Error::Output(format!(
                        "{}: base {base_repo}:{} ({arch}) was not written",
                        app.name, variant.tag
                    ))
                })?;
            let platform = Platform::from_debian_arch(arch)
                .ok_or_else(|| Error::Usage(format!("architecture {arch} has no OCI platform")))?;
            let mut config = image_config(&ctx.created, arch, &platform, variant, &layer_chain);
            configure(&mut config, app, &base_repo, &base_manifest.digest);
            platforms.push(PlatformImage {
                arch,
                chain: layer_chain,
                config,
                base: Some(BaseImage {
                    repository: base_repo.clone(),
                    tag: variant.tag.to_owned(),
                    manifest: base_manifest,
                    layers: base_layers,
                }),
            });
        }
        let mut layout = LayoutBuilder::new(app.name.clone(), &ctx);
        let summary = layout.add_tag(APP_TAG, platforms)?;
        layout.write(&options.out_dir)?;
        summaries.push(summary);
        progress.step(&app.name);
    }
    progress.end();
    Ok(summaries)
}

/// The application's part of the image config, over the base variant's:
/// exec-form entrypoint (there is no shell), default arguments,
/// environment, ports and labels.
fn configure(config: &mut ImageConfig, app: &AppImage, base_repo: &str, base_digest: &str) {
    let c = &mut config.config;
    c.entrypoint = Some(vec![format!("/{BIN_DIR}/{}", app.binaries[0])]);
    c.cmd = (!app.args.is_empty()).then(|| app.args.clone());
    for (key, value) in &app.env {
        c.env
            .retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        c.env.push(format!("{key}={value}"));
    }
    c.exposed_ports = app.ports.iter().map(|p| (p.clone(), Empty {})).collect();
    c.labels = BTreeMap::from([
        (
            "org.opencontainers.image.title".to_owned(),
            app.name.clone(),
        ),
        (
            "org.opencontainers.image.version".to_owned(),
            app.version.clone(),
        ),
    ]);
    c.labels.extend(app.labels.clone());
    c.labels.insert(
        oci::ANNOTATION_BASE_NAME.into(),
        format!("{base_repo}:{}", app.variant),
    );
    c.labels
        .insert(oci::ANNOTATION_BASE_DIGEST.into(), base_digest.to_owned());
}
