//! Building the route table: from every service, or, after a registration or an update,
//! by touching only the records that changed; a route whose record did not change is kept
//! as is (its health state and running check with it).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use conduit_registry::{DomainName, Endpoint, ServiceRecord};

use super::{Backend, NewBackend, Route, RouteTable};

impl RouteTable {
    /// [`RouteTable::rebuild`] with these rules, the table alone.
    pub(crate) fn build(
        previous: &Self,
        services: &[Arc<ServiceRecord>],
        new_backend: NewBackend,
        body_limit: impl Fn(&DomainName) -> Option<u64>,
        allow: impl Fn(&ServiceRecord, &Endpoint) -> bool,
    ) -> Self {
        let rules = Rules {
            new_backend,
            body_limit,
            allow,
        };
        Self::rebuild(previous, services, &rules).0
    }

    /// The table for `services` (the active ones, in the registry's order), keeping the
    /// live state of upstreams that were already there (same service, same endpoint), and
    /// the domains whose route is new, changed or gone (`None`: any may be). When the list
    /// is the previous one with a few records replaced or added (what a registration or an
    /// update does), only those are looked at; otherwise every service is.
    pub(crate) fn rebuild(
        previous: &Self,
        services: &[Arc<ServiceRecord>],
        rules: &Rules<
            impl Fn(&DomainName) -> Option<u64>,
            impl Fn(&ServiceRecord, &Endpoint) -> bool,
        >,
    ) -> (Self, Option<Vec<Arc<str>>>) {
        if let Some(changed) = changed_positions(&previous.sources, services) {
            let mut routes = previous.routes.clone();
            let mut touched = Vec::with_capacity(changed.len() * 2);
            for &i in &changed {
                if let Some(old) = previous.sources.get(i)
                    && let Some((key, _)) = routes.remove_entry(old.domain().as_str())
                {
                    touched.push(key);
                }
            }
            for &i in &changed {
                if let Some((key, route)) =
                    services.get(i).and_then(|r| route_for(previous, r, rules))
                {
                    touched.push(Arc::clone(&key));
                    routes.insert(key, route);
                }
            }
            let table = Self {
                routes,
                sources: services.to_vec(),
            };
            return (table, Some(touched));
        }
        let routes = services
            .iter()
            .filter_map(|r| route_for(previous, r, rules))
            .collect();
        let table = Self {
            routes,
            sources: services.to_vec(),
        };
        (table, None)
    }
}

/// What a route is built with, besides its record: how new upstreams start, the body limit
/// of a domain, and the SSRF guard's verdict on an upstream.
#[derive(Debug)]
pub(crate) struct Rules<L, A> {
    pub(crate) new_backend: NewBackend,
    pub(crate) body_limit: L,
    pub(crate) allow: A,
}

/// Beyond this many changed records, looking at every service is as cheap.
const MAX_CHANGED: usize = 16;

/// The positions of `after` whose record is not the one `before` had there (by identity),
/// when `after` is `before` with at most [`MAX_CHANGED`] records replaced or appended.
fn changed_positions(
    before: &[Arc<ServiceRecord>],
    after: &[Arc<ServiceRecord>],
) -> Option<Vec<usize>> {
    if after.len() < before.len() || before.is_empty() {
        return None;
    }
    let mut changed = Vec::new();
    for (i, (a, b)) in before.iter().zip(after).enumerate() {
        if !Arc::ptr_eq(a, b) {
            changed.push(i);
            if changed.len() > MAX_CHANGED {
                return None;
            }
        }
    }
    changed.extend(before.len()..after.len());
    (changed.len() <= MAX_CHANGED).then_some(changed)
}

/// The route of `rec`, if it is served through the proxy: the previous one when nothing
/// that matters changed (keeping its running health check), else a new one keeping the live
/// state of upstreams that stay.
fn route_for(
    previous: &RouteTable,
    rec: &Arc<ServiceRecord>,
    rules: &Rules<impl Fn(&DomainName) -> Option<u64>, impl Fn(&ServiceRecord, &Endpoint) -> bool>,
) -> Option<(Arc<str>, Arc<Route>)> {
    if !rec.is_active() || rec.routing() != conduit_registry::Routing::Proxied {
        return None;
    }
    let limit = (rules.body_limit)(rec.domain());
    let old = previous.routes.get_key_value(rec.domain().as_str());
    // The same record as last time: the same route (no field to compare, no upstream to
    // check again).
    if let Some((key, o)) = old
        && Arc::ptr_eq(&o.record, rec)
        && o.body_limit == limit
    {
        return Some((Arc::clone(key), Arc::clone(o)));
    }
    let domain = rec.domain().clone();
    let key: Arc<str> = old.map_or_else(|| Arc::from(domain.as_str()), |(k, _)| Arc::clone(k));
    let old = old.map(|(_, o)| o);
    let endpoints: Vec<&Endpoint> = rec
        .endpoints()
        .iter()
        .filter(|e| (rules.allow)(rec, e))
        .collect();
    if let Some(o) = old
        && o.service == *rec.name()
        && o.health == *rec.health()
        && o.body_limit == limit
        && o.tls == rec.tls()
        && o.backends.len() == endpoints.len()
        && o.backends
            .iter()
            .zip(&endpoints)
            .all(|(b, e)| b.endpoint == **e && b.engine == rec.kind_of(e))
    {
        // Unchanged: keep the route itself (and its running health check).
        return Some((key, Arc::clone(o)));
    }
    // Upstreams replacing all of a serving route's healthy ones start healthy (their check
    // runs at once and takes them out if they are down): changing a service's upstreams
    // must never leave it without one in between. Otherwise new upstreams start as
    // configured (an added one gets traffic once its check passes).
    let same_service = old.filter(|o| o.service == *rec.name());
    let kept = |e: &Endpoint| {
        same_service.and_then(|o| {
            o.backends
                .iter()
                .find(|b| b.endpoint == *e && b.engine == rec.kind_of(e))
        })
    };
    let kept_healthy = endpoints
        .iter()
        .filter_map(|e| kept(e))
        .any(|b| b.is_healthy());
    let start = if !kept_healthy && same_service.is_some_and(|o| o.healthy_count() > 0) {
        NewBackend {
            healthy: true,
            ..rules.new_backend
        }
    } else {
        rules.new_backend
    };
    let backends: Box<[Arc<Backend>]> = endpoints
        .into_iter()
        .filter_map(|e| match kept(e) {
            Some(b) => Some(Arc::clone(b)),
            None => Backend::new(e.clone(), rec.kind_of(e), start).map(Arc::new),
        })
        .collect();
    let models = backends
        .iter()
        .any(|b| b.engine.is_model_server())
        .then(Box::default);
    let route = Route {
        record: Arc::clone(rec),
        models,
        service: rec.name().clone(),
        body_limit: limit,
        tls: rec.tls(),
        host_header: http::HeaderValue::from_str(domain.as_str())
            .unwrap_or(http::HeaderValue::from_static("invalid")),
        host_port: std::sync::OnceLock::new(),
        domain,
        backends,
        health: rec.health().clone(),
        next: AtomicU64::new(0),
    };
    Some((key, Arc::new(route)))
}
