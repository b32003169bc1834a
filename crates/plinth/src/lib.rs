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
//!    client.
//!
//! Keeping images current: [`lock::relock`] re-resolves without writing,
//! and [`changes`] says what a re-lock changes (changelogs, CVEs, the
//! images it touches, and once rebuilt the image differences).
//!
//! Below the stages sit the formats they share, which never call a stage:
//! [`debian`] (control files, versions, `.deb`s, copyright), [`tarfs`]
//! (file-system entries and tar streams), [`layer`], [`oci`], [`sbom`],
//! and [`support`] (atomic writes, digests, time, retries).
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
pub mod oci;
pub mod project;
pub mod publish;
pub mod registry;
pub mod rootfs;
pub mod sbom;
pub mod support;
pub mod tarfs;
pub mod verify;

pub use error::{Error, Refusal, Result};
pub use project::{Progress, Project, Silent, default_out_dir};
