//! Checks the archive tree: layout, Release hashes, signatures, indices,
//! and that every fault helper breaks exactly what it claims to.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use md5::Md5;
use sha2::{Digest, Sha256};

use common::verify;
use plinth_testkit::{Archive, Compression, DebBuilder, PoolEntry, Server, SigningKey, SuiteSpec};

fn key() -> SigningKey {
    SigningKey::ed25519("Test Archive Key <archive@test.invalid>")
}

fn other_key() -> SigningKey {
    SigningKey::ed25519("Someone Else <other@test.invalid>")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    debian: Archive,
    security: Archive,
    libzstd: PoolEntry,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let k = key();
    let mut debian = Archive::new(root.join("debian"));
    debian.suite(SuiteSpec {
        suite: "stable".into(),
        version: "13.2".into(),
        ..SuiteSpec::new("trixie").signed_by(&[&k])
    });
    let mut security = Archive::new(root.join("debian-security"));
    security
        .origin("Debian", "Debian-Security")
        .suite(SuiteSpec {
            valid_until: Some("Sat, 08 Nov 2026 09:15:44 UTC".into()),
            acquire_by_hash: false,
            binary_all: false,
            ..SuiteSpec::new("trixie-security").signed_by(&[&k])
        });

    let libzstd = debian.add(
        "trixie",
        &DebBuilder::new("libzstd1", "1.5.7+dfsg-1", "amd64")
            .field("Source", "libzstd")
            .field("Depends", "libc6 (>= 2.34)")
            .file(
                "/usr/lib/x86_64-linux-gnu/libzstd.so.1.5.7",
                0o644,
                b"\x7fELF zstd",
            )
            .build(),
    );
    for arch in ["amd64", "arm64"] {
        debian.add(
            "trixie",
            &DebBuilder::new("libc6", "2.41-12", arch)
                .field("Source", "glibc")
                .file("/usr/lib/libc.so.6", 0o755, format!("libc {arch}"))
                .build(),
        );
    }
    debian.add(
        "trixie",
        &DebBuilder::new("tzdata", "2025b-4", "all")
            .file("/usr/share/zoneinfo/UTC", 0o644, b"TZif")
            .build(),
    );
    debian.write();

    security.add(
        "trixie-security",
        &DebBuilder::new("libc6", "2.41-12+deb13u1", "amd64")
            .field("Source", "glibc (2.41-12+deb13u1)")
            .build(),
    );
    security.add(
        "trixie-security",
        &DebBuilder::new("base-files", "1:13.2", "all").build(),
    );
    security.write();
    Fixture {
        _tmp: tmp,
        root,
        debian,
        security,
        libzstd,
    }
}

/// Path -> (size, hash) from one hash section of a Release file.
fn release_section(release: &str, section: &str) -> BTreeMap<String, (u64, String)> {
    release
        .split(&format!("\n{section}:\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {section} section"))
        .lines()
        .take_while(|l| l.starts_with(' '))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let hash = parts.next().unwrap().to_owned();
            let size = parts.next().unwrap().parse().unwrap();
            (parts.next().unwrap().to_owned(), (size, hash))
        })
        .collect()
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

fn assert_release_matches_files(archive: &Archive, suite: &str) {
    let release = archive.release(suite);
    let dir = archive.suite_dir(suite);
    let md5 = release_section(&release, "MD5Sum");
    let sha256 = release_section(&release, "SHA256");
    assert_eq!(
        md5.keys().collect::<Vec<_>>(),
        sha256.keys().collect::<Vec<_>>()
    );
    for (rel, (size, hash)) in &sha256 {
        let bytes = std::fs::read(dir.join(rel)).unwrap();
        assert_eq!(bytes.len() as u64, *size, "{rel}");
        assert_eq!(&hex(&Sha256::digest(&bytes)), hash, "{rel}");
        assert_eq!(md5[rel].1, hex(&Md5::digest(&bytes)), "{rel}");
    }
}

fn packages_xz(archive: &Archive, suite: &str, arch: &str) -> String {
    let bytes = std::fs::read(archive.packages_path(suite, arch, Compression::Xz)).unwrap();
    String::from_utf8(Compression::Xz.decompress(&bytes).unwrap()).unwrap()
}

#[test]
fn release_describes_and_hashes_every_index() {
    let f = fixture();
    let release = f.debian.release("trixie");
    assert_eq!(field(&release, "Origin"), Some("Debian"));
    assert_eq!(field(&release, "Suite"), Some("stable"));
    assert_eq!(field(&release, "Codename"), Some("trixie"));
    assert_eq!(field(&release, "Version"), Some("13.2"));
    assert_eq!(
        field(&release, "Date"),
        Some("Sat, 01 Nov 2026 09:15:44 UTC")
    );
    assert_eq!(field(&release, "Valid-Until"), None);
    assert_eq!(field(&release, "Acquire-By-Hash"), Some("yes"));
    assert_eq!(
        field(&release, "No-Support-for-Architecture-all"),
        Some("Packages")
    );
    assert_eq!(field(&release, "Architectures"), Some("all amd64 arm64"));
    assert_eq!(field(&release, "Components"), Some("main"));
    let sha = release_section(&release, "SHA256");
    assert_eq!(
        sha.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "main/binary-all/Packages",
            "main/binary-all/Packages.xz",
            "main/binary-all/Release",
            "main/binary-amd64/Packages",
            "main/binary-amd64/Packages.xz",
            "main/binary-amd64/Release",
            "main/binary-arm64/Packages",
            "main/binary-arm64/Packages.xz",
            "main/binary-arm64/Release",
        ]
    );
    // Sizes are right-aligned to a common width, as on Debian's mirrors.
    for hash_len in [32, 64] {
        let columns: Vec<usize> = release
            .lines()
            .filter(|l| l.starts_with(' ') && l[1..].find(' ') == Some(hash_len))
            .map(|l| l.rfind(' ').unwrap())
            .collect();
        assert_eq!(columns.len(), 9);
        assert!(columns.windows(2).all(|w| w[0] == w[1]), "{release}");
    }
    assert_release_matches_files(&f.debian, "trixie");

    let security = f.security.release("trixie-security");
    assert_eq!(field(&security, "Label"), Some("Debian-Security"));
    assert_eq!(
        field(&security, "Valid-Until"),
        Some("Sat, 08 Nov 2026 09:15:44 UTC")
    );
    assert_eq!(field(&security, "Acquire-By-Hash"), None);
    assert_eq!(field(&security, "Architectures"), Some("amd64 arm64"));
    assert_release_matches_files(&f.security, "trixie-security");
    assert!(
        !f.security
            .suite_dir("trixie-security")
            .join("main/binary-amd64/by-hash")
            .exists()
    );
}

#[test]
fn inrelease_is_release_signed_by_the_suite_key() {
    let f = fixture();
    let inrelease = f.debian.inrelease("trixie");
    assert!(inrelease.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----\n"));
    let (text, good) = verify(&inrelease, &[&key().public_binary()]).unwrap();
    assert_eq!(good, 1);
    assert_eq!(
        format!("{}\n", String::from_utf8(text).unwrap()),
        f.debian.release("trixie")
    );
    assert!(verify(&inrelease, &[&other_key().public_binary()]).is_err());
    let gpg = std::fs::read(f.debian.suite_dir("trixie").join("Release.gpg")).unwrap();
    assert!(gpg.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
}

#[test]
fn packages_list_pool_files_with_their_hashes() {
    let f = fixture();
    assert_eq!(
        f.libzstd.filename,
        "pool/main/libz/libzstd/libzstd1_1.5.7+dfsg-1_amd64.deb"
    );
    let deb = std::fs::read(f.root.join("debian").join(&f.libzstd.filename)).unwrap();
    assert_eq!(f.libzstd.size, deb.len() as u64);
    assert_eq!(f.libzstd.sha256, hex(&Sha256::digest(&deb)));

    let amd64 = packages_xz(&f.debian, "trixie", "amd64");
    let plain =
        std::fs::read_to_string(f.debian.packages_path("trixie", "amd64", Compression::None))
            .unwrap();
    assert_eq!(amd64, plain);
    let stanzas: Vec<&str> = amd64.split("\n\n").collect();
    let names: Vec<&str> = stanzas
        .iter()
        .map(|s| field(s, "Package").unwrap())
        .collect();
    assert_eq!(names, ["libc6", "libzstd1", "tzdata"]);
    let zstd = stanzas[1];
    assert!(zstd.contains("\nDepends: libc6 (>= 2.34)\n"), "{zstd}");
    assert_eq!(field(zstd, "Filename"), Some(f.libzstd.filename.as_str()));
    assert_eq!(field(zstd, "Size"), Some(deb.len().to_string().as_str()));
    assert_eq!(
        field(zstd, "MD5sum"),
        Some(hex(&Md5::digest(&deb)).as_str())
    );
    assert_eq!(field(zstd, "SHA256"), Some(f.libzstd.sha256.as_str()));
    assert_eq!(
        field(stanzas[0], "Filename"),
        Some("pool/main/g/glibc/libc6_2.41-12_amd64.deb")
    );

    // Architecture: all is in every architecture's Packages and binary-all.
    let arm64 = packages_xz(&f.debian, "trixie", "arm64");
    assert!(arm64.contains("Package: tzdata\n"));
    assert!(arm64.contains("Filename: pool/main/g/glibc/libc6_2.41-12_arm64.deb\n"));
    assert!(!arm64.contains("libzstd1"));
    assert_eq!(
        packages_xz(&f.debian, "trixie", "all")
            .matches("Package: ")
            .count(),
        1
    );

    let security = packages_xz(&f.security, "trixie-security", "amd64");
    assert!(security.contains("Filename: pool/main/g/glibc/libc6_2.41-12+deb13u1_amd64.deb\n"));
    assert!(security.contains("Filename: pool/main/b/base-files/base-files_13.2_all.deb\n"));
    assert!(security.contains("\nVersion: 1:13.2\n"));
}

#[test]
fn by_hash_copies_match_their_names() {
    let f = fixture();
    let xz = std::fs::read(f.debian.packages_path("trixie", "amd64", Compression::Xz)).unwrap();
    let sha = hex(&Sha256::digest(&xz));
    assert_eq!(
        std::fs::read(f.debian.by_hash_path("trixie", "amd64", &sha)).unwrap(),
        xz
    );
    let dir = f
        .debian
        .suite_dir("trixie")
        .join("main/binary-arm64/by-hash/SHA256");
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            entry.file_name().to_str().unwrap(),
            hex(&Sha256::digest(&bytes))
        );
    }
}

#[test]
fn writing_twice_gives_the_same_tree() {
    let a = fixture();
    let b = fixture();
    for rel in [
        "debian/dists/trixie/Release",
        "debian/dists/trixie/main/binary-amd64/Packages.xz",
        "debian/pool/main/libz/libzstd/libzstd1_1.5.7+dfsg-1_amd64.deb",
    ] {
        assert_eq!(
            std::fs::read(a.root.join(rel)).unwrap(),
            std::fs::read(b.root.join(rel)).unwrap(),
            "{rel}"
        );
    }
}

#[test]
fn resign_and_unsign_replace_the_signature() {
    let f = fixture();
    let other = other_key();
    f.debian.resign("trixie", &[&other]);
    let inrelease = f.debian.inrelease("trixie");
    assert!(verify(&inrelease, &[&key().public_binary()]).is_err());
    assert!(verify(&inrelease, &[&other.public_binary()]).is_ok());

    f.debian.resign("trixie", &[&other, &key()]);
    let (_, good) = verify(&f.debian.inrelease("trixie"), &[&key().public_binary()]).unwrap();
    assert_eq!(good, 1);

    f.debian.unsign("trixie");
    assert_eq!(
        f.debian.inrelease("trixie"),
        f.debian.release("trixie").into_bytes()
    );
    assert!(!f.debian.suite_dir("trixie").join("Release.gpg").exists());
}

#[test]
fn tampering_keeps_the_signature_but_breaks_it() {
    let f = fixture();
    f.debian.tamper_inrelease("trixie");
    let inrelease = String::from_utf8(f.debian.inrelease("trixie")).unwrap();
    assert!(inrelease.contains("\nLabel: Xebian\n"));
    assert!(inrelease.contains("-----BEGIN PGP SIGNATURE-----"));
    assert!(verify(inrelease.as_bytes(), &[&key().public_binary()]).is_err());

    let f = fixture();
    f.security.edit_inrelease(
        "trixie-security",
        "Valid-Until: Sat, 08",
        "Valid-Until: Sat, 28",
    );
    assert!(
        verify(
            &f.security.inrelease("trixie-security"),
            &[&key().public_binary()]
        )
        .is_err()
    );
}

#[test]
fn packages_faults_mismatch_the_release() {
    let sha_of = |p: &Path| hex(&Sha256::digest(std::fs::read(p).unwrap()));
    let listed = |a: &Archive| {
        release_section(&a.release("trixie"), "SHA256")["main/binary-amd64/Packages.xz"].clone()
    };

    let f = fixture();
    let path = f.debian.packages_path("trixie", "amd64", Compression::Xz);
    let (size, hash) = listed(&f.debian);
    f.debian.corrupt_packages_xz("trixie", "amd64");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    assert_ne!(sha_of(&path), hash);
    // A client fetching by hash gets the corrupt bytes too.
    assert_eq!(
        sha_of(&f.debian.by_hash_path("trixie", "amd64", &hash)),
        sha_of(&path)
    );

    let f = fixture();
    let path = f.debian.packages_path("trixie", "amd64", Compression::Xz);
    f.debian.replace_packages_xz("trixie", "amd64", b"not xz");
    assert_eq!(std::fs::read(&path).unwrap(), b"not xz");
    assert_eq!(listed(&f.debian), (size, hash.clone()));

    let f = fixture();
    let path = f.debian.packages_path("trixie", "amd64", Compression::Xz);
    f.debian.truncate_packages_xz("trixie", "amd64", 20);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 20);
    assert_eq!(listed(&f.debian), (size, hash.clone()));
}

#[test]
fn signed_truncation_is_only_caught_by_decompression() {
    let f = fixture();
    f.debian.truncate_packages_xz_signed("trixie", "amd64", 40);
    assert_release_matches_files(&f.debian, "trixie");
    let path = f.debian.packages_path("trixie", "amd64", Compression::Xz);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 40);
    assert!(Compression::Xz.decompress(&bytes).is_err());
    let sha = hex(&Sha256::digest(&bytes));
    assert_eq!(
        std::fs::read(f.debian.by_hash_path("trixie", "amd64", &sha)).unwrap(),
        bytes
    );
    assert!(verify(&f.debian.inrelease("trixie"), &[&key().public_binary()]).is_ok());
}

#[test]
fn corrupt_pool_file_breaks_its_hash_only() {
    let f = fixture();
    f.debian.corrupt_pool_file(&f.libzstd.filename);
    let deb = std::fs::read(&f.libzstd.path).unwrap();
    assert_eq!(deb.len() as u64, f.libzstd.size);
    assert_ne!(hex(&Sha256::digest(&deb)), f.libzstd.sha256);
    assert_release_matches_files(&f.debian, "trixie");
}

#[test]
fn add_stanza_and_add_with_control_allow_lies() {
    let tmp = tempfile::tempdir().unwrap();
    let mut archive = Archive::new(tmp.path());
    archive.suite(SuiteSpec::new("sid"));
    archive.add_stanza(
        "sid",
        "amd64",
        "Package: ghost\nVersion: 1\nArchitecture: amd64\nFilename: pool/main/g/ghost/ghost_1_amd64.deb\nSize: 1\nSHA256: 00\n",
    );
    let entry = archive.add_with_control(
        "sid",
        b"not a deb",
        "Package: liar\nVersion: 2\nArchitecture: arm64\n",
    );
    archive.write();
    assert_eq!(std::fs::read(&entry.path).unwrap(), b"not a deb");
    assert!(packages_xz(&archive, "sid", "amd64").contains("Package: ghost\n"));
    assert!(
        packages_xz(&archive, "sid", "arm64")
            .contains("Filename: pool/main/l/liar/liar_2_arm64.deb\n")
    );
    // Unsigned suites have an InRelease that is just the Release.
    assert_eq!(
        archive.inrelease("sid"),
        archive.release("sid").into_bytes()
    );
}

#[test]
fn the_server_serves_the_archive_tree() {
    let f = fixture();
    let server = Server::serve(&f.root);
    let url = format!("{}/debian/dists/trixie/InRelease", server.url());
    let path = url.strip_prefix(&server.url()).unwrap();
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    use std::io::{Read, Write};
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(out.ends_with(&f.debian.inrelease("trixie")));
    assert_eq!(server.requests(), ["/debian/dists/trixie/InRelease"]);
}
