//! A project: the repository folders plinth reads and writes (`images/`,
//! `keys/`, `lockfiles/`, `target/images/`), the library's top-level error,
//! and the progress hook the command line fills in.

use std::path::{Path, PathBuf};

use crate::app::AppError;
use crate::archive::ArchiveError;
use crate::cache::CacheError;
use crate::compile::CompileError;
use crate::definitions::{DefinitionError, Definitions};
use crate::elf::ElfError;
use crate::fetch::FetchError;
use crate::lockfile::LockfileError;
use crate::mirrors::MirrorError;
use crate::registry::RegistryError;
use crate::resolve::ResolveError;

/// Everything that can go wrong in the library. Each variant's message is
/// one line that names the file, package, URL or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Lockfile(#[from] LockfileError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// A binary that would not start on its base.
    #[error(transparent)]
    Refused(Box<Refusal>),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{package}: {why}")]
    Package { package: String, why: String },
    #[error("writing images: {0}")]
    Output(String),
    /// The lockfiles do not match the image definitions.
    #[error("{0}")]
    StaleLock(String),
    #[error("{0}")]
    Usage(String),
    /// What is about to be published is not what `lockfiles/digests.toml`
    /// records.
    #[error("{0}")]
    NotAsRecorded(String),
}

/// Why an application binary was refused, and which base would do.
#[derive(Debug, thiserror::Error)]
#[error("{image}: {binary} ({arch}) cannot start on {base}: it {problem}; {hint}")]
pub struct Refusal {
    pub image: String,
    pub binary: String,
    pub arch: String,
    /// `base-nossl-debian13:nonroot`.
    pub base: String,
    pub problem: ElfError,
    /// Which golden image would start it, if any.
    pub hint: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reports progress of long work; the library calls it, a front end draws it.
pub trait Progress: Sync {
    /// A stage with `total` steps begins.
    fn begin(&self, _stage: &str, _total: u64) {}
    /// One step of the current stage is done.
    fn step(&self, _what: &str) {}
    fn end(&self) {}
}

/// No progress output (tests, libraries).
pub struct Silent;
impl Progress for Silent {}

/// The repository plinth works in.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub definitions: Definitions,
}

impl Project {
    pub fn open(root: &Path) -> Result<Self> {
        let definitions = Definitions::load(&root.join("images"))?;
        Ok(Project {
            root: root.to_owned(),
            definitions,
        })
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    pub fn lockfiles_dir(&self) -> PathBuf {
        self.root.join("lockfiles")
    }

    pub fn lockfile_path(&self, distribution: &str) -> PathBuf {
        crate::lockfile::Lockfile::path(&self.lockfiles_dir(), distribution)
    }
}
