//! Writing files so that readers never see half of one: a temporary file
//! beside the target, synced, then renamed over it.

use std::io::Write;
use std::path::Path;

/// The prefix of every temporary file plinth creates beside an output;
/// nothing else in an output directory starts with it.
pub const TEMP_PREFIX: &str = ".plinth-tmp-";

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
