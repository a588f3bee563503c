//! The route table: each proxied service's domain → its upstreams and their health.
//!
//! Built from the registry on every change and swapped atomically; a request loads the
//! current table once and keeps it, so a swap never disturbs requests in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use conduit_registry::{DomainName, Endpoint, HealthCheck, ServiceName, ServiceRecord};

use crate::config::Balance;

mod backend;
mod build;
pub(crate) use backend::{Backend, InFlight, NewBackend};
pub(crate) use build::Rules;

/// Where a health verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckSource {
    /// The periodic check of the service's health path.
    Active,
    /// A real request: connect error, timeout or 5xx.
    Passive,
}

/// An upstream went up or down. The façade audits each as `health_change`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthEvent {
    /// When it happened.
    pub at: SystemTime,
    /// The service.
    pub service: ServiceName,
    /// Its domain.
    pub domain: DomainName,
    /// The upstream.
    pub endpoint: Endpoint,
    /// Whether it is now healthy.
    pub healthy: bool,
    /// What decided it.
    pub source: CheckSource,
    /// The last check's outcome (`"200 OK"`, `"connection refused"`, …).
    pub reason: String,
}

/// One proxied service.
#[derive(Debug)]
pub(crate) struct Route {
    /// The registry record this route was built from: the same record (the same `Arc`)
    /// next time means the same route.
    pub(crate) record: Arc<ServiceRecord>,
    pub(crate) service: ServiceName,
    pub(crate) domain: DomainName,
    pub(crate) backends: Box<[Arc<Backend>]>,
    pub(crate) health: HealthCheck,
    pub(crate) body_limit: Option<u64>,
    /// Served over HTTPS (with a certificate); `false`: over the plain-HTTP listener only.
    pub(crate) tls: bool,
    /// `Host` (and `X-Forwarded-Host`) as upstreams get it: the domain.
    pub(crate) host_header: http::HeaderValue,
    /// `DOMAIN:PORT` for the first listener port (not the scheme's default) a request came
    /// on: built once, not per request or connection (see `headers::host_on_port`).
    pub(crate) host_port: std::sync::OnceLock<(u16, http::HeaderValue)>,
    /// For a service with model servers: its decisions.
    pub(crate) models: Option<Box<crate::llm::RouteModels>>,
    next: AtomicU64,
}

/// SplitMix64's finalizer: a well-spread 64-bit hash of `x`.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Two different positions among `n` (at least 2), drawn from the random `r`: power of two
/// choices' pair.
pub(crate) fn two_of(n: usize, r: u64) -> (usize, usize) {
    let a = (r % n as u64) as usize;
    let b = ((r >> 32) % (n as u64 - 1)) as usize;
    (a, if b >= a { b + 1 } else { b })
}

impl Route {
    /// A healthy backend not in `skip`, or `None` when none is left.
    pub(crate) fn pick(&self, balance: Balance, skip: &[usize]) -> Option<&Arc<Backend>> {
        let n = self.backends.len();
        let usable =
            |b: &&Arc<Backend>| b.is_healthy() && !skip.contains(&(Arc::as_ptr(b) as usize));
        if n <= 1 {
            // None at all: every upstream was refused (the SSRF policy) or none is left.
            return self.backends.first().filter(usable);
        }
        let tick = self.next.fetch_add(1, Ordering::Relaxed);
        match balance {
            Balance::RoundRobin => {
                let start = (tick % n as u64) as usize;
                (0..n).map(|i| &self.backends[(start + i) % n]).find(usable)
            }
            _ => {
                let (a, b) = two_of(n, splitmix(tick ^ (self as *const Self as u64)));
                let (x, y) = (&self.backends[a], &self.backends[b]);
                match (usable(&x), usable(&y)) {
                    (true, true) => Some(if y.outstanding() < x.outstanding() {
                        y
                    } else {
                        x
                    }),
                    (true, false) => Some(x),
                    (false, true) => Some(y),
                    (false, false) => self
                        .backends
                        .iter()
                        .filter(usable)
                        .min_by_key(|b| b.outstanding()),
                }
            }
        }
    }

    /// A number that changes with every call (the balancers' turn).
    pub(crate) fn tick(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn healthy_count(&self) -> usize {
        self.backends.iter().filter(|b| b.is_healthy()).count()
    }
}

/// The state of one upstream, as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpstreamStatus {
    /// The upstream.
    pub endpoint: Endpoint,
    /// Whether it gets traffic.
    pub healthy: bool,
    /// Requests in flight on it.
    pub outstanding: usize,
    /// Requests sent to it since its route was last built (a registry change rebuilds it).
    pub requests: u64,
    /// Of those, the ones it failed: no answer, or a status in `passive_failure_statuses`.
    pub failures: u64,
    /// Its time to a response head, a moving average; `None` before its first answer.
    pub latency: Option<std::time::Duration>,
    /// For a model server: its models, readiness and load.
    pub models: Option<crate::llm::UpstreamModels>,
}

/// Every route, by lower-case domain.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    routes: HashMap<Arc<str>, Arc<Route>>,
    /// The active services it was built from, in the registry's order.
    sources: Vec<Arc<ServiceRecord>>,
}

impl RouteTable {
    /// Looks a host up (any case, no port, no trailing dot).
    pub(crate) fn get(&self, host: &str) -> Option<&Arc<Route>> {
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.routes.get(host.to_ascii_lowercase().as_str())
        } else {
            self.routes.get(host)
        }
    }

    pub(crate) fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values()
    }

    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }
}

/// Looks `host` up in a one-route table (fuzzing).
pub(crate) fn fuzz_lookup(host: &str) -> bool {
    use std::sync::OnceLock;
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let rec = ServiceRecord::new(
            ServiceName::new("svc").unwrap_or_else(|_| unreachable!()),
            Endpoint::from_socket_addr(([10, 0, 0, 1], 80).into())
                .unwrap_or_else(|_| unreachable!()),
        );
        RouteTable::build(
            &RouteTable::default(),
            &[Arc::new(rec)],
            NewBackend::healthy(true),
            |_| None,
            |_, _| true,
        )
    });
    t.get(host).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_registry::ServiceRecord;

    fn table(eps: &[&str], healthy: bool) -> RouteTable {
        let rec = ServiceRecord::new("svc".parse().unwrap(), eps[0].parse().unwrap())
            .with_endpoints(eps.iter().map(|e| e.parse().unwrap()).collect());
        RouteTable::build(
            &RouteTable::default(),
            &[Arc::new(rec)],
            NewBackend::healthy(healthy),
            |_| None,
            |_, _| true,
        )
    }

    fn svc(name: &str, ep: &str) -> Arc<ServiceRecord> {
        Arc::new(
            ServiceRecord::new(name.parse().unwrap(), ep.parse().unwrap())
                .in_zone(&"internal".parse().unwrap())
                .unwrap(),
        )
    }

    fn rules()
    -> Rules<impl Fn(&DomainName) -> Option<u64>, impl Fn(&ServiceRecord, &Endpoint) -> bool> {
        Rules {
            new_backend: NewBackend::healthy(true),
            body_limit: |_: &DomainName| None,
            allow: |_: &ServiceRecord, _: &Endpoint| true,
        }
    }

    /// The routes of a table, by domain, with their upstreams.
    fn shape(t: &RouteTable) -> Vec<(String, Vec<String>)> {
        let mut v: Vec<_> = t
            .routes()
            .map(|r| {
                let eps = r.backends.iter().map(|b| b.endpoint.to_string()).collect();
                (r.domain.to_string(), eps)
            })
            .collect();
        v.sort();
        v
    }

    /// The domains a table routes, sorted.
    fn domains(t: &RouteTable) -> Vec<String> {
        shape(t).into_iter().map(|(d, _)| d).collect()
    }

    #[test]
    fn a_few_records_replaced_or_added_touch_only_their_routes() {
        let (a, b, c) = (
            svc("a", "10.0.0.1:80"),
            svc("b", "10.0.0.2:80"),
            svc("c", "10.0.0.3:80"),
        );
        let (t0, all) = RouteTable::rebuild(
            &RouteTable::default(),
            &[a.clone(), b.clone(), c.clone()],
            &rules(),
        );
        assert_eq!(all, None);
        // b gets another upstream, c moves to another domain, d is new
        let b2 = Arc::new(
            (*b).clone()
                .with_endpoints(vec!["10.0.0.9:80".parse().unwrap()]),
        );
        let c2 = Arc::new((*c).clone().with_domain("c2.internal".parse().unwrap()));
        let d = svc("d", "10.0.0.4:80");
        let next = [a.clone(), b2, c2, d];
        let (t1, changed) = RouteTable::rebuild(&t0, &next, &rules());
        let mut changed: Vec<String> = changed.unwrap().iter().map(|d| d.to_string()).collect();
        changed.sort();
        changed.dedup();
        assert_eq!(
            changed,
            ["b.internal", "c.internal", "c2.internal", "d.internal"]
        );
        // the untouched route is the same one (its health state and check kept)
        assert!(Arc::ptr_eq(
            t0.get("a.internal").unwrap(),
            t1.get("a.internal").unwrap()
        ));
        // and the result is what a build from nothing gives
        let (fresh, _) = RouteTable::rebuild(&RouteTable::default(), &next, &rules());
        assert_eq!(shape(&t1), shape(&fresh));
        assert_eq!(
            domains(&t1),
            ["a.internal", "b.internal", "c2.internal", "d.internal"]
        );
        // a removal shifts the list: every service is looked at
        let (t2, changed) = RouteTable::rebuild(&t1, &next[1..], &rules());
        assert_eq!(changed, None);
        assert_eq!(domains(&t2), ["b.internal", "c2.internal", "d.internal"]);
    }

    #[test]
    fn replacing_the_upstreams_of_a_serving_route_never_leaves_it_without_one() {
        let serving = table(&["10.0.0.1:80"], true);
        let moved = ServiceRecord::new("svc".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
        let next = RouteTable::build(
            &serving,
            &[Arc::new(moved.clone())],
            NewBackend::healthy(false), // start_unhealthy
            |_| None,
            |_, _| true,
        );
        let r = next.get("svc.internal").unwrap();
        assert_eq!(
            r.healthy_count(),
            1,
            "the new upstream serves until its check says no"
        );
        // a brand-new route still starts as configured
        let fresh = RouteTable::build(
            &RouteTable::default(),
            &[Arc::new(moved)],
            NewBackend::healthy(false),
            |_| None,
            |_, _| true,
        );
        assert_eq!(fresh.get("svc.internal").unwrap().healthy_count(), 0);
    }

    #[test]
    fn lookup_is_case_insensitive() {
        let t = table(&["10.0.0.1:80"], true);
        let domain = |h: &str| t.get(h).map(|r| r.domain.as_str().to_owned());
        assert_eq!(domain("svc.internal").as_deref(), Some("svc.internal"));
        assert_eq!(domain("SVC.Internal").as_deref(), Some("svc.internal"));
        assert_eq!(domain("other.internal"), None);
    }

    #[test]
    fn a_route_whose_upstreams_were_all_refused_picks_none() {
        let rec = ServiceRecord::new(
            "svc".parse().unwrap(),
            "169.254.169.254:80".parse().unwrap(),
        );
        let t = RouteTable::build(
            &RouteTable::default(),
            &[Arc::new(rec)],
            NewBackend::healthy(true),
            |_| None,
            |_, _| false,
        );
        let r = t.get("svc.internal").unwrap();
        assert!(r.backends.is_empty());
        for balance in [Balance::LeastOutstanding, Balance::RoundRobin] {
            assert!(r.pick(balance, &[]).is_none());
        }
    }

    #[test]
    fn round_robin_and_p2c_skip_unhealthy() {
        let t = table(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], true);
        let r = t.get("svc.internal").unwrap();
        let check = HealthCheck::default();
        // two failures mark the second one down
        assert_eq!(
            r.backends[1].record(false, &check, CheckSource::Passive),
            None
        );
        assert_eq!(
            r.backends[1].record(false, &check, CheckSource::Passive),
            Some(false)
        );
        for balance in [Balance::RoundRobin, Balance::LeastOutstanding] {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..100 {
                let b = r.pick(balance, &[]).unwrap();
                assert!(b.is_healthy());
                seen.insert(Arc::as_ptr(b) as usize);
            }
            assert!(seen.len() >= 2);
        }
        // a passive success does not bring it back; an active one does
        assert_eq!(
            r.backends[1].record(true, &check, CheckSource::Passive),
            None
        );
        assert_eq!(
            r.backends[1].record(true, &check, CheckSource::Active),
            Some(true)
        );
        // skip list
        let first = Arc::as_ptr(&r.backends[0]) as usize;
        for _ in 0..20 {
            assert_ne!(
                Arc::as_ptr(r.pick(Balance::RoundRobin, &[first]).unwrap()) as usize,
                first
            );
        }
    }

    #[test]
    fn p2c_prefers_fewer_outstanding() {
        let t = table(&["10.0.0.1:80", "10.0.0.2:80"], true);
        let r = t.get("svc.internal").unwrap();
        let _busy: Vec<_> = (0..5).map(|_| r.backends[0].begin()).collect();
        for _ in 0..50 {
            let b = r.pick(Balance::LeastOutstanding, &[]).unwrap();
            assert!(Arc::ptr_eq(b, &r.backends[1]));
        }
    }

    #[test]
    fn rebuild_keeps_state() {
        let t = table(&["10.0.0.1:80"], false);
        let r = t.get("svc.internal").unwrap();
        r.backends[0].record(true, &HealthCheck::default(), CheckSource::Active);
        let rec = ServiceRecord::new("svc".parse().unwrap(), "10.0.0.1:80".parse().unwrap())
            .with_endpoints(vec![
                "10.0.0.1:80".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap(),
            ]);
        let t2 = RouteTable::build(
            &t,
            &[Arc::new(rec)],
            NewBackend::healthy(false),
            |_| None,
            |_, _| true,
        );
        let r2 = t2.get("svc.internal").unwrap();
        assert!(Arc::ptr_eq(&r2.backends[0], &r.backends[0]));
        assert!(r2.backends[0].is_healthy());
        assert!(!r2.backends[1].is_healthy());
        assert_eq!(r2.healthy_count(), 1);
    }
}
