//! File-system entries and the tar streams that carry them: what a `.deb`'s
//! `data.tar` holds and what an image layer is, below both the `.deb` reader
//! ([`crate::debian::deb`]) and the layer writer ([`crate::layer`]).
//!
//! It owns the [`Entry`] type, the strict tar reader (no path may leave the
//! tree, hard links only to earlier files, an end-of-archive block
//! required, every entry and the whole stream under a ceiling)
//! and the deterministic GNU tar writer (sorted entries, numeric owners, the
//! epoch as the newest mtime). It does no compression and no I/O of its own.

use std::io;

mod entry;
mod read;
mod write;

pub use entry::{Entry, EntryKind};
pub use read::{TarLimits, read_tar};
pub use write::write_tar;

/// A tar block: headers and contents are padded to it.
const BLOCK: usize = 512;

/// Why entries could not be written as tar, or a tar stream read back.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("entry {path:?}: invalid path: {why}")]
    InvalidPath { path: String, why: &'static str },
    #[error("entry {path}: path appears more than once")]
    Duplicate { path: String },
    #[error("entry {path}: parent {parent} is not a directory entry earlier in the layer")]
    MissingParent { path: String, parent: String },
    #[error("entry {path}: mode {mode:#o} has bits outside 0o7777")]
    Mode { path: String, mode: u32 },
    #[error("entry {path}: symlink target {target:?}: {why}")]
    SymlinkTarget {
        path: String,
        target: String,
        why: &'static str,
    },
    #[error("entry {path}: hard link target {target:?}: {why}")]
    HardlinkTarget {
        path: String,
        target: String,
        why: &'static str,
    },
    #[error("writing layer: {source}")]
    Write { source: io::Error },
    #[error("reading tar stream: {source}")]
    Read { source: io::Error },
    #[error("tar entry {path:?}: {source}")]
    Header { path: String, source: io::Error },
    #[error("tar entry {path:?}: name is not UTF-8")]
    NotUtf8 { path: String },
    #[error(
        "tar entry {path}: {kind} entries are not supported (expected directory, regular file, symlink or hard link)"
    )]
    Unsupported { path: String, kind: String },
    #[error(
        "tar entry {path}: expected {expected} bytes of contents, the stream ends after {found}"
    )]
    ShortContents {
        path: String,
        expected: u64,
        found: u64,
    },
    #[error("tar stream ends without an end-of-archive block")]
    Truncated,
    /// One entry's declared size is past the ceiling per file.
    #[error("tar entry {path}: {size} bytes, above the ceiling of {limit} bytes per file")]
    EntryTooLarge { path: String, size: u64, limit: u64 },
    /// The stream unpacks to more than the ceiling for the whole.
    #[error("unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
}
