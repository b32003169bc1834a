//! Pool files (`.deb`s) by the sha256 a lock names: from the download
//! cache, else from the mirror of the archive that holds them, checked
//! against that sha256 before they are cached or handed out. The build
//! unpacks them; the change report reads their changelogs.

use super::cache::{Cache, CacheError};
use super::http::{FetchError, Fetcher};
use super::mirrors::{MirrorError, Mirrors};
use crate::support::digest::sha256_hex;

/// Why a pool file could not be had; one line naming it.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{filename}: not in the download cache, and --offline is set")]
    Offline { filename: String },
    #[error("{filename}: sha256 mismatch: the lock says {expected}, the mirror served {served}")]
    Mismatch {
        filename: String,
        expected: String,
        served: String,
    },
}

/// Where pool files come from: the cache first, then the mirrors.
pub struct Pool<'a> {
    cache: &'a Cache,
    mirrors: Mirrors,
    fetcher: Fetcher,
    offline: bool,
}

impl<'a> Pool<'a> {
    pub fn new(cache: &'a Cache, mirrors: Mirrors, fetcher: Fetcher, offline: bool) -> Self {
        Pool {
            cache,
            mirrors,
            fetcher,
            offline,
        }
    }

    /// The bytes of `filename` (a pool path) in `archive`, whose sha256
    /// must be `sha256`.
    pub fn fetch(&self, archive: &str, filename: &str, sha256: &str) -> Result<Vec<u8>, PoolError> {
        if let Some(bytes) = self.cache.get(sha256) {
            return Ok(bytes);
        }
        if self.offline {
            return Err(PoolError::Offline {
                filename: filename.to_owned(),
            });
        }
        let url = format!("{}/{filename}", self.mirrors.url(archive)?);
        let mut served = String::new();
        // One retry on a hash mismatch: a mirror mid-update can serve a
        // stale file.
        for _ in 0..2 {
            let bytes = self.fetcher.get(&url)?;
            served = sha256_hex(&bytes);
            if served == sha256 {
                self.cache.put(sha256, &bytes)?;
                return Ok(bytes);
            }
        }
        Err(PoolError::Mismatch {
            filename: filename.to_owned(),
            expected: sha256.to_owned(),
            served,
        })
    }
}
