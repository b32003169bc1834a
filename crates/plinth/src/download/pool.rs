//! Pool files (`.deb`s) by the sha256 a lock names: from the download
//! cache, else from the mirror of the archive that holds them, checked
//! against that sha256 before they are cached or handed out. The build
//! unpacks them; the change report reads their changelogs.

use super::cache::{Cache, CacheError};
use super::http::{FetchError, Fetcher};
use super::mirrors::{MirrorError, Mirrors};
use crate::debian::name::PoolPath;
use crate::net::BodyLimit;
use crate::support::digest::{Sha256Hex, sha256_hex};

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
    /// `None` offline: nothing is fetched, so no trust is loaded either.
    fetcher: Option<Fetcher>,
}

impl<'a> Pool<'a> {
    pub fn new(cache: &'a Cache, mirrors: Mirrors, fetcher: Option<Fetcher>) -> Self {
        Pool {
            cache,
            mirrors,
            fetcher,
        }
    }

    /// The bytes of `filename` (a pool path) in `archive`, whose sha256
    /// must be `sha256`.
    pub fn fetch(
        &self,
        archive: &str,
        filename: &PoolPath,
        sha256: &Sha256Hex,
        size: u64,
    ) -> Result<Vec<u8>, PoolError> {
        if let Some(bytes) = self.cache.get(sha256) {
            return Ok(bytes);
        }
        let Some(fetcher) = &self.fetcher else {
            return Err(PoolError::Offline {
                filename: filename.to_string(),
            });
        };
        let url = format!("{}/{filename}", self.mirrors.url(archive)?);
        let mut served = String::new();
        // One retry on a hash mismatch: a mirror mid-update can serve a
        // stale file.
        for _ in 0..2 {
            let bytes = fetcher.get(archive, &url, BodyLimit::Exactly(size))?;
            served = sha256_hex(&bytes);
            if *sha256 == served {
                self.cache.put(sha256, &bytes)?;
                return Ok(bytes);
            }
        }
        Err(PoolError::Mismatch {
            filename: filename.to_string(),
            expected: sha256.to_string(),
            served,
        })
    }
}
