//! The admin dashboard at `https://NAME.ZONE/` (`[dashboard]`): served by the gateway's
//! own proxy listeners as a local site, with a certificate from its CA. A named admin
//! token logs in for an opaque session (`session`); the page is server-rendered and its
//! embedded script (`pages`) reads the admin API on the same origin with the session —
//! its JSON and its event stream — and changes things through it, each change checked to
//! come from this page (`guard`) and within the token's scope.

mod form;
mod guard;
mod pages;
mod session;

use std::net::IpAddr;
use std::sync::Arc;

use conduit_proxy::{LocalClient, LocalFuture, LocalSite};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::GatewayHandle;
use super::admin::{Body, Caller, error};
use crate::audited::{Action, record};
use crate::tokens::{Scope, TokenStore};
use guard::LoginLimiter;
use session::{Session, Sessions};

/// The managed name of the dashboard's certificate.
pub(super) const DASHBOARD_LEAF: &str = "@dashboard";

/// The dashboard as the proxy's local site.
#[derive(Debug, Clone)]
pub(super) struct Dashboard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gw: GatewayHandle,
    tokens: TokenStore,
    sessions: Sessions,
    limiter: LoginLimiter,
    zone: String,
    /// The ETag of each of [`pages::ASSETS`].
    etags: Vec<String>,
    /// The gateway's shutdown and task tracker (event streams end with it).
    stop: CancellationToken,
    tracker: TaskTracker,
}

/// What a login record says about it.
#[derive(Serialize)]
struct LoginDetails<'a> {
    client: String,
    token: Option<&'a str>,
    reason: Option<&'a str>,
}

impl Dashboard {
    /// The dashboard of `gw`; `None` without a state directory (no named tokens to log in
    /// with).
    pub(super) fn new(
        gw: GatewayHandle,
        stop: CancellationToken,
        tracker: TaskTracker,
    ) -> Option<Self> {
        let state = gw.state.as_ref()?;
        let tokens = TokenStore::new(state.tokens());
        let d = &gw.settings.dashboard;
        let file = state.path().join("dashboard-sessions.json");
        let inner = Inner {
            tokens,
            sessions: Sessions::open(d.session_lifetime, Some(file)),
            limiter: LoginLimiter::new(d.login_attempts_per_minute),
            zone: gw.settings.zone.to_string(),
            etags: pages::ASSETS
                .iter()
                .map(|(_, _, text)| pages::etag_of(text))
                .collect(),
            gw,
            stop,
            tracker,
        };
        Some(Self {
            inner: Arc::new(inner),
        })
    }
}

impl LocalSite for Dashboard {
    fn serve(&self, req: Request<Incoming>, client: LocalClient) -> LocalFuture {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.answer(req, client.ip).await })
    }
}

impl Inner {
    async fn answer(&self, req: Request<Incoming>, client: IpAddr) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        if parts.method == Method::POST && path == "/login" {
            return self.login(Request::from_parts(parts, body), client).await;
        }
        if parts.method == Method::GET
            && let Some(((_, kind, text), etag)) = pages::ASSETS
                .iter()
                .zip(&self.etags)
                .find(|((p, _, _), _)| *p == path)
        {
            conduit_proxy::discard_body(body);
            let if_none_match = parts
                .headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok());
            return pages::asset(kind, text, etag, if_none_match);
        }
        let live = self.session(&parts.headers).await;
        match (&parts.method, path.as_str(), live) {
            (&Method::POST, "/logout", live) => {
                self.logout(Request::from_parts(parts, body), live, client)
                    .await
            }
            (_, p, Some((_, s, caller))) if p.starts_with("/v1/") => {
                self.api(Request::from_parts(parts, body), &s, caller).await
            }
            (method, p, live) => {
                // Answered without reading the body: it is discarded, so that an HTTP/2
                // client gets the answer rather than a reset stream.
                conduit_proxy::discard_body(body);
                match (method, p, live) {
                    (&Method::GET, "/", Some((_, s, caller))) => {
                        let html = pages::shell(
                            &self.zone,
                            &caller.name,
                            caller.scope == Scope::Admin,
                            &s.csrf,
                        );
                        pages::page(StatusCode::OK, "text/html; charset=utf-8", html)
                    }
                    (&Method::GET, "/", _) => pages::page(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        pages::login(&self.zone, None),
                    ),
                    (_, p, _) if p.starts_with("/v1/") => error(
                        StatusCode::UNAUTHORIZED,
                        "no dashboard session (it expired, or its token was revoked): log in again",
                        false,
                    ),
                    _ => pages::page(
                        StatusCode::NOT_FOUND,
                        "text/plain; charset=utf-8",
                        format!("no such page: {path}\n"),
                    ),
                }
            }
        }
    }

    /// The live session a request's cookie names, and who it is now (a revoked token's
    /// session ends here).
    async fn session(&self, headers: &http::HeaderMap) -> Option<(String, Session, Caller)> {
        let id = session::cookie_of(headers)?;
        let s = self.sessions.get(id)?;
        match self.tokens.check_hash(&s.token_sha256) {
            Some((name, scope)) if scope != Scope::Witness => Some((
                id.to_owned(),
                s,
                Caller {
                    name: format!("token:{name}"),
                    scope,
                },
            )),
            _ => {
                self.sessions.remove(id).await;
                None
            }
        }
    }

    /// The admin API for a session: changes only from this page, within the token's scope.
    async fn api(&self, req: Request<Incoming>, s: &Session, caller: Caller) -> Response<Body> {
        if !matches!(*req.method(), Method::GET | Method::HEAD)
            && let Err(why) = guard::check_change(&req, &s.csrf, None)
        {
            conduit_proxy::discard_body(req.into_body());
            return error(StatusCode::FORBIDDEN, why.to_string(), false);
        }
        if let Some(refused) = caller.refuse(req.method(), req.uri().path()) {
            conduit_proxy::discard_body(req.into_body());
            return refused;
        }
        let mut r = super::admin::answer(
            req,
            self.gw.clone(),
            caller,
            self.stop.clone(),
            self.tracker.clone(),
        )
        .await;
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    async fn login(&self, req: Request<Incoming>, client: IpAddr) -> Response<Body> {
        if let Err(why) = guard::same_origin(&req) {
            conduit_proxy::discard_body(req.into_body());
            return refused_login(&self.zone, StatusCode::FORBIDDEN, &why.to_string());
        }
        if let Err(wait) = self.limiter.check(client) {
            conduit_proxy::discard_body(req.into_body());
            let secs = wait.retry_after.as_secs().max(1);
            let mut r = refused_login(
                &self.zone,
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many failed logins from {client}: try again in {secs} s."),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        let secret = form::read_form(req.into_body())
            .await
            .and_then(|f| form::form_value(&f, "token"))
            .unwrap_or_default();
        let found = self.tokens.check(secret.trim());
        let audit = &*self.gw.audit;
        match found {
            Some((name, scope)) if scope != Scope::Witness => {
                let user = format!("token:{name}");
                let id = self
                    .sessions
                    .create(crate::tokens::hash_of(secret.trim()))
                    .await;
                let details = LoginDetails {
                    client: client.to_string(),
                    token: Some(&name),
                    reason: None,
                };
                let message = format!("Logged in to the dashboard from {client}");
                record(audit, Action::DashboardLogin, true, message, &user, details).await;
                to_start(&session::set_cookie(&id, self.sessions.lifetime()))
            }
            other => {
                let reason = match other {
                    Some(_) => "a witness token cannot log in",
                    None => "unknown or revoked token",
                };
                let used_up = self.limiter.fail(client);
                let details = LoginDetails {
                    client: client.to_string(),
                    token: None,
                    reason: Some(reason),
                };
                let suffix = if used_up {
                    " (no more tries this minute)"
                } else {
                    ""
                };
                let message = format!("Refused a dashboard login from {client}: {reason}{suffix}");
                record(
                    audit,
                    Action::DashboardLogin,
                    false,
                    message,
                    "unknown",
                    details,
                )
                .await;
                refused_login(
                    &self.zone,
                    StatusCode::UNAUTHORIZED,
                    &format!("That token was not accepted ({reason})."),
                )
            }
        }
    }

    async fn logout(
        &self,
        req: Request<Incoming>,
        live: Option<(String, Session, Caller)>,
        client: IpAddr,
    ) -> Response<Body> {
        let Some((id, s, caller)) = live else {
            conduit_proxy::discard_body(req.into_body());
            return to_start(&session::clear_cookie());
        };
        let (parts, body) = req.into_parts();
        let form = form::read_form(body).await.unwrap_or_default();
        let head = Request::from_parts(parts, ());
        if let Err(why) =
            guard::check_change(&head, &s.csrf, form::form_value(&form, "csrf").as_deref())
        {
            return error(StatusCode::FORBIDDEN, why.to_string(), false);
        }
        self.sessions.remove(&id).await;
        record(
            &*self.gw.audit,
            Action::DashboardLogout,
            true,
            format!("Logged out of the dashboard from {client}"),
            &caller.name,
            LoginDetails {
                client: client.to_string(),
                token: caller.name.strip_prefix("token:"),
                reason: None,
            },
        )
        .await;
        to_start(&session::clear_cookie())
    }
}

/// To `/` (the page, or the login form), with `cookie` set: a new session's, or the old
/// one cleared.
fn to_start(cookie: &str) -> Response<Body> {
    let mut r = pages::page(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        "see /\n",
    );
    let h = r.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Ok(v) = HeaderValue::from_str(cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    r
}

/// The login form again, saying why.
fn refused_login(zone: &str, status: StatusCode, why: &str) -> Response<Body> {
    pages::page(
        status,
        "text/html; charset=utf-8",
        pages::login(zone, Some(why)),
    )
}

/// Mounts the dashboard on the proxy under `[dashboard] name` (when enabled); returns the
/// proxy to unmount it from at shutdown.
pub(super) fn mount(
    proxy: &conduit_proxy::ProxyServer,
    gw: &GatewayHandle,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> Option<conduit_proxy::ProxyHandle> {
    let s = &gw.settings;
    let name = s.dashboard_domain()?;
    let Some(site) = Dashboard::new(gw.clone(), stop.clone(), tracker.clone()) else {
        tracing::warn!(
            "no dashboard: it needs a state directory (the named tokens to log in with)"
        );
        return None;
    };
    let proxy_handle = proxy.handle();
    proxy_handle.set_local_site(Some((&name, Arc::new(site))));
    let port = proxy
        .https_addrs()
        .first()
        .map_or(443, std::net::SocketAddr::port);
    let url = if port == 443 {
        format!("https://{name}/")
    } else {
        format!("https://{name}:{port}/")
    };
    tracing::info!(%url, "dashboard");
    let _ = gw.dashboard.set(url);
    Some(proxy_handle)
}

/// The dashboard's certificate (`[dashboard] name` in the zone), renewed with the others;
/// a service registered under that name before it was reserved is named in the log.
pub(super) async fn certificate(
    s: &crate::config::ConduitConfig,
    certs: &conduit_ca::CertManager,
    active: &[Arc<conduit_registry::ServiceRecord>],
) {
    let Some(name) = s.dashboard_domain() else {
        return;
    };
    if let Some(taken) = active.iter().find(|r| r.domain() == &name) {
        tracing::error!(
            service = %taken.name(),
            "the service {} has the dashboard's name {name}: the dashboard answers it; `conduit deregister {}` or set `[dashboard] name`",
            taken.name(),
            taken.name()
        );
    }
    if matches!(
        certs.issuer().issuance(),
        conduit_ca::Issuance::Blocked { .. }
    ) {
        return;
    }
    let req = conduit_ca::IssueRequest {
        dns_names: vec![name.to_string()],
        ..conduit_ca::IssueRequest::default()
    };
    if let Err(error) = certs.ensure(DASHBOARD_LEAF, req).await {
        tracing::warn!(%error, "no certificate for the dashboard: it cannot be served until one is issued");
    }
}
