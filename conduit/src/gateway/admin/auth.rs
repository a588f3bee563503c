//! Who is calling: the unix socket's peer (SO_PEERCRED), or a named token on TCP.

use http::{Method, Request, Response, StatusCode, header};

use super::respond::{Body, error};

use crate::config::Secret;
use crate::tokens::Scope;

/// Who is calling, from the transport (never from the request): the unix socket's peer
/// user, or the bearer token's name on TCP.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The name audit records carry.
    pub(crate) name: String,
    /// What it may do (the unix socket's peers: everything).
    pub(crate) scope: Scope,
}

impl Caller {
    /// A TCP caller before its token is read (every request is authenticated on its own).
    pub(crate) fn unknown() -> Self {
        Self {
            name: "unknown".to_owned(),
            scope: Scope::Read,
        }
    }

    /// The refusal of a request this caller's scope does not allow: a witness token only
    /// witnesses, a read-only one only reads.
    pub(crate) fn refuse(&self, method: &Method, path: &str) -> Option<Response<Body>> {
        if self.scope == Scope::Witness {
            let allowed = (method == Method::POST && path == "/v1/audit/witness")
                || (method == Method::GET && path == "/v1/health");
            if !allowed {
                return Some(error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{} is a witness token: it may only POST /v1/audit/witness",
                        self.name
                    ),
                    false,
                ));
            }
        }
        if self.scope == Scope::Read && method != Method::GET {
            return Some(error(
                StatusCode::FORBIDDEN,
                format!("{} is read-only: {method} needs an admin token", self.name),
                false,
            ));
        }
        None
    }

    /// The peer of a unix-socket connection, by the kernel's `SO_PEERCRED`: its user's
    /// name, else `uid:N`.
    pub(crate) fn of_unix(s: &tokio::net::UnixStream) -> Self {
        let name = match s.peer_cred() {
            Ok(c) => crate::identity::user_name(c.uid()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the admin peer's credentials");
                "unknown".to_owned()
            }
        };
        Self {
            name,
            scope: Scope::Admin,
        }
    }
}

/// Who may use the TCP listener: the named tokens of the state directory (read again when
/// they change), and the configuration's one `[admin] token` as `legacy` where there is no
/// state directory to import it into.
#[derive(Debug)]
pub(crate) struct Auth {
    pub(crate) store: Option<crate::tokens::TokenStore>,
    pub(crate) legacy: Option<Secret>,
}

impl Auth {
    /// The caller a request's bearer token makes, if any.
    pub(crate) fn caller<B>(&self, req: &Request<B>) -> Option<Caller> {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))?
            .trim();
        if let Some((name, scope)) = self.store.as_ref().and_then(|s| s.check(given)) {
            return Some(Caller {
                name: format!("token:{name}"),
                scope,
            });
        }
        let want = self.legacy.as_ref()?.expose();
        crate::tokens::same(given, want).then(|| Caller {
            name: "token:legacy".to_owned(),
            scope: Scope::Admin,
        })
    }
}
