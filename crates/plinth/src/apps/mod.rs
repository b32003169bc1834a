//! Application images: the workspace's own Rust binaries, each layered on
//! a golden base.
//!
//! [`discover`] reads `[package.metadata.plinth]` through `cargo metadata`,
//! [`compile`] builds the binaries reproducibly, and [`elf`] decides
//! whether a binary would start on its base. The build stage
//! (`build::apps`) puts them together into layers and layouts.

pub mod compile;
mod discover;
pub mod elf;

pub use discover::{AppError, AppFile, AppImage, crate_tree, discover, lock_checksums, metadata};
