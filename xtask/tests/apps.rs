//! Application images end to end: the example service's images run under
//! runc as uid 65532 and are their own health check, rebuild to the
//! recorded digests from a fresh Cargo target directory, say what they
//! stand on and what is inside, and binaries that could not start on
//! their base are refused with a message saying why and what would do.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use plinth::apps::elf::{ElfError, ImageTree};
use plinth::oci::{Index, Manifest};
use support::{Container, Mount};

const APPS: [&str; 2] = ["hello-server", "hello-server-cc"];
const BIN: &str = "/usr/local/bin/hello-server";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| support::scratch_for("apps-e2e"))
}

/// The example's images and their bases, built once per process with
/// `cargo xtask images hello-server hello-server-cc --out DIR`.
fn built() -> &'static Path {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = scratch().join("images");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(["images", "--out"]).arg(&out).args(APPS);
        support::output(&mut cmd).map(|_| out)
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("building the example's images failed: {e}"))
}

fn manifest(layout: &Path, tag: &str) -> Manifest {
    let index: Index =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = index
        .find_ref(tag)
        .unwrap_or_else(|| panic!("{}: no tag {tag}", layout.display()));
    plinth::oci::read_json(layout, desc).unwrap()
}

/// The merged file system of `repo:tag` as built.
fn image_tree(repo: &str, tag: &str) -> ImageTree {
    let layout = built().join(repo);
    let m = manifest(&layout, tag);
    ImageTree::from_layers(m.layers.iter().map(|l| {
        plinth::layer::read_layer(
            &plinth::oci::read_described(&layout, l).unwrap(),
            &plinth::tarfs::TarLimits::NONE,
        )
        .unwrap()
    }))
}

fn bundle(repo: &str) -> PathBuf {
    let path = scratch().join(format!("bundle-{repo}"));
    if !path.exists() {
        support::unpack(&built().join(repo), "latest-amd64", "amd64", &path)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    path
}

#[test]
fn example_service_runs_as_nonroot_and_is_its_own_health_check() {
    if !(support::tools(&["umoci", "runc"]) && support::can_run_containers()) {
        return;
    }
    for repo in APPS {
        let bundle = bundle(repo);
        // The image's own entrypoint and arguments, as an engine runs them.
        let config = support::read_config(&bundle).unwrap();
        let argv: Vec<String> = serde_json::from_value(config["process"]["args"].clone()).unwrap();
        assert_eq!(argv, [BIN, "--listen", "0.0.0.0:8080"], "{repo}");
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let server = Container::start(&bundle, &argv).unwrap_or_else(|e| panic!("{repo}: {e}"));

        // `--healthcheck` inside the container probes /healthz on the
        // container's own loopback; poll until the server is up.
        let deadline = Instant::now() + Duration::from_secs(15);
        let healthy = loop {
            let out = server.exec(&[BIN, "--healthcheck"]);
            if out.status.success() || Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            healthy.status.success(),
            "{repo}: {}\nserver log: {}",
            support::describe("--healthcheck", &healthy),
            server.log()
        );
        assert_eq!(String::from_utf8_lossy(&healthy.stdout), "healthy\n");
        assert!(
            server.log().contains("listening on 0.0.0.0:8080"),
            "{}",
            server.log()
        );
        let status = fs::read_to_string(format!("/proc/{}/status", server.pid)).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert_eq!(
            uid.split_whitespace().skip(1).collect::<Vec<_>>(),
            ["65532"; 4],
            "{repo}: the server runs as {uid}"
        );
        // A port nothing listens on: the check fails.
        let wrong = server.exec(&[BIN, "--healthcheck", "--listen", "127.0.0.1:8081"]);
        assert_eq!(wrong.status.code(), Some(1), "{repo}");
        drop(server);

        // With the server down (a fresh container, nothing listening).
        let down = support::run(&bundle, &[BIN, "--healthcheck"], &[]);
        assert_eq!(down.status.code(), Some(1), "{repo}");
        let stderr = String::from_utf8_lossy(&down.stderr);
        assert!(
            stderr.contains("health check of 127.0.0.1:8080") && stderr.contains("refused"),
            "{repo}: {stderr}"
        );
    }
}

#[test]
fn images_say_what_they_stand_on_and_hold_only_the_application() {
    for repo in APPS {
        let layout = built().join(repo);
        let m = manifest(&layout, "latest-amd64");
        let config: plinth::oci::ImageConfig = plinth::oci::read_json(&layout, &m.config).unwrap();
        let base = if repo == "hello-server" {
            "static-debian13"
        } else {
            "cc-debian13"
        };
        let base_manifest = plinth::oci::read_layout(&built().join(base))
            .unwrap()
            .find_ref("nonroot-amd64")
            .unwrap()
            .digest
            .clone();
        let labels = &config.config.labels;
        assert_eq!(
            labels["org.opencontainers.image.base.name"],
            format!("{base}:nonroot")
        );
        assert_eq!(
            labels["org.opencontainers.image.base.digest"],
            base_manifest
        );
        assert_eq!(
            m.annotations["org.opencontainers.image.base.digest"],
            base_manifest
        );
        assert_eq!(config.config.user.as_deref(), Some("65532"));
        assert_eq!(config.config.entrypoint, Some(vec![BIN.to_owned()]));
        assert!(config.config.exposed_ports.contains_key("8080/tcp"));
        assert!(
            config
                .config
                .env
                .contains(&"HELLO_GREETING_FILE=/etc/hello-server/greeting.txt".to_owned())
        );
        // The base's layers, unchanged, then one layer of our own.
        let base_m = manifest(&built().join(base), "nonroot-amd64");
        assert_eq!(m.layers[..m.layers.len() - 1], base_m.layers[..]);
        let top = plinth::layer::read_layer(
            &plinth::oci::read_described(&layout, m.layers.last().unwrap()).unwrap(),
            &plinth::tarfs::TarLimits::NONE,
        )
        .unwrap();
        let files: BTreeSet<(String, u32)> = top
            .iter()
            .filter(|e| !e.is_dir())
            .map(|e| (e.path.clone(), e.mode))
            .collect();
        assert_eq!(
            files,
            BTreeSet::from([
                ("usr/local/bin/hello-server".to_owned(), 0o755),
                ("etc/hello-server/greeting.txt".to_owned(), 0o644),
            ]),
            "{repo}"
        );
        assert!(top.iter().all(|e| e.uid == 0 && e.gid == 0));
    }
}

#[test]
fn sboms_list_the_debian_packages_and_the_crates_inside() {
    let lock = fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let httparse = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"httparse\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_owned())
        .expect("httparse in Cargo.lock");
    for (repo, deb) in [("hello-server", "tzdata"), ("hello-server-cc", "libc6")] {
        let dir = built().join("sbom").join(repo);
        let cdx: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("latest-amd64.cdx.json")).unwrap()).unwrap();
        // Components nest: image → layer → what the layer brings.
        fn walk<'a>(list: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
            for c in list.as_array().into_iter().flatten() {
                out.push(c);
                walk(&c["components"], out);
            }
        }
        let mut components = Vec::new();
        walk(&cdx["components"], &mut components);
        let purls: Vec<&str> = components
            .iter()
            .filter_map(|c| c["purl"].as_str())
            .collect();
        for wanted in [
            format!("pkg:cargo/httparse@{httparse}"),
            "pkg:cargo/hello-server@0.1.0".to_owned(),
            format!("pkg:deb/debian/{deb}@"),
        ] {
            assert!(
                purls.iter().any(|p| p.starts_with(&wanted)),
                "{repo}: no {wanted} in {purls:?}"
            );
        }
        let krate = components.iter().find(|c| c["name"] == "httparse").unwrap();
        assert_eq!(krate["licenses"][0]["expression"], "MIT OR Apache-2.0");
        // The hash of the .crate, from Cargo.lock.
        let checksum = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"httparse\""))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("checksum = \"")))
            .unwrap()
            .trim_end_matches('"');
        assert_eq!(krate["hashes"][0]["content"], checksum, "{krate}");
        let spdx = fs::read_to_string(dir.join("latest-amd64.spdx.json")).unwrap();
        assert!(spdx.contains(&format!("pkg:cargo/httparse@{httparse}")));
    }
}

#[test]
fn rebuilding_from_a_fresh_cargo_target_gives_the_recorded_digests() {
    let root = root();
    let project = plinth::Project::open(&root).unwrap();
    let cache = plinth::download::cache::Cache::from_env().unwrap();
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let fresh = scratch().join("fresh");
    let options = plinth::build::BuildOptions {
        out_dir: fresh.join("images"),
        layer_cache: None,
        offline: false,
        images: vec!["hello-server".into()],
        source_date_epoch: None,
        fetch: Default::default(),
        network: plinth::net::Environment::from_process(),
        apt_dir: "/etc/apt".into(),
        apps: plinth::apps::discover(&root, &cargo, &project.definitions).unwrap(),
        app_target_dir: fresh.join("cargo-target"),
        cargo,
        skip_app_architectures: Vec::new(),
    };
    let built = plinth::build::build(&project, &cache, &options, &plinth::Silent).unwrap();
    let recorded = plinth::digests::RecordedDigests::read(&plinth::digests::RecordedDigests::path(
        &project.lockfiles_dir(),
    ))
    .unwrap();
    let mine: Vec<_> = built
        .into_iter()
        .filter(|t| t.repository == "hello-server")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        recorded.differences(&mine),
        Vec::<String>::new(),
        "a fresh build of hello-server differs from lockfiles/digests.toml"
    );
}

/// Compiles `source` (C) with gcc into `name` in the scratch space.
fn gcc(name: &str, source: &str, args: &[&str]) -> Option<Vec<u8>> {
    if !support::tools(&["gcc"]) {
        return None;
    }
    let dir = scratch().join("elf");
    fs::create_dir_all(&dir).unwrap();
    let c = dir.join(format!("{name}.c"));
    fs::write(&c, source).unwrap();
    let out = dir.join(name);
    support::check(
        Command::new("gcc")
            .arg("-o")
            .arg(&out)
            .arg(&c)
            .args(args)
            .current_dir(&dir),
    );
    Some(fs::read(out).unwrap())
}

#[test]
fn a_binary_needing_a_library_the_base_lacks_is_refused() {
    if !support::file_from_package("/usr/include/zlib.h", "zlib1g-dev") {
        return;
    }
    let Some(needs_z) = gcc(
        "needs-libz",
        "#include <zlib.h>\nint main(void) { return zlibVersion()[0] == 0; }\n",
        &["-lz"],
    ) else {
        return;
    };
    let tree = image_tree("base-nossl-debian13", "nonroot-amd64");
    let err = plinth::apps::elf::check("needs-libz", &needs_z, "amd64", &tree).unwrap_err();
    assert!(
        matches!(&err, ElfError::MissingLibrary { library, needed_by: None, .. } if library == "libz.so.1"),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(
            "needs libz.so.1, which the image does not have (searched /lib/x86_64-linux-gnu,"
        ),
        "{err}"
    );
    // A dynamically linked binary on `static`: no loader there.
    let err = plinth::apps::elf::check(
        "needs-libz",
        &needs_z,
        "amd64",
        &image_tree("static-debian13", "nonroot-amd64"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "is dynamically linked, but the image has no /lib64/ld-linux-x86-64.so.2 (its dynamic loader)"
    );
    // And for the wrong machine.
    let err = plinth::apps::elf::check("needs-libz", &needs_z, "arm64", &tree).unwrap_err();
    assert!(matches!(err, ElfError::WrongMachine { .. }), "{err:?}");
}

/// A binary linked as if against glibc 2.38 or later: `strlcpy` is
/// versioned `GLIBC_2.38`. The host's glibc may be older, so it links
/// against a stub `libc.so.6` that defines just those versions; the
/// binary is the same as one linked against the real thing.
fn needs_glibc_2_38() -> Option<Vec<u8>> {
    let dir = scratch().join("elf");
    fs::create_dir_all(dir.join("stub")).unwrap();
    fs::write(
        dir.join("stub.map"),
        "GLIBC_2.34 { global: __libc_start_main; local: *; };\nGLIBC_2.38 { global: strlcpy; } GLIBC_2.34;\n",
    )
    .unwrap();
    gcc(
        "stub/libc.so.6",
        "int __libc_start_main(void) { return 0; }\nunsigned long strlcpy(char *d, const char *s, unsigned long n) { (void)d; (void)s; return n; }\n",
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libc.so.6",
            "-Wl,--version-script=stub.map",
        ],
    )?;
    gcc(
        "needs-glibc-2.38",
        "unsigned long strlcpy(char *, const char *, unsigned long);\nint main(void) { char b[4]; return (int)strlcpy(b, \"plinth\", sizeof b); }\n",
        &["stub/libc.so.6"],
    )
}

#[test]
fn a_binary_needing_a_newer_glibc_is_refused_as_the_loader_would() {
    let Some(binary) = needs_glibc_2_38() else {
        return;
    };
    let old = image_tree("base-nossl-debian12", "nonroot-amd64");
    let err = plinth::apps::elf::check("needs-glibc", &binary, "amd64", &old).unwrap_err();
    assert_eq!(
        err.to_string(),
        "needs symbol version GLIBC_2.38 of libc.so.6, which the image's /usr/lib/x86_64-linux-gnu/libc.so.6 (from libc6) does not define (its newest is GLIBC_2.36)"
    );
    let new = image_tree("base-nossl-debian13", "nonroot-amd64");
    assert_eq!(
        plinth::apps::elf::check("needs-glibc", &binary, "amd64", &new),
        Ok(())
    );

    // The real loader agrees, both ways.
    if !(support::tools(&["umoci", "runc"]) && support::can_run_containers()) {
        return;
    }
    let host = scratch().join("elf");
    let mount = [Mount {
        host: &host,
        container: "/probe",
    }];
    for (repo, ok) in [
        ("base-nossl-debian12", false),
        ("base-nossl-debian13", true),
    ] {
        let bundle = scratch().join(format!("bundle-{repo}"));
        if !bundle.exists() {
            support::unpack(&built().join(repo), "nonroot-amd64", "amd64", &bundle).unwrap();
        }
        let out = support::run(&bundle, &["/probe/needs-glibc-2.38"], &mount);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if ok {
            // strlcpy returns the source's length, 6, as the exit status.
            assert_eq!(out.status.code(), Some(6), "{repo}: {stderr}");
        } else {
            assert!(
                !out.status.success() && stderr.contains("GLIBC_2.38' not found"),
                "{repo}: {stderr}"
            );
        }
    }
}

/// A workspace beside this one with the same images and lockfiles and one
/// Rust service that declares `base = "base-nossl"`.
fn fixture_workspace(links_zlib: bool) -> PathBuf {
    let dir = scratch().join(if links_zlib { "ws-zlib" } else { "ws-plain" });
    let _ = fs::remove_dir_all(&dir);
    for sub in ["images", "lockfiles", "keys"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in fs::read_dir(root().join(sub)).unwrap().flatten() {
            fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
        }
    }
    fs::create_dir_all(dir.join("svc/src")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        "[workspace]\nmembers = [\"svc\"]\nresolver = \"3\"\n",
    )
    .unwrap();
    fs::write(
        dir.join("svc/Cargo.toml"),
        "[package]\nname = \"svc\"\nversion = \"0.1.0\"\nedition = \"2024\"\nlicense = \"MIT\"\n\n[package.metadata.plinth]\nbase = \"base-nossl\"\narchitectures = [\"amd64\"]\n",
    )
    .unwrap();
    let main = if links_zlib {
        fs::write(
            dir.join("svc/build.rs"),
            "fn main() { println!(\"cargo:rustc-link-lib=z\"); }\n",
        )
        .unwrap();
        "unsafe extern \"C\" { fn zlibVersion() -> *const std::ffi::c_char; }\nfn main() { println!(\"{:?}\", unsafe { zlibVersion() }); }\n"
    } else {
        "fn main() { println!(\"hello\"); }\n"
    };
    fs::write(dir.join("svc/src/main.rs"), main).unwrap();
    support::check(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["generate-lockfile", "--offline"])
            .current_dir(&dir),
    );
    dir
}

/// `cargo xtask images` as a workspace with `root` would run it; the error.
fn refusal(root: &Path) -> String {
    let project = plinth::Project::open(root).unwrap();
    let cache = plinth::download::cache::Cache::from_env().unwrap();
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let options = plinth::build::BuildOptions {
        out_dir: root.join("target/images"),
        layer_cache: Some(self::root().join("target/plinth-layers")),
        offline: false,
        images: Vec::new(),
        source_date_epoch: None,
        fetch: Default::default(),
        network: plinth::net::Environment::from_process(),
        apt_dir: "/etc/apt".into(),
        apps: plinth::apps::discover(root, &cargo, &project.definitions).unwrap(),
        app_target_dir: root.join("target/apps"),
        cargo,
        skip_app_architectures: Vec::new(),
    };
    let err = plinth::build::build(&project, &cache, &options, &plinth::Silent).unwrap_err();
    assert!(
        !root.join("target/images").exists(),
        "a refused build wrote images"
    );
    err.to_string()
}

#[test]
fn the_build_refuses_a_service_its_base_cannot_start_and_names_one_that_can() {
    // A Rust binary linked dynamically needs libgcc_s, which only cc has.
    let err = refusal(&fixture_workspace(false));
    assert!(
        err.starts_with("svc: svc (amd64) cannot start on base-nossl-debian13:nonroot: it needs libgcc_s.so.1, which the image does not have (searched /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib, /usr/lib)"),
        "{err}"
    );
    assert!(err.ends_with("; cc-debian13 provides it"), "{err}");
    assert!(!err.contains('\n'), "{err}");

    if !support::file_from_package("/usr/lib/x86_64-linux-gnu/libz.so", "zlib1g-dev") {
        return;
    }
    // libz comes with base (libssl needs it), libgcc_s with cc on top.
    let err = refusal(&fixture_workspace(true));
    assert!(
        err.contains("it needs libz.so.1, which the image does not have"),
        "{err}"
    );
    assert!(err.ends_with("; cc-debian13 provides it"), "{err}");
}
