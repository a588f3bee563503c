//! Counters and a latency histogram, lock-free, rendered as Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) status: [AtomicU64; 5],
    pub(crate) upstream_errors: AtomicU64,
    pub(crate) upstream_timeouts: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) no_route: AtomicU64,
    pub(crate) no_healthy: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) access_denied: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) tls_failures: AtomicU64,
    pub(crate) tunnels: AtomicU64,
    pub(crate) tunnels_open: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    pub(crate) client_errors: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_micros: AtomicU64,
    /// Client connections open on each serving thread (see `crate::workers`).
    open_by_thread: Box<[AtomicI64]>,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Zeroed counters for a proxy serving on `threads` threads.
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            open_by_thread: (0..threads.max(1)).map(|_| AtomicI64::new(0)).collect(),
            ..Self::default()
        }
    }

    /// Client connections open on serving thread `thread`.
    pub(crate) fn open_on(&self, thread: usize) -> i64 {
        self.open_by_thread
            .get(thread)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// One connection more (`1`) or fewer (`-1`) open on serving thread `thread`.
    pub(crate) fn opened_on(&self, thread: usize, delta: i64) {
        if let Some(c) = self.open_by_thread.get(thread) {
            c.fetch_add(delta, Ordering::Relaxed);
        }
    }

    pub(crate) fn inc(&self, f: impl Fn(&Self) -> &AtomicU64) {
        inc(f(self));
    }

    pub(crate) fn dec(&self, f: impl Fn(&Self) -> &AtomicU64) {
        f(self).fetch_sub(1, Ordering::Relaxed);
    }

    /// One response head sent: its class and the time from request to response head.
    pub(crate) fn response(&self, status: u16, latency: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        inc(&self.status[class]);
        let secs = latency.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        inc(&self.buckets[i]);
        self.latency_micros.fetch_add(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn snapshot(&self) -> ProxyStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut cumulative = 0;
        let buckets = self
            .buckets
            .iter()
            .map(|b| {
                cumulative += g(b);
                cumulative
            })
            .collect();
        ProxyStats {
            requests: g(&self.requests),
            responses_by_class: std::array::from_fn(|i| g(&self.status[i])),
            upstream_errors: g(&self.upstream_errors),
            upstream_timeouts: g(&self.upstream_timeouts),
            retries: g(&self.retries),
            no_route: g(&self.no_route),
            no_healthy_upstream: g(&self.no_healthy),
            body_too_large: g(&self.too_large),
            access_denied: g(&self.access_denied),
            connections: g(&self.connections),
            connections_open: g(&self.connections_open),
            tls_handshake_failures: g(&self.tls_failures),
            websockets: g(&self.tunnels),
            websockets_open: g(&self.tunnels_open),
            idle_timeouts: g(&self.idle_timeouts),
            client_body_errors: g(&self.client_errors),
            connections_refused: g(&self.connections_refused),
            latency_buckets: buckets,
            latency_sum: Duration::from_micros(g(&self.latency_micros)),
            connections_open_by_thread: self
                .open_by_thread
                .iter()
                .map(|c| u64::try_from(c.load(Ordering::Relaxed)).unwrap_or(0))
                .collect(),
        }
    }
}

/// A snapshot of the proxy's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Requests received (all listeners, all hosts).
    pub requests: u64,
    /// Responses sent, by class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub responses_by_class: [u64; 5],
    /// Requests that failed at the upstream (connect error, reset, protocol error).
    pub upstream_errors: u64,
    /// Requests whose upstream did not answer in time.
    pub upstream_timeouts: u64,
    /// Requests sent again to another upstream.
    pub retries: u64,
    /// Requests for a host with no route (404) or on the wrong connection (421).
    pub no_route: u64,
    /// Requests refused with 503 because every upstream was down.
    pub no_healthy_upstream: u64,
    /// Requests refused with 413.
    pub body_too_large: u64,
    /// Requests refused with 403 by the access policy.
    pub access_denied: u64,
    /// Client connections accepted.
    pub connections: u64,
    /// Client connections open now.
    pub connections_open: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: u64,
    /// WebSocket (and other upgraded) connections proxied.
    pub websockets: u64,
    /// Upgraded connections open now.
    pub websockets_open: u64,
    /// Streams cut because nothing moved for the idle timeout.
    pub idle_timeouts: u64,
    /// Requests whose body the client cut short or malformed (answered 400; not the
    /// upstream's failure).
    pub client_body_errors: u64,
    /// Connections closed at once: over the per-client cap, or with the proxy full and
    /// nothing able to make room.
    pub connections_refused: u64,
    /// Cumulative counts of response-head latency per [`LATENCY_BUCKETS`] bound, then +Inf.
    pub latency_buckets: Vec<u64>,
    /// Sum of the response-head latencies.
    pub latency_sum: Duration,
    /// Client connections open now on each thread that serves them (see
    /// [`ProxyConfig::threads`](crate::ProxyConfig::threads)); the first is the runtime
    /// [`ProxyServer::run`](crate::ProxyServer::run) was called on.
    pub connections_open_by_thread: Vec<u64>,
}

impl ProxyStats {
    /// Prometheus text exposition (`conduit_proxy_*`).
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP conduit_proxy_{name} {help}\n# TYPE conduit_proxy_{name} counter\nconduit_proxy_{name} {v}"
            );
        };
        counter("requests_total", "Requests received.", self.requests);
        counter(
            "upstream_errors_total",
            "Requests that failed at the upstream.",
            self.upstream_errors,
        );
        counter(
            "upstream_timeouts_total",
            "Requests whose upstream did not answer in time.",
            self.upstream_timeouts,
        );
        counter(
            "retries_total",
            "Requests sent again to another upstream.",
            self.retries,
        );
        counter(
            "no_route_total",
            "Requests for a host with no route.",
            self.no_route,
        );
        counter(
            "no_healthy_upstream_total",
            "Requests refused because every upstream was down.",
            self.no_healthy_upstream,
        );
        counter(
            "body_too_large_total",
            "Requests refused with 413.",
            self.body_too_large,
        );
        counter(
            "access_denied_total",
            "Requests refused with 403 by the access policy.",
            self.access_denied,
        );
        counter(
            "connections_total",
            "Client connections accepted.",
            self.connections,
        );
        counter(
            "tls_handshake_failures_total",
            "TLS handshakes that failed.",
            self.tls_handshake_failures,
        );
        counter(
            "websockets_total",
            "Upgraded connections proxied.",
            self.websockets,
        );
        counter(
            "idle_timeouts_total",
            "Streams cut by the idle timeout.",
            self.idle_timeouts,
        );
        counter(
            "connections_refused_total",
            "Connections closed at once (per-client cap, or full).",
            self.connections_refused,
        );
        counter(
            "client_body_errors_total",
            "Request bodies the client cut short or malformed.",
            self.client_body_errors,
        );
        let _ = writeln!(
            out,
            "# HELP conduit_proxy_connections_open Client connections open.\n# TYPE conduit_proxy_connections_open gauge\nconduit_proxy_connections_open {}",
            self.connections_open
        );
        let _ = writeln!(
            out,
            "# HELP conduit_proxy_thread_connections_open Client connections open, by the thread serving them.\n# TYPE conduit_proxy_thread_connections_open gauge"
        );
        for (i, v) in self.connections_open_by_thread.iter().enumerate() {
            let _ = writeln!(
                out,
                "conduit_proxy_thread_connections_open{{thread=\"{i}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP conduit_proxy_websockets_open Upgraded connections open.\n# TYPE conduit_proxy_websockets_open gauge\nconduit_proxy_websockets_open {}",
            self.websockets_open
        );
        let _ = writeln!(
            out,
            "# HELP conduit_proxy_responses_total Responses sent, by status class.\n# TYPE conduit_proxy_responses_total counter"
        );
        for (i, v) in self.responses_by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "conduit_proxy_responses_total{{class=\"{}xx\"}} {v}",
                i + 1
            );
        }
        let _ = writeln!(
            out,
            "# HELP conduit_proxy_response_seconds Time from request to response head.\n# TYPE conduit_proxy_response_seconds histogram"
        );
        for (bound, v) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "conduit_proxy_response_seconds_bucket{{le=\"{bound}\"}} {v}"
            );
        }
        let total = self.latency_buckets.last().copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "conduit_proxy_response_seconds_bucket{{le=\"+Inf\"}} {total}\nconduit_proxy_response_seconds_sum {}\nconduit_proxy_response_seconds_count {total}",
            self.latency_sum.as_secs_f64()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let c = Counters::default();
        c.response(200, Duration::from_micros(500));
        c.response(503, Duration::from_millis(7));
        c.response(200, Duration::from_secs(100));
        let s = c.snapshot();
        assert_eq!(s.responses_by_class, [0, 2, 0, 0, 1]);
        assert_eq!(s.latency_buckets[0], 1);
        assert_eq!(s.latency_buckets[3], 2);
        assert_eq!(*s.latency_buckets.last().unwrap(), 3);
        let text = s.prometheus();
        assert!(text.contains("conduit_proxy_response_seconds_bucket{le=\"0.01\"} 2"));
        assert!(text.contains("conduit_proxy_response_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("conduit_proxy_responses_total{class=\"5xx\"} 1"));
    }
}
