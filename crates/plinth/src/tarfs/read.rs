//! The strict tar reader, shared by the `.deb` reader and the layer reader.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Read};
use std::rc::Rc;
use std::sync::Arc;

use super::write::check_path;
use super::{BLOCK, Entry, EntryKind, TarError};

/// Largest up-front allocation for one file's contents: the size field is
/// untrusted until the bytes have actually arrived.
const MAX_PREALLOC: u64 = 64 << 20;

/// Ceilings on what reading one tar stream may unpack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TarLimits {
    /// Largest contents of one entry, as its header declares it.
    pub entry: u64,
    /// Largest stream: every byte read, headers, names and padding
    /// included.
    pub total: u64,
}

impl TarLimits {
    /// No ceiling: for streams plinth wrote itself.
    pub const NONE: TarLimits = TarLimits {
        entry: u64::MAX,
        total: u64::MAX,
    };
}

/// Reads a whole tar stream into entries, in archive order.
///
/// Work is bounded by `limits`: an entry whose header declares more than
/// `limits.entry`, or that would take the stream past `limits.total`, is
/// refused before its contents are read, and the stream is cut off at
/// `limits.total` bytes whatever its headers say (long names and PAX
/// records included). Nothing is allocated by a size the stream claims.
///
/// Names are checked on their raw bytes (after GNU long-name or PAX records
/// are applied): a leading `./` is dropped, the root entry is skipped, a
/// directory's trailing `/` is dropped, and absolute names, empty, `.` or `..`
/// components, NUL and non-UTF-8 names are errors. Hard-link targets follow
/// the same rules and must name an earlier regular file of the stream.
/// Symlink targets are kept verbatim. The stream must end with an
/// end-of-archive block, and is then read to its end so that a compressed
/// stream's own integrity checks run.
pub fn read_tar<R: Read>(reader: R, limits: &TarLimits) -> Result<Vec<Entry>, TarError> {
    let over = Rc::new(Cell::new(false));
    // A read error after the ceiling was hit is the ceiling's doing.
    let read_err = |source| {
        if over.get() {
            TarError::TooLarge {
                limit: limits.total,
            }
        } else {
            TarError::Read { source }
        }
    };
    let mut archive = tar::Archive::new(Counting {
        inner: reader,
        count: 0,
        limit: limits.total,
        over: Rc::clone(&over),
    });
    let mut declared = 0u64;
    let mut entries: Vec<Entry> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // Where the end-of-archive block must start: just past the last entry.
    let mut end = 0u64;
    for item in archive.entries().map_err(read_err)? {
        let mut tar_entry = item.map_err(read_err)?;
        let size = tar_entry.size();
        if size > limits.entry {
            return Err(TarError::EntryTooLarge {
                path: String::from_utf8_lossy(&tar_entry.path_bytes()).into_owned(),
                size,
                limit: limits.entry,
            });
        }
        declared = declared.saturating_add(size);
        if declared > limits.total {
            return Err(TarError::TooLarge {
                limit: limits.total,
            });
        }
        end = tar_entry
            .raw_file_position()
            .checked_add(size.div_ceil(BLOCK as u64) * BLOCK as u64)
            .ok_or(TarError::Truncated)?;
        let converted = convert(&mut tar_entry, &entries, &index).map_err(|e| match e {
            TarError::Read { source } => read_err(source),
            other => other,
        })?;
        if let Some(entry) = converted {
            if index.insert(entry.path.clone(), entries.len()).is_some() {
                return Err(TarError::Duplicate { path: entry.path });
            }
            entries.push(entry);
        }
    }
    let mut rest = archive.into_inner();
    // The tar crate treats a clean EOF at a header boundary like the
    // end-of-archive block; only the byte count tells the two apart.
    if rest.count != end + BLOCK as u64 {
        return Err(TarError::Truncated);
    }
    io::copy(&mut rest, &mut io::sink()).map_err(read_err)?;
    Ok(entries)
}

/// Turns one tar entry into an `Entry`; `None` for the root directory.
fn convert<R: Read>(
    tar_entry: &mut tar::Entry<'_, R>,
    earlier: &[Entry],
    index: &HashMap<String, usize>,
) -> Result<Option<Entry>, TarError> {
    let raw_path = tar_entry.path_bytes().into_owned();
    let lossy = || String::from_utf8_lossy(&raw_path).into_owned();
    let kind_byte = tar_entry.header().entry_type();
    let is_dir = kind_byte.is_dir();
    let Some(path) = normalise(&raw_path, is_dir)? else {
        if is_dir {
            return Ok(None);
        }
        return Err(TarError::InvalidPath {
            path: lossy(),
            why: "root entry is not a directory",
        });
    };
    let header_err = |source| TarError::Header {
        path: path.clone(),
        source,
    };
    let header = tar_entry.header();
    let mode = header.mode().map_err(header_err)? & 0o7777;
    let uid = header.uid().map_err(header_err)?;
    let gid = header.gid().map_err(header_err)?;
    let mut mtime = header.mtime().map_err(header_err)?;
    if let Some(pax_mtime) = pax_mtime(tar_entry).map_err(header_err)? {
        mtime = pax_mtime;
    }

    let kind = if is_dir {
        EntryKind::Dir
    } else if kind_byte.is_file() || kind_byte.is_contiguous() {
        EntryKind::File(read_contents(tar_entry, &path)?)
    } else if kind_byte.is_symlink() {
        let target = link_name(tar_entry, &path)?;
        if target.is_empty() || target.contains('\0') {
            return Err(TarError::SymlinkTarget {
                path,
                target,
                why: "empty or contains NUL",
            });
        }
        EntryKind::Symlink(target)
    } else if kind_byte.is_hard_link() {
        let raw = link_name(tar_entry, &path)?;
        let fail = |why| TarError::HardlinkTarget {
            path: path.clone(),
            target: raw.clone(),
            why,
        };
        let target = match normalise(raw.as_bytes(), false) {
            Ok(Some(target)) => target,
            Ok(None) => return Err(fail("names the root")),
            Err(TarError::InvalidPath { why, .. }) => return Err(fail(why)),
            Err(other) => return Err(other),
        };
        // A link to a link is flattened to the file, which is what it means.
        match index.get(&target).and_then(|&i| earlier.get(i)) {
            Some(Entry {
                kind: EntryKind::File(_),
                ..
            }) => EntryKind::Hardlink(target),
            Some(Entry {
                kind: EntryKind::Hardlink(file),
                ..
            }) => EntryKind::Hardlink(file.clone()),
            Some(_) => return Err(fail("not a regular file")),
            None => return Err(fail("not an earlier entry of the archive")),
        }
    } else {
        let kind = if kind_byte.is_character_special() {
            "character device".to_owned()
        } else if kind_byte.is_block_special() {
            "block device".to_owned()
        } else if kind_byte.is_fifo() {
            "fifo".to_owned()
        } else if kind_byte.is_gnu_sparse() {
            "GNU sparse file".to_owned()
        } else if kind_byte.is_pax_global_extensions() {
            "pax global header".to_owned()
        } else {
            format!("type {:?}", char::from(kind_byte.as_byte()))
        };
        return Err(TarError::Unsupported { path, kind });
    };
    Ok(Some(Entry {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
    }))
}

/// Applies the path rules to a raw tar name; `None` is the root (`./`, `.`).
fn normalise(raw: &[u8], is_dir: bool) -> Result<Option<String>, TarError> {
    let invalid = |why| TarError::InvalidPath {
        path: String::from_utf8_lossy(raw).into_owned(),
        why,
    };
    if raw == b"./" || raw == b"." {
        return Ok(None);
    }
    let mut name = raw.strip_prefix(b"./").unwrap_or(raw);
    if is_dir {
        name = name.strip_suffix(b"/").unwrap_or(name);
    }
    if memchr::memchr(0, name).is_some() {
        return Err(invalid("contains NUL"));
    }
    let name = std::str::from_utf8(name).map_err(|_| TarError::NotUtf8 {
        path: String::from_utf8_lossy(raw).into_owned(),
    })?;
    check_path(name).map_err(invalid)?;
    Ok(Some(name.to_owned()))
}

fn link_name<R: Read>(tar_entry: &tar::Entry<'_, R>, path: &str) -> Result<String, TarError> {
    let raw = tar_entry.link_name_bytes().unwrap_or_default();
    String::from_utf8(raw.into_owned()).map_err(|_| TarError::NotUtf8 {
        path: format!("{path} (link target)"),
    })
}

/// A PAX `mtime` record overrides the header's, as in every tar reader; the
/// fraction is dropped because entries carry whole seconds.
fn pax_mtime<R: Read>(tar_entry: &mut tar::Entry<'_, R>) -> io::Result<Option<u64>> {
    let Some(extensions) = tar_entry.pax_extensions()? else {
        return Ok(None);
    };
    for extension in extensions {
        let extension = extension?;
        if extension.key_bytes() == b"mtime" {
            let value = extension.value_bytes();
            let whole = value.split(|&b| b == b'.').next().unwrap_or(value);
            let parsed = std::str::from_utf8(whole)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            return match parsed {
                Some(seconds) => Ok(Some(seconds)),
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "pax mtime {:?} is not a non-negative number of seconds",
                        String::from_utf8_lossy(value)
                    ),
                )),
            };
        }
    }
    Ok(None)
}

fn read_contents<R: Read>(
    tar_entry: &mut tar::Entry<'_, R>,
    path: &str,
) -> Result<Arc<[u8]>, TarError> {
    let expected = tar_entry.size();
    let mut contents = Vec::with_capacity(expected.min(MAX_PREALLOC) as usize);
    tar_entry
        .read_to_end(&mut contents)
        .map_err(|source| TarError::Read { source })?;
    let found = contents.len() as u64;
    if found != expected {
        return Err(TarError::ShortContents {
            path: path.to_owned(),
            expected,
            found,
        });
    }
    Ok(Arc::from(contents))
}

/// Counts the bytes the tar reader consumed, which is how a missing
/// end-of-archive block is told from a present one, and fails once they
/// pass `limit` (setting `over`, so the failure is reported as the
/// ceiling rather than as whatever the tar crate makes of it).
struct Counting<R> {
    inner: R,
    count: u64,
    limit: u64,
    over: Rc<Cell<bool>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Never read past one byte beyond the ceiling: a bomb is cut off
        // there, not decompressed further.
        let room = self.limit.saturating_sub(self.count).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.count += n as u64;
        if self.count > self.limit {
            self.over.set(true);
            return Err(io::Error::other("tar stream past its ceiling"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, usize)]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, size) in files {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(*size as u64);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, name, &vec![7u8; *size][..])
                .unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn refuses_what_passes_a_ceiling_before_reading_it() {
        let tar = tar_of(&[("a", 1000), ("b", 1000)]);
        let limits = |entry, total| TarLimits { entry, total };
        assert_eq!(read_tar(&tar[..], &TarLimits::NONE).unwrap().len(), 2);
        assert!(matches!(
            read_tar(&tar[..], &limits(999, u64::MAX)),
            Err(TarError::EntryTooLarge {
                size: 1000,
                limit: 999,
                ..
            })
        ));
        // Declared sizes add up past the total before any content is read.
        assert!(matches!(
            read_tar(&tar[..], &limits(u64::MAX, 1999)),
            Err(TarError::TooLarge { limit: 1999 })
        ));
        // The stream itself (headers, padding) is cut off at the total.
        assert!(matches!(
            read_tar(&tar[..], &limits(u64::MAX, 2500)),
            Err(TarError::TooLarge { limit: 2500 })
        ));
        assert_eq!(
            read_tar(&tar[..], &limits(1000, tar.len() as u64))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_long_name_bomb_is_cut_off() {
        // A GNU long-name record that claims 1 GiB: the tar crate would
        // read it whole into memory.
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(1 << 30);
        header.set_cksum();
        let mut stream = header.as_bytes().to_vec();
        stream.extend(std::iter::repeat_n(b'a', 1 << 20));
        let err = read_tar(
            &stream[..],
            &TarLimits {
                entry: u64::MAX,
                total: 64 << 10,
            },
        )
        .unwrap_err();
        assert!(matches!(err, TarError::TooLarge { .. }), "{err}");
    }
}
