//! The access log: one JSON line per request, written when the response has ended (so it
//! has the bytes sent and the whole duration), by one writer thread that never holds the
//! request path up: records go into a bounded buffer the writer drains, and when it falls
//! behind they are counted and dropped rather than waited for. The file is rotated by size.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde::Serialize;

/// One request as the access log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AccessRecord {
    /// When the request arrived (written as RFC 3339, UTC, microseconds).
    #[serde(serialize_with = "rfc3339")]
    pub time: time::OffsetDateTime,
    /// The client's address (the socket's, or the trusted proxy's forwarded one).
    pub client: IpAddr,
    /// The peer it is, by its client certificate or, under an access policy, its address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<Box<str>>,
    /// The name asked for (`Host`).
    pub host: String,
    /// The upstream that answered, if one did.
    #[serde(serialize_with = "upstream")]
    pub upstream: Option<Arc<str>>,
    /// The method.
    #[serde(serialize_with = "method")]
    pub method: http::Method,
    /// The path (without the query).
    pub path: String,
    /// The status sent.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// From the request to the response head, in microseconds.
    pub ttfb_us: u64,
    /// From the request to the end of the response body, in microseconds.
    pub duration_us: u64,
    /// For a request routed by model: the model, the affinity target and every
    /// candidate's score.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "explanation"
    )]
    pub llm: Option<Arc<crate::RouteExplanation>>,
}

fn explanation<S: serde::Serializer>(
    v: &Option<Arc<crate::RouteExplanation>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(e) => e.serialize(s),
        None => s.serialize_none(),
    }
}

/// Where access records go. `record` must not block: it runs on the request path.
pub trait AccessSink: Send + Sync + std::fmt::Debug {
    /// Takes one record.
    fn record(&self, record: AccessRecord);
}

/// Settings of an [`AccessLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessLogOptions {
    /// Rotate when the file reaches this size (default 100 MB).
    pub max_bytes: u64,
    /// Rotated files kept: `access.log.1` … `.N` (default 5).
    pub keep: u32,
    /// Records that may wait for the writer (default 65,536); more are dropped and counted.
    pub queue: usize,
}

impl Default for AccessLogOptions {
    fn default() -> Self {
        Self {
            max_bytes: 100_000_000,
            keep: 5,
            queue: 65_536,
        }
    }
}

/// The access log file with its writer thread. Records are pushed into a shared buffer
/// (a short uncontended lock; only the first record of a window wakes the writer: a
/// per-record wake-up cost more than the rest of a request), which the writer drains 20 ms
/// after that first record. An idle log's writer sleeps. Dropping the last handle lets the
/// thread write what is left and end.
#[derive(Debug, Clone)]
pub struct AccessLog {
    /// The shared buffer; the writer ends (after a last drain) when every handle is gone.
    alive: Arc<Alive>,
}

#[derive(Debug)]
struct Shared {
    buffer: Mutex<Vec<AccessRecord>>,
    /// Signalled when the buffer stops being empty, and when the last handle goes.
    ready: Condvar,
    queue: usize,
    dropped: AtomicU64,
}

/// Held by every handle; the last one to go wakes the writer for its final drain.
#[derive(Debug)]
struct Alive(Arc<Shared>);

impl Drop for Alive {
    fn drop(&mut self) {
        // Under the lock, so that the writer cannot miss it between its check and its wait.
        let _b = self.0.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        self.0.ready.notify_one();
    }
}

/// How long records gather after the first of a window before the writer drains them.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

impl AccessLog {
    /// Opens (appending) `path` and starts its writer thread.
    ///
    /// # Errors
    /// The file cannot be opened or the thread cannot start.
    pub fn open(path: &Path, options: AccessLogOptions) -> std::io::Result<Self> {
        let file = open(path)?;
        let size = file.metadata()?.len();
        let inner = Arc::new(Shared {
            buffer: Mutex::new(Vec::new()),
            ready: Condvar::new(),
            queue: options.queue.max(1),
            dropped: AtomicU64::new(0),
        });
        let mut w = Writer {
            path: path.to_owned(),
            out: BufWriter::with_capacity(64 * 1024, file),
            line: Vec::with_capacity(512),
            size,
            options,
        };
        let alive = Arc::new(Alive(Arc::clone(&inner)));
        let handles = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("conduit-access-log".to_owned())
            .spawn(move || w.run(&inner, &handles))?;
        Ok(Self { alive })
    }

    /// Records dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.alive.0.dropped.load(Ordering::Relaxed)
    }
}

impl AccessSink for AccessLog {
    fn record(&self, record: AccessRecord) {
        let shared = &self.alive.0;
        let mut b = shared.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        if b.len() < shared.queue {
            let first = b.is_empty();
            b.push(record);
            drop(b);
            if first {
                shared.ready.notify_one();
            }
        } else {
            drop(b);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    /// One record's line, its allocation reused.
    line: Vec<u8>,
    size: u64,
    options: AccessLogOptions,
}

impl Writer {
    fn run(&mut self, shared: &Shared, handles: &Weak<Alive>) {
        let mut batch = Vec::new();
        loop {
            // Asleep until a first record (or the last handle's going) wakes it.
            {
                let mut b = shared.buffer.lock().unwrap_or_else(PoisonError::into_inner);
                while b.is_empty() && handles.strong_count() > 0 {
                    b = shared.ready.wait(b).unwrap_or_else(PoisonError::into_inner);
                }
            }
            #[allow(
                clippy::disallowed_methods,
                reason = "the access log's own OS thread, never a runtime's"
            )]
            std::thread::sleep(DRAIN_EVERY);
            // Read before the drain: records pushed by the last handle are in this one.
            let last = handles.strong_count() == 0;
            std::mem::swap(
                &mut batch,
                &mut shared.buffer.lock().unwrap_or_else(PoisonError::into_inner),
            );
            for r in batch.drain(..) {
                self.write(&r);
            }
            let _ = self.out.flush();
            if last {
                return;
            }
        }
    }

    fn write(&mut self, r: &AccessRecord) {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        crate::access_json::encode(r, &mut line);
        self.write_line(&line);
        self.line = line;
    }

    fn write_line(&mut self, line: &[u8]) {
        if self.size + line.len() as u64 > self.options.max_bytes
            && let Err(error) = self.rotate()
        {
            tracing::warn!(%error, file = %self.path.display(), "cannot rotate the access log");
        }
        if self.out.write_all(line).is_ok() {
            self.size += line.len() as u64;
        }
    }

    /// `access.log` → `.1` → … → `.keep` (the oldest goes), and a new `access.log`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        for n in (1..self.options.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        if self.options.keep > 0 {
            std::fs::rename(&self.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.out = BufWriter::with_capacity(64 * 1024, open(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

/// A record on its way: what the head gave, completed when the body ends (with the
/// body's bytes, counted in `record.bytes` as they are sent).
pub(crate) struct Pending {
    pub(crate) record: AccessRecord,
    pub(crate) start: tokio::time::Instant,
    pub(crate) sink: Arc<dyn AccessSink>,
}

impl Pending {
    /// Completes the record with the whole duration and hands it to the sink.
    pub(crate) fn finish(self: Box<Self>) {
        let Self {
            mut record,
            start,
            sink,
        } = *self;
        record.duration_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        sink.record(record);
    }
}

fn upstream<S: serde::Serializer>(u: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => s.serialize_some(&**u),
        None => s.serialize_none(),
    }
}

fn method<S: serde::Serializer>(m: &http::Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

/// A time as RFC 3339 in microseconds (formatted by the writer, off the request path).
fn rfc3339<S: serde::Serializer>(t: &time::OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let t = t
        .replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(*t);
    let text = t
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u16) -> AccessRecord {
        AccessRecord {
            time: time::OffsetDateTime::UNIX_EPOCH,
            client: IpAddr::from([127, 0, 0, 1]),
            peer: Some("alice".into()),
            host: "web.internal".into(),
            upstream: Some("http://127.0.0.1:9000".into()),
            method: http::Method::GET,
            path: format!("/{i}"),
            status: 200,
            bytes: u64::from(i),
            ttfb_us: 10,
            duration_us: 20,
            llm: None,
        }
    }

    #[test]
    fn records_are_written_as_json_lines_and_rotated_by_size_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let options = AccessLogOptions {
            max_bytes: 2_000,
            keep: 2,
            ..AccessLogOptions::default()
        };
        let log = AccessLog::open(&path, options).unwrap();
        for i in 0..100 {
            log.record(record(i));
        }
        drop(log);
        // The last handle's going wakes the writer, which drains and ends.
        conduit_test_support::process::wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&path).is_ok_and(|t| t.contains("\"/99\""))
        });
        let current = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(current.lines().next().unwrap()).unwrap();
        assert_eq!(first["time"], "1970-01-01T00:00:00Z");
        assert_eq!(first["host"], "web.internal");
        assert!(current.len() <= 2_000, "{}", current.len());
        for n in [1, 2] {
            let rotated = std::fs::read_to_string(format!("{}.{n}", path.display())).unwrap();
            assert!(rotated.len() <= 2_000 && !rotated.is_empty());
        }
        assert!(!dir.path().join("access.log.3").exists(), "keep = 2");
    }

    #[test]
    fn a_record_after_an_idle_spell_wakes_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(&path, AccessLogOptions::default()).unwrap();
        let written = |p: &str| std::fs::read_to_string(&path).is_ok_and(|t| t.contains(p));
        for i in [1, 2] {
            // The writer is asleep (nothing to write); only the record can wake it.
            #[allow(clippy::disallowed_methods, reason = "a test's own thread")]
            std::thread::sleep(Duration::from_millis(50));
            log.record(record(i));
            conduit_test_support::process::wait_until(Duration::from_secs(5), || {
                written(&format!("\"/{i}\""))
            });
        }
        // The handle still lives: the writer wrote without waiting for it to go.
        assert_eq!(log.dropped(), 0);
    }
}
