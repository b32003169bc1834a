//! End-to-end tests of `cargo xtask images` (issue 4): build the real images
//! once per test process with the real binary, then read them with skopeo,
//! unpack the amd64 images with umoci and run programs in them with runc.
//!
//! Tools: skopeo, umoci, runc, gcc, g++ and libssl-dev's headers. A missing
//! tool skips a test with a printed reason, except under `CI=true`, where it
//! is a failure. Unpacking and runc need root and an x86_64 host.
//!
//! Scratch space (the build, unpacked bundles, compiled programs) lives in
//! `target/tmp/images-e2e/<pid>/`; each run removes what finished runs left.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde_json::Value;
use support::Mount;

// ---------------------------------------------------------------------------
// what the images are (images.md)
// ---------------------------------------------------------------------------

struct Dist {
    name: &'static str,
    version: &'static str,
    codename: &'static str,
    /// The version of the distribution's libssl, after `OpenSSL `.
    openssl: &'static str,
    /// Packages of each image on top of the one below, in stacking order.
    packages: [(&'static str, &'static [&'static str]); 4],
}

const DISTS: [Dist; 2] = [
    Dist {
        name: "debian12",
        version: "12",
        codename: "bookworm",
        openssl: "3.0.",
        packages: [
            (
                "static",
                &[
                    "base-files",
                    "ca-certificates",
                    "media-types",
                    "netbase",
                    "tzdata",
                ],
            ),
            ("base-nossl", &["libc6"]),
            ("base", &["libssl3"]),
            (
                "cc",
                &["libgcc-s1", "libgomp1", "libstdc++6", "gcc-12-base"],
            ),
        ],
    },
    Dist {
        name: "debian13",
        version: "13",
        codename: "trixie",
        openssl: "3.5.",
        packages: [
            (
                "static",
                &[
                    "base-files",
                    "ca-certificates",
                    "media-types",
                    "netbase",
                    "tzdata",
                    "tzdata-legacy",
                ],
            ),
            ("base-nossl", &["libc6"]),
            ("base", &["libssl3t64", "libzstd1", "zlib1g"]),
            (
                "cc",
                &["libgcc-s1", "libgomp1", "libstdc++6", "gcc-14-base"],
            ),
        ],
    },
];

/// Each image and the images it stands on, bottom first (plinth's `base`
/// stands on `base-nossl`, so glibc's layer is shared; distroless stacks it
/// on `static` with the same files).
const STACKS: [(&str, &[&str]); 4] = [
    ("static", &["static"]),
    ("base-nossl", &["static", "base-nossl"]),
    ("base", &["static", "base-nossl", "base"]),
    ("cc", &["static", "base-nossl", "base", "cc"]),
];

const TAGS: [&str; 4] = ["latest", "nonroot", "debug", "debug-nonroot"];
const ARCHES: [(&str, Option<&str>); 2] = [("amd64", None), ("arm64", Some("v8"))];
const DEBUG_PACKAGE: &str = "busybox-static";

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SSL_CERT_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
const NONROOT: u32 = 65532;

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
    nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
    nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n";
const NSSWITCH: [(&str, &str); 11] = [
    ("passwd", "compat"),
    ("group", "compat"),
    ("shadow", "compat"),
    ("gshadow", "files"),
    ("hosts", "files dns"),
    ("networks", "files"),
    ("protocols", "db files"),
    ("services", "db files"),
    ("ethers", "db files"),
    ("rpc", "db files"),
    ("netgroup", "nis"),
];

/// One image repository: `<image>-<dist>`.
#[derive(Clone, Copy)]
struct Repo {
    image: &'static str,
    dist: &'static Dist,
}

impl Repo {
    fn name(&self) -> String {
        format!("{}-{}", self.image, self.dist.name)
    }

    fn layout(&self) -> PathBuf {
        built().join(self.name())
    }

    /// `status.d` names of the packages installed in `tag`.
    fn packages(&self, tag: &str) -> BTreeSet<&'static str> {
        let stack = STACKS
            .iter()
            .find(|(i, _)| *i == self.image)
            .expect("known image")
            .1;
        let mut all: BTreeSet<&str> = self
            .dist
            .packages
            .iter()
            .filter(|(image, _)| stack.contains(image))
            .flat_map(|(_, pkgs)| pkgs.iter().copied())
            .collect();
        if Variant::of(tag).debug {
            all.insert(DEBUG_PACKAGE);
        }
        all
    }
}

fn repos() -> Vec<Repo> {
    DISTS
        .iter()
        .flat_map(|dist| STACKS.iter().map(move |(image, _)| Repo { image, dist }))
        .collect()
}

fn repo(image: &str, dist: &str) -> Repo {
    repos()
        .into_iter()
        .find(|r| r.image == image && r.dist.name == dist)
        .expect("known repository")
}

/// What a tag promises (`debug-nonroot-amd64` → debug, nonroot, amd64).
#[derive(Clone, Copy)]
struct Variant {
    debug: bool,
    nonroot: bool,
    /// The platform of a per-architecture tag; `None` for a multi-arch one.
    arch: Option<(&'static str, Option<&'static str>)>,
}

impl Variant {
    fn of(tag: &str) -> Variant {
        let per_arch = ARCHES.iter().find_map(|&a| {
            let base = tag.strip_suffix(a.0)?.strip_suffix('-')?;
            Some((base, a))
        });
        let (base, arch) = per_arch.map_or((tag, None), |(base, a)| (base, Some(a)));
        Variant {
            debug: base.starts_with("debug"),
            nonroot: base.ends_with("nonroot"),
            arch,
        }
    }

    fn user(&self) -> u32 {
        if self.nonroot { NONROOT } else { 0 }
    }

    fn workdir(&self) -> &'static str {
        if self.nonroot { "/home/nonroot" } else { "/" }
    }
}

/// Every tag of a repository: the multi-arch ones and the per-arch ones.
fn all_tags() -> Vec<String> {
    TAGS.iter()
        .flat_map(|t| {
            std::iter::once(t.to_string())
                .chain(ARCHES.iter().map(move |(a, _)| format!("{t}-{a}")))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// the shared build and scratch space
// ---------------------------------------------------------------------------

/// This process's scratch directory.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| support::scratch_for("images-e2e"))
}

/// A fresh directory `name` in the scratch space.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// How a build is run: the environment must not change its output.
struct BuildEnv<'a> {
    umask: &'a str,
    env: &'a [(&'a str, &'a str)],
    jobs: Option<&'a str>,
    cwd: &'a Path,
}

/// The `xtask` binary under test, run through `sh` to set the umask, with a
/// clean locale/time-zone environment plus `how.env`.
fn xtask(args: &[&str], how: &BuildEnv) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {}; exec \"$0\" \"$@\"", how.umask))
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(how.cwd);
    if let Some(jobs) = how.jobs {
        cmd.args(["--jobs", jobs]);
    }
    for var in [
        "SOURCE_DATE_EPOCH",
        "TZ",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(how.env.iter().copied());
    cmd
}

/// `xtask [FLAGS] images --out OUT [OPTIONS]`; `Err` carries the output on
/// failure.
fn build_images(
    out: &Path,
    flags: &[&str],
    options: &[&str],
    how: &BuildEnv,
) -> Result<Output, String> {
    let started = Instant::now();
    let out_arg = out.to_str().expect("UTF-8 scratch path");
    let args = [flags, &["images", "--out", out_arg], options].concat();
    let output = support::output(&mut xtask(&args, how))?;
    eprintln!("built {} in {:.1?}", out.display(), started.elapsed());
    Ok(output)
}

/// The images, built once per test process (default environment: umask
/// 022, `LANG=C`, `TZ=UTC`, default jobs).
fn built() -> &'static Path {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = scratch().join("images");
        let how = BuildEnv {
            umask: "022",
            env: &[("LANG", "C"), ("TZ", "UTC")],
            jobs: None,
            cwd: scratch(),
        };
        build_images(&out, &[], &[], &how).map(|_| out)
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("the shared build failed: {e}"))
}

/// The amd64 image of `repo:tag` unpacked with umoci, once per process
/// (`Err` if that failed). runc runs use it through a private config.
fn bundle(repo: Repo, tag: &str) -> Result<PathBuf, String> {
    type Cell = Arc<OnceLock<Result<PathBuf, String>>>;
    static CELLS: OnceLock<Mutex<BTreeMap<String, Cell>>> = OnceLock::new();
    let key = format!("{}_{tag}", repo.name());
    let cell = CELLS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(key.clone())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let dir = scratch().join("bundles");
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join(key);
        support::unpack(&repo.layout(), &format!("{tag}-amd64"), "amd64", &path)?;
        Ok(path)
    })
    .clone()
}

// ---------------------------------------------------------------------------
// small helpers
// ---------------------------------------------------------------------------

/// Runs `check` on every item on `workers` threads; the problems of all.
fn parallel<T: Sync>(
    items: &[T],
    workers: usize,
    check: impl Fn(&T) -> Vec<String> + Sync,
) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.min(items.len()) {
            s.spawn(|| {
                while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let found = check(item);
                    problems.lock().unwrap().extend(found);
                }
            });
        }
    });
    let mut problems = problems.into_inner().unwrap();
    problems.sort();
    problems
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Problems found in one subject, each prefixed with its name.
struct Problems {
    subject: String,
    list: Vec<String>,
}

impl Problems {
    fn new(subject: impl Into<String>) -> Problems {
        Problems {
            subject: subject.into(),
            list: Vec::new(),
        }
    }

    fn add(&mut self, msg: impl std::fmt::Display) {
        self.list.push(format!("{}: {msg}", self.subject));
    }

    fn expect<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.add(format_args!("{what} is {got:?}, expected {want:?}"));
        }
    }
}

fn text(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("{what} is not JSON: {e}"))
}

/// An OCI image layout on disk.
struct Layout {
    dir: PathBuf,
    index: Value,
}

impl Layout {
    fn open(dir: &Path) -> Layout {
        let bytes = fs::read(dir.join("index.json"))
            .unwrap_or_else(|e| panic!("{}/index.json: {e}", dir.display()));
        let index =
            parse_json(&bytes, "index.json").unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Layout {
            dir: dir.to_owned(),
            index,
        }
    }

    fn descriptors(&self) -> &[Value] {
        self.index["manifests"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }

    /// The descriptor that `tag` names.
    fn tag(&self, tag: &str) -> Option<&Value> {
        self.descriptors()
            .iter()
            .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
    }

    fn tags(&self) -> BTreeSet<String> {
        self.descriptors()
            .iter()
            .filter_map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str())
            .map(str::to_owned)
            .collect()
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs").join(digest.replace(':', "/"))
    }

    fn blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        let p = self.blob_path(digest);
        fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
    }

    fn json(&self, digest: &str) -> Result<Value, String> {
        parse_json(&self.blob(digest)?, digest)
    }
}

/// Every file under `dir` (relative path → bytes), for tree comparison.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.insert(path.strip_prefix(root).unwrap().to_owned(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn skopeo_ready() -> bool {
    support::tools(&["skopeo"])
}

fn containers_ready() -> bool {
    support::tools(&["umoci", "runc"]) && support::can_run_containers()
}

// ---------------------------------------------------------------------------
// 0. the layouts' structure (no tools)
// ---------------------------------------------------------------------------

#[test]
fn every_repository_has_every_tag() {
    let want: BTreeSet<String> = all_tags().into_iter().collect();
    let mut problems = Vec::new();
    for repo in repos() {
        let mut p = Problems::new(repo.name());
        let layout = Layout::open(&repo.layout());
        p.expect("tags", layout.tags(), want.clone());
        for tag in TAGS {
            let Some(index) = layout.tag(tag) else {
                continue;
            };
            p.expect(
                &format!("{tag} media type"),
                index["mediaType"].as_str(),
                Some("application/vnd.oci.image.index.v1+json"),
            );
            let body = match index["digest"].as_str().map(|d| layout.json(d)) {
                Some(Ok(body)) => body,
                other => {
                    p.add(format_args!("{tag}: cannot read the index blob: {other:?}"));
                    continue;
                }
            };
            // The index lists exactly the per-arch tags' manifests.
            let listed: Vec<&Value> = body["manifests"]
                .as_array()
                .map(|m| m.iter().collect())
                .unwrap_or_default();
            let per_arch: Vec<&Value> = ARCHES
                .iter()
                .filter_map(|(a, _)| layout.tag(&format!("{tag}-{a}")))
                .collect();
            p.expect(&format!("{tag} index size"), listed.len(), ARCHES.len());
            for (desc, (arch, variant)) in per_arch.iter().zip(ARCHES) {
                let in_index = listed.iter().find(|m| m["digest"] == desc["digest"]);
                p.expect(
                    &format!("{tag}-{arch} is listed in {tag}"),
                    in_index.is_some(),
                    true,
                );
                p.expect(
                    &format!("{tag}-{arch} architecture"),
                    desc["platform"]["architecture"].as_str(),
                    Some(arch),
                );
                p.expect(
                    &format!("{tag}-{arch} variant"),
                    desc["platform"]["variant"].as_str(),
                    variant,
                );
                p.expect(
                    &format!("{tag}-{arch} media type"),
                    desc["mediaType"].as_str(),
                    Some("application/vnd.oci.image.manifest.v1+json"),
                );
            }
        }
        problems.extend(p.list);
    }
    problems.extend(stacking_problems());
    assert_no_problems("layouts", &problems);
}

/// The layers of an image's base appear unchanged at the bottom of it.
fn stacking_problems() -> Vec<String> {
    let layers = |repo: Repo, tag: &str| -> Vec<Value> {
        let layout = Layout::open(&repo.layout());
        let digest = layout
            .tag(tag)
            .and_then(|d| d["digest"].as_str())
            .unwrap_or_default()
            .to_owned();
        let manifest = layout
            .json(&digest)
            .unwrap_or_else(|e| panic!("{}:{tag}: {e}", repo.name()));
        manifest["layers"].as_array().cloned().unwrap_or_default()
    };
    let mut problems = Vec::new();
    for dist in &DISTS {
        for (image, stack) in STACKS {
            let Some(base) = stack.iter().rev().nth(1) else {
                continue;
            };
            for (arch, _) in ARCHES {
                let tag = format!("latest-{arch}");
                let below = layers(repo(base, dist.name), &tag);
                let above = layers(repo(image, dist.name), &tag);
                if above.len() != below.len() + 1 || above[..below.len()] != below[..] {
                    problems.push(format!(
                        "{image}-{}:{tag}: layers do not start with those of {base}: {} vs {} layers",
                        dist.name,
                        above.len(),
                        below.len()
                    ));
                }
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// 1. skopeo
// ---------------------------------------------------------------------------

/// `skopeo` choosing platform `arch` (from a multi-arch tag).
fn skopeo(arch: (&str, Option<&str>)) -> Command {
    let mut cmd = support::tool_command("skopeo");
    cmd.args(["--override-os", "linux", "--override-arch", arch.0]);
    if let Some(variant) = arch.1 {
        cmd.args(["--override-variant", variant]);
    }
    cmd
}

fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

#[test]
fn skopeo_inspects_every_tag() {
    if !skopeo_ready() {
        return;
    }
    let items: Vec<(Repo, String)> = repos()
        .into_iter()
        .flat_map(|r| all_tags().into_iter().map(move |t| (r, t)))
        .collect();
    let problems = parallel(&items, 4, |(repo, tag)| {
        let mut p = Problems::new(format!("{}:{tag}", repo.name()));
        if let Err(e) = inspect_tag(&Layout::open(&repo.layout()), tag, &mut p) {
            p.add(e);
        }
        p.list
    });
    assert_no_problems("skopeo inspect", &problems);
}

/// `skopeo inspect`, `inspect --raw` and `inspect --config` of one tag.
fn inspect_tag(layout: &Layout, tag: &str, p: &mut Problems) -> Result<(), String> {
    let variant = Variant::of(tag);
    let arch = variant.arch.unwrap_or(ARCHES[0]);
    let desc = layout.tag(tag).ok_or("tag missing from index.json")?;
    let digest = desc["digest"].as_str().ok_or("descriptor without digest")?;
    let reference = oci_ref(&layout.dir, tag);
    let run =
        |extra: &[&str]| support::output(skopeo(arch).arg("inspect").args(extra).arg(&reference));

    let info = parse_json(&run(&[])?.stdout, "skopeo inspect")?;
    p.expect("inspect Digest", info["Digest"].as_str(), Some(digest));
    p.expect(
        "inspect Architecture",
        info["Architecture"].as_str(),
        Some(arch.0),
    );
    p.expect("inspect Os", info["Os"].as_str(), Some("linux"));

    let raw = run(&["--raw"])?.stdout;
    if raw != layout.blob(digest)? {
        p.add("inspect --raw differs from the blob the tag names");
    }
    p.expect(
        "raw mediaType",
        parse_json(&raw, "inspect --raw")?["mediaType"].as_str(),
        desc["mediaType"].as_str(),
    );

    let config = parse_json(&run(&["--config"])?.stdout, "skopeo inspect --config")?;
    config_problems(&config, variant, arch, p);
    Ok(())
}

/// The image config fulfils the tag's contract (images.md, "Image config").
fn config_problems(config: &Value, v: Variant, arch: (&str, Option<&str>), p: &mut Problems) {
    p.expect(
        "architecture",
        config["architecture"].as_str(),
        Some(arch.0),
    );
    p.expect("variant", config["variant"].as_str(), arch.1);
    p.expect("os", config["os"].as_str(), Some("linux"));
    let c = &config["config"];
    p.expect(
        "User",
        c["User"].as_str(),
        Some(v.user().to_string().as_str()),
    );
    p.expect("WorkingDir", c["WorkingDir"].as_str(), Some(v.workdir()));
    let entrypoint = v.debug.then(|| vec!["/busybox/sh".to_owned()]);
    p.expect(
        "Entrypoint",
        serde_json::from_value(c["Entrypoint"].clone())
            .ok()
            .flatten(),
        entrypoint,
    );
    p.expect("Cmd", c["Cmd"].as_array().filter(|a| !a.is_empty()), None);
    let path = if v.debug {
        format!("PATH={PATH}:/busybox")
    } else {
        format!("PATH={PATH}")
    };
    let env = vec![path, format!("SSL_CERT_FILE={SSL_CERT_FILE}")];
    p.expect(
        "Env",
        serde_json::from_value(c["Env"].clone()).ok(),
        Some(env),
    );
    let layers = config["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len);
    let history = config["history"].as_array().map_or(0, Vec::len);
    p.expect("history entries (one per layer)", history, layers);
}

#[test]
fn skopeo_copies_every_tag() {
    if !skopeo_ready() {
        return;
    }
    let src = Layout::open(&repo("static", "debian13").layout());
    let dst_dir = scratch_dir("skopeo-copy");
    let mut p = Problems::new("skopeo copy static-debian13");
    for tag in all_tags() {
        let copied = support::output(
            skopeo(ARCHES[0])
                .args(["copy", "--quiet"])
                .arg(oci_ref(&src.dir, &tag))
                .arg(oci_ref(&dst_dir, &tag)),
        );
        if let Err(e) = copied {
            p.add(e);
        }
    }
    // A multi-arch tag copies the amd64 image; a per-arch tag its own.
    let dst = Layout::open(&dst_dir);
    for tag in all_tags() {
        let single = match Variant::of(&tag).arch {
            Some(_) => tag.clone(),
            None => format!("{tag}-amd64"),
        };
        p.expect(
            &format!("{tag} in the copy"),
            dst.tag(&tag).map(|d| &d["digest"]),
            src.tag(&single).map(|d| &d["digest"]),
        );
    }
    blobs_identical(&src, &dst, &mut p);

    // --all keeps the index and both platforms, byte for byte.
    let all_dir = scratch_dir("skopeo-copy-all");
    let copied = support::output(
        support::tool_command("skopeo")
            .args(["copy", "--quiet", "--all"])
            .arg(oci_ref(&src.dir, "latest"))
            .arg(oci_ref(&all_dir, "latest")),
    );
    match copied {
        Err(e) => p.add(e),
        Ok(_) => {
            let all = Layout::open(&all_dir);
            p.expect(
                "latest in the --all copy",
                all.tag("latest").map(|d| &d["digest"]),
                src.tag("latest").map(|d| &d["digest"]),
            );
            blobs_identical(&src, &all, &mut p);
            for (arch, _) in ARCHES {
                let manifest = src
                    .tag(&format!("latest-{arch}"))
                    .and_then(|d| d["digest"].as_str())
                    .unwrap_or_default();
                p.expect(
                    &format!("{arch} manifest in the --all copy"),
                    all.blob_path(manifest).exists(),
                    true,
                );
            }
        }
    }
    assert_no_problems("skopeo copy", &p.list);
}

/// Every blob of `copy` is in `src` with the same bytes.
fn blobs_identical(src: &Layout, copy: &Layout, p: &mut Problems) {
    for (path, bytes) in files(&copy.dir.join("blobs")) {
        if fs::read(src.dir.join("blobs").join(&path)).ok().as_ref() != Some(&bytes) {
            p.add(format_args!(
                "blob {} of {} differs from the source",
                path.display(),
                copy.dir.display()
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// 2. umoci unpack and the files of every amd64 image
// ---------------------------------------------------------------------------

#[test]
fn umoci_unpacks_every_amd64_image_with_the_expected_files() {
    if !containers_ready() {
        return;
    }
    let items: Vec<(Repo, &str)> = repos()
        .into_iter()
        .flat_map(|r| TAGS.map(|t| (r, t)))
        .collect();
    let problems = parallel(&items, 2, |&(repo, tag)| {
        let mut p = Problems::new(format!("{}:{tag}-amd64", repo.name()));
        match bundle(repo, tag) {
            Ok(b) => rootfs_problems(repo, tag, &b.join("rootfs"), &mut p),
            Err(e) => p.add(e),
        }
        p.list
    });
    assert_no_problems("unpacked images", &problems);
}

/// The lexically resolved target of symlink `rel` in `rootfs`, relative to
/// the rootfs (`etc/os-release` → `usr/lib/os-release`).
fn link_target(rootfs: &Path, rel: &str) -> Option<String> {
    let target = fs::read_link(rootfs.join(rel)).ok()?;
    let start = if target.is_absolute() {
        PathBuf::new()
    } else {
        Path::new(rel).parent()?.to_owned()
    };
    let mut parts: Vec<String> = start
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    for c in target.components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    Some(parts.join("/"))
}

fn rootfs_problems(repo: Repo, tag: &str, rootfs: &Path, p: &mut Problems) {
    let v = Variant::of(tag);
    let read = |rel: &str| fs::read_to_string(rootfs.join(rel));

    // Generated files and directories: content, owner and mode.
    p.expect(
        "/etc/passwd",
        read("etc/passwd").ok().as_deref(),
        Some(PASSWD),
    );
    p.expect("/etc/group", read("etc/group").ok().as_deref(), Some(GROUP));
    for (rel, mode, uid) in [
        ("etc/passwd", 0o100644, 0),
        ("etc/group", 0o100644, 0),
        ("etc/nsswitch.conf", 0o100644, 0),
        ("etc/ssl/certs/ca-certificates.crt", 0o100644, 0),
        ("root", 0o40700, 0),
        ("home", 0o40755, 0),
        ("home/nonroot", 0o40700, NONROOT),
        ("tmp", 0o41777, 0),
    ] {
        let meta = fs::symlink_metadata(rootfs.join(rel)).ok();
        p.expect(
            &format!("/{rel} mode"),
            meta.as_ref().map(|m| format!("{:o}", m.mode())),
            Some(format!("{mode:o}")),
        );
        p.expect(
            &format!("/{rel} owner"),
            meta.as_ref().map(|m| (m.uid(), m.gid())),
            Some((uid, uid)),
        );
    }
    let nsswitch: BTreeMap<String, String> = read("etc/nsswitch.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(db, sources)| {
            (
                db.trim().to_owned(),
                sources.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = NSSWITCH
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    p.expect("/etc/nsswitch.conf", nsswitch, want);

    // os-release.
    p.expect(
        "/etc/os-release target",
        link_target(rootfs, "etc/os-release").as_deref(),
        Some("usr/lib/os-release"),
    );
    os_release_problems(
        repo.dist,
        &read("usr/lib/os-release").unwrap_or_default(),
        p,
    );

    // The usr-merge links.
    for dir in ["bin", "sbin", "lib"] {
        p.expect(
            &format!("/{dir} link"),
            link_target(rootfs, dir),
            Some(format!("usr/{dir}")),
        );
    }

    // Package files distroless checks for.
    for rel in [
        "etc/services",
        "etc/mime.types",
        "usr/share/doc/tzdata/copyright",
        "usr/share/doc/ca-certificates/copyright",
        "usr/share/zoneinfo/Etc/UTC",
    ] {
        let size = fs::metadata(rootfs.join(rel))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        p.expect(
            &format!("/{rel} is a non-empty file"),
            size.is_some_and(|s| s > 0),
            true,
        );
    }
    p.expect(
        "/usr/share/zoneinfo is a directory",
        rootfs.join("usr/share/zoneinfo").is_dir(),
        true,
    );
    ca_bundle_problems(rootfs, p);

    // dpkg records: one stanza (and md5sums) per package, nothing else.
    dpkg_problems(rootfs, &repo.packages(tag), p);

    // Not present.
    for rel in [
        "var/lib/dpkg/status",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/shadow",
    ] {
        p.expect(
            &format!("/{rel} exists"),
            fs::symlink_metadata(rootfs.join(rel)).is_ok(),
            false,
        );
    }

    // glibc, libssl and libstdc++ where promised.
    let libs = "usr/lib/x86_64-linux-gnu";
    let stack = STACKS
        .iter()
        .find(|(i, _)| *i == repo.image)
        .map_or(&[][..], |s| s.1);
    let has_libc = repo.image != "static";
    p.expect(
        "the dynamic loader exists",
        rootfs.join("lib64/ld-linux-x86-64.so.2").exists(),
        has_libc,
    );
    p.expect(
        "libc.so.6 exists",
        rootfs.join(libs).join("libc.so.6").exists(),
        has_libc,
    );
    p.expect(
        "libssl.so.3 exists",
        rootfs.join(libs).join("libssl.so.3").exists(),
        stack.contains(&"base"),
    );
    p.expect(
        "libstdc++.so.6 exists",
        rootfs.join(libs).join("libstdc++.so.6").exists(),
        stack.contains(&"cc"),
    );

    // A shell only in debug images, and only busybox's.
    for rel in ["bin/sh", "usr/bin/sh", "bin/bash"] {
        p.expect(
            &format!("/{rel} exists"),
            fs::symlink_metadata(rootfs.join(rel)).is_ok(),
            false,
        );
    }
    busybox_problems(rootfs, v.debug, p);

    // Everything root-owned except the nonroot home (and /var/local, which
    // bookworm's base-files ships as root:staff 2775).
    let mut foreign = Vec::new();
    owners(rootfs, rootfs, &mut foreign);
    foreign.retain(|o| o != "var/local 0:50");
    foreign.sort();
    p.expect(
        "paths not owned by root:root",
        foreign,
        vec![format!("home/nonroot {NONROOT}:{NONROOT}")],
    );
}

fn os_release_problems(dist: &Dist, text: &str, p: &mut Problems) {
    let fields: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    let version = format!("Debian GNU/Linux {} ({})", dist.version, dist.codename);
    p.expect(
        "os-release VERSION line",
        text.lines().any(|l| l == format!("VERSION=\"{version}\"")),
        true,
    );
    for (key, want) in [
        ("NAME", Some("Debian GNU/Linux")),
        ("ID", Some("debian")),
        ("VERSION_ID", Some(dist.version)),
        ("VERSION_CODENAME", Some(dist.codename)),
        ("PRETTY_NAME", None),
        ("HOME_URL", None),
        ("SUPPORT_URL", None),
        ("BUG_REPORT_URL", None),
    ] {
        match (fields.get(key), want) {
            (None, _) => p.add(format_args!("os-release has no {key}")),
            (Some(got), Some(want)) => p.expect(&format!("os-release {key}"), *got, want),
            (Some(got), None) => {
                p.expect(&format!("os-release {key} is empty"), got.is_empty(), false)
            }
        }
    }
}

fn ca_bundle_problems(rootfs: &Path, p: &mut Problems) {
    let bundle =
        fs::read_to_string(rootfs.join(SSL_CERT_FILE.trim_start_matches('/'))).unwrap_or_default();
    let certs = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    p.expect(
        "CA bundle has more than 100 certificates",
        certs > 100,
        true,
    );
    p.expect(
        "CA bundle BEGIN/END lines balance",
        bundle.matches("-----END CERTIFICATE-----\n").count(),
        certs,
    );
    p.expect(
        "CA bundle starts with a certificate",
        bundle.starts_with("-----BEGIN CERTIFICATE-----\n"),
        true,
    );
    // Of the ca-certificates package only the bundle and the copyright file.
    p.expect(
        "/usr/share/ca-certificates exists",
        rootfs.join("usr/share/ca-certificates").exists(),
        false,
    );
    let in_certs: Vec<String> = fs::read_dir(rootfs.join("etc/ssl/certs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    p.expect(
        "/etc/ssl/certs",
        in_certs,
        vec!["ca-certificates.crt".to_owned()],
    );
}

fn dpkg_problems(rootfs: &Path, packages: &BTreeSet<&str>, p: &mut Problems) {
    let dir = rootfs.join("var/lib/dpkg/status.d");
    let names: BTreeSet<String> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let stanzas: BTreeSet<&str> = names
        .iter()
        .filter(|n| !n.ends_with(".md5sums"))
        .map(String::as_str)
        .collect();
    p.expect("status.d packages", stanzas, packages.clone());
    for pkg in packages {
        let stanza = fs::read_to_string(dir.join(pkg)).unwrap_or_default();
        let has = |line: &str| stanza.lines().any(|l| l == line);
        if !has(&format!("Package: {pkg}")) || !has("Status: install ok installed") {
            p.add(format_args!(
                "status.d/{pkg} lacks `Package: {pkg}` or `Status: install ok installed`"
            ));
        }
        p.expect(
            &format!("status.d/{pkg}.md5sums exists"),
            names.contains(&format!("{pkg}.md5sums")),
            true,
        );
    }
}

fn busybox_problems(rootfs: &Path, debug: bool, p: &mut Problems) {
    let want = if debug { "file, mode 755" } else { "missing" };
    p.expect(
        "/busybox/busybox",
        kind(&rootfs.join("busybox/busybox")),
        want.to_owned(),
    );
    if debug {
        for applet in ["sh", "id", "ls", "cat", "wget"] {
            let rel = format!("busybox/{applet}");
            p.expect(
                &format!("/{rel} target"),
                link_target(rootfs, &rel),
                Some("busybox/busybox".to_owned()),
            );
        }
    }
}

/// What is at `path`, for messages: "missing", "directory",
/// "symlink to \"X\"", "file, mode 644".
fn kind(path: &Path) -> String {
    match fs::symlink_metadata(path) {
        Err(_) => "missing".to_owned(),
        Ok(m) if m.is_symlink() => {
            format!("symlink to {:?}", fs::read_link(path).unwrap_or_default())
        }
        Ok(m) if m.is_dir() => "directory".to_owned(),
        Ok(m) => format!("file, mode {:o}", m.mode() & 0o7777),
    }
}

/// `path uid:gid` of everything under `dir` (relative to `root`) that is
/// not owned by root:root.
fn owners(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.uid() != 0 || meta.gid() != 0 {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push(format!("{rel} {}:{}", meta.uid(), meta.gid()));
        }
        if meta.is_dir() {
            owners(root, &path, out);
        }
    }
}

// ---------------------------------------------------------------------------
// 3. programs run with runc
// ---------------------------------------------------------------------------

/// Static (no libc in `static`): decodes every PEM certificate of the CA
/// bundle, checks each DER's outer SEQUENCE length, reads /etc/passwd.
const CERTS_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int b64(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int main(void) {
    static unsigned char der[1 << 16];
    char line[4096], cwd[512];
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0, in = 0, certs = 0, lines = 0;
    FILE *f = fopen("/etc/ssl/certs/ca-certificates.crt", "r");
    if (!f) { perror("open CA bundle"); return 2; }
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "-----BEGIN CERTIFICATE-----", 27)) { in = 1; n = 0; acc = 0; bits = 0; continue; }
        if (!strncmp(line, "-----END CERTIFICATE-----", 25)) {
            size_t len = 0, hdr = 2;
            if (!in || n < 2 || der[0] != 0x30) { fprintf(stderr, "certificate %d: no SEQUENCE\n", certs + 1); return 3; }
            if (der[1] < 0x80) len = der[1];
            else {
                int k = der[1] & 0x7f;
                if (k < 1 || k > 3 || n < 2 + (size_t)k) { fprintf(stderr, "certificate %d: bad length\n", certs + 1); return 3; }
                for (int i = 0; i < k; i++) len = len << 8 | der[2 + i];
                hdr += k;
            }
            if (hdr + len != n) { fprintf(stderr, "certificate %d: SEQUENCE of %zu+%zu bytes, DER of %zu\n", certs + 1, hdr, len, n); return 4; }
            in = 0;
            certs++;
            continue;
        }
        if (!in) continue;
        for (char *p = line; *p && *p != '\n' && *p != '\r' && *p != '='; p++) {
            int v = b64((unsigned char)*p);
            if (v < 0 || n >= sizeof der) { fprintf(stderr, "certificate %d: bad base64\n", certs + 1); return 5; }
            acc = (acc << 6 | (unsigned)v) & 0xffffff;
            bits += 6;
            if (bits >= 8) { bits -= 8; der[n++] = (unsigned char)(acc >> bits); }
        }
    }
    fclose(f);
    if (in) { fprintf(stderr, "unterminated certificate\n"); return 6; }
    f = fopen("/etc/passwd", "r");
    if (!f) { perror("open /etc/passwd"); return 7; }
    while (fgets(line, sizeof line, f)) {
        lines++;
        if (!strncmp(line, "nonroot:", 8)) printf("passwd %s", line);
    }
    fclose(f);
    printf("certificates %d\npasswd-lines %d\nuid %d\ncwd %s\n", certs, lines, (int)getuid(),
           getcwd(cwd, sizeof cwd) ? cwd : "?");
    return 0;
}
"#;

/// Dynamic, against the image's libssl: version, a client context, and
/// the CA bundle loaded through SSL_CERT_FILE.
const SSL_C: &str = r#"
#include <stdio.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

int main(void) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { fprintf(stderr, "SSL_CTX_new failed\n"); return 1; }
    if (!SSL_CTX_set_default_verify_paths(ctx)) { fprintf(stderr, "no default verify paths\n"); return 2; }
    printf("%s\nstore %d\n", OpenSSL_version(OPENSSL_VERSION),
           sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx))));
    SSL_CTX_free(ctx);
    return 0;
}
"#;

/// C against libc and libgomp (OpenMP).
const HELLO_C: &str = r#"
#include <omp.h>
#include <stdio.h>

int main(void) {
    int sum = 0;
#pragma omp parallel for reduction(+:sum) num_threads(2)
    for (int i = 1; i <= 100; i++) sum += i;
    printf("hello from C, sum %d\n", sum);
    return 0;
}
"#;

/// C++ against libstdc++ and libgcc_s (exceptions).
const HELLO_CPP: &str = r#"
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

int main() {
    std::vector<std::string> words{"hello", "from", "C++"};
    std::string line;
    for (const auto &w : words) line += (line.empty() ? "" : " ") + w;
    try {
        throw std::runtime_error("caught");
    } catch (const std::exception &e) {
        std::cout << line << ", " << e.what() << std::endl;
    }
    return 0;
}
"#;

/// The test programs, compiled on the host once per process into a
/// directory that runs mount at [`PROGRAMS`].
fn programs() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir("programs");
        let jobs: [(&str, &str, &str, &[&str]); 4] = [
            ("certs", "c", "gcc", &["-static", "-O2"]),
            ("ssl", "c", "gcc", &["-O2", "-lssl", "-lcrypto"]),
            ("hello-c", "c", "gcc", &["-O2", "-fopenmp"]),
            ("hello-cpp", "cpp", "g++", &["-O2"]),
        ];
        let sources = [CERTS_C, SSL_C, HELLO_C, HELLO_CPP];
        for ((name, ext, compiler, flags), source) in jobs.iter().zip(sources) {
            let src = dir.join(format!("{name}.{ext}"));
            fs::write(&src, source).map_err(|e| format!("{}: {e}", src.display()))?;
            // Libraries after the source, as the linker wants them.
            support::output(
                support::tool_command(compiler)
                    .arg("-o")
                    .arg(dir.join(name))
                    .arg(&src)
                    .args(*flags),
            )?;
        }
        Ok(dir)
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("compiling the test programs failed: {e}"))
}

/// Where the programs appear inside the containers.
const PROGRAMS: &str = "/plinth-test";

fn programs_ready() -> bool {
    containers_ready()
        && support::tools(&["gcc", "g++"])
        && support::file_from_package("/usr/include/openssl/ssl.h", "libssl-dev")
}

/// The compiled programs, mounted at [`PROGRAMS`].
fn program_mounts() -> [Mount<'static>; 1] {
    [Mount {
        host: programs(),
        container: PROGRAMS,
    }]
}

/// Runs `args` in the amd64 image `repo:tag`.
fn run_in(repo: Repo, tag: &str, args: &[&str], mounts: &[Mount]) -> Result<Output, String> {
    Ok(support::run(&bundle(repo, tag)?, args, mounts))
}

/// Runs `args` in each of `cases`; a failure to run or a non-zero exit is a
/// problem, and `check` (given the case and stdout) returns further ones.
fn run_cases(
    cases: &[(Repo, &str)],
    args: &[&str],
    mounts: &[Mount],
    check: impl Fn(Repo, &str, &str) -> Vec<String> + Sync,
) -> Vec<String> {
    parallel(cases, 2, |&(repo, tag)| {
        let subject = format!("{}:{tag}-amd64 {args:?}", repo.name());
        match run_in(repo, tag, args, mounts) {
            Err(e) => vec![format!("{subject}: {e}")],
            Ok(out) if !out.status.success() => vec![support::describe(&subject, &out)],
            Ok(out) => check(repo, tag, &text(&out.stdout))
                .into_iter()
                .map(|problem| format!("{subject}: {problem}\nstdout:\n{}", text(&out.stdout)))
                .collect(),
        }
    })
}

/// `(repo, tag)` for every distribution.
fn cases(image: &str, tags: &[&'static str]) -> Vec<(Repo, &'static str)> {
    DISTS
        .iter()
        .flat_map(|d| tags.iter().map(move |t| (repo(image, d.name), *t)))
        .collect()
}

/// The `key value` lines of a program's output.
fn report(stdout: &str) -> BTreeMap<&str, &str> {
    stdout.lines().filter_map(|l| l.split_once(' ')).collect()
}

/// The number of certificates in the CA bundle of the unpacked `repo:tag`.
fn bundle_certificates(repo: Repo, tag: &str) -> String {
    let path = bundle(repo, tag).map(|b| b.join("rootfs").join(&SSL_CERT_FILE[1..]));
    let text = path.ok().and_then(|p| fs::read_to_string(p).ok());
    text.map_or(0, |t| t.matches("-----BEGIN CERTIFICATE-----").count())
        .to_string()
}

/// Problems where the program's `key value` lines differ from `want`.
fn report_problems(stdout: &str, want: &[(&str, String)]) -> Vec<String> {
    let got = report(stdout);
    want.iter()
        .filter(|(key, value)| got.get(key) != Some(&value.as_str()))
        .map(|(key, value)| format!("{key} is {:?}, expected {value:?}", got.get(key)))
        .collect()
}

#[test]
fn static_program_reads_the_ca_bundle_and_passwd_in_static() {
    if !programs_ready() {
        return;
    }
    let program = format!("{PROGRAMS}/certs");
    let cases = cases("static", &["latest", "nonroot"]);
    let problems = run_cases(&cases, &[&program], &program_mounts(), |repo, tag, out| {
        let v = Variant::of(tag);
        let want = [
            // Every certificate decoded, with a consistent DER length.
            ("certificates", bundle_certificates(repo, tag)),
            ("passwd-lines", "3".to_owned()),
            (
                "passwd",
                PASSWD.lines().nth(2).unwrap_or_default().to_owned(),
            ),
            ("uid", v.user().to_string()),
            ("cwd", v.workdir().to_owned()),
        ];
        report_problems(out, &want)
    });
    assert_no_problems("static program", &problems);
}

#[test]
fn libssl_program_runs_in_base() {
    if !programs_ready() {
        return;
    }
    let program = format!("{PROGRAMS}/ssl");
    let cases = cases("base", &["latest", "nonroot"]);
    let problems = run_cases(&cases, &[&program], &program_mounts(), |repo, tag, out| {
        // The image's own libssl answers, and it reads SSL_CERT_FILE.
        let mut problems = report_problems(out, &[("store", bundle_certificates(repo, tag))]);
        let version = report(out).get("OpenSSL").copied().unwrap_or_default();
        if !version.starts_with(repo.dist.openssl) {
            problems.push(format!(
                "OpenSSL_version is {version:?}, expected {}*",
                repo.dist.openssl
            ));
        }
        problems
    });
    assert_no_problems("libssl program", &problems);

    // Without libssl (base-nossl) the same program cannot start.
    let out = run_in(
        repo("base-nossl", "debian13"),
        "latest",
        &[&program],
        &program_mounts(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !out.status.success() && text(&out.stderr).contains("libssl.so.3"),
        "{}",
        support::describe(
            "the libssl program in base-nossl (expected to fail for lack of libssl.so.3)",
            &out
        )
    );
}

#[test]
fn c_and_cpp_programs_run_in_cc() {
    if !programs_ready() {
        return;
    }
    let in_cc = cases("cc", &["latest", "nonroot"]);
    for (name, want) in [
        ("hello-c", "hello from C, sum 5050\n"),
        ("hello-cpp", "hello from C++, caught\n"),
    ] {
        let program = format!("{PROGRAMS}/{name}");
        let problems = run_cases(&in_cc, &[&program], &program_mounts(), |_, _, out| {
            if out == want {
                vec![]
            } else {
                vec![format!("expected {want:?}")]
            }
        });
        assert_no_problems(name, &problems);
    }
}

#[test]
fn busybox_shell_runs_in_debug_images() {
    if !containers_ready() {
        return;
    }
    let debug: Vec<(Repo, &str)> = repos()
        .into_iter()
        .flat_map(|r| [(r, "debug"), (r, "debug-nonroot")])
        .collect();
    let problems = run_cases(
        &debug,
        &["/busybox/sh", "-c", "echo ok; id -u; pwd"],
        &[],
        |_, tag, out| {
            let v = Variant::of(tag);
            let want = format!("ok\n{}\n{}\n", v.user(), v.workdir());
            if out == want {
                vec![]
            } else {
                vec![format!("expected {want:?}")]
            }
        },
    );
    assert_no_problems("busybox", &problems);
}

#[test]
fn non_debug_images_have_no_shell() {
    if !containers_ready() {
        return;
    }
    let plain: Vec<(Repo, &str)> = repos()
        .into_iter()
        .flat_map(|r| [(r, "latest"), (r, "nonroot")])
        .collect();
    let problems = parallel(&plain, 2, |&(repo, tag)| {
        match run_in(repo, tag, &["/bin/sh", "-c", "echo shell"], &[]) {
            Err(e) => vec![e],
            Ok(out) if out.status.success() || text(&out.stdout).contains("shell") => {
                vec![support::describe(
                    &format!("{}:{tag}: /bin/sh ran (expected to fail)", repo.name()),
                    &out,
                )]
            }
            Ok(_) => vec![],
        }
    });
    assert_no_problems("no shell", &problems);
}

// ---------------------------------------------------------------------------
// 4. reproducibility
// ---------------------------------------------------------------------------

#[test]
fn rebuild_in_another_environment_is_byte_identical() {
    let first = built();
    let out = scratch_dir("rebuild");
    let elsewhere = scratch_dir("elsewhere");
    let how = BuildEnv {
        umask: "077",
        env: &[
            ("TZ", "Asia/Tokyo"),
            ("LANG", "de_DE.UTF-8"),
            ("LC_ALL", "de_DE.UTF-8"),
        ],
        jobs: Some("1"),
        cwd: &elsewhere,
    };
    // Every layer is rebuilt under the changed environment, none reused.
    let second = build_images(&out, &["-v"], &["--no-layer-cache"], &how)
        .unwrap_or_else(|e| panic!("the second build failed: {e}"));
    assert!(!text(&second.stderr).contains("reused from the layer cache"));
    let (a, b) = (files(first), files(&out));
    let mut problems = Vec::new();
    for path in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        match (a.get(path), b.get(path)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(_), Some(_)) => problems.push(format!("{} differs", path.display())),
            (Some(_), None) => {
                problems.push(format!("{} is only in the first build", path.display()))
            }
            _ => problems.push(format!("{} is only in the second build", path.display())),
        }
    }
    let _ = fs::remove_dir_all(&out);
    assert_covers_every_repository(&a);
    assert_no_problems("second build vs first", &problems);
}

/// The comparison covered every repository's index.json and blobs.
fn assert_covers_every_repository(files: &BTreeMap<PathBuf, Vec<u8>>) {
    for repo in repos() {
        let index = Path::new(&repo.name()).join("index.json");
        assert!(files.contains_key(&index), "{} is missing", index.display());
        let blobs = Path::new(&repo.name()).join("blobs");
        assert!(
            files.keys().any(|p| p.starts_with(&blobs)),
            "{} is empty",
            blobs.display()
        );
    }
}

// ---------------------------------------------------------------------------
// 5. bad input
// ---------------------------------------------------------------------------

#[test]
fn unknown_image_is_a_one_line_error() {
    let out_dir = scratch().join("unknown-image");
    let how = BuildEnv {
        umask: "022",
        env: &[],
        jobs: None,
        cwd: scratch(),
    };
    let out_arg = out_dir.to_str().expect("UTF-8 scratch path");
    let out = xtask(&["images", "nosuchimage", "--out", out_arg], &how)
        .output()
        .expect("run xtask");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        out.status.code() == Some(2)
            && lines.len() == 1
            && lines[0].starts_with("error: ")
            && lines[0].contains("nosuchimage"),
        "{}",
        support::describe(
            "expected exactly one `error: ...nosuchimage...` line and a failure",
            &out
        )
    );
    assert!(
        !out_dir.exists(),
        "{} was created for a failed build",
        out_dir.display()
    );
}
