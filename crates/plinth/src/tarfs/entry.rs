//! A file-system entry: the unit that flows from a `.deb` (or a generator)
//! through the rootfs tree into a tar layer, and back out of a layer when
//! `verify` explains a difference.

use std::sync::Arc;

/// One path in a root file system.
///
/// `path` is relative to the root, without a leading `/` or `./` and without
/// a trailing `/` (`usr/bin/env`, `etc`). It never contains `..`, `.` or
/// empty components: readers reject such input before an `Entry` exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the Unix epoch; layer writers clamp it to the image epoch.
    pub mtime: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    /// File contents, shared so that the same bytes can sit in several trees.
    File(Arc<[u8]>),
    /// Target as written in the package (absolute or relative).
    Symlink(String),
    /// Root-relative path (same form as `Entry::path`) of the entry this one links to.
    Hardlink(String),
}

impl Entry {
    pub fn dir(path: impl Into<String>, mode: u32) -> Self {
        Self::new(path, EntryKind::Dir, mode)
    }

    pub fn file(path: impl Into<String>, mode: u32, contents: impl Into<Arc<[u8]>>) -> Self {
        Self::new(path, EntryKind::File(contents.into()), mode)
    }

    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new(path, EntryKind::Symlink(target.into()), 0o777)
    }

    fn new(path: impl Into<String>, kind: EntryKind, mode: u32) -> Self {
        Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    pub fn owned_by(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, EntryKind::Dir)
    }
}
