//! Application images: the workspace's own binaries, each layered on a
//! golden base.
//!
//! It owns discovery (`[package.metadata.plinth]` in a workspace
//! package's `Cargo.toml`, read through `cargo metadata`), the validation
//! of those tables, and the Cargo dependency tree a binary is made from,
//! as SBOM components. It never builds anything (see [`super::compile`])
//! and never reads an image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cargo_metadata::{DependencyKind, Metadata, MetadataCommand, Package, PackageId};
use serde::Deserialize;

use crate::debian::copyright::License;
use crate::definitions::VARIANTS;
use crate::definitions::{Definitions, Name};
use crate::sbom::{Component, ComponentKind};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cargo metadata for {manifest}: {why}")]
    Metadata { manifest: PathBuf, why: String },
    #[error("{manifest}: [package.metadata.plinth] {why}")]
    Invalid { manifest: PathBuf, why: String },
}

/// One application image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppImage {
    /// The image repository: `hello-server`.
    pub name: String,
    /// The Cargo package the binaries come from.
    pub package: String,
    pub version: String,
    /// The package's `Cargo.toml`, for messages.
    pub manifest: PathBuf,
    /// The golden image it stands on (`static`) and its distribution.
    pub base: String,
    pub distribution: String,
    /// `nonroot` unless the table says otherwise.
    pub variant: String,
    /// Binary targets, the first being the entrypoint.
    pub binaries: Vec<String>,
    /// The command's default arguments (the config's `Cmd`).
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// `8080/tcp`.
    pub ports: BTreeSet<String>,
    pub labels: BTreeMap<String, String>,
    pub files: Vec<AppFile>,
    /// The Debian architectures the image is built for, in the order of
    /// the golden images' architectures. Declared, so that the image does
    /// not depend on which Rust targets and linkers the host happens to
    /// have; by default every architecture of the golden images.
    pub architectures: Vec<String>,
}

impl AppImage {
    /// The repository of the base: `static-debian13`.
    pub fn base_repository(&self) -> String {
        format!("{}-{}", self.base, self.distribution)
    }

    /// Whether the binaries must be linked statically (the base has no
    /// C library).
    pub fn static_link(&self) -> bool {
        self.base == "static"
    }
}

/// A file copied from the repository into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFile {
    /// Absolute path on the host, inside the workspace.
    pub source: PathBuf,
    /// Root-relative path in the image: `etc/hello/greeting.txt`.
    pub path: String,
    pub mode: u32,
}

/// The fields of the table and of each `[package.metadata.plinth.image.NAME]`
/// table; an image's own fields replace the package-wide ones.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    base: Option<String>,
    variant: Option<String>,
    binaries: Option<Vec<String>>,
    args: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    ports: Option<Vec<Port>>,
    labels: Option<BTreeMap<String, String>>,
    files: Option<Vec<FileSpec>>,
    architectures: Option<Vec<String>>,
}

impl Fields {
    fn or(self, defaults: &Fields) -> Fields {
        let d = defaults.clone();
        Fields {
            base: self.base.or(d.base),
            variant: self.variant.or(d.variant),
            binaries: self.binaries.or(d.binaries),
            args: self.args.or(d.args),
            env: self.env.or(d.env),
            ports: self.ports.or(d.ports),
            labels: self.labels.or(d.labels),
            files: self.files.or(d.files),
            architectures: self.architectures.or(d.architectures),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Port {
    Number(u64),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    /// Relative to the package's directory.
    source: String,
    /// Absolute path in the image.
    path: String,
    #[serde(default)]
    mode: Option<Mode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Mode {
    /// TOML `0o644`.
    Number(u32),
    /// `"0644"`.
    Octal(String),
}

/// Runs `cargo metadata` on the workspace at `root`.
pub fn metadata(root: &Path, cargo: &Path, target: Option<&str>) -> Result<Metadata, AppError> {
    let manifest = root.join("Cargo.toml");
    let mut cmd = MetadataCommand::new();
    cmd.cargo_path(cargo).manifest_path(&manifest);
    let mut options = vec!["--locked".to_owned()];
    if let Some(t) = target {
        options.extend(["--filter-platform".to_owned(), t.to_owned()]);
    }
    cmd.other_options(options);
    cmd.exec().map_err(|e| AppError::Metadata {
        manifest,
        why: crate::support::text::one_line(&e.to_string()),
    })
}

/// Every application image the workspace's packages declare, sorted by
/// name. A project without a `Cargo.toml` has none.
pub fn discover(
    root: &Path,
    cargo: &Path,
    definitions: &Definitions,
) -> Result<Vec<AppImage>, AppError> {
    if !root.join("Cargo.toml").is_file() {
        return Ok(Vec::new());
    }
    let metadata = metadata(root, cargo, None)?;
    let root = metadata.workspace_root.as_std_path().to_owned();
    let mut apps = Vec::new();
    for package in metadata.workspace_packages() {
        if let Some(table) = package.metadata.get("plinth") {
            apps.extend(package_images(&root, package, table, definitions)?);
        }
    }
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let bases: BTreeSet<String> = definitions
        .distributions()
        .flat_map(|(d, _)| {
            definitions
                .image_names()
                .into_iter()
                .map(move |i| format!("{i}-{d}"))
        })
        .collect();
    for pair in apps.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(invalid(
                &pair[1].manifest,
                format!("image {:?} is declared twice", pair[1].name),
            ));
        }
    }
    if let Some(app) = apps.iter().find(|a| bases.contains(&a.name)) {
        return Err(invalid(
            &app.manifest,
            format!("image {:?} has the name of a golden image", app.name),
        ));
    }
    Ok(apps)
}

fn invalid(manifest: &Path, why: String) -> AppError {
    AppError::Invalid {
        manifest: manifest.to_owned(),
        why,
    }
}

/// The images one package declares: one per `image.NAME` table, or one
/// named after the package when there is none.
fn package_images(
    root: &Path,
    package: &Package,
    table: &serde_json::Value,
    definitions: &Definitions,
) -> Result<Vec<AppImage>, AppError> {
    let manifest = package.manifest_path.as_std_path();
    let bad = |why: String| invalid(manifest, why);
    let mut table = table
        .as_object()
        .cloned()
        .ok_or_else(|| bad("must be a table".into()))?;
    let images: BTreeMap<String, Fields> = match table.remove("image") {
        Some(v) => serde_json::from_value(v).map_err(|e| bad(format!("image: {e}")))?,
        None => BTreeMap::new(),
    };
    let defaults: Fields =
        serde_json::from_value(serde_json::Value::Object(table)).map_err(|e| bad(e.to_string()))?;
    let images = if images.is_empty() {
        BTreeMap::from([(package.name.to_string(), defaults.clone())])
    } else {
        images
    };
    let dir = manifest.parent().unwrap_or(root);
    images
        .into_iter()
        .map(|(name, fields)| {
            app_image(root, dir, package, &name, fields.or(&defaults), definitions)
                .map_err(|why| bad(format!("image {name:?}: {why}")))
        })
        .collect()
}

fn app_image(
    root: &Path,
    dir: &Path,
    package: &Package,
    name: &str,
    fields: Fields,
    definitions: &Definitions,
) -> Result<AppImage, String> {
    // The name is a directory under the output folder: one component,
    // never `.` or `..`.
    let starts_well = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !starts_well
        || name.contains("..")
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(
            "an image name starts with a lowercase letter or digit, has only lowercase letters, digits, '.', '_' and '-', and no '..'"
                .into(),
        );
    }
    let base = fields
        .base
        .ok_or("names no base (static, base-nossl, base or cc)")?;
    let (base, distribution) = base_and_distribution(&base, definitions)?;
    let variant = fields.variant.unwrap_or_else(|| "nonroot".into());
    if !VARIANTS.iter().any(|v| v.tag == variant) {
        return Err(format!(
            "variant {variant:?} is not one of {}",
            VARIANTS.map(|v| v.tag).join(", ")
        ));
    }
    let bins: Vec<String> = package
        .targets
        .iter()
        .filter(|t| t.is_bin())
        .map(|t| t.name.clone())
        .collect();
    let binaries = fields.binaries.unwrap_or_else(|| bins.clone());
    if binaries.is_empty() {
        return Err(format!("package {} has no binary", package.name));
    }
    if let Some(b) = binaries.iter().find(|b| !bins.contains(b)) {
        return Err(format!(
            "binary {b:?} is not a binary of package {} (it has: {})",
            package.name,
            bins.join(", ")
        ));
    }
    let env = fields.env.unwrap_or_default();
    if let Some(k) = env.keys().find(|k| k.is_empty() || k.contains('=')) {
        return Err(format!("environment variable name {k:?} is not valid"));
    }
    let architectures = architectures(
        fields.architectures,
        &distribution,
        definitions.architectures(&distribution),
    )?;
    Ok(AppImage {
        name: name.to_owned(),
        package: package.name.to_string(),
        version: package.version.to_string(),
        manifest: package.manifest_path.clone().into_std_path_buf(),
        base,
        distribution,
        variant,
        binaries,
        args: fields.args.unwrap_or_default(),
        env,
        ports: fields
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(port)
            .collect::<Result<_, _>>()?,
        labels: fields.labels.unwrap_or_default(),
        files: fields
            .files
            .unwrap_or_default()
            .into_iter()
            .map(|f| app_file(root, dir, f))
            .collect::<Result<_, _>>()?,
        architectures,
    })
}

/// The declared architectures, each one the base's distribution `dist` is
/// built for (`golden`), in their order; all of them when none are
/// declared.
fn architectures(
    declared: Option<Vec<String>>,
    dist: &str,
    golden: &[Name],
) -> Result<Vec<String>, String> {
    let golden: Vec<String> = golden.iter().map(Name::to_string).collect();
    let Some(declared) = declared else {
        return Ok(golden);
    };
    if declared.is_empty() {
        return Err("architectures is empty".into());
    }
    if let Some(a) = declared.iter().find(|a| !golden.contains(a)) {
        return Err(format!(
            "architecture {a:?} is not one the golden images of {dist} are built for ({})",
            golden.join(", ")
        ));
    }
    Ok(golden
        .iter()
        .filter(|a| declared.contains(a))
        .cloned()
        .collect())
}

/// `static` (the newest distribution) or `static-debian12`.
fn base_and_distribution(
    base: &str,
    definitions: &Definitions,
) -> Result<(String, String), String> {
    let images = definitions.image_names();
    if images.iter().any(|i| i == base) {
        let newest = definitions
            .distributions()
            .max_by_key(|(_, d)| d.version.parse::<u64>().unwrap_or(0))
            .map(|(name, _)| name.to_owned())
            .ok_or("images/plinth.toml defines no distribution")?;
        return Ok((base.to_owned(), newest));
    }
    for (dist, _) in definitions.distributions() {
        if let Some(image) = base.strip_suffix(&format!("-{dist}"))
            && images.iter().any(|i| i == image)
        {
            return Ok((image.to_owned(), dist.to_owned()));
        }
    }
    Err(format!(
        "base {base:?} is not a golden image; images/ defines {} (optionally with a distribution: {}-{})",
        images.join(", "),
        images.first().map(String::as_str).unwrap_or("static"),
        definitions
            .distributions()
            .map(|(d, _)| d)
            .collect::<Vec<_>>()
            .join("|")
    ))
}

/// `8080` or `8080/tcp` or `53/udp`, as `8080/tcp`.
fn port(p: Port) -> Result<String, String> {
    let text = match p {
        Port::Number(n) => n.to_string(),
        Port::Text(t) => t,
    };
    let (number, proto) = text.split_once('/').unwrap_or((&text, "tcp"));
    match (number.parse::<u16>(), proto) {
        (Ok(n), "tcp" | "udp" | "sctp") if n > 0 => Ok(format!("{n}/{proto}")),
        _ => Err(format!(
            "port {text:?} is not NUMBER or NUMBER/tcp|udp|sctp"
        )),
    }
}

fn app_file(root: &Path, dir: &Path, spec: FileSpec) -> Result<AppFile, String> {
    let source = dir.join(&spec.source);
    let canonical = source
        .canonicalize()
        .map_err(|e| format!("file {}: {e}", source.display()))?;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    if !canonical.starts_with(&root) {
        return Err(format!(
            "file {} is outside the workspace",
            source.display()
        ));
    }
    if !canonical.is_file() {
        return Err(format!("file {} is not a regular file", source.display()));
    }
    let path = spec
        .path
        .strip_prefix('/')
        .ok_or_else(|| format!("path {:?} must be absolute", spec.path))?;
    if path.is_empty()
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!("path {:?} is not a plain absolute path", spec.path));
    }
    let mode = match spec.mode {
        None => 0o644,
        Some(Mode::Number(n)) => n,
        Some(Mode::Octal(s)) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
            .map_err(|_| format!("mode {s:?} of {} is not octal", spec.path))?,
    };
    if mode > 0o7777 {
        return Err(format!("mode {mode:o} of {} is not a file mode", spec.path));
    }
    Ok(AppFile {
        source: canonical,
        path: path.to_owned(),
        mode,
    })
}

/// The crates linked into `package`'s binaries for a Rust target: the
/// package itself and its normal dependencies, transitively (build and
/// dev dependencies do not end up in the binary). `metadata` must have
/// been filtered for that target.
pub fn crate_tree(
    metadata: &Metadata,
    package: &str,
    lock_checksums: &BTreeMap<(String, String), String>,
) -> Vec<Component> {
    let packages: BTreeMap<&PackageId, &Package> =
        metadata.packages.iter().map(|p| (&p.id, p)).collect();
    let Some(resolve) = &metadata.resolve else {
        return Vec::new();
    };
    let nodes: BTreeMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let Some(start) = metadata
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == package)
    else {
        return Vec::new();
    };
    let mut seen = BTreeSet::from([&start.id]);
    let mut todo = vec![&start.id];
    while let Some(id) = todo.pop() {
        for dep in nodes.get(id).map(|n| &n.deps[..]).unwrap_or_default() {
            let normal = dep
                .dep_kinds
                .iter()
                .any(|k| k.kind == DependencyKind::Normal);
            if normal && seen.insert(&dep.pkg) {
                todo.push(&dep.pkg);
            }
        }
    }
    let mut out: Vec<Component> = seen
        .into_iter()
        .filter_map(|id| packages.get(id))
        .map(|p| {
            let (name, version) = (p.name.to_string(), p.version.to_string());
            Component {
                kind: if p.id == start.id {
                    ComponentKind::Application
                } else {
                    ComponentKind::Library
                },
                purl: format!("pkg:cargo/{name}@{version}"),
                license: License::from_declared(p.license.as_deref().unwrap_or("")),
                sha256: lock_checksums
                    .get(&(name.clone(), version.clone()))
                    .cloned(),
                supplier: None,
                name,
                version,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    out
}

/// `(name, version) → sha256` of every registry package in `Cargo.lock`:
/// the hash of the `.crate` file the code came from.
pub fn lock_checksums(root: &Path) -> BTreeMap<(String, String), String> {
    #[derive(Deserialize)]
    struct Lock {
        #[serde(default)]
        package: Vec<Locked>,
    }
    #[derive(Deserialize)]
    struct Locked {
        name: String,
        version: String,
        checksum: Option<String>,
    }
    std::fs::read_to_string(root.join("Cargo.lock"))
        .ok()
        .and_then(|text| toml::from_str::<Lock>(&text).ok())
        .map(|lock| {
            lock.package
                .into_iter()
                .filter_map(|p| Some(((p.name, p.version), p.checksum?)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_normalised_and_checked() {
        assert_eq!(port(Port::Number(8080)).unwrap(), "8080/tcp");
        assert_eq!(port(Port::Text("53/udp".into())).unwrap(), "53/udp");
        assert!(port(Port::Text("0".into())).is_err());
        assert!(port(Port::Text("80/http".into())).is_err());
        assert!(port(Port::Number(70000)).is_err());
    }

    #[test]
    fn image_fields_replace_package_fields() {
        let defaults = Fields {
            base: Some("static".into()),
            args: Some(vec!["--a".into()]),
            ..Fields::default()
        };
        let own = Fields {
            base: Some("cc".into()),
            ..Fields::default()
        }
        .or(&defaults);
        assert_eq!(own.base.as_deref(), Some("cc"));
        assert_eq!(own.args, Some(vec!["--a".to_owned()]));
    }

    #[test]
    fn files_must_stay_in_the_workspace_and_have_sane_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("outside"), "secret").unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        std::fs::write(ws.join("greeting.txt"), "hi").unwrap();
        let spec = |source: &str, path: &str, mode| FileSpec {
            source: source.into(),
            path: path.into(),
            mode,
        };
        let ok = app_file(
            &ws,
            &ws,
            spec(
                "greeting.txt",
                "/etc/g.txt",
                Some(Mode::Octal("0600".into())),
            ),
        )
        .unwrap();
        assert_eq!((ok.path.as_str(), ok.mode), ("etc/g.txt", 0o600));
        for (source, path, mode) in [
            ("../outside", "/etc/x", None),
            ("missing.txt", "/etc/x", None),
            ("greeting.txt", "etc/relative", None),
            ("greeting.txt", "/etc/../x", None),
            ("greeting.txt", "/etc/x", Some(Mode::Octal("rw".into()))),
            ("greeting.txt", "/etc/x", Some(Mode::Number(0o17777))),
        ] {
            assert!(
                app_file(&ws, &ws, spec(source, path, mode)).is_err(),
                "{source} {path}"
            );
        }
    }

    #[test]
    fn architectures_are_declared_known_and_in_the_golden_order() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        let dist = |name: &str, codename: &str, archs: &str| {
            format!(
                "[distribution.{name}]\ncodename = \"{codename}\"\nversion = \"1\"\nkeys = [\"k\"]\n\
                 components = [\"main\"]\nsuites = [{{ name = \"{codename}\", archive = \"debian\" }}]\n{archs}"
            )
        };
        std::fs::write(
            images.join("plinth.toml"),
            format!(
                "architectures = [\"amd64\", \"arm64\"]\ndebug-packages = [\"busybox-static\"]\n\
                 [os-release]\npretty-name = \"D\"\nhome-url = \"https://example.org/\"\n\
                 support-url = \"https://example.org/\"\nbug-report-url = \"https://example.org/\"\n{}{}",
                dist("debian13", "trixie", "architectures = [\"amd64\", \"arm64\", \"riscv64\"]\n"),
                dist("debian12", "bookworm", ""),
            ),
        )
        .unwrap();
        std::fs::write(
            images.join("static.toml"),
            "name = \"static\"\ndescription = \"s\"\npackages = [\"base-files\"]\n",
        )
        .unwrap();
        let defs = Definitions::load(&images).unwrap();
        let declared = |a: &[&str]| Some(a.iter().map(|s| s.to_string()).collect());
        let of = |d: &str, a| architectures(a, d, defs.architectures(d));
        assert_eq!(of("debian13", None).unwrap(), ["amd64", "arm64", "riscv64"]);
        assert_eq!(of("debian12", None).unwrap(), ["amd64", "arm64"]);
        assert_eq!(
            of("debian13", declared(&["riscv64", "amd64"])).unwrap(),
            ["amd64", "riscv64"]
        );
        assert_eq!(of("debian12", declared(&["amd64"])).unwrap(), ["amd64"]);
        assert_eq!(
            of("debian12", declared(&["riscv64"])).unwrap_err(),
            "architecture \"riscv64\" is not one the golden images of debian12 are built for (amd64, arm64)"
        );
        assert!(of("debian13", declared(&[])).is_err());
    }
}
