//! Reading `.deb` packages: the `ar` container, the control member (the
//! `control`, `md5sums` and `conffiles` texts, as shipped) and the data member
//! as [`Entry`]s. Maintainer scripts are never kept: plinth does not run them.
//!
//! The whole package is in memory (it was sha256-checked against the lock),
//! so members are slices of it and each is decompressed straight into the tar
//! reader. Any damage (truncated container, corrupt compressed stream, tar
//! without its end block) is an error, never a partial result.

use crate::definitions::Limits;
use crate::support::size::ByteSize;
use crate::tarfs::{Entry, EntryKind, TarError, TarLimits, read_tar};

/// What plinth keeps of one `.deb`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deb {
    /// The `control` file text, as shipped.
    pub control: String,
    pub md5sums: Option<String>,
    pub conffiles: Option<String>,
    /// The data member's entries in archive order, root entry left out.
    pub entries: Vec<Entry>,
}

/// Why a `.deb` was refused; each message names the member or entry.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("not a .deb: expected the ar magic \"!<arch>\\n\" at the start")]
    NotAr,
    #[error("ar member header at byte {offset}: {why}")]
    ArHeader { offset: usize, why: String },
    #[error(
        "ar member {member}: expected {expected} bytes of data, the archive ends after {found}"
    )]
    ArTruncated {
        member: String,
        expected: u64,
        found: usize,
    },
    #[error("ar member {member}: expected a \"\\n\" padding byte after its odd-sized data")]
    ArPadding { member: String },
    #[error("missing member: expected {expected}")]
    MissingMember { expected: &'static str },
    #[error("member {found}: expected {expected}")]
    UnexpectedMember {
        found: String,
        expected: &'static str,
    },
    #[error("debian-binary: expected format version 2.x, found {found:?}")]
    Version { found: String },
    #[error("{member}: unsupported compression .{suffix} (expected none, .xz, .zst or .gz)")]
    Compression { member: String, suffix: String },
    #[error("{member}: {source}")]
    Member { member: String, source: TarError },
    /// A member unpacks past a ceiling of `[limits]`.
    #[error("{member}: {what}")]
    Ceiling { member: String, what: String },
    #[error("{member}: expected a {name} file")]
    MissingControlFile { member: String, name: &'static str },
    #[error("{member}: {name}: expected a regular file")]
    ControlFileKind { member: String, name: &'static str },
    #[error("{member}: {name}: expected UTF-8 text")]
    ControlFileUtf8 { member: String, name: &'static str },
}

/// Parses a `.deb` held in memory, unpacking no more than `limits` allow.
pub fn read_deb(bytes: &[u8], limits: &Limits) -> Result<Deb, DebError> {
    // The whole container is checked before any member is decoded, so damage
    // anywhere in it is reported even past the members plinth uses.
    let members = ar_members(bytes)?;
    let mut members = members.iter();

    let first = members.next().ok_or(DebError::MissingMember {
        expected: "debian-binary",
    })?;
    if first.name != "debian-binary" {
        return Err(DebError::UnexpectedMember {
            found: first.name.clone(),
            expected: "debian-binary",
        });
    }
    check_version(first.data)?;

    let (control_member, control_compression) =
        next_tar(&mut members, "control.tar", "control.tar[.xz|.zst|.gz]")?;
    let (data_member, data_compression) =
        next_tar(&mut members, "data.tar", "data.tar[.xz|.zst|.gz]")?;
    // Members after data.tar are for future formats; deb(5) says to ignore them.

    let control_entries = decode(control_member, control_compression, limits)?;
    let text = |name| control_text(&control_entries, &control_member.name, name);
    let control = text("control")?.ok_or_else(|| DebError::MissingControlFile {
        member: control_member.name.clone(),
        name: "control",
    })?;
    let md5sums = text("md5sums")?;
    let conffiles = text("conffiles")?;

    let entries = decode(data_member, data_compression, limits)?;
    Ok(Deb {
        control,
        md5sums,
        conffiles,
        entries,
    })
}

/// Decompresses the `data.tar` member into nothing and returns its size.
/// Benchmarks use it as the floor of a build: no build can unpack a
/// package faster than its decompressor runs.
pub fn data_tar_size(bytes: &[u8]) -> Result<u64, DebError> {
    let members = ar_members(bytes)?;
    let mut members = members.iter().skip(1);
    next_tar(&mut members, "control.tar", "control.tar[.xz|.zst|.gz]")?;
    let (member, compression) = next_tar(&mut members, "data.tar", "data.tar[.xz|.zst|.gz]")?;
    let data = member.data;
    let mut reader: Box<dyn std::io::Read> = match compression {
        Compression::None => Box::new(data),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(data)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(data).map_err(
            |source| DebError::Member {
                member: member.name.clone(),
                source: TarError::Read { source },
            },
        )?),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
    };
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|source| DebError::Member {
        member: member.name.clone(),
        source: TarError::Read { source },
    })
}

struct Member<'a> {
    name: String,
    data: &'a [u8],
}

const AR_MAGIC: &[u8] = b"!<arch>\n";
const AR_HEADER: usize = 60;

/// Splits the `ar` container into members. Written here rather than with the
/// `ar` crate: ar 0.9 panics on a GNU name-table index past its table and
/// returns short reads instead of errors for a truncated member.
fn ar_members(bytes: &[u8]) -> Result<Vec<Member<'_>>, DebError> {
    let mut rest = bytes.strip_prefix(AR_MAGIC).ok_or(DebError::NotAr)?;
    let mut members = Vec::new();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let header_err = |why: String| DebError::ArHeader { offset, why };
        let Some((header, after)) = rest.split_first_chunk::<AR_HEADER>() else {
            return Err(header_err(format!(
                "expected {AR_HEADER} bytes, the archive ends after {}",
                rest.len()
            )));
        };
        let (raw_name, fields) = header.split_at(16);
        let (_mtime_owner_mode, size_and_magic) = fields.split_at(32);
        let (raw_size, magic) = size_and_magic.split_at(10);
        if magic != b"`\n" {
            return Err(header_err(
                "expected the header terminator \"`\\n\"".to_owned(),
            ));
        }
        // Names as dpkg reads them: trailing spaces go, then one GNU-style '/'.
        let name = trim_end(raw_name, b' ');
        let name = name.strip_suffix(b"/").unwrap_or(name);
        let name = String::from_utf8_lossy(name).into_owned();
        let size_text = trim_end(raw_size, b' ');
        let size = std::str::from_utf8(size_text)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                header_err(format!(
                    "member {name}: expected a decimal size, found {:?}",
                    String::from_utf8_lossy(raw_size)
                ))
            })?;
        let Some(data) = usize::try_from(size).ok().and_then(|n| after.get(..n)) else {
            return Err(DebError::ArTruncated {
                member: name,
                expected: size,
                found: after.len(),
            });
        };
        rest = after.get(data.len()..).unwrap_or_default();
        if data.len() % 2 == 1 {
            match rest.split_first() {
                Some((b'\n', tail)) => rest = tail,
                _ => return Err(DebError::ArPadding { member: name }),
            }
        }
        members.push(Member { name, data });
    }
    Ok(members)
}

fn trim_end(bytes: &[u8], pad: u8) -> &[u8] {
    let len = bytes.iter().rposition(|&b| b != pad).map_or(0, |i| i + 1);
    bytes.get(..len).unwrap_or_default()
}

fn check_version(data: &[u8]) -> Result<(), DebError> {
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let ok = line
        .strip_prefix(b"2.")
        .is_some_and(|minor| !minor.is_empty() && minor.iter().all(u8::is_ascii_digit));
    if ok {
        return Ok(());
    }
    let shown = line.get(..32).unwrap_or(line);
    Err(DebError::Version {
        found: String::from_utf8_lossy(shown).into_owned(),
    })
}

#[derive(Clone, Copy, Debug)]
enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

/// The next required tar member, skipping `_`-named members (deb(5) reserves
/// those for additions that older readers must ignore).
fn next_tar<'m, 'a>(
    members: &mut impl Iterator<Item = &'m Member<'a>>,
    stem: &str,
    expected: &'static str,
) -> Result<(&'m Member<'a>, Compression), DebError>
where
    'a: 'm,
{
    let member = members
        .find(|m| !m.name.starts_with('_'))
        .ok_or(DebError::MissingMember { expected })?;
    let unexpected = || DebError::UnexpectedMember {
        found: member.name.clone(),
        expected,
    };
    let suffix = member.name.strip_prefix(stem).ok_or_else(unexpected)?;
    let compression = match suffix {
        "" => Compression::None,
        ".xz" => Compression::Xz,
        ".zst" => Compression::Zstd,
        ".gz" => Compression::Gzip,
        other => match other.strip_prefix('.') {
            Some(suffix) => {
                return Err(DebError::Compression {
                    member: member.name.clone(),
                    suffix: suffix.to_owned(),
                });
            }
            None => return Err(unexpected()),
        },
    };
    Ok((member, compression))
}

/// Memory cap for the xz decoder: far above what any `xz -9e` stream needs
/// (about 65 MiB), low enough that a forged dictionary size cannot claim
/// gigabytes.
const XZ_MEMLIMIT: u64 = 1 << 30;

/// Unpacks one tar member, decompressing as it reads, within `limits`:
/// a file past `limits.entry`, or a member past the package ceiling or
/// `limits.ratio` times its compressed size, is refused as soon as a
/// header or the stream shows it.
fn decode(
    member: &Member<'_>,
    compression: Compression,
    limits: &Limits,
) -> Result<Vec<Entry>, DebError> {
    let data = member.data;
    let ceiling = limits.member_ceiling(data.len() as u64);
    let tar_limits = TarLimits {
        entry: limits.entry.0,
        total: ceiling,
    };
    let io_err = |source| TarError::Read { source };
    let result = match compression {
        Compression::None => read_tar(data, &tar_limits),
        Compression::Xz => {
            // CONCATENATED reads every stream and its padding to the end of
            // the member, as the xz tool does, and fails on trailing garbage.
            liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, liblzma::stream::CONCATENATED)
                .map_err(|e| io_err(e.into()))
                .and_then(|stream| {
                    read_tar(
                        liblzma::bufread::XzDecoder::new_stream(data, stream),
                        &tar_limits,
                    )
                })
        }
        Compression::Zstd => zstd::stream::read::Decoder::with_buffer(data)
            .map_err(io_err)
            .and_then(|d| read_tar(d, &tar_limits)),
        Compression::Gzip => read_tar(flate2::bufread::MultiGzDecoder::new(data), &tar_limits),
    };
    let member_name = member.name.clone();
    result.map_err(|source| match source {
        TarError::EntryTooLarge { path, size, .. } => DebError::Ceiling {
            member: member_name,
            what: format!(
                "{path}: {}, above the ceiling of {} per file (limits.entry in images/plinth.toml)",
                ByteSize(size),
                limits.entry
            ),
        },
        TarError::TooLarge { .. } if ceiling < limits.package.0 => DebError::Ceiling {
            member: member_name,
            what: format!(
                "unpacks to more than {}, {} times its compressed {} (limits.ratio in images/plinth.toml)",
                ByteSize(ceiling),
                limits.ratio,
                ByteSize(data.len() as u64)
            ),
        },
        TarError::TooLarge { .. } => DebError::Ceiling {
            member: member_name,
            what: format!(
                "unpacks to more than {}, the ceiling per package (limits.package in images/plinth.toml)",
                limits.package
            ),
        },
        source => DebError::Member {
            member: member_name,
            source,
        },
    })
}

fn control_text(
    entries: &[Entry],
    member: &str,
    name: &'static str,
) -> Result<Option<String>, DebError> {
    let Some(entry) = entries.iter().find(|e| e.path == name) else {
        return Ok(None);
    };
    let EntryKind::File(contents) = &entry.kind else {
        return Err(DebError::ControlFileKind {
            member: member.to_owned(),
            name,
        });
    };
    match std::str::from_utf8(contents) {
        Ok(text) => Ok(Some(text.to_owned())),
        Err(_) => Err(DebError::ControlFileUtf8 {
            member: member.to_owned(),
            name,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::process::Command;
    use tar::{EntryType, Header};

    /// A tar member with the name bytes put in the header as given, so that
    /// names the tar crate would refuse to write (`..`, absolute) can be made.
    fn raw(
        tar: &mut tar::Builder<Vec<u8>>,
        name: &[u8],
        kind: EntryType,
        mode: u32,
        link: &[u8],
        data: &[u8],
    ) {
        let mut header = Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        header.set_size(data.len() as u64);
        header.set_cksum();
        tar.append(&header, data).unwrap();
    }

    fn dir(tar: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32) {
        raw(tar, name.as_bytes(), EntryType::Directory, mode, b"", b"");
    }

    fn file(tar: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, data: &[u8]) {
        raw(tar, name.as_bytes(), EntryType::Regular, mode, b"", data);
    }

    fn finish(tar: tar::Builder<Vec<u8>>) -> Vec<u8> {
        tar.into_inner().unwrap()
    }

    fn one_file_tar(name: &[u8], kind: EntryType, link: &[u8]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        dir(&mut tar, "./", 0o755);
        dir(&mut tar, "./usr/", 0o755);
        file(&mut tar, "./usr/f", 0o644, b"f");
        raw(&mut tar, name, kind, 0o644, link, b"");
        finish(tar)
    }

    fn long_name() -> String {
        format!("usr/share/{}/{}", "d".repeat(80), "f".repeat(60))
    }

    fn pax_name() -> String {
        format!("usr/share/{}", "p".repeat(200))
    }

    const CONTROL: &str = "Package: t\nVersion: 1.0-1\nArchitecture: all\nMaintainer: x <x@example.org>\nDescription: test\n";

    fn control_tar() -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        dir(&mut tar, "./", 0o755);
        file(&mut tar, "./control", 0o644, CONTROL.as_bytes());
        file(
            &mut tar,
            "./md5sums",
            0o644,
            b"d41d8cd98f00b204e9800998ecf8427e  usr/bin/su\n",
        );
        file(&mut tar, "./postinst", 0o755, b"#!/bin/sh\n");
        finish(tar)
    }

    /// Every kind of entry, special bits, owners, a GNU long name and a PAX
    /// path.
    fn data_tar() -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        dir(&mut tar, "./", 0o755);
        dir(&mut tar, "./tmp/", 0o1777);
        dir(&mut tar, "./usr/", 0o755);
        dir(&mut tar, "./usr/bin/", 0o755);
        file(&mut tar, "./usr/bin/su", 0o4755, b"su\n");
        raw(
            &mut tar,
            b"./usr/bin/su2",
            EntryType::Link,
            0o4755,
            b"./usr/bin/su",
            b"",
        );
        raw(
            &mut tar,
            b"./usr/bin/sh",
            EntryType::Symlink,
            0o777,
            b"/usr/bin/su",
            b"",
        );
        raw(
            &mut tar,
            b"./usr/bin/rel",
            EntryType::Symlink,
            0o777,
            b"../lib/./x//y",
            b"",
        );
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o2640);
        header.set_uid(1000);
        header.set_gid(50);
        header.set_mtime(1_500_000_000);
        header.set_size(4);
        tar.append_data(&mut header, format!("./{}", long_name()), &b"long"[..])
            .unwrap();
        let record = format!("path=./{}\n", pax_name());
        let mut len = record.len() + 3;
        if format!("{len} {record}").len() != len {
            len += 1;
        }
        let pax = format!("{len} {record}");
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_path("PaxHeaders/x").unwrap();
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(pax.len() as u64);
        header.set_cksum();
        tar.append(&header, pax.as_bytes()).unwrap();
        file(&mut tar, "./usr/share/truncated-by-pax", 0o644, b"pax");
        finish(tar)
    }

    fn expected_entries() -> Vec<Entry> {
        let at = |entry: Entry| Entry {
            mtime: 1_600_000_000,
            ..entry
        };
        vec![
            at(Entry::dir("tmp", 0o1777)),
            at(Entry::dir("usr", 0o755)),
            at(Entry::dir("usr/bin", 0o755)),
            at(Entry::file("usr/bin/su", 0o4755, b"su\n".to_vec())),
            at(Entry {
                kind: EntryKind::Hardlink("usr/bin/su".into()),
                ..Entry::file("usr/bin/su2", 0o4755, Vec::new())
            }),
            at(Entry::symlink("usr/bin/sh", "/usr/bin/su")),
            at(Entry::symlink("usr/bin/rel", "../lib/./x//y")),
            Entry {
                mtime: 1_500_000_000,
                ..Entry::file(long_name(), 0o2640, b"long".to_vec()).owned_by(1000, 50)
            },
            at(Entry::file(pax_name(), 0o644, b"pax".to_vec())),
        ]
    }

    fn compress(data: &[u8], suffix: &str) -> Vec<u8> {
        let format = plinth_testkit::Compression::ALL
            .into_iter()
            .find(|c| c.extension() == suffix)
            .unwrap_or_else(|| panic!("no compressor for {suffix}"));
        format.compress(data)
    }

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        plinth_testkit::ar_archive(members, 0)
    }

    fn deb_with(suffix: &str, data: &[u8]) -> Vec<u8> {
        let control = compress(&control_tar(), suffix);
        let data = compress(data, suffix);
        ar(&[
            ("debian-binary", b"2.0\n"),
            (&format!("control.tar{suffix}"), &control),
            (&format!("data.tar{suffix}"), &data),
        ])
    }

    fn deb(suffix: &str) -> Vec<u8> {
        deb_with(suffix, &data_tar())
    }

    fn expected_deb() -> Deb {
        Deb {
            control: CONTROL.to_owned(),
            md5sums: Some("d41d8cd98f00b204e9800998ecf8427e  usr/bin/su\n".to_owned()),
            conffiles: None,
            entries: expected_entries(),
        }
    }

    /// The error's message, checked to be one line.
    fn fails(bytes: &[u8]) -> String {
        let message = read_deb(bytes, &Limits::default()).unwrap_err().to_string();
        assert!(!message.contains('\n'), "{message}");
        message
    }

    #[test]
    fn reads_every_compression() {
        for suffix in ["", ".xz", ".zst", ".gz"] {
            assert_eq!(
                read_deb(&deb(suffix), &Limits::default()).unwrap(),
                expected_deb(),
                "{suffix}"
            );
        }
    }

    #[test]
    fn skips_reserved_and_trailing_members() {
        let control = compress(&control_tar(), ".xz");
        let data = compress(&data_tar(), ".xz");
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("_gpgorigin", b"sig"),
            ("control.tar.xz", &control),
            ("_extra", b""),
            ("data.tar.xz", &data),
            ("future-member", b"odd"),
        ]);
        assert_eq!(
            read_deb(&bytes, &Limits::default()).unwrap(),
            expected_deb()
        );
    }

    #[test]
    fn accepts_gnu_style_member_names() {
        let data = compress(&data_tar(), ".gz");
        let control = compress(&control_tar(), ".gz");
        let bytes = ar(&[
            ("debian-binary/", b"2.0\n"),
            ("control.tar.gz/", &control),
            ("data.tar.gz/", &data),
        ]);
        assert_eq!(
            read_deb(&bytes, &Limits::default()).unwrap(),
            expected_deb()
        );
    }

    #[test]
    fn rejects_every_truncation() {
        for suffix in ["", ".xz"] {
            let bytes = deb(suffix);
            for cut in 0..bytes.len() {
                assert!(
                    read_deb(&bytes[..cut], &Limits::default()).is_err(),
                    "{suffix}: prefix of {cut} accepted"
                );
            }
        }
        assert_eq!(
            fails(b""),
            "not a .deb: expected the ar magic \"!<arch>\\n\" at the start"
        );
        let bytes = deb(".xz");
        let message = fails(&bytes[..bytes.len() - 10]);
        assert!(
            message.starts_with("ar member data.tar.xz: expected "),
            "{message}"
        );
    }

    #[test]
    fn rejects_corrupt_ar() {
        let good = deb(".xz");
        let mut bad_magic = good.clone();
        bad_magic[1] = b'?';
        assert!(fails(&bad_magic).starts_with("not a .deb"));

        let mut bad_terminator = good.clone();
        bad_terminator[8 + 58] = b'x';
        assert_eq!(
            fails(&bad_terminator),
            "ar member header at byte 8: expected the header terminator \"`\\n\""
        );

        let mut bad_size = good.clone();
        bad_size[8 + 48] = b'x';
        assert_eq!(
            fails(&bad_size),
            "ar member header at byte 8: member debian-binary: expected a decimal size, found \"x         \""
        );

        let odd = ar(&[("debian-binary", b"2.0\n"), ("_odd", b"odd")]);
        let mut bad_padding = odd.clone();
        *bad_padding.last_mut().unwrap() = b'x';
        assert_eq!(
            fails(&bad_padding),
            "ar member _odd: expected a \"\\n\" padding byte after its odd-sized data"
        );
        assert_eq!(
            fails(&odd),
            "missing member: expected control.tar[.xz|.zst|.gz]"
        );

        let mut short_header = good.clone();
        short_header.extend_from_slice(b"junk");
        let message = fails(&short_header);
        assert!(
            message.ends_with("expected 60 bytes, the archive ends after 4"),
            "{message}"
        );
    }

    #[test]
    fn rejects_corrupt_xz() {
        let good = read_deb(&deb(".xz"), &Limits::default()).unwrap();
        let data = compress(&data_tar(), ".xz");
        let control = compress(&control_tar(), ".xz");
        let mut rejected = 0;
        for at in 0..data.len() {
            let mut broken = data.clone();
            broken[at] ^= 0x20;
            let bytes = ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.xz", &control),
                ("data.tar.xz", &broken),
            ]);
            match read_deb(&bytes, &Limits::default()) {
                // A flip the decoder cannot see must not change the result.
                Ok(deb) => assert_eq!(deb, good, "flip at {at}"),
                Err(err) => {
                    rejected += 1;
                    assert!(err.to_string().starts_with("data.tar.xz: "), "{err}");
                }
            }
        }
        assert!(
            rejected > data.len() * 9 / 10,
            "{rejected} of {}",
            data.len()
        );

        let mut garbage = data.clone();
        garbage.extend_from_slice(b"trailing");
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", &control),
            ("data.tar.xz", &garbage),
        ]);
        assert!(fails(&bytes).starts_with("data.tar.xz: "));
    }

    #[test]
    fn rejects_unknown_compression() {
        let tar = data_tar();
        let control = compress(&control_tar(), ".xz");
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", &control),
            ("data.tar.bz2", &tar),
        ]);
        assert_eq!(
            fails(&bytes),
            "data.tar.bz2: unsupported compression .bz2 (expected none, .xz, .zst or .gz)"
        );
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.lzma", &tar),
            ("data.tar", &tar),
        ]);
        assert!(fails(&bytes).starts_with("control.tar.lzma: unsupported compression .lzma"));
    }

    type Members<'a> = &'a [(&'a str, &'a [u8])];

    #[test]
    fn rejects_wrong_members() {
        let control = compress(&control_tar(), ".xz");
        let data = compress(&data_tar(), ".xz");
        let cases: [(Members<'_>, &str); 5] = [
            (&[], "missing member: expected debian-binary"),
            (
                &[("control.tar.xz", &control), ("debian-binary", b"2.0\n")],
                "member control.tar.xz: expected debian-binary",
            ),
            (
                &[
                    ("debian-binary", b"2.0\n"),
                    ("data.tar.xz", &data),
                    ("control.tar.xz", &control),
                ],
                "member data.tar.xz: expected control.tar[.xz|.zst|.gz]",
            ),
            (
                &[("debian-binary", b"2.0\n"), ("control.tar.xz", &control)],
                "missing member: expected data.tar[.xz|.zst|.gz]",
            ),
            (
                &[
                    ("debian-binary", b"3.0\n"),
                    ("control.tar.xz", &control),
                    ("data.tar.xz", &data),
                ],
                "debian-binary: expected format version 2.x, found \"3.0\"",
            ),
        ];
        for (members, expected) in cases {
            let message = if members.is_empty() {
                fails(b"!<arch>\n")
            } else {
                fails(&ar(members))
            };
            assert_eq!(message, expected);
        }
    }

    #[test]
    fn requires_a_control_file() {
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "./md5sums", 0o644, b"");
        let control = finish(tar);
        let data = data_tar();
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]);
        assert_eq!(fails(&bytes), "control.tar: expected a control file");

        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "./control", 0o644, b"Package: \xff\n");
        let control = finish(tar);
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]);
        assert_eq!(fails(&bytes), "control.tar: control: expected UTF-8 text");
    }

    /// The message for a `.deb` whose data.tar.xz is `tar`.
    fn data_fails(tar: &[u8]) -> String {
        fails(&deb_with(".xz", tar))
    }

    #[test]
    fn rejects_bad_names() {
        let cases: [(&[u8], &str); 7] = [
            (
                b"./usr/../etc/x",
                "data.tar.xz: entry \"./usr/../etc/x\": invalid path: `..` component",
            ),
            (
                b"../x",
                "data.tar.xz: entry \"../x\": invalid path: `..` component",
            ),
            (
                b"/etc/x",
                "data.tar.xz: entry \"/etc/x\": invalid path: absolute",
            ),
            (
                b"./usr//x",
                "data.tar.xz: entry \"./usr//x\": invalid path: empty component",
            ),
            (
                b"./usr/./x",
                "data.tar.xz: entry \"./usr/./x\": invalid path: `.` component",
            ),
            (
                b"./usr/x/",
                "data.tar.xz: entry \"./usr/x/\": invalid path: empty component",
            ),
            (
                b"./usr/\xffx",
                "data.tar.xz: tar entry \"./usr/\u{fffd}x\": name is not UTF-8",
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(
                data_fails(&one_file_tar(name, EntryType::Regular, b"")),
                expected
            );
        }
    }

    #[test]
    fn rejects_escaping_hard_links() {
        let cases: [(&[u8], &str); 6] = [
            (b"../../etc/shadow", "`..` component"),
            (b"/etc/shadow", "absolute"),
            (b"./usr/missing", "not an earlier entry of the archive"),
            (b"./usr", "not a regular file"),
            (b"./usr/", "empty component"),
            (b"./usr/l", "not an earlier entry of the archive"),
        ];
        for (target, why) in cases {
            let message = data_fails(&one_file_tar(b"./usr/l", EntryType::Link, target));
            let target = String::from_utf8_lossy(target);
            assert_eq!(
                message,
                format!("data.tar.xz: entry usr/l: hard link target {target:?}: {why}")
            );
        }
        // A link to a link is a link to the file.
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "./f", 0o644, b"f");
        raw(&mut tar, b"./g", EntryType::Link, 0o644, b"./f", b"");
        raw(&mut tar, b"./h", EntryType::Link, 0o644, b"./g", b"");
        let entries = read_deb(&deb_with(".xz", &finish(tar)), &Limits::default())
            .unwrap()
            .entries;
        assert_eq!(
            entries.last().unwrap().kind,
            EntryKind::Hardlink("f".into())
        );
    }

    #[test]
    fn rejects_devices_and_fifos() {
        for (kind, name) in [
            (EntryType::Char, "character device"),
            (EntryType::Block, "block device"),
            (EntryType::Fifo, "fifo"),
        ] {
            assert_eq!(
                data_fails(&one_file_tar(b"./usr/dev", kind, b"")),
                format!(
                    "data.tar.xz: tar entry usr/dev: {name} entries are not supported (expected directory, regular file, symlink or hard link)"
                )
            );
        }
    }

    #[test]
    fn rejects_duplicates_and_damaged_tar() {
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "./f", 0o644, b"1");
        file(&mut tar, "f", 0o644, b"2");
        assert_eq!(
            data_fails(&finish(tar)),
            "data.tar.xz: entry f: path appears more than once"
        );

        let tar = data_tar();
        assert_eq!(
            data_fails(&tar[..tar.len() - 1024]),
            "data.tar.xz: tar stream ends without an end-of-archive block"
        );
        // Cut inside the long file's contents, then compressed intact.
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "./f", 0o644, &[1; 2000]);
        let tar = finish(tar);
        assert_eq!(
            data_fails(&tar[..1024]),
            "data.tar.xz: tar entry f: expected 2000 bytes of contents, the stream ends after 512"
        );
        let mut bad_sum = data_tar();
        bad_sum[512 + 150] ^= 1;
        assert_eq!(
            data_fails(&bad_sum),
            "data.tar.xz: reading tar stream: archive header checksum mismatch"
        );
    }

    /// A `.deb` whose data.tar.xz holds one file of `size` zero bytes,
    /// compressed as it is produced (never whole in memory): about 150 KiB
    /// for 1 GiB.
    fn bomb(size: u64) -> Vec<u8> {
        use std::io::Write as _;
        let mut header = Header::new_gnu();
        header.set_path("./usr/share/bomb").unwrap();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_mtime(1_600_000_000);
        header.set_cksum();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(header.as_bytes()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        let mut left = size.div_ceil(512) * 512 + 1024;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            xz.write_all(&zeros[..n]).unwrap();
            left -= n as u64;
        }
        let data = xz.finish().unwrap();
        let control = compress(&control_tar(), ".xz");
        ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", &control),
            ("data.tar.xz", &data),
        ])
    }

    /// The child half of the test below: refuses the bomb it is given.
    #[test]
    fn refuse_the_bomb_named_by_the_environment() {
        let Some(path) = std::env::var_os("PLINTH_TEST_BOMB") else {
            return;
        };
        let bytes = std::fs::read(path).unwrap();
        let err = read_deb(&bytes, &Limits::default()).unwrap_err();
        println!("REFUSED: {err}");
    }

    /// 190 KB that unpack to 1 GiB: refused from the tar header, with one
    /// line naming the ceiling, by a process that may not map 1 GiB.
    #[test]
    fn a_compression_bomb_is_refused_within_a_memory_limit() {
        let bytes = bomb(1 << 30);
        assert!(bytes.len() < 300 << 10, "{} bytes", bytes.len());
        let message = fails(&bytes);
        assert!(
            message.starts_with("data.tar.xz: unpacks to more than ")
                && message.contains(", 2000 times its compressed ")
                && message.ends_with(" KiB (limits.ratio in images/plinth.toml)"),
            "{message}"
        );
        if Command::new("prlimit").arg("--version").output().is_err() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "prlimit is required in CI"
            );
            eprintln!("skipped the memory limit: prlimit not found");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.deb");
        std::fs::write(&path, &bytes).unwrap();
        let out = Command::new("prlimit")
            .arg(format!("--as={}", 768u64 << 20))
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "debian::deb::tests::refuse_the_bomb_named_by_the_environment",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PLINTH_TEST_BOMB", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("REFUSED: data.tar.xz: unpacks to more than "),
            "{}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn ceilings_per_file_and_per_package_come_from_the_limits() {
        let mut tar = tar::Builder::new(Vec::new());
        dir(&mut tar, "./usr/", 0o755);
        file(&mut tar, "./usr/f", 0o644, &[1; 8192]);
        file(&mut tar, "./usr/g", 0o644, &[2; 8192]);
        let bytes = deb_with(".xz", &finish(tar));
        let small = |entry: u64, package: u64| Limits {
            entry: ByteSize(entry),
            package: ByteSize(package),
            ..Limits::default()
        };
        let message = read_deb(&bytes, &small(4096, 1 << 30))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "data.tar.xz: ./usr/f: 8 KiB, above the ceiling of 4 KiB per file (limits.entry in images/plinth.toml)"
        );
        // The control member (a few KiB) fits; the data member does not.
        let message = read_deb(&bytes, &small(1 << 30, 16 << 10))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "data.tar.xz: unpacks to more than 16 KiB, the ceiling per package (limits.package in images/plinth.toml)"
        );
        // The control member has the same ceilings.
        let message = read_deb(&bytes, &small(1 << 30, 600))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("control.tar.xz: unpacks to more than 600 B"),
            "{message}"
        );
    }

    /// Packages built by the real dpkg-deb, with every compression it offers.
    #[test]
    fn reads_dpkg_deb_output() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        if Command::new("dpkg-deb").arg("--version").output().is_err() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "dpkg-deb is required in CI"
            );
            eprintln!("skipped: dpkg-deb not found");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pkg");
        let long_dir = format!("usr/share/{}", "d".repeat(120));
        let long_file = format!("{long_dir}/{}", "f".repeat(60));
        let dirs = [
            ("DEBIAN", 0o755),
            ("etc", 0o755),
            ("usr", 0o755),
            ("usr/bin", 0o755),
            ("usr/lib", 0o755),
            ("usr/share", 0o2755),
            (long_dir.as_str(), 0o755),
            ("var", 0o755),
            ("var/tmp", 0o1777),
        ];
        for (path, mode) in dirs {
            let dir = root.join(path);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let files = [
            ("DEBIAN/control", 0o644, CONTROL.as_bytes()),
            ("DEBIAN/conffiles", 0o644, b"/etc/t.conf\n".as_slice()),
            ("DEBIAN/md5sums", 0o644, b"0123  usr/bin/su\n".as_slice()),
            ("etc/t.conf", 0o644, b"conf\n".as_slice()),
            ("usr/bin/su", 0o4755, b"su\n".as_slice()),
            (long_file.as_str(), 0o600, b"long".as_slice()),
        ];
        for (path, mode, data) in files {
            let file = root.join(path);
            std::fs::write(&file, data).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::hard_link(root.join("usr/bin/su"), root.join("usr/bin/su2")).unwrap();
        symlink("/usr/bin/su", root.join("usr/bin/sh")).unwrap();
        symlink("../bin/su", root.join("usr/lib/rel")).unwrap();

        let epoch = 1_600_000_000;
        let at = |entry: Entry| Entry {
            mtime: epoch,
            ..entry
        };
        let mut expected = vec![
            at(Entry::dir("etc", 0o755)),
            at(Entry::file("etc/t.conf", 0o644, b"conf\n".to_vec())),
            at(Entry::dir("usr", 0o755)),
            at(Entry::dir("usr/bin", 0o755)),
            at(Entry::symlink("usr/bin/sh", "/usr/bin/su")),
            at(Entry::file("usr/bin/su", 0o4755, b"su\n".to_vec())),
            at(Entry {
                kind: EntryKind::Hardlink("usr/bin/su".into()),
                ..Entry::file("usr/bin/su2", 0o4755, Vec::new())
            }),
            at(Entry::dir("usr/lib", 0o755)),
            at(Entry::symlink("usr/lib/rel", "../bin/su")),
            at(Entry::dir("usr/share", 0o2755)),
            at(Entry::dir(long_dir.clone(), 0o755)),
            at(Entry::file(long_file.clone(), 0o600, b"long".to_vec())),
            at(Entry::dir("var", 0o755)),
            at(Entry::dir("var/tmp", 0o1777)),
        ];
        expected.sort_by(|a, b| a.path.cmp(&b.path));

        for compression in ["xz", "zstd", "gzip", "none"] {
            let out = tmp.path().join(format!("t-{compression}.deb"));
            let status = Command::new("dpkg-deb")
                .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
                .arg(&root)
                .arg(&out)
                .env("SOURCE_DATE_EPOCH", epoch.to_string())
                .output()
                .unwrap();
            assert!(
                status.status.success(),
                "{}",
                String::from_utf8_lossy(&status.stderr)
            );
            let deb = read_deb(&std::fs::read(&out).unwrap(), &Limits::default()).unwrap();
            assert_eq!(deb.control, CONTROL, "{compression}");
            assert_eq!(
                deb.conffiles.as_deref(),
                Some("/etc/t.conf\n"),
                "{compression}"
            );
            assert_eq!(
                deb.md5sums.as_deref(),
                Some("0123  usr/bin/su\n"),
                "{compression}"
            );
            let mut entries = deb.entries;
            // dpkg-deb sorts names, so the file comes before its hard link.
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            assert_eq!(entries, expected, "{compression}");
        }
    }
}
