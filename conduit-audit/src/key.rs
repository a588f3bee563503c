//! The seal key on disk: `key` (the 32-byte Ed25519 seed, 0600) and a `keyring.json` the
//! reference (`capsule verify --signatures`) reads.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use crate::{AuditError, SealKey};

fn io(op: &'static str, path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuditError> {
    let tmp = path.with_extension("tmp");
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp).map_err(|e| io("create", &tmp, e))?;
    f.write_all(bytes).map_err(|e| io("write", &tmp, e))?;
    f.sync_all().map_err(|e| io("fsync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io("rename", path, e))
}

impl SealKey {
    /// Loads the seed from `dir/key`, or creates one (from the OS's random source) together
    /// with `dir/keyring.json` (epoch 0, active), both 0600, written atomically.
    ///
    /// # Errors
    /// [`AuditError::BadKey`] for a key file that is not 32 bytes (it is never overwritten),
    /// [`AuditError::Io`].
    pub fn load_or_create(dir: &Path) -> Result<Self, AuditError> {
        let path = dir.join("key");
        match fs::read(&path) {
            Ok(bytes) => {
                let seed: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| AuditError::BadKey {
                            path: path.clone(),
                            len: bytes.len(),
                        })?;
                Ok(Self::from_seed(&seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut seed))
                    .map_err(|e| io("read random seed from", Path::new("/dev/urandom"), e))?;
                let key = Self::from_seed(&seed);
                write_private(&path, &seed)?;
                seed.fill(0);
                let ring = serde_json::json!({
                    "version": 1,
                    "active_epoch": 0,
                    "epochs": [{
                        "epoch": 0,
                        "algorithm": "ed25519",
                        "public_key_hex": key.public_hex(),
                        "fingerprint": key.fingerprint(),
                        "created_at": crate::capsule::isoformat_now(),
                        "rotated_at": null,
                        "status": "active",
                    }],
                });
                let mut text = serde_json::to_string_pretty(&ring).unwrap_or_default();
                text.push('\n');
                write_private(&dir.join("keyring.json"), text.as_bytes())?;
                Ok(key)
            }
            Err(e) => Err(io("read", &path, e)),
        }
    }
}
