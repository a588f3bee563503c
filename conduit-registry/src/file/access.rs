//! `access.json`: the access policy beside `services.json`, written under the same lock,
//! atomically (temporary file, fsync, rename, fsync of the directory).

use std::fs;
use std::io;
use std::path::Path;

use super::disk::replace_file;
use super::format::corrupt;
use crate::RegistryError;
use crate::access::StoredPolicy;

/// The policy file's name inside the config directory.
pub(super) const ACCESS_FILE: &str = "access.json";

/// Reads and validates the policy file; `None` when it does not exist. A file that does not
/// parse or whose policy does not validate is an error naming it, never an empty policy.
pub(super) fn read_policy(path: &Path) -> Result<Option<StoredPolicy>, RegistryError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RegistryError::io("read", path, e)),
    };
    let stored: StoredPolicy =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(path, e.to_string()))?;
    stored
        .policy
        .validate()
        .map_err(|e| corrupt(path, e.to_string()))?;
    Ok(Some(stored))
}

/// Replaces the policy file.
pub(super) fn write_policy(
    dir: &Path,
    tmp: &Path,
    path: &Path,
    stored: &StoredPolicy,
) -> Result<(), RegistryError> {
    let mut bytes =
        serde_json::to_vec_pretty(stored).map_err(|e| RegistryError::Worker(e.to_string()))?;
    bytes.push(b'\n');
    replace_file(dir, tmp, path, &bytes)
}
