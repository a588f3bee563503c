//! Active health checks: one task per route, checking every upstream each interval.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Uri};
use tokio::task::{AbortHandle, JoinSet};

use crate::failure::UpstreamError;
use crate::pool::SendError;
use crate::request_body::RequestBody;
use crate::routes::{Backend, CheckSource, Route, RouteTable};
use crate::shared::Shared;

/// The running check tasks, by domain.
#[derive(Debug, Default)]
pub(crate) struct Checkers {
    tasks: HashMap<Box<str>, (Arc<Route>, AbortHandle)>,
}

impl Checkers {
    /// Starts checks for new or changed routes and stops those of removed ones; a route
    /// that is still the same one keeps its running check (and costs a lookup).
    pub(crate) fn reconcile(&mut self, shared: &Arc<Shared>, table: &RouteTable) {
        self.tasks.retain(|domain, (route, handle)| {
            let same = table.get(domain).is_some_and(|r| Arc::ptr_eq(r, route));
            if !same {
                handle.abort();
            }
            same
        });
        for route in table.routes() {
            if !self.tasks.contains_key(route.domain.as_str()) {
                let task = tokio::spawn(check_route(Arc::clone(shared), Arc::clone(route)));
                self.tasks.insert(
                    Box::from(route.domain.as_str()),
                    (Arc::clone(route), task.abort_handle()),
                );
            }
        }
    }

    /// [`Checkers::reconcile`] for these domains only (the rest of `table` is as it was).
    pub(crate) fn reconcile_domains(
        &mut self,
        shared: &Arc<Shared>,
        table: &RouteTable,
        domains: &[Arc<str>],
    ) {
        for domain in domains {
            let route = table.get(domain);
            match self.tasks.get(&**domain) {
                Some((running, _)) if route.is_some_and(|r| Arc::ptr_eq(r, running)) => continue,
                Some(_) => {
                    if let Some((_, (_, handle))) = self.tasks.remove_entry(&**domain) {
                        handle.abort();
                    }
                }
                None => {}
            }
            if let Some(route) = route {
                let task = tokio::spawn(check_route(Arc::clone(shared), Arc::clone(route)));
                self.tasks.insert(
                    Box::from(&**domain),
                    (Arc::clone(route), task.abort_handle()),
                );
            }
        }
    }

    /// Stops every check.
    pub(crate) fn stop(&mut self) {
        for (_, (_, handle)) in self.tasks.drain() {
            handle.abort();
        }
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A health check's request: `GET` of `uri` with the route's `Host`, our `User-Agent`, and
/// `Connection: close`.
pub(crate) fn check_request(uri: Uri, host: Option<HeaderValue>) -> Request<RequestBody> {
    let mut req = Request::new(RequestBody::Empty);
    *req.uri_mut() = uri;
    if let Some(h) = host {
        req.headers_mut().insert(header::HOST, h);
    }
    req.headers_mut().insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("conduit-health/", env!("CARGO_PKG_VERSION"))),
    );
    // A check every 30 s does not need a kept-alive connection; keeping one per upstream
    // would hold a connection (and its buffers, on both sides) for every registered service.
    req.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    req
}

async fn check_route(shared: Arc<Shared>, route: Arc<Route>) {
    if route.backends.is_empty() {
        return;
    }
    // Model servers' readiness and load change by the second.
    let every = match route.models {
        Some(_) => route.health.interval.min(shared.config.llm.probe_interval),
        None => route.health.interval,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let host = HeaderValue::from_str(route.domain.as_str()).ok();
    loop {
        tick.tick().await; // the first tick is immediate: a new upstream is checked at once
        let mut set = JoinSet::new();
        for backend in route.backends.iter() {
            let (shared, route, backend, host) = (
                Arc::clone(&shared),
                Arc::clone(&route),
                Arc::clone(backend),
                host.clone(),
            );
            set.spawn(async move { check_one(&shared, &route, &backend, host).await });
        }
        while set.join_next().await.is_some() {}
    }
}

async fn check_one(
    shared: &Shared,
    route: &Route,
    backend: &Arc<Backend>,
    host: Option<HeaderValue>,
) {
    if backend.engine_state().is_some() {
        let (ok, reason) = crate::llm::probe::probe(shared, route, backend, host).await;
        tracing::trace!(upstream = %backend.endpoint, ok, %reason, "model server probe");
        shared.record(route, backend, ok, CheckSource::Active, || reason);
        return;
    }
    let Ok(uri) = Uri::try_from(route.health.path.as_str()) else {
        tracing::warn!(path = %route.health.path, "health path is not a valid request target");
        return;
    };
    let req = check_request(uri, host);
    let timeout = route.health.timeout;
    let sent = tokio::time::timeout(timeout, crate::pool::send(shared, backend, req)).await;
    let (ok, reason) = match sent {
        Ok(Ok((resp, _lease))) => {
            // Decided by the status alone. The (small) body is read before the connection
            // closes (`Connection: close`) so the upstream sees a clean close, not a reset:
            // at most 64 KiB, within the timeout.
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024);
            let _ = tokio::time::timeout(timeout, http_body_util::BodyExt::collect(body)).await;
            (
                status.is_success() || status.is_redirection(),
                format!("{} answered {status}", route.health.path),
            )
        }
        // Every connection busy serving: no verdict this round.
        Ok(Err(SendError {
            error: UpstreamError::Busy,
            ..
        })) => return,
        Ok(Err(e)) => (false, e.error.chain()),
        Err(_) => (false, format!("no answer within {timeout:?}")),
    };
    tracing::trace!(upstream = %backend.endpoint, ok, %reason, "health check");
    shared.record(route, backend, ok, CheckSource::Active, || reason);
}
