//! Cross-checks the generated archive with the host's apt, when present:
//! apt is the reference client for this format, so if it accepts the
//! signature, the Release hashes and the Packages indices, so should plinth.

use std::path::Path;
use std::process::Command;

use plinth_testkit::{Archive, DebBuilder, Server, SigningKey, SuiteSpec};

fn apt_get(root: &Path, args: &[&str]) -> std::process::Output {
    let opt = |name: &str, value: &Path| format!("-o{name}={}", value.display());
    Command::new("apt-get")
        .arg(opt("Dir", root))
        .arg(opt("Dir::State::status", &root.join("status")))
        .arg(opt("Dir::Etc::SourceList", &root.join("sources.list")))
        .arg(opt("Dir::Etc::SourceParts", &root.join("empty")))
        .arg(opt("Dir::Etc::Parts", &root.join("empty")))
        .arg(opt("Dir::Etc::Preferences", &root.join("none")))
        .arg(opt("Dir::Etc::PreferencesParts", &root.join("empty")))
        .arg(opt("Dir::Etc::TrustedParts", &root.join("empty")))
        .arg(opt("Dir::Cache", &root.join("cache")))
        .arg(opt("Dir::State", &root.join("state")))
        .arg("-oAPT::Architecture=amd64")
        .arg("-oAPT::Architectures=amd64")
        .arg("-oAPT::Sandbox::User=root")
        .arg("-oDebug::NoLocking=1")
        .arg("-oAcquire::Retries=0")
        .arg("-oAcquire::http::Proxy=DIRECT")
        .args(args)
        .env_remove("http_proxy")
        .output()
        .expect("running apt-get")
}

#[test]
fn apt_accepts_the_archive() {
    if Command::new("apt-get").arg("--version").output().is_err() {
        eprintln!("apt-get not installed; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let key = SigningKey::rsa("Apt Check Key <apt@test.invalid>");
    let mut archive = Archive::new(tmp.path().join("debian"));
    archive.suite(SuiteSpec {
        valid_until: Some("Tue, 01 Jan 2036 00:00:00 UTC".into()),
        ..SuiteSpec::new("trixie").signed_by(&[&key])
    });
    archive.add(
        "trixie",
        &DebBuilder::new("hello", "1:2.12-1", "amd64")
            .field("Depends", "tzdata")
            .file("/usr/bin/hello", 0o755, b"hello")
            .build(),
    );
    archive.add(
        "trixie",
        &DebBuilder::new("tzdata", "2025b-4", "all").build(),
    );
    archive.write();
    let server = Server::serve(tmp.path());

    let apt = tmp.path().join("apt");
    for dir in ["empty", "cache/archives/partial", "state/lists/partial"] {
        std::fs::create_dir_all(apt.join(dir)).unwrap();
    }
    std::fs::write(apt.join("status"), b"").unwrap();
    std::fs::write(apt.join("key.gpg"), key.public_binary()).unwrap();
    std::fs::write(
        apt.join("sources.list"),
        format!(
            "deb [signed-by={}] {}/debian trixie main\n",
            apt.join("key.gpg").display(),
            server.url()
        ),
    )
    .unwrap();

    let out = apt_get(&apt, &["update"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{stdout}\n{stderr}"
    );
    eprintln!("apt fetched {:?}", server.requests());
    assert_eq!(server.hits("/debian/dists/trixie/InRelease"), 1);
    assert!(
        server
            .requests()
            .iter()
            .any(|p| p.contains("/by-hash/SHA256/")),
        "apt fetches by hash: {:?}",
        server.requests()
    );

    let out = apt_get(&apt, &["-s", "install", "hello"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Inst tzdata (2025b-4"), "{stdout}");
    assert!(stdout.contains("Inst hello (1:2.12-1"), "{stdout}");

    // A wrong key makes apt refuse the suite.
    archive.resign(
        "trixie",
        &[&SigningKey::ed25519("Intruder <x@test.invalid>")],
    );
    let out = apt_get(&apt, &["update"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("NO_PUBKEY") || all.contains("not signed"),
        "{all}"
    );
}
