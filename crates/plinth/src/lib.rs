//! plinth: byte-reproducible distroless base images from pinned,
//! signature-checked Debian packages.
//!
//! The pipeline flows one way, and each stage is a module:
//!
//! 1. [`lock`]: image [`definitions`] + Debian's signed archive →
//!    [`lockfile`]s (the only stage that reads archive indices).
//! 2. [`build`]: lockfiles → `.deb`s through the [`download`] cache →
//!    one root file system per layer ([`rootfs`]) → gzip [`layer`]s →
//!    OCI image layouts ([`oci`]) with SBOMs ([`sbom`]) → the record of
//!    every digest ([`digests`]); application images ([`apps`]) on top.
//! 3. [`verify`]: rebuild from scratch and compare with the record;
//!    [`diff`]: compare two sets of images, tag by tag, down to packages
//!    and files.
//! 4. [`publish`]: push the layouts, as built, through a [`registry`]
//!    client; with a key, signed and attested ([`sign`], [`provenance`]).
//! 5. [`published`]: what a consumer checks before building on a
//!    published image: digests as recorded, signatures and attestations
//!    by the platform team's key.
//!
//! Keeping images current: [`lock::relock`] re-resolves without writing,
//! and [`changes`] says what a re-lock changes (changelogs, CVEs, the
//! images it touches, and once rebuilt the image differences).
//!
//! Below the stages sit the formats they share, which never call a stage:
//! [`debian`] (control files, versions, `.deb`s, copyright), [`tarfs`]
//! (file-system entries and tar streams), [`layer`], [`oci`], [`sbom`],
//! [`sign`] (keys, cosign signatures, attestations, sigstore bundles)
//! and [`support`] (atomic writes, digests, time, retries). Every HTTP
//! request, to a mirror or a registry, goes through [`net`]: the
//! machine's trust and proxies, redirects, bounded bodies.
//! `ARCHITECTURE.md` has the code map and the invariants; the import rules
//! are checked by `tests/architecture.rs`.

pub mod apps;
pub mod build;
pub mod changes;
pub mod debian;
pub mod definitions;
pub mod diff;
pub mod digests;
pub mod download;
pub mod error;
pub mod layer;
pub mod lock;
pub mod lockfile;
pub mod net;
pub mod oci;
pub mod project;
pub mod provenance;
pub mod publish;
pub mod published;
pub mod registry;
pub mod rootfs;
pub mod sbom;
pub mod sign;
pub mod support;
pub mod tarfs;
pub mod verify;

pub use error::{Error, Refusal, Result};
pub use project::{Progress, Project, Silent, default_out_dir};
