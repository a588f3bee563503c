//! Named admin tokens for the admin API's TCP listener: each `read` or `admin` scoped,
//! stored in the state directory as SHA-256 hashes only (`tokens.json`, 0600, written
//! atomically). The secret is shown once, when the token is added. A running gateway reads
//! the file again whenever it changes, so `conduit token add|revoke` needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `GET` only; every change is 403.
    Read,
    /// Everything.
    Admin,
    /// Only `POST /v1/audit/witness` (and `GET /v1/health`): for the gateways whose
    /// checkpoints this one witnesses.
    Witness,
}

impl Scope {
    /// Its name: `read`, `admin`, `witness`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Admin => "admin",
            Self::Witness => "witness",
        }
    }
}

/// One stored token: its name, scope, and the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Its name (what audit records carry, as `token:NAME`).
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    /// When it was added (RFC 3339).
    pub created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<TokenEntry>,
}

/// Why the token file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// It cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a token file (nothing is overwritten).
    #[error("{}: not a token file: {reason}; fix or remove it", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A token of that name exists.
    #[error("a token named {0:?} exists: revoke it first (`conduit token revoke {0}`)")]
    Exists(String),
    /// No token of that name.
    #[error("no token named {0:?} (`conduit token list`)")]
    Unknown(String),
    /// The name cannot be used.
    #[error("token name {0:?}: use 1-64 letters, digits, '-', '_' or '.'")]
    BadName(String),
}

/// The hex SHA-256 of a secret.
/// 32 random bytes, lower-case hex: a token's secret, a dashboard session's id.
pub(crate) fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a token's secret, hex: what the token file stores.
pub fn hash_of(secret: &str) -> String {
    hash(secret)
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Constant-time comparison of two secrets (token hashes, CSRF tokens): as long as the
/// shorter, whatever where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A file's identity: modification time, inode, length (a rename makes a new inode, so a
/// change within one mtime tick is still seen).
type FileStamp = (SystemTime, u64, u64);

/// The token file of a state directory.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    /// The entries as last read, and the file's modification time then.
    cache: Mutex<(Option<FileStamp>, Vec<TokenEntry>)>,
}

impl TokenStore {
    /// The store at `path` (`DIR/tokens.json`); nothing is read yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache: Mutex::new((None, Vec::new())),
        }
    }

    fn read(path: &Path) -> Result<Vec<TokenEntry>, TokenError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<File>(&bytes)
                .map(|f| f.tokens)
                .map_err(|e| TokenError::Corrupt {
                    path: path.to_owned(),
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(TokenError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn write(&self, tokens: Vec<TokenEntry>) -> Result<(), TokenError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let io = |source| TokenError::Io {
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(&File { tokens }).unwrap_or_default();
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Every token (secrets are never stored).
    ///
    /// # Errors
    /// [`TokenError`] reading the file.
    pub fn list(&self) -> Result<Vec<TokenEntry>, TokenError> {
        Self::read(&self.path)
    }

    /// Adds a token and returns its secret (shown once; only its hash is stored).
    ///
    /// # Errors
    /// [`TokenError::Exists`], [`TokenError::BadName`], or the file's errors.
    pub fn add(&self, name: &str, scope: Scope) -> Result<String, TokenError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(TokenError::BadName(name.to_owned()));
        }
        let mut tokens = Self::read(&self.path)?;
        if tokens.iter().any(|t| t.name == name) {
            return Err(TokenError::Exists(name.to_owned()));
        }
        let secret = format!("cdt_{}", random_hex());
        tokens.push(TokenEntry {
            name: name.to_owned(),
            scope,
            sha256: hash(&secret),
            created: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        });
        self.write(tokens)?;
        Ok(secret)
    }

    /// Adds a token whose secret is given (the legacy `[admin] token`, imported as
    /// `legacy`), unless one of that name exists.
    ///
    /// # Errors
    /// The file's errors.
    pub fn import(&self, name: &str, secret: &str, scope: Scope) -> Result<bool, TokenError> {
        let mut tokens = Self::read(&self.path)?;
        if tokens.iter().any(|t| t.name == name) {
            return Ok(false);
        }
        tokens.push(TokenEntry {
            name: name.to_owned(),
            scope,
            sha256: hash(secret),
            created: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        });
        self.write(tokens)?;
        Ok(true)
    }

    /// Revokes a token: the next request with it is refused.
    ///
    /// # Errors
    /// [`TokenError::Unknown`], or the file's errors.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let mut tokens = Self::read(&self.path)?;
        let before = tokens.len();
        tokens.retain(|t| t.name != name);
        if tokens.len() == before {
            return Err(TokenError::Unknown(name.to_owned()));
        }
        self.write(tokens)
    }

    /// The token a request's secret is, read again from the file when it changed (one
    /// `stat` otherwise). A file that cannot be read keeps the tokens last read.
    pub fn check(&self, secret: &str) -> Option<(String, Scope)> {
        self.check_hash(&hash(secret))
    }

    /// Reads the file again when it changed since the last read.
    fn fresh(&self) {
        use std::os::unix::fs::MetadataExt as _;
        // A rename makes a new inode: a change within one mtime tick is still seen.
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| Ok((m.modified()?, m.ino(), m.len())))
            .ok();
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.0 != mtime || mtime.is_none() {
            match Self::read(&self.path) {
                Ok(t) => *cache = (mtime, t),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the admin tokens; keeping the last ones")
                }
            }
        }
    }

    /// The token whose secret hashes to `sha256` ([`hash_of`]), while it is not revoked:
    /// what a dashboard session keeps instead of the secret.
    pub fn check_hash(&self, sha256: &str) -> Option<(String, Scope)> {
        self.fresh();
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .1
            .iter()
            .find(|t| same(&t.sha256, sha256))
            .map(|t| (t.name.clone(), t.scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_shown_once_and_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path().join("tokens.json"));
        let secret = store.add("ci", Scope::Read).unwrap();
        assert!(secret.starts_with("cdt_") && secret.len() == 68);
        let text = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!text.contains(&secret[4..]), "never stored in plain text");
        assert_eq!(store.check(&secret), Some(("ci".to_owned(), Scope::Read)));
        assert_eq!(store.check("cdt_wrong"), None);
        assert!(matches!(
            store.add("ci", Scope::Admin),
            Err(TokenError::Exists(_))
        ));
        assert!(matches!(
            store.add("bad name", Scope::Admin),
            Err(TokenError::BadName(_))
        ));
        store.revoke("ci").unwrap();
        assert_eq!(store.check(&secret), None, "revoked, seen at once");
        assert!(matches!(store.revoke("ci"), Err(TokenError::Unknown(_))));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("tokens.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
