//! The download cache: files addressed by their sha256, under
//! `$PLINTH_CACHE_DIR`, `$XDG_CACHE_HOME/plinth` or `~/.cache/plinth`.
//!
//! Every entry is written to a temporary file beside its final name and
//! renamed into place once its hash is checked, so two processes sharing the cache never
//! see a partial file, and the worst a race does is download twice.

use std::path::{Path, PathBuf};

use crate::support::digest::{Sha256Hex, sha256_hex};
use crate::support::fs::{remove_stale_temporaries, write_atomically};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no cache directory: set PLINTH_CACHE_DIR, XDG_CACHE_HOME or HOME")]
    NoHome,
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache at its configured place.
    pub fn from_env() -> Result<Self, CacheError> {
        let var = |k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = var("PLINTH_CACHE_DIR")
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("plinth")))
            .or_else(|| var("HOME").map(|h| h.join(".cache/plinth")))
            .ok_or(CacheError::NoHome)?;
        Self::at(&root)
    }

    /// The cache at `root`, created if missing. Temporaries that killed
    /// runs left in it are removed (see
    /// [`remove_stale_temporaries`]); those of runs still writing stay.
    pub fn at(root: &Path) -> Result<Self, CacheError> {
        for sub in ["sha256", "named"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|source| CacheError::Io { path: dir, source })?;
        }
        remove_stale_temporaries(&root.join("named"));
        for shard in std::fs::read_dir(root.join("sha256"))
            .into_iter()
            .flatten()
            .flatten()
        {
            remove_stale_temporaries(&shard.path());
        }
        Ok(Cache {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the entry of `sha256` lives: only a checked hash can name
    /// one, so no value can point outside the cache.
    fn blob_path(&self, sha256: &Sha256Hex) -> PathBuf {
        let hex = sha256.as_str();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    /// The cached bytes whose sha256 is `sha256`, if present and intact. An
    /// entry that no longer matches its name is removed.
    pub fn get(&self, sha256: &Sha256Hex) -> Option<Vec<u8>> {
        let path = self.blob_path(sha256);
        let bytes = std::fs::read(&path).ok()?;
        if *sha256 == *sha256_hex(&bytes) {
            Some(bytes)
        } else {
            tracing::warn!("discarding corrupt cache entry {}", path.display());
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Stores `bytes`, which the caller has checked hash to `sha256`.
    pub fn put(&self, sha256: &Sha256Hex, bytes: &[u8]) -> Result<(), CacheError> {
        let path = self.blob_path(sha256);
        self.write_atomically(&path, bytes)
    }

    /// Stores the latest copy of a named, mutable file (an `InRelease`), so
    /// that an offline lock can still check its signature.
    pub fn put_named(&self, name: &str, bytes: &[u8]) -> Result<(), CacheError> {
        let path = self.root.join("named").join(sanitize(name));
        self.write_atomically(&path, bytes)
    }

    pub fn get_named(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join("named").join(sanitize(name))).ok()
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        write_atomically(path, bytes).map_err(|source| CacheError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::fs::TEMP_PREFIX;

    #[test]
    fn stores_checks_and_discards_corrupt_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path()).unwrap();
        let data = b"hello";
        let sum = Sha256Hex::of(data);
        assert!(cache.get(&sum).is_none());
        cache.put(&sum, data).unwrap();
        assert_eq!(cache.get(&sum).unwrap(), data);
        std::fs::write(cache.blob_path(&sum), b"tampered").unwrap();
        assert!(cache.get(&sum).is_none());
        assert!(!cache.blob_path(&sum).exists());
    }

    fn cache_dir_of(cache: &Cache, sha256: &Sha256Hex) -> PathBuf {
        cache.blob_path(sha256).parent().unwrap().to_owned()
    }

    #[test]
    fn concurrent_writers_leave_one_intact_entry() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 1 << 20];
        let sum = Sha256Hex::of(&data);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| Cache::at(dir.path()).unwrap().put(&sum, &data).unwrap());
            }
        });
        assert_eq!(Cache::at(dir.path()).unwrap().get(&sum).unwrap(), data);
        let shard = cache_dir_of(&Cache::at(dir.path()).unwrap(), &sum);
        let leftovers = std::fs::read_dir(shard)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with(TEMP_PREFIX)
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
