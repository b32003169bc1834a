//! The deterministic GNU tar writer: every byte is a function of the
//! entries and the epoch, whatever order the caller used.

use std::io::{self, Write};

use tar::{EntryType, Header};

use super::{BLOCK, Entry, EntryKind, TarError};

/// Names this long or longer go into a GNU long-name record, as GNU tar does
/// for its own (old GNU) format, so the header's name field is always
/// NUL-terminated.
const NAME_FIELD: usize = 100;

/// Writes `entries` as one GNU tar stream, end-of-archive block included.
///
/// The input order does not matter: entries are sorted by path bytes. Every
/// entry's parent must be a directory entry, a hard link's target must be a
/// regular file in the stream, and mtimes later than `epoch` are clamped to
/// it. Everything is checked before the first byte is written.
pub fn write_tar<W: Write>(out: &mut W, entries: &[Entry], epoch: u64) -> Result<(), TarError> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    check_entries(&sorted)?;
    let write_err = |source| TarError::Write { source };
    for entry in &sorted {
        write_entry(out, entry, epoch).map_err(write_err)?;
    }
    // End of archive: two zero blocks, no padding to a record size.
    out.write_all(&[0; 2 * BLOCK]).map_err(write_err)
}

/// Checks a path-sorted entry list against the layer rules before any byte is
/// written, so that a bad input never yields a partial layer.
fn check_entries(sorted: &[&Entry]) -> Result<(), TarError> {
    let find = |path: &str| {
        sorted
            .binary_search_by(|e| e.path.as_bytes().cmp(path.as_bytes()))
            .ok()
            .and_then(|i| sorted.get(i).map(|e| (i, *e)))
    };
    let mut previous: Option<&str> = None;
    for (index, entry) in sorted.iter().enumerate() {
        let path = entry.path.as_str();
        check_path(path).map_err(|why| TarError::InvalidPath {
            path: path.to_owned(),
            why,
        })?;
        if previous == Some(path) {
            return Err(TarError::Duplicate {
                path: path.to_owned(),
            });
        }
        previous = Some(path);
        if entry.mode & !0o7777 != 0 {
            return Err(TarError::Mode {
                path: path.to_owned(),
                mode: entry.mode,
            });
        }
        if let Some((parent, _)) = path.rsplit_once('/')
            && !matches!(find(parent), Some((_, p)) if p.is_dir())
        {
            return Err(TarError::MissingParent {
                path: path.to_owned(),
                parent: parent.to_owned(),
            });
        }
        match &entry.kind {
            EntryKind::Dir | EntryKind::File(_) => {}
            EntryKind::Symlink(target) => {
                let why = if target.is_empty() {
                    Some("empty")
                } else if target.contains('\0') {
                    Some("contains NUL")
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(TarError::SymlinkTarget {
                        path: path.to_owned(),
                        target: target.clone(),
                        why,
                    });
                }
            }
            EntryKind::Hardlink(target) => {
                let fail = |why| TarError::HardlinkTarget {
                    path: path.to_owned(),
                    target: target.clone(),
                    why,
                };
                check_path(target).map_err(fail)?;
                match find(target) {
                    None => return Err(fail("not in the layer")),
                    Some((i, t)) => {
                        if !matches!(t.kind, EntryKind::File(_)) {
                            return Err(fail("not a regular file"));
                        }
                        if i >= index {
                            return Err(fail("does not sort before the link"));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The `Entry::path` form: relative, no empty, `.` or `..` components, no NUL.
pub(super) fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty");
    }
    if path.starts_with('/') {
        return Err("absolute");
    }
    if path.contains('\0') {
        return Err("contains NUL");
    }
    for component in path.split('/') {
        match component {
            "" => return Err("empty component"),
            "." => return Err("`.` component"),
            ".." => return Err("`..` component"),
            _ => {}
        }
    }
    Ok(())
}

fn write_entry<W: Write>(out: &mut W, entry: &Entry, epoch: u64) -> io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(entry.mtime.min(epoch));
    let mut name = entry.path.as_bytes().to_vec();
    let (kind, contents, link): (EntryType, &[u8], Option<&str>) = match &entry.kind {
        EntryKind::Dir => {
            name.push(b'/');
            (EntryType::Directory, &[], None)
        }
        EntryKind::File(data) => (EntryType::Regular, data, None),
        EntryKind::Symlink(target) => (EntryType::Symlink, &[], Some(target)),
        EntryKind::Hardlink(target) => (EntryType::Link, &[], Some(target)),
    };
    header.set_entry_type(kind);
    header.set_size(contents.len() as u64);

    set_long(
        out,
        &mut header.as_old_mut().name,
        &name,
        EntryType::GNULongName,
    )?;
    if let Some(link) = link {
        set_long(
            out,
            &mut header.as_old_mut().linkname,
            link.as_bytes(),
            EntryType::GNULongLink,
        )?;
    }
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    out.write_all(contents)?;
    pad(out, contents.len())
}

/// Puts `value` in a header field, or, when it does not fit with a NUL, in a
/// GNU long-name record written first (the field then holds a prefix, which
/// readers ignore). The record's own header is fixed, so long names are as
/// deterministic as short ones.
fn set_long<W: Write>(
    out: &mut W,
    field: &mut [u8; NAME_FIELD],
    value: &[u8],
    kind: EntryType,
) -> io::Result<()> {
    let fits = value.len() < NAME_FIELD;
    let shown = value.get(..NAME_FIELD - 1).unwrap_or(value);
    field.fill(0);
    if let Some(dst) = field.get_mut(..shown.len()) {
        dst.copy_from_slice(shown);
    }
    if fits {
        return Ok(());
    }
    let mut record = Header::new_gnu();
    let tag = b"././@LongLink";
    if let Some(dst) = record.as_old_mut().name.get_mut(..tag.len()) {
        dst.copy_from_slice(tag);
    }
    record.set_mode(0o644);
    record.set_uid(0);
    record.set_gid(0);
    record.set_mtime(0);
    record.set_entry_type(kind);
    // The stored name carries its terminating NUL, as GNU tar writes it.
    let len = value.len() + 1;
    record.set_size(len as u64);
    record.set_cksum();
    out.write_all(record.as_bytes())?;
    out.write_all(value)?;
    out.write_all(&[0])?;
    pad(out, len)
}

fn pad<W: Write>(out: &mut W, len: usize) -> io::Result<()> {
    let rest = len % BLOCK;
    if rest == 0 {
        return Ok(());
    }
    out.write_all(&[0; BLOCK][rest..])
}
