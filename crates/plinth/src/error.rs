//! The library's error: every module's own typed error, gathered so that a
//! front end can report any of them as one line.
//!
//! The modules whose errors are gathered here never import this one: they
//! return their own types, and only the stages that combine them (`build`,
//! `verify`, `publish`, `digests`) return [`Error`]. That keeps the
//! dependency graph free of circles.

use std::path::PathBuf;

use crate::apps::AppError;
use crate::apps::compile::CompileError;
use crate::apps::elf::ElfError;
use crate::definitions::DefinitionError;
use crate::download::cache::CacheError;
use crate::download::http::FetchError;
use crate::download::mirrors::MirrorError;
use crate::download::pool::PoolError;
use crate::lock::LockError;
use crate::lockfile::LockfileError;
use crate::net::NetError;
use crate::provenance::ProvenanceError;
use crate::registry::RegistryError;
use crate::sign::{KeyError, SignError};

/// Everything that can go wrong in the library. Each variant's message is
/// one line that names the file, package, URL or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Lock(#[from] LockError),
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
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Provenance(#[from] ProvenanceError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{package}: {why}")]
    Package { package: String, why: String },
    #[error("writing images: {0}")]
    Output(String),
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
