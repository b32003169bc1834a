//! A project: the repository folders plinth reads and writes (`images/`,
//! `keys/`, `lockfiles/`, `target/images/`), and the progress hook a front
//! end fills in.

use std::path::{Path, PathBuf};

use crate::definitions::{DefinitionError, Definitions};
use crate::lockfile::{Lockfile, LockfileError, Lockfiles};

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
    pub fn open(root: &Path) -> Result<Self, DefinitionError> {
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
        Lockfile::path(&self.lockfiles_dir(), distribution)
    }

    /// Every distribution's lockfile, read once and checked to have been
    /// made from the current definitions: the only package input of a
    /// build. Needs no network.
    pub fn lockfiles(&self) -> Result<Lockfiles, LockfileError> {
        Lockfiles::load(&self.definitions, &self.lockfiles_dir())
    }
}

/// Where `cargo xtask images` writes by default.
pub fn default_out_dir(root: &Path) -> PathBuf {
    root.join("target/images")
}
