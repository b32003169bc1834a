//! The build stage end to end, against a small archive signed with an
//! Ed25519 key, served on loopback and locked first: what the layouts hold
//! (usr-merge, the CA bundle, dpkg records, busybox applets, users), that a
//! build does not depend on the thread count, and that each way a package,
//! a mirror or the lock can be wrong fails with one line naming the
//! culprit while the out dir keeps exactly what it held before.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{settings_toml, sha256};
use plinth::build::{BuildOptions, build};
use plinth::digests::TagSummary;
use plinth::download::cache::Cache;
use plinth::download::http::FetchOptions;
use plinth::lock::{LockOptions, lock};
use plinth::net::Environment;
use plinth::oci::{self, Descriptor, ImageConfig, Index, Manifest};
use plinth::support::retry::RetryPolicy;
use plinth::tarfs::{Entry, EntryKind};
use plinth::{Project, Silent};
use plinth_testkit::keys::{DEFAULT_SIGNATURE_TIME, unix_time};
use plinth_testkit::{
    Archive, Compression, DebBuilder, PoolEntry, RawEntry, Server, SigningKey, SuiteSpec,
};
use tempfile::TempDir;

const DIST: &str = "debian13";
const SUITE: &str = "trixie";
const ARCHS: [&str; 2] = ["amd64", "arm64"];
const KEY_FILE: &str = "archive-ed25519.asc";
const TAGS: [&str; 4] = ["latest", "nonroot", "debug", "debug-nonroot"];
const STATIC: &str = "static-debian13";
const BASE: &str = "base-debian13";

const STATIC_TOML: &str = r#"name = "static"
description = "Users, certificates and os-release; no libc."
packages = ["base-files", "ca-certificates"]
ca-bundle = "ca-certificates"
"#;

const BASE_TOML: &str = r#"name = "base"
description = "static plus glibc."
base = "static"
packages = ["libc6"]
"#;

const DEBIAN_VERSION: &str = "13.1\n";
const RUN_PARTS: &str = "#!/bin/sh\n# run-parts, shipped in /bin before usr-merge\n";

/// (path under /usr/share/ca-certificates, contents), deliberately out of
/// order and one without its final newline.
const CERTS: [(&str, &str); 3] = [
    (
        "mozilla/Zeta_Root_CA.crt",
        "-----BEGIN CERTIFICATE-----\nWmV0YQ==\n-----END CERTIFICATE-----\n",
    ),
    (
        "mozilla/Alpha_Root_CA.crt",
        "-----BEGIN CERTIFICATE-----\nQWxwaGE=\n-----END CERTIFICATE-----",
    ),
    (
        "mozilla/Mu_Root_CA.crt",
        "-----BEGIN CERTIFICATE-----\nTXU=\n-----END CERTIFICATE-----\n",
    ),
];
const BUNDLE: &str = "-----BEGIN CERTIFICATE-----\nQWxwaGE=\n-----END CERTIFICATE-----\n\
-----BEGIN CERTIFICATE-----\nTXU=\n-----END CERTIFICATE-----\n\
-----BEGIN CERTIFICATE-----\nWmV0YQ==\n-----END CERTIFICATE-----\n";

/// What busybox keeps in its binary: a sorted NUL-separated name table
/// starting with `[` and `[[`.
const APPLETS: [&str; 12] = [
    "[", "[[", "ash", "cat", "cp", "echo", "env", "ls", "mkdir", "rm", "sh", "true",
];

fn key() -> SigningKey {
    SigningKey::ed25519("Test Archive Ed25519 <ed25519@test.invalid>")
}

/// The multiarch triplet and the ELF loader's name on `arch`.
fn triplet_and_loader(arch: &str) -> (&'static str, &'static str) {
    match arch {
        "amd64" => ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
        "arm64" => ("aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
        other => panic!("no loader for {other}"),
    }
}

fn base_files(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.file("/etc/debian_version", 0o644, DEBIAN_VERSION)
        .file(
            "/usr/lib/os-release",
            0o644,
            "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n",
        )
        .symlink("/etc/os-release", "../usr/lib/os-release")
        .file("/bin/run-parts", 0o755, RUN_PARTS)
}

fn ca_certificates(deb: DebBuilder, _arch: &str) -> DebBuilder {
    CERTS
        .iter()
        .fold(deb, |deb, (path, pem)| {
            deb.file(&format!("/usr/share/ca-certificates/{path}"), 0o644, pem)
        })
        .file("/usr/sbin/update-ca-certificates", 0o755, "#!/bin/sh\n")
}

/// The loader in the triplet directory, reached on amd64 through
/// `/lib64` (which usr-merge turns into `usr/lib64`) and on arm64 through
/// `/lib`.
fn libc6(deb: DebBuilder, arch: &str) -> DebBuilder {
    let (triplet, loader) = triplet_and_loader(arch);
    let deb = deb
        .field("Source", "glibc")
        .file(&format!("/lib/{triplet}/libc.so.6"), 0o755, "\x7fELF libc")
        .file(&format!("/lib/{triplet}/{loader}"), 0o755, "\x7fELF ld.so");
    if arch == "amd64" {
        deb.symlink(
            &format!("/lib64/{loader}"),
            &format!("/lib/{triplet}/{loader}"),
        )
    } else {
        deb.symlink(&format!("/lib/{loader}"), &format!("{triplet}/{loader}"))
    }
}

fn busybox_binary() -> Vec<u8> {
    let mut bytes = b"\x7fELF\x02\x01\x01 fake busybox\0".to_vec();
    for applet in APPLETS {
        bytes.extend_from_slice(applet.as_bytes());
        bytes.push(0);
    }
    bytes.extend_from_slice(b"\0usage strings follow\0");
    bytes
}

fn busybox_static(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.field("Source", "busybox")
        .file("/usr/bin/busybox", 0o755, busybox_binary())
}

/// Adds a package's files to a fresh [`DebBuilder`] for one architecture.
type Contents = fn(DebBuilder, &str) -> DebBuilder;

fn no_files(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb
}

/// A `.deb` as dpkg-deb writes it, but with the data member named
/// `member`, which the kit's builder would not name (it knows only the
/// four real compressions).
fn deb_with_data_member(deb: &DebBuilder, member: &str) -> Vec<u8> {
    let control = Compression::Xz.compress(&deb.control_tar());
    let members: [(&str, &[u8]); 3] = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", &control),
        (member, &deb.data_tar()),
    ];
    plinth_testkit::ar_archive(&members, 0)
}

/// A project with a lockfile in a temp dir, the archive it was locked
/// against, the loopback mirror serving it, and its caches.
struct Fixture {
    tmp: TempDir,
    root: PathBuf,
    debian: Archive,
    pool: Vec<PoolEntry>,
    server: Server,
    cache_dir: PathBuf,
    apt_dir: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        assert!(
            std::env::var_os("PLINTH_MIRROR_DEBIAN").is_none_or(|v| v.is_empty()),
            "PLINTH_MIRROR_DEBIAN overrides the test mirror; unset it to run these tests"
        );
        let tmp = tempfile::tempdir().unwrap();
        let mirror = tmp.path().join("mirror");
        let mut debian = Archive::new(mirror.join("debian"));
        debian.suite(SuiteSpec::new(SUITE).signed_by(&[&key()]));
        let apt_dir = tmp.path().join("apt");
        fs::create_dir_all(&apt_dir).unwrap();
        let mut fx = Fixture {
            root: tmp.path().join("project"),
            cache_dir: tmp.path().join("cache"),
            apt_dir,
            debian,
            pool: Vec::new(),
            server: Server::serve(&mirror),
            tmp,
        };
        fx.publish("base-files", "13.8", "any", base_files);
        fx.publish("ca-certificates", "20250419", "all", ca_certificates);
        fx.publish("libc6", "2.41-12", "any", libc6);
        fx.publish("busybox-static", "1:1.37.0-6", "any", busybox_static);
        fx.debian.write();

        fs::create_dir_all(fx.root.join("keys")).unwrap();
        fs::write(fx.root.join("keys").join(KEY_FILE), key().public_armored()).unwrap();
        fx.write_settings();
        fx.write_image("static", STATIC_TOML);
        fx.write_image("base", BASE_TOML);
        fx.lock_ok();
        fx
    }

    /// Adds a package to the archive (one per architecture for `any`);
    /// call `self.debian.write()` to publish.
    fn publish(&mut self, name: &str, version: &str, arch: &str, contents: Contents) {
        self.publish_with(name, version, arch, contents, DebBuilder::build);
    }

    fn publish_with(
        &mut self,
        name: &str,
        version: &str,
        arch: &str,
        contents: Contents,
        pack: impl Fn(&DebBuilder) -> Vec<u8>,
    ) {
        let archs = if arch == "any" {
            ARCHS.to_vec()
        } else {
            vec![arch]
        };
        for arch in archs {
            let deb = DebBuilder::new(name, version, arch).file(
                &format!("/usr/share/doc/{name}/copyright"),
                0o644,
                format!("{name} {version}: public domain\n"),
            );
            let deb = contents(deb, arch);
            self.pool.push(self.debian.add(SUITE, &pack(&deb)));
        }
    }

    /// The newest published `package` for `arch` (or `all`).
    fn pool_entry(&self, package: &str, arch: &str) -> &PoolEntry {
        self.pool
            .iter()
            .rev()
            .find(|e| e.package == package && (e.architecture == arch || e.architecture == "all"))
            .unwrap_or_else(|| panic!("{package} ({arch}) is not in the pool"))
    }

    fn write_settings(&self) {
        let mirrors = [("debian", format!("{}/debian", self.server.url()))];
        fs::create_dir_all(self.root.join("images")).unwrap();
        fs::write(
            self.root.join("images/plinth.toml"),
            settings_toml(&[KEY_FILE], &mirrors, &[(SUITE, "debian")]),
        )
        .unwrap();
    }

    fn write_image(&self, name: &str, text: &str) {
        fs::write(self.root.join(format!("images/{name}.toml")), text).unwrap();
    }

    /// Defines `app` on top of `base` with these packages and extra TOML,
    /// and locks it.
    fn lock_app(&self, packages: &[&str], extra: &str) {
        let packages: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
        self.write_image(
            "app",
            &format!(
                "name = \"app\"\ndescription = \"An application.\"\nbase = \"base\"\npackages = [{}]\n{extra}",
                packages.join(", ")
            ),
        );
        self.lock_ok();
    }

    fn lock_ok(&self) {
        let options = LockOptions {
            offline: false,
            apt_dir: self.apt_dir.clone(),
            fetch: fetch_options(),
            network: Environment::empty(),
            now: unix_time(DEFAULT_SIGNATURE_TIME + 86_400),
            allow_downgrade: false,
        };
        let project = Project::open(&self.root).unwrap();
        let cache = Cache::at(&self.cache_dir).unwrap();
        lock(&project, &cache, &options, &Silent).unwrap_or_else(|e| panic!("lock failed: {e}"));
    }

    fn lockfile_path(&self) -> PathBuf {
        self.root.join(format!("lockfiles/{DIST}.lock.toml"))
    }

    /// Options for a build of every image into `<tmp>/out`.
    fn options(&self) -> BuildOptions {
        BuildOptions {
            out_dir: self.tmp.path().join("out"),
            layer_cache: None,
            offline: false,
            images: Vec::new(),
            source_date_epoch: None,
            fetch: fetch_options(),
            network: Environment::empty(),
            apt_dir: self.apt_dir.clone(),
            apps: Vec::new(),
            app_target_dir: self.tmp.path().join("apps"),
            cargo: "cargo".into(),
            skip_app_architectures: Vec::new(),
        }
    }

    fn options_into(&self, out_dir: &Path) -> BuildOptions {
        BuildOptions {
            out_dir: out_dir.to_owned(),
            ..self.options()
        }
    }

    fn build(&self, options: &BuildOptions) -> plinth::Result<Vec<TagSummary>> {
        let project = Project::open(&self.root)?;
        let cache = Cache::at(&self.cache_dir)?;
        build(&project, &cache, options, &Silent)
    }

    fn build_ok(&self, options: &BuildOptions) -> Vec<TagSummary> {
        self.build(options)
            .unwrap_or_else(|e| panic!("build failed: {e}"))
    }

    /// Builds from an empty download cache, expecting a one-line error
    /// and the out dir exactly as it was (no new, half-written or
    /// temporary file, whether it held layouts or nothing).
    fn build_fails(&self, options: &BuildOptions) -> String {
        self.clear_cache();
        let before = snapshot(&options.out_dir);
        let err = match self.build(options) {
            Ok(_) => panic!("build succeeded"),
            Err(e) => e.to_string(),
        };
        assert!(!err.contains('\n'), "error is not one line: {err}");
        assert_same_tree(&before, &snapshot(&options.out_dir), &err);
        err
    }

    fn clear_cache(&self) {
        if self.cache_dir.exists() {
            fs::remove_dir_all(&self.cache_dir).unwrap();
        }
    }

    /// `/debian/<pool file>`, as the mirror sees the request.
    fn request_path(entry: &PoolEntry) -> String {
        format!("/debian/{}", entry.filename)
    }
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

/// Runs `f` on a rayon pool of `threads` threads.
fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Every file and directory under a dir (hidden ones included), by path
/// relative to it; directories map to `None`.
type Snapshot = BTreeMap<PathBuf, Option<Vec<u8>>>;

/// The [`Snapshot`] of `dir`; empty when `dir` is absent.
fn snapshot(dir: &Path) -> Snapshot {
    fn walk(dir: &Path, base: &Path, out: &mut Snapshot) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(base).unwrap().to_owned();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                out.insert(rel, None);
                walk(&path, base, out);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn assert_same_tree(a: &Snapshot, b: &Snapshot, context: &str) {
    let differing: Vec<&PathBuf> = a
        .keys()
        .chain(b.keys())
        .filter(|p| a.get(*p) != b.get(*p))
        .collect();
    assert!(
        differing.is_empty(),
        "the out dirs differ ({context}) at {differing:?}"
    );
}

/// Checks that every blob the layout's index reaches is there, with its
/// digest and size, and returns the index.
fn assert_complete(layout: &Path) -> Index {
    let index = oci::read_layout(layout).unwrap_or_else(|e| panic!("{e}"));
    let mut pending = index.manifests.clone();
    while let Some(desc) = pending.pop() {
        let bytes = oci::read_described(layout, &desc).unwrap_or_else(|e| panic!("{e}"));
        match desc.media_type.as_str() {
            oci::MEDIA_TYPE_IMAGE_INDEX => {
                let child: Index = serde_json::from_slice(&bytes).unwrap();
                pending.extend(child.manifests);
            }
            oci::MEDIA_TYPE_IMAGE_MANIFEST => {
                let child: Manifest = serde_json::from_slice(&bytes).unwrap();
                pending.push(child.config);
                pending.extend(child.layers);
            }
            _ => {}
        }
    }
    index
}

fn manifest(layout: &Path, tag: &str) -> Manifest {
    let index = oci::read_layout(layout).unwrap();
    let desc = index
        .find_ref(tag)
        .unwrap_or_else(|| panic!("{}: no tag {tag}", layout.display()));
    oci::read_json(layout, desc).unwrap()
}

fn config(layout: &Path, tag: &str) -> ImageConfig {
    oci::read_json(layout, &manifest(layout, tag).config).unwrap()
}

/// A layer's entries by path.
struct Tree(BTreeMap<String, Entry>);

impl Tree {
    fn read(layout: &Path, desc: &Descriptor) -> Tree {
        let blob = oci::read_described(layout, desc).unwrap();
        let entries = plinth::layer::read_layer(&blob, &plinth::tarfs::TarLimits::NONE).unwrap();
        Tree(entries.into_iter().map(|e| (e.path.clone(), e)).collect())
    }

    /// The layers of `tag` in `layout`, bottom first.
    fn layers(layout: &Path, tag: &str) -> Vec<Tree> {
        let manifest = manifest(layout, tag);
        manifest
            .layers
            .iter()
            .map(|l| Tree::read(layout, l))
            .collect()
    }

    fn entry(&self, path: &str) -> &Entry {
        self.0
            .get(path)
            .unwrap_or_else(|| panic!("no {path} in the layer: {:?}", self.0.keys()))
    }

    fn text(&self, path: &str) -> String {
        match &self.entry(path).kind {
            EntryKind::File(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
            other => panic!("{path} is not a file: {other:?}"),
        }
    }

    fn link(&self, path: &str) -> &str {
        match &self.entry(path).kind {
            EntryKind::Symlink(target) => target,
            other => panic!("{path} is not a symlink: {other:?}"),
        }
    }

    fn paths_under(&self, dir: &str) -> Vec<&str> {
        let prefix = format!("{dir}/");
        self.0
            .keys()
            .filter(|p| *p == dir || p.starts_with(&prefix))
            .map(String::as_str)
            .collect()
    }
}

fn repo_tags(layout: &Path) -> Vec<String> {
    let mut tags: Vec<String> = assert_complete(layout)
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(oci::ANNOTATION_REF_NAME).cloned())
        .collect();
    tags.sort();
    tags
}

#[test]
fn builds_merged_usr_certificates_users_and_debug_tools() {
    let fx = Fixture::new();
    let options = fx.options();
    let summaries = fx.build_ok(&options);
    let out = &options.out_dir;

    let tagged: Vec<(&str, &str)> = summaries
        .iter()
        .map(|s| (s.repository.as_str(), s.tag.as_str()))
        .collect();
    let expected: Vec<(&str, &str)> = [STATIC, BASE]
        .iter()
        .flat_map(|r| TAGS.map(|t| (*r, t)))
        .collect();
    assert_eq!(tagged, expected);
    let mut tags: Vec<String> = TAGS
        .iter()
        .flat_map(|t| {
            std::iter::once(t.to_string()).chain(ARCHS.iter().map(move |a| format!("{t}-{a}")))
        })
        .collect();
    tags.sort();
    for repo in [STATIC, BASE] {
        assert_eq!(repo_tags(&out.join(repo)), tags, "{repo}");
    }

    let static_dir = out.join(STATIC);
    let base_dir = out.join(BASE);
    for arch in ARCHS {
        let (triplet, loader) = triplet_and_loader(arch);
        let static_manifest = manifest(&static_dir, &format!("latest-{arch}"));
        let [bottom] = &Tree::layers(&static_dir, &format!("latest-{arch}"))[..] else {
            panic!("static has one layer");
        };

        // usr-merge: the links are the build's, the package's /bin is not.
        let mut merged = vec!["bin", "lib", "sbin"];
        if arch == "amd64" {
            merged.push("lib64");
        } else {
            assert!(!bottom.0.contains_key("lib64"), "{arch} has a /lib64");
        }
        for dir in merged {
            assert_eq!(bottom.link(dir), format!("usr/{dir}"), "{arch}");
            assert!(bottom.entry(&format!("usr/{dir}")).is_dir(), "{arch} {dir}");
        }
        assert_eq!(bottom.text("usr/bin/run-parts"), RUN_PARTS);
        assert_eq!(bottom.paths_under("bin"), ["bin"], "{arch}");
        assert_eq!(bottom.text("etc/debian_version"), DEBIAN_VERSION);
        // os-release is the build's, replacing base-files' own.
        let os_release = bottom.text("usr/lib/os-release");
        assert!(
            os_release.starts_with("PRETTY_NAME=\"Distroless\"\n"),
            "{os_release}"
        );
        assert_eq!(bottom.link("etc/os-release"), "../usr/lib/os-release");

        // The CA bundle; of ca-certificates only its copyright stays.
        assert_eq!(bottom.text("etc/ssl/certs/ca-certificates.crt"), BUNDLE);
        assert!(bottom.paths_under("usr/share/ca-certificates").is_empty());
        assert!(!bottom.0.contains_key("usr/sbin/update-ca-certificates"));
        assert!(
            bottom
                .text("usr/share/doc/ca-certificates/copyright")
                .starts_with("ca-certificates 20250419")
        );

        for package in ["base-files", "ca-certificates"] {
            let status = bottom.text(&format!("var/lib/dpkg/status.d/{package}"));
            assert!(
                status.starts_with(&format!(
                    "Package: {package}\nStatus: install ok installed\n"
                )),
                "{status}"
            );
        }

        let passwd = bottom.text("etc/passwd");
        let users: Vec<&str> = passwd
            .lines()
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(users, ["root", "nobody", "nonroot"]);
        let home = bottom.entry("home/nonroot");
        assert!(home.is_dir());
        assert_eq!((home.uid, home.gid, home.mode), (65532, 65532, 0o700));

        // base stands on static's very layer and adds glibc through the
        // merged links.
        for tag in TAGS {
            let layers = manifest(&base_dir, &format!("{tag}-{arch}")).layers;
            assert_eq!(layers[0], static_manifest.layers[0], "{tag}-{arch}");
        }
        let [_, libc] = &Tree::layers(&base_dir, &format!("latest-{arch}"))[..] else {
            panic!("base has two layers");
        };
        assert_eq!(
            libc.text(&format!("usr/lib/{triplet}/libc.so.6")),
            "\x7fELF libc"
        );
        if arch == "amd64" {
            assert_eq!(
                libc.link(&format!("usr/lib64/{loader}")),
                format!("/lib/{triplet}/{loader}")
            );
        } else {
            assert_eq!(
                libc.link(&format!("usr/lib/{loader}")),
                format!("{triplet}/{loader}")
            );
        }
        for top in ["bin", "lib", "lib64", "sbin"] {
            assert!(libc.paths_under(top).is_empty(), "{arch}: base has /{top}");
        }
        assert!(
            libc.text("var/lib/dpkg/status.d/libc6")
                .starts_with("Package: libc6\nStatus: install ok installed\n")
        );

        // The debug layer: busybox and one link per applet of its table.
        let [_, _, debug] = &Tree::layers(&base_dir, &format!("debug-{arch}"))[..] else {
            panic!("base debug has three layers");
        };
        let applets: Vec<&str> = debug
            .paths_under("busybox")
            .into_iter()
            .filter(|p| !matches!(*p, "busybox" | "busybox/busybox"))
            .collect();
        let expected: Vec<String> = APPLETS.iter().map(|a| format!("busybox/{a}")).collect();
        assert_eq!(applets, expected, "{arch}");
        for applet in applets {
            assert_eq!(debug.link(applet), "busybox");
        }
        let binary = ["busybox/busybox", "usr/bin/busybox"].iter().find_map(|p| {
            match &debug.entry(p).kind {
                EntryKind::File(bytes) => Some(bytes.to_vec()),
                _ => None,
            }
        });
        assert_eq!(binary, Some(busybox_binary()));

        let debug_config = config(&base_dir, &format!("debug-nonroot-{arch}"));
        assert_eq!(
            debug_config.config.entrypoint,
            Some(vec!["/busybox/sh".to_owned()])
        );
        assert_eq!(debug_config.config.user.as_deref(), Some("65532"));
        assert_eq!(
            debug_config.config.working_dir.as_deref(),
            Some("/home/nonroot")
        );
        assert_eq!(debug_config.rootfs.diff_ids.len(), 3);
    }
}

#[test]
fn builds_the_same_bytes_whatever_the_thread_count_or_layer_cache() {
    let fx = Fixture::new();
    let layer_cache = Some(fx.tmp.path().join("layers"));
    let many = BuildOptions {
        layer_cache: layer_cache.clone(),
        ..fx.options_into(&fx.tmp.path().join("out-4"))
    };
    let one = fx.options_into(&fx.tmp.path().join("out-1"));
    let cached = BuildOptions {
        layer_cache,
        ..fx.options_into(&fx.tmp.path().join("out-cached"))
    };
    let summaries = with_threads(4, || fx.build_ok(&many));
    fx.clear_cache();
    assert_eq!(with_threads(1, || fx.build_ok(&one)), summaries);
    // Every layer comes from the layer cache: no package is fetched.
    fx.clear_cache();
    fx.server.clear_requests();
    assert_eq!(fx.build_ok(&cached), summaries);
    assert_eq!(fx.server.requests(), Vec::<String>::new());

    let reference = snapshot(&many.out_dir);
    assert!(reference.contains_key(Path::new("SHA256SUMS")));
    assert!(reference.contains_key(&Path::new(BASE).join("index.json")));
    assert_same_tree(&reference, &snapshot(&one.out_dir), "4 threads vs 1");
    assert_same_tree(&reference, &snapshot(&cached.out_dir), "layer cache");
}

#[test]
fn refuses_a_package_whose_hash_differs_from_the_lock() {
    let fx = Fixture::new();
    let libc = fx.pool_entry("libc6", "amd64").clone();
    fx.debian.corrupt_pool_file(&libc.filename);
    let served = sha256(&fs::read(&libc.path).unwrap());
    fx.server.clear_requests();
    assert_eq!(
        fx.build_fails(&fx.options()),
        format!(
            "{}: sha256 mismatch: the lock says {}, the mirror served {served}",
            libc.filename, libc.sha256
        )
    );
    // One retry, in case the mirror was caught mid-update.
    assert_eq!(fx.server.hits(&Fixture::request_path(&libc)), 2);
}

#[test]
fn a_package_larger_than_the_lock_says_is_cut_off_and_not_fetched_again() {
    let fx = Fixture::new();
    let libc = fx.pool_entry("libc6", "amd64").clone();
    let path = Fixture::request_path(&libc);
    fx.server.endless(&path, usize::MAX);
    fx.server.clear_requests();
    let url = format!("{}{path}", fx.server.url());
    assert_eq!(
        fx.build_fails(&fx.options()),
        format!(
            "GET {url}: the body goes on past the {} bytes expected",
            libc.size
        )
    );
    assert_eq!(fx.server.hits(&path), 1);
}

#[test]
fn refetches_a_corrupt_cache_entry() {
    let fx = Fixture::new();
    let options = fx.options();
    fx.build_ok(&options);
    let built = snapshot(&options.out_dir);

    let libc = fx.pool_entry("libc6", "arm64");
    let cached = fx
        .cache_dir
        .join("sha256")
        .join(&libc.sha256[..2])
        .join(&libc.sha256);
    assert!(cached.exists(), "{} is not cached", libc.filename);
    fs::write(&cached, b"garbage").unwrap();
    fx.server.clear_requests();
    fx.build_ok(&options);
    assert_eq!(fx.server.hits(&Fixture::request_path(libc)), 1);
    assert_eq!(fs::read(&cached).unwrap(), fs::read(&libc.path).unwrap());
    // Nothing else was fetched again.
    assert_eq!(fx.server.requests().len(), 1, "{:?}", fx.server.requests());
    assert_same_tree(&built, &snapshot(&options.out_dir), "rebuild");
}

#[test]
fn refuses_a_stale_lock_and_writes_nothing() {
    let fx = Fixture::new();
    let expected = format!(
        "{}: stale, the image definitions changed since it was made; run `cargo xtask lock`",
        fx.lockfile_path().display()
    );
    fx.write_image(
        "base",
        &BASE_TOML.replace("[\"libc6\"]", "[\"libc6\", \"busybox-static\"]"),
    );
    let options = fx.options();
    fx.server.clear_requests();
    assert_eq!(fx.build_fails(&options), expected);
    assert!(!options.out_dir.exists());
    assert_eq!(fx.server.requests(), Vec::<String>::new());

    // With layouts from an earlier build, they stay as they were.
    fx.write_image("base", BASE_TOML);
    fx.build_ok(&options);
    fx.write_image("static", &STATIC_TOML.replace("ca-bundle", "# ca-bundle"));
    assert_eq!(fx.build_fails(&options), expected);
}

fn motd_a(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.file("/etc/motd", 0o644, "from motd-a\n").file(
        "/usr/share/motd/common",
        0o644,
        "shared, identical\n",
    )
}

fn motd_b(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.file("/etc/motd", 0o644, "from motd-b\n").file(
        "/usr/share/motd/common",
        0o644,
        "shared, identical\n",
    )
}

#[test]
fn a_path_shipped_twice_needs_a_named_owner() {
    let mut fx = Fixture::new();
    fx.publish("motd-a", "1", "all", motd_a);
    fx.publish("motd-b", "1", "all", motd_b);
    fx.debian.write();
    fx.lock_app(&["motd-a", "motd-b"], "");
    let options = fx.options();
    assert_eq!(
        fx.build_fails(&options),
        "app (amd64): /etc/motd: shipped by both motd-a and motd-b with different contents; \
         name the winner with [[path-owner]] in the image definition"
    );

    // Either package can be named, whichever comes first.
    for winner in ["motd-b", "motd-a"] {
        fx.lock_app(&["motd-a", "motd-b"], &path_owner("/etc/motd", winner));
        fx.build_ok(&options);
        for arch in ARCHS {
            assert_eq!(
                app_sees(&fx, arch, "etc/motd"),
                format!("from {winner}\n"),
                "{arch}"
            );
            assert_eq!(
                app_sees(&fx, arch, "usr/share/motd/common"),
                "shared, identical\n"
            );
        }
    }
}

fn path_owner(path: &str, package: &str) -> String {
    format!("\n[[path-owner]]\npath = \"{path}\"\npackage = \"{package}\"\nreason = \"test\"\n")
}

/// What a container of `app` (`latest-<arch>`) sees at `path`: the file
/// in the top-most layer that has it.
fn app_sees(fx: &Fixture, arch: &str, path: &str) -> String {
    let layers = Tree::layers(
        &fx.options().out_dir.join("app-debian13"),
        &format!("latest-{arch}"),
    );
    let top = layers
        .iter()
        .rev()
        .find(|l| l.0.contains_key(path))
        .unwrap_or_else(|| panic!("no layer of app ({arch}) has {path}"));
    top.text(path)
}

fn dotdot_entry(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.raw_entry(RawEntry::file("./../etc/evil", "x"))
}

fn absolute_entry(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.raw_entry(RawEntry::file("/etc/evil", "x"))
}

fn loop_a(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.symlink("/srv/a", "b")
}

fn loop_b(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.symlink("/srv/b", "a").file("/srv/a/f", 0o644, "f")
}

#[test]
fn refuses_hostile_packages() {
    let mut fx = Fixture::new();
    fx.publish("evil-dotdot", "1", "all", dotdot_entry);
    fx.publish("evil-absolute", "1", "all", absolute_entry);
    fx.publish("loop-a", "1", "all", loop_a);
    fx.publish("loop-b", "1", "all", loop_b);
    fx.publish_with("evil-bz2", "1", "all", no_files, |deb| {
        deb_with_data_member(deb, "data.tar.bz2")
    });
    fx.debian.write();
    let options = fx.options();
    let named = |package: &str| {
        let e = fx.pool_entry(package, "all");
        format!("{} {} ({})", e.package, e.version, e.filename)
    };

    let cases = [
        (
            vec!["evil-dotdot"],
            format!(
                "{}: data.tar.xz: entry \"./../etc/evil\": invalid path: `..` component",
                named("evil-dotdot")
            ),
        ),
        (
            vec!["evil-absolute"],
            format!(
                "{}: data.tar.xz: entry \"/etc/evil\": invalid path: absolute",
                named("evil-absolute")
            ),
        ),
        (
            vec!["loop-a", "loop-b"],
            "app (amd64): /srv/a/f (loop-b): too many levels of symbolic links".to_owned(),
        ),
        (
            vec!["evil-bz2"],
            format!(
                "{}: data.tar.bz2: unsupported compression .bz2 (expected none, .xz, .zst or .gz)",
                named("evil-bz2")
            ),
        ),
    ];
    for (packages, expected) in cases {
        fx.lock_app(&packages, "");
        assert_eq!(fx.build_fails(&options), expected, "{packages:?}");
    }
}

/// A pull request that edits a lockfile's `sha256` into a path: the old
/// cache took it as the name of a corrupt entry and deleted that file.
#[test]
fn a_lockfile_value_never_becomes_a_path() {
    let fx = Fixture::new();
    let options = fx.options();
    fx.build_ok(&options);
    let victim = fx.tmp.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    let lockfile = fx.lockfile_path();
    let text = fs::read_to_string(&lockfile).unwrap();
    let sha = &fx.pool_entry("libc6", "amd64").sha256;
    for bad in ["../../../victim", &victim.display().to_string()] {
        fs::write(&lockfile, text.replace(sha.as_str(), bad)).unwrap();
        let cache = snapshot(&fx.cache_dir);
        let before = snapshot(&options.out_dir);
        let err = fx.build(&options).unwrap_err().to_string();
        assert!(
            err.starts_with(&lockfile.display().to_string())
                && err.contains(&format!(
                    "invalid sha256 {bad:?}: expected 64 lowercase hex digits"
                )),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_same_tree(&cache, &snapshot(&fx.cache_dir), "cache");
        assert_same_tree(&before, &snapshot(&options.out_dir), "out dir");
    }
}

fn zeros(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.file("/usr/share/zeros", 0o644, vec![0u8; 64 << 20])
}

fn two_mib(deb: DebBuilder, _arch: &str) -> DebBuilder {
    let noise: Vec<u8> = (0..2u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    deb.file("/usr/share/noise", 0o644, noise)
}

/// Ceilings on unpacking: a package that unpacks to far more than its
/// size suggests, or past what `[limits]` allows, is refused with one
/// line naming it and the ceiling, and nothing is written.
#[test]
fn refuses_packages_past_the_ceilings() {
    let mut fx = Fixture::new();
    fx.publish("bomb", "1", "all", zeros);
    fx.publish("big", "1", "all", two_mib);
    fx.debian.write();
    let options = fx.options();
    fx.build_ok(&options);
    let named = |package: &str| {
        let e = fx.pool_entry(package, "all");
        format!("{} {} ({})", e.package, e.version, e.filename)
    };
    fx.lock_app(&["bomb"], "");
    let err = fx.build_fails(&options);
    assert!(
        err.starts_with(&format!(
            "{}: data.tar.xz: unpacks to more than ",
            named("bomb")
        )) && err.ends_with("(limits.ratio in images/plinth.toml)"),
        "{err}"
    );
    let settings = fx.root.join("images/plinth.toml");
    let text = fs::read_to_string(&settings).unwrap();
    let with_limits =
        |limits: &str| fs::write(&settings, format!("{text}\n[limits]\n{limits}\n")).unwrap();
    fx.lock_app(&["big"], "");
    with_limits("entry = \"1 MiB\"");
    assert_eq!(
        fx.build_fails(&options),
        format!(
            "{}: data.tar.xz: ./usr/share/noise: 2 MiB, above the ceiling of 1 MiB per file (limits.entry in images/plinth.toml)",
            named("big")
        )
    );
    with_limits("package = \"1 MiB\"");
    assert_eq!(
        fx.build_fails(&options),
        format!(
            "{}: data.tar.xz: unpacks to more than 1 MiB, the ceiling per package (limits.package in images/plinth.toml)",
            named("big")
        )
    );
    with_limits("layer = \"1 MiB\"");
    assert_eq!(
        fx.build_fails(&options),
        "layer of app (amd64): 2.0 MiB of files, above the ceiling of 1 MiB per layer (limits.layer in images/plinth.toml)"
    );
}

fn special_modes(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.file("/usr/bin/become", 0o4755, "x")
        .dir("/var/drop", 0o777)
        .dir("/var/shared", 0o1777)
}

/// Setuid and setgid files and world-writable directories without the
/// sticky bit are kept as packaged (and listed by the build), unless the
/// settings forbid them: then the build names the package and the path,
/// and writes nothing.
#[test]
fn forbids_special_modes_when_the_settings_say_so() {
    let mut fx = Fixture::new();
    fx.publish("suid", "1", "all", special_modes);
    fx.debian.write();
    fx.lock_app(&["suid"], "");
    let options = fx.options();
    fx.build_ok(&options);
    let layers = Tree::layers(&options.out_dir.join("app-debian13"), "latest-amd64");
    let top = layers.last().unwrap();
    assert_eq!(top.entry("usr/bin/become").mode, 0o4755);
    assert_eq!(top.entry("var/drop").mode, 0o777);

    let settings = fx.root.join("images/plinth.toml");
    let text = fs::read_to_string(&settings).unwrap();
    fs::write(&settings, format!("forbid-special-modes = true\n{text}")).unwrap();
    assert_eq!(
        fx.build_fails(&options),
        "suid: /usr/bin/become: setuid, mode 4755; forbid-special-modes in images/plinth.toml refuses it"
    );
}

#[test]
fn a_failed_build_keeps_the_previous_layouts() {
    let mut fx = Fixture::new();
    let options = fx.options();
    fx.build_ok(&options);
    let built = snapshot(&options.out_dir);

    // A newer glibc that would change base, served corrupt for arm64.
    fx.publish("libc6", "2.41-13", "any", libc6);
    fx.debian.write();
    fx.lock_ok();
    let new = fx.pool_entry("libc6", "arm64");
    assert_eq!(new.version, "2.41-13");
    fx.debian.corrupt_pool_file(&new.filename);
    let err = fx.build_fails(&options);
    assert!(
        err.starts_with(&format!("{}: sha256 mismatch", new.filename)),
        "{err}"
    );
    assert_same_tree(&built, &snapshot(&options.out_dir), &err);
    for repo in [STATIC, BASE] {
        assert_complete(&options.out_dir.join(repo));
    }
}

#[test]
fn offline_builds_need_every_package_in_the_cache() {
    let fx = Fixture::new();
    let offline = BuildOptions {
        offline: true,
        ..fx.options()
    };
    fx.server.clear_requests();
    let err = fx.build_fails(&offline);
    let candidates: Vec<String> = fx
        .pool
        .iter()
        .map(|e| {
            format!(
                "{}: not in the download cache, and --offline is set",
                e.filename
            )
        })
        .collect();
    assert!(candidates.contains(&err), "unexpected error: {err}");
    assert_eq!(fx.server.requests(), Vec::<String>::new());

    // With the cache filled by an online build, offline needs no mirror.
    let online = fx.options_into(&fx.tmp.path().join("online"));
    fx.build_ok(&online);
    fx.server.clear_requests();
    fx.build_ok(&offline);
    assert_eq!(fx.server.requests(), Vec::<String>::new());
    assert_same_tree(
        &snapshot(&online.out_dir),
        &snapshot(&offline.out_dir),
        "online vs offline",
    );
}

// The tests below pin library bugs found while writing this file; drop
// the `ignore` once they are fixed.

fn debian_version_14(deb: DebBuilder, _arch: &str) -> DebBuilder {
    deb.file("/etc/debian_version", 0o644, "14.0\n")
}

#[test]
fn a_conflict_with_a_lower_layer_names_both_packages() {
    let mut fx = Fixture::new();
    fx.publish("debian-version", "1", "all", debian_version_14);
    fx.debian.write();
    fx.lock_app(&["debian-version"], "");
    assert_eq!(
        fx.build_fails(&fx.options()),
        "app (amd64): /etc/debian_version: shipped by both base-files and debian-version with \
         different contents; name the winner with [[path-owner]] in the image definition"
    );
    for (winner, content) in [("debian-version", "14.0\n"), ("base-files", DEBIAN_VERSION)] {
        fx.lock_app(
            &["debian-version"],
            &path_owner("/etc/debian_version", winner),
        );
        fx.build_ok(&fx.options());
        assert_eq!(
            app_sees(&fx, "amd64", "etc/debian_version"),
            content,
            "{winner}"
        );
    }
}

#[test]
fn a_rebuild_repairs_a_damaged_blob() {
    let fx = Fixture::new();
    let options = fx.options();
    fx.build_ok(&options);
    let built = snapshot(&options.out_dir);
    let layout = options.out_dir.join(BASE);
    let layer = &manifest(&layout, "latest-amd64").layers[1];
    let path = layout
        .join("blobs/sha256")
        .join(layer.digest.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    fx.build_ok(&options);
    assert_same_tree(
        &built,
        &snapshot(&options.out_dir),
        "rebuild of a damaged layout",
    );
}

#[test]
fn a_layout_that_cannot_be_written_leaves_its_sboms_and_sums_alone() {
    let fx = Fixture::new();
    let options = fx.options();
    fx.build_ok(&options);
    // Another os-release changes every layout and SBOM; the lock stays
    // current.
    let settings = fx.root.join("images/plinth.toml");
    let text = fs::read_to_string(&settings).unwrap();
    fs::write(
        &settings,
        text.replace("\"Distroless\"", "\"Distroless 2\""),
    )
    .unwrap();
    // A file where base's layout goes: a stand-in for any I/O error (a
    // full disk) while writing the second layout.
    let base = options.out_dir.join(BASE);
    fs::remove_dir_all(&base).unwrap();
    fs::write(&base, "in the way").unwrap();
    let before = snapshot(&options.out_dir);

    let err = fx.build(&options).unwrap_err().to_string();
    let head = format!("writing images: cannot move aside {}: ", base.display());
    assert!(err.starts_with(&head), "{err}");
    let after = snapshot(&options.out_dir);
    let base_sboms = Path::new("sbom").join(BASE);
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|p| p.starts_with(&base_sboms) && before.get(*p) != after.get(*p))
        .collect();
    assert!(
        changed.is_empty(),
        "SBOMs of an unwritten layout: {changed:?}"
    );
    if let Some(Some(sums)) = after.get(Path::new("SHA256SUMS")) {
        for line in String::from_utf8_lossy(sums).lines() {
            let (sum, rel) = line.split_once("  ").unwrap();
            let file = after.get(Path::new(rel)).cloned().flatten();
            assert_eq!(
                file.map(|b| sha256(&b)).as_deref(),
                Some(sum),
                "SHA256SUMS: {rel}"
            );
        }
    }
}

/// Unmounts the test's tmpfs, whatever the test's outcome.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_cleanly() {
    let fx = Fixture::new();
    let disk = fx.tmp.path().join("small-disk");
    fs::create_dir_all(&disk).unwrap();
    // A 32 KiB tmpfs stands in for a full disk; mounting one needs root,
    // so elsewhere the test says why it did not run.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32k", "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _unmount = Unmount(disk.clone());
    let options = fx.options_into(&disk.join("out"));
    let err = match fx.build(&options) {
        Ok(_) => panic!("a build onto a full disk succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains('\n'), "error is not one line: {err}");
    // Nothing half-written: no temporary directory survives, and every
    // layout that exists is complete.
    for entry in fs::read_dir(&options.out_dir).into_iter().flatten() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "{name} left behind");
        if entry.path().join("index.json").exists() {
            assert_complete(&entry.path());
        }
    }
}
