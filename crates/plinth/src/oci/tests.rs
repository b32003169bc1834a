//! Tests of the model's bytes, the layout writer and the reader.

use std::collections::BTreeMap;
use std::fs::{self, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::blob::digest_hex;
use super::*;
use crate::support::digest::sha256_digest;
use crate::support::time::rfc3339;

const EPOCH: u64 = 1_795_252_544; // 2026-11-21T09:15:44Z

/// A real one-file gzip tar layer, built the deterministic way, with its
/// diff_id (the digest of the uncompressed tar).
fn tiny_layer() -> (Blob, String) {
    let content = b"hello from plinth\n";
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(EPOCH);
    header.set_size(content.len() as u64);
    builder
        .append_data(&mut header, "hello.txt", &content[..])
        .unwrap();
    let tar_bytes = builder.into_inner().unwrap();
    let diff_id = sha256_digest(&tar_bytes);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar_bytes).unwrap();
    (
        Blob::new(MEDIA_TYPE_LAYER_GZIP, gz.finish().unwrap()),
        diff_id,
    )
}

fn config_for(platform: &Platform, diff_id: &str) -> ImageConfig {
    let created = rfc3339(EPOCH).unwrap();
    ImageConfig {
        created: Some(created.clone()),
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: ContainerConfig {
            user: Some("65532".into()),
            env: vec!["PATH=/usr/bin:/bin".into()],
            working_dir: Some("/home/nonroot".into()),
            ..ContainerConfig::default()
        },
        rootfs: RootFs::layers(vec![diff_id.to_owned()]),
        history: vec![History {
            created: Some(created),
            created_by: Some("plinth".into()),
            ..History::default()
        }],
    }
}

/// Writes a multi-arch image tagged `tag` plus an SBOM referrer of its
/// amd64 manifest; returns the index.json written and the image index.
fn write_sample(dir: &Path, tag: &str) -> (Index, Blob) {
    let (layer, diff_id) = tiny_layer();
    let mut writer = LayoutWriter::create(dir).unwrap();
    writer.add(&layer).unwrap();
    let mut per_arch = Vec::new();
    for arch in ["amd64", "arm64"] {
        let platform = Platform::from_debian_arch(arch).unwrap();
        let config = writer
            .add_json(MEDIA_TYPE_IMAGE_CONFIG, &config_for(&platform, &diff_id))
            .unwrap();
        let manifest = Manifest::image(config, vec![layer.descriptor.clone()]);
        let desc = writer
            .add_json(MEDIA_TYPE_IMAGE_MANIFEST, &manifest)
            .unwrap();
        per_arch.push(desc.with_platform(platform));
    }
    let image_index = Blob::json(MEDIA_TYPE_IMAGE_INDEX, &Index::new(per_arch.clone())).unwrap();
    writer.add(&image_index).unwrap();

    let sbom = Blob::new(
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec(),
    );
    writer.add(&sbom).unwrap();
    writer.add_blob(EMPTY_DIGEST, EMPTY_BLOB).unwrap();
    let artifact = Manifest::artifact(
        "application/spdx+json",
        vec![sbom.descriptor.clone()],
        per_arch[0].clone(),
    );
    let artifact_desc = writer
        .add_json(MEDIA_TYPE_IMAGE_MANIFEST, &artifact)
        .unwrap()
        .with_artifact_type("application/spdx+json");

    let top = Index::new(vec![
        image_index
            .descriptor
            .clone()
            .with_annotation(ANNOTATION_REF_NAME, tag),
        artifact_desc,
    ]);
    writer.finish(&top).unwrap();
    (top, image_index)
}

/// Every entry under `dir`: relative path, mode bits, file bytes.
fn tree(dir: &Path) -> Vec<(String, u32, Option<Vec<u8>>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u32, Option<Vec<u8>>)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.push((rel, mode, None));
                walk(root, &path, out);
            } else {
                out.push((rel, mode, Some(fs::read(&path).unwrap())));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn digest_of(byte: u8) -> String {
    format!("sha256:{}", format!("{byte:02x}").repeat(32))
}

#[test]
fn config_json_bytes_are_pinned() {
    let mut config = config_for(
        &Platform::from_debian_arch("arm64").unwrap(),
        &digest_of(0xab),
    );
    config.config.entrypoint = Some(vec!["/busybox/sh".into()]);
    config.config.cmd = Some(vec![]);
    config.config.labels.insert("z".into(), "1".into());
    config.config.labels.insert("a".into(), "2".into());
    config
        .config
        .exposed_ports
        .insert("8080/tcp".into(), Empty {});
    config
        .config
        .exposed_ports
        .insert("443/tcp".into(), Empty {});
    config.history.push(History {
        comment: Some("busybox".into()),
        empty_layer: true,
        ..History::default()
    });
    let expected = concat!(
        r#"{"created":"2026-11-21T09:15:44Z","architecture":"arm64","os":"linux","variant":"v8","#,
        r#""config":{"User":"65532","Env":["PATH=/usr/bin:/bin"],"Entrypoint":["/busybox/sh"],"#,
        r#""Cmd":[],"WorkingDir":"/home/nonroot","Labels":{"a":"2","z":"1"},"#,
        r#""ExposedPorts":{"443/tcp":{},"8080/tcp":{}}},"#,
        r#""rootfs":{"type":"layers","diff_ids":["sha256:"#,
        "abababababababababababababababababababababababababababababababab",
        r#""]},"history":[{"created":"2026-11-21T09:15:44Z","created_by":"plinth"},"#,
        r#"{"comment":"busybox","empty_layer":true}]}"#
    );
    let bytes = json_bytes(&config).unwrap();
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
    let back: ImageConfig = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, config);
}

#[test]
fn minimal_config_keeps_required_keys_only() {
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..ImageConfig::default()
    };
    assert_eq!(
        String::from_utf8(json_bytes(&config).unwrap()).unwrap(),
        r#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#
    );
}

#[test]
fn manifest_and_index_json_bytes_are_pinned() {
    let config = Descriptor {
        media_type: MEDIA_TYPE_IMAGE_CONFIG.into(),
        digest: digest_of(1),
        size: 10,
        platform: None,
        annotations: BTreeMap::new(),
        artifact_type: None,
    };
    let layer = Descriptor {
        media_type: MEDIA_TYPE_LAYER_GZIP.into(),
        digest: digest_of(2),
        size: 20,
        ..config.clone()
    };
    let mut manifest = Manifest::image(config, vec![layer]);
    manifest
        .annotations
        .insert(ANNOTATION_SOURCE.into(), "https://example.org/r".into());
    manifest
        .annotations
        .insert(ANNOTATION_BASE_NAME.into(), "static".into());
    let d1 = digest_of(1);
    let d2 = digest_of(2);
    assert_eq!(
        String::from_utf8(json_bytes(&manifest).unwrap()).unwrap(),
        format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d1}","size":10}},"#,
                r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d2}","size":20}}],"#,
                r#""annotations":{{"org.opencontainers.image.base.name":"static","#,
                r#""org.opencontainers.image.source":"https://example.org/r"}}}}"#
            ),
            d1 = d1,
            d2 = d2
        )
    );

    let entry = Descriptor {
        media_type: MEDIA_TYPE_IMAGE_MANIFEST.into(),
        digest: digest_of(3),
        size: 30,
        platform: Platform::from_debian_arch("arm64"),
        annotations: BTreeMap::new(),
        artifact_type: None,
    };
    let tagged = Descriptor {
        media_type: MEDIA_TYPE_IMAGE_INDEX.into(),
        platform: None,
        ..entry.clone()
    }
    .with_annotation(ANNOTATION_REF_NAME, "nonroot");
    let d3 = digest_of(3);
    assert_eq!(
        String::from_utf8(json_bytes(&Index::new(vec![entry, tagged])).unwrap()).unwrap(),
        format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#,
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d3}","size":30,"#,
                r#""platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},"#,
                r#"{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{d3}","size":30,"#,
                r#""annotations":{{"org.opencontainers.image.ref.name":"nonroot"}}}}]}}"#
            ),
            d3 = d3
        )
    );
}

#[test]
fn artifact_manifest_json_bytes_are_pinned() {
    let subject = Descriptor {
        media_type: MEDIA_TYPE_IMAGE_MANIFEST.into(),
        digest: digest_of(4),
        size: 40,
        platform: None,
        annotations: BTreeMap::new(),
        artifact_type: None,
    };
    let sbom = Descriptor {
        media_type: "application/spdx+json".into(),
        digest: digest_of(5),
        size: 50,
        ..subject.clone()
    };
    let manifest = Manifest::artifact("application/spdx+json", vec![sbom], subject);
    let (d4, d5) = (digest_of(4), digest_of(5));
    assert_eq!(
        String::from_utf8(json_bytes(&manifest).unwrap()).unwrap(),
        format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""artifactType":"application/spdx+json","#,
                r#""config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"#,
                r#""layers":[{{"mediaType":"application/spdx+json","digest":"{d5}","size":50}}],"#,
                r#""subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d4}","size":40}}}}"#
            ),
            empty = EMPTY_DIGEST,
            d4 = d4,
            d5 = d5
        )
    );
}

#[test]
fn empty_blob_matches_the_spec() {
    assert_eq!(sha256_digest(EMPTY_BLOB), EMPTY_DIGEST);
    let d = Descriptor::empty();
    assert_eq!((d.digest.as_str(), d.size), (EMPTY_DIGEST, 2));
    assert_eq!(d.media_type, MEDIA_TYPE_EMPTY);
}

#[test]
fn platforms_follow_oci_names() {
    let arm64 = Platform::from_debian_arch("arm64").unwrap();
    assert_eq!(
        (arm64.architecture.as_str(), arm64.variant.as_deref()),
        ("arm64", Some("v8"))
    );
    let amd64 = Platform::from_debian_arch("amd64").unwrap();
    assert_eq!(amd64.variant, None);
    assert_eq!(
        Platform::from_debian_arch("ppc64el").unwrap().architecture,
        "ppc64le"
    );
    assert_eq!(Platform::from_debian_arch("vax"), None);
    for arch in ["amd64", "arm64", "armhf", "armel", "riscv64", "ppc64el"] {
        let platform = Platform::from_debian_arch(arch).unwrap();
        assert_eq!(platform.debian_arch(), Some(arch), "{platform}");
    }
    let plain_arm64 = Platform {
        variant: None,
        ..arm64.clone()
    };
    assert_eq!(plain_arm64.debian_arch(), Some("arm64"));
    let windows = Platform {
        os: "windows".into(),
        ..amd64
    };
    assert_eq!(windows.debian_arch(), None);
}

#[test]
fn digests_are_checked_strictly() {
    for bad in [
        "",
        "sha256:",
        "sha512:00",
        "sha256:../../../../etc/passwd",
        &digest_of(0xab).to_uppercase(),
        &format!("{}0", digest_of(1)),
        &digest_of(1).replace("sha256:", "SHA256:"),
    ] {
        assert!(
            matches!(digest_hex(bad), Err(OciError::InvalidDigest { .. })),
            "{bad:?} accepted"
        );
    }
    assert!(digest_hex(&digest_of(0xab)).is_ok());
}

#[test]
fn layout_written_twice_is_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a").join("static-debian13");
    let b = tmp.path().join("b").join("static-debian13");
    write_sample(&a, "latest");
    write_sample(&b, "latest");
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta, tb);
    assert!(ta.iter().any(|(p, _, _)| p == "index.json"));
    assert_eq!(
        fs::read(a.join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    for (path, mode, bytes) in &ta {
        let want = if bytes.is_some() { 0o644 } else { 0o755 };
        assert_eq!(*mode, want, "{path}");
    }
    assert_eq!(
        fs::metadata(&a).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    // Nothing but the layout is left beside it.
    assert_eq!(names(&tmp.path().join("a")), ["static-debian13"]);
}

#[test]
fn layout_reads_back_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let (top, image_index) = write_sample(&dir, "nonroot");
    assert_eq!(read_layout(&dir).unwrap(), top);
    let found = top.find_ref("nonroot").unwrap();
    let index: Index = read_json(&dir, found).unwrap();
    assert_eq!(json_bytes(&index).unwrap(), image_index.bytes);
    for desc in &index.manifests {
        let manifest: Manifest = read_json(&dir, desc).unwrap();
        let config: ImageConfig = read_json(&dir, &manifest.config).unwrap();
        let platform = desc.platform.as_ref().unwrap();
        assert_eq!(config.architecture, platform.architecture);
        assert_eq!(config.variant, platform.variant);
        read_described(&dir, &manifest.layers[0]).unwrap();
    }
    assert!(top.find_ref("latest").is_none());

    // A corrupted blob is caught on the way out.
    let layer = tiny_layer().0.descriptor;
    let path = dir
        .join("blobs/sha256")
        .join(digest_hex(&layer.digest).unwrap());
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, bytes).unwrap();
    let err = read_blob(&dir, &layer.digest).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn finish_replaces_an_existing_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cc-debian12");
    write_sample(&dir, "latest");
    fs::write(dir.join("stray"), b"from the old layout").unwrap();
    let (top, _) = write_sample(&dir, "debug");
    assert_eq!(read_layout(&dir).unwrap(), top);
    assert!(!dir.join("stray").exists());
    assert_eq!(names(tmp.path()), ["cc-debian12"]);
}

#[test]
fn dropped_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let mut writer = LayoutWriter::create(&dir).unwrap();
    let layer = tiny_layer().0;
    writer.add(&layer).unwrap();
    writer.add(&layer).unwrap();
    assert!(writer.add_blob(&layer.descriptor.digest, b"other").is_err());
    let err = writer.add_blob(&digest_of(7), b"not that").unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("img/blobs/sha256/0707"), "{err}");
    drop(writer);
    assert!(names(tmp.path()).is_empty());
}

#[test]
fn failed_finish_keeps_the_old_layout_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    write_sample(&dir, "latest");
    let before = tree(&dir);

    // An index naming a blob that was never added.
    let writer = LayoutWriter::create(&dir).unwrap();
    let missing = descriptor_for(MEDIA_TYPE_IMAGE_MANIFEST, b"{}");
    let err = writer.finish(&Index::new(vec![missing])).unwrap_err();
    assert!(matches!(err, OciError::MissingBlob { .. }), "{err}");

    // A blob whose size disagrees with its descriptor.
    let mut writer = LayoutWriter::create(&dir).unwrap();
    let layer = tiny_layer().0;
    writer.add(&layer).unwrap();
    let mut wrong = layer.descriptor.clone();
    wrong.size += 1;
    let manifest = writer
        .add_json(
            MEDIA_TYPE_IMAGE_MANIFEST,
            &Manifest::image(wrong.clone(), vec![]),
        )
        .unwrap();
    let err = writer.finish(&Index::new(vec![manifest])).unwrap_err();
    assert!(matches!(err, OciError::SizeMismatch { .. }), "{err}");

    assert_eq!(tree(&dir), before);
    assert_eq!(names(tmp.path()), ["img"]);
}

#[test]
fn finish_onto_a_file_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("img");
    fs::write(&path, b"not a layout").unwrap();
    let mut writer = LayoutWriter::create(&path).unwrap();
    writer.add(&tiny_layer().0).unwrap();
    let err = writer.finish(&Index::new(vec![])).unwrap_err();
    assert!(matches!(err, OciError::Io { .. }), "{err}");
    assert!(err.to_string().contains("img"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"not a layout");
    assert_eq!(names(tmp.path()), ["img"]);
}

#[test]
fn layout_paths_without_a_name_are_refused() {
    for path in ["/", "..", "a/.."] {
        assert!(matches!(
            LayoutWriter::create(Path::new(path)),
            Err(OciError::BadLayoutPath { .. })
        ));
    }
}

#[test]
fn blob_files_are_linked_or_copied_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let (layer, _) = tiny_layer();
    let cached = tmp.path().join("cached");
    fs::write(&cached, &layer.bytes).unwrap();
    let odd_mode = tmp.path().join("odd-mode");
    fs::write(&odd_mode, EMPTY_BLOB).unwrap();
    fs::set_permissions(&odd_mode, Permissions::from_mode(0o600)).unwrap();
    let wrong = tmp.path().join("wrong");
    fs::write(&wrong, b"something else").unwrap();

    for mode in [0o644, 0o444] {
        fs::set_permissions(&cached, Permissions::from_mode(mode)).unwrap();
        let dir = tmp.path().join(format!("out-{mode:o}"));
        let mut writer = LayoutWriter::create(&dir).unwrap();
        writer
            .add_blob_file(&layer.descriptor.digest, &cached)
            .unwrap();
        writer.add_blob_file(EMPTY_DIGEST, &odd_mode).unwrap();
        let err = writer.add_blob_file(&digest_of(9), &wrong).unwrap_err();
        assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
        // The failed blob left no file behind, so a retry with the right
        // content works.
        writer.add_blob_file(&digest_of(9), &wrong).unwrap_err();
        writer.finish(&Index::new(vec![])).unwrap();
        assert_eq!(
            read_blob(&dir, &layer.descriptor.digest).unwrap(),
            layer.bytes
        );
        assert_eq!(read_blob(&dir, EMPTY_DIGEST).unwrap(), EMPTY_BLOB);
        for (path, m, _) in tree(&dir) {
            let want = if path.starts_with("blobs/sha256/") || !path.starts_with("blobs") {
                0o644
            } else {
                0o755
            };
            assert_eq!(m, want, "{path}");
        }
        assert_eq!(names(&dir.join("blobs/sha256")).len(), 2);
    }
    // Sources keep their own modes.
    assert_eq!(
        fs::metadata(&cached).unwrap().permissions().mode() & 0o7777,
        0o444
    );
    assert_eq!(
        fs::metadata(&odd_mode).unwrap().permissions().mode() & 0o7777,
        0o600
    );
}

fn skopeo_available() -> bool {
    match Command::new("skopeo").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        other => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(!ci, "skopeo is required in CI: {other:?}");
            eprintln!("skipped: skopeo not found ({other:?})");
            false
        }
    }
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn skopeo_reads_a_multi_arch_tag() {
    if !skopeo_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("static-debian13");
    let (_, image_index) = write_sample(&dir, "nonroot");
    let reference = format!("oci:{}:nonroot", dir.display());

    let raw = skopeo(&["inspect", "--raw", &reference]);
    assert_eq!(raw, image_index.bytes);
    let index: Index = serde_json::from_slice(&raw).unwrap();

    for (entry, (arch, variant)) in index.manifests.iter().zip([("amd64", ""), ("arm64", "v8")]) {
        let mut args = vec!["--override-os", "linux", "--override-arch", arch];
        if !variant.is_empty() {
            args.extend(["--override-variant", variant]);
        }
        args.extend(["inspect", &reference]);
        let out: serde_json::Value = serde_json::from_slice(&skopeo(&args)).unwrap();
        // skopeo reports the digest of what the tag names (the image
        // index), not of the per-platform manifest it chose.
        assert_eq!(
            out["Digest"],
            image_index.descriptor.digest.as_str(),
            "{out}"
        );
        assert_eq!(out["Architecture"], arch, "{out}");
        assert_eq!(out["Os"], "linux", "{out}");
        assert_eq!(out["Created"], "2026-11-21T09:15:44Z", "{out}");
        assert_eq!(out["Layers"][0], tiny_layer().0.descriptor.digest.as_str());

        // The exact config bytes show which manifest skopeo chose.
        let manifest: Manifest = read_json(&dir, entry).unwrap();
        args.splice(args.len() - 1..args.len() - 1, ["--config", "--raw"]);
        assert_eq!(
            skopeo(&args),
            read_described(&dir, &manifest.config).unwrap(),
            "{arch}"
        );
    }

    // Copying every platform reads every blob and must keep the digests.
    let copy = tmp.path().join("copy");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        &reference,
        &format!("oci:{}:nonroot", copy.display()),
    ]);
    let copied = read_layout(&copy).unwrap();
    assert_eq!(
        copied.find_ref("nonroot").unwrap().digest,
        image_index.descriptor.digest
    );
}
