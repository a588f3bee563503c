//! [`StateDir`]: the one type that knows where a gateway keeps its state.
//!
//! ```text
//! DIR/                      0700
//!   conduit.toml            the configuration (optional; `--config FILE` names another)
//!   .env.conduit            the original tool's settings, read when present
//!   services.json           the registry (FileRegistry)
//!   tls/                    the CA: root.pem, intermediate, leaves, revoked.json
//!   audit.log               the JSONL audit log
//!   capsules.db             the sealed chain
//!   key                     the seal key
//!   admin.sock              the admin API (default; `[admin] socket` moves it)
//! ```
//! Commands and the gateway ask this type for a path; nothing else joins file names onto the
//! directory.

use std::path::{Path, PathBuf};

use conduit_audit::{AuditLog, CapsuleOptions, CapsuleSink, JsonlOptions, JsonlSink, SealKey};
use conduit_ca::{CaConfig, LocalCa};
use conduit_registry::FileRegistry;

/// A gateway's state directory and every path inside it.
///
/// ```
/// let dir = conduit::state::StateDir::new("/var/lib/conduit");
/// assert_eq!(dir.root_pem(), std::path::Path::new("/var/lib/conduit/tls/root.pem"));
/// assert_eq!(dir.admin_socket(), std::path::Path::new("/var/lib/conduit/admin.sock"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$CONDUIT_CONFIG_DIR`, else `~/.config/qp-conduit`; `None` when neither `HOME` nor
    /// the variable is set.
    pub fn from_env() -> Option<Self> {
        conduit_registry::default_config_dir().map(Self::new)
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `conduit.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("conduit.toml")
    }

    /// `.env.conduit`, the original tool's settings.
    pub fn env_file(&self) -> PathBuf {
        self.root.join(".env.conduit")
    }

    /// `services.json`, the registry.
    pub fn services_json(&self) -> PathBuf {
        self.root.join(conduit_registry::SERVICES_FILE)
    }

    /// `tls/`, the CA's directory.
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// `tls/root.pem`, the root certificate clients trust.
    pub fn root_pem(&self) -> PathBuf {
        self.tls().join("root.pem")
    }

    /// `audit.log`, the JSONL audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit.log")
    }

    /// `capsules.db`, the sealed chain.
    pub fn capsules_db(&self) -> PathBuf {
        self.root.join("capsules.db")
    }

    /// `key`, the seal key (created with the chain).
    pub fn seal_key(&self) -> PathBuf {
        self.root.join("key")
    }

    /// `access.log`, the proxy's access log (one JSON line per request).
    pub fn access_log(&self) -> PathBuf {
        self.root.join("access.log")
    }

    /// Opens the access log (appending) with its writer thread.
    ///
    /// # Errors
    /// [`StateError::AccessLog`].
    pub fn open_access_log(
        &self,
        options: conduit_proxy::AccessLogOptions,
    ) -> Result<conduit_proxy::AccessLog, StateError> {
        let path = self.access_log();
        conduit_proxy::AccessLog::open(&path, options)
            .map_err(|source| StateError::AccessLog { path, source })
    }

    /// `checkpoint.json`, the latest signed checkpoint of the sealed chain.
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint.json")
    }

    /// `witnessed/`, the last checkpoint this gateway saw from each gateway it witnesses
    /// (one file per sealing key).
    pub fn witnessed(&self) -> PathBuf {
        self.root.join("witnessed")
    }

    /// `tokens.json`, the admin API's named tokens (hashes only).
    pub fn tokens(&self) -> PathBuf {
        self.root.join("tokens.json")
    }

    /// `admin.sock`, the admin API's default socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("admin.sock")
    }

    /// Whether the directory has been set up (it holds a CA).
    pub fn is_initialized(&self) -> bool {
        self.root_pem().exists()
    }

    /// Creates the directory (and parents) and restricts it to its owner (0700).
    ///
    /// # Errors
    /// [`StateError::Directory`] naming the directory.
    pub fn create(&self) -> Result<(), StateError> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let err = |source| StateError::Directory {
            path: self.root.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(err)?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700)).map_err(err)
    }

    /// The registry (`services.json`).
    ///
    /// # Errors
    /// [`StateError::Registry`].
    pub fn open_registry(&self) -> Result<FileRegistry, StateError> {
        Ok(FileRegistry::open(&self.root)?)
    }

    /// The CA in `tls/`, created on first use with `config`.
    ///
    /// # Errors
    /// [`StateError::Ca`].
    pub fn open_ca(&self, config: CaConfig) -> Result<LocalCa, StateError> {
        Ok(LocalCa::load_or_create(
            &self.tls(),
            config,
            time::OffsetDateTime::now_utc(),
        )?)
    }

    /// The seal key, created on first use.
    ///
    /// # Errors
    /// [`StateError::Audit`].
    pub fn seal_key_or_create(&self) -> Result<SealKey, StateError> {
        Ok(SealKey::load_or_create(&self.root)?)
    }

    /// The audit log: JSONL, sealed into `capsules.db` with the directory's key.
    ///
    /// # Errors
    /// [`StateError::Audit`].
    pub fn open_audit(&self) -> Result<AuditLog, StateError> {
        let key = self.seal_key_or_create()?;
        Ok(AuditLog::new(
            JsonlSink::open(self.audit_log(), JsonlOptions::default())?,
            Some(CapsuleSink::open(
                self.capsules_db(),
                Some(key),
                CapsuleOptions::default(),
            )?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_what_the_crates_write() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.create().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(state.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let _reg = state.open_registry().unwrap();
        let _key = state.seal_key_or_create().unwrap();
        let _ca = state.open_ca(CaConfig::default()).unwrap();
        assert!(
            state.seal_key().is_file(),
            "the audit crate writes the key where we say"
        );
        assert!(
            state.root_pem().is_file(),
            "the CA writes the root where we say"
        );
        assert!(state.is_initialized());
    }
}

/// Why a part of the state directory cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The directory cannot be created or restricted to its owner.
    #[error("state directory {}: {source}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The registry cannot be opened.
    #[error(transparent)]
    Registry(#[from] conduit_registry::RegistryError),
    /// The CA cannot be loaded or created.
    #[error(transparent)]
    Ca(#[from] conduit_ca::CaError),
    /// The audit log, its chain or its key cannot be opened.
    #[error(transparent)]
    Audit(#[from] conduit_audit::AuditError),
    /// The access log cannot be opened.
    #[error("{}: cannot open the access log: {source}", path.display())]
    AccessLog {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Writes `bytes` to `path` crash-safely: a 0600 temporary file beside it, fsync, rename,
/// fsync of the directory (created 0700 if missing).
///
/// # Errors
/// The I/O error.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl StateError {
    /// Whether opening again may succeed without anybody changing anything (a locked
    /// file, a busy store).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Registry(e) => e.is_transient(),
            Self::Audit(_) => true,
            Self::Directory { .. } | Self::Ca(_) | Self::AccessLog { .. } => false,
        }
    }
}
