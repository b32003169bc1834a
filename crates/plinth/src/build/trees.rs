//! Step two: packages → one root file system per layer, for one
//! architecture, each image on top of the view of its base; then the
//! distinct layers compressed in parallel.
//!
//! It decides what of a package goes into the image (copyright files
//! always, the CA package only as its bundle, `drop` prefixes never), adds
//! the generated files, and records what each layer's SBOM lists.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::debs::Debs;
use super::layers::{ArchLayers, BuiltLayer, ImageLayers, LayerBlob, LayerContents};
use crate::debian::deb::Deb;
use crate::debian::name::PackageName;
use crate::definitions::Image;
use crate::error::{Error, Result};
use crate::layer::write_layer;
use crate::lockfile::{LockedImage, LockedPackage, Lockfile, Lockfiles};
use crate::project::{Progress, Project};
use crate::rootfs::system;
use crate::rootfs::{GENERATED, Owners, Rootfs, RootfsError, View, special_modes};
use crate::sbom::{GeneratedFile, PackageSbom};
use crate::support::size::ByteSize;
use crate::tarfs::{Entry, EntryKind};

/// Everything the layers of one architecture of one distribution are
/// made from.
pub(super) struct ArchContext<'a> {
    pub project: &'a Project,
    pub locks: &'a Lockfiles,
    pub lock: &'a Lockfile,
    pub arch: &'a str,
    pub epoch: u64,
    pub debs: &'a Debs,
}

/// The merged tree of the layers below the one being built, and which
/// package owns each of its paths.
#[derive(Clone, Default)]
struct Below {
    view: View,
    owners: Owners,
}

/// One layer's tree before compression.
struct PendingLayer {
    image: String,
    debug: bool,
    packages: Vec<String>,
    entries: Vec<Entry>,
    contents: LayerContents,
}

impl ArchContext<'_> {
    /// The own and debug layers of every image in `images` (bases first).
    /// Trees first (cheap, and each needs the one below), then every
    /// distinct layer compressed in parallel.
    pub fn build(&self, images: &[String], progress: &dyn Progress) -> Result<ArchLayers> {
        let defs = &self.project.definitions;
        let dist = self.lock.distribution.as_str();
        let distribution = defs
            .distribution(dist)
            .ok_or_else(|| Error::Usage(format!("unknown distribution {dist}")))?;
        let mut views: BTreeMap<String, Below> = BTreeMap::new();
        let mut pending: Vec<PendingLayer> = Vec::new();
        for name in images {
            let (image, locked) =
                image_and_lock(self.project, self.locks, self.lock, self.arch, name)?;
            let empty = Below::default();
            let lower = image
                .base
                .as_ref()
                .and_then(|b| views.get(b.as_str()))
                .unwrap_or(&empty);
            let mut generated = Vec::new();
            if image.base.is_none() {
                generated.extend(system::usr_merge_links(self.arch));
                generated.extend(system::base_files(
                    &defs.settings.os_release,
                    distribution,
                    self.epoch,
                ));
            }
            let ctx = LayerContext {
                arch: self,
                drop: &defs.settings.drop,
                image: &image,
            };
            let own = ctx.tree(&locked.packages, lower, generated)?;
            let mut view = lower.clone();
            view.view
                .extend(own.entries.iter().map(|e| (e.path.clone(), e.clone())));
            view.owners.extend(own.owners);
            let debug = ctx.tree(&locked.debug_packages, &view, Vec::new())?;
            pending.push(PendingLayer {
                image: name.clone(),
                debug: false,
                packages: names(&locked.packages),
                entries: own.entries,
                contents: own.contents,
            });
            pending.push(PendingLayer {
                image: name.clone(),
                debug: true,
                packages: names(&locked.debug_packages),
                entries: debug.entries,
                contents: debug.contents,
            });
            views.insert(name.clone(), view);
        }
        let blobs = self.compress(&pending, progress)?;
        let mut own_layers: BTreeMap<String, BuiltLayer> = BTreeMap::new();
        let mut out = ArchLayers::new();
        for (p, layer) in pending.into_iter().zip(blobs) {
            let built = BuiltLayer {
                contents: Arc::new(p.contents),
                description: if p.debug {
                    format!("{} debug tools: {}", p.image, p.packages.join(", "))
                } else {
                    format!("{}: {}", p.image, p.packages.join(", "))
                },
                layer,
                packages: p.packages,
            };
            if p.debug {
                if let Some(own) = own_layers.remove(&p.image) {
                    out.insert(p.image, ImageLayers { own, debug: built });
                }
            } else {
                own_layers.insert(p.image, built);
            }
        }
        Ok(out)
    }

    /// Every pending layer as tar + gzip, in parallel, in input order.
    fn compress(
        &self,
        pending: &[PendingLayer],
        progress: &dyn Progress,
    ) -> Result<Vec<Arc<LayerBlob>>> {
        let dist = &self.lock.distribution;
        let arch = self.arch;
        progress.begin(&format!("{dist} {arch}: layers"), pending.len() as u64);
        let blobs = pending
            .par_iter()
            .map(|p| {
                let layer = write_layer(&p.entries, self.epoch).map_err(|e| Error::Package {
                    package: format!("layer of {} ({arch})", p.image),
                    why: e.to_string(),
                })?;
                progress.step(&p.image);
                Ok(Arc::new(LayerBlob {
                    digest: layer.digest,
                    diff_id: layer.diff_id,
                    size: layer.size,
                    bytes: layer.blob,
                }))
            })
            .collect::<Result<_>>();
        progress.end();
        blobs
    }
}

fn names(packages: &[PackageName]) -> Vec<String> {
    packages.iter().map(PackageName::to_string).collect()
}

/// An image's definition and its entry in the lock for one architecture.
pub(super) fn image_and_lock<'l>(
    project: &Project,
    locks: &Lockfiles,
    lock: &'l Lockfile,
    arch: &str,
    name: &str,
) -> Result<(Image, &'l LockedImage)> {
    let dist = &lock.distribution;
    let image = project
        .definitions
        .image(name, dist)
        .ok_or_else(|| Error::Usage(format!("unknown image {name}")))?;
    let locked = lock.image(name, arch).ok_or_else(|| {
        Lockfile::stale(
            &locks.path(dist),
            format!("no entry for image {name} ({arch})"),
        )
    })?;
    Ok((image, locked))
}

/// A layer's tree, who owns each path, and what its SBOM lists.
struct Tree {
    entries: Vec<Entry>,
    owners: Owners,
    contents: LayerContents,
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
    arch: &'a ArchContext<'a>,
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
            let p = self.arch.lock.find(self.arch.arch, other)?;
            copyright_file(other, self.arch.debs.get(&p.sha256)?)
        })
    }

    /// The entries of a layer holding `packages` on top of `lower`.
    /// `generated` files go in first when they are links or directories
    /// (the usr-merge links must exist before any package path is
    /// resolved) and last otherwise (they replace package files, as
    /// os-release does).
    fn tree(&self, packages: &[PackageName], lower: &Below, generated: Vec<Entry>) -> Result<Tree> {
        let (arch, epoch) = (self.arch.arch, self.arch.epoch);
        let mut contents = LayerContents::default();
        let winners: BTreeMap<String, String> = self
            .image
            .path_owner
            .iter()
            .map(|p| (p.path.trim_matches('/').to_owned(), p.package.clone()))
            .collect();
        let mut fs = Rootfs::new(&lower.view, &lower.owners, &winners, epoch);
        let rootfs_err = |e: RootfsError| Error::Package {
            package: format!("{} ({arch})", self.image.name),
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
            let p = self.arch.lock.find(arch, name).ok_or_else(|| {
                let dist = &self.arch.lock.distribution;
                Lockfile::stale(
                    &self.arch.locks.path(dist),
                    format!("no package {name} for {arch}"),
                )
            })?;
            let deb = self
                .arch
                .debs
                .get(&p.sha256)
                .ok_or_else(|| Error::Package {
                    package: name.to_string(),
                    why: "not fetched".into(),
                })?;
            contents
                .packages
                .push(package_sbom(p, deb, self.copyright_of(name, deb)));
            let is_ca = self.image.ca_bundle.as_deref() == Some(name.as_str());
            if is_ca {
                let bundle = system::ca_bundle(name, &deb.entries, &[], epoch).map_err(|e| {
                    Error::Package {
                        package: name.to_string(),
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
                for e in system::busybox(name, &deb.entries, epoch).map_err(|e| Error::Package {
                    package: name.to_string(),
                    why: e.to_string(),
                })? {
                    fs.add(e, GENERATED).map_err(rootfs_err)?;
                }
            }
            for e in system::dpkg_status(name, &deb.control, deb.md5sums.as_deref(), epoch) {
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
        contents.special = special_modes(&entries, &owners);
        if let Some(found) = contents.special.first()
            && self.arch.project.definitions.settings.forbid_special_modes
        {
            return Err(Error::Package {
                package: found.package.clone(),
                why: format!(
                    "{}: {}, mode {:04o}; forbid-special-modes in images/plinth.toml refuses it",
                    found.path,
                    found.what(),
                    found.mode
                ),
            });
        }
        let unpacked: u64 = entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File(bytes) => bytes.len() as u64,
                _ => 0,
            })
            .sum();
        let limit = self.arch.project.definitions.settings.limits.layer;
        if unpacked > limit.0 {
            return Err(Error::Package {
                package: format!("layer of {} ({arch})", self.image.name),
                why: format!(
                    "{} of files, above the ceiling of {limit} per layer (limits.layer in images/plinth.toml)",
                    ByteSize(unpacked)
                ),
            });
        }
        Ok(Tree {
            entries,
            owners,
            contents,
        })
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
    let maintainer = crate::debian::control::parse(&deb.control)
        .ok()
        .and_then(|st| {
            st.first()
                .and_then(|s| s.get("Maintainer"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    PackageSbom {
        name: p.name.to_string(),
        version: p.version.clone(),
        arch: p.architecture.to_string(),
        source: p.source.clone(),
        source_version: p.source_version.clone(),
        maintainer,
        deb_sha256: p.sha256.to_string(),
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
