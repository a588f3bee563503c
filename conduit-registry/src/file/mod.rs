//! [`FileRegistry`]: `services.json` in the config directory, shared safely by processes.
//!
//! Every change runs under an exclusive lock on `services.json.lock`: read the file fresh,
//! apply the change, write `services.json.tmp` (0600), fsync it, rename it over
//! `services.json`, fsync the directory. A reader therefore sees the old file or the new one,
//! never a torn one, and a crash at any point loses nothing that was acknowledged.
//!
//! The schema is documented in `docs/registry-schema.md`.

mod access;
mod disk;
mod encode;
mod follow;
mod format;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use disk::{Stamp, acquire_lock, create_private_dir, stamp, write_atomically, write_private};
use encode::Fragments;
use follow::spawn_follower;
use format::read_file;

#[doc(hidden)]
pub use format::fuzz_parse_services_json;

use crate::registry::Clock;
use crate::state::State;
use crate::table::Table;
use crate::{
    DomainName, ListFilter, Precondition, Registry, RegistryError, RegistryEvent, Revision,
    ServiceName, ServiceRecord, Timestamp, Watch,
};

/// The registry file's name inside the config directory.
pub const SERVICES_FILE: &str = "services.json";
/// The schema version this build writes.
pub const SCHEMA_VERSION: u64 = 2;

/// The config directory: `$CONDUIT_CONFIG_DIR`, else `$HOME/.config/qp-conduit`.
///
/// Returns `None` when neither variable is set.
pub fn default_config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CONDUIT_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty())?;
    Some(PathBuf::from(home).join(".config").join("qp-conduit"))
}

/// Settings of a [`FileRegistry`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileOptions {
    /// The zone given to records imported from a version-1 file (which stored no domain).
    pub legacy_zone: DomainName,
    /// How long a change waits for another process's lock before failing.
    pub lock_timeout: Duration,
    /// How often the file is checked for other processes' writes when no file notification
    /// arrives (notifications, when available, are acted on at once).
    pub poll_interval: Duration,
    /// Whether to follow other processes' writes at all (a one-shot CLI does not need to).
    pub follow: bool,
    /// Whether following uses file notifications (inotify) when the `notify` feature is on;
    /// `false` polls only.
    pub notifications: bool,
    /// Where time comes from.
    pub clock: Clock,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            legacy_zone: DomainName::internal(),
            lock_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
            follow: true,
            notifications: true,
            clock: Clock::system(),
        }
    }
}

struct Paths {
    dir: PathBuf,
    file: PathBuf,
    tmp: PathBuf,
    lock: PathBuf,
    legacy_backup: PathBuf,
    /// `access.json`, the access policy, and its temporary file.
    access: PathBuf,
    access_tmp: PathBuf,
}

struct Inner {
    paths: Paths,
    options: FileOptions,
    state: Arc<State>,
    /// Which version of the file the state in memory reflects (its identity on disk and its
    /// schema version), so neither a write of ours nor the follower parses it again.
    known: std::sync::Mutex<Option<(Stamp, u64)>>,
    /// Held by every write and every reload of this process: a reload that read the file
    /// just before one of our own writes must not adopt that older table after it.
    serial: std::sync::Mutex<()>,
    /// Each record's part of the file, serialized once.
    fragments: Fragments,
    /// Which version of `access.json` the policy in memory reflects.
    policy_known: std::sync::Mutex<Option<Stamp>>,
}

/// A registry stored in `services.json`, safe for several processes at once.
///
/// Reads (`get`, `list`) are served from memory and follow other processes' writes within
/// [`FileOptions::poll_interval`] (at once where file notifications work); every write reads
/// the file fresh under the lock, so it never overwrites another process's change.
///
/// Opening reads the original tool's version-1 file as is; the first write saves it to
/// `services.json.v1.bak` and writes version 2.
#[derive(Clone)]
pub struct FileRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for FileRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRegistry")
            .field("path", &self.inner.paths.file)
            .field("state", &self.inner.state)
            .finish()
    }
}

impl FileRegistry {
    /// Opens (creating if needed) the registry in `dir`, with default options.
    ///
    /// This does blocking file I/O; call it at start-up or from `spawn_blocking`.
    ///
    /// # Errors
    /// [`RegistryError::Corrupt`] or [`RegistryError::UnsupportedVersion`] for a file that
    /// cannot be read (left untouched), [`RegistryError::Io`] when the directory or file
    /// cannot be created.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, RegistryError> {
        Self::open_with(dir, FileOptions::default())
    }

    /// Opens the registry in `dir` with `options`.
    ///
    /// # Errors
    /// As [`FileRegistry::open`].
    pub fn open_with(dir: impl AsRef<Path>, options: FileOptions) -> Result<Self, RegistryError> {
        let dir = dir.as_ref().to_path_buf();
        let paths = Paths {
            file: dir.join(SERVICES_FILE),
            tmp: dir.join(format!("{SERVICES_FILE}.tmp")),
            lock: dir.join(format!("{SERVICES_FILE}.lock")),
            legacy_backup: dir.join(format!("{SERVICES_FILE}.v1.bak")),
            access: dir.join(access::ACCESS_FILE),
            access_tmp: dir.join(format!("{}.tmp", access::ACCESS_FILE)),
            dir,
        };
        create_private_dir(&paths.dir)?;
        let first_stamp = stamp(&paths.file);
        let mut version = SCHEMA_VERSION;
        let table = match read_file(&paths.file, &options.legacy_zone, &options.clock)? {
            Some((table, v)) => {
                version = v;
                table
            }
            None => {
                // Create the empty file under the lock, unless another process beats us to it.
                let _lock = acquire_lock(&paths.lock, options.lock_timeout)?;
                match read_file(&paths.file, &options.legacy_zone, &options.clock)? {
                    Some((table, _)) => table,
                    None => {
                        let table = Table::default();
                        write_atomically(&paths, &table, &Fragments::default())?;
                        table
                    }
                }
            }
        };
        let known = match first_stamp {
            Some(st) if stamp(&paths.file) == Some(st) => Some((st, version)),
            _ => None,
        };
        let policy_stamp = stamp(&paths.access);
        let policy = access::read_policy(&paths.access)?;
        let state = State::new(table);
        if let Some(p) = policy {
            state.policy.absorb(p);
        }
        let inner = Arc::new(Inner {
            paths,
            state,
            options,
            known: std::sync::Mutex::new(known),
            serial: std::sync::Mutex::new(()),
            fragments: Fragments::default(),
            policy_known: std::sync::Mutex::new(policy_stamp),
        });
        if inner.options.follow {
            spawn_follower(&inner)?;
        }
        Ok(Self { inner })
    }

    /// The path of `services.json`.
    pub fn path(&self) -> &Path {
        &self.inner.paths.file
    }

    /// Re-reads the file now (instead of waiting for the follower) and publishes what changed.
    ///
    /// # Errors
    /// As [`FileRegistry::open`]; the state in memory is kept on error.
    pub async fn reload(&self) -> Result<Revision, RegistryError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.reload()).await
    }

    async fn mutate(
        &self,
        op: impl FnOnce(&mut Table, Timestamp) -> Result<RegistryEvent, RegistryError> + Send + 'static,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.mutate(op)).await
    }
}

impl Inner {
    fn known(&self) -> Option<(Stamp, u64)> {
        *self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_known(&self, k: Option<(Stamp, u64)>) {
        *self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = k;
    }

    fn reload(&self) -> Result<Revision, RegistryError> {
        let _serial = self
            .serial
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A damaged policy file does not stop the services from following, nor the reverse.
        let policy = self.reload_policy();
        self.reload_services()?;
        policy?;
        Ok(self.state.read().revision())
    }

    fn reload_services(&self) -> Result<(), RegistryError> {
        // Stat before reading: if the file is replaced in between, the next check sees a
        // stamp we do not know and reads it again.
        let st = stamp(&self.paths.file);
        if st.is_some() && self.known().map(|k| k.0) == st {
            return Ok(());
        }
        if let Some((table, version)) = read_file(
            &self.paths.file,
            &self.options.legacy_zone,
            &self.options.clock,
        )? {
            if table.revision() != self.state.read().revision() {
                self.state.absorb(table);
            }
            self.set_known(st.map(|s| (s, version)));
        }
        Ok(())
    }

    /// Adopts `access.json` when it is not the version in memory.
    fn reload_policy(&self) -> Result<(), RegistryError> {
        let st = stamp(&self.paths.access);
        let mut known = self
            .policy_known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.is_none() || *known == st {
            return Ok(());
        }
        if let Some(p) = access::read_policy(&self.paths.access)? {
            self.state.policy.absorb(p);
        }
        *known = st;
        Ok(())
    }

    /// Stores a new policy if the file still holds revision `expected`.
    fn set_policy(
        &self,
        policy: crate::access::AccessPolicy,
        expected: u64,
    ) -> Result<Arc<crate::access::StoredPolicy>, RegistryError> {
        let _serial = self
            .serial
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _lock = acquire_lock(&self.paths.lock, self.options.lock_timeout)?;
        // Fresh from the file under the lock: another process may have changed it.
        let current = access::read_policy(&self.paths.access)?.unwrap_or_default();
        let next = crate::state::next_policy(&current, policy, expected)?;
        access::write_policy(
            &self.paths.dir,
            &self.paths.access_tmp,
            &self.paths.access,
            &next,
        )?;
        *self
            .policy_known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stamp(&self.paths.access);
        self.state.policy.absorb((*next).clone());
        tracing::debug!(revision = next.revision, "access policy changed");
        Ok(next)
    }

    fn mutate(
        &self,
        op: impl FnOnce(&mut Table, Timestamp) -> Result<RegistryEvent, RegistryError>,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
        let _serial = self
            .serial
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _lock = acquire_lock(&self.paths.lock, self.options.lock_timeout)?;
        // Under the lock nobody else writes: if the file is the version we hold, skip parsing.
        let st = stamp(&self.paths.file);
        let (mut table, version) = match (st, self.known()) {
            (Some(now), Some((k, version))) if now == k => (self.state.read().clone(), version),
            _ => read_file(
                &self.paths.file,
                &self.options.legacy_zone,
                &self.options.clock,
            )?
            .unwrap_or((Table::default(), SCHEMA_VERSION)),
        };
        table.raise_revision(self.state.read().revision());
        let event = op(&mut table, self.options.clock.now())?;
        if version < SCHEMA_VERSION && !self.paths.legacy_backup.exists() {
            let original = fs::read(&self.paths.file)
                .map_err(|e| RegistryError::io("read", &self.paths.file, e))?;
            write_private(&self.paths.legacy_backup, &original)?;
            tracing::info!(backup = %self.paths.legacy_backup.display(), "saved the version-1 registry before upgrading it");
        }
        self.set_known(None);
        write_atomically(&self.paths, &table, &self.fragments)?;
        let written = stamp(&self.paths.file);
        self.state.absorb(table);
        self.set_known(written.map(|s| (s, SCHEMA_VERSION)));
        tracing::debug!(service = %event.record.name(), revision = %event.revision, kind = ?event.kind, "registry changed");
        Ok(event.record)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h
            .spawn_blocking(f)
            .await
            .map_err(|e| RegistryError::Worker(e.to_string()))?,
        // Outside a tokio runtime (another executor), run inline.
        Err(_) => f(),
    }
}

#[async_trait]
impl Registry for FileRegistry {
    async fn register(&self, record: ServiceRecord) -> Result<Arc<ServiceRecord>, RegistryError> {
        self.mutate(move |t, now| t.register(record, now)).await
    }

    async fn update(
        &self,
        record: ServiceRecord,
        precondition: Precondition,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
        self.mutate(move |t, now| t.update(record, precondition, now))
            .await
    }

    async fn deregister(&self, name: &ServiceName) -> Result<Arc<ServiceRecord>, RegistryError> {
        let name = name.clone();
        self.mutate(move |t, now| t.deregister(&name, now)).await
    }

    async fn get(&self, name: &ServiceName) -> Result<Option<Arc<ServiceRecord>>, RegistryError> {
        Ok(self.inner.state.read().get(name))
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<Arc<ServiceRecord>>, RegistryError> {
        Ok(self.inner.state.read().list(filter))
    }

    async fn revision(&self) -> Result<Revision, RegistryError> {
        Ok(self.inner.state.read().revision())
    }

    fn watch(&self, since: Revision) -> Watch {
        self.inner.state.watch(since)
    }

    async fn access_policy(&self) -> Result<Arc<crate::access::StoredPolicy>, RegistryError> {
        Ok(self.inner.state.policy.get())
    }

    async fn set_access_policy(
        &self,
        policy: crate::access::AccessPolicy,
        expected: u64,
    ) -> Result<Arc<crate::access::StoredPolicy>, RegistryError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.set_policy(policy, expected)).await
    }

    fn watch_access_policy(&self) -> crate::access::PolicyWatch {
        self.inner.state.policy.subscribe()
    }
}
