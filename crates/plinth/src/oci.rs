//! The OCI data model (image config, manifest, index, descriptors) and the
//! writer and reader of OCI image layout directories.
//!
//! This module owns the exact bytes of every JSON document plinth publishes:
//! key order comes from struct field order and `BTreeMap`, never from a hash
//! map or from `serde_json`'s `preserve_order`, so the same values always give
//! the same digest. It also owns the on-disk layout: blobs are checked against
//! their digest on the way in and on the way out, and a layout appears at its
//! final path only when it is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

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

/// The last second whose year still has four digits; RFC 3339 (and Go's
/// parser, which skopeo and container engines use) allows no more.
pub const MAX_RFC3339_EPOCH: u64 = 253_402_300_799;

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
    #[error("epoch {0} is after 9999-12-31T23:59:59Z, which RFC 3339 cannot express")]
    EpochOutOfRange(u64),
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

// ---------------------------------------------------------------------------
// Data model

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// The descriptor of [`EMPTY_BLOB`], the config of every artifact.
    pub fn empty() -> Self {
        descriptor_for(MEDIA_TYPE_EMPTY, EMPTY_BLOB)
    }

    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }

    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    pub fn with_artifact_type(mut self, artifact_type: impl Into<String>) -> Self {
        self.artifact_type = Some(artifact_type.into());
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The OCI platform of a Debian architecture name, or `None` for one
    /// plinth does not know. Variants follow what registries and engines
    /// match on (`linux/arm64/v8`, `linux/arm/v7`), not Debian's names.
    pub fn from_debian_arch(arch: &str) -> Option<Self> {
        let (architecture, variant) = match arch {
            "amd64" => ("amd64", None),
            "arm64" => ("arm64", Some("v8")),
            "armhf" => ("arm", Some("v7")),
            "armel" => ("arm", Some("v5")),
            "i386" => ("386", None),
            "ppc64el" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            "mips64el" => ("mips64le", None),
            "loong64" => ("loong64", None),
            _ => return None,
        };
        Some(Self {
            architecture: architecture.to_owned(),
            os: "linux".to_owned(),
            variant: variant.map(str::to_owned),
        })
    }
}

/// The image configuration blob ([`MEDIA_TYPE_IMAGE_CONFIG`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// The execution parameters inside [`ImageConfig`]; the spec capitalises
/// these keys, unlike every other key in the config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    // `Some(vec![])` and `None` differ to engines (an empty list clears an
    // inherited value), so these stay options rather than skip-if-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
}

/// A JSON `{}`: the spec's value type for each exposed port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

impl RootFs {
    pub fn layers(diff_ids: Vec<String>) -> Self {
        Self {
            kind: "layers".to_owned(),
            diff_ids,
        }
    }
}

impl Default for RootFs {
    fn default() -> Self {
        Self::layers(Vec::new())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// An image manifest, or an artifact manifest when `artifact_type` is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    // The spec only says SHOULD, so manifests written by others may lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    pub fn image(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            media_type: Some(MEDIA_TYPE_IMAGE_MANIFEST.to_owned()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// An artifact (an SBOM, say) attached to `subject` as a referrer, with
    /// the empty config the spec prescribes for artifacts.
    pub fn artifact(
        artifact_type: impl Into<String>,
        layers: Vec<Descriptor>,
        subject: Descriptor,
    ) -> Self {
        Self {
            artifact_type: Some(artifact_type.into()),
            subject: Some(subject),
            ..Self::image(Descriptor::empty(), layers)
        }
    }
}

/// An image index; also the shape of a layout's `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    // The spec only says SHOULD, and skopeo 1.9 writes index.json without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    pub fn new(manifests: Vec<Descriptor>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            media_type: Some(MEDIA_TYPE_IMAGE_INDEX.to_owned()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The entry tagged `name` (by [`ANNOTATION_REF_NAME`]), as `oci:DIR:name`
    /// resolves it.
    pub fn find_ref(&self, name: &str) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .find(|d| d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(name))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayout {
    image_layout_version: String,
}

// ---------------------------------------------------------------------------
// Bytes, digests, time

/// Compact JSON of `value`, the exact bytes that get hashed and stored.
///
/// Serialisation of plinth's types cannot fail; the `Result` is for
/// arbitrary `T` (a map with non-string keys, a failing `Serialize` impl).
pub fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(OciError::Serialize)
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format_digest(&Sha256::digest(bytes))
}

fn format_digest(hash: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(7 + 2 * hash.len());
    out.push_str("sha256:");
    for byte in hash {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

pub fn descriptor_for(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
        artifact_type: None,
    }
}

/// Content with its descriptor, so what is stored is always what was hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            descriptor: descriptor_for(media_type, &bytes),
            bytes,
        }
    }

    pub fn json<T: Serialize>(media_type: &str, value: &T) -> Result<Self> {
        Ok(Self::new(media_type, json_bytes(value)?))
    }
}

/// The hex part of a `sha256:` digest. Strict, because it becomes a file name
/// and must never name anything outside `blobs/sha256`.
fn digest_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        _ => Err(OciError::InvalidDigest {
            digest: digest.to_owned(),
        }),
    }
}

/// `epoch_secs` as RFC 3339 UTC (`2026-11-21T09:15:44Z`).
///
/// Written out by hand because the build must not depend on a time crate's
/// time-zone or leap-second handling; Unix time has no leap seconds, so plain
/// day arithmetic is exact.
pub fn rfc3339(epoch_secs: u64) -> Result<String> {
    if epoch_secs > MAX_RFC3339_EPOCH {
        return Err(OciError::EpochOutOfRange(epoch_secs));
    }
    let (year, month, day) = civil_from_days(epoch_secs / 86_400);
    let secs = epoch_secs % 86_400;
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
///
/// Counting years from 1 March makes the leap day the last day of the year,
/// so month lengths within a year follow a fixed 153-days-per-5-months
/// pattern and only whole 400-year eras (146,097 days) need dividing out.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 0000-03-01 is 719,468 days before 1970-01-01.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    // The corrections undo the leap days of every 4th, 100th and 400th year
    // before dividing by 365.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------
// Writing a layout

/// Builds one OCI image layout in a temporary sibling of its final path and
/// moves it into place in [`LayoutWriter::finish`]; dropping the writer
/// before that removes everything it wrote.
#[derive(Debug)]
pub struct LayoutWriter {
    final_dir: PathBuf,
    name: OsString,
    parent: PathBuf,
    temp: TempDir,
    written: BTreeSet<String>,
}

impl LayoutWriter {
    pub fn create(final_dir: &Path) -> Result<Self> {
        let bad_path = || OciError::BadLayoutPath {
            path: final_dir.to_path_buf(),
        };
        let name = final_dir.file_name().ok_or_else(bad_path)?.to_owned();
        let parent = match final_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_err("create directory", &parent))?;
        // Same parent as the final path, so the last step is a rename within
        // one file system.
        let temp = tempfile::Builder::new()
            .prefix(&sibling_prefix(&name, "tmp"))
            .tempdir_in(&parent)
            .map_err(io_err("create temporary directory in", &parent))?;
        set_mode(temp.path(), DIR_MODE)?;
        let blobs = temp.path().join("blobs");
        make_dir(&blobs)?;
        make_dir(&blobs.join("sha256"))?;
        Ok(Self {
            final_dir: final_dir.to_path_buf(),
            name,
            parent,
            temp,
            written: BTreeSet::new(),
        })
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        self.temp.path().join("blobs").join("sha256").join(hex)
    }

    /// Where a blob will be once finished; errors about content name this
    /// rather than a temporary path that will be gone.
    fn final_blob_path(&self, hex: &str) -> PathBuf {
        self.final_dir.join("blobs").join("sha256").join(hex)
    }

    /// Stores `bytes` as the blob `digest`; a blob already stored is skipped.
    pub fn add_blob(&mut self, digest: &str, bytes: &[u8]) -> Result<()> {
        let hex = digest_hex(digest)?;
        // Checked even for a blob already stored: different bytes under the
        // same digest mean the caller is confused, and hashing is cheap.
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                path: self.final_blob_path(hex),
                expected: digest.to_owned(),
                actual,
            });
        }
        if self.written.contains(hex) {
            return Ok(());
        }
        let path = self.blob_path(hex);
        // A partial file would make a retry fail with "file exists".
        write_new_file(&path, bytes).inspect_err(|_| {
            let _ = fs::remove_file(&path);
        })?;
        self.written.insert(hex.to_owned());
        Ok(())
    }

    pub fn add(&mut self, blob: &Blob) -> Result<()> {
        self.add_blob(&blob.descriptor.digest, &blob.bytes)
    }

    /// Serialises `value`, stores it, and returns its descriptor.
    pub fn add_json<T: Serialize>(&mut self, media_type: &str, value: &T) -> Result<Descriptor> {
        let blob = Blob::json(media_type, value)?;
        self.add(&blob)?;
        Ok(blob.descriptor)
    }

    /// Stores the file at `source` (a cached layer, say) as the blob
    /// `digest`, without holding it in memory.
    ///
    /// A hard link is used when the source is already a 0644 regular file,
    /// so the layout's mode is right without touching the source's inode;
    /// otherwise, or across file systems, the file is copied.
    pub fn add_blob_file(&mut self, digest: &str, source: &Path) -> Result<()> {
        let hex = digest_hex(digest)?;
        if self.written.contains(hex) {
            return Ok(());
        }
        let path = self.blob_path(hex);
        let meta = fs::metadata(source).map_err(io_err("read metadata of", source))?;
        let linkable = meta.is_file() && meta.permissions().mode() & 0o7777 == FILE_MODE;
        let placed = if linkable && fs::hard_link(source, &path).is_ok() {
            Ok(())
        } else {
            copy_new_file(source, &path)
        };
        // Hashing what landed in the layout, not the source, checks exactly
        // the bytes a reader will get.
        let checked = placed.and_then(|()| {
            let actual = hash_file(&path)?;
            if actual != digest {
                return Err(OciError::DigestMismatch {
                    path: source.to_path_buf(),
                    expected: digest.to_owned(),
                    actual,
                });
            }
            sync_file(&path)
        });
        if let Err(e) = checked {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.written.insert(hex.to_owned());
        Ok(())
    }

    /// Writes `oci-layout` and `index.json`, checks that every blob the index
    /// reaches is present with its stated size, and replaces `final_dir` with
    /// the new layout.
    ///
    /// Readers see either the old layout, no layout (for the moment between
    /// two renames), or the new one, never a mixture.
    pub fn finish(self, index: &Index) -> Result<()> {
        self.check_closure(index)?;
        let root = self.temp.path();
        let layout = OciLayout {
            image_layout_version: IMAGE_LAYOUT_VERSION.to_owned(),
        };
        write_new_file(&root.join("oci-layout"), &json_bytes(&layout)?)?;
        write_new_file(&root.join("index.json"), &json_bytes(index)?)?;
        let blobs = root.join("blobs");
        sync_dir(&blobs.join("sha256"))?;
        sync_dir(&blobs)?;
        sync_dir(root)?;
        self.replace_final()
    }

    fn check_closure(&self, index: &Index) -> Result<()> {
        let mut pending: Vec<Descriptor> = index.manifests.clone();
        let mut seen = BTreeSet::new();
        while let Some(desc) = pending.pop() {
            if !seen.insert(desc.digest.clone()) {
                continue;
            }
            let hex = digest_hex(&desc.digest)?;
            if !self.written.contains(hex) {
                return Err(OciError::MissingBlob {
                    path: self.final_dir.clone(),
                    digest: desc.digest,
                });
            }
            let path = self.blob_path(hex);
            let size = fs::metadata(&path)
                .map_err(io_err("read metadata of", &path))?
                .len();
            if size != desc.size {
                return Err(OciError::SizeMismatch {
                    path: self.final_blob_path(hex),
                    expected: desc.size,
                    actual: size,
                });
            }
            // Subjects are not followed: a referrer may point at an image
            // that lives elsewhere.
            let read = || -> Result<Vec<u8>> { fs::read(&path).map_err(io_err("read", &path)) };
            let final_path = self.final_blob_path(hex);
            match desc.media_type.as_str() {
                MEDIA_TYPE_IMAGE_INDEX => {
                    let child: Index = parse_json(&final_path, &read()?)?;
                    pending.extend(child.manifests);
                }
                MEDIA_TYPE_IMAGE_MANIFEST => {
                    let child: Manifest = parse_json(&final_path, &read()?)?;
                    pending.push(child.config);
                    pending.extend(child.layers);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn replace_final(self) -> Result<()> {
        let final_dir = &self.final_dir;
        let old = match fs::symlink_metadata(final_dir) {
            Ok(_) => {
                // An empty directory to rename the old layout onto: rename(2)
                // may replace an empty directory, and the TempDir guard
                // deletes the old layout however this function ends.
                let old = tempfile::Builder::new()
                    .prefix(&sibling_prefix(&self.name, "old"))
                    .tempdir_in(&self.parent)
                    .map_err(io_err("create temporary directory in", &self.parent))?;
                fs::rename(final_dir, old.path()).map_err(io_err("move aside", final_dir))?;
                Some(old)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read metadata of", final_dir)(e)),
        };
        if let Err(e) = fs::rename(self.temp.path(), final_dir) {
            if let Some(old) = &old {
                let _ = fs::rename(old.path(), final_dir);
            }
            return Err(io_err("move new layout to", final_dir)(e));
        }
        // The new layout now lives at final_dir: the guard must not delete it.
        let _ = self.temp.keep();
        sync_dir(&self.parent)?;
        if let Some(old) = old {
            let old_path = old.path().to_path_buf();
            old.close()
                .map_err(io_err("remove the replaced layout", &old_path))?;
        }
        Ok(())
    }
}

/// `.<name>.<what>-`: hidden, and named after the layout it belongs to, so a
/// leftover from a killed process is recognisable.
fn sibling_prefix(name: &OsStr, what: &str) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(format!(".{what}-"));
    prefix
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, Permissions::from_mode(mode)).map_err(io_err("set mode of", path))
}

/// Creates a directory with mode 0755 whatever the umask.
fn make_dir(path: &Path) -> Result<()> {
    fs::create_dir(path).map_err(io_err("create directory", path))?;
    set_mode(path, DIR_MODE)
}

/// Creates a file that must not exist yet, mode 0644 whatever the umask,
/// flushed to disk.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("create", path))?;
    file.write_all(bytes).map_err(io_err("write", path))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(io_err("set mode of", path))?;
    file.sync_all().map_err(io_err("flush", path))
}

fn copy_new_file(source: &Path, path: &Path) -> Result<()> {
    let mut input = File::open(source).map_err(io_err("open", source))?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("create", path))?;
    io::copy(&mut input, &mut output).map_err(io_err("copy to", path))?;
    output
        .set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(io_err("set mode of", path))
}

fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("flush", path))
}

/// Makes entries created or renamed in `path` durable.
fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("flush directory", path))
}

/// Digest of a file, read in pieces so big layers never sit in memory whole.
fn hash_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", path)(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(format_digest(&hasher.finalize()))
}

fn parse_json_file<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    parse_json(path, &bytes)
}

fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| OciError::Json {
        path: path.to_path_buf(),
        source,
    })
}

// ---------------------------------------------------------------------------
// Reading a layout

/// The `index.json` of the layout at `dir`, after checking its `oci-layout`.
pub fn read_layout(dir: &Path) -> Result<Index> {
    let layout_path = dir.join("oci-layout");
    let layout: OciLayout = parse_json_file(&layout_path)?;
    if layout.image_layout_version != IMAGE_LAYOUT_VERSION {
        return Err(OciError::Unsupported {
            path: layout_path,
            what: format!(
                "image layout version {:?}, expected {IMAGE_LAYOUT_VERSION:?}",
                layout.image_layout_version
            ),
        });
    }
    let index_path = dir.join("index.json");
    let index: Index = parse_json_file(&index_path)?;
    if index.schema_version != SCHEMA_VERSION {
        return Err(OciError::Unsupported {
            path: index_path,
            what: format!(
                "schemaVersion {}, expected {SCHEMA_VERSION}",
                index.schema_version
            ),
        });
    }
    Ok(index)
}

/// The blob `digest` of the layout at `dir`, checked against its digest.
pub fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    let path = dir.join("blobs").join("sha256").join(digest_hex(digest)?);
    let bytes = fs::read(&path).map_err(io_err("read", &path))?;
    let actual = sha256_digest(&bytes);
    if actual != digest {
        return Err(OciError::DigestMismatch {
            path,
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(bytes)
}

/// The blob `desc` points at, checked against its digest and size.
pub fn read_described(dir: &Path, desc: &Descriptor) -> Result<Vec<u8>> {
    let bytes = read_blob(dir, &desc.digest)?;
    if bytes.len() as u64 != desc.size {
        return Err(OciError::SizeMismatch {
            path: dir.join("blobs").join(desc.digest.replacen(':', "/", 1)),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// The JSON blob `desc` points at, checked and parsed.
pub fn read_json<T: DeserializeOwned>(dir: &Path, desc: &Descriptor) -> Result<T> {
    let bytes = read_described(dir, desc)?;
    let path = dir.join("blobs").join(desc.digest.replacen(':', "/", 1));
    parse_json(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const EPOCH: u64 = 1_795_252_544; // 2026-11-21T09:15:44Z

    /// A real one-file gzip tar layer, built the deterministic way, with its
    /// diff_id (the digest of the uncompressed tar).
    fn tiny_layer() -> (Blob, String) {
        let content = b"hello from plinth\n";
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(EPOCH);
        header.set_size(content.len() as u64);
        builder
            .append_data(&mut header, "hello.txt", &content[..])
            .unwrap();
        let tar_bytes = builder.into_inner().unwrap();
        let diff_id = sha256_digest(&tar_bytes);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar_bytes).unwrap();
        (
            Blob::new(MEDIA_TYPE_LAYER_GZIP, gz.finish().unwrap()),
            diff_id,
        )
    }

    fn config_for(platform: &Platform, diff_id: &str) -> ImageConfig {
        let created = rfc3339(EPOCH).unwrap();
        ImageConfig {
            created: Some(created.clone()),
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: ContainerConfig {
                user: Some("65532".into()),
                env: vec!["PATH=/usr/bin:/bin".into()],
                working_dir: Some("/home/nonroot".into()),
                ..ContainerConfig::default()
            },
            rootfs: RootFs::layers(vec![diff_id.to_owned()]),
            history: vec![History {
                created: Some(created),
                created_by: Some("plinth".into()),
                ..History::default()
            }],
        }
    }

    /// Writes a multi-arch image tagged `tag` plus an SBOM referrer of its
    /// amd64 manifest; returns the index.json written and the image index.
    fn write_sample(dir: &Path, tag: &str) -> (Index, Blob) {
        let (layer, diff_id) = tiny_layer();
        let mut writer = LayoutWriter::create(dir).unwrap();
        writer.add(&layer).unwrap();
        let mut per_arch = Vec::new();
        for arch in ["amd64", "arm64"] {
            let platform = Platform::from_debian_arch(arch).unwrap();
            let config = writer
                .add_json(MEDIA_TYPE_IMAGE_CONFIG, &config_for(&platform, &diff_id))
                .unwrap();
            let manifest = Manifest::image(config, vec![layer.descriptor.clone()]);
            let desc = writer
                .add_json(MEDIA_TYPE_IMAGE_MANIFEST, &manifest)
                .unwrap();
            per_arch.push(desc.with_platform(platform));
        }
        let image_index =
            Blob::json(MEDIA_TYPE_IMAGE_INDEX, &Index::new(per_arch.clone())).unwrap();
        writer.add(&image_index).unwrap();

        let sbom = Blob::new(
            "application/spdx+json",
            br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec(),
        );
        writer.add(&sbom).unwrap();
        writer.add_blob(EMPTY_DIGEST, EMPTY_BLOB).unwrap();
        let artifact = Manifest::artifact(
            "application/spdx+json",
            vec![sbom.descriptor.clone()],
            per_arch[0].clone(),
        );
        let artifact_desc = writer
            .add_json(MEDIA_TYPE_IMAGE_MANIFEST, &artifact)
            .unwrap()
            .with_artifact_type("application/spdx+json");

        let top = Index::new(vec![
            image_index
                .descriptor
                .clone()
                .with_annotation(ANNOTATION_REF_NAME, tag),
            artifact_desc,
        ]);
        writer.finish(&top).unwrap();
        (top, image_index)
    }

    /// Every entry under `dir`: relative path, mode bits, file bytes.
    fn tree(dir: &Path) -> Vec<(String, u32, Option<Vec<u8>>)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u32, Option<Vec<u8>>)>) {
            let mut entries: Vec<_> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for path in entries {
                let meta = fs::symlink_metadata(&path).unwrap();
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                let mode = meta.permissions().mode() & 0o7777;
                if meta.is_dir() {
                    out.push((rel, mode, None));
                    walk(root, &path, out);
                } else {
                    out.push((rel, mode, Some(fs::read(&path).unwrap())));
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn digest_of(byte: u8) -> String {
        format!("sha256:{}", format!("{byte:02x}").repeat(32))
    }

    #[test]
    fn config_json_bytes_are_pinned() {
        let mut config = config_for(
            &Platform::from_debian_arch("arm64").unwrap(),
            &digest_of(0xab),
        );
        config.config.entrypoint = Some(vec!["/busybox/sh".into()]);
        config.config.cmd = Some(vec![]);
        config.config.labels.insert("z".into(), "1".into());
        config.config.labels.insert("a".into(), "2".into());
        config
            .config
            .exposed_ports
            .insert("8080/tcp".into(), Empty {});
        config
            .config
            .exposed_ports
            .insert("443/tcp".into(), Empty {});
        config.history.push(History {
            comment: Some("busybox".into()),
            empty_layer: true,
            ..History::default()
        });
        let expected = concat!(
            r#"{"created":"2026-11-21T09:15:44Z","architecture":"arm64","os":"linux","variant":"v8","#,
            r#""config":{"User":"65532","Env":["PATH=/usr/bin:/bin"],"Entrypoint":["/busybox/sh"],"#,
            r#""Cmd":[],"WorkingDir":"/home/nonroot","Labels":{"a":"2","z":"1"},"#,
            r#""ExposedPorts":{"443/tcp":{},"8080/tcp":{}}},"#,
            r#""rootfs":{"type":"layers","diff_ids":["sha256:"#,
            "abababababababababababababababababababababababababababababababab",
            r#""]},"history":[{"created":"2026-11-21T09:15:44Z","created_by":"plinth"},"#,
            r#"{"comment":"busybox","empty_layer":true}]}"#
        );
        let bytes = json_bytes(&config).unwrap();
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
        let back: ImageConfig = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn minimal_config_keeps_required_keys_only() {
        let config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..ImageConfig::default()
        };
        assert_eq!(
            String::from_utf8(json_bytes(&config).unwrap()).unwrap(),
            r#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#
        );
    }

    #[test]
    fn manifest_and_index_json_bytes_are_pinned() {
        let config = Descriptor {
            media_type: MEDIA_TYPE_IMAGE_CONFIG.into(),
            digest: digest_of(1),
            size: 10,
            platform: None,
            annotations: BTreeMap::new(),
            artifact_type: None,
        };
        let layer = Descriptor {
            media_type: MEDIA_TYPE_LAYER_GZIP.into(),
            digest: digest_of(2),
            size: 20,
            ..config.clone()
        };
        let mut manifest = Manifest::image(config, vec![layer]);
        manifest
            .annotations
            .insert(ANNOTATION_SOURCE.into(), "https://example.org/r".into());
        manifest
            .annotations
            .insert(ANNOTATION_BASE_NAME.into(), "static".into());
        let d1 = digest_of(1);
        let d2 = digest_of(2);
        assert_eq!(
            String::from_utf8(json_bytes(&manifest).unwrap()).unwrap(),
            format!(
                concat!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                    r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d1}","size":10}},"#,
                    r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d2}","size":20}}],"#,
                    r#""annotations":{{"org.opencontainers.image.base.name":"static","#,
                    r#""org.opencontainers.image.source":"https://example.org/r"}}}}"#
                ),
                d1 = d1,
                d2 = d2
            )
        );

        let entry = Descriptor {
            media_type: MEDIA_TYPE_IMAGE_MANIFEST.into(),
            digest: digest_of(3),
            size: 30,
            platform: Platform::from_debian_arch("arm64"),
            annotations: BTreeMap::new(),
            artifact_type: None,
        };
        let tagged = Descriptor {
            media_type: MEDIA_TYPE_IMAGE_INDEX.into(),
            platform: None,
            ..entry.clone()
        }
        .with_annotation(ANNOTATION_REF_NAME, "nonroot");
        let d3 = digest_of(3);
        assert_eq!(
            String::from_utf8(json_bytes(&Index::new(vec![entry, tagged])).unwrap()).unwrap(),
            format!(
                concat!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#,
                    r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d3}","size":30,"#,
                    r#""platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},"#,
                    r#"{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{d3}","size":30,"#,
                    r#""annotations":{{"org.opencontainers.image.ref.name":"nonroot"}}}}]}}"#
                ),
                d3 = d3
            )
        );
    }

    #[test]
    fn artifact_manifest_json_bytes_are_pinned() {
        let subject = Descriptor {
            media_type: MEDIA_TYPE_IMAGE_MANIFEST.into(),
            digest: digest_of(4),
            size: 40,
            platform: None,
            annotations: BTreeMap::new(),
            artifact_type: None,
        };
        let sbom = Descriptor {
            media_type: "application/spdx+json".into(),
            digest: digest_of(5),
            size: 50,
            ..subject.clone()
        };
        let manifest = Manifest::artifact("application/spdx+json", vec![sbom], subject);
        let (d4, d5) = (digest_of(4), digest_of(5));
        assert_eq!(
            String::from_utf8(json_bytes(&manifest).unwrap()).unwrap(),
            format!(
                concat!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                    r#""artifactType":"application/spdx+json","#,
                    r#""config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"#,
                    r#""layers":[{{"mediaType":"application/spdx+json","digest":"{d5}","size":50}}],"#,
                    r#""subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d4}","size":40}}}}"#
                ),
                empty = EMPTY_DIGEST,
                d4 = d4,
                d5 = d5
            )
        );
    }

    #[test]
    fn empty_blob_matches_the_spec() {
        assert_eq!(sha256_digest(EMPTY_BLOB), EMPTY_DIGEST);
        let d = Descriptor::empty();
        assert_eq!((d.digest.as_str(), d.size), (EMPTY_DIGEST, 2));
        assert_eq!(d.media_type, MEDIA_TYPE_EMPTY);
    }

    #[test]
    fn platforms_follow_oci_names() {
        let arm64 = Platform::from_debian_arch("arm64").unwrap();
        assert_eq!(
            (arm64.architecture.as_str(), arm64.variant.as_deref()),
            ("arm64", Some("v8"))
        );
        let amd64 = Platform::from_debian_arch("amd64").unwrap();
        assert_eq!(amd64.variant, None);
        assert_eq!(
            Platform::from_debian_arch("ppc64el").unwrap().architecture,
            "ppc64le"
        );
        assert_eq!(Platform::from_debian_arch("vax"), None);
    }

    #[test]
    fn digests_are_checked_strictly() {
        for bad in [
            "",
            "sha256:",
            "sha512:00",
            "sha256:../../../../etc/passwd",
            &digest_of(0xab).to_uppercase(),
            &format!("{}0", digest_of(1)),
            &digest_of(1).replace("sha256:", "SHA256:"),
        ] {
            assert!(
                matches!(digest_hex(bad), Err(OciError::InvalidDigest { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(digest_hex(&digest_of(0xab)).is_ok());
    }

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(EPOCH).unwrap(), "2026-11-21T09:15:44Z");
        assert_eq!(rfc3339(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_107_542_400).unwrap(), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(MAX_RFC3339_EPOCH).unwrap(), "9999-12-31T23:59:59Z");
        assert!(matches!(
            rfc3339(MAX_RFC3339_EPOCH + 1),
            Err(OciError::EpochOutOfRange(_))
        ));
        assert!(rfc3339(u64::MAX).is_err());
    }

    #[test]
    fn rfc3339_agrees_with_date() {
        // Edges of days, months, leap and century years, plus a spread of
        // pseudo-random values over the whole range.
        let mut values: Vec<u64> = vec![0, 59, 60, 86_399, 86_400, MAX_RFC3339_EPOCH];
        for day in [
            789, 790, 10_956, 11_016, 11_017, 11_322, 47_540, 47_541, 47_482, 2_932_896,
        ] {
            values.extend([day * 86_400 - 1, day * 86_400, day * 86_400 + 43_210]);
        }
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            values.push((state >> 11) % (MAX_RFC3339_EPOCH + 1));
            values.push((state >> 11) % 4_102_444_800); // before 2100
        }
        let input: String = values.iter().map(|v| format!("@{v}\n")).collect();
        let mut child = match Command::new("date")
            .args(["-u", "-f", "-", "+%Y-%m-%dT%H:%M:%SZ"])
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "date: {e}");
                eprintln!("skipped: cannot run date: {e}");
                return;
            }
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert_eq!(lines.len(), values.len());
        for (v, want) in values.iter().zip(lines) {
            assert_eq!(rfc3339(*v).unwrap(), want, "epoch {v}");
        }
    }

    #[test]
    fn layout_written_twice_is_identical() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a").join("static-debian13");
        let b = tmp.path().join("b").join("static-debian13");
        write_sample(&a, "latest");
        write_sample(&b, "latest");
        let (ta, tb) = (tree(&a), tree(&b));
        assert_eq!(ta, tb);
        assert!(ta.iter().any(|(p, _, _)| p == "index.json"));
        assert_eq!(
            fs::read(a.join("oci-layout")).unwrap(),
            br#"{"imageLayoutVersion":"1.0.0"}"#
        );
        for (path, mode, bytes) in &ta {
            let want = if bytes.is_some() { 0o644 } else { 0o755 };
            assert_eq!(*mode, want, "{path}");
        }
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        // Nothing but the layout is left beside it.
        assert_eq!(names(&tmp.path().join("a")), ["static-debian13"]);
    }

    #[test]
    fn layout_reads_back_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        let (top, image_index) = write_sample(&dir, "nonroot");
        assert_eq!(read_layout(&dir).unwrap(), top);
        let found = top.find_ref("nonroot").unwrap();
        let index: Index = read_json(&dir, found).unwrap();
        assert_eq!(json_bytes(&index).unwrap(), image_index.bytes);
        for desc in &index.manifests {
            let manifest: Manifest = read_json(&dir, desc).unwrap();
            let config: ImageConfig = read_json(&dir, &manifest.config).unwrap();
            let platform = desc.platform.as_ref().unwrap();
            assert_eq!(config.architecture, platform.architecture);
            assert_eq!(config.variant, platform.variant);
            read_described(&dir, &manifest.layers[0]).unwrap();
        }
        assert!(top.find_ref("latest").is_none());

        // A corrupted blob is caught on the way out.
        let layer = tiny_layer().0.descriptor;
        let path = dir
            .join("blobs/sha256")
            .join(digest_hex(&layer.digest).unwrap());
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = read_blob(&dir, &layer.digest).unwrap_err();
        assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn finish_replaces_an_existing_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cc-debian12");
        write_sample(&dir, "latest");
        fs::write(dir.join("stray"), b"from the old layout").unwrap();
        let (top, _) = write_sample(&dir, "debug");
        assert_eq!(read_layout(&dir).unwrap(), top);
        assert!(!dir.join("stray").exists());
        assert_eq!(names(tmp.path()), ["cc-debian12"]);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        let mut writer = LayoutWriter::create(&dir).unwrap();
        let layer = tiny_layer().0;
        writer.add(&layer).unwrap();
        writer.add(&layer).unwrap();
        assert!(writer.add_blob(&layer.descriptor.digest, b"other").is_err());
        let err = writer.add_blob(&digest_of(7), b"not that").unwrap_err();
        assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains("img/blobs/sha256/0707"), "{err}");
        drop(writer);
        assert!(names(tmp.path()).is_empty());
    }

    #[test]
    fn failed_finish_keeps_the_old_layout_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        write_sample(&dir, "latest");
        let before = tree(&dir);

        // An index naming a blob that was never added.
        let writer = LayoutWriter::create(&dir).unwrap();
        let missing = descriptor_for(MEDIA_TYPE_IMAGE_MANIFEST, b"{}");
        let err = writer.finish(&Index::new(vec![missing])).unwrap_err();
        assert!(matches!(err, OciError::MissingBlob { .. }), "{err}");

        // A blob whose size disagrees with its descriptor.
        let mut writer = LayoutWriter::create(&dir).unwrap();
        let layer = tiny_layer().0;
        writer.add(&layer).unwrap();
        let mut wrong = layer.descriptor.clone();
        wrong.size += 1;
        let manifest = writer
            .add_json(
                MEDIA_TYPE_IMAGE_MANIFEST,
                &Manifest::image(wrong.clone(), vec![]),
            )
            .unwrap();
        let err = writer.finish(&Index::new(vec![manifest])).unwrap_err();
        assert!(matches!(err, OciError::SizeMismatch { .. }), "{err}");

        assert_eq!(tree(&dir), before);
        assert_eq!(names(tmp.path()), ["img"]);
    }

    #[test]
    fn finish_onto_a_file_fails_cleanly() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("img");
        fs::write(&path, b"not a layout").unwrap();
        let mut writer = LayoutWriter::create(&path).unwrap();
        writer.add(&tiny_layer().0).unwrap();
        let err = writer.finish(&Index::new(vec![])).unwrap_err();
        assert!(matches!(err, OciError::Io { .. }), "{err}");
        assert!(err.to_string().contains("img"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"not a layout");
        assert_eq!(names(tmp.path()), ["img"]);
    }

    #[test]
    fn layout_paths_without_a_name_are_refused() {
        for path in ["/", "..", "a/.."] {
            assert!(matches!(
                LayoutWriter::create(Path::new(path)),
                Err(OciError::BadLayoutPath { .. })
            ));
        }
    }

    #[test]
    fn blob_files_are_linked_or_copied_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let (layer, _) = tiny_layer();
        let cached = tmp.path().join("cached");
        fs::write(&cached, &layer.bytes).unwrap();
        let odd_mode = tmp.path().join("odd-mode");
        fs::write(&odd_mode, EMPTY_BLOB).unwrap();
        fs::set_permissions(&odd_mode, Permissions::from_mode(0o600)).unwrap();
        let wrong = tmp.path().join("wrong");
        fs::write(&wrong, b"something else").unwrap();

        for mode in [0o644, 0o444] {
            fs::set_permissions(&cached, Permissions::from_mode(mode)).unwrap();
            let dir = tmp.path().join(format!("out-{mode:o}"));
            let mut writer = LayoutWriter::create(&dir).unwrap();
            writer
                .add_blob_file(&layer.descriptor.digest, &cached)
                .unwrap();
            writer.add_blob_file(EMPTY_DIGEST, &odd_mode).unwrap();
            let err = writer.add_blob_file(&digest_of(9), &wrong).unwrap_err();
            assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
            // The failed blob left no file behind, so a retry with the right
            // content works.
            writer.add_blob_file(&digest_of(9), &wrong).unwrap_err();
            writer.finish(&Index::new(vec![])).unwrap();
            assert_eq!(
                read_blob(&dir, &layer.descriptor.digest).unwrap(),
                layer.bytes
            );
            assert_eq!(read_blob(&dir, EMPTY_DIGEST).unwrap(), EMPTY_BLOB);
            for (path, m, _) in tree(&dir) {
                let want = if path.starts_with("blobs/sha256/") || !path.starts_with("blobs") {
                    0o644
                } else {
                    0o755
                };
                assert_eq!(m, want, "{path}");
            }
            assert_eq!(names(&dir.join("blobs/sha256")).len(), 2);
        }
        // Sources keep their own modes.
        assert_eq!(
            fs::metadata(&cached).unwrap().permissions().mode() & 0o7777,
            0o444
        );
        assert_eq!(
            fs::metadata(&odd_mode).unwrap().permissions().mode() & 0o7777,
            0o600
        );
    }

    fn skopeo_available() -> bool {
        match Command::new("skopeo").arg("--version").output() {
            Ok(out) if out.status.success() => true,
            other => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true");
                assert!(!ci, "skopeo is required in CI: {other:?}");
                eprintln!("skipped: skopeo not found ({other:?})");
                false
            }
        }
    }

    fn skopeo(args: &[&str]) -> Vec<u8> {
        let out = Command::new("skopeo").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    #[test]
    fn skopeo_reads_a_multi_arch_tag() {
        if !skopeo_available() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("static-debian13");
        let (_, image_index) = write_sample(&dir, "nonroot");
        let reference = format!("oci:{}:nonroot", dir.display());

        let raw = skopeo(&["inspect", "--raw", &reference]);
        assert_eq!(raw, image_index.bytes);
        let index: Index = serde_json::from_slice(&raw).unwrap();

        for (entry, (arch, variant)) in index.manifests.iter().zip([("amd64", ""), ("arm64", "v8")])
        {
            let mut args = vec!["--override-os", "linux", "--override-arch", arch];
            if !variant.is_empty() {
                args.extend(["--override-variant", variant]);
            }
            args.extend(["inspect", &reference]);
            let out: serde_json::Value = serde_json::from_slice(&skopeo(&args)).unwrap();
            // skopeo reports the digest of what the tag names (the image
            // index), not of the per-platform manifest it chose.
            assert_eq!(
                out["Digest"],
                image_index.descriptor.digest.as_str(),
                "{out}"
            );
            assert_eq!(out["Architecture"], arch, "{out}");
            assert_eq!(out["Os"], "linux", "{out}");
            assert_eq!(out["Created"], "2026-11-21T09:15:44Z", "{out}");
            assert_eq!(out["Layers"][0], tiny_layer().0.descriptor.digest.as_str());

            // The exact config bytes show which manifest skopeo chose.
            let manifest: Manifest = read_json(&dir, entry).unwrap();
            args.splice(args.len() - 1..args.len() - 1, ["--config", "--raw"]);
            assert_eq!(
                skopeo(&args),
                read_described(&dir, &manifest.config).unwrap(),
                "{arch}"
            );
        }

        // Copying every platform reads every blob and must keep the digests.
        let copy = tmp.path().join("copy");
        skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            &reference,
            &format!("oci:{}:nonroot", copy.display()),
        ]);
        let copied = read_layout(&copy).unwrap();
        assert_eq!(
            copied.find_ref("nonroot").unwrap().digest,
            image_index.descriptor.digest
        );
    }
}
