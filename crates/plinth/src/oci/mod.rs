//! The OCI data model (image config, manifest, index, descriptors:
//! [`model`]), content with its digest ([`blob`]) and the writer and
//! reader of OCI image layout directories ([`layout`]).
//!
//! This module owns the exact bytes of every JSON document plinth publishes:
//! key order comes from struct field order and `BTreeMap`, never from a hash
//! map or from `serde_json`'s `preserve_order`, so the same values always give
//! the same digest. It also owns the on-disk layout: blobs are checked against
//! their digest on the way in and on the way out, and a layout appears at its
//! final path only when it is complete.

mod blob;
mod layout;
mod model;

use std::io;
use std::path::{Path, PathBuf};

pub use blob::{Blob, descriptor_for, json_bytes};
pub use layout::{
    LayoutWriter, described_blob_file, read_blob, read_described, read_json, read_layout,
};
pub use model::{
    ContainerConfig, Descriptor, Empty, History, ImageConfig, Index, Manifest, Platform, RootFs,
};

pub const MEDIA_TYPE_IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The config media type of artifacts (SBOMs), per image spec 1.1.
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The blob that [`MEDIA_TYPE_EMPTY`] descriptors point at.
pub const EMPTY_BLOB: &[u8] = b"{}";
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// Names a tag on an `index.json` entry; `oci:DIR:TAG` looks it up.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
pub const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

pub const IMAGE_LAYOUT_VERSION: &str = "1.0.0";

const SCHEMA_VERSION: u32 = 2;
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid digest {digest:?}: expected sha256: and 64 lowercase hex digits")]
    InvalidDigest { digest: String },
    #[error("{}: content has digest {actual}, expected {expected}", path.display())]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: blob has {actual} bytes, its descriptor says {expected}", path.display())]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{}: blob {digest} is referenced but not in the layout", path.display())]
    MissingBlob { path: PathBuf, digest: String },
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("{}: not usable as a layout directory (it has no final name)", path.display())]
    BadLayoutPath { path: PathBuf },
    #[error("cannot serialise JSON: {0}")]
    Serialize(serde_json::Error),
}

pub type Result<T, E = OciError> = std::result::Result<T, E>;

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OciError {
    let path = path.to_path_buf();
    move |source| OciError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests;
