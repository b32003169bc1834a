//! Image layers: a deterministic tar stream ([`crate::tarfs`]) compressed
//! with a frozen gzip, and both hashes an OCI image names it by, taken
//! while writing; and the reverse, for `verify` and the application check.
//!
//! Every byte of a written layer is a function of the entries and the epoch:
//! nothing comes from the host, the clock or the order the caller used.

use std::io::{self, Write};

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::tarfs::{Entry, TarError, TarLimits, read_tar, write_tar};

/// A gzip-compressed tar layer and the two hashes an OCI image names it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The gzip stream, exactly the bytes that were hashed into `digest`.
    pub blob: Vec<u8>,
    /// `sha256:<hex>` of `blob`.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar stream.
    pub diff_id: String,
    /// Length of `blob` in bytes.
    pub size: u64,
}

/// The gzip header's OS byte: 255 ("unknown"), as Go's compress/gzip writes,
/// so it never says where the layer was built.
const GZIP_OS_UNKNOWN: u8 = 255;

/// The frozen gzip level; changing it changes every digest.
const GZIP_LEVEL: u32 = 6;

/// Writes `entries` as one gzip-compressed GNU tar layer./// The input order does not matter: entries are sorted by path bytes. Every
/// entry's parent must be a directory entry, a hard link's target must be a
/// regular file in the layer, and mtimes later than `epoch` are clamped to it.
pub fn write_layer(entries: &[Entry], epoch: u64) -> Result<Layer, TarError> {
    let gzip = GzBuilder::new()
        .mtime(0)
        .operating_system(GZIP_OS_UNKNOWN)
        .write(Hashing::new(Vec::new()), Compression::new(GZIP_LEVEL));
    let mut tar = Hashing::new(gzip);
    write_tar(&mut tar, entries, epoch)?;
    let (gzip, diff_id) = tar.finish();
    let (blob, digest) = gzip
        .finish()
        .map_err(|source| TarError::Write { source })?
        .finish();
    let size = blob.len() as u64;
    Ok(Layer {
        blob,
        digest: format!("sha256:{digest:x}"),
        diff_id: format!("sha256:{diff_id:x}"),
        size,
    })
}

/// A writer that hashes what passes through it, so that both digests come
/// from the bytes as they are produced rather than from a second read.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> (W, sha2::digest::Output<Sha256>) {
        (self.inner, self.hasher.finalize())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Only what the inner writer accepted is part of the stream.
        self.hasher.update(buf.get(..n).unwrap_or(buf));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a gzip-compressed layer back into entries (in archive order), with
/// the same path rules as the `.deb` reader and within `limits`. Used by
/// `verify` to explain how two layers differ, and by the application
/// check to see its base.
pub fn read_layer(blob: &[u8], limits: &TarLimits) -> Result<Vec<Entry>, TarError> {
    read_tar(flate2::bufread::MultiGzDecoder::new(blob), limits)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::process::Command;

    use tar::{EntryType, Header};

    use super::*;
    use crate::tarfs::EntryKind;

    const EPOCH: u64 = 1_700_000_000;

    fn at(entry: Entry, mtime: u64) -> Entry {
        Entry { mtime, ..entry }
    }

    fn long_dir() -> String {
        format!("usr/share/{}", "d".repeat(95))
    }

    fn long_file() -> String {
        format!("{}/{}", long_dir(), "f".repeat(40))
    }

    /// A small layer with every kind, special bits, owners, long names and
    /// long link targets, an mtime past the epoch.
    fn sample() -> Vec<Entry> {
        vec![
            at(Entry::dir("etc", 0o755), EPOCH - 10),
            at(
                Entry::file(
                    "etc/passwd",
                    0o644,
                    b"root:x:0:0::/root:/sbin/nologin\n".to_vec(),
                ),
                EPOCH - 5,
            ),
            at(Entry::dir("home", 0o755), 0),
            at(Entry::dir("home/nonroot", 0o700).owned_by(65532, 65532), 0),
            at(Entry::dir("tmp", 0o1777), EPOCH + 1000),
            Entry::dir("usr", 0o755),
            Entry::dir("usr/bin", 0o755),
            at(Entry::file("usr/bin/su", 0o4755, b"su".to_vec()), EPOCH),
            Entry {
                kind: EntryKind::Hardlink("usr/bin/su".into()),
                ..at(Entry::file("usr/bin/su2", 0o4755, Vec::new()), EPOCH)
            },
            Entry::symlink("usr/bin/sh", "/usr/bin/su"),
            Entry::symlink(
                "usr/bin/long",
                format!("../share/{}/{}", "d".repeat(95), "f".repeat(40)),
            ),
            Entry::dir("usr/share", 0o2755).owned_by(0, 50),
            Entry::dir(long_dir(), 0o755),
            at(
                Entry::file(long_file(), 0o640, vec![7u8; 1000]).owned_by(3_000_000, 4_000_000),
                u64::MAX,
            ),
            Entry {
                kind: EntryKind::Hardlink(long_file()),
                ..Entry::file("usr/share/zlink", 0o640, Vec::new()).owned_by(3_000_000, 4_000_000)
            },
        ]
    }

    fn clamped(entries: &[Entry]) -> Vec<Entry> {
        let mut out: Vec<Entry> = entries
            .iter()
            .map(|e| Entry {
                mtime: e.mtime.min(EPOCH),
                ..e.clone()
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    fn gunzip(blob: &[u8]) -> Vec<u8> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut tar)
            .unwrap();
        tar
    }

    fn sha256(bytes: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(bytes))
    }

    /// Whether a host tool can be used; CI must have it, elsewhere the test
    /// is skipped with a printed reason.
    fn have(tool: &str) -> bool {
        if Command::new(tool).arg("--version").output().is_ok() {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required in CI"
        );
        eprintln!("skipped: {tool} not found");
        false
    }

    #[test]
    fn pinned_digest() {
        // Pins the frozen compressor (flate2 + miniz_oxide, level 6) and the
        // header layout: a change here changes every image digest.
        let layer = write_layer(&sample(), EPOCH).unwrap();
        assert_eq!(
            layer.diff_id,
            "sha256:4ca340231b42bce3e7b6acc665f7f65570bff0d21a9b2dd68223af13698894d6"
        );
        assert_eq!(
            layer.digest,
            "sha256:b57eef87e2c656770e7a0a276e2ee674fb3a9fd896b244ea1ef289c4c213faf4"
        );
        assert_eq!(layer.size, layer.blob.len() as u64);
    }

    #[test]
    fn hashes_match_the_bytes() {
        let layer = write_layer(&sample(), EPOCH).unwrap();
        assert_eq!(layer.digest, sha256(&layer.blob));
        assert_eq!(layer.diff_id, sha256(&gunzip(&layer.blob)));
    }

    #[test]
    fn input_order_does_not_matter() {
        let entries = sample();
        let first = write_layer(&entries, EPOCH).unwrap();
        let mut reversed = entries.clone();
        reversed.reverse();
        let mut rotated = entries.clone();
        rotated.rotate_left(5);
        for other in [reversed, rotated] {
            assert_eq!(write_layer(&other, EPOCH).unwrap(), first);
        }
    }

    #[test]
    fn round_trip() {
        let entries = sample();
        let layer = write_layer(&entries, EPOCH).unwrap();
        assert_eq!(
            read_layer(&layer.blob, &TarLimits::NONE).unwrap(),
            clamped(&entries)
        );
    }

    #[test]
    fn empty_layer() {
        let layer = write_layer(&[], EPOCH).unwrap();
        assert_eq!(gunzip(&layer.blob), vec![0; 1024]);
        assert_eq!(
            read_layer(&layer.blob, &TarLimits::NONE).unwrap(),
            Vec::new()
        );
    }

    #[test]
    fn gzip_header_is_fixed() {
        let layer = write_layer(&sample(), EPOCH).unwrap();
        // magic, deflate, no flags (no name, no comment), mtime 0, XFL 0
        // (level 6), OS 255.
        assert_eq!(
            layer.blob.get(..10).unwrap(),
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]
        );
    }

    #[test]
    fn headers_carry_nothing_from_the_host() {
        let tar = gunzip(&write_layer(&sample(), EPOCH).unwrap().blob);
        let mut pos = 0;
        let mut names = Vec::new();
        let mut long_records = 0;
        while pos + 512 <= tar.len() {
            let block = &tar[pos..pos + 512];
            if block.iter().all(|&b| b == 0) {
                break;
            }
            let header = Header::from_byte_slice(block);
            let gnu = header.as_gnu().expect("GNU header");
            assert_eq!(&gnu.magic, b"ustar ");
            assert_eq!(&gnu.version, b" \0");
            assert!(gnu.uname.iter().all(|&b| b == 0), "uname at {pos}");
            assert!(gnu.gname.iter().all(|&b| b == 0), "gname at {pos}");
            assert!(gnu.dev_major.iter().all(|&b| b == 0));
            assert!(gnu.dev_minor.iter().all(|&b| b == 0));
            assert!(gnu.atime.iter().all(|&b| b == 0));
            assert!(gnu.ctime.iter().all(|&b| b == 0));
            let kind = header.entry_type();
            assert!(!kind.is_pax_local_extensions() && !kind.is_pax_global_extensions());
            if kind.is_gnu_longname() || kind.is_gnu_longlink() {
                long_records += 1;
                assert_eq!(header.path_bytes().as_ref(), b"././@LongLink");
            } else {
                assert!(header.mtime().unwrap() <= EPOCH);
                names.push(String::from_utf8(header.path_bytes().into_owned()).unwrap());
            }
            let size = usize::try_from(header.entry_size().unwrap()).unwrap();
            pos += 512 + size.div_ceil(512) * 512;
        }
        assert_eq!(tar.len(), pos + 1024, "two zero blocks end the stream");
        // long dir, long file, long symlink target, long hard-link target
        assert_eq!(long_records, 4);
        assert_eq!(names.first().map(String::as_str), Some("etc/"));
        assert!(names.iter().any(|n| n == "usr/bin/su"));
    }

    #[test]
    fn gnu_tar_lists_it() {
        if !have("tar") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("layer.tar.gz");
        std::fs::write(&file, write_layer(&sample(), EPOCH).unwrap().blob).unwrap();
        let out = Command::new("tar")
            .args(["--numeric-owner", "-tvzf"])
            .arg(&file)
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let d = "d".repeat(95);
        let f = "f".repeat(40);
        let t = "2023-11-14 22:13";
        let expected = [
            "drwxr-xr-x 0/0 0 2023-11-14 22:13 etc/".to_owned(),
            "-rw-r--r-- 0/0 32 2023-11-14 22:13 etc/passwd".to_owned(),
            "drwxr-xr-x 0/0 0 1970-01-01 00:00 home/".to_owned(),
            "drwx------ 65532/65532 0 1970-01-01 00:00 home/nonroot/".to_owned(),
            format!("drwxrwxrwt 0/0 0 {t} tmp/"),
            "drwxr-xr-x 0/0 0 1970-01-01 00:00 usr/".to_owned(),
            "drwxr-xr-x 0/0 0 1970-01-01 00:00 usr/bin/".to_owned(),
            format!("lrwxrwxrwx 0/0 0 1970-01-01 00:00 usr/bin/long -> ../share/{d}/{f}"),
            "lrwxrwxrwx 0/0 0 1970-01-01 00:00 usr/bin/sh -> /usr/bin/su".to_owned(),
            format!("-rwsr-xr-x 0/0 2 {t} usr/bin/su"),
            format!("hrwsr-xr-x 0/0 0 {t} usr/bin/su2 link to usr/bin/su"),
            "drwxr-sr-x 0/50 0 1970-01-01 00:00 usr/share/".to_owned(),
            format!("drwxr-xr-x 0/0 0 1970-01-01 00:00 usr/share/{d}/"),
            format!("-rw-r----- 3000000/4000000 1000 {t} usr/share/{d}/{f}"),
            format!(
                "hrw-r----- 3000000/4000000 0 1970-01-01 00:00 usr/share/zlink link to usr/share/{d}/{f}"
            ),
        ];
        assert_eq!(listing, expected);
    }

    #[test]
    fn gnu_tar_extracts_it() {
        if !have("tar") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("layer.tar.gz");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(&file, write_layer(&sample(), EPOCH).unwrap().blob).unwrap();
        let out = Command::new("tar")
            .args(["--numeric-owner", "-xzf"])
            .arg(&file)
            .arg("-C")
            .arg(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let contents = std::fs::read(root.join(long_file())).unwrap();
        assert_eq!(contents, vec![7u8; 1000]);
        let target = std::fs::read_link(root.join("usr/bin/sh")).unwrap();
        assert_eq!(target, std::path::Path::new("/usr/bin/su"));
    }

    #[test]
    fn name_length_boundaries() {
        // Around the 100-byte name field: 99 bytes fit with their NUL, 100
        // and more go to a long-name record (a directory's '/' counts).
        let mut entries = vec![Entry::dir("b", 0o755)];
        for len in 98..=101 {
            let name = format!("b/{}", "x".repeat(len - 2));
            entries.push(Entry::symlink(format!("{name}l"), "t".repeat(len)));
            entries.push(Entry::file(name.clone(), 0o644, b"f".to_vec()));
            entries.push(Entry::dir(format!("b/{}", "y".repeat(len - 2)), 0o755));
        }
        let layer = write_layer(&entries, EPOCH).unwrap();
        assert_eq!(
            read_layer(&layer.blob, &TarLimits::NONE).unwrap(),
            clamped(&entries)
        );
        if !have("tar") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("layer.tar.gz");
        std::fs::write(&file, &layer.blob).unwrap();
        let out = Command::new("tar").arg("-tzf").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut expected: Vec<String> = clamped(&entries)
            .iter()
            .map(|e| match e.kind {
                EntryKind::Dir => format!("{}/", e.path),
                _ => e.path.clone(),
            })
            .collect();
        expected.sort();
        let listed: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert_eq!(listed, expected);
    }

    #[test]
    fn mtimes_are_clamped_to_the_epoch() {
        let entries = [at(Entry::file("a", 0o644, b"x".to_vec()), EPOCH + 1)];
        let read = read_layer(
            &write_layer(&entries, EPOCH).unwrap().blob,
            &TarLimits::NONE,
        )
        .unwrap();
        assert_eq!(read.first().map(|e| e.mtime), Some(EPOCH));
        // A different future mtime gives the same bytes.
        let later = [at(Entry::file("a", 0o644, b"x".to_vec()), EPOCH + 99)];
        assert_eq!(
            write_layer(&entries, EPOCH).unwrap(),
            write_layer(&later, EPOCH).unwrap()
        );
    }

    fn write_err(entries: &[Entry]) -> String {
        let err = write_layer(entries, EPOCH).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains('\n'), "{message}");
        message
    }

    #[test]
    fn rejects_duplicates() {
        let message = write_err(&[Entry::dir("a", 0o755), Entry::file("a", 0o644, Vec::new())]);
        assert_eq!(message, "entry a: path appears more than once");
    }

    #[test]
    fn rejects_missing_parents() {
        let message = write_err(&[Entry::file("a/b", 0o644, Vec::new())]);
        assert_eq!(
            message,
            "entry a/b: parent a is not a directory entry earlier in the layer"
        );
        let message = write_err(&[
            Entry::file("a", 0o644, Vec::new()),
            Entry::file("a/b", 0o644, Vec::new()),
        ]);
        assert!(message.starts_with("entry a/b: parent a "), "{message}");
        let message = write_err(&[
            Entry::symlink("a", "b"),
            Entry::file("a/b", 0o644, Vec::new()),
        ]);
        assert!(message.starts_with("entry a/b: parent a "), "{message}");
    }

    #[test]
    fn rejects_bad_paths() {
        for (path, why) in [
            ("", "empty"),
            ("/etc", "absolute"),
            ("etc/", "empty component"),
            ("a//b", "empty component"),
            ("./a", "`.` component"),
            ("a/..", "`..` component"),
            ("a\0b", "contains NUL"),
        ] {
            let message = write_err(&[Entry::dir(path, 0o755)]);
            assert_eq!(message, format!("entry {path:?}: invalid path: {why}"));
        }
    }

    #[test]
    fn rejects_bad_modes_and_targets() {
        let message = write_err(&[Entry::file("a", 0o100644, Vec::new())]);
        assert_eq!(message, "entry a: mode 0o100644 has bits outside 0o7777");
        let message = write_err(&[Entry::symlink("a", "")]);
        assert_eq!(message, "entry a: symlink target \"\": empty");
    }

    #[test]
    fn rejects_bad_hard_links() {
        let link = |path: &str, target: &str| Entry {
            kind: EntryKind::Hardlink(target.into()),
            ..Entry::file(path, 0o644, Vec::new())
        };
        let file = Entry::file("f", 0o644, b"x".to_vec());
        let cases = [
            (vec![link("l", "missing")], "not in the layer"),
            (
                vec![Entry::dir("d", 0o755), link("l", "d")],
                "not a regular file",
            ),
            (
                vec![file.clone(), link("g", "l"), link("l", "f")],
                "not a regular file",
            ),
            (
                vec![link("a", "f"), file.clone()],
                "does not sort before the link",
            ),
            (vec![link("l", "l")], "not a regular file"),
            (vec![file.clone(), link("l", "../f")], "`..` component"),
            (vec![file.clone(), link("l", "/f")], "absolute"),
        ];
        for (entries, why) in cases {
            let message = write_err(&entries);
            assert!(message.ends_with(why), "{message} / {why}");
            assert!(message.contains("hard link target"), "{message}");
        }
    }

    #[test]
    fn read_rejects_damage() {
        let blob = write_layer(&sample(), EPOCH).unwrap().blob;
        // Every proper prefix is refused (a cut gzip stream, or a cut tar).
        for cut in 0..blob.len() {
            assert!(
                read_layer(&blob[..cut], &TarLimits::NONE).is_err(),
                "prefix {cut} accepted"
            );
        }
        let mut flipped = blob.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x55;
        assert!(read_layer(&flipped, &TarLimits::NONE).is_err());
        let mut trailing = blob.clone();
        trailing.extend_from_slice(b"garbage");
        assert!(read_layer(&trailing, &TarLimits::NONE).is_err());
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        out.write_all(bytes).unwrap();
        out.finish().unwrap()
    }

    #[test]
    fn read_requires_the_end_block() {
        let tar = gunzip(&write_layer(&sample(), EPOCH).unwrap().blob);
        let without_end = &tar[..tar.len() - 1024];
        let err = read_layer(&gzip(without_end), &TarLimits::NONE).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tar stream ends without an end-of-archive block"
        );
        // One zero block is an end, as in GNU tar.
        assert!(read_layer(&gzip(&tar[..tar.len() - 512]), &TarLimits::NONE).is_ok());
    }

    #[test]
    fn read_drops_leading_dot_and_root() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Directory);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        for name in ["./", "./etc/"] {
            header.as_old_mut().name.fill(0);
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            tar.append(&header, io::empty()).unwrap();
        }
        let entries = read_layer(&gzip(&tar.into_inner().unwrap()), &TarLimits::NONE).unwrap();
        assert_eq!(entries, vec![Entry::dir("etc", 0o755)]);
    }
}
