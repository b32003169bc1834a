//! Step one of a build: every `.deb` the selected images need, fetched
//! through the download cache, checked against the lock's sha256 and
//! parsed. A cached file that no longer matches is discarded and fetched
//! again; a mirror that serves other bytes than the lock names is an error.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rayon::prelude::*;

use super::BuildOptions;
use crate::debian::deb::{Deb, read_deb};
use crate::definitions::Limits;
use crate::download::cache::Cache;
use crate::download::http::Fetcher;
use crate::download::mirrors::Mirrors;
use crate::download::pool::Pool;
use crate::error::{Error, Result};
use crate::lockfile::{LockedPackage, Lockfile};
use crate::net::Network;
use crate::project::{Progress, Project};
use crate::support::digest::Sha256Hex;

/// Parsed packages by the sha256 of their `.deb`.
pub(super) type Debs = HashMap<Sha256Hex, Arc<Deb>>;

/// Where packages come from: the cache first, then the mirrors.
pub(super) struct Downloader<'a> {
    limits: Limits,
    pool: Pool<'a>,
}

impl<'a> Downloader<'a> {
    pub fn new(project: &Project, cache: &'a Cache, options: &BuildOptions) -> Result<Self> {
        Ok(Downloader {
            limits: project.definitions.settings.limits,
            pool: Pool::new(
                cache,
                Mirrors::resolve(&project.definitions.settings, &options.apt_dir)?,
                match options.offline {
                    true => None,
                    false => Some(Fetcher::new(
                        &Network::for_project(&options.network, project)?,
                        options.fetch.clone(),
                    )),
                },
            ),
        })
    }

    /// Every package of `images` (and of their debug variants) in `lock`,
    /// fetched, checked and parsed, in parallel.
    pub fn fetch_all(
        &self,
        lock: &Lockfile,
        images: &[String],
        progress: &dyn Progress,
    ) -> Result<Debs> {
        let needed = needed_packages(lock, images);
        progress.begin(
            &format!("{}: packages", lock.distribution),
            needed.len() as u64,
        );
        let debs = needed
            .par_iter()
            .map(|p| {
                let bytes = self.fetch(lock, p)?;
                let deb = read_deb(&bytes, &self.limits).map_err(|e| Error::Package {
                    package: format!("{} {} ({})", p.name, p.version, p.filename),
                    why: e.to_string(),
                })?;
                progress.step(&p.name);
                Ok((p.sha256.clone(), Arc::new(deb)))
            })
            .collect::<Result<Debs>>();
        progress.end();
        debs
    }

    /// One package's bytes, from the cache or a mirror, matching the lock.
    fn fetch(&self, lock: &Lockfile, p: &LockedPackage) -> Result<Vec<u8>> {
        let archive = lock.archive_of(&p.suite).ok_or_else(|| Error::Package {
            package: p.name.to_string(),
            why: format!("suite {} is not among the lock's releases", p.suite),
        })?;
        Ok(self.pool.fetch(archive, &p.filename, &p.sha256, p.size)?)
    }
}

/// The distinct packages of `images` and their debug variants, once each.
fn needed_packages<'l>(lock: &'l Lockfile, images: &[String]) -> Vec<&'l LockedPackage> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for img in lock
        .image
        .iter()
        .filter(|i| images.iter().any(|n| i.name == *n))
    {
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
