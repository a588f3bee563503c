//! [`FileRegistry`]: `services.json` in the config directory, shared safely by processes.
//!
//! Every change runs under an exclusive lock on `services.json.lock`: read the file fresh,
//! apply the change, write `services.json.tmp` (0600), fsync it, rename it over
//! `services.json`, fsync the directory. A reader therefore sees the old file or the new one,
//! never a torn one, and a crash at any point loses nothing that was acknowledged.
//!
//! The schema is documented in `docs/registry-schema.md`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::registry::{Clock, State};
use crate::table::Table;
use crate::{
    DomainName, Endpoint, HealthCheck, ListFilter, Precondition, Registry, RegistryError,
    RegistryEvent, Revision, Scheme, ServiceName, ServiceRecord, Timestamp, Watch,
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
}

struct Inner {
    paths: Paths,
    options: FileOptions,
    state: Arc<State>,
    /// Which version of the file the state in memory reflects (its identity on disk and its
    /// schema version), so neither a write of ours nor the follower parses it again.
    known: std::sync::Mutex<Option<(Stamp, u64)>>,
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
                        write_atomically(&paths, &table)?;
                        table
                    }
                }
            }
        };
        let known = match first_stamp {
            Some(st) if stamp(&paths.file) == Some(st) => Some((st, version)),
            _ => None,
        };
        let inner = Arc::new(Inner {
            paths,
            state: State::new(table),
            options,
            known: std::sync::Mutex::new(known),
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
        // Stat before reading: if the file is replaced in between, the next check sees a
        // stamp we do not know and reads it again.
        let st = stamp(&self.paths.file);
        if st.is_some() && self.known().map(|k| k.0) == st {
            return Ok(self.state.read().revision());
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
        Ok(self.state.read().revision())
    }

    fn mutate(
        &self,
        op: impl FnOnce(&mut Table, Timestamp) -> Result<RegistryEvent, RegistryError>,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
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
        write_atomically(&self.paths, &table)?;
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
}

// ---------------------------------------------------------------------------------------
// On-disk schema

#[derive(Serialize)]
struct FileOut<'a> {
    version: u64,
    revision: Revision,
    services: Vec<&'a ServiceRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV2 {
    #[allow(dead_code, reason = "checked through VersionProbe")]
    version: u64,
    revision: Revision,
    services: Vec<ServiceRecord>,
}

#[derive(Deserialize)]
struct VersionProbe {
    version: Option<u64>,
}

/// The original tool's file (`{"version": 1, "services": [...]}`, written by jq).
#[derive(Deserialize)]
struct FileV1 {
    #[serde(default)]
    services: Vec<EntryV1>,
}

#[derive(Deserialize)]
struct EntryV1 {
    name: String,
    host: String,
    port: serde_json::Value,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    health_path: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    registered_at: Option<String>,
    #[serde(default)]
    deregistered_at: Option<String>,
    // health_status and last_health_check are runtime state: the proxy owns health now.
}

fn corrupt(path: &Path, reason: impl Into<String>) -> RegistryError {
    RegistryError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and validates the file; `None` when it does not exist.
fn read_file(
    path: &Path,
    zone: &DomainName,
    clock: &Clock,
) -> Result<Option<(Table, u64)>, RegistryError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RegistryError::io("read", path, e)),
    };
    parse(path, &bytes, zone, clock).map(Some)
}

fn parse(
    path: &Path,
    bytes: &[u8],
    zone: &DomainName,
    clock: &Clock,
) -> Result<(Table, u64), RegistryError> {
    let probe: VersionProbe = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(path, format!("not a registry JSON object: {e}")))?;
    match probe.version.unwrap_or(1) {
        1 => {
            let v1: FileV1 = serde_json::from_slice(bytes)
                .map_err(|e| corrupt(path, format!("version 1: {e}")))?;
            let table = import_v1(v1, zone, clock).map_err(|r| corrupt(path, r))?;
            Ok((table, 1))
        }
        SCHEMA_VERSION => {
            let v2: FileV2 =
                serde_json::from_slice(bytes).map_err(|e| corrupt(path, e.to_string()))?;
            let table =
                Table::from_records(v2.revision, v2.services).map_err(|r| corrupt(path, r))?;
            Ok((table, SCHEMA_VERSION))
        }
        version => Err(RegistryError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        }),
    }
}

fn import_v1(v1: FileV1, zone: &DomainName, clock: &Clock) -> Result<Table, String> {
    let mut records = Vec::with_capacity(v1.services.len());
    for (i, e) in v1.services.into_iter().enumerate() {
        let at =
            |what: &str, err: &dyn fmt::Display| format!("entry {i} ({:?}): {what}: {err}", e.name);
        let name: ServiceName = e.name.parse().map_err(|err| at("name", &err))?;
        let port = match &e.port {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| at("port", &format!("{} is not 1..=65535", e.port)))?;
        let scheme: Scheme = e
            .protocol
            .as_deref()
            .unwrap_or("http")
            .parse()
            .map_err(|err| at("protocol", &err))?;
        let endpoint = Endpoint::new(
            scheme,
            e.host.parse().map_err(|err| at("host", &err))?,
            port,
        )
        .map_err(|err| at("port", &err))?;
        let domain = zone.child(&name).map_err(|err| at("domain", &err))?;
        let ts = |s: &Option<String>| s.as_deref().map(Timestamp::parse).transpose();
        let registered = ts(&e.registered_at)
            .map_err(|err| at("registered_at", &err))?
            .unwrap_or_else(|| clock.now());
        let deregistered = ts(&e.deregistered_at).map_err(|err| at("deregistered_at", &err))?;
        let active = match e.status.as_deref().unwrap_or("active") {
            "active" => true,
            "inactive" => false,
            other => {
                return Err(at(
                    "status",
                    &format!("{other:?} is neither active nor inactive"),
                ));
            }
        };
        let rev = Revision(i as u64 + 1);
        let mut rec = ServiceRecord::new(name, endpoint)
            .with_domain(domain)
            .with_health(HealthCheck::with_path(
                e.health_path.unwrap_or_else(|| "/health".to_owned()),
            ));
        rec.stamp_registered(rev, registered);
        if !active {
            rec.stamp_deregistered(rev, deregistered.unwrap_or(registered));
        }
        records.push(rec);
    }
    Table::from_records(Revision(records.len() as u64), records)
}

// ---------------------------------------------------------------------------------------
// Files, permissions, locking

fn create_private_dir(dir: &Path) -> Result<(), RegistryError> {
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

fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
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

fn write_atomically(paths: &Paths, table: &Table) -> Result<(), RegistryError> {
    let out = FileOut {
        version: SCHEMA_VERSION,
        revision: table.revision(),
        services: table.records().iter().map(|r| &**r).collect(),
    };
    let mut bytes =
        serde_json::to_vec_pretty(&out).map_err(|e| RegistryError::Worker(e.to_string()))?;
    bytes.push(b'\n');
    write_private(&paths.tmp, &bytes)?;
    fs::rename(&paths.tmp, &paths.file).map_err(|e| RegistryError::io("rename", &paths.file, e))?;
    // Make the rename itself durable.
    File::open(&paths.dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| RegistryError::io("fsync directory", &paths.dir, e))
}

/// An exclusive lock on the lock file, released on drop (and by the kernel if we die).
struct LockGuard(File);

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlock explicitly to release it early.
        let _ = self.0.unlock();
    }
}

fn acquire_lock(path: &Path, timeout: Duration) -> Result<LockGuard, RegistryError> {
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
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
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

fn spawn_follower(inner: &Arc<Inner>) -> Result<(), RegistryError> {
    let weak = Arc::downgrade(inner);
    let (tx, rx) = mpsc::channel::<()>();
    let notifier = if inner.options.notifications {
        start_notifier(&inner.paths.dir, tx)
    } else {
        start_notifier_none(tx)
    };
    let poll = inner.options.poll_interval;
    std::thread::Builder::new()
        .name("conduit-registry-follow".to_owned())
        .spawn(move || follow(weak, rx, poll, notifier))
        .map(drop)
        .map_err(|e| RegistryError::io("start follower thread for", &inner.paths.file, e))
}

/// Reloads on every notification or poll tick; `Inner::reload` itself skips a file whose
/// identity matches the version in memory, so an unchanged file costs one `stat`.
fn follow(weak: Weak<Inner>, rx: mpsc::Receiver<()>, poll: Duration, _notifier: Notifier) {
    let mut warned: Option<Stamp> = None;
    loop {
        match rx.recv_timeout(poll) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The notifier is gone: keep polling.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                #[allow(clippy::disallowed_methods, reason = "dedicated follower thread")]
                std::thread::sleep(poll);
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        match inner.reload() {
            Ok(_) => warned = None,
            Err(error) => {
                // Warn once per bad version of the file, not on every tick.
                let now = stamp(&inner.paths.file);
                if warned != now {
                    tracing::warn!(%error, "ignoring an unreadable registry file; keeping the last good state");
                    warned = now;
                }
            }
        }
    }
}

#[cfg(feature = "notify")]
type Notifier = Option<notify::RecommendedWatcher>;
#[cfg(not(feature = "notify"))]
type Notifier = ();

#[cfg(feature = "notify")]
fn start_notifier(dir: &Path, tx: mpsc::Sender<()>) -> Notifier {
    use notify::Watcher;
    let mut w = match notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = tx.send(());
    }) {
        Ok(w) => w,
        Err(error) => {
            tracing::debug!(%error, "file notifications unavailable; polling the registry file");
            return None;
        }
    };
    match w.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(w),
        Err(error) => {
            tracing::debug!(%error, "file notifications unavailable; polling the registry file");
            None
        }
    }
}

fn start_notifier_none(tx: mpsc::Sender<()>) -> Notifier {
    drop(tx); // the follower sees a disconnected channel and polls
    Default::default()
}

#[cfg(not(feature = "notify"))]
fn start_notifier(_dir: &Path, tx: mpsc::Sender<()>) -> Notifier {
    start_notifier_none(tx)
}

/// Parses `services.json` bytes as the backend would (for the fuzz targets).
#[doc(hidden)]
pub fn fuzz_parse_services_json(bytes: &[u8]) -> bool {
    parse(
        Path::new("fuzz"),
        bytes,
        &DomainName::internal(),
        &Clock::system(),
    )
    .is_ok()
}
