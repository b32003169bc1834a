//! OCI image layout directories: the writer, which builds a layout in a
//! temporary sibling and moves it into place complete, and the reader,
//! which checks every blob against its digest on the way out.

use super::blob::{Blob, digest_hex, json_bytes};
use super::model::{Descriptor, Index, Manifest};
use super::{
    DIR_MODE, FILE_MODE, IMAGE_LAYOUT_VERSION, MEDIA_TYPE_IMAGE_INDEX, MEDIA_TYPE_IMAGE_MANIFEST,
    OciError, Result, SCHEMA_VERSION, io_err,
};
use crate::support::digest::{hex, sha256_digest};
use crate::support::fs::{TEMP_PREFIX, hold, lock_dir};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayout {
    image_layout_version: String,
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
    /// The temporary directory's lock, held while this writer lives: it
    /// tells a later run's clean-up that the directory is not a leftover.
    _held: File,
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
            .prefix(&sibling_prefix(&name, "new"))
            .tempdir_in(&parent)
            .map_err(io_err("create temporary directory in", &parent))?;
        let held = hold(temp.path()).map_err(io_err("lock", temp.path()))?;
        set_mode(temp.path(), DIR_MODE)?;
        let blobs = temp.path().join("blobs");
        make_dir(&blobs)?;
        make_dir(&blobs.join("sha256"))?;
        Ok(Self {
            final_dir: final_dir.to_path_buf(),
            name,
            parent,
            temp,
            _held: held,
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
        // The moved-aside layout holds no lock of its own; the parent's
        // lock keeps a clean-up from taking it for a leftover meanwhile.
        let _parent = lock_dir(&self.parent).map_err(io_err("lock", &self.parent))?;
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

/// `.plinth-tmp-<name>.<what>-`: hidden, marked as plinth's temporary
/// (so a leftover from a killed process is recognised, and removed by
/// the next run), and named after the layout it belongs to.
fn sibling_prefix(name: &OsStr, what: &str) -> OsString {
    let mut prefix = OsString::from(TEMP_PREFIX);
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
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
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

/// The path of the blob `desc` points at, after checking its size and
/// digest by reading it in pieces: for callers that stream a large blob
/// (an upload) rather than hold it in memory.
pub fn described_blob_file(dir: &Path, desc: &Descriptor) -> Result<PathBuf> {
    let path = dir
        .join("blobs")
        .join("sha256")
        .join(digest_hex(&desc.digest)?);
    let size = fs::metadata(&path).map_err(io_err("read", &path))?.len();
    if size != desc.size {
        return Err(OciError::SizeMismatch {
            path,
            expected: desc.size,
            actual: size,
        });
    }
    let actual = hash_file(&path)?;
    if actual != desc.digest {
        return Err(OciError::DigestMismatch {
            path,
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(path)
}

/// The JSON blob `desc` points at, checked and parsed.
pub fn read_json<T: DeserializeOwned>(dir: &Path, desc: &Descriptor) -> Result<T> {
    let bytes = read_described(dir, desc)?;
    let path = dir.join("blobs").join(desc.digest.replacen(':', "/", 1));
    parse_json(&path, &bytes)
}
