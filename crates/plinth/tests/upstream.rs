//! Keeping images current, against a generated archive that moves: a lock
//! that is current stays untouched (Release files signed again do not
//! count); an archive that gains security updates, loses a package,
//! changes a dependency or goes back to an older version is reported
//! package by package, with the changelog entries and CVE identifiers of
//! the generated `.deb`s and the images each change touches; nothing is
//! written until asked. Also: per-distribution architectures, `diff`
//! between two builds, and `verify` judging by the record.

mod common;

use plinth::net::{Environment, Network};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::sha256;
use plinth::apps::AppImage;
use plinth::build::{BuildOptions, build};
use plinth::changes::ChangeReport;
use plinth::diff::source::Side;
use plinth::digests::RecordedDigests;
use plinth::download::cache::Cache;
use plinth::download::http::{FetchOptions, Fetcher};
use plinth::download::mirrors::Mirrors;
use plinth::download::pool::Pool;
use plinth::lock::{LockOptions, Relock, lock, relock};
use plinth::lockfile::{ChangeKind, Lockfile};
use plinth::support::retry::RetryPolicy;
use plinth::{Project, Silent};
use plinth_testkit::keys::{DEFAULT_SIGNATURE_TIME, unix_time};
use plinth_testkit::{Archive, Compression, DebBuilder, Server, SigningKey, SuiteSpec};
use tempfile::TempDir;

const KEY_FILE: &str = "archive-ed25519.asc";
const DAY: u64 = 86_400;

fn key() -> SigningKey {
    SigningKey::ed25519("Test Archive Ed25519 <ed25519@test.invalid>")
}

/// Suites: (name, archive, architectures).
const SUITES: [(&str, &str, &[&str]); 4] = [
    ("trixie", "debian", &["amd64", "arm64", "riscv64"]),
    ("trixie-updates", "debian", &["amd64", "arm64", "riscv64"]),
    (
        "trixie-security",
        "debian-security",
        &["amd64", "arm64", "riscv64"],
    ),
    ("bookworm", "debian", &["amd64", "arm64"]),
];

const SETTINGS: &str = r#"architectures = ["amd64", "arm64"]
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
architectures = ["amd64", "arm64", "riscv64"]
components = ["main"]
keys = ["archive-ed25519.asc"]
suites = [
  { name = "trixie", archive = "debian" },
  { name = "trixie-updates", archive = "debian" },
  { name = "trixie-security", archive = "debian-security" },
]

[distribution.debian12]
codename = "bookworm"
version = "12"
components = ["main"]
keys = ["archive-ed25519.asc"]
suites = [{ name = "bookworm", archive = "debian" }]
"#;

const STATIC_TOML: &str = r#"name = "static"
description = "Users and time zones."
packages = ["base-files", "tzdata"]

[[exclude]]
package = "debconf"
reason = "no maintainer script runs in an image"
"#;

const BASE_TOML: &str = r#"name = "base"
description = "static plus glibc and OpenSSL."
base = "static"
packages = ["libc6", "libssl3t64"]
"#;

/// One package of the archive; `arch` is `any` (one per architecture of
/// its suite) or `all`.
#[derive(Clone)]
struct Package {
    suite: &'static str,
    name: &'static str,
    version: &'static str,
    arch: &'static str,
    fields: &'static str,
    /// The text of `usr/share/doc/<name>/changelog.Debian.gz`.
    changelog: Option<&'static str>,
    /// `usr/share/doc/<name>` is a symlink to this package's directory.
    doc_link: Option<&'static str>,
}

const fn pkg(
    suite: &'static str,
    name: &'static str,
    version: &'static str,
    arch: &'static str,
    fields: &'static str,
) -> Package {
    Package {
        suite,
        name,
        version,
        arch,
        fields,
        changelog: None,
        doc_link: None,
    }
}

const ZSTD_OLD_CHANGELOG: &str = "\
libzstd (1.5.7+dfsg-1) unstable; urgency=medium

  * New upstream release.

 -- Maintainer <m@debian.invalid>  Thu, 13 Mar 2025 23:58:55 +0200
";
const ZSTD_NEW_CHANGELOG: &str = "\
libzstd (1.5.7+dfsg-1+deb13u1) trixie-security; urgency=medium

  * Fix a heap overflow in the decoder (CVE-2026-0001).
  * Fix a denial of service (CVE-2026-0002).

 -- Security Team <security@debian.invalid>  Tue, 03 Nov 2026 18:43:52 +0100

libzstd (1.5.7+dfsg-1) unstable; urgency=medium

  * New upstream release.

 -- Maintainer <m@debian.invalid>  Thu, 13 Mar 2025 23:58:55 +0200
";
const OPENSSL_NEW_CHANGELOG: &str = "\
openssl (3.5.1-1+deb13u1) trixie-security; urgency=high

  * CVE-2026-0003: a padding oracle.
  * Build the legacy provider as its own package.

 -- Security Team <security@debian.invalid>  Tue, 03 Nov 2026 10:00:00 +0100

openssl (3.5.1-1) unstable; urgency=medium

  * New upstream release (CVE-2025-9999 was fixed upstream earlier).

 -- Maintainer <m@debian.invalid>  Mon, 07 Jul 2025 10:00:00 +0200
";

/// The archive the lockfiles are first made from.
fn first_archive() -> Vec<Package> {
    let mut out = Vec::new();
    for (suite, base_files, libc) in [
        ("trixie", "13.8", "2.41-12"),
        ("bookworm", "12.4", "2.36-9"),
    ] {
        out.extend([
            pkg(suite, "base-files", base_files, "any", "Pre-Depends: awk"),
            pkg(suite, "mawk", "1.3.4.20250131-1", "any", "Provides: awk"),
            pkg(suite, "tzdata", "2025b-4", "all", ""),
            pkg(suite, "debconf", "1.5.91", "all", "Provides: debconf-2.0"),
            pkg(suite, "libc6", libc, "any", "Source: glibc"),
            pkg(
                suite,
                "busybox-static",
                "1:1.37.0-6",
                "any",
                "Source: busybox",
            ),
            Package {
                changelog: Some(ZSTD_OLD_CHANGELOG),
                ..pkg(
                    suite,
                    "libzstd1",
                    "1.5.7+dfsg-1",
                    "any",
                    "Source: libzstd\nDepends: libc6",
                )
            },
            Package {
                doc_link: Some("openssl-common"),
                ..pkg(
                    suite,
                    "libssl3t64",
                    "3.5.1-1",
                    "any",
                    "Source: openssl\nDepends: libc6, libzstd1, openssl-common",
                )
            },
            pkg(suite, "openssl-common", "3.5.1-1", "all", "Source: openssl"),
        ]);
    }
    out.push(pkg(
        "trixie-updates",
        "tzdata",
        "2025c-0+deb13u1",
        "all",
        "Depends: debconf (>= 0.5) | debconf-2.0",
    ));
    out
}

/// The archive a few days later: security updates of libzstd1 and
/// OpenSSL (whose libssl3t64 now also needs a new package, and whose
/// changelog lives in openssl-common's directory), a point update of
/// base-files that drops mawk, and a tzdata that no longer wants debconf.
fn updated_archive() -> Vec<Package> {
    let mut out = first_archive();
    out.extend([
        Package {
            changelog: Some(ZSTD_NEW_CHANGELOG),
            ..pkg(
                "trixie-security",
                "libzstd1",
                "1.5.7+dfsg-1+deb13u1",
                "any",
                "Source: libzstd\nDepends: libc6",
            )
        },
        Package {
            doc_link: Some("openssl-common"),
            ..pkg(
                "trixie-security",
                "libssl3t64",
                "3.5.1-1+deb13u1",
                "any",
                "Source: openssl\nDepends: libc6, libzstd1, openssl-common, openssl-provider-legacy",
            )
        },
        Package {
            changelog: Some(OPENSSL_NEW_CHANGELOG),
            ..pkg(
                "trixie-security",
                "openssl-common",
                "3.5.1-1+deb13u1",
                "all",
                "Source: openssl",
            )
        },
        pkg(
            "trixie-security",
            "openssl-provider-legacy",
            "3.5.1-1+deb13u1",
            "any",
            "Source: openssl\nDepends: libc6, libssl3t64",
        ),
        pkg("trixie-updates", "base-files", "13.8+deb13u1", "any", ""),
        pkg("trixie-updates", "tzdata", "2025c-0+deb13u2", "all", ""),
    ]);
    out
}

/// `Sun, 01 Nov 2026 09:15:44 UTC` and `day` days later.
fn release_date(day: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    format!(
        "{}, {:02} Nov 2026 09:15:44 UTC",
        WEEKDAYS[(day % 7) as usize],
        day + 1
    )
}

fn fetch_options() -> FetchOptions {
    FetchOptions {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            attempts: 2,
            first_backoff: Duration::from_millis(5),
        },
    }
}

/// A project with two distributions in a temp dir, the archive it locks
/// against on a loopback mirror, and its caches.
struct Fixture {
    tmp: TempDir,
    root: PathBuf,
    mirror: PathBuf,
    _server: Server,
    cache_dir: PathBuf,
    options: LockOptions,
}

impl Fixture {
    /// The project, locked against [`first_archive`].
    fn locked() -> Self {
        for var in ["PLINTH_MIRROR_DEBIAN", "PLINTH_MIRROR_DEBIAN_SECURITY"] {
            assert!(
                std::env::var_os(var).is_none_or(|v| v.is_empty()),
                "{var} overrides the test mirrors; unset it to run these tests"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let mirror = tmp.path().join("mirror");
        fs::create_dir_all(&mirror).unwrap();
        let server = Server::serve(&mirror);
        let root = tmp.path().join("project");
        for dir in ["images", "keys"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        fs::write(root.join("keys").join(KEY_FILE), key().public_armored()).unwrap();
        fs::write(
            root.join("images/plinth.toml"),
            SETTINGS.replace("MIRROR", &server.url()),
        )
        .unwrap();
        fs::write(root.join("images/static.toml"), STATIC_TOML).unwrap();
        fs::write(root.join("images/base.toml"), BASE_TOML).unwrap();
        let apt_dir = tmp.path().join("apt");
        fs::create_dir_all(&apt_dir).unwrap();
        let fx = Fixture {
            cache_dir: tmp.path().join("cache"),
            options: LockOptions {
                offline: false,
                apt_dir,
                fetch: fetch_options(),
                network: Environment::empty(),
                now: unix_time(DEFAULT_SIGNATURE_TIME + 20 * DAY),
                allow_downgrade: false,
            },
            root,
            mirror,
            _server: server,
            tmp,
        };
        fx.publish(&first_archive(), 0);
        let project = fx.project();
        lock(&project, &fx.cache(), &fx.options, &Silent)
            .unwrap_or_else(|e| panic!("lock failed: {e}"));
        fx
    }

    /// Replaces the archive with `packages`, every Release dated `day`
    /// days after the first.
    fn publish(&self, packages: &[Package], day: u64) {
        let mut debian = Archive::new(self.mirror.join("debian"));
        let mut security = Archive::new(self.mirror.join("debian-security"));
        security.origin("Debian", "Debian-Security");
        for dir in ["debian", "debian-security"] {
            let dists = self.mirror.join(dir).join("dists");
            if dists.exists() {
                fs::remove_dir_all(dists).unwrap();
            }
        }
        for (name, archive, archs) in SUITES {
            let spec = SuiteSpec {
                date: release_date(day),
                architectures: archs.iter().map(|a| a.to_string()).collect(),
                signature_time: unix_time(DEFAULT_SIGNATURE_TIME + day * DAY),
                ..SuiteSpec::new(name).signed_by(&[&key()])
            };
            match archive {
                "debian" => debian.suite(spec),
                _ => security.suite(spec),
            };
        }
        for p in packages {
            let archs: Vec<&str> = if p.arch == "all" {
                vec!["all"]
            } else {
                SUITES.iter().find(|s| s.0 == p.suite).unwrap().2.to_vec()
            };
            let archive = if p.suite.ends_with("-security") {
                &mut security
            } else {
                &mut debian
            };
            for arch in archs {
                archive.add(p.suite, &deb(p, arch));
            }
        }
        debian.write();
        security.write();
    }

    fn project(&self) -> Project {
        Project::open(&self.root).unwrap()
    }

    fn cache(&self) -> Cache {
        Cache::at(&self.cache_dir).unwrap()
    }

    fn relock(&self) -> plinth::Result<Relock> {
        Ok(relock(
            &self.project(),
            &self.cache(),
            &self.options,
            &Silent,
        )?)
    }

    fn lockfile(&self, dist: &str) -> Lockfile {
        Lockfile::read(&self.root.join(format!("lockfiles/{dist}.lock.toml"))).unwrap()
    }

    /// Every file under the project and its sha256, to show that nothing
    /// was written.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), sha256(&fs::read(&path).unwrap()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &mut out);
        out
    }

    fn report(&self, relock: &Relock, apps: &[AppImage]) -> ChangeReport {
        let project = self.project();
        let cache = self.cache();
        let mirrors =
            Mirrors::resolve(&project.definitions.settings, &self.options.apt_dir).unwrap();
        let network = Network::machine(&Environment::empty());
        let fetcher = Fetcher::new(&network, fetch_options());
        let pool = Pool::new(&cache, mirrors, Some(fetcher));
        ChangeReport::new(&project, &relock.distributions, apps, &pool, &Silent)
    }

    fn build_options(&self, out: &str) -> BuildOptions {
        BuildOptions {
            out_dir: self.tmp.path().join(out),
            layer_cache: None,
            offline: false,
            images: Vec::new(),
            source_date_epoch: None,
            fetch: fetch_options(),
            network: Environment::empty(),
            apt_dir: self.options.apt_dir.clone(),
            apps: Vec::new(),
            app_target_dir: self.tmp.path().join("apps"),
            cargo: "cargo".into(),
            skip_app_architectures: Vec::new(),
        }
    }

    fn build(&self, options: &BuildOptions) -> Vec<plinth::digests::TagSummary> {
        build(&self.project(), &self.cache(), options, &Silent)
            .unwrap_or_else(|e| panic!("build failed: {e}"))
    }
}

/// One `.deb` of `p` for `arch`, with a copyright file, its changelog or
/// doc-directory link, and for busybox an applet table the build reads.
fn deb(p: &Package, arch: &str) -> Vec<u8> {
    let mut deb = DebBuilder::new(p.name, p.version, arch);
    for line in p.fields.lines() {
        let (field, value) = line.split_once(": ").expect("a `Field: value` line");
        deb = deb.field(field, value);
    }
    let doc = format!("/usr/share/doc/{}", p.name);
    deb = match p.doc_link {
        Some(target) => deb.symlink(&doc, target),
        None => deb.file(
            &format!("{doc}/copyright"),
            0o644,
            format!("{} {}\n", p.name, p.version),
        ),
    };
    if let Some(text) = p.changelog {
        deb = deb.file(
            &format!("{doc}/changelog.Debian.gz"),
            0o644,
            Compression::Gzip.compress(text.as_bytes()),
        );
    }
    if p.name == "busybox-static" {
        let mut binary = b"\x7fELF\x02\x01\x01 fake busybox\0".to_vec();
        // The build reads a sorted table of at least ten applets.
        for applet in [
            "[", "[[", "ash", "cat", "cp", "echo", "env", "ls", "mkdir", "rm", "sh", "true",
        ] {
            binary.extend_from_slice(applet.as_bytes());
            binary.push(0);
        }
        binary.extend_from_slice(b"\0usage\0");
        deb = deb.file("/usr/bin/busybox", 0o755, binary);
    }
    deb.build()
}

const TRIXIE: [&str; 3] = ["amd64", "arm64", "riscv64"];

#[test]
fn a_current_lock_stays_as_it_is_and_a_moved_archive_is_named_without_writing() {
    let fx = Fixture::locked();
    let before = fx.snapshot();

    let again = fx.relock().unwrap();
    assert!(again.is_current());
    assert!(again.diffs().iter().all(|d| d.is_empty()));

    // Every Release signed again two days later, nothing else changed:
    // still current, and a lock writes nothing (the epoch stays put).
    fx.publish(&first_archive(), 2);
    let resigned = fx.relock().unwrap();
    assert!(resigned.is_current(), "{:?}", resigned.diffs());
    assert_ne!(
        resigned.distributions[1].new.release,
        resigned.distributions[1].old.as_ref().unwrap().release
    );
    let report = lock(&fx.project(), &fx.cache(), &fx.options, &Silent).unwrap();
    assert!(report.written.is_empty(), "{:?}", report.written);
    assert_eq!(fx.snapshot(), before);

    fx.publish(&updated_archive(), 3);
    let moved = fx.relock().unwrap();
    assert!(!moved.is_current());
    let names: Vec<(&str, bool)> = moved
        .distributions
        .iter()
        .map(|d| (d.distribution.as_str(), d.is_current()))
        .collect();
    assert_eq!(names, [("debian12", true), ("debian13", false)]);
    let text: String = moved.diffs().iter().map(|d| d.to_string()).collect();
    let archs = TRIXIE.join(", ");
    assert_eq!(
        text,
        format!(
            "debian12: no package changes\n\
             debian13:\n\
             \x20 upgraded   base-files 13.8 → 13.8+deb13u1 ({archs}; from trixie-updates)\n\
             \x20 upgraded   libssl3t64 3.5.1-1 → 3.5.1-1+deb13u1 ({archs}; security update from trixie-security)\n\
             \x20 upgraded   libzstd1 1.5.7+dfsg-1 → 1.5.7+dfsg-1+deb13u1 ({archs}; security update from trixie-security)\n\
             \x20 upgraded   openssl-common 3.5.1-1 → 3.5.1-1+deb13u1 ({archs}; security update from trixie-security)\n\
             \x20 upgraded   tzdata 2025c-0+deb13u1 → 2025c-0+deb13u2 ({archs}; from trixie-updates)\n\
             \x20 added      openssl-provider-legacy 3.5.1-1+deb13u1 ({archs}; from trixie-security)\n\
             \x20 removed    mawk 1.3.4.20250131-1 ({archs})\n"
        )
    );
    // Re-resolving wrote nothing, and a report is written only where asked.
    assert_eq!(fx.snapshot(), before);
    let _ = fx.report(&moved, &[]);
    assert_eq!(fx.snapshot(), before);

    let report = lock(&fx.project(), &fx.cache(), &fx.options, &Silent).unwrap();
    assert_eq!(
        report.written,
        [fx.root.join("lockfiles/debian13.lock.toml")]
    );
    assert!(fx.relock().unwrap().is_current());
}

#[test]
fn the_report_has_changelogs_cves_touched_images_and_decisions() {
    let fx = Fixture::locked();
    fx.publish(&updated_archive(), 3);
    let moved = fx.relock().unwrap();
    let app = |name: &str, base: &str, variant: &str, archs: &[&str]| AppImage {
        name: name.into(),
        package: name.into(),
        version: "0.1.0".into(),
        manifest: fx.root.join("Cargo.toml"),
        base: base.into(),
        distribution: "debian13".into(),
        variant: variant.into(),
        binaries: vec![name.into()],
        args: Vec::new(),
        env: BTreeMap::new(),
        ports: Default::default(),
        labels: BTreeMap::new(),
        files: Vec::new(),
        architectures: archs.iter().map(|a| a.to_string()).collect(),
    };
    let apps = [
        app("svc", "base", "nonroot", &["amd64"]),
        app("tool", "static", "nonroot", &["amd64"]),
    ];
    let report = fx.report(&moved, &apps);
    assert!(!report.current);
    assert_eq!(
        report.cves,
        ["CVE-2026-0001", "CVE-2026-0002", "CVE-2026-0003"]
    );
    let d12 = &report.distributions[0];
    assert!(d12.current && d12.changes.is_empty());
    let d = &report.distributions[1];
    assert_eq!((d.distribution.as_str(), d.current), ("debian13", false));
    assert_eq!(d.lockfile, "lockfiles/debian13.lock.toml");
    let change = |name: &str| {
        d.changes
            .iter()
            .find(|c| c.package == name)
            .unwrap_or_else(|| panic!("no change of {name}"))
    };

    let zstd = change("libzstd1");
    assert_eq!(zstd.change, ChangeKind::Upgraded);
    assert!(zstd.security);
    assert_eq!(
        (zstd.old_suite.as_deref(), zstd.new_suite.as_deref()),
        (Some("trixie"), Some("trixie-security"))
    );
    assert_eq!(zstd.architectures, TRIXIE);
    assert_eq!(zstd.source, "libzstd");
    let versions: Vec<&str> = zstd.changelog.iter().map(|e| e.version.as_str()).collect();
    assert_eq!(versions, ["1.5.7+dfsg-1+deb13u1"]);
    assert_eq!(zstd.changelog[0].distribution, "trixie-security");
    assert!(zstd.changelog[0].text.contains("Fix a heap overflow"));
    assert_eq!(zstd.cves, ["CVE-2026-0001", "CVE-2026-0002"]);
    let touched: Vec<(&str, Vec<&str>)> = zstd
        .images
        .iter()
        .map(|i| {
            (
                i.repository.as_str(),
                i.tags.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let all = vec!["latest", "nonroot", "debug", "debug-nonroot"];
    assert_eq!(
        touched,
        [("base-debian13", all.clone()), ("svc", vec!["latest"])]
    );

    // libssl3t64's doc directory links to openssl-common's: its changelog
    // is read there, and the entries after 3.5.1-1 are the new one only.
    let ssl = change("libssl3t64");
    assert!(ssl.security);
    assert_eq!(ssl.changelog.len(), 1, "{:?}", ssl.changelog_note);
    assert_eq!(ssl.changelog[0].version, "3.5.1-1+deb13u1");
    assert_eq!(ssl.cves, ["CVE-2026-0003"]);
    assert_eq!(change("openssl-common").cves, ["CVE-2026-0003"]);

    let base_files = change("base-files");
    assert!(!base_files.security);
    assert!(base_files.changelog.is_empty());
    assert_eq!(
        base_files.changelog_note.as_deref(),
        Some(
            "no changelog: base-files 13.8+deb13u1 ships no usr/share/doc/base-files/changelog.Debian.gz"
        )
    );
    let touched: Vec<&str> = base_files
        .images
        .iter()
        .map(|i| i.repository.as_str())
        .collect();
    assert_eq!(touched, ["static-debian13", "base-debian13", "svc", "tool"]);

    let mawk = change("mawk");
    assert_eq!(mawk.change, ChangeKind::Removed);
    assert_eq!(mawk.new_version, None);
    assert_eq!(mawk.required_by, ["static: base-files"]);

    let legacy = change("openssl-provider-legacy");
    assert_eq!(legacy.change, ChangeKind::Added);
    assert_eq!(d.new_dependencies.len(), 1);
    let new_dep = &d.new_dependencies[0];
    assert_eq!(
        (new_dep.package.as_str(), new_dep.version.as_str()),
        ("openssl-provider-legacy", "3.5.1-1+deb13u1")
    );
    assert_eq!(new_dep.wanted_by, ["base: libssl3t64"]);
    assert_eq!(new_dep.architectures, TRIXIE);

    assert_eq!(d.unused_exclusions.len(), 1, "{:?}", d.unused_exclusions);
    let unused = &d.unused_exclusions[0];
    assert_eq!(
        (
            unused.image.as_str(),
            unused.package.as_str(),
            unused.since_this_change
        ),
        ("static", "debconf", true)
    );

    // Busybox is in the debug layers only: a change to it would touch the
    // debug tags alone.
    let debug_only = plinth::changes::touched::touched(
        &fx.project().definitions,
        &apps,
        "debian13",
        &["amd64".to_owned()].into(),
        &[
            "base (debug): requested".to_owned(),
            "static (debug): requested".to_owned(),
        ],
    );
    let shown: Vec<String> = debug_only
        .iter()
        .map(|t| format!("{}:{}", t.repository, t.tags.join(",")))
        .collect();
    assert_eq!(
        shown,
        [
            "static-debian13:debug,debug-nonroot",
            "base-debian13:debug,debug-nonroot"
        ]
    );

    // Written as Markdown and JSON, the JSON reading back the same.
    let path = fx.tmp.path().join("out/update.md");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (md, json) = report.write(&path).unwrap();
    assert_eq!(md, fx.tmp.path().join("out/update.md"));
    assert_eq!(json, fx.tmp.path().join("out/update.json"));
    assert_eq!(ChangeReport::read(&json).unwrap().as_ref(), Some(&report));
    let text = fs::read_to_string(&md).unwrap();
    for expected in [
        "- **debian13**: 5 upgraded (3 from security), 1 added, 1 removed",
        "| libzstd1 | **security update** | 1.5.7+dfsg-1 → 1.5.7+dfsg-1+deb13u1 | trixie-security | amd64, arm64, riscv64 | `base-debian13`, `svc` |",
        "Security update from trixie-security (amd64, arm64, riscv64). CVEs: CVE-2026-0001, CVE-2026-0002.",
        "* Fix a heap overflow in the decoder (CVE-2026-0001).",
        "**New dependency** `openssl-provider-legacy` 3.5.1-1+deb13u1",
        "**Exclusion no longer needed**: `debconf` in image `static`",
        "- CVE-2026-0003: libssl3t64 (debian13), openssl-common (debian13)",
        // Newer Release files move the epoch, and so every debian13 image.
        "Z: every image of debian13 is rebuilt with new timestamps",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[test]
fn a_downgrade_is_refused_or_named_a_downgrade() {
    let fx = Fixture::locked();
    // trixie-updates withdraws tzdata 2025c: the lock would go back to
    // trixie's 2025b-4.
    let without: Vec<Package> = first_archive()
        .into_iter()
        .filter(|p| !(p.suite == "trixie-updates" && p.name == "tzdata"))
        .collect();
    fx.publish(&without, 4);
    let before = fx.snapshot();
    match fx.relock() {
        // A plinth that refuses downgrades unless asked must say so.
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("downgrade") || e.contains("older"), "{e}");
        }
        Ok(moved) => {
            let text = moved.diffs()[1].to_string();
            assert!(
                text.contains(&format!(
                    "  downgraded tzdata 2025c-0+deb13u1 → 2025b-4 ({}; from trixie)",
                    TRIXIE.join(", ")
                )),
                "{text}"
            );
            let report = fx.report(&moved, &[]);
            let tz = &report.distributions[1].changes[0];
            assert_eq!(tz.change, ChangeKind::Downgraded);
            assert!(tz.changelog.is_empty());
            assert_eq!(
                tz.changelog_note.as_deref(),
                Some("a downgrade: the changes after 2025b-4 up to 2025c-0+deb13u1 are withdrawn")
            );
            assert!(
                plinth::changes::markdown::render(&report)
                    .contains("| tzdata | **downgraded** | 2025c-0+deb13u1 → 2025b-4 |")
            );
        }
    }
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn each_distribution_has_its_own_architectures() {
    let fx = Fixture::locked();
    let trixie = fx.lockfile("debian13");
    let bookworm = fx.lockfile("debian12");
    assert_eq!(trixie.package.keys().collect::<Vec<_>>(), TRIXIE);
    assert_eq!(
        bookworm.package.keys().collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
    let archs = |l: &Lockfile| -> Vec<String> {
        l.image
            .iter()
            .filter(|i| i.name == "static")
            .map(|i| i.architecture.to_string())
            .collect()
    };
    assert_eq!(archs(&trixie), TRIXIE);
    assert_eq!(archs(&bookworm), ["amd64", "arm64"]);
    assert_eq!(
        trixie.find("riscv64", "libc6").unwrap().filename,
        "pool/main/g/glibc/libc6_2.41-12_riscv64.deb"
    );

    let tags = fx.build(&fx.build_options("out"));
    let platforms = |repo: &str| -> Vec<String> {
        let t = tags
            .iter()
            .find(|t| t.repository == repo && t.tag == "latest")
            .unwrap();
        t.platform.iter().map(|p| p.architecture.clone()).collect()
    };
    assert_eq!(platforms("base-debian13"), TRIXIE);
    assert_eq!(platforms("base-debian12"), ["amd64", "arm64"]);
    let layout = fx.tmp.path().join("out/base-debian13");
    let index = plinth::oci::read_layout(&layout).unwrap();
    let latest: plinth::oci::Index =
        plinth::oci::read_json(&layout, index.find_ref("latest").unwrap()).unwrap();
    let oci: Vec<String> = latest
        .manifests
        .iter()
        .map(|m| m.platform.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(oci, ["linux/amd64", "linux/arm64/v8", "linux/riscv64"]);
    assert!(index.find_ref("latest-riscv64").is_some());

    // A list that names an architecture twice is refused, naming it.
    let settings = fx.root.join("images/plinth.toml");
    let text = fs::read_to_string(&settings).unwrap();
    fs::write(
        &settings,
        text.replace(r#""arm64", "riscv64"]"#, r#""arm64", "arm64"]"#),
    )
    .unwrap();
    let err = Project::open(&fx.root).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: distribution debian13: `architectures` names \"arm64\" twice",
            settings.display()
        )
    );
}

#[test]
fn diff_names_the_tags_packages_and_files_a_relock_moves() {
    let fx = Fixture::locked();
    fx.build(&fx.build_options("before"));
    fx.publish(&updated_archive(), 3);
    lock(&fx.project(), &fx.cache(), &fx.options, &Silent).unwrap();
    fx.build(&fx.build_options("after"));

    let side = |dir: &str| Side::local(&fx.tmp.path().join(dir)).unwrap();
    let diff = plinth::diff::diff(&side("before"), &side("after"), &Silent).unwrap();
    // debian12's lock did not move, so none of its 8 tags did.
    assert_eq!(diff.unchanged, 8);
    let moved: Vec<String> = diff
        .tags
        .iter()
        .map(|t| format!("{}:{}", t.repository, t.tag))
        .collect();
    let mut expected = Vec::new();
    for repo in ["base-debian13", "static-debian13"] {
        for tag in ["debug", "debug-nonroot", "latest", "nonroot"] {
            expected.push(format!("{repo}:{tag}"));
        }
    }
    assert_eq!(moved, expected);
    let base = &diff.tags[2];
    assert_eq!(base.platforms.len(), 3);
    let amd64 = &base.platforms[0];
    assert_eq!(amd64.architecture, "amd64");
    assert!(amd64.old_size.is_some() && amd64.new_size.is_some());
    let packages: Vec<String> = amd64.packages.iter().map(|p| p.describe()).collect();
    assert_eq!(
        packages,
        [
            "base-files 13.8 → 13.8+deb13u1",
            "libssl3t64 3.5.1-1 → 3.5.1-1+deb13u1",
            "libzstd1 1.5.7+dfsg-1 → 1.5.7+dfsg-1+deb13u1",
            "mawk 1.3.4.20250131-1 removed",
            "openssl-common 3.5.1-1 → 3.5.1-1+deb13u1",
            "openssl-provider-legacy 3.5.1-1+deb13u1 added",
            "tzdata 2025c-0+deb13u1 → 2025c-0+deb13u2",
        ]
    );
    let files: Vec<String> = amd64.files.iter().map(|f| f.describe()).collect();
    assert!(
        files.contains(&"/usr/share/doc/mawk/copyright: removed".to_owned()),
        "{files:#?}"
    );
    assert!(
        files.contains(&"/usr/share/doc/openssl-provider-legacy/copyright: added".to_owned()),
        "{files:#?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("/var/lib/dpkg/status.d/libzstd1: content file sha256:")),
        "{files:#?}"
    );

    // One layout against another: its tags only.
    let one = plinth::diff::diff(
        &side("before/static-debian12"),
        &side("after/static-debian12"),
        &Silent,
    )
    .unwrap();
    assert!(one.is_empty());
    assert_eq!(one.unchanged, 4);

    // Into the change report, which reads back with it.
    let path = fx.tmp.path().join("update");
    let report = ChangeReport {
        images: Some(diff.clone()),
        ..ChangeReport::default()
    };
    report.write(&path).unwrap();
    let read = ChangeReport::read(&path).unwrap().unwrap();
    assert_eq!(read.images.as_ref(), Some(&diff));
    let md = fs::read_to_string(fx.tmp.path().join("update.md")).unwrap();
    assert!(md.contains("8 tags differ, 8 are the same"), "{md}");
    assert!(md.contains("| `base-debian13:latest` | (index) |"), "{md}");
    assert!(
        md.contains("- libzstd1 1.5.7+dfsg-1 → 1.5.7+dfsg-1+deb13u1"),
        "{md}"
    );
}

#[test]
fn verify_judges_by_the_record_and_explains_against_the_reference() {
    let fx = Fixture::locked();
    let record_path = RecordedDigests::path(&fx.root.join("lockfiles"));
    let tags = fx.build(&fx.build_options("images"));
    let mut recorded = RecordedDigests::default();
    recorded.merge(&tags);
    recorded.write(&record_path).unwrap();
    // Another branch's build: other bytes throughout.
    let stale = BuildOptions {
        source_date_epoch: Some(1_700_000_000),
        ..fx.build_options("stale")
    };
    fx.build(&stale);

    let verify = |reference: &str| {
        let options = fx.build_options(&format!("verify-{}", rand_suffix()));
        plinth::verify::verify(
            &fx.project(),
            &fx.cache(),
            &options,
            Some(&fx.tmp.path().join(reference)),
            &Silent,
        )
        .unwrap()
    };
    let report = verify("stale");
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert!(report.explanations.is_empty(), "{:?}", report.explanations);
    assert_eq!(report.tags, 16);

    // A record that says otherwise fails; the reference explains.
    let mut edited = recorded.clone();
    let entry = edited
        .image
        .iter_mut()
        .find(|t| t.repository == "static-debian12" && t.tag == "latest")
        .unwrap();
    entry.platform[0].manifest = format!("sha256:{}", "0".repeat(64));
    edited.write(&record_path).unwrap();
    let report = verify("images");
    assert_eq!(
        report.differences,
        [format!(
            "static-debian12:latest (amd64): manifest digest {}, recorded sha256:{}",
            tags.iter()
                .find(|t| t.repository == "static-debian12" && t.tag == "latest")
                .unwrap()
                .platform[0]
                .manifest,
            "0".repeat(64)
        )]
    );
    // Only the image the record disagrees with is explained.
    assert_eq!(report.explanations.len(), 1, "{:?}", report.explanations);
    assert!(
        report.explanations[0].starts_with("static-debian12:latest (amd64): the reference layout")
            && report.explanations[0].contains("holds the rebuilt image: the record differs"),
        "{:?}",
        report.explanations
    );
    let report = verify("stale");
    assert!(
        report
            .explanations
            .iter()
            .all(|l| l.starts_with("static-debian12:latest (")),
        "{:?}",
        report.explanations
    );
    assert!(
        report
            .explanations
            .iter()
            .any(|l| l.contains(": layer 1 (") && l.contains("mtime")),
        "{:?}",
        report.explanations
    );
}

/// A fresh directory name per call (verify wants an empty output dir).
fn rand_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos}-{}", std::process::id())
}

#[test]
fn diff_reads_the_old_images_from_a_registry() {
    let registry = match plinth_testkit::registry::Registry::start(None) {
        Ok(r) => r,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "docker-registry is required in CI: {e}"
            );
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    let fx = Fixture::locked();
    let tags = fx.build(&fx.build_options("before"));
    let mut recorded = RecordedDigests::default();
    recorded.merge(&tags);
    let prefix = format!("{}/golden", registry.host());
    let client = plinth::registry::Client::new(
        plinth::registry::Target::parse(&prefix, true).unwrap(),
        None,
        plinth::registry::ClientOptions::default(),
    );
    let options = plinth::publish::PublishOptions {
        out_dir: fx.tmp.path().join("before"),
        images: Vec::new(),
        tags: Vec::new(),
        dry_run: false,
    };
    plinth::publish::publish(&client, &recorded, &options, None, &Silent).unwrap();
    fx.publish(&updated_archive(), 3);
    lock(&fx.project(), &fx.cache(), &fx.options, &Silent).unwrap();
    fx.build(&fx.build_options("after"));
    let after = fx.tmp.path().join("after");

    // The registry prefix against a directory of layouts says what the
    // two directories would.
    let local = plinth::diff::diff(
        &Side::local(&fx.tmp.path().join("before")).unwrap(),
        &Side::local(&after).unwrap(),
        &Silent,
    )
    .unwrap();
    let remote = plinth::diff::diff(
        &Side::parse(&prefix, true).unwrap(),
        &Side::local(&after).unwrap(),
        &Silent,
    )
    .unwrap();
    assert_eq!(remote.old, prefix);
    assert_eq!(remote.tags, local.tags);
    assert_eq!(remote.unchanged, local.unchanged);

    // One repository and tag against one layout.
    let one = plinth::diff::diff(
        &Side::parse(&format!("{prefix}/base-debian13:latest"), true).unwrap(),
        &Side::local(&after.join("base-debian13")).unwrap(),
        &Silent,
    )
    .unwrap();
    let moved: Vec<String> = one
        .tags
        .iter()
        .map(|t| format!("{}:{}", t.repository, t.tag))
        .collect();
    assert_eq!(moved, ["base-debian13:latest"]);
    assert_eq!(one.tags[0], local.tags[2]);
    assert!(
        Side::parse(&format!("{prefix}/base-debian13:bad tag"), true).is_err(),
        "a tag with a space"
    );
}
