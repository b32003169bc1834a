//! Building binary `.deb` packages in memory, valid and hostile.
//!
//! Owns the on-disk format dpkg-deb produces: an `ar` archive of
//! `debian-binary`, `control.tar.<ext>` (with `./control` and `./md5sums`)
//! and `data.tar.<ext>` whose members are named `./path` and whose parent
//! directories are listed before their contents. It also owns reading the
//! control stanza back out of a `.deb`, which the archive builder needs.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use md5::{Digest, Md5};

use crate::compress::Compression;

/// Default modification time of every member: 2026-11-01T00:00:00Z.
pub const DEFAULT_MTIME: u64 = 1_793_491_200;

/// Fields laid out in this order before any others, as dpkg-deb tools do;
/// `Description` is always last because its value is multi-line.
const FIELD_ORDER: &[&str] = &[
    "Package",
    "Source",
    "Version",
    "Architecture",
    "Maintainer",
    "Installed-Size",
    "Pre-Depends",
    "Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Replaces",
    "Provides",
    "Section",
    "Priority",
    "Multi-Arch",
    "Essential",
    "Protected",
    "Homepage",
];

/// The type of a tar member written by [`DebBuilder::raw_entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with the entry's data.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to the entry's link name.
    Symlink,
    /// A hard link to the member named by the entry's link name.
    Hardlink,
    /// A character device node.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device node.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// A tar member written exactly as given: no `./` prefix, no parent
/// directories, no md5sums line. For feeding unpackers hostile names such
/// as `./../etc/x`, `/etc/abs` or `usr/../../x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Member name bytes; names over 100 bytes get a GNU long-name record.
    pub name: Vec<u8>,
    /// Member type.
    pub kind: EntryKind,
    /// Permission bits, including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner user id.
    pub uid: u64,
    /// Owner group id.
    pub gid: u64,
    /// Link target for symlinks and hard links, empty otherwise.
    pub link_name: Vec<u8>,
    /// File contents; the header's size is its length.
    pub data: Vec<u8>,
}

impl RawEntry {
    /// A root-owned 0644 regular file.
    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        RawEntry {
            name: name.as_ref().to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            link_name: Vec::new(),
            data: data.as_ref().to_vec(),
        }
    }

    /// A root-owned 0755 directory.
    pub fn dir(name: impl AsRef<[u8]>) -> Self {
        RawEntry {
            kind: EntryKind::Dir,
            mode: 0o755,
            ..RawEntry::file(name, b"")
        }
    }

    /// A symlink `name -> target`.
    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        RawEntry {
            kind: EntryKind::Symlink,
            mode: 0o777,
            link_name: target.as_ref().to_vec(),
            ..RawEntry::file(name, b"")
        }
    }

    /// A hard link `name` to the member named `target`.
    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        RawEntry {
            kind: EntryKind::Hardlink,
            link_name: target.as_ref().to_vec(),
            ..RawEntry::file(name, b"")
        }
    }

    /// A device or fifo node of the given kind.
    pub fn node(name: impl AsRef<[u8]>, kind: EntryKind) -> Self {
        RawEntry {
            kind,
            mode: 0o600,
            ..RawEntry::file(name, b"")
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    Hardlink(String),
}

#[derive(Debug, Clone)]
struct Entry {
    /// Normalised as `.` or `./a/b`, never with a trailing slash.
    path: String,
    node: Node,
    mode: u32,
    uid: u64,
    gid: u64,
}

#[derive(Debug, Clone)]
enum Item {
    Normal(Entry),
    Raw(RawEntry),
}

/// Builds a binary package. Methods consume and return the builder so
/// calls chain; [`DebBuilder::build`] can be called any number of times.
///
/// ```
/// use plinth_testkit::deb::DebBuilder;
/// let deb = DebBuilder::new("hello", "1:2.12-1", "amd64")
///     .field("Depends", "libc6 (>= 2.34)")
///     .file("/usr/bin/hello", 0o755, b"#!/bin/sh\necho hi\n")
///     .symlink("/usr/bin/hi", "hello")
///     .build();
/// assert!(deb.starts_with(b"!<arch>\n"));
/// ```
#[derive(Debug, Clone)]
pub struct DebBuilder {
    name: String,
    version: String,
    arch: String,
    fields: Vec<(String, String)>,
    removed: HashSet<String>,
    items: Vec<Item>,
    uid: u64,
    gid: u64,
    mtime: u64,
    control_compression: Compression,
    data_compression: Compression,
    control_members: Vec<(String, u32, Vec<u8>)>,
    md5sums: bool,
}

impl DebBuilder {
    /// A package with no files and default Maintainer, Section, Priority
    /// and Description fields; Installed-Size is computed from the files
    /// unless set with [`DebBuilder::field`].
    pub fn new(name: &str, version: &str, arch: &str) -> Self {
        DebBuilder {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: arch.to_owned(),
            fields: vec![
                (
                    "Maintainer".to_owned(),
                    "Plinth Testkit <testkit@plinth.invalid>".to_owned(),
                ),
                ("Section".to_owned(), "misc".to_owned()),
                ("Priority".to_owned(), "optional".to_owned()),
                (
                    "Description".to_owned(),
                    format!(
                        "test package {name}\nBuilt by plinth-testkit for offline tests.\n\nNot a real package."
                    ),
                ),
            ],
            removed: HashSet::new(),
            items: Vec::new(),
            uid: 0,
            gid: 0,
            mtime: DEFAULT_MTIME,
            control_compression: Compression::Xz,
            data_compression: Compression::Xz,
            control_members: Vec::new(),
            md5sums: true,
        }
    }

    /// The package name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version, epoch included.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The architecture (`amd64`, `all`, ...).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The conventional file name, `<name>_<version without epoch>_<arch>.deb`.
    pub fn file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            strip_epoch(&self.version),
            self.arch
        )
    }

    /// Sets a control field, replacing any field of the same name
    /// (case-insensitively). Multi-line values are written with the
    /// continuation lines indented and empty lines as ` .`. Setting
    /// `Package`, `Version` or `Architecture` overrides the constructor's
    /// value in the control file only.
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.removed.remove(&name.to_ascii_lowercase());
        match self
            .fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value.to_owned(),
            None => self.fields.push((name.to_owned(), value.to_owned())),
        }
        self
    }

    /// Leaves a field out of the control file, including the mandatory
    /// ones and the computed Installed-Size, to produce broken packages.
    pub fn remove_field(mut self, name: &str) -> Self {
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.removed.insert(name.to_ascii_lowercase());
        self
    }

    /// Owner of the entries added after this call (parent directories
    /// that are created implicitly stay root-owned).
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Modification time of every member, in seconds since the epoch.
    pub fn mtime(mut self, secs: u64) -> Self {
        self.mtime = secs;
        self
    }

    /// Compression of both `control.tar` and `data.tar`.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.control_compression = compression;
        self.data_compression = compression;
        self
    }

    /// Compression of `control.tar` only.
    pub fn control_compression(mut self, compression: Compression) -> Self {
        self.control_compression = compression;
        self
    }

    /// Compression of `data.tar` only.
    pub fn data_compression(mut self, compression: Compression) -> Self {
        self.data_compression = compression;
        self
    }

    /// Adds a member to `control.tar` besides `control` and `md5sums`,
    /// e.g. `("postinst", 0o755, script)` or `("conffiles", 0o644, ...)`.
    pub fn control_member(mut self, name: &str, mode: u32, data: impl AsRef<[u8]>) -> Self {
        self.control_members
            .push((name.to_owned(), mode, data.as_ref().to_vec()));
        self
    }

    /// Leaves `./md5sums` out of `control.tar`, as some old packages do.
    pub fn without_md5sums(mut self) -> Self {
        self.md5sums = false;
        self
    }

    /// Adds a directory. Paths may be given as `/usr/lib`, `usr/lib` or
    /// `./usr/lib`. If the directory was already listed implicitly as a
    /// parent, this mode and owner are used there instead.
    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.push(path, Node::Dir, mode)
    }

    /// Adds a regular file; its parents are listed automatically.
    pub fn file(self, path: &str, mode: u32, data: impl AsRef<[u8]>) -> Self {
        self.push(path, Node::File(data.as_ref().to_vec()), mode)
    }

    /// Adds a symlink `path -> target`, the target written verbatim.
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.push(path, Node::Symlink(target.to_owned()), 0o777)
    }

    /// Adds a hard link `path` to the earlier member `target` (given in
    /// the same forms as paths; stored as `./target` like GNU tar does).
    pub fn hardlink(self, path: &str, target: &str) -> Self {
        let target = normalize(target);
        self.push(path, Node::Hardlink(target), 0o644)
    }

    /// Adds a member written exactly as described, bypassing all checks.
    pub fn raw_entry(mut self, entry: RawEntry) -> Self {
        self.items.push(Item::Raw(entry));
        self
    }

    fn push(mut self, path: &str, node: Node, mode: u32) -> Self {
        self.items.push(Item::Normal(Entry {
            path: normalize(path),
            node,
            mode,
            uid: self.uid,
            gid: self.gid,
        }));
        self
    }

    fn installed_size_kib(&self) -> u64 {
        // Roughly dpkg-gencontrol's estimate: each file rounded up to
        // whole KiB, one KiB for anything else.
        self.items
            .iter()
            .map(|item| match item {
                Item::Normal(Entry {
                    node: Node::File(data),
                    ..
                }) => (data.len() as u64).div_ceil(1024),
                Item::Raw(raw) if raw.kind == EntryKind::File => {
                    (raw.data.len() as u64).div_ceil(1024)
                }
                _ => 1,
            })
            .sum()
    }

    /// The control stanza as it goes into `./control`, ending in a
    /// newline.
    pub fn control_text(&self) -> String {
        let mut fields: Vec<(String, String)> = Vec::new();
        for (name, value) in [
            ("Package", self.name.clone()),
            ("Version", self.version.clone()),
            ("Architecture", self.arch.clone()),
            ("Installed-Size", self.installed_size_kib().to_string()),
        ] {
            if !self.removed.contains(&name.to_ascii_lowercase()) {
                fields.push((name.to_owned(), value));
            }
        }
        for (name, value) in &self.fields {
            match fields
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                Some(slot) => slot.1 = value.clone(),
                None => fields.push((name.clone(), value.clone())),
            }
        }
        let rank = |name: &str| {
            if name.eq_ignore_ascii_case("Description") {
                return FIELD_ORDER.len() + 1;
            }
            FIELD_ORDER
                .iter()
                .position(|f| f.eq_ignore_ascii_case(name))
                .unwrap_or(FIELD_ORDER.len())
        };
        // A stable sort keeps unknown fields in the order they were set.
        fields.sort_by_key(|(name, _)| rank(name));
        let mut out = String::new();
        for (name, value) in &fields {
            out.push_str(&format_field(name, value));
        }
        out
    }

    /// The `./md5sums` contents: one `<md5>  <path>` line per regular file
    /// and per hard link to one, paths without the leading `./`.
    pub fn md5sums_text(&self) -> String {
        let mut by_path: HashMap<&str, &[u8]> = HashMap::new();
        let mut out = String::new();
        for item in &self.items {
            let Item::Normal(entry) = item else { continue };
            let data = match &entry.node {
                Node::File(data) => {
                    by_path.insert(&entry.path, data);
                    data.as_slice()
                }
                Node::Hardlink(target) => match by_path.get(target.as_str()) {
                    Some(data) => data,
                    None => continue,
                },
                _ => continue,
            };
            let digest = Md5::digest(data);
            out.push_str(&format!(
                "{}  {}\n",
                hex(&digest),
                entry.path.trim_start_matches("./")
            ));
        }
        out
    }

    /// The uncompressed `control.tar`.
    pub fn control_tar(&self) -> Vec<u8> {
        let mut tar = TarWriter::new(self.mtime);
        tar.dir(b"./", 0o755, 0, 0);
        tar.file(b"./control", 0o644, 0, 0, self.control_text().as_bytes());
        let md5sums = self.md5sums_text();
        if self.md5sums && !md5sums.is_empty() {
            tar.file(b"./md5sums", 0o644, 0, 0, md5sums.as_bytes());
        }
        for (name, mode, data) in &self.control_members {
            let name = format!("./{}", name.trim_start_matches("./"));
            tar.file(name.as_bytes(), *mode, 0, 0, data);
        }
        tar.finish()
    }

    /// The uncompressed `data.tar`.
    pub fn data_tar(&self) -> Vec<u8> {
        let declared: HashMap<&str, &Entry> = self
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Normal(
                    e @ Entry {
                        node: Node::Dir, ..
                    },
                ) => Some((e.path.as_str(), e)),
                _ => None,
            })
            .collect();
        let mut tar = TarWriter::new(self.mtime);
        let mut listed: HashSet<String> = HashSet::new();
        let mut list_dir = |tar: &mut TarWriter, path: &str| {
            if listed.insert(path.to_owned()) {
                let (mode, uid, gid) = declared
                    .get(path)
                    .map_or((0o755, 0, 0), |e| (e.mode, e.uid, e.gid));
                tar.dir(tar_dir_name(path).as_bytes(), mode, uid, gid);
            }
        };
        list_dir(&mut tar, ".");
        for item in &self.items {
            let entry = match item {
                Item::Raw(raw) => {
                    tar.raw(raw);
                    continue;
                }
                Item::Normal(entry) => entry,
            };
            for parent in parents(&entry.path) {
                list_dir(&mut tar, parent);
            }
            let name = entry.path.as_bytes();
            match &entry.node {
                Node::Dir => list_dir(&mut tar, &entry.path),
                Node::File(data) => tar.file(name, entry.mode, entry.uid, entry.gid, data),
                Node::Symlink(target) => tar.raw(&RawEntry {
                    uid: entry.uid,
                    gid: entry.gid,
                    ..RawEntry::symlink(name, target)
                }),
                Node::Hardlink(target) => tar.raw(&RawEntry {
                    mode: entry.mode,
                    uid: entry.uid,
                    gid: entry.gid,
                    ..RawEntry::hardlink(name, target)
                }),
            }
        }
        tar.finish()
    }

    /// The complete `.deb`.
    pub fn build(&self) -> Vec<u8> {
        let control = self.control_compression.compress(&self.control_tar());
        let data = self.data_compression.compress(&self.data_tar());
        let members: [(String, &[u8]); 3] = [
            ("debian-binary".to_owned(), b"2.0\n"),
            (
                format!("control.tar{}", self.control_compression.extension()),
                &control,
            ),
            (
                format!("data.tar{}", self.data_compression.extension()),
                &data,
            ),
        ];
        let members: Vec<(&str, &[u8])> = members.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        ar_archive(&members, self.mtime)
    }
}

/// An `ar` archive of `members` in the common format `dpkg-deb` writes:
/// owner 0:0, mode 100644, `mtime` on every member, odd sizes padded with
/// a newline. Names are written as given (up to 16 bytes), so tests can
/// make GNU-style (`name/`), reserved (`_gpgorigin`) or unknown members.
pub fn ar_archive(members: &[(&str, &[u8])], mtime: u64) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!(
            "{name:<16}{mtime:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            "100644",
            data.len()
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// Reads the `control` stanza out of a `.deb`, whatever its compression.
pub fn read_control(deb: &[u8]) -> std::io::Result<String> {
    let bad = |msg: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_owned());
    let mut archive = ar::Archive::new(deb);
    while let Some(member) = archive.next_entry() {
        let mut member = member?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if !name.starts_with("control.tar") {
            continue;
        }
        let compression = Compression::from_file_name(&name).ok_or_else(|| bad(&name))?;
        let mut compressed = Vec::new();
        member.read_to_end(&mut compressed)?;
        let tar_bytes = compression.decompress(&compressed)?;
        let mut tar = tar::Archive::new(tar_bytes.as_slice());
        for entry in tar.entries()? {
            let mut entry = entry?;
            let path = entry.path_bytes().into_owned();
            if path == b"./control" || path == b"control" {
                let mut text = String::new();
                entry.read_to_string(&mut text)?;
                return Ok(text);
            }
        }
        return Err(bad("control.tar has no control file"));
    }
    Err(bad("no control.tar member"))
}

/// `1:2.3-4` -> `2.3-4`.
pub fn strip_epoch(version: &str) -> &str {
    version.split_once(':').map_or(version, |(_, rest)| rest)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn format_field(name: &str, value: &str) -> String {
    let mut lines = value.split('\n');
    let mut out = format!("{name}: {}\n", lines.next().unwrap_or(""));
    for line in lines {
        if line.is_empty() {
            out.push_str(" .\n");
        } else if line.starts_with(' ') {
            out.push_str(line);
            out.push('\n');
        } else {
            out.push(' ');
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn normalize(path: &str) -> String {
    let trimmed = path
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        ".".to_owned()
    } else {
        format!("./{trimmed}")
    }
}

fn tar_dir_name(path: &str) -> String {
    if path == "." {
        "./".to_owned()
    } else {
        format!("{path}/")
    }
}

/// Proper ancestors of a normalised path, outermost first, excluding `.`.
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(i, _)| &path[..i])
        .filter(|p| *p != ".")
}

/// A GNU-format tar writer that takes member names as raw bytes, because
/// the `tar` crate refuses the `..` and absolute names hostile fixtures
/// need.
struct TarWriter {
    inner: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl TarWriter {
    fn new(mtime: u64) -> Self {
        TarWriter {
            inner: tar::Builder::new(Vec::new()),
            mtime,
        }
    }

    fn dir(&mut self, name: &[u8], mode: u32, uid: u64, gid: u64) {
        self.raw(&RawEntry {
            mode,
            uid,
            gid,
            ..RawEntry::dir(name)
        });
    }

    fn file(&mut self, name: &[u8], mode: u32, uid: u64, gid: u64, data: &[u8]) {
        self.raw(&RawEntry {
            mode,
            uid,
            gid,
            ..RawEntry::file(name, data)
        });
    }

    fn long_record(&mut self, kind: tar::EntryType, value: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let mut data = value.to_vec();
        data.push(0);
        header.set_size(data.len() as u64);
        header.set_cksum();
        self.inner
            .append(&header, data.as_slice())
            .expect("tar into memory");
    }

    fn raw(&mut self, entry: &RawEntry) {
        let mut header = tar::Header::new_gnu();
        let (kind, size) = match entry.kind {
            EntryKind::File => (tar::EntryType::Regular, entry.data.len()),
            EntryKind::Dir => (tar::EntryType::Directory, 0),
            EntryKind::Symlink => (tar::EntryType::Symlink, 0),
            EntryKind::Hardlink => (tar::EntryType::Link, 0),
            EntryKind::CharDevice { major, minor } => {
                header.set_device_major(major).expect("GNU header");
                header.set_device_minor(minor).expect("GNU header");
                (tar::EntryType::Char, 0)
            }
            EntryKind::BlockDevice { major, minor } => {
                header.set_device_major(major).expect("GNU header");
                header.set_device_minor(minor).expect("GNU header");
                (tar::EntryType::Block, 0)
            }
            EntryKind::Fifo => (tar::EntryType::Fifo, 0),
        };
        if entry.link_name.len() > 100 {
            self.long_record(tar::EntryType::GNULongLink, &entry.link_name);
        }
        if entry.name.len() > 100 {
            self.long_record(tar::EntryType::GNULongName, &entry.name);
        }
        let old = header.as_old_mut();
        let n = entry.name.len().min(100);
        old.name[..n].copy_from_slice(&entry.name[..n]);
        let n = entry.link_name.len().min(100);
        old.linkname[..n].copy_from_slice(&entry.link_name[..n]);
        header.set_entry_type(kind);
        header.set_mode(entry.mode);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        if entry.uid == 0 {
            header.set_username("root").expect("short name");
        }
        if entry.gid == 0 {
            header.set_groupname("root").expect("short name");
        }
        header.set_mtime(self.mtime);
        header.set_size(size as u64);
        header.set_cksum();
        self.inner
            .append(&header, &entry.data[..size])
            .expect("tar into memory");
    }

    fn finish(self) -> Vec<u8> {
        self.inner.into_inner().expect("tar into memory")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_outermost_first() {
        let got: Vec<_> = parents("./usr/lib/x86_64-linux-gnu/libc.so.6").collect();
        assert_eq!(got, ["./usr", "./usr/lib", "./usr/lib/x86_64-linux-gnu"]);
        assert_eq!(parents("./etc").count(), 0);
    }

    #[test]
    fn paths_normalise_to_dot_slash() {
        assert_eq!(normalize("/usr/bin/"), "./usr/bin");
        assert_eq!(normalize("usr/bin"), "./usr/bin");
        assert_eq!(normalize("./usr/bin"), "./usr/bin");
        assert_eq!(normalize("/"), ".");
    }

    #[test]
    fn multi_line_fields_are_folded() {
        assert_eq!(
            format_field("Description", "short\nlong line\n\nmore"),
            "Description: short\n long line\n .\n more\n"
        );
    }
}
