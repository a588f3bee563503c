//! [`JsonlSink`]: the append-only `audit.log` (one six-field JSON line per event), and
//! [`read_log`] / [`LogFollower`] for `conduit logs`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::worker::Worker;
use crate::{AuditError, AuditEvent};

/// When `audit.log` writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// fsync after every event: each `append` returns only once its line is durable.
    EachWrite,
    /// Group commit (the default): the events queued while the previous write was on disk are
    /// written together with one fsync; each `append` still returns only once durable.
    #[default]
    GroupCommit,
    /// No fsync: the OS writes lines back when it likes (fastest; a power cut may lose the
    /// last seconds).
    Never,
}

/// Settings of a [`JsonlSink`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JsonlOptions {
    /// The fsync policy.
    pub fsync: FsyncPolicy,
    /// How many events may wait for the writer before `append` waits (back-pressure).
    pub queue: usize,
    /// The most events written under one lock and one fsync.
    pub max_batch: usize,
}

impl Default for JsonlOptions {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::GroupCommit,
            queue: 4096,
            max_batch: 512,
        }
    }
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Opens `path` for appending, creating it 0600.
fn open_append(path: &Path) -> Result<File, AuditError> {
    let mut o = OpenOptions::new();
    o.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path).map_err(|e| io("open", path, e))
}

/// Whether the file's last byte is not a newline.
fn ends_torn(file: &File) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    #[cfg(unix)]
    std::os::unix::fs::FileExt::read_exact_at(file, &mut last, len - 1)?;
    #[cfg(not(unix))]
    {
        last[0] = b'\n';
    }
    Ok(last[0] != b'\n')
}

/// The append-only audit log. Several processes may append at once: each write takes an
/// exclusive `flock` on the file (the original tool's convention), so lines never interleave.
#[derive(Debug, Clone)]
pub struct JsonlSink {
    worker: Worker<Arc<AuditEvent>, ()>,
    path: PathBuf,
}

impl JsonlSink {
    /// Opens (creating, 0600) the log at `path` and starts its writer thread.
    ///
    /// # Errors
    /// [`AuditError::Io`].
    pub fn open(path: impl AsRef<Path>, options: JsonlOptions) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        let file = open_append(&path)?;
        let p = path.clone();
        let policy = options.fsync;
        let max_batch = if policy == FsyncPolicy::EachWrite {
            1
        } else {
            options.max_batch
        };
        let worker = Worker::spawn(
            "conduit-audit-jsonl",
            options.queue,
            max_batch,
            move |events: &[Arc<AuditEvent>]| {
                let mut buf = Vec::with_capacity(events.len() * 256);
                for e in events {
                    buf.extend_from_slice(e.to_line().as_bytes());
                    buf.push(b'\n');
                }
                file.lock().map_err(|e| io("lock", &p, e))?;
                // A writer that died mid-line left a torn last line: end it, so our first line is
                // not glued to it (the torn fragment stays, reported by `read_log` as a bad line).
                let torn = ends_torn(&file).map_err(|e| io("read", &p, e));
                let buf = match torn {
                    Ok(true) => [b"\n".as_slice(), &buf].concat(),
                    Ok(false) => buf,
                    Err(e) => {
                        let _ = file.unlock();
                        return Err(e);
                    }
                };
                let written = (&file).write_all(&buf).map_err(|e| io("append to", &p, e));
                let synced = match (&written, policy) {
                    (Ok(()), FsyncPolicy::EachWrite | FsyncPolicy::GroupCommit) => {
                        file.sync_data().map_err(|e| io("fsync", &p, e))
                    }
                    _ => Ok(()),
                };
                let _ = file.unlock();
                written?;
                synced?;
                Ok(vec![(); events.len()])
            },
        )?;
        Ok(Self { worker, path })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event; returns once it is written (and durable, per the policy).
    ///
    /// # Errors
    /// [`AuditError::Batch`] with the write's error, [`AuditError::Closed`].
    pub async fn append(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.worker.call(Arc::new(event)).await
    }

    /// [`JsonlSink::append`] of an event shared with another writer (no copy).
    #[cfg(feature = "sqlite")]
    pub(crate) async fn append_shared(&self, event: Arc<AuditEvent>) -> Result<(), AuditError> {
        self.worker.call(event).await
    }

    /// [`JsonlSink::append`] for callers outside an async runtime.
    ///
    /// # Errors
    /// As [`JsonlSink::append`].
    pub fn append_blocking(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.worker.call_blocking(Arc::new(event))
    }
}

/// Which events [`read_log`] returns.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LogFilter {
    /// Only this action.
    pub action: Option<String>,
    /// Only events at or after this timestamp (`YYYY-MM-DDTHH:MM:SSZ`; compared as text,
    /// which orders these timestamps correctly).
    pub since: Option<String>,
    /// At most this many, the most recent.
    pub limit: Option<usize>,
}

impl LogFilter {
    fn matches(&self, e: &AuditEvent) -> bool {
        self.admits(e.action(), e.timestamp())
    }

    /// Whether a record with this action and timestamp passes the action and time filters
    /// (the limit aside): for records that arrive another way (the gateway's event stream).
    pub fn admits(&self, action: &str, timestamp: &str) -> bool {
        self.action.as_deref().is_none_or(|a| action == a)
            && self.since.as_deref().is_none_or(|s| timestamp >= s)
    }
}

/// A line of `audit.log` that is not a valid event (reported, never fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Why it was refused.
    pub reason: String,
}

/// Reads `audit.log`: the matching events in file order, and the lines that did not parse.
///
/// # Errors
/// [`AuditError::Io`]; a missing file is an empty log.
pub fn read_log(
    path: &Path,
    filter: &LogFilter,
) -> Result<(Vec<AuditEvent>, Vec<BadLine>), AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(io("open", path, e)),
    };
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| io("read", path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        match AuditEvent::from_line(&line) {
            Ok(e) if filter.matches(&e) => events.push(e),
            Ok(_) => {}
            Err(e) => bad.push(BadLine {
                line: i + 1,
                reason: e.to_string(),
            }),
        }
    }
    if let Some(limit) = filter.limit {
        let skip = events.len().saturating_sub(limit);
        events.drain(..skip);
    }
    Ok((events, bad))
}

/// Follows `audit.log` like `tail -f`: yields events appended after it was created.
#[derive(Debug)]
pub struct LogFollower {
    tail: Option<Tail>,
    poll: Duration,
}

#[derive(Debug)]
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    filter: LogFilter,
}

impl LogFollower {
    /// Starts at the current end of the file.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the file exists but cannot be read.
    pub fn from_end(path: impl AsRef<Path>, filter: LogFilter) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        let offset = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io("read", &path, e)),
        };
        Ok(Self {
            tail: Some(Tail {
                path,
                offset,
                partial: Vec::new(),
                filter,
            }),
            poll: Duration::from_millis(200),
        })
    }

    /// Starts at the beginning of the file: the first batch is every event already there
    /// (nothing written between reading and following is missed or shown twice).
    pub fn from_start(path: impl AsRef<Path>, filter: LogFilter) -> Self {
        Self {
            tail: Some(Tail {
                path: path.as_ref().to_path_buf(),
                offset: 0,
                partial: Vec::new(),
                filter,
            }),
            poll: Duration::from_millis(200),
        }
    }

    /// The next batch of new events (waits until there is at least one).
    ///
    /// # Errors
    /// [`AuditError::Io`], or [`AuditError::Closed`] if a previous call was cancelled while
    /// reading.
    pub async fn next_batch(&mut self) -> Result<Vec<AuditEvent>, AuditError> {
        loop {
            let mut tail = self.tail.take().ok_or(AuditError::Closed)?;
            // File reads go to the blocking pool, never onto a runtime thread.
            let (tail, got) = tokio::task::spawn_blocking(move || {
                let got = tail.read_new();
                (tail, got)
            })
            .await
            .map_err(|_| AuditError::Closed)?;
            self.tail = Some(tail);
            let got = got?;
            if !got.is_empty() {
                return Ok(got);
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

impl Tail {
    fn read_new(&mut self) -> Result<Vec<AuditEvent>, AuditError> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("open", &self.path, e)),
        };
        let len = f.metadata().map_err(|e| io("read", &self.path, e))?.len();
        if len < self.offset {
            // Truncated or replaced (rotation): start over.
            self.offset = 0;
            self.partial.clear();
        }
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| io("seek", &self.path, e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| io("read", &self.path, e))?;
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let mut out = Vec::new();
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            match std::str::from_utf8(&line).map(|l| AuditEvent::from_line(l.trim_end())) {
                Ok(Ok(e)) if self.filter.matches(&e) => out.push(e),
                Ok(Ok(_)) => {}
                _ => tracing::warn!(path = %self.path.display(), "skipping a malformed audit line"),
            }
        }
        Ok(out)
    }
}
