//! Files, permissions and locking: the private directory (0700), files written 0600 to a
//! temporary name, fsynced and renamed, the exclusive lock every change runs under, and the
//! file identity that tells a reload whether anything changed.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::encode::Fragments;
use super::{Paths, SCHEMA_VERSION};
use crate::RegistryError;
use crate::table::Table;

pub(super) fn create_private_dir(dir: &Path) -> Result<(), RegistryError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| RegistryError::io("create directory", dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = fs::metadata(dir)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", m.permissions().mode() & 0o777), "config directory is readable by others; expected 0700");
        }
    }
    Ok(())
}

pub(super) fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let mut f = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| RegistryError::io("create", path, e))?;
    f.write_all(bytes)
        .map_err(|e| RegistryError::io("write", path, e))?;
    f.sync_all()
        .map_err(|e| RegistryError::io("fsync", path, e))
}

pub(super) fn write_atomically(
    paths: &Paths,
    table: &Table,
    fragments: &Fragments,
) -> Result<(), RegistryError> {
    let mut bytes = fragments
        .encode(SCHEMA_VERSION, table.revision(), table.records())
        .map_err(|e| RegistryError::Worker(e.to_string()))?;
    bytes.push(b'\n');
    replace_file(&paths.dir, &paths.tmp, &paths.file, &bytes)
}

/// Writes `bytes` to `tmp` (0600, fsynced), renames it over `file` and fsyncs `dir`: a
/// reader sees the old file or the new one, and a crash loses nothing acknowledged.
pub(super) fn replace_file(
    dir: &Path,
    tmp: &Path,
    file: &Path,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    write_private(tmp, bytes)?;
    fs::rename(tmp, file).map_err(|e| RegistryError::io("rename", file, e))?;
    // Make the rename itself durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| RegistryError::io("fsync directory", dir, e))
}

/// An exclusive lock on the lock file, released on drop (and by the kernel if we die).
pub(super) struct LockGuard(File);

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlock explicitly to release it early.
        let _ = self.0.unlock();
    }
}

pub(super) fn acquire_lock(path: &Path, timeout: Duration) -> Result<LockGuard, RegistryError> {
    let f = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| RegistryError::io("open lock file", path, e))?;
    let start = std::time::SystemTime::now();
    let mut pause = Duration::from_micros(200);
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(LockGuard(f)),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(RegistryError::io("lock", path, e)),
        }
        let waited = start.elapsed().unwrap_or_default();
        if waited >= timeout {
            return Err(RegistryError::LockTimeout {
                path: path.to_path_buf(),
                waited,
            });
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "runs on a blocking thread, never on the runtime"
        )]
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Following other processes' writes

/// What identifies one version of the file on disk.
#[derive(PartialEq, Eq, Clone, Copy, Default)]
pub(super) struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

pub(super) fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
    })
}
