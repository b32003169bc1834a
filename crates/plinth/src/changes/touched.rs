//! Which image repositories and tags a package change touches: the
//! images that need the package (the lock's `required-by`), every image
//! standing on them, and the application images built on those; a package
//! of a debug layer touches the debug tags only.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::apps::AppImage;
use crate::build::APP_TAG;
use crate::definitions::{Definitions, VARIANTS};

/// One image repository and the tags of it that change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchedRepository {
    /// `base-debian13`, `hello-server`.
    pub repository: String,
    /// In the order `cargo xtask images` writes them.
    pub tags: Vec<String>,
}

/// The repositories and tags of distribution `dist` that a package needed
/// as `required_by` says (`<image>: <why>` or `<image> (debug): <why>`)
/// touches on any of `archs`.
pub fn touched(
    definitions: &Definitions,
    apps: &[AppImage],
    dist: &str,
    archs: &BTreeSet<String>,
    required_by: &[String],
) -> Vec<TouchedRepository> {
    // image → whether only its debug tags change
    let mut needed: BTreeMap<&str, bool> = BTreeMap::new();
    for entry in required_by {
        let label = entry.split_once(": ").map_or(entry.as_str(), |(l, _)| l);
        let (image, debug_only) = match label.strip_suffix(" (debug)") {
            Some(image) => (image, true),
            None => (label, false),
        };
        let slot = needed.entry(image).or_insert(true);
        *slot &= debug_only;
    }
    let mut tags: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut golden: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for name in definitions.image_names() {
        let stack = definitions.stack(&name);
        for (image, &debug_only) in &needed {
            if *image == name || (!debug_only && stack.iter().any(|s| s == image)) {
                let variants = VARIANTS
                    .iter()
                    .filter(|v| v.debug || !debug_only)
                    .map(|v| v.tag);
                golden.entry(name.clone()).or_default().extend(variants);
            }
        }
    }
    for (image, variants) in &golden {
        tags.insert(format!("{image}-{dist}"), variants.clone());
    }
    for app in apps {
        let built_here = app.architectures.iter().any(|a| archs.contains(a));
        let base_moves = golden
            .get(&app.base)
            .is_some_and(|v| v.contains(app.variant.as_str()));
        if app.distribution == dist && built_here && base_moves {
            tags.insert(app.name.clone(), BTreeSet::from([APP_TAG]));
        }
    }
    let order = |t: &str| VARIANTS.iter().position(|v| v.tag == t);
    let mut out: Vec<TouchedRepository> = tags
        .into_iter()
        .map(|(repository, set)| {
            let mut tags: Vec<&str> = set.into_iter().collect();
            tags.sort_by_key(|t| order(t));
            TouchedRepository {
                repository,
                tags: tags.into_iter().map(str::to_owned).collect(),
            }
        })
        .collect();
    // Golden images in stacking order, then applications by name.
    let names = definitions.image_names();
    let rank = |r: &TouchedRepository| {
        names
            .iter()
            .position(|n| r.repository == format!("{n}-{dist}"))
            .unwrap_or(names.len())
    };
    out.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.repository.cmp(&b.repository)));
    out
}
