//! Checks built packages against the host's dpkg-deb and tar readers.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

use md5::{Digest, Md5};
use plinth_testkit::{Compression, DebBuilder, EntryKind, RawEntry};

fn sample() -> DebBuilder {
    DebBuilder::new("hello", "1:2.12-1+b2", "amd64")
        .field("Source", "hello-src (2.12-1)")
        .field("Depends", "libc6 (>= 2.34), base-files | foo")
        .field("Pre-Depends", "dpkg (>= 1.21)")
        .field("Multi-Arch", "foreign")
        .field("X-Custom", "kept")
        .dir("/etc/hello", 0o750)
        .file("/usr/bin/hello", 0o755, b"#!/bin/sh\necho hello\n")
        .file("/usr/share/doc/hello/copyright", 0o644, b"free\n")
        .symlink("/usr/bin/hi", "hello")
        .hardlink("/usr/bin/hello-again", "/usr/bin/hello")
        .owner(1000, 1001)
        .file("/var/lib/hello/state", 0o4755, b"state")
}

fn dpkg_deb(args: &[&str], deb: &Path) -> Output {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("dpkg-deb is installed");
    assert!(
        out.status.success(),
        "dpkg-deb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn data_tar(deb: &[u8]) -> Vec<u8> {
    let mut ar = ar::Archive::new(deb);
    let mut names = Vec::new();
    while let Some(member) = ar.next_entry() {
        let mut member = member.unwrap();
        let name = String::from_utf8(member.header().identifier().to_vec()).unwrap();
        names.push(name.clone());
        if name.starts_with("data.tar") {
            let mut bytes = Vec::new();
            member.read_to_end(&mut bytes).unwrap();
            return Compression::from_file_name(&name)
                .unwrap()
                .decompress(&bytes)
                .unwrap();
        }
    }
    panic!("no data.tar in {names:?}");
}

fn ar_members(deb: &[u8]) -> Vec<String> {
    assert!(deb.starts_with(b"!<arch>\ndebian-binary   "));
    let mut ar = ar::Archive::new(deb);
    let mut names = Vec::new();
    while let Some(member) = ar.next_entry() {
        let mut member = member.unwrap();
        names.push(String::from_utf8(member.header().identifier().to_vec()).unwrap());
        if names.len() == 1 {
            let mut body = String::new();
            member.read_to_string(&mut body).unwrap();
            assert_eq!(body, "2.0\n");
        }
    }
    names
}

fn tar_names(tar_bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut archive = tar::Archive::new(tar_bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect()
}

#[test]
fn dpkg_deb_accepts_every_compression() {
    let dir = tempfile::tempdir().unwrap();
    for compression in Compression::ALL {
        let builder = sample().compression(compression);
        let path = dir.path().join(builder.file_name());
        assert_eq!(builder.file_name(), "hello_2.12-1+b2_amd64.deb");
        let deb = builder.build();
        std::fs::write(&path, &deb).unwrap();
        let ext = compression.extension();
        assert_eq!(
            ar_members(&deb),
            [
                "debian-binary".to_owned(),
                format!("control.tar{ext}"),
                format!("data.tar{ext}")
            ]
        );

        let info = dpkg_deb(&["--info"], &path);
        assert!(
            info.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&info.stderr)
        );
        let info = String::from_utf8(info.stdout).unwrap();
        assert!(info.contains(" Package: hello\n"), "{info}");
        assert!(info.contains(" Version: 1:2.12-1+b2\n"), "{info}");
        assert!(
            info.lines().any(|l| l.trim_end().ends_with(" md5sums")),
            "{info}"
        );

        let fields = dpkg_deb(&["--field"], &path);
        assert_eq!(
            String::from_utf8(fields.stdout).unwrap(),
            sample().control_text(),
            "dpkg-deb reads back exactly the control text"
        );

        let contents = String::from_utf8(dpkg_deb(&["--contents"], &path).stdout).unwrap();
        let lines: Vec<&str> = contents.lines().collect();
        assert!(lines[0].starts_with("drwxr-xr-x root/root") && lines[0].ends_with(" ./"));
        assert!(
            contents.contains("drwxr-x--- root/root         0 2026-11-01 00:00 ./etc/hello/\n"),
            "{contents}"
        );
        assert!(
            contents.contains("-rwxr-xr-x root/root        21 2026-11-01 00:00 ./usr/bin/hello\n"),
            "{contents}"
        );
        assert!(contents.contains("./usr/bin/hi -> hello\n"), "{contents}");
        assert!(
            contents.contains("./usr/bin/hello-again link to ./usr/bin/hello\n"),
            "{contents}"
        );
        assert!(
            contents.contains(
                "-rwsr-xr-x 1000/1001         5 2026-11-01 00:00 ./var/lib/hello/state\n"
            ),
            "{contents}"
        );
        // Implicit parents are root-owned even after owner().
        assert!(
            contents.contains("drwxr-xr-x root/root         0 2026-11-01 00:00 ./var/lib/hello/\n"),
            "{contents}"
        );

        let out = dir.path().join(format!("x{ext}"));
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&path)
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read(out.join("usr/bin/hello")).unwrap(),
            b"#!/bin/sh\necho hello\n"
        );
        assert_eq!(
            std::fs::read_link(out.join("usr/bin/hi")).unwrap(),
            Path::new("hello")
        );
    }
}

#[test]
fn md5sums_cover_regular_files_and_hard_links() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.deb");
    std::fs::write(&path, sample().build()).unwrap();
    let control = dir.path().join("control");
    let status = Command::new("dpkg-deb")
        .arg("-e")
        .arg(&path)
        .arg(&control)
        .status()
        .unwrap();
    assert!(status.success());
    let md5sums = std::fs::read_to_string(control.join("md5sums")).unwrap();
    assert_eq!(md5sums, sample().md5sums_text());
    let sums: HashMap<&str, &str> = md5sums
        .lines()
        .map(|l| {
            let (sum, path) = l.split_once("  ").unwrap();
            (path, sum)
        })
        .collect();
    assert_eq!(sums.len(), 4, "{md5sums}");
    let hello = format!("{:x}", Md5::digest(b"#!/bin/sh\necho hello\n"));
    assert_eq!(sums["usr/bin/hello"], hello);
    assert_eq!(sums["usr/bin/hello-again"], hello);
    assert!(!sums.contains_key("usr/bin/hi"));
}

#[test]
fn data_tar_lists_parents_first_in_given_order() {
    let deb = DebBuilder::new("p", "1", "all")
        .file("/usr/lib/a/b", 0o644, b"b")
        .dir("/usr/lib", 0o700)
        .file("/etc/z", 0o600, b"z")
        .build();
    let names: Vec<String> = tar_names(&data_tar(&deb))
        .into_iter()
        .map(|n| String::from_utf8(n).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "./",
            "./usr/",
            "./usr/lib/",
            "./usr/lib/a/",
            "./usr/lib/a/b",
            "./etc/",
            "./etc/z"
        ]
    );
    // The later explicit mode applies to the implicitly listed directory.
    let mut archive = tar::Archive::new(std::io::Cursor::new(data_tar(&deb)));
    let lib = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path_bytes().as_ref() == b"./usr/lib/")
        .unwrap();
    assert_eq!(lib.header().mode().unwrap(), 0o700);
}

#[test]
fn builds_are_byte_for_byte_reproducible() {
    for compression in Compression::ALL {
        assert_eq!(
            sample().compression(compression).build(),
            sample().compression(compression).build()
        );
    }
}

#[test]
fn raw_entries_keep_hostile_names() {
    let long = format!("./usr/share/{}", "d/".repeat(60)) + "file";
    let deb = DebBuilder::new("evil", "1", "amd64")
        .file("/usr/bin/ok", 0o755, b"ok")
        .raw_entry(RawEntry::file("./../etc/x", b"escape"))
        .raw_entry(RawEntry::file("/etc/abs", b"absolute"))
        .raw_entry(RawEntry::symlink("./usr/bin/out", "/../../etc/shadow"))
        .raw_entry(RawEntry::hardlink("./usr/bin/hl", "/etc/passwd"))
        .raw_entry(RawEntry::node(
            "./dev/null",
            EntryKind::CharDevice { major: 1, minor: 3 },
        ))
        .raw_entry(RawEntry::node("./run/fifo", EntryKind::Fifo))
        .raw_entry(RawEntry::file(&long, b"long"))
        .build();
    let tar_bytes = data_tar(&deb);
    let names = tar_names(&tar_bytes);
    for expected in [
        &b"./../etc/x"[..],
        b"/etc/abs",
        b"./usr/bin/out",
        long.as_bytes(),
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected:?} missing");
    }
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let kinds: Vec<(Vec<u8>, tar::EntryType, Option<Vec<u8>>)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path_bytes().into_owned(),
                e.header().entry_type(),
                e.link_name_bytes().map(|l| l.into_owned()),
            )
        })
        .collect();
    assert!(kinds.contains(&(
        b"./usr/bin/out".to_vec(),
        tar::EntryType::Symlink,
        Some(b"/../../etc/shadow".to_vec())
    )));
    assert!(kinds.contains(&(
        b"./usr/bin/hl".to_vec(),
        tar::EntryType::Link,
        Some(b"/etc/passwd".to_vec())
    )));
    assert!(
        kinds
            .iter()
            .any(|(n, t, _)| n == b"./dev/null" && *t == tar::EntryType::Char)
    );
    assert!(
        kinds
            .iter()
            .any(|(n, t, _)| n == b"./run/fifo" && *t == tar::EntryType::Fifo)
    );

    // dpkg-deb still reads the package; it is the unpacker's job to refuse it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.deb");
    std::fs::write(&path, &deb).unwrap();
    let contents = String::from_utf8(dpkg_deb(&["--contents"], &path).stdout).unwrap();
    assert!(contents.contains(&long), "{contents}");
    assert!(contents.contains("./../etc/x"), "{contents}");
}

#[test]
fn control_text_orders_fields_and_allows_removal() {
    let text = sample().control_text();
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split_once(':').unwrap().0)
        .collect();
    assert_eq!(
        keys,
        [
            "Package",
            "Source",
            "Version",
            "Architecture",
            "Maintainer",
            "Installed-Size",
            "Pre-Depends",
            "Depends",
            "Section",
            "Priority",
            "Multi-Arch",
            "X-Custom",
            "Description"
        ]
    );
    assert!(
        text.ends_with(" Built by plinth-testkit for offline tests.\n .\n Not a real package.\n")
    );
    let text = sample()
        .remove_field("Maintainer")
        .remove_field("Installed-Size")
        .field("Installed-Size", "99")
        .control_text();
    assert!(!text.contains("Maintainer:"));
    assert!(text.contains("\nInstalled-Size: 99\n"));
}

#[test]
fn control_members_and_mixed_compression() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.deb");
    let deb = DebBuilder::new("s", "1", "arm64")
        .control_compression(Compression::Gzip)
        .data_compression(Compression::Zstd)
        .control_member("postinst", 0o755, b"#!/bin/sh\nexit 0\n")
        .without_md5sums()
        .file("/x", 0o644, b"x")
        .build();
    std::fs::write(&path, deb).unwrap();
    let info = String::from_utf8(dpkg_deb(&["--info"], &path).stdout).unwrap();
    assert!(info.contains(" postinst"), "{info}");
    assert!(!info.contains(" md5sums"), "{info}");
}
