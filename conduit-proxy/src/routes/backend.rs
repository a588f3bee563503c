//! One upstream of one service ([`Backend`]): its address, idle connections, health and
//! the requests in flight on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use conduit_registry::{Endpoint, Engine, HealthCheck};
use http::uri::{Authority, Scheme};

use super::CheckSource;

/// One upstream of one service, with its live state.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) endpoint: Endpoint,
    /// The endpoint as text, formatted once (the access log names it on every request).
    pub(crate) label: Arc<str>,
    /// A hash of `label`, for rendezvous hashing.
    pub(crate) label_hash: u64,
    /// What kind of server it is.
    pub(crate) engine: Engine,
    /// A model server's probed state (`None` for plain HTTP upstreams).
    models: Option<Box<crate::llm::EngineState>>,
    /// `scheme://authority/`, what the connector is given.
    pub(crate) base_uri: http::Uri,
    /// Idle keep-alive connections.
    pub(crate) idle: Arc<crate::conn::Idle>,
    healthy: AtomicBool,
    /// Requests sent and not finished (the response body not yet ended).
    outstanding: AtomicUsize,
    /// Requests sent to it since the route was built (retries each count).
    sent: AtomicU64,
    /// Requests it failed (no answer, or a status in `passive_failure_statuses`).
    failed: AtomicU64,
    /// Time to the response head, moving average (1/8 weight to each new answer), in
    /// microseconds; 0 before the first.
    latency_us: AtomicU64,
    /// Consecutive failures (active or passive).
    failures: AtomicU32,
    /// Consecutive successful active checks while down.
    successes: AtomicU32,
}

/// How a new upstream starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewBackend {
    /// Healthy before its first check.
    pub(crate) healthy: bool,
    /// The most connections open to it at once.
    pub(crate) max_conns: usize,
    /// The proxy's serving threads (each keeps its own idle connections).
    pub(crate) threads: usize,
}

impl NewBackend {
    /// With the default connection cap.
    pub(crate) fn healthy(healthy: bool) -> Self {
        Self {
            healthy,
            max_conns: crate::conn::DEFAULT_MAX_CONNS,
            threads: 1,
        }
    }
}

impl Backend {
    pub(crate) fn new(endpoint: Endpoint, engine: Engine, new: NewBackend) -> Option<Self> {
        let scheme = match endpoint.scheme() {
            conduit_registry::Scheme::Https => Scheme::HTTPS,
            _ => Scheme::HTTP,
        };
        let authority = Authority::try_from(endpoint.authority()).ok()?;
        let base_uri = http::Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .ok()?;
        let label: Arc<str> = endpoint.to_string().into();
        let label_hash = crate::llm::hash(label.as_bytes());
        let model_server = engine.is_model_server();
        Some(Self {
            label,
            label_hash,
            engine,
            models: model_server.then(Box::default),
            endpoint,
            base_uri,
            idle: Arc::new(crate::conn::Idle::new(new.max_conns, new.threads)),
            // A model server is ready when its probe says so, never before.
            healthy: AtomicBool::new(new.healthy && !model_server),
            outstanding: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
        })
    }

    /// A model server's probed state.
    pub(crate) fn engine_state(&self) -> Option<&crate::llm::EngineState> {
        self.models.as_deref()
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Requests sent to it, and how many of them failed.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Folds one answer's time to its response head into the moving average.
    pub(crate) fn observe_latency(&self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { old - old / 8 + us / 8 };
        self.latency_us.store(new, Ordering::Relaxed);
    }

    /// The moving average of its time to a response head; `None` before its first answer.
    pub(crate) fn latency(&self) -> Option<std::time::Duration> {
        match self.latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(std::time::Duration::from_micros(us)),
        }
    }

    /// Counts a request it failed.
    pub(crate) fn count_failure(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Counts one outcome; returns the new state when it changed.
    pub(crate) fn record(
        &self,
        ok: bool,
        check: &HealthCheck,
        source: CheckSource,
    ) -> Option<bool> {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            if self.is_healthy() || source == CheckSource::Passive {
                return None;
            }
            let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= check.healthy_threshold.get() {
                self.successes.store(0, Ordering::Relaxed);
                self.healthy.store(true, Ordering::Relaxed);
                return Some(true);
            }
            None
        } else {
            self.successes.store(0, Ordering::Relaxed);
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= check.unhealthy_threshold.get() && self.healthy.swap(false, Ordering::Relaxed) {
                return Some(false);
            }
            None
        }
    }
}

/// A request in flight on a backend; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Backend>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}
