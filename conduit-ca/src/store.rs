//! Private, atomic file writes for the CA's state under `tls/`.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::CaError;

fn io(op: &'static str, path: &Path, source: std::io::Error) -> CaError {
    CaError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// Creates `dir` (and parents) with mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| io("create directory", dir, e))
}

/// Writes `bytes` to `path` atomically: a 0600 temporary file beside it, fsync, rename,
/// fsync of the directory.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    let tmp = path.with_extension("tmp");
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp).map_err(|e| io("create", &tmp, e))?;
    f.write_all(bytes).map_err(|e| io("write", &tmp, e))?;
    f.sync_all().map_err(|e| io("fsync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io("rename", path, e))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync", dir, e))?;
    }
    Ok(())
}

/// Writes `bytes` to a new file `path` (0600, never over an existing one), fsynced with its
/// directory.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).map_err(|e| io("create", path, e))?;
    f.write_all(bytes).map_err(|e| io("write", path, e))?;
    f.sync_all().map_err(|e| io("fsync", path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync", dir, e))?;
    }
    Ok(())
}
