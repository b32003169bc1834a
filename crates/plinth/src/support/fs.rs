//! Writing files so that readers never see half of one: a temporary file
//! beside the target, synced, then renamed over it; and removing the
//! temporaries that a killed run left behind, and only those.
//!
//! Every temporary plinth makes beside an output (a file here, a layout
//! directory in `oci`) is named with [`TEMP_PREFIX`] and holds an
//! advisory lock (`flock`) for as long as its writer lives. The kernel
//! drops the lock when the writer exits, however it exits, so a
//! temporary nobody holds is a leftover, and nothing that another run is
//! still writing is ever removed.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The prefix of every temporary file or directory plinth creates beside
/// an output; nothing else plinth writes starts with it, and nothing that
/// does not start with it is ever removed as a leftover.
pub const TEMP_PREFIX: &str = ".plinth-tmp-";

/// How old an unlocked temporary must be to count as left over: the
/// moment between creating a temporary and locking it must never look
/// like a dead writer.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// Takes the advisory lock of a temporary (file or directory) that its
/// writer holds while it lives; the lock goes when the returned handle is
/// dropped or the process ends.
pub fn hold(path: &Path) -> std::io::Result<File> {
    let file = File::open(path)?;
    file.try_lock().map_err(std::io::Error::from)?;
    Ok(file)
}

/// Holds `dir`'s own advisory lock until the handle is dropped: writers
/// that rename things in and out of `dir` take it, and so does
/// [`remove_stale_temporaries`], so neither sees the other half done.
pub fn lock_dir(dir: &Path) -> std::io::Result<File> {
    let file = File::open(dir)?;
    file.lock()?;
    Ok(file)
}

/// Removes the temporaries in `dir` (not below it) that killed runs left:
/// names starting with [`TEMP_PREFIX`], untouched for a minute, whose lock
/// nobody holds. Best effort: what cannot be removed stays, and a missing
/// `dir` has nothing to remove. Returns what was removed.
pub fn remove_stale_temporaries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let Ok(_guard) = lock_dir(dir) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let recent = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_none_or(|age| age < STALE_AFTER);
        if recent || meta.file_type().is_symlink() {
            continue;
        }
        // Held by a live writer: not a leftover.
        let Ok(held) = hold(&path) else {
            continue;
        };
        let result = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        drop(held);
        match result {
            Ok(()) => {
                tracing::info!(
                    "removed {}, left by a run that did not finish",
                    path.display()
                );
                removed.push(path);
            }
            Err(e) => tracing::debug!("cannot remove {}: {e}", path.display()),
        }
    }
    removed
}

/// Writes `bytes` to a temporary file in `path`'s directory, syncs it and
/// renames it over `path`: readers see the old file or the new one, never
/// a partial one. The mode is 0644 whatever the umask, so outputs do not
/// depend on who built them.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    // Marks it as being written; a file system without locks only loses
    // the clean-up of leftovers.
    let _ = tmp.as_file().try_lock();
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Like [`write_atomically`], but leaves a file that already holds exactly
/// `bytes` untouched (an unchanged rebuild rewrites nothing). Returns
/// whether it wrote.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    if std::fs::read(path).is_ok_and(|b| b == bytes) {
        return Ok(false);
    }
    write_atomically(path, bytes)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backdate(path: &Path) {
        let then = SystemTime::now() - 2 * STALE_AFTER;
        File::open(path).unwrap().set_modified(then).unwrap();
    }

    #[test]
    fn removes_only_unheld_old_temporaries_of_plinth() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let stale_file = path(".plinth-tmp-AbC123");
        let stale_dir = path(".plinth-tmp-layout.new-XyZ789");
        let held_file = path(".plinth-tmp-held");
        let fresh_file = path(".plinth-tmp-fresh");
        let others = [
            path(".static-debian13.tmp-abcdef"),
            path("output.json"),
            path(".hidden"),
        ];
        for p in [&stale_file, &held_file, &fresh_file]
            .into_iter()
            .chain(&others)
        {
            std::fs::write(p, b"x").unwrap();
        }
        std::fs::create_dir_all(stale_dir.join("blobs/sha256")).unwrap();
        std::fs::write(stale_dir.join("blobs/sha256/x"), b"x").unwrap();
        for p in [&stale_file, &stale_dir, &held_file]
            .into_iter()
            .chain(&others)
        {
            backdate(p);
        }
        let _writer = hold(&held_file).unwrap();

        let mut removed = remove_stale_temporaries(dir.path());
        removed.sort();
        assert_eq!(removed, [stale_file.clone(), stale_dir.clone()]);
        for p in [&held_file, &fresh_file].into_iter().chain(&others) {
            assert!(p.exists(), "{} was removed", p.display());
        }
        assert!(remove_stale_temporaries(&path("missing")).is_empty());
    }

    #[test]
    fn a_temporary_being_written_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir.path())
            .unwrap();
        tmp.as_file().try_lock().unwrap();
        assert!(hold(tmp.path()).is_err());
        backdate(tmp.path());
        assert!(remove_stale_temporaries(dir.path()).is_empty());
        assert!(tmp.path().exists());
    }
}
