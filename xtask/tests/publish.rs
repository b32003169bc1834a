//! End-to-end tests of `cargo xtask publish` (issue 7) against Debian's
//! `docker-registry` on loopback, read back with skopeo.
//!
//! The images are built once per test process with the real binary into
//! `target/tmp/publish-e2e/<pid>/images` (`--out`, so the committed
//! `lockfiles/digests.toml` is only read); the bytes are the recorded ones,
//! which `cargo xtask verify` holds CI to. Every test starts its own
//! registry with its own storage.
//!
//! Tools: docker-registry, htpasswd, skopeo. A missing tool skips a test
//! with a printed reason, except under `CI=true`, where it is a failure.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use plinth::digests::RecordedDigests;
use support::Registry;

const PREFIX: &str = "golden";

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn recorded() -> &'static RecordedDigests {
    static R: OnceLock<RecordedDigests> = OnceLock::new();
    R.get_or_init(|| {
        let r = RecordedDigests::read(&RecordedDigests::path(&root().join("lockfiles")))
            .expect("read lockfiles/digests.toml");
        assert!(
            !r.image.is_empty(),
            "lockfiles/digests.toml records nothing"
        );
        r
    })
}

/// Every reference a full publish must leave and the digest it must
/// resolve to: each recorded tag and its per-architecture tags.
fn expected_refs() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for t in &recorded().image {
        out.push((t.repository.clone(), t.tag.clone(), t.index.clone()));
        for p in &t.platform {
            let tag = format!("{}-{}", t.tag, p.architecture);
            out.push((t.repository.clone(), tag, p.manifest.clone()));
        }
    }
    out
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| support::scratch_for("publish-e2e"))
}

/// The xtask binary with a clean credential and network environment: no
/// `PLINTH_REGISTRY_*`, no proxy variables (loopback is not exempt from a
/// proxy, as in curl), and `DOCKER_CONFIG` pointing at an empty folder
/// unless the test sets one.
fn xtask(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("PLINTH_REGISTRY_USERNAME")
        .env_remove("PLINTH_REGISTRY_PASSWORD")
        .env_remove("RUST_LOG")
        .env("DOCKER_CONFIG", scratch().join("no-docker-config"));
    for var in plinth::net::env::VARIABLES {
        if var.contains("proxy") || var.contains("PROXY") {
            cmd.env_remove(var);
        }
    }
    cmd
}

/// The images, built once per test process.
fn built() -> &'static Path {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = scratch().join("images");
        let started = Instant::now();
        support::output(
            xtask(&["images", "--out", out.to_str().expect("UTF-8")]).env("LANG", "C"),
        )?;
        eprintln!("built {} in {:.1?}", out.display(), started.elapsed());
        Ok(out)
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("the shared build failed: {e}"))
}

/// `xtask publish --registry HOST/golden --insecure --out BUILT ARGS...`.
fn publish(registry: &Registry, args: &[&str]) -> Command {
    publish_to(&registry.host(), true, args)
}

/// `xtask publish --registry HOST/golden [--insecure] --out BUILT ARGS...`.
fn publish_to(host: &str, insecure: bool, args: &[&str]) -> Command {
    let target = format!("{host}/{PREFIX}");
    let out = built().to_str().expect("UTF-8").to_owned();
    let mut cmd = xtask(&["publish", "--registry", &target, "--out", &out]);
    if insecure {
        cmd.arg("--insecure");
    }
    cmd.args(args);
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The summary line of a publish (the last line of stdout).
fn summary(out: &Output) -> String {
    text(out).0.lines().last().unwrap_or_default().to_owned()
}

fn tools(auth: bool) -> bool {
    let mut names = vec![support::REGISTRY_TOOL, "skopeo"];
    if auth {
        names.push("htpasswd");
    }
    support::tools(&names)
}

/// `skopeo inspect` of every expected reference, four at a time: each must
/// resolve to the recorded digest.
fn assert_registry_serves_recorded(registry: &Registry, creds: Option<&str>) {
    let refs = expected_refs();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = refs
            .chunks(refs.len().div_ceil(4))
            .map(|chunk| {
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for (repo, tag, digest) in chunk {
                        let image = format!("docker://{}/{PREFIX}/{repo}:{tag}", registry.host());
                        let mut cmd = support::tool_command("skopeo");
                        cmd.args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"]);
                        if let Some(c) = creds {
                            cmd.args(["--creds", c]);
                        }
                        match support::output(cmd.arg(&image)) {
                            Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == digest => {}
                            Ok(out) => bad.push(format!(
                                "{image}: {} (recorded {digest})",
                                String::from_utf8_lossy(&out.stdout).trim()
                            )),
                            Err(e) => bad.push(e),
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("inspect thread"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every tag index's referrers tag (`sha256-<hex>`) lists its SPDX and
/// CycloneDX SBOMs.
fn assert_referrer_tags(registry: &Registry) {
    for t in &recorded().image {
        let image = format!(
            "docker://{}/{PREFIX}/{}:{}",
            registry.host(),
            t.repository,
            t.index.replacen(':', "-", 1)
        );
        let out = support::check(support::tool_command("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &image,
        ]));
        let index: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("referrers index");
        let mut types: Vec<&str> = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .filter_map(|m| m["artifactType"].as_str())
            .collect();
        types.sort();
        assert_eq!(
            types,
            ["application/spdx+json", "application/vnd.cyclonedx+json"],
            "{image}"
        );
    }
}

/// base64 of `user:password`, without a crate: `base64` from coreutils.
fn base64_pair(user: &str, password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("coreutils base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{user}:{password}").as_bytes())
        .expect("write base64 input");
    let out = child.wait_with_output().expect("base64");
    String::from_utf8(out.stdout).expect("base64 output")
}

/// A Docker config folder named `name` with credentials for `host`.
fn docker_config(name: &str, host: &str, user: &str, password: &str) -> PathBuf {
    let config = scratch().join(name);
    fs::create_dir_all(&config).expect("docker config dir");
    let auth = base64_pair(user, password);
    fs::write(
        config.join("config.json"),
        format!(r#"{{"auths": {{"http://{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .expect("write config.json");
    config
}

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

#[test]
fn publishes_everything_then_nothing_and_skopeo_reads_it_back() {
    if !tools(false) {
        return;
    }
    let registry = support::start_registry(None);
    let first = support::check(&mut publish(&registry, &[]));
    let (stdout, _) = text(&first);
    let refs = recorded().image.len();
    assert_eq!(stdout.lines().count(), refs + 1, "{stdout}");
    assert!(summary(&first).contains("uploaded") && !summary(&first).contains("uploaded 0 blobs"));
    assert!(
        summary(&first).ends_with("SBOMs through the referrers tag schema"),
        "{stdout}"
    );
    for t in &recorded().image {
        let line = format!(
            "{PREFIX}/{}:{}  {}  uploaded ",
            t.repository, t.tag, t.index
        );
        assert!(
            stdout.lines().any(|l| l.starts_with(&line)),
            "{line}\n{stdout}"
        );
    }

    let second = support::check(&mut publish(&registry, &[]));
    let (stdout, _) = text(&second);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.ends_with("  unchanged"))
            .count(),
        refs,
        "{stdout}"
    );
    assert!(
        summary(&second).contains("uploaded 0 blobs (0.0 MB), mounted 0, 0 manifests, 0 tags"),
        "{stdout}"
    );

    assert_registry_serves_recorded(&registry, None);
    assert_referrer_tags(&registry);

    // skopeo copies every multi-arch tag back into a layout, digests intact.
    let copy = scratch().join("copied");
    let _ = fs::remove_dir_all(&copy);
    for t in &recorded().image {
        let dest = copy.join(&t.repository);
        fs::create_dir_all(&dest).expect("copy destination");
        support::check(support::tool_command("skopeo").args([
            "copy",
            "--all",
            "--quiet",
            "--src-tls-verify=false",
            &format!(
                "docker://{}/{PREFIX}/{}:{}",
                registry.host(),
                t.repository,
                t.tag
            ),
            &format!("oci:{}:{}", dest.display(), t.tag),
        ]));
        let index = plinth::oci::read_layout(&dest).expect("copied layout");
        let got = index.find_ref(&t.tag).map(|d| d.digest.as_str());
        assert_eq!(got, Some(t.index.as_str()), "{}:{}", t.repository, t.tag);
    }
}

#[test]
fn dry_run_reports_bytes_and_changes_nothing() {
    if !tools(false) {
        return;
    }
    let registry = support::start_registry(None);
    let args = ["static-debian13", "--tag", "latest", "--dry-run"];
    let out = support::check(&mut publish(&registry, &args));
    let line = summary(&out);
    assert!(line.contains(": 1 tags, would upload "), "{line}");
    assert!(!line.contains("would upload 0 blobs (0.0 MB)"), "{line}");
    assert_eq!(registry.blob_count(), 0);
    let again = support::check(&mut publish(&registry, &args));
    assert_eq!(text(&again).0, text(&out).0);
}

#[test]
fn basic_auth_from_docker_config_and_from_the_environment() {
    if !tools(true) {
        return;
    }
    let (user, password) = ("plinth", "s3cret-Pa55");
    let registry = support::start_registry(Some((user, password)));
    let config = docker_config("docker-config-right", &registry.host(), user, password);
    let out = support::check(publish(&registry, &[]).env("DOCKER_CONFIG", &config));
    assert!(
        !summary(&out).contains("uploaded 0 blobs"),
        "{}",
        summary(&out)
    );
    assert_registry_serves_recorded(&registry, Some(&format!("{user}:{password}")));

    let out = support::check(
        publish(&registry, &[])
            .env("PLINTH_REGISTRY_USERNAME", user)
            .env("PLINTH_REGISTRY_PASSWORD", password),
    );
    assert!(
        summary(&out).contains("uploaded 0 blobs (0.0 MB), mounted 0, 0 manifests, 0 tags"),
        "{}",
        summary(&out)
    );

    // A credential helper, as `docker login` with a credsStore leaves it:
    // an empty `auths` entry and `docker-credential-<store>` on PATH.
    use std::os::unix::fs::PermissionsExt as _;
    let dir = scratch().join("docker-config-helper");
    fs::create_dir_all(&dir).unwrap();
    let helper = dir.join("docker-credential-plinthtest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\n[ \"$host\" = {host} ] || exit 1\necho '{{\"Username\":\"{user}\",\"Secret\":\"{password}\"}}'\n",
            host = registry.host()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{}}}}, "credsStore": "plinthtest"}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = support::check(
        publish(&registry, &["static-debian12"])
            .env("DOCKER_CONFIG", &dir)
            .env("PATH", path),
    );
    assert!(
        summary(&out).contains("uploaded 0 blobs (0.0 MB), mounted 0, 0 manifests, 0 tags"),
        "{}",
        summary(&out)
    );
}

#[test]
fn wrong_or_missing_credentials_fail_naming_the_registry_without_secrets() {
    if !tools(true) {
        return;
    }
    let registry = support::start_registry(Some(("plinth", "right-Pa55")));
    let wrong = "wr0ng-S3cret-value";
    let config = docker_config("docker-config-wrong", &registry.host(), "plinth", wrong);
    let cases = [
        ("docker config", {
            let mut c = publish(&registry, &["-vv", "static-debian12"]);
            c.env("DOCKER_CONFIG", &config);
            c
        }),
        ("environment", {
            let mut c = publish(&registry, &["-vv", "static-debian12"]);
            c.env("PLINTH_REGISTRY_USERNAME", "plinth")
                .env("PLINTH_REGISTRY_PASSWORD", wrong);
            c
        }),
        ("none", publish(&registry, &["static-debian12"])),
    ];
    for (source, mut cmd) in cases {
        let out = cmd.output().expect("run xtask");
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{source}: {stderr}");
        let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error.len(), 1, "{source}: {stderr}");
        assert!(
            error[0].starts_with(&format!("error: registry {}", registry.host()))
                && error[0].contains("authentication failed"),
            "{source}: {}",
            error[0]
        );
        for secret in [
            wrong,
            "d3IwbmctUzNjcmV0LXZhbHVl", /* base64 of the password */
        ] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{source}: the secret leaked:\n{stdout}\n{stderr}"
            );
        }
        assert!(!stderr.contains("Authorization"), "{source}: {stderr}");
    }
}

#[test]
fn a_registry_stopped_mid_publish_fails_clearly_and_the_next_publish_completes() {
    if !tools(false) {
        return;
    }
    let mut registry = support::start_registry(None);
    let mut child = publish(&registry, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start publish");
    // Stop the registry once uploads are under way, never on a timer.
    let deadline = Instant::now() + Duration::from_secs(300);
    while registry.blob_count() < 5 {
        assert!(Instant::now() < deadline, "no uploads reached the registry");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "publish ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    registry.stop();
    let out = child.wait_with_output().expect("wait for publish");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(
        error.starts_with(&format!("error: registry {}", registry.host())),
        "{error}"
    );

    registry.restart().unwrap_or_else(|e| panic!("{e}"));
    let out = support::check(&mut publish(&registry, &[]));
    assert!(
        summary(&out).contains("tags, uploaded "),
        "{}",
        summary(&out)
    );
    assert_registry_serves_recorded(&registry, None);
    assert_referrer_tags(&registry);
    let again = support::check(&mut publish(&registry, &[]));
    assert!(
        summary(&again).contains("uploaded 0 blobs (0.0 MB), mounted 0, 0 manifests, 0 tags"),
        "{}",
        summary(&again)
    );
}

#[test]
fn a_layout_that_differs_from_the_record_is_refused_before_any_upload() {
    if !tools(false) {
        return;
    }
    let registry = support::start_registry(None);
    let t = &recorded().image[0];
    // A copy of one layout whose index.json points the tag elsewhere.
    let out = scratch().join("tampered");
    let _ = fs::remove_dir_all(&out);
    let src = built().join(&t.repository);
    let dest = out.join(&t.repository);
    fs::create_dir_all(&out).expect("create the tampered output");
    support::check(Command::new("cp").arg("-a").arg("-T").arg(&src).arg(&dest));
    let index = fs::read_to_string(dest.join("index.json")).expect("index.json");
    let other = &t.platform[0].manifest;
    let tampered = index.replacen(&t.index, other, 1);
    fs::write(dest.join("index.json"), tampered).expect("write index.json");
    let target = format!("{}/{PREFIX}", registry.host());
    let result = xtask(&[
        "publish",
        "--registry",
        &target,
        "--insecure",
        "--out",
        out.to_str().expect("UTF-8"),
        &t.repository,
        "--tag",
        &t.tag,
    ])
    .output()
    .expect("run xtask");
    let (_, stderr) = text(&result);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:{} is not what lockfiles/digests.toml records; run `cargo xtask images`",
            dest.display(),
            t.tag
        )),
        "{stderr}"
    );
    assert_eq!(registry.blob_count(), 0);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["publish", "--registry", "https://127.0.0.1:5000/x"][..],
        &[
            "publish",
            "--registry",
            "registry.example.org/x",
            "--insecure",
        ][..],
        &[
            "publish",
            "--registry",
            "127.0.0.1:5000/x",
            "--insecure",
            "no-such-image",
        ][..],
    ] {
        let out = xtask(args).output().expect("run xtask");
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn the_referrers_tag_keeps_what_other_tools_put_there() {
    use plinth::oci::{self, Descriptor, Index, Manifest};
    use plinth::registry::{Client, ClientOptions, Target};
    if !tools(false) {
        return;
    }
    let registry = support::start_registry(None);
    let t = recorded()
        .image
        .iter()
        .find(|t| t.repository == "static-debian13" && t.tag == "latest")
        .expect("static-debian13:latest is recorded");
    let client = Client::new(
        Target::parse(&format!("{}/{PREFIX}", registry.host()), true).unwrap(),
        None,
        ClientOptions::default(),
    );
    let repo = format!("{PREFIX}/{}", t.repository);
    // Another tool's signature-like artifact for the same subject.
    let payload = b"signed by someone else";
    let layer = oci::descriptor_for("application/octet-stream", payload);
    for (digest, bytes) in [
        (layer.digest.as_str(), &payload[..]),
        (oci::EMPTY_DIGEST, oci::EMPTY_BLOB),
    ] {
        client.upload_blob(&repo, digest, bytes, None).unwrap();
    }
    let subject = Descriptor {
        media_type: oci::MEDIA_TYPE_IMAGE_INDEX.into(),
        digest: t.index.clone(),
        size: 0,
        platform: None,
        annotations: Default::default(),
        artifact_type: None,
    };
    let artifact = Manifest::artifact("application/example.signature", vec![layer], subject);
    let bytes = oci::json_bytes(&artifact).unwrap();
    let foreign = oci::descriptor_for(oci::MEDIA_TYPE_IMAGE_MANIFEST, &bytes)
        .with_artifact_type("application/example.signature");
    client
        .put_manifest(
            &repo,
            &foreign.digest,
            oci::MEDIA_TYPE_IMAGE_MANIFEST,
            &bytes,
        )
        .unwrap();
    let tag = t.index.replacen(':', "-", 1);
    let index = oci::json_bytes(&Index::new(vec![foreign.clone()])).unwrap();
    client
        .put_manifest(&repo, &tag, oci::MEDIA_TYPE_IMAGE_INDEX, &index)
        .unwrap();

    support::check(&mut publish(&registry, &[&t.repository, "--tag", &t.tag]));
    let (_, bytes) = client
        .get_manifest(&repo, &tag)
        .unwrap()
        .expect("referrers tag");
    let merged: Index = serde_json::from_slice(&bytes).unwrap();
    let types: Vec<_> = merged
        .manifests
        .iter()
        .map(|d| d.artifact_type.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(merged.manifests[0], foreign);
    assert_eq!(types.len(), 3, "{types:?}");
    assert!(
        types.contains(&"application/spdx+json")
            && types.contains(&"application/vnd.cyclonedx+json")
    );
}

// ---------------------------------------------------------------------------
// Corporate networks: a registry on a private CA, a proxy, object storage

/// A TLS registry whose certificate chains to a CA made for the test, and
/// that CA's PEM file (trusted by nothing yet).
fn tls_registry(name: &str) -> (Registry, PathBuf) {
    use plinth_testkit::tls::TestCa;
    let ca = TestCa::new("plinth test registry CA");
    let cert = ca.server_cert(&["127.0.0.1", "localhost"]);
    let registry = Registry::start_with(None, Some(&cert)).unwrap_or_else(|e| panic!("{e}"));
    (registry, ca.write_pem(&scratch().join(name)))
}

/// The one `error:` line of a failed run.
fn error_line(out: &Output) -> String {
    let (_, stderr) = text(out);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0].to_owned()
}

#[test]
fn a_tls_registry_on_a_private_ca_is_trusted_through_ssl_cert_file_and_refused_without() {
    if !tools(false) {
        return;
    }
    let (registry, ca) = tls_registry("tls-registry-ca.pem");
    let host = registry.host();
    let args = ["static-debian12", "--tag", "latest"];

    let refused = publish_to(&host, false, &args)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .expect("run xtask");
    assert_eq!(refused.status.code(), Some(1));
    let error = error_line(&refused);
    assert!(
        error.starts_with(&format!(
            "error: registry {host}: checking the API: TLS certificate of {host} refused: unknown issuer: no trusted CA signed it"
        )) && error.contains("; trusting the system store"),
        "{error}"
    );
    assert_eq!(registry.blob_count(), 0);

    let out = support::check(
        publish_to(&host, false, &args)
            .env("SSL_CERT_FILE", &ca)
            .env_remove("SSL_CERT_DIR"),
    );
    assert!(
        summary(&out).contains("1 tags, uploaded "),
        "{}",
        summary(&out)
    );
    assert!(registry.blob_count() > 0);
}

#[test]
fn publishes_through_a_connect_proxy_and_no_proxy_goes_around_it() {
    use plinth_testkit::proxy::ConnectProxy;
    if !tools(false) {
        return;
    }
    let (registry, ca) = tls_registry("proxied-registry-ca.pem");
    let host = registry.host();
    let proxy = ConnectProxy::requiring(&base64_pair("builder", "pr0xy-Pa55"));
    let proxy_url = proxy.url().replace("http://", "http://builder:pr0xy-Pa55@");
    let args = ["static-debian12", "--tag", "latest", "-vv"];
    let mut through = publish_to(&host, false, &args);
    through
        .env("SSL_CERT_FILE", &ca)
        .env("HTTPS_PROXY", &proxy_url);
    let out = support::check(&mut through);
    assert!(
        summary(&out).contains("1 tags, uploaded "),
        "{}",
        summary(&out)
    );
    let connects = proxy.connects();
    assert!(!connects.is_empty());
    assert!(connects.iter().all(|c| c.target == host), "{connects:?}");
    // The proxy's password reached the proxy, and no log line (-vv).
    let (stdout, stderr) = text(&out);
    assert!(!stdout.contains("pr0xy-Pa55") && !stderr.contains("pr0xy-Pa55"));

    let tunnelled = connects.len();
    let out = support::check(through.env("NO_PROXY", "localhost,127.0.0.1"));
    assert!(
        summary(&out).contains("uploaded 0 blobs"),
        "{}",
        summary(&out)
    );
    assert_eq!(proxy.connects().len(), tunnelled);
}

#[test]
fn publishes_through_a_front_that_sends_blobs_to_storage_which_never_sees_credentials() {
    use plinth_testkit::front::StorageFront;
    if !tools(false) {
        return;
    }
    let registry = support::start_registry(None);
    let port: u16 = registry.host().rsplit_once(':').unwrap().1.parse().unwrap();
    let (user, password) = ("plinth", "fr0nt-Pa55");
    let front = StorageFront::start(port, Some(format!("Basic {}", base64_pair(user, password))));
    let out = support::check(
        publish_to(&front.host(), true, &[])
            .env("PLINTH_REGISTRY_USERNAME", user)
            .env("PLINTH_REGISTRY_PASSWORD", password),
    );
    assert!(
        !summary(&out).contains("uploaded 0 blobs"),
        "{}",
        summary(&out)
    );

    let at_storage = front.storage_requests();
    for method in ["HEAD", "PUT"] {
        assert!(
            at_storage.iter().any(|r| r.method == method),
            "no {method} reached the storage: {at_storage:?}"
        );
    }
    let leaked: Vec<_> = at_storage
        .iter()
        .filter(|r| r.authorization.is_some())
        .collect();
    assert!(
        leaked.is_empty(),
        "credentials reached the storage: {leaked:?}"
    );
    assert!(
        front
            .front_requests()
            .iter()
            .any(|r| r.authorization.is_some())
    );
    // Everything arrived, as recorded, in the registry behind.
    assert_registry_serves_recorded(&registry, None);
}
