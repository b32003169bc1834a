//! SLSA provenance v1 of the images plinth publishes: for one image
//! manifest or tag index, what went into it.
//!
//! It owns gathering the build's inputs from the project ([`BuildInputs`]:
//! each distribution's lockfile and its sha256, the definitions checksum,
//! the epoch, the git commit and whether the tree was clean, and for
//! application images the Rust toolchain and `Cargo.lock`), and turning
//! them into one in-toto statement per subject: the builder (plinth and its
//! version), the build definition, and every `.deb` the image is made of
//! with its sha256, read from the lockfile exactly as the build reads it.
//!
//! The statement is a function of those inputs alone: no clock, no host
//! name, no path outside the repository, no start or finish time, so the
//! same inputs give byte-identical provenance and publishing an unchanged
//! set again pushes nothing. It never runs anything but `git` (commit and
//! status) and `rustc -vV`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::apps::AppImage;
use crate::debian::name::PackageName;
use crate::definitions::VARIANTS;
use crate::lockfile::{Lockfile, Lockfiles};
use crate::project::Project;
use crate::sign::SignError;
use crate::sign::intoto::{self, ResourceDescriptor, Statement};
use crate::support::digest::{is_lower_hex, sha256_hex};

/// What kind of build plinth's provenance describes; the keys of its
/// `externalParameters` are documented in the README.
pub const BUILD_TYPE: &str = "urn:plinth:image-build:v1";
/// The builder: plinth itself, with its version beside it.
pub const BUILDER_ID: &str = "urn:plinth";

/// Why provenance could not be made. One line each.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("provenance of {repository}: {why}")]
    Unknown { repository: String, why: String },
    #[error(transparent)]
    Lockfile(#[from] crate::lockfile::LockfileError),
    #[error(transparent)]
    Sign(#[from] SignError),
}

type Result<T, E = ProvenanceError> = std::result::Result<T, E>;

/// The repository state a publish signs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceState {
    /// 40 hex digits.
    pub commit: String,
    /// No changes to tracked files and no untracked files (`git status`).
    pub clean: bool,
}

/// One distribution's lockfile as the build read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockfileInput {
    /// Relative to the project root: `lockfiles/debian13.lock.toml`.
    pub path: String,
    /// Lowercase hex of the file's sha256.
    pub sha256: String,
}

/// The Rust side of application images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustInputs {
    /// `rustc 1.95.0 (59807616e 2026-04-14)`, the first line of `rustc -vV`.
    pub toolchain: String,
    /// Lowercase hex of the sha256 of the workspace's `Cargo.lock`.
    pub cargo_lock_sha256: String,
}

/// Everything outside the lockfiles that a statement says, gathered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInputs {
    /// `None` outside a git work tree.
    pub source: Option<SourceState>,
    /// By distribution.
    pub lockfiles: BTreeMap<String, LockfileInput>,
    /// `None` when there are no application images.
    pub rust: Option<RustInputs>,
    /// `SOURCE_DATE_EPOCH`, overriding each lockfile's epoch as in the build.
    pub source_date_epoch: Option<u64>,
}

impl BuildInputs {
    /// Reads the inputs of `project`: every distribution's lockfile, git's
    /// view of the work tree, and, when `apps` is not empty, the toolchain
    /// beside `cargo` and `Cargo.lock`.
    pub fn gather(
        project: &Project,
        apps: &[AppImage],
        cargo: &Path,
        source_date_epoch: Option<u64>,
    ) -> Result<Self> {
        let mut lockfiles = BTreeMap::new();
        for (dist, _) in project.definitions.distributions() {
            let path = project.lockfile_path(dist);
            let bytes = read(&path)?;
            lockfiles.insert(
                dist.to_owned(),
                LockfileInput {
                    path: format!("lockfiles/{dist}.lock.toml"),
                    sha256: sha256_hex(&bytes),
                },
            );
        }
        let rust = if apps.is_empty() {
            None
        } else {
            let toolchain = crate::apps::compile::rustc_version(cargo).map_err(|why| {
                ProvenanceError::Unknown {
                    repository: apps[0].name.clone(),
                    why,
                }
            })?;
            let cargo_lock = read(&project.root.join("Cargo.lock"))?;
            Some(RustInputs {
                toolchain,
                cargo_lock_sha256: sha256_hex(&cargo_lock),
            })
        };
        Ok(BuildInputs {
            source: source_state(&project.root),
            lockfiles,
            rust,
            source_date_epoch,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ProvenanceError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The commit checked out in `root` and whether the tree is clean, or
/// `None` where git cannot say (no git, not a work tree).
pub fn source_state(root: &Path) -> Option<SourceState> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let commit = git(&["rev-parse", "--verify", "HEAD"])?.trim().to_owned();
    if !is_lower_hex(&commit, 40) {
        return None;
    }
    let status = git(&["status", "--porcelain", "--untracked-files=normal"])?;
    Some(SourceState {
        commit,
        clean: status.trim().is_empty(),
    })
}

/// One signed subject: a per-architecture manifest or a tag's index.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The repository as pushed, the statement's subject name.
    pub name: &'a str,
    pub digest: &'a str,
    /// The layout it comes from: `base-debian13`, `hello-server`.
    pub repository: &'a str,
    /// The recorded tag: `nonroot`.
    pub tag: &'a str,
    /// Its architectures: one for a manifest, all of the tag's for an index.
    pub architectures: &'a [String],
}

/// Makes provenance statements for the images of one project.
pub struct Provenance<'a> {
    project: &'a Project,
    locks: Lockfiles,
    apps: &'a [AppImage],
    inputs: BuildInputs,
}

/// What a repository is built from: a golden image of a distribution, or
/// an application image on one.
struct Origin<'a> {
    image: String,
    distribution: String,
    variant: String,
    app: Option<&'a AppImage>,
}

impl<'a> Provenance<'a> {
    pub fn new(project: &'a Project, apps: &'a [AppImage], inputs: BuildInputs) -> Result<Self> {
        Ok(Provenance {
            project,
            locks: project.lockfiles()?,
            apps,
            inputs,
        })
    }

    pub fn inputs(&self) -> &BuildInputs {
        &self.inputs
    }

    /// The SLSA provenance v1 statement of `subject`.
    pub fn statement(&self, subject: &Subject<'_>) -> Result<Statement> {
        let unknown = |why: String| ProvenanceError::Unknown {
            repository: subject.repository.to_owned(),
            why,
        };
        let origin = self
            .origin(subject.repository, subject.tag)
            .ok_or_else(|| unknown("neither a golden nor an application image".into()))?;
        let lock = self.locks.get(&origin.distribution)?;
        let lockfile = self
            .inputs
            .lockfiles
            .get(&origin.distribution)
            .ok_or_else(|| unknown(format!("no lockfile for {}", origin.distribution)))?;
        let mut dependencies = self.debs(&origin, lock, subject.architectures, &unknown)?;
        let mut external = json!({
            "repository": subject.repository,
            "tag": subject.tag,
            "architectures": subject.architectures,
            "distribution": origin.distribution,
            "image": origin.image,
            "variant": origin.variant,
            "lockfile": { "path": lockfile.path, "sha256": lockfile.sha256 },
            "definitions": { "sha256": lock.definitions_sha256 },
            "sourceDateEpoch": self.inputs.source_date_epoch.unwrap_or(lock.epoch),
        });
        if let Some(source) = &self.inputs.source {
            external["source"] = json!({ "gitCommit": source.commit, "clean": source.clean });
        }
        if let Some(app) = origin.app {
            let rust = self.inputs.rust.as_ref().ok_or_else(|| {
                unknown("the Rust toolchain of application images was not gathered".into())
            })?;
            external["application"] = json!({ "package": app.package, "version": app.version });
            dependencies.push(ResourceDescriptor {
                name: Some("Cargo.lock".into()),
                digest: BTreeMap::from([("sha256".into(), rust.cargo_lock_sha256.clone())]),
                ..ResourceDescriptor::default()
            });
            dependencies.push(ResourceDescriptor {
                name: Some("rustc".into()),
                uri: Some(format!(
                    "pkg:generic/rustc@{}",
                    rust.toolchain
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("unknown")
                )),
                annotations: Some(BTreeMap::from([(
                    "version".into(),
                    Value::String(rust.toolchain.clone()),
                )])),
                ..ResourceDescriptor::default()
            });
        }
        let provenance = intoto::Provenance {
            build_definition: intoto::BuildDefinition {
                build_type: BUILD_TYPE.into(),
                external_parameters: external,
                internal_parameters: None,
                resolved_dependencies: dependencies,
            },
            run_details: intoto::RunDetails {
                builder: intoto::Builder {
                    id: BUILDER_ID.into(),
                    version: BTreeMap::from([("plinth".into(), env!("CARGO_PKG_VERSION").into())]),
                    builder_dependencies: Vec::new(),
                },
                metadata: None,
                byproducts: Vec::new(),
            },
        };
        let subjects = vec![ResourceDescriptor::image(
            Some(subject.name),
            subject.digest,
        )?];
        Ok(intoto::provenance_statement(subjects, &provenance)?)
    }

    fn origin(&self, repository: &str, tag: &str) -> Option<Origin<'a>> {
        if let Some(app) = self.apps.iter().find(|a| a.name == repository) {
            return Some(Origin {
                image: app.base.clone(),
                distribution: app.distribution.clone(),
                variant: app.variant.clone(),
                app: Some(app),
            });
        }
        let defs = &self.project.definitions;
        defs.image_names().into_iter().find_map(|image| {
            let dist = repository.strip_prefix(&image)?.strip_prefix('-')?;
            defs.distribution(dist)?;
            Some(Origin {
                image,
                distribution: dist.to_owned(),
                variant: tag.to_owned(),
                app: None,
            })
        })
    }

    /// Every `.deb` of the image, as the build stacks them: the own
    /// packages of each image from the bottom up, and the debug packages of
    /// the top one for a debug variant; one entry per pool file.
    fn debs(
        &self,
        origin: &Origin<'_>,
        lock: &Lockfile,
        architectures: &[String],
        unknown: &dyn Fn(String) -> ProvenanceError,
    ) -> Result<Vec<ResourceDescriptor>> {
        let variant = VARIANTS
            .iter()
            .find(|v| v.tag == origin.variant)
            .ok_or_else(|| unknown(format!("unknown variant {:?}", origin.variant)))?;
        let stack = self.project.definitions.stack(&origin.image);
        let mut by_file: BTreeMap<&str, ResourceDescriptor> = BTreeMap::new();
        for arch in architectures {
            let mut names: Vec<&PackageName> = Vec::new();
            for image in &stack {
                let locked = lock
                    .image(image, arch)
                    .ok_or_else(|| unknown(format!("the lock has no {image} for {arch}")))?;
                names.extend(&locked.packages);
                if variant.debug && *image == origin.image {
                    names.extend(&locked.debug_packages);
                }
            }
            for name in names {
                let p = lock
                    .find(arch, name)
                    .ok_or_else(|| unknown(format!("the lock has no package {name} for {arch}")))?;
                by_file
                    .entry(p.filename.as_str())
                    .or_insert_with(|| ResourceDescriptor {
                        name: Some(p.filename.to_string()),
                        digest: BTreeMap::from([("sha256".into(), p.sha256.to_string())]),
                        annotations: Some(BTreeMap::from([
                            ("package".into(), Value::String(p.name.to_string())),
                            ("version".into(), Value::String(p.version.clone())),
                            (
                                "architecture".into(),
                                Value::String(p.architecture.to_string()),
                            ),
                        ])),
                        ..ResourceDescriptor::default()
                    });
            }
        }
        Ok(by_file.into_values().collect())
    }
}

/// What a verifier reads back from a provenance statement: the lockfile
/// it names (path and sha256), if it is one of plinth's.
pub fn lockfile_named(statement: &Statement) -> Option<LockfileInput> {
    let params = &statement.predicate["buildDefinition"]["externalParameters"];
    if statement.predicate["buildDefinition"]["buildType"] != BUILD_TYPE {
        return None;
    }
    let path = params["lockfile"]["path"].as_str()?;
    let sha256 = params["lockfile"]["sha256"].as_str()?;
    Some(LockfileInput {
        path: path.to_owned(),
        sha256: sha256.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This repository's own definitions and lockfiles (read only).
    fn project() -> Project {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Project::open(&root).expect("the repository's definitions")
    }

    fn inputs(lockfile_sha256: &str) -> BuildInputs {
        BuildInputs {
            source: Some(SourceState {
                commit: "a".repeat(40),
                clean: true,
            }),
            lockfiles: BTreeMap::from([(
                "debian13".to_owned(),
                LockfileInput {
                    path: "lockfiles/debian13.lock.toml".into(),
                    sha256: lockfile_sha256.into(),
                },
            )]),
            rust: None,
            source_date_epoch: None,
        }
    }

    #[test]
    fn the_same_inputs_give_byte_identical_provenance() {
        let project = project();
        let arches = ["amd64".to_owned(), "arm64".to_owned()];
        let subject = Subject {
            name: "127.0.0.1:5000/golden/static-debian13",
            digest: &format!("sha256:{}", "0".repeat(64)),
            repository: "static-debian13",
            tag: "nonroot",
            architectures: &arches,
        };
        let bytes = |sha: &str| {
            let p = Provenance::new(&project, &[], inputs(sha)).unwrap();
            p.statement(&subject).unwrap().to_json().unwrap()
        };
        let first = bytes(&"1".repeat(64));
        assert_eq!(first, bytes(&"1".repeat(64)));
        assert_ne!(first, bytes(&"2".repeat(64)));
        let text = String::from_utf8(first).unwrap();
        for absent in ["startedOn", "finishedOn", "invocationId"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        let statement: Value = serde_json::from_str(&text).unwrap();
        let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        // Both architectures' packages, each pool file once, with sha256.
        assert!(
            deps.iter()
                .any(|d| d["annotations"]["architecture"] == "amd64")
        );
        assert!(
            deps.iter()
                .any(|d| d["annotations"]["architecture"] == "arm64")
        );
        assert!(
            deps.iter()
                .all(|d| is_lower_hex(d["digest"]["sha256"].as_str().unwrap_or_default(), 64))
        );
        let mut names: Vec<&str> = deps.iter().map(|d| d["name"].as_str().unwrap()).collect();
        let all = names.len();
        names.dedup();
        assert_eq!(names.len(), all);
        // An image the project does not define is refused in one line.
        let unknown = Subject {
            repository: "nothing-debian13",
            ..subject
        };
        let p = Provenance::new(&project, &[], inputs(&"1".repeat(64))).unwrap();
        let e = p.statement(&unknown).unwrap_err().to_string();
        assert!(e.starts_with("provenance of nothing-debian13: "), "{e}");
    }

    #[test]
    fn the_lockfile_is_read_back_from_a_statement() {
        let statement = Statement {
            statement_type: intoto::STATEMENT_V1.into(),
            subject: vec![],
            predicate_type: intoto::PREDICATE_SLSA_PROVENANCE_V1.into(),
            predicate: json!({"buildDefinition": {"buildType": BUILD_TYPE, "externalParameters": {
                "lockfile": {"path": "lockfiles/debian13.lock.toml", "sha256": "ab"}}}}),
        };
        assert_eq!(
            lockfile_named(&statement),
            Some(LockfileInput {
                path: "lockfiles/debian13.lock.toml".into(),
                sha256: "ab".into()
            })
        );
        let mut other = statement.clone();
        other.predicate["buildDefinition"]["buildType"] = "urn:else".into();
        assert_eq!(lockfile_named(&other), None);
    }
}
