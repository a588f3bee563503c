//! The last-known-good registry: a snapshot of the shared registry in the state directory
//! (`registry-snapshot.json`), signed with the gateway's seal key, rewritten after each
//! applied change, read at start when the store is unreachable.
//!
//! Format: one header line (`{"format":…,"key":PUBLIC,"sha256":…,"signature":…}`), then the
//! snapshot's JSON exactly as hashed and signed. A file whose hash, signature or key does
//! not match is refused: a gateway never serves a registry it did not write itself.

use std::path::{Path, PathBuf};

use conduit_audit::SealKey;
use conduit_registry::Snapshot;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The file's name in the state directory.
pub(crate) const SNAPSHOT_FILE: &str = "registry-snapshot.json";
const FORMAT: &str = "conduit-registry-snapshot/1";

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    key: String,
    sha256: String,
    signature: String,
}

/// Why the snapshot cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// It cannot be read or written.
    #[error("{path}: cannot {op}: {source}", path = path.display())]
    Io {
        /// `read` or `write`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It was not written by this gateway, or changed since.
    #[error(
        "{path}: the last-known-good registry snapshot does not verify ({why}); it was not used. Start the gateway with the store reachable, or remove the file to start from the store only",
        path = path.display()
    )]
    Tampered {
        /// The file.
        path: PathBuf,
        /// What does not match.
        why: String,
    },
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `snap` signed with `key` (atomically; on a blocking thread).
pub(crate) async fn write(dir: &Path, key: &SealKey, snap: &Snapshot) -> Result<(), SnapshotError> {
    let path = dir.join(SNAPSHOT_FILE);
    let io = |source| SnapshotError::Io {
        op: "write",
        path: path.clone(),
        source,
    };
    let body = serde_json::to_vec(snap).map_err(|e| io(std::io::Error::other(e)))?;
    let sha256 = hex_sha256(&body);
    let header = Header {
        format: FORMAT.to_owned(),
        key: key.public_hex(),
        signature: key.sign_hash(&sha256),
        sha256,
    };
    let mut bytes = serde_json::to_vec(&header).map_err(|e| io(std::io::Error::other(e)))?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&body);
    let target = path.clone();
    tokio::task::spawn_blocking(move || crate::state::write_atomic(&target, &bytes))
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)
}

/// Reads the snapshot, if there is one, checking it was signed by `key`.
pub(crate) fn read(dir: &Path, key: &SealKey) -> Result<Option<Snapshot>, SnapshotError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SnapshotError::Io {
                op: "read",
                path,
                source,
            });
        }
    };
    let bad = |why: &str| SnapshotError::Tampered {
        path: path.clone(),
        why: why.to_owned(),
    };
    let at = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header line"))?;
    let (head, body) = (&bytes[..at], &bytes[at + 1..]);
    let header: Header = serde_json::from_slice(head).map_err(|_| bad("the header is not JSON"))?;
    if header.format != FORMAT {
        return Err(bad(&format!("format {:?}", header.format)));
    }
    if header.key != key.public_hex() {
        return Err(bad("signed by another key than this gateway's seal key"));
    }
    if hex_sha256(body) != header.sha256 {
        return Err(bad("its content does not match its hash"));
    }
    conduit_audit::verify_signature(&header.key, &header.sha256, &header.signature)
        .map_err(|e| bad(&format!("signature: {e}")))?;
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| bad(&format!("unreadable content: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_snapshot_round_trips_and_any_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealKey::from_seed(&[7; 32]);
        assert_eq!(read(dir.path(), &key).unwrap(), None);
        let mut snap = Snapshot::default();
        snap.store_revision = 42;
        snap.records.push(conduit_registry::ServiceRecord::new(
            "grafana".parse().unwrap(),
            "10.0.1.50:3000".parse().unwrap(),
        ));
        write(dir.path(), &key, &snap).await.unwrap();
        assert_eq!(read(dir.path(), &key).unwrap(), Some(snap));
        let path = dir.path().join(SNAPSHOT_FILE);
        let good = std::fs::read_to_string(&path).unwrap();

        let edited = good.replace("10.0.1.50", "10.6.6.6");
        std::fs::write(&path, &edited).unwrap();
        let e = read(dir.path(), &key).unwrap_err().to_string();
        assert!(e.contains("does not match its hash"), "{e}");

        let other = SealKey::from_seed(&[8; 32]);
        std::fs::write(&path, &good).unwrap();
        let e = read(dir.path(), &other).unwrap_err().to_string();
        assert!(e.contains("another key"), "{e}");

        // Re-hashed by whoever edited it, the signature still gives it away.
        let (head, body) = good.split_once('\n').unwrap();
        let body = body.replace("10.0.1.50", "10.6.6.6");
        let mut h: Header = serde_json::from_str(head).unwrap();
        h.sha256 = hex_sha256(body.as_bytes());
        std::fs::write(
            &path,
            format!("{}\n{body}", serde_json::to_string(&h).unwrap()),
        )
        .unwrap();
        let e = read(dir.path(), &key).unwrap_err().to_string();
        assert!(e.contains("signature"), "{e}");
        assert!(e.contains("remove the file"), "{e}");
    }
}
