//! End-to-end proof of the SBOMs and of `cargo xtask verify`: every SBOM
//! passes the reference validators, lists exactly the packages whose
//! `status.d` records the image holds, and `verify` judges by the record:
//! a stale reference layout does not fail it, and a rebuild that differs
//! from the record is explained by layer and path against the reference.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use plinth::tarfs::EntryKind;

fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

/// One build shared by the tests of this file.
fn built() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let out = xtask()
            .args(["images", "--out"])
            .arg(&dir)
            .output()
            .expect("running xtask");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for repo in std::fs::read_dir(dir.join("sbom")).expect("sbom dir") {
        for f in std::fs::read_dir(repo.expect("entry").path()).expect("repo dir") {
            let p = f.expect("entry").path();
            if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every tag `lockfiles/digests.toml` records: what a full build makes.
fn recorded_tags() -> Vec<plinth::digests::TagSummary> {
    let lockfiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lockfiles");
    let path = plinth::digests::RecordedDigests::path(&lockfiles);
    plinth::digests::RecordedDigests::read(&path).unwrap().image
}

/// How many per-architecture SBOMs of each format a full build writes.
fn per_arch_documents() -> usize {
    recorded_tags().iter().map(|t| t.platform.len()).sum()
}

/// The validators' venv (`PLINTH_VALIDATORS_VENV`, as `.ci/run` sets it).
fn validators() -> Option<PathBuf> {
    let venv = std::env::var_os("PLINTH_VALIDATORS_VENV").map(PathBuf::from)?;
    venv.join("bin/pyspdxtools").exists().then_some(venv)
}

#[test]
fn every_sbom_passes_the_reference_validators() {
    let Some(venv) = validators() else {
        support::skip(
            "PLINTH_VALIDATORS_VENV does not point at a venv with spdx-tools and check-jsonschema",
        );
        return;
    };
    let out = built();
    let spdx = files_with_suffix(out, ".spdx.json");
    let cdx = files_with_suffix(out, ".cdx.json");
    // One per architecture and one for the index, per recorded tag (96
    // for the 32 golden tags alone).
    let expected = per_arch_documents() + recorded_tags().len();
    assert!(expected >= 96, "{expected}");
    assert_eq!(spdx.len(), expected);
    assert_eq!(cdx.len(), expected);

    // The command-line tool once, then the same parser and validator for
    // every document in one process (pyspdxtools starts in about a second).
    let one = Command::new(venv.join("bin/pyspdxtools"))
        .arg("-i")
        .arg(&spdx[0])
        .output()
        .unwrap();
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stdout)
    );
    let script = "import sys\n\
from spdx_tools.spdx.parser.parse_anything import parse_file\n\
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document\n\
bad = [(f, m) for f in sys.argv[1:] for m in validate_full_spdx_document(parse_file(f))]\n\
[print(f, m.validation_message) for f, m in bad[:20]]\n\
sys.exit(1 if bad else 0)\n";
    let all = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(script)
        .args(&spdx)
        .output()
        .unwrap();
    assert!(
        all.status.success(),
        "{}{}",
        String::from_utf8_lossy(&all.stdout),
        String::from_utf8_lossy(&all.stderr)
    );

    let schema_dir = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import os, cyclonedx.schema._res as r; print(os.path.dirname(r.__file__))",
        ])
        .output()
        .unwrap();
    let schema_dir = String::from_utf8(schema_dir.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let schema = format!("{schema_dir}/bom-1.6.SNAPSHOT.schema.json");
    let check = Command::new(venv.join("bin/check-jsonschema"))
        .args([
            "--base-uri",
            &format!("file://{schema}"),
            "--schemafile",
            &schema,
        ])
        .args(&cdx)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// name → version of the Debian packages an SPDX document lists.
fn sbom_packages(path: &Path) -> BTreeMap<String, String> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for p in doc["packages"].as_array().unwrap() {
        let is_deb = p["externalRefs"].as_array().into_iter().flatten().any(|r| {
            r["referenceLocator"]
                .as_str()
                .is_some_and(|l| l.starts_with("pkg:deb/"))
        });
        if is_deb {
            out.insert(
                p["name"].as_str().unwrap().to_owned(),
                p["versionInfo"].as_str().unwrap().to_owned(),
            );
        }
    }
    out
}

/// name → version of the `status.d` records in an image's layers.
fn status_d_packages(layout: &Path, tag: &str) -> BTreeMap<String, String> {
    let index = plinth::oci::read_layout(layout).unwrap();
    let desc = index
        .find_ref(tag)
        .unwrap_or_else(|| panic!("{}: no tag {tag}", layout.display()));
    let manifest: plinth::oci::Manifest = plinth::oci::read_json(layout, desc).unwrap();
    let mut out = BTreeMap::new();
    for layer in &manifest.layers {
        let blob = plinth::oci::read_blob(layout, &layer.digest).unwrap();
        for e in plinth::layer::read_layer(&blob, &plinth::tarfs::TarLimits::NONE).unwrap() {
            let Some(name) = e.path.strip_prefix("var/lib/dpkg/status.d/") else {
                continue;
            };
            let EntryKind::File(bytes) = &e.kind else {
                continue;
            };
            if name.ends_with(".md5sums") {
                continue;
            }
            let text = String::from_utf8_lossy(bytes);
            assert!(text.contains("\nStatus: install ok installed\n"), "{name}");
            let version = text
                .lines()
                .find_map(|l| l.strip_prefix("Version: "))
                .unwrap();
            out.insert(name.to_owned(), version.to_owned());
        }
    }
    out
}

#[test]
fn sbom_packages_are_exactly_the_status_d_records() {
    let out = built();
    let mut checked = 0;
    for spdx in files_with_suffix(out, ".spdx.json") {
        let file = spdx.file_name().unwrap().to_string_lossy().into_owned();
        let Some(tag) = file
            .strip_suffix(".spdx.json")
            .filter(|t| t.ends_with("-amd64") || t.ends_with("-arm64"))
        else {
            continue;
        };
        let repo = spdx.parent().unwrap().file_name().unwrap();
        let from_image = status_d_packages(&out.join(repo), tag);
        assert!(!from_image.is_empty());
        assert_eq!(sbom_packages(&spdx), from_image, "{}", spdx.display());
        checked += 1;
    }
    assert_eq!(checked, per_arch_documents());
}

/// A copy of `static-debian13` whose bottom layer of `latest-amd64` has
/// three entries changed in place, under the same blob name, as a
/// tampered or mis-built layout (or another branch's build) would be.
/// Returns the directory holding the copy and the layer's epoch.
fn tampered_reference() -> (tempfile::TempDir, u64) {
    let out = built();
    let copy = tempfile::tempdir().unwrap();
    let repo = "static-debian13";
    let status = Command::new("cp")
        .arg("-a")
        .arg(out.join(repo))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let layout = copy.path().join(repo);
    let index = plinth::oci::read_layout(&layout).unwrap();
    let manifest: plinth::oci::Manifest =
        plinth::oci::read_json(&layout, index.find_ref("latest-amd64").unwrap()).unwrap();
    let digest = &manifest.layers[0].digest;
    let blob_path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut entries = plinth::layer::read_layer(
        &std::fs::read(&blob_path).unwrap(),
        &plinth::tarfs::TarLimits::NONE,
    )
    .unwrap();
    let epoch = entries.iter().map(|e| e.mtime).max().unwrap();
    for e in &mut entries {
        match e.path.as_str() {
            "etc/passwd" => e.mode = 0o600,
            "etc/group" => e.kind = EntryKind::File(b"root:x:0:\n"[..].into()),
            "etc/nsswitch.conf" => e.mtime = epoch - 1000,
            _ => {}
        }
    }
    let tampered = plinth::layer::write_layer(&entries, epoch).unwrap();
    std::fs::write(&blob_path, &tampered.blob).unwrap();
    (copy, epoch)
}

#[test]
fn verify_judges_by_the_record_not_by_a_stale_reference() {
    let (copy, _) = tampered_reference();
    let run = xtask()
        .arg("verify")
        .arg("--against")
        .arg(copy.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "verify failed though the rebuild matches the record:\n{stderr}"
    );
    assert!(!stderr.contains("layer 1"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("match lockfiles/digests.toml"),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
}

#[test]
fn verify_explains_a_mismatch_with_the_record_by_layer_and_path() {
    let (copy, epoch) = tampered_reference();
    // A project whose record of static-debian13:latest (amd64) is wrong.
    let project = tempfile::tempdir().unwrap();
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["images", "keys", "lockfiles"] {
        let status = Command::new("cp")
            .arg("-a")
            .arg(repo_root.join(dir))
            .arg(project.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let record = plinth::digests::RecordedDigests::path(&project.path().join("lockfiles"));
    let mut recorded = plinth::digests::RecordedDigests::read(&record).unwrap();
    let tag = recorded
        .image
        .iter_mut()
        .find(|t| t.repository == "static-debian13" && t.tag == "latest")
        .unwrap();
    let amd64 = tag
        .platform
        .iter_mut()
        .find(|p| p.architecture == "amd64")
        .unwrap();
    amd64.manifest = format!("sha256:{}", "0".repeat(64));
    recorded.write(&record).unwrap();

    let run = xtask()
        .arg("--project")
        .arg(project.path())
        .arg("verify")
        .arg("--against")
        .arg(copy.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success(),
        "verify passed against a wrong record:\n{stderr}"
    );
    assert!(
        stderr.contains("static-debian13:latest (amd64): manifest digest sha256:"),
        "{stderr}"
    );
    let prefix = "static-debian13:latest (amd64): layer 1";
    let line = |path: &str| {
        stderr
            .lines()
            .find(|l| l.starts_with(prefix) && l.contains(path))
            .unwrap_or_else(|| panic!("no line for {path} in:\n{stderr}"))
            .to_owned()
    };
    assert!(line("/etc/passwd:").contains("mode 0644 (reference 0600)"));
    assert!(line("/etc/group:").contains("content file sha256:"));
    assert!(
        line("/etc/nsswitch.conf:")
            .contains(&format!("mtime {epoch} (reference {})", epoch - 1000))
    );
    let others: BTreeSet<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter(|l| {
            !["/etc/passwd:", "/etc/group:", "/etc/nsswitch.conf:"]
                .iter()
                .any(|p| l.contains(p))
        })
        .collect();
    assert!(others.is_empty(), "unexpected differences: {others:?}");
    // Only the image the record disagrees with is explained.
    assert!(
        !stderr.contains("static-debian13:latest (arm64)"),
        "{stderr}"
    );
}
