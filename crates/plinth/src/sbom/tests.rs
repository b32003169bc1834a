//! Tests of both formats through the public functions: shapes, ids,
//! licences, reproducibility, and the validators users run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cyclonedx::cdx_licenses;
use super::ids::{deb_purl, oci_purl};
use super::model::{deb_file_name, resolve_license_refs, split_maintainer};
use super::spdx::spdx_actor;
use super::*;
use crate::debian::copyright::{self, ExtractedLicense};
use crate::support::digest::sha256_hex;

#[test]
fn purls() {
    let p = PackageSbom {
        name: "libstdc++6".into(),
        version: "12.2.0-14+deb12u1".into(),
        arch: "amd64".into(),
        source: "gcc-12".into(),
        source_version: "12.2.0-14+deb12u1".into(),
        ..Default::default()
    };
    assert_eq!(
        deb_purl(&p, "debian-12"),
        "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12&upstream=gcc-12"
    );
    let z = PackageSbom {
        name: "zlib1g".into(),
        version: "1:1.2.13.dfsg-1".into(),
        arch: "amd64".into(),
        source: "zlib".into(),
        source_version: "1:1.2.13.dfsg-1".into(),
        ..Default::default()
    };
    assert_eq!(
        deb_purl(&z, "debian-12"),
        "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib"
    );
    assert_eq!(deb_file_name(&z), "zlib1g_1.2.13.dfsg-1_amd64.deb");
    let same = PackageSbom {
        name: "tzdata".into(),
        version: "2025b-0+deb12u2".into(),
        arch: "all".into(),
        source: "tzdata".into(),
        source_version: "2025b-0+deb12u2".into(),
        ..Default::default()
    };
    assert!(!deb_purl(&same, "debian-12").contains("upstream"));
    let bin_nmu = PackageSbom {
        source_version: "2025b-0".into(),
        ..same
    };
    assert!(deb_purl(&bin_nmu, "debian-12").ends_with("&upstream=tzdata%402025b-0"));
    let d = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        oci_purl(
            "cc-debian13",
            &d,
            Some("arm64"),
            Some("registry.example.org/org/"),
            "nonroot"
        ),
        format!(
            "pkg:oci/cc-debian13@{d}?arch=arm64&repository_url=registry.example.org/org/cc-debian13&tag=nonroot"
        )
    );
}

#[test]
fn maintainers() {
    assert_eq!(
        split_maintainer("GNU Libc Maintainers <debian-glibc@lists.example.org>"),
        (
            "GNU Libc Maintainers".to_owned(),
            Some("debian-glibc@lists.example.org".to_owned())
        )
    );
    assert_eq!(split_maintainer("Nobody"), ("Nobody".to_owned(), None));
    assert_eq!(split_maintainer("X <not an email>").1, None);
    assert_eq!(
        spdx_actor("Organization", "A (B) C", Some("a@b")).as_deref(),
        Some("Organization: A B C (a@b)")
    );
}

#[test]
fn conflicting_license_refs_are_renamed() {
    let mk = |text: &str| License {
        expression: Some("MIT AND LicenseRef-public-domain".into()),
        refs: vec![ExtractedLicense {
            id: "LicenseRef-public-domain".into(),
            name: "public-domain".into(),
            text: text.into(),
        }],
    };
    let (out, all) = resolve_license_refs(vec![mk("one"), mk("two"), mk("one")]);
    assert_eq!(all.len(), 2);
    assert_eq!(out[0], out[2]);
    assert_ne!(out[0].expression, out[1].expression);
    for l in &out {
        let e = l.expression.as_deref().unwrap();
        assert!(e.starts_with("MIT AND LicenseRef-public-domain-"), "{e}");
        assert!(e.contains(&l.refs[0].id));
    }
    let (out, all) = resolve_license_refs(vec![mk("same"), mk("same")]);
    assert_eq!(all.len(), 1);
    assert_eq!(
        out[0].expression.as_deref(),
        Some("MIT AND LicenseRef-public-domain")
    );
}

#[test]
fn cyclonedx_licence_forms() {
    let (c, e) = cdx_licenses(&License::from_declared("MIT"));
    assert!(e.is_none());
    assert!(serde_json::to_string(&c).unwrap().contains(r#""id":"MIT""#));
    let (c, _) = cdx_licenses(&License::from_declared("MIT OR Apache-2.0"));
    assert!(
        serde_json::to_string(&c)
            .unwrap()
            .contains(r#""expression":"MIT OR Apache-2.0""#)
    );
    let l = copyright::license_from_copyright(
        "p",
        Some(
            "Format: x\n\nFiles: *\nCopyright: a\nLicense: GPL-2+ with Autoconf exception or public-domain\n\n\
             License: public-domain\n Do what you like.\n",
        ),
    );
    let (c, e) = cdx_licenses(&l);
    assert_eq!(
        e.as_deref(),
        Some("GPL-2.0-or-later WITH Autoconf-exception-2.0 OR LicenseRef-public-domain")
    );
    let j = serde_json::to_string(&c).unwrap();
    assert!(
        j.contains(r#""name":"GPL-2.0-or-later WITH Autoconf-exception-2.0""#),
        "{j}"
    );
    assert!(j.contains(r#""content":"Do what you like.""#), "{j}");
    assert!(cdx_licenses(&License::no_assertion()).0.is_empty());
}

// -- A realistic image -------------------------------------------------

struct Fixture {
    layers: Vec<LayerSbom>,
    /// Manifest digest per platform.
    manifests: BTreeMap<&'static str, String>,
}

fn host_copyright(pkg: &str) -> Option<String> {
    std::fs::read(format!("/usr/share/doc/{pkg}/copyright"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn fake_sha256(s: &str) -> String {
    sha256_hex(s.as_bytes())
}

fn digest(s: &str) -> String {
    format!("sha256:{}", fake_sha256(s))
}

fn deb(name: &str, version: &str, arch: &str, source: &str, maint: &str) -> PackageSbom {
    PackageSbom {
        name: name.into(),
        version: version.into(),
        arch: arch.into(),
        source: source.into(),
        source_version: version.into(),
        maintainer: maint.into(),
        deb_sha256: fake_sha256(&format!("{name}_{version}_{arch}.deb")),
        copyright: host_copyright(name),
    }
}

fn fixture() -> Fixture {
    let glibc = "GNU Libc Maintainers <debian-glibc@lists.example.org>";
    let gcc = "Debian GCC Maintainers <debian-gcc@lists.example.org>";
    let passwd = b"root:x:0:0:root:/root:/sbin/nologin\n";
    let mut static_files = vec![
        GeneratedFile::new("/etc/passwd", passwd, None),
        GeneratedFile::new("/etc/group", b"root:x:0:\n", None),
        GeneratedFile::new("/usr/lib/os-release", b"ID=\"debian\"\n", None),
        GeneratedFile::new("/etc/nsswitch.conf", b"passwd: compat\n", None),
        GeneratedFile::new(
            "/etc/ssl/certs/ca-certificates.crt",
            b"-----BEGIN CERTIFICATE-----\n",
            Some("ca-certificates"),
        ),
    ];
    for p in [
        "base-files",
        "netbase",
        "tzdata",
        "ca-certificates",
        "media-types",
    ] {
        static_files.push(GeneratedFile::new(
            &format!("/var/lib/dpkg/status.d/{p}"),
            format!("Package: {p}\n").as_bytes(),
            Some(p),
        ));
    }
    let layers = vec![
        LayerSbom {
            digest: digest("layer0"),
            diff_id: digest("diff0"),
            packages: vec![
                deb(
                    "base-files",
                    "12.4+deb12u11",
                    "amd64",
                    "base-files",
                    "Santiago Vila <sanvila@example.org>",
                ),
                deb(
                    "netbase",
                    "6.4",
                    "all",
                    "netbase",
                    "Marco d'Itri <md@linux.it>",
                ),
                deb("tzdata", "2025b-0+deb12u2", "all", "tzdata", glibc),
                deb(
                    "ca-certificates",
                    "20230311+deb12u1",
                    "all",
                    "ca-certificates",
                    "Julien Cristau <jcristau@example.org>",
                ),
                deb(
                    "media-types",
                    "10.0.0",
                    "all",
                    "media-types",
                    "Mime-Support Packagers <team+debian-mimesupport-packagers@tracker.example.org>",
                ),
            ],
            files: static_files,
            components: Vec::new(),
        },
        LayerSbom {
            digest: digest("layer1"),
            diff_id: digest("diff1"),
            packages: vec![
                deb("libc6", "2.36-9+deb12u14", "amd64", "glibc", glibc),
                deb(
                    "libssl3",
                    "3.0.19-1~deb12u2",
                    "amd64",
                    "openssl",
                    "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>",
                ),
                deb(
                    "zlib1g",
                    "1:1.2.13.dfsg-1",
                    "amd64",
                    "zlib",
                    "Mark Brown <broonie@example.org>",
                ),
            ],
            files: vec![GeneratedFile::new(
                "/var/lib/dpkg/status.d/libc6",
                b"Package: libc6\n",
                Some("libc6"),
            )],
            components: Vec::new(),
        },
        LayerSbom {
            digest: digest("layer2"),
            diff_id: digest("diff2"),
            packages: vec![
                deb("libgcc-s1", "12.2.0-14+deb12u1", "amd64", "gcc-12", gcc),
                deb("libstdc++6", "12.2.0-14+deb12u1", "amd64", "gcc-12", gcc),
                deb("gcc-12-base", "12.2.0-14+deb12u1", "amd64", "gcc-12", gcc),
                // A package with no copyright file at all.
                PackageSbom {
                    copyright: None,
                    ..deb("libgomp1", "12.2.0-14+deb12u1", "amd64", "gcc-12", gcc)
                },
            ],
            files: Vec::new(),
            components: Vec::new(),
        },
        LayerSbom {
            digest: digest("layer3"),
            diff_id: digest("diff3"),
            packages: Vec::new(),
            files: vec![GeneratedFile::new("/app/server", b"\x7fELF", None)],
            components: vec![
                Component {
                    kind: ComponentKind::Library,
                    name: "serde".into(),
                    version: "1.0.219".into(),
                    purl: "pkg:cargo/serde@1.0.219".into(),
                    license: License::from_declared("MIT OR Apache-2.0"),
                    sha256: Some(fake_sha256("serde")),
                    supplier: Some("the organisation".into()),
                },
                Component {
                    kind: ComponentKind::Library,
                    name: "oldcrate".into(),
                    version: "0.1.0".into(),
                    purl: "pkg:cargo/oldcrate@0.1.0".into(),
                    license: License::from_declared("MIT/Apache-2.0"),
                    sha256: None,
                    supplier: None,
                },
                Component {
                    kind: ComponentKind::Library,
                    name: "weird".into(),
                    version: "2.0.0".into(),
                    purl: "pkg:cargo/weird@2.0.0".into(),
                    license: License::from_declared("Some Custom Licence"),
                    sha256: None,
                    supplier: None,
                },
            ],
        },
    ];
    let manifests = ["linux/amd64", "linux/arm64/v8"]
        .into_iter()
        .map(|p| (p, digest(&format!("manifest-{p}"))))
        .collect();
    Fixture { layers, manifests }
}

fn input<'a>(f: &'a Fixture, platform: &'static str) -> ImageSbomInput<'a> {
    ImageSbomInput {
        name: "cc-debian12",
        tag: "nonroot",
        platform,
        manifest_digest: &f.manifests[platform],
        epoch: 1_700_000_000,
        os: OsInfo {
            id: "debian".into(),
            version_id: "12".into(),
            version_codename: "bookworm".into(),
            pretty_name: "Distroless".into(),
            name: "Debian GNU/Linux".into(),
        },
        distro: "debian-12",
        repository: Some("registry.example.org/example"),
        base: Some(BaseRef {
            name: "base-debian12".into(),
            tag: "nonroot".into(),
            manifest_digest: digest("base-manifest"),
            layers: 2,
        }),
        layers: f.layers.clone(),
        tool: Tool {
            name: "plinth",
            version: "0.1.0",
        },
        namespace: DEFAULT_NAMESPACE,
    }
}

#[test]
fn byte_identical_and_order_independent() {
    let f = fixture();
    let a = input(&f, "linux/amd64");
    let s1 = spdx(&a).unwrap();
    let s2 = spdx(&a).unwrap();
    assert_eq!(s1, s2);
    let c1 = cyclonedx(&a).unwrap();
    assert_eq!(c1, cyclonedx(&a).unwrap());

    // Packages, files and components in another order: same bytes.
    let mut shuffled = input(&f, "linux/amd64");
    for l in &mut shuffled.layers {
        l.packages.reverse();
        l.files.reverse();
        l.components.reverse();
    }
    assert_eq!(spdx(&shuffled).unwrap(), s1);
    assert_eq!(cyclonedx(&shuffled).unwrap(), c1);

    // The id is derived from content: another epoch, another id.
    let mut later = input(&f, "linux/amd64");
    later.epoch += 1;
    assert_ne!(spdx(&later).unwrap().id, s1.id);
    assert_ne!(cyclonedx(&later).unwrap().id, c1.id);
    assert!(c1.id.starts_with("urn:uuid:"));
    assert_eq!(&c1.id[23..24], "8", "UUID version nibble");
}

fn deb_set(f: &Fixture) -> BTreeSet<(String, String)> {
    f.layers
        .iter()
        .flat_map(|l| &l.packages)
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect()
}

#[test]
fn package_lists_equal_the_input() {
    let f = fixture();
    let a = input(&f, "linux/amd64");
    let want = deb_set(&f);

    let doc: serde_json::Value = serde_json::from_slice(&spdx(&a).unwrap().json).unwrap();
    let got: BTreeSet<(String, String)> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|u| u.starts_with("pkg:deb/"))
        })
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["versionInfo"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, want);
    // Licences: NOASSERTION only where there is no copyright file.
    for p in doc["packages"].as_array().unwrap() {
        if p["name"] == "libgomp1" {
            assert_eq!(p["licenseDeclared"], "NOASSERTION");
        } else if p["externalRefs"][0]["referenceLocator"]
            .as_str()
            .is_some_and(|u| u.starts_with("pkg:deb/"))
        {
            assert_ne!(p["licenseDeclared"], "NOASSERTION", "{}", p["name"]);
        }
    }
    let files = doc["files"].as_array().unwrap();
    let n_files: usize = f.layers.iter().map(|l| l.files.len()).sum();
    assert_eq!(files.len(), n_files);

    let doc: serde_json::Value = serde_json::from_slice(&cyclonedx(&a).unwrap().json).unwrap();
    let mut got = BTreeSet::new();
    let mut crates = BTreeSet::new();
    fn walk(
        v: &serde_json::Value,
        debs: &mut BTreeSet<(String, String)>,
        crates: &mut BTreeSet<String>,
    ) {
        for c in v.as_array().into_iter().flatten() {
            let purl = c["purl"].as_str().unwrap_or("");
            if purl.starts_with("pkg:deb/") {
                debs.insert((
                    c["name"].as_str().unwrap().to_owned(),
                    c["version"].as_str().unwrap().to_owned(),
                ));
            } else if purl.starts_with("pkg:cargo/") {
                crates.insert(purl.to_owned());
            }
            walk(&c["components"], debs, crates);
        }
    }
    walk(&doc["components"], &mut got, &mut crates);
    assert_eq!(got, want);
    assert_eq!(crates.len(), 3);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let f = fixture();
    let mut a = input(&f, "linux/amd64");
    a.manifest_digest = "sha256:nothex";
    assert!(matches!(spdx(&a), Err(SbomError::BadDigest { .. })));
    let mut a = input(&f, "linux/amd64");
    let dup = a.layers[1].packages[0].clone();
    a.layers[2].packages.push(dup);
    assert!(matches!(cyclonedx(&a), Err(SbomError::DuplicatePackage(_))));
    let mut a = input(&f, "linux/amd64");
    let twice = GeneratedFile::new("/etc/passwd", b"other", None);
    a.layers[0].files.push(twice);
    assert!(matches!(spdx(&a), Err(SbomError::DuplicateFile(_))));
    let mut a = input(&f, "linux/amd64");
    let same = a.layers[0].files[0].clone();
    a.layers[0].files.push(same);
    assert!(spdx(&a).is_ok());
    let mut a = input(&f, "linux/amd64");
    a.layers[0].files[0].generated_from = Some("nope".into());
    assert!(matches!(
        spdx(&a),
        Err(SbomError::UnknownSourcePackage { .. })
    ));
    let mut a = input(&f, "linux/amd64");
    a.platform = "amd64";
    assert!(matches!(spdx(&a), Err(SbomError::BadPlatform(_))));
}

// -- External validators -----------------------------------------------

/// `PLINTH_VALIDATORS_VENV/bin/<name>`, else `<name>` on PATH.
fn find_tool(name: &str) -> Option<PathBuf> {
    if let Some(venv) = std::env::var_os("PLINTH_VALIDATORS_VENV") {
        let p = Path::new(&venv).join("bin").join(name);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The directory of CycloneDX schemas shipped in cyclonedx-python-lib,
/// asked of the Python next to check-jsonschema.
fn cyclonedx_schema_dir(check_jsonschema: &Path) -> Option<PathBuf> {
    let python = check_jsonschema.parent()?.join("python3");
    let out = Command::new(python)
        .args([
            "-c",
            "import os, cyclonedx.schema._res as r; print(os.path.dirname(r.__file__))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.join("bom-1.6.SNAPSHOT.schema.json")
        .is_file()
        .then_some(dir)
}

fn skip_or_fail(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("validators required under CI: {why}");
    }
    eprintln!(
        "skip: {why} (set PLINTH_VALIDATORS_VENV to a venv with spdx-tools, check-jsonschema and cyclonedx-python-lib)"
    );
}

#[test]
fn documents_pass_the_reference_validators() {
    let Some(pyspdxtools) = find_tool("pyspdxtools") else {
        return skip_or_fail("pyspdxtools not found");
    };
    let Some(check) = find_tool("check-jsonschema") else {
        return skip_or_fail("check-jsonschema not found");
    };
    let Some(schemas) = cyclonedx_schema_dir(&check) else {
        return skip_or_fail("cyclonedx-python-lib's schemas not found");
    };

    // PLINTH_SBOM_KEEP=DIR keeps the documents there for reading.
    let keep = std::env::var_os("PLINTH_SBOM_KEEP").map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("plinth-sbom-test-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).unwrap();
    let f = fixture();
    let mut images = Vec::new();
    for platform in ["linux/amd64", "linux/arm64/v8"] {
        let a = input(&f, platform);
        images.push((platform, a.manifest_digest, SbomPair::image(&a).unwrap()));
    }
    let idx_digest = digest("index");
    let entries: Vec<IndexEntry<'_>> = images
        .iter()
        .map(|(platform, digest, documents)| IndexEntry {
            platform,
            manifest_digest: digest,
            documents,
        })
        .collect();
    let idx = IndexSbomInput {
        name: "cc-debian12",
        tag: "nonroot",
        index_digest: &idx_digest,
        epoch: 1_700_000_000,
        repository: None,
        tool: Tool {
            name: "plinth",
            version: "0.1.0",
        },
        namespace: DEFAULT_NAMESPACE,
        images: entries,
    };
    let index_docs = SbomPair::index(&idx).unwrap();
    assert_eq!(index_docs, SbomPair::index(&idx).unwrap());
    let (spdx_index_doc, cdx_index_doc) = (index_docs.spdx, index_docs.cyclonedx);
    let spdx_docs: Vec<_> = images
        .iter()
        .map(|(p, d, s)| (*p, *d, s.spdx.clone()))
        .collect();
    let cdx_docs: Vec<_> = images
        .iter()
        .map(|(p, d, s)| (*p, *d, s.cyclonedx.clone()))
        .collect();

    let mut spdx_files = Vec::new();
    let mut cdx_files = Vec::new();
    for (i, (_, _, d)) in spdx_docs.iter().enumerate() {
        spdx_files.push((dir.join(format!("image-{i}.spdx.json")), d.json.clone()));
    }
    spdx_files.push((dir.join("index.spdx.json"), spdx_index_doc.json.clone()));
    for (i, (_, _, d)) in cdx_docs.iter().enumerate() {
        cdx_files.push((dir.join(format!("image-{i}.cdx.json")), d.json.clone()));
    }
    cdx_files.push((dir.join("index.cdx.json"), cdx_index_doc.json.clone()));

    for (path, bytes) in &spdx_files {
        std::fs::write(path, bytes).unwrap();
        let out = Command::new(&pyspdxtools)
            .arg("-i")
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pyspdxtools -i {}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let schema = schemas.join("bom-1.6.SNAPSHOT.schema.json");
    for (path, bytes) in &cdx_files {
        std::fs::write(path, bytes).unwrap();
        // The schema refers to spdx.SNAPSHOT.schema.json and
        // jsf-0.82.SNAPSHOT.schema.json by relative name: with the base
        // URI on the local file they resolve beside it, offline.
        let out = Command::new(&check)
            .arg("--base-uri")
            .arg(format!("file://{}", schema.display()))
            .arg("--schemafile")
            .arg(&schema)
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "check-jsonschema {}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if keep.is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// Every package documented on the host, with its real copyright file,
/// in one image, through both validators. About a minute; run on demand
/// with `cargo test -- --ignored`.
#[test]
#[ignore]
fn all_host_copyright_files_validate() {
    let pyspdxtools = find_tool("pyspdxtools").expect("pyspdxtools");
    let check = find_tool("check-jsonschema").expect("check-jsonschema");
    let schema = cyclonedx_schema_dir(&check)
        .expect("cyclonedx-python-lib schemas")
        .join("bom-1.6.SNAPSHOT.schema.json");
    let mut names: Vec<String> = std::fs::read_dir("/usr/share/doc")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let packages: Vec<PackageSbom> = names
        .iter()
        .filter_map(|n| {
            let text = std::fs::read(format!("/usr/share/doc/{n}/copyright")).ok()?;
            Some(PackageSbom {
                name: n.clone(),
                version: "1.0-1".into(),
                arch: "amd64".into(),
                source: n.clone(),
                source_version: "1.0-1".into(),
                maintainer: "Someone <someone@example.org>".into(),
                deb_sha256: sha256_hex(n.as_bytes()),
                copyright: Some(String::from_utf8_lossy(&text).into_owned()),
            })
        })
        .collect();
    let d = format!("sha256:{}", "ab".repeat(32));
    let input = ImageSbomInput {
        name: "host",
        tag: "latest",
        platform: "linux/amd64",
        manifest_digest: &d,
        epoch: 0,
        os: OsInfo::default(),
        distro: "debian-12",
        repository: None,
        base: None,
        layers: vec![LayerSbom {
            digest: d.clone(),
            diff_id: d.clone(),
            packages,
            files: Vec::new(),
            components: Vec::new(),
        }],
        tool: Tool {
            name: "plinth",
            version: "0.1.0",
        },
        namespace: DEFAULT_NAMESPACE,
    };
    let dir = std::env::temp_dir().join("plinth-host-sbom");
    std::fs::create_dir_all(&dir).unwrap();
    let s = dir.join("host.spdx.json");
    let c = dir.join("host.cdx.json");
    std::fs::write(&s, spdx(&input).unwrap().json).unwrap();
    std::fs::write(&c, cyclonedx(&input).unwrap().json).unwrap();
    let out = Command::new(&pyspdxtools)
        .arg("-i")
        .arg(&s)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&check)
        .arg("--base-uri")
        .arg(format!("file://{}", schema.display()))
        .arg("--schemafile")
        .arg(&schema)
        .arg(&c)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
