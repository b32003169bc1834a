//! plinth: byte-reproducible distroless base images from pinned,
//! signature-checked Debian packages.
//!
//! The pipeline flows one way: image definitions and the lock
//! ([`definitions`], [`lockfile`]) → packages ([`archive`], [`resolve`],
//! [`cache`]) → root file systems ([`deb`], [`rootfs`]) → layers
//! ([`layer`]) → images ([`oci`]) → SBOMs and digests. See
//! `ARCHITECTURE.md` for the code map and the invariants.

pub mod app;
pub mod archive;
pub mod build;
pub mod cache;
pub mod compile;
pub mod control;
pub mod copyright;
pub mod deb;
pub mod definitions;
pub mod digests;
pub mod elf;
pub mod entry;
pub mod fetch;
mod fsutil;
pub mod layer;
pub mod lock;
pub mod lockfile;
pub mod mirrors;
pub mod oci;
pub mod project;
pub mod publish;
pub mod registry;
pub mod relation;
pub mod resolve;
pub mod rootfs;
pub mod sbom;
pub mod system;
pub mod verify;
pub mod version;

pub use project::{Error, Progress, Project, Result, Silent};
