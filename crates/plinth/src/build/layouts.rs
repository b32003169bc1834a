//! The last step: layers → image configs, manifests, a multi-arch index
//! per tag, per-architecture tags, SBOMs attached as referrers, and one OCI
//! image layout per repository, written only where it changed; then
//! `SHA256SUMS` over everything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::BuildOptions;
use super::apps::{self, AppLayers};
use super::layers::{ArchLayers, BuiltLayer, DistributionLayers, LayerBlob};
use crate::definitions::{VARIANTS, Variant};
use crate::digests::{PlatformSummary, TagSummary};
use crate::error::{Error, Result};
use crate::oci::{
    self, Blob, ContainerConfig, Descriptor, History, ImageConfig, Index, LayoutWriter, Manifest,
    Platform, RootFs,
};
use crate::project::{Progress, Project};
use crate::rootfs::system;
use crate::sbom::{
    self, ImageSbomInput, IndexEntry, IndexSbomInput, LayerSbom, OsInfo, SbomDocument, SbomPair,
};
use crate::support::digest::{sha256_digest, sha256_hex};
use crate::support::fs::{remove_stale_temporaries, write_if_changed};
use crate::support::time::rfc3339;

/// The file beside the layouts that lists every published file's sha256.
const SUMS_FILE: &str = "SHA256SUMS";

/// Writes every layout (golden images by distribution, then application
/// images) and `SHA256SUMS`, and returns the digests of every tag.
pub(super) fn write_all(
    project: &Project,
    images: &[String],
    golden: &[DistributionLayers],
    app_layers: &[AppLayers<'_>],
    epochs: &BTreeMap<String, u64>,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Vec<TagSummary>> {
    // What killed runs left (half-written layouts, SBOMs, sums) goes
    // first; temporaries of a run still writing stay.
    remove_stale_temporaries(&options.out_dir);
    let sbom_dirs = std::fs::read_dir(options.out_dir.join("sbom"));
    for dir in sbom_dirs.into_iter().flatten().flatten() {
        remove_stale_temporaries(&dir.path());
    }
    // Stale sums must not outlive a write that fails half way; they are
    // written anew once every layout is in place.
    let sums = options.out_dir.join(SUMS_FILE);
    if let Err(e) = std::fs::remove_file(&sums)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(Error::Io {
            path: sums,
            source: e,
        });
    }
    let mut manifests = Manifests::default();
    let mut summaries = Vec::new();
    for d in golden {
        summaries.extend(write_golden(
            project,
            d,
            images,
            options,
            &mut manifests,
            progress,
        )?);
    }
    summaries.extend(apps::write_layouts(
        project, app_layers, golden, epochs, &manifests, options, progress,
    )?);
    write_checksums(&options.out_dir)?;
    Ok(summaries)
}

/// Per-arch image manifests already written: what an image built on them
/// names as its base.
#[derive(Default)]
pub(super) struct Manifests {
    by_key: BTreeMap<(String, String, String), Descriptor>,
}

impl Manifests {
    /// The manifest of `repository:tag` for `arch`, if it was written.
    pub fn get(&self, repository: &str, tag: &str, arch: &str) -> Option<Descriptor> {
        let key = (repository.to_owned(), tag.to_owned(), arch.to_owned());
        self.by_key.get(&key).cloned()
    }

    fn insert(&mut self, repository: &str, tag: &str, arch: &str, manifest: Descriptor) {
        let key = (repository.to_owned(), tag.to_owned(), arch.to_owned());
        self.by_key.insert(key, manifest);
    }
}

/// What every layout of one distribution shares.
pub(super) struct LayoutContext<'a> {
    epoch: u64,
    pub created: String,
    os: OsInfo,
    /// The purl `distro` qualifier: `debian-13`.
    distro: String,
    namespace: String,
    source_url: Option<&'a str>,
    sbom_dir: PathBuf,
}

impl<'a> LayoutContext<'a> {
    pub fn new(project: &'a Project, dist: &str, epoch: u64, out_dir: &Path) -> Result<Self> {
        let defs = &project.definitions;
        let distribution = defs
            .distribution(dist)
            .ok_or_else(|| Error::Usage(format!("unknown distribution {dist}")))?;
        Ok(LayoutContext {
            epoch,
            created: rfc3339(epoch).map_err(|e| Error::Output(e.to_string()))?,
            os: OsInfo {
                id: "debian".into(),
                version_id: distribution.version.clone(),
                version_codename: distribution.codename.to_string(),
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

pub(super) const TOOL: sbom::Tool<'static> = sbom::Tool {
    name: "plinth",
    version: env!("CARGO_PKG_VERSION"),
};

/// The image an image is built on, as its manifest and SBOM name it.
pub(super) struct BaseImage {
    /// `base-debian13`.
    pub repository: String,
    pub tag: String,
    /// The base's per-arch manifest.
    pub manifest: Descriptor,
    /// How many of the bottom layers are the base's.
    pub layers: usize,
}

/// One platform of a tag, ready to be written.
pub(super) struct PlatformImage<'a> {
    pub arch: &'a str,
    /// Layers bottom to top.
    pub chain: Vec<&'a BuiltLayer>,
    pub config: ImageConfig,
    pub base: Option<BaseImage>,
}

/// What adding one platform to a tag produced.
struct PlatformOutput {
    /// The per-arch manifest, with its platform.
    manifest: Descriptor,
    summary: PlatformSummary,
    /// `linux/arm64/v8`.
    platform: String,
    sboms: SbomPair,
}

/// One image repository's layout being assembled, tag by tag.
pub(super) struct LayoutBuilder<'c> {
    repo: String,
    ctx: &'c LayoutContext<'c>,
    pending: PendingLayout,
    /// index.json's entries.
    top: Vec<Descriptor>,
}

impl<'c> LayoutBuilder<'c> {
    pub fn new(repo: String, ctx: &'c LayoutContext<'c>) -> Self {
        LayoutBuilder {
            repo,
            ctx,
            pending: PendingLayout::default(),
            top: Vec::new(),
        }
    }

    /// Adds a multi-arch tag, a per-arch tag for each platform, and their
    /// SBOMs; returns the tag's digests.
    pub fn add_tag(&mut self, tag: &str, platforms: Vec<PlatformImage<'_>>) -> Result<TagSummary> {
        let outputs = platforms
            .into_iter()
            .map(|p| self.add_platform(tag, p))
            .collect::<Result<Vec<_>>>()?;
        let index = Index::new(outputs.iter().map(|o| o.manifest.clone()).collect());
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
        let input = IndexSbomInput {
            name: &self.repo,
            tag,
            index_digest: &index_blob.descriptor.digest,
            epoch: self.ctx.epoch,
            repository: None,
            tool: TOOL,
            namespace: &self.ctx.namespace,
            images: outputs
                .iter()
                .map(|o| IndexEntry {
                    platform: &o.platform,
                    manifest_digest: &o.summary.manifest,
                    documents: &o.sboms,
                })
                .collect(),
        };
        let sboms = SbomPair::index(&input)
            .map_err(|e| Error::Output(format!("SBOM of {}:{tag}: {e}", self.repo)))?;
        let subject = descriptor_only(&index_blob.descriptor);
        for doc in sboms.iter() {
            self.attach(doc, &subject, format!("{tag}.{}", doc.kind.extension()))?;
        }
        Ok(TagSummary {
            repository: self.repo.clone(),
            tag: tag.to_owned(),
            index: index_blob.descriptor.digest.clone(),
            spdx: sboms.spdx.digest(),
            cyclonedx: sboms.cyclonedx.digest(),
            platform: outputs.into_iter().map(|o| o.summary).collect(),
        })
    }

    /// The per-arch manifest added under `tag` for `arch`, if any.
    fn manifest_of(&self, tag: &str, arch: &str) -> Option<Descriptor> {
        let name = format!("{tag}-{arch}");
        let tagged = self
            .top
            .iter()
            .find(|d| d.annotations.get(oci::ANNOTATION_REF_NAME) == Some(&name))?;
        let mut manifest = tagged.clone();
        manifest.annotations.remove(oci::ANNOTATION_REF_NAME);
        Some(manifest)
    }

    fn add_platform(&mut self, tag: &str, p: PlatformImage<'_>) -> Result<PlatformOutput> {
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
        if let Some(base) = &p.base {
            manifest.annotations.insert(
                oci::ANNOTATION_BASE_NAME.into(),
                format!("{}:{}", base.repository, base.tag),
            );
            manifest.annotations.insert(
                oci::ANNOTATION_BASE_DIGEST.into(),
                base.manifest.digest.clone(),
            );
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
        let platform_name = platform.to_string();
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
            base: p.base.as_ref().map(|b| sbom::BaseRef {
                name: b.repository.clone(),
                tag: b.tag.clone(),
                manifest_digest: b.manifest.digest.clone(),
                layers: b.layers,
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
        let sboms = SbomPair::image(&input)
            .map_err(|e| Error::Output(format!("SBOM of {}:{tag}-{arch}: {e}", self.repo)))?;
        let subject = descriptor_only(&manifest_blob.descriptor);
        for doc in sboms.iter() {
            self.attach(
                doc,
                &subject,
                format!("{tag}-{arch}.{}", doc.kind.extension()),
            )?;
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
            spdx: sboms.spdx.digest(),
            cyclonedx: sboms.cyclonedx.digest(),
            layers: p.chain.iter().map(|l| l.layer.digest.clone()).collect(),
            size: p.chain.iter().map(|l| l.layer.size).sum(),
        };
        Ok(PlatformOutput {
            manifest: desc,
            summary,
            platform: platform_name,
            sboms,
        })
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
    pub fn write(mut self, out_dir: &Path) -> Result<()> {
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
fn write_golden(
    project: &Project,
    layers: &DistributionLayers,
    images: &[String],
    options: &BuildOptions,
    manifests: &mut Manifests,
    progress: &dyn Progress,
) -> Result<Vec<TagSummary>> {
    let defs = &project.definitions;
    let dist = layers.distribution.as_str();
    let ctx = LayoutContext::new(project, dist, layers.epoch, &options.out_dir)?;
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
            for (arch, arch_layers) in &layers.per_arch {
                let chain = chain(&stack, arch_layers, variant.debug.then_some(name.as_str()));
                let platform = Platform::from_debian_arch(arch).ok_or_else(|| {
                    Error::Usage(format!("architecture {arch} has no OCI platform"))
                })?;
                let base = image.base.as_ref().and_then(|b| {
                    let repository = format!("{b}-{dist}");
                    let manifest = manifests.get(&repository, variant.tag, arch)?;
                    Some(BaseImage {
                        repository,
                        tag: variant.tag.to_owned(),
                        manifest,
                        layers: defs.stack(b).len(),
                    })
                });
                platforms.push(PlatformImage {
                    arch,
                    config: image_config(&ctx.created, arch, &platform, variant, &chain),
                    chain,
                    base,
                });
            }
            let summary = layout.add_tag(variant.tag, platforms)?;
            for p in &summary.platform {
                if let Some(m) = layout.manifest_of(variant.tag, &p.architecture) {
                    manifests.insert(&repo, variant.tag, &p.architecture, m);
                }
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
pub(super) fn chain<'l>(
    stack: &[String],
    layers: &'l ArchLayers,
    debug_of: Option<&str>,
) -> Vec<&'l BuiltLayer> {
    let mut chain: Vec<&BuiltLayer> = stack
        .iter()
        .filter_map(|s| layers.get(s).map(|l| &l.own))
        .collect();
    if let Some(l) = debug_of.and_then(|name| layers.get(name)) {
        chain.push(&l.debug);
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
                std::fs::read(path).is_ok_and(|b| sha256_digest(&b) == *digest)
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
            write_if_changed(path, bytes).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

pub(super) fn image_config(
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

/// `SHA256SUMS` over every file a release would publish: the layouts and
/// the SBOMs beside them, in path order.
fn write_checksums(out_dir: &Path) -> Result<()> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Temporary directories of a concurrent writer, and the sums.
            if name.starts_with('.') || name == SUMS_FILE {
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
            Ok(format!("{}  {rel}\n", sha256_hex(&bytes)))
        })
        .collect::<Result<_>>()?;
    let path = out_dir.join(SUMS_FILE);
    write_if_changed(&path, lines.concat().as_bytes())
        .map(drop)
        .map_err(|source| Error::Io { path, source })
}
