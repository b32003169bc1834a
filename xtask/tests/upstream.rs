//! The scheduled-update commands as a CI job runs them (`cargo xtask
//! --project DIR ...`), against a generated archive on loopback:
//! `lock --check-upstream` exits 0 on a current lock and 1 on a moved
//! archive, writing nothing in either case; `lock --report` writes the
//! Markdown and JSON report; `diff` adds the image differences to it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use plinth_testkit::{Archive, Compression, DebBuilder, Server, SigningKey, SuiteSpec};

const SETTINGS: &str = r#"architectures = ["amd64"]
debug-packages = ["busybox-static"]

[mirrors]
debian = "MIRROR/debian"
debian-security = "MIRROR/debian-security"

[os-release]
pretty-name = "Distroless"
home-url = "https://example.invalid/"
support-url = "https://example.invalid/support"
bug-report-url = "https://example.invalid/issues"

[distribution.debian13]
codename = "trixie"
version = "13"
components = ["main"]
keys = ["archive.asc"]
suites = [
  { name = "trixie", archive = "debian" },
  { name = "trixie-security", archive = "debian-security" },
]
"#;

const CHANGELOG: &str = "\
libzstd (1.5.7+dfsg-1+deb13u1) trixie-security; urgency=medium

  * CVE-2026-124851

 -- Security Team <security@debian.invalid>  Tue, 24 Nov 2026 18:43:52 +0100
";

fn key() -> SigningKey {
    SigningKey::ed25519("Test Archive <archive@test.invalid>")
}

/// `(suite, name, version, fields, changelog)`, amd64.
type Package = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

const FIRST: [Package; 4] = [
    ("trixie", "base-files", "13.8", "", None),
    ("trixie", "libc6", "2.41-12", "Source: glibc", None),
    (
        "trixie",
        "libzstd1",
        "1.5.7+dfsg-1",
        "Source: libzstd\nDepends: libc6",
        None,
    ),
    (
        "trixie",
        "busybox-static",
        "1:1.37.0-6",
        "Source: busybox",
        None,
    ),
];
const UPDATE: Package = (
    "trixie-security",
    "libzstd1",
    "1.5.7+dfsg-1+deb13u1",
    "Source: libzstd\nDepends: libc6",
    Some(CHANGELOG),
);

/// Writes the archive (both suites dated `date`) under `mirror`.
fn publish(mirror: &Path, packages: &[Package], date: &str) {
    let mut debian = Archive::new(mirror.join("debian"));
    let mut security = Archive::new(mirror.join("debian-security"));
    for (archive, suite) in [(&mut debian, "trixie"), (&mut security, "trixie-security")] {
        archive.suite(SuiteSpec {
            date: date.into(),
            architectures: vec!["amd64".into()],
            ..SuiteSpec::new(suite).signed_by(&[&key()])
        });
    }
    for &(suite, name, version, fields, changelog) in packages {
        let mut deb = DebBuilder::new(name, version, "amd64").file(
            &format!("/usr/share/doc/{name}/copyright"),
            0o644,
            "public domain\n",
        );
        for line in fields.lines().filter(|l| !l.is_empty()) {
            let (f, v) = line.split_once(": ").unwrap();
            deb = deb.field(f, v);
        }
        if let Some(text) = changelog {
            deb = deb.file(
                &format!("/usr/share/doc/{name}/changelog.Debian.gz"),
                0o644,
                Compression::Gzip.compress(text.as_bytes()),
            );
        }
        if name == "busybox-static" {
            // A NUL-separated applet table, as the build looks for.
            let binary =
                b"\x7fELF busybox\0[\0[[\0ash\0cat\0cp\0echo\0env\0ls\0mkdir\0rm\0sh\0true\0\0";
            deb = deb.file("/usr/bin/busybox", 0o755, binary.as_slice());
        }
        let archive = if suite == "trixie" {
            &mut debian
        } else {
            &mut security
        };
        archive.add(suite, &deb.build());
    }
    debian.write();
    security.write();
}

struct Fixture {
    tmp: tempfile::TempDir,
    project: PathBuf,
    mirror: PathBuf,
    _server: Server,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mirror = tmp.path().join("mirror");
        fs::create_dir_all(&mirror).unwrap();
        publish(&mirror, &FIRST, "Sun, 01 Nov 2026 09:15:44 UTC");
        let server = Server::serve(&mirror);
        let project = tmp.path().join("project");
        for dir in ["images", "keys"] {
            fs::create_dir_all(project.join(dir)).unwrap();
        }
        fs::write(project.join("keys/archive.asc"), key().public_armored()).unwrap();
        let settings = SETTINGS.replace("MIRROR", &server.url());
        fs::write(project.join("images/plinth.toml"), settings).unwrap();
        fs::write(
            project.join("images/static.toml"),
            "name = \"static\"\ndescription = \"s\"\npackages = [\"base-files\"]\n",
        )
        .unwrap();
        fs::write(
            project.join("images/base.toml"),
            "name = \"base\"\ndescription = \"b\"\nbase = \"static\"\npackages = [\"libzstd1\"]\n",
        )
        .unwrap();
        Fixture {
            tmp,
            project,
            mirror,
            _server: server,
        }
    }

    fn xtask(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.arg("--project")
            .arg(&self.project)
            .args(args)
            .env("PLINTH_CACHE_DIR", self.tmp.path().join("cache"))
            .env_remove("PLINTH_MIRROR_DEBIAN")
            .env_remove("PLINTH_MIRROR_DEBIAN_SECURITY")
            .env_remove("SOURCE_DATE_EPOCH");
        cmd.output().unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), fs::read(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.project, &mut out);
        out
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the exit code, showing the output otherwise.
fn exits(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn check_upstream_exit_codes_reports_and_diff() {
    let fx = Fixture::new();
    exits(&fx.xtask(&["lock"]), 0);
    let locked = fx.snapshot();
    assert!(locked.contains_key(&fx.project.join("lockfiles/debian13.lock.toml")));

    let current = fx.xtask(&["lock", "--check-upstream"]);
    exits(&current, 0);
    assert!(
        text(&current.stdout)
            .ends_with("debian13: no package changes\nlockfiles are current with the archive\n"),
        "{}",
        text(&current.stdout)
    );
    assert!(fx.snapshot() == locked, "a current check wrote something");

    // The images of the lock as it is, for the diff below.
    exits(
        &fx.xtask(&[
            "images",
            "--no-layer-cache",
            "--out",
            fx.path("before").to_str().unwrap(),
        ]),
        0,
    );

    let mut moved_archive = FIRST.to_vec();
    moved_archive.push(UPDATE);
    publish(&fx.mirror, &moved_archive, "Mon, 02 Nov 2026 09:15:44 UTC");
    let before = fx.snapshot();
    let moved = fx.xtask(&["lock", "--check-upstream"]);
    exits(&moved, 1);
    assert_eq!(
        text(&moved.stdout),
        "debian13:\n  upgraded   libzstd1 1.5.7+dfsg-1 → 1.5.7+dfsg-1+deb13u1 \
         (amd64; security update from trixie-security)\n"
    );
    assert_eq!(
        text(&moved.stderr),
        "error: the archive has moved since the lockfiles of debian13 were made; \
         `cargo xtask lock` updates them\n"
    );
    assert!(fx.snapshot() == before, "a moved check wrote something");

    let report = fx.path("update");
    let checked = fx.xtask(&[
        "lock",
        "--check-upstream",
        "--report",
        report.to_str().unwrap(),
    ]);
    exits(&checked, 1);
    assert!(fx.snapshot() == before, "a report went into the project");
    let md = fs::read_to_string(fx.path("update.md")).unwrap();
    assert!(md.contains("CVEs: CVE-2026-124851."), "{md}");
    assert!(
        md.contains("Touches `base-debian13` (latest, nonroot, debug, debug-nonroot)."),
        "{md}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(fx.path("update.json")).unwrap()).unwrap();
    assert_eq!(json["cves"], serde_json::json!(["CVE-2026-124851"]));
    assert_eq!(json["distributions"][0]["changes"][0]["change"], "upgraded");
    assert_eq!(json["distributions"][0]["changes"][0]["security"], true);

    // The update itself: lock (with the report), images, diff into the report.
    let relocked = fx.xtask(&["lock", "--report", fx.path("update.md").to_str().unwrap()]);
    exits(&relocked, 0);
    assert!(text(&relocked.stdout).contains("wrote lockfiles/debian13.lock.toml"));
    exits(&fx.xtask(&["lock", "--check-upstream"]), 0);
    exits(
        &fx.xtask(&[
            "images",
            "--no-layer-cache",
            "--out",
            fx.path("after").to_str().unwrap(),
        ]),
        0,
    );
    let diff = fx.xtask(&[
        "diff",
        fx.path("before").to_str().unwrap(),
        fx.path("after").to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    exits(&diff, 0);
    let out = text(&diff.stdout);
    assert!(
        out.contains("    libzstd1 1.5.7+dfsg-1 → 1.5.7+dfsg-1+deb13u1\n"),
        "{out}"
    );
    assert!(out.contains("8 tags differ, 0 the same"), "{out}");
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(fx.path("update.json")).unwrap()).unwrap();
    assert_eq!(json["images"]["tags"].as_array().unwrap().len(), 8);
    assert_eq!(json["cves"], serde_json::json!(["CVE-2026-124851"]));
    let md = fs::read_to_string(fx.path("update.md")).unwrap();
    assert!(md.contains("## Images"), "{md}");

    // Neither a directory nor a registry reference: a usage error.
    let bad = fx.xtask(&["diff", "no-such-dir", fx.path("after").to_str().unwrap()]);
    exits(&bad, 2);
}
