//! End-to-end tests of `publish --sign`, `verify --published` and `keygen`
//! (issue 14) against Debian's `docker-registry` on loopback.
//!
//! What plinth signs is checked by verifiers that are not plinth's code:
//! `verifiers/python/verify_legacy.py` (cosign's legacy `.sig` format,
//! written from cosign's signature spec, ECDSA through PyPI
//! `cryptography`) and `verifiers/node/verify_bundle.mjs` (sigstore-js,
//! `@sigstore/verify`, for the bundles and the `.att` DSSE envelopes).
//! Both read the registry themselves. `.ci/run` installs them from their
//! lockfiles into `target/ci-verifiers` (or `PLINTH_VERIFIERS_DIR`).
//!
//! The images are built once per test process into a scratch directory
//! (`--out`); only `static-debian13` and the `hello-server` application
//! image are published, which covers golden and application provenance.
//!
//! Tools: docker-registry, python3 venv with cryptography, node with
//! sigstore-js. A missing tool skips a test with a printed reason, except
//! under `CI=true`, where it is a failure.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use plinth::digests::{RecordedDigests, TagSummary};
use plinth::oci::{self, Manifest};
use plinth::registry::{Client, ClientOptions, Target};
use support::Registry;

const PREFIX: &str = "golden";
const SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
const SPDX: &str = "https://spdx.dev/Document";
const CYCLONEDX: &str = "https://cyclonedx.org/bom";
const SLSA: &str = "https://slsa.dev/provenance/v1";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| support::scratch_for("signing-e2e"))
}

fn recorded() -> &'static RecordedDigests {
    static R: OnceLock<RecordedDigests> = OnceLock::new();
    R.get_or_init(|| {
        RecordedDigests::read(&RecordedDigests::path(&root().join("lockfiles")))
            .expect("read lockfiles/digests.toml")
    })
}

fn tag(repository: &str, tag: &str) -> &'static TagSummary {
    recorded()
        .image
        .iter()
        .find(|t| t.repository == repository && t.tag == tag)
        .unwrap_or_else(|| panic!("{repository}:{tag} is not recorded"))
}

/// The xtask binary with no registry or signing secrets from the caller.
fn xtask(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("PLINTH_REGISTRY_USERNAME")
        .env_remove("PLINTH_REGISTRY_PASSWORD")
        .env_remove("PLINTH_SIGNING_PASSWORD")
        .env_remove("RUST_LOG")
        .env("DOCKER_CONFIG", scratch().join("no-docker-config"));
    cmd
}

/// `static` and `hello-server`, built once per test process.
fn built() -> &'static Path {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = scratch().join("images");
        support::output(&mut xtask(&[
            "images",
            "static",
            "hello-server",
            "--out",
            out.to_str().expect("UTF-8"),
        ]))?;
        Ok(out)
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("the shared build failed: {e}"))
}

fn target(registry: &Registry) -> String {
    format!("{}/{PREFIX}", registry.host())
}

/// `xtask publish --registry HOST/golden --insecure --out BUILT ARGS...`.
fn publish(registry: &Registry, args: &[&str]) -> Command {
    let out = built().to_str().expect("UTF-8").to_owned();
    let target = target(registry);
    let mut cmd = xtask(&[
        "publish",
        "--registry",
        &target,
        "--insecure",
        "--out",
        &out,
    ]);
    cmd.args(args);
    cmd
}

/// `xtask verify --published HOST/golden --insecure --key KEY ARGS...`.
fn verify(registry: &Registry, key: &Path, args: &[&str]) -> Output {
    let target = target(registry);
    let key = key.to_str().expect("UTF-8").to_owned();
    xtask(&[
        "verify",
        "--published",
        &target,
        "--insecure",
        "--key",
        &key,
    ])
    .args(args)
    .output()
    .expect("run xtask verify")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn client(registry: &Registry) -> Client {
    Client::new(
        Target::parse(&target(registry), true).unwrap(),
        None,
        ClientOptions::default(),
    )
}

/// A fresh key pair made by `xtask keygen`, in its own folder.
fn keygen(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch().join(name);
    fs::create_dir_all(&dir).unwrap();
    let (private, public) = (dir.join("plinth.key"), dir.join("plinth.pub"));
    if !private.exists() {
        support::check(&mut xtask(&[
            "keygen",
            "--private",
            private.to_str().unwrap(),
            "--public",
            public.to_str().unwrap(),
        ]));
    }
    (private, public)
}

fn key_fixture(name: &str) -> PathBuf {
    root().join("crates/plinth/tests/fixtures/keys").join(name)
}

// ---------------------------------------------------------------------------
// the independent verifiers
// ---------------------------------------------------------------------------

fn verifiers_dir() -> PathBuf {
    std::env::var_os("PLINTH_VERIFIERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/ci-verifiers"))
}

/// Whether the Python and node verifiers are installed (else skip).
fn verifiers() -> bool {
    let dir = verifiers_dir();
    let python = dir.join("python/bin/python");
    let node_modules = dir.join("node/node_modules/@sigstore/verify");
    if !python.exists() || !node_modules.exists() {
        return support::skip(&format!(
            "the independent verifiers are not installed in {} (run .ci/run)",
            dir.display()
        ));
    }
    support::tools(&["node"])
}

/// The Python verifier of cosign's legacy format on `repo:reference`.
fn python_verifies(registry: &Registry, repo: &str, reference: &str, key: &Path) -> Output {
    let script = root().join("xtask/tests/verifiers/python/verify_legacy.py");
    Command::new(verifiers_dir().join("python/bin/python"))
        .arg(script)
        .arg(format!("http://{}", registry.host()))
        .arg(format!("{PREFIX}/{repo}"))
        .arg(reference)
        .arg(key)
        .output()
        .expect("run the python verifier")
}

/// sigstore-js on `repo:reference`: `mode` is `bundle` or `att`.
fn node_verifies(
    registry: &Registry,
    mode: &str,
    repo: &str,
    reference: &str,
    key: &Path,
    predicates: &[&str],
) -> Output {
    // The script must sit beside the node_modules it imports; copied once
    // per process, so that no test reads it while another writes it.
    static SCRIPT: OnceLock<PathBuf> = OnceLock::new();
    let script = SCRIPT.get_or_init(|| {
        let script = verifiers_dir().join("node/verify_bundle.mjs");
        fs::copy(
            root().join("xtask/tests/verifiers/node/verify_bundle.mjs"),
            &script,
        )
        .expect("copy the node verifier");
        script
    });
    support::tool_command("node")
        .arg(script)
        .arg(mode)
        .arg(format!("http://{}", registry.host()))
        .arg(format!("{PREFIX}/{repo}"))
        .arg(reference)
        .arg(key)
        .args(predicates)
        .output()
        .expect("run the node verifier")
}

fn accepted(what: &str, out: &Output) {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success() && stdout.starts_with("OK "),
        "{what} was refused: {stdout}{stderr}"
    );
}

fn refused(what: &str, out: &Output) {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.code() == Some(1) && stdout.starts_with("FAIL "),
        "{what} was not refused: {stdout}{stderr}"
    );
}

/// Every reference of a recorded tag: the tag and its per-arch tags.
fn references(t: &TagSummary) -> Vec<String> {
    std::iter::once(t.tag.clone())
        .chain(
            t.platform
                .iter()
                .map(|p| format!("{}-{}", t.tag, p.architecture)),
        )
        .collect()
}

/// The verified SLSA provenance statement in the `.att` image of `digest`.
fn provenance(registry: &Registry, repo: &str, digest: &str) -> serde_json::Value {
    let client = client(registry);
    let repo = format!("{PREFIX}/{repo}");
    let att = format!("{}.att", digest.replacen(':', "-", 1));
    let (_, bytes) = client.get_manifest(&repo, &att).unwrap().expect(".att");
    let manifest: Manifest = serde_json::from_slice(&bytes).unwrap();
    let layer = manifest
        .layers
        .iter()
        .find(|l| l.annotations.get("predicateType").map(String::as_str) == Some(SLSA))
        .expect("a provenance layer");
    let envelope = client.get_blob(&repo, &layer.digest).unwrap().unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

fn sha256_file(path: &Path) -> String {
    plinth::support::digest::sha256_hex(&fs::read(path).unwrap())
}

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

#[test]
fn signed_publish_verifies_independently_and_republishes_nothing() {
    if !support::tools(&[support::REGISTRY_TOOL]) || !verifiers() {
        return;
    }
    let (private, public) = keygen("key-a");
    let registry = support::start_registry(None);
    let images = ["static-debian13", "hello-server"];
    let mut args = vec!["--sign", private.to_str().unwrap()];
    args.extend(images);
    let first = support::check(&mut publish(&registry, &args));
    let (stdout, _) = text(&first);
    assert!(!stdout.contains("unchanged"), "{stdout}");

    // The same set again, signatures and attestations included: nothing.
    let second = support::check(&mut publish(&registry, &args));
    let (stdout, _) = text(&second);
    let tags: Vec<&TagSummary> = recorded()
        .image
        .iter()
        .filter(|t| images.contains(&t.repository.as_str()))
        .collect();
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.ends_with("  unchanged"))
            .count(),
        tags.len(),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .contains("uploaded 0 blobs (0.0 MB), mounted 0, 0 manifests, 0 tags"),
        "{stdout}"
    );

    // plinth's own consumer check: one line per tag, all verified.
    let mut verify_args: Vec<&str> = images.to_vec();
    verify_args.push("--tag");
    verify_args.push("latest");
    let out = verify(&registry, &public, &verify_args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("  verified: "))
            .count(),
        2,
        "{stdout}"
    );

    // The verifiers that are not plinth's, on every reference.
    let (_, other_public) = keygen("key-other");
    for t in tags.iter().filter(|t| t.tag == "latest") {
        for reference in references(t) {
            let what = format!("{}:{reference}", t.repository);
            accepted(
                &format!("python, {what}"),
                &python_verifies(&registry, &t.repository, &reference, &public),
            );
            accepted(
                &format!("sigstore-js bundles, {what}"),
                &node_verifies(
                    &registry,
                    "bundle",
                    &t.repository,
                    &reference,
                    &public,
                    &[SIGN, SPDX, CYCLONEDX, SLSA],
                ),
            );
            accepted(
                &format!("sigstore-js .att, {what}"),
                &node_verifies(
                    &registry,
                    "att",
                    &t.repository,
                    &reference,
                    &public,
                    &[SPDX, CYCLONEDX, SLSA],
                ),
            );
        }
        refused(
            "python, another key",
            &python_verifies(&registry, &t.repository, &t.tag, &other_public),
        );
        refused(
            "sigstore-js, another key",
            &node_verifies(
                &registry,
                "bundle",
                &t.repository,
                &t.tag,
                &other_public,
                &[SIGN],
            ),
        );
    }

    // The provenance: builder, lockfile, every .deb with its sha256, and
    // for the application the toolchain and Cargo.lock.
    let golden = tag("static-debian13", "latest");
    let p = provenance(&registry, "static-debian13", &golden.index);
    assert_eq!(p["predicateType"], SLSA);
    assert_eq!(
        p["subject"][0]["digest"]["sha256"],
        golden.index.trim_start_matches("sha256:")
    );
    let definition = &p["predicate"]["buildDefinition"];
    let params = &definition["externalParameters"];
    assert_eq!(params["lockfile"]["path"], "lockfiles/debian13.lock.toml");
    assert_eq!(
        params["lockfile"]["sha256"],
        sha256_file(&root().join("lockfiles/debian13.lock.toml"))
    );
    let lock: toml::Value =
        toml::from_str(&fs::read_to_string(root().join("lockfiles/debian13.lock.toml")).unwrap())
            .unwrap();
    assert_eq!(
        params["definitions"]["sha256"],
        lock["definitions-sha256"].as_str().unwrap()
    );
    assert_eq!(
        params["sourceDateEpoch"],
        lock["epoch"].as_integer().unwrap()
    );
    assert_eq!(
        params["source"]["gitCommit"].as_str().map(str::len),
        Some(40)
    );
    assert_eq!(
        p["predicate"]["runDetails"]["builder"]["version"]["plinth"],
        env!("CARGO_PKG_VERSION")
    );
    let debs = definition["resolvedDependencies"].as_array().unwrap();
    let base_files = lock["package"]["amd64"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("base-files"))
        .unwrap();
    assert!(
        debs.iter()
            .any(|d| d["name"] == base_files["filename"].as_str().unwrap()
                && d["digest"]["sha256"] == base_files["sha256"].as_str().unwrap()),
        "{debs:?}"
    );
    let app = tag("hello-server", "latest");
    let p = provenance(&registry, "hello-server", &app.index);
    let deps = p["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert!(
        deps.iter().any(|d| d["name"] == "Cargo.lock"
            && d["digest"]["sha256"] == sha256_file(&root().join("Cargo.lock"))),
        "{deps:?}"
    );
    assert!(
        deps.iter().any(|d| d["name"] == "rustc"
            && d["annotations"]["version"]
                .as_str()
                .is_some_and(|v| v.starts_with("rustc "))),
        "{deps:?}"
    );
}

#[test]
fn a_second_signer_keeps_the_first_and_both_verify() {
    if !support::tools(&[support::REGISTRY_TOOL]) || !verifiers() {
        return;
    }
    let (first, first_public) = keygen("key-first");
    // The second is cosign's encrypted format, unlocked from the environment.
    let second = key_fixture("cosign_sigstore.key");
    let second_public = key_fixture("pkcs8.pub");
    let registry = support::start_registry(None);
    let args = |key: &Path| {
        vec![
            "--sign".to_owned(),
            key.to_str().unwrap().to_owned(),
            "static-debian13".to_owned(),
            "--tag".to_owned(),
            "latest".to_owned(),
        ]
    };
    support::check(publish(&registry, &[]).args(args(&first)));
    let out = publish(&registry, &[])
        .args(args(&second))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("PLINTH_SIGNING_PASSWORD"), "{stderr}");
    support::check(
        publish(&registry, &[])
            .args(args(&second))
            .env("PLINTH_SIGNING_PASSWORD", "correct horse"),
    );

    let t = tag("static-debian13", "latest");
    let sig = format!("{}.sig", t.index.replacen(':', "-", 1));
    let (_, bytes) = client(&registry)
        .get_manifest(&format!("{PREFIX}/static-debian13"), &sig)
        .unwrap()
        .expect(".sig");
    let manifest: Manifest = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(manifest.layers.len(), 2, "both signers' layers");
    for key in [&first_public, &second_public] {
        let out = verify(&registry, key, &["static-debian13", "--tag", "latest"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{}: {stdout}{stderr}", key.display());
        for reference in references(t) {
            accepted(
                "python",
                &python_verifies(&registry, "static-debian13", &reference, key),
            );
            accepted(
                "sigstore-js",
                &node_verifies(
                    &registry,
                    "bundle",
                    "static-debian13",
                    &reference,
                    key,
                    &[SIGN, SLSA],
                ),
            );
        }
    }
}

/// `verify --published` for one tag after `tamper` changed the registry:
/// exit 1, the tag's line says `expected`, and one `error:` line.
fn fails_with(registry: &Registry, key: &Path, extra: &[&str], expected: &str) {
    let mut args = vec!["static-debian13", "--tag", "latest"];
    args.extend(extra);
    let out = verify(registry, key, &args);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{expected}: {stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{expected}: {stdout}");
    assert!(
        lines[0].contains(&format!("  FAILED {expected}")),
        "{expected}: {stdout}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("1 of 1 tags failed verification"),
        "{stderr}"
    );
}

#[test]
fn verify_published_names_what_failed() {
    if !support::tools(&[support::REGISTRY_TOOL]) {
        return;
    }
    let (private, public) = keygen("key-tamper");
    let (_, other_public) = keygen("key-tamper-other");
    let t = tag("static-debian13", "latest");
    let nonroot = tag("static-debian13", "nonroot");
    let repo = format!("{PREFIX}/static-debian13");
    let signed = |tags: &[&str]| {
        let registry = support::start_registry(None);
        let mut args = vec!["--sign", private.to_str().unwrap(), "static-debian13"];
        for t in tags {
            args.extend(["--tag", t]);
        }
        support::check(&mut publish(&registry, &args));
        registry
    };

    // Unsigned.
    let registry = support::start_registry(None);
    support::check(&mut publish(
        &registry,
        &["static-debian13", "--tag", "latest"],
    ));
    fails_with(&registry, &public, &[], "unsigned: ");

    // Signed by another key; then every way of tampering with the signed set.
    let registry = signed(&["latest", "nonroot"]);
    fails_with(&registry, &other_public, &[], "wrong key: ");

    // A tag moved to another (signed!) digest after signing.
    let client = client(&registry);
    let (media_type, bytes) = client.get_manifest(&repo, &nonroot.tag).unwrap().unwrap();
    client
        .put_manifest(&repo, &t.tag, &media_type, &bytes)
        .unwrap();
    fails_with(&registry, &public, &[], "digest moved: ");
    client
        .put_manifest(&repo, &t.tag, &media_type, &{
            let (_, b) = client.get_manifest(&repo, &t.index).unwrap().unwrap();
            b
        })
        .unwrap();

    // A signature payload for another image, under this image's .sig tag.
    let sig = |digest: &str| format!("{}.sig", digest.replacen(':', "-", 1));
    let (_, ours) = client.get_manifest(&repo, &sig(&t.index)).unwrap().unwrap();
    let (_, theirs) = client
        .get_manifest(&repo, &sig(&nonroot.index))
        .unwrap()
        .unwrap();
    client
        .put_manifest(
            &repo,
            &sig(&t.index),
            oci::MEDIA_TYPE_IMAGE_MANIFEST,
            &theirs,
        )
        .unwrap();
    fails_with(&registry, &public, &[], "payload digest mismatch: ");
    client
        .put_manifest(&repo, &sig(&t.index), oci::MEDIA_TYPE_IMAGE_MANIFEST, &ours)
        .unwrap();

    // The provenance attestation taken out of the .att image.
    let att = format!("{}.att", t.index.replacen(':', "-", 1));
    let (_, bytes) = client.get_manifest(&repo, &att).unwrap().unwrap();
    let mut manifest: Manifest = serde_json::from_slice(&bytes).unwrap();
    manifest
        .layers
        .retain(|l| l.annotations.get("predicateType").map(String::as_str) != Some(SLSA));
    assert_eq!(manifest.layers.len(), 2);
    let cut = oci::json_bytes(&manifest).unwrap();
    client
        .put_manifest(&repo, &att, oci::MEDIA_TYPE_IMAGE_MANIFEST, &cut)
        .unwrap();
    fails_with(&registry, &public, &[], "attestation missing: ");
    client
        .put_manifest(&repo, &att, oci::MEDIA_TYPE_IMAGE_MANIFEST, &bytes)
        .unwrap();

    // Everything restored: verified.
    let out = verify(&registry, &public, &["static-debian13", "--tag", "latest"]);
    assert!(out.status.success(), "{:?}", text(&out));

    // The consumer holds another lockfile than the provenance names.
    let held = scratch().join("other-lockfiles");
    fs::create_dir_all(&held).unwrap();
    for file in ["digests.toml", "debian12.lock.toml"] {
        fs::copy(root().join("lockfiles").join(file), held.join(file)).unwrap();
    }
    let mut lock = fs::read_to_string(root().join("lockfiles/debian13.lock.toml")).unwrap();
    lock.push_str("# a lockfile the images were not built from\n");
    fs::write(held.join("debian13.lock.toml"), lock).unwrap();
    fails_with(
        &registry,
        &public,
        &["--lockfiles", held.to_str().unwrap()],
        "provenance names another lockfile: ",
    );
}

#[test]
fn keys_are_refused_with_one_line_and_no_secret() {
    let registry_target = "127.0.0.1:5000/golden";
    // A P-384 key: one line naming the file and the curve.
    let key = key_fixture("p384_sec1.pem");
    let out = xtask(&[
        "publish",
        "--registry",
        registry_target,
        "--insecure",
        "--sign",
        key.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("p384_sec1.pem") && stderr.contains("P-384"),
        "{stderr}"
    );
    // A wrong password: refused, and the password is nowhere.
    let key = key_fixture("cosign_sigstore.key");
    let out = xtask(&[
        "publish",
        "--registry",
        registry_target,
        "--insecure",
        "--sign",
        key.to_str().unwrap(),
        "-vv",
    ])
    .env("PLINTH_SIGNING_PASSWORD", "battery staple")
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("wrong password"), "{stderr}");
    assert!(
        !stdout.contains("battery") && !stderr.contains("battery"),
        "{stderr}"
    );
    // keygen never overwrites.
    let (private, public) = keygen("key-keygen");
    let before = fs::read(&private).unwrap();
    let out = xtask(&[
        "keygen",
        "--private",
        private.to_str().unwrap(),
        "--public",
        public.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(fs::read(&private).unwrap(), before);
    // Usage: --key without --published, --published without --key.
    for args in [
        &["verify", "--key", "x.pub"][..],
        &["verify", "--published", registry_target, "--insecure"][..],
    ] {
        let out = xtask(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", text(&out));
    }
}
