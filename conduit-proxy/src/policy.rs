//! Access control on the request path: the compiled policy ([`AccessControl`]) decides
//! before a request reaches any upstream; a refusal is a 403 with a one-line reason, counted,
//! and reported as an [`AccessDenied`]. Services that want client certificates get a TLS
//! configuration that asks for one, chosen by the ClientHello's SNI.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use conduit_registry::access::{Client, Evaluator, Reason};
use conduit_registry::{DomainName, ServiceName};
use http::StatusCode;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;

use crate::response_body::{ResponseBody, local};
use crate::routes::Route;
use crate::shared::{ConnInfo, Shared};

/// Names the peer a verified client certificate was issued to (`None`: not one of ours).
pub type IdentifyClient = Arc<dyn Fn(&CertificateDer<'_>) -> Option<ClientIdentity> + Send + Sync>;

/// Who a verified client certificate says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientIdentity {
    /// The peer it was issued to.
    pub peer: Box<str>,
    /// Its serial, lower-case hex (matched against [`ClientAuth::revoked`]).
    pub serial: Box<str>,
}

impl ClientIdentity {
    /// The certificate of `serial` issued to `peer`.
    pub fn new(peer: impl Into<Box<str>>, serial: impl Into<Box<str>>) -> Self {
        Self {
            peer: peer.into(),
            serial: serial.into(),
        }
    }
}

/// How client certificates are checked and named.
#[derive(Clone)]
pub struct ClientAuth {
    /// Verifies the chain (the site's CA, its CRLs). It should allow clients without a
    /// certificate: the policy, not the handshake, refuses them, with a reason.
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// Names the peer of a verified certificate.
    pub identify: IdentifyClient,
    /// Serials revoked: a connection that presented one of them before its revocation
    /// loses that identity from its next request on (a new handshake fails anyway).
    pub revoked: Arc<std::collections::HashSet<String>>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth").finish_non_exhaustive()
    }
}

/// What the proxy enforces ([`ProxyHandle::set_access`](crate::ProxyHandle::set_access)).
#[derive(Debug, Clone)]
pub struct AccessControl {
    /// The compiled policy.
    pub evaluator: Arc<Evaluator>,
    /// Client certificates, for services that require them or have `cert:` grants.
    pub client_auth: Option<ClientAuth>,
}

/// A request the policy refused.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AccessDenied {
    /// When.
    pub at: SystemTime,
    /// The connection's source address.
    pub client: IpAddr,
    /// The peer named by its client certificate, if any.
    pub cert: Option<Box<str>>,
    /// The service.
    pub service: ServiceName,
    /// Its domain.
    pub domain: DomainName,
    /// The method.
    pub method: String,
    /// The path (no query).
    pub path: String,
    /// Why, in words (the grant or default that decided).
    pub reason: String,
}

/// The enforced state: the control and, when it has client authentication, the TLS
/// configuration that asks for certificates.
pub(crate) struct Enforced {
    pub(crate) control: AccessControl,
    pub(crate) mtls: Option<Arc<rustls::ServerConfig>>,
}

impl Enforced {
    /// Whether a connection for `sni` should be asked for a client certificate.
    pub(crate) fn mtls_for(&self, shared: &Shared, sni: &str) -> Option<Arc<rustls::ServerConfig>> {
        let mtls = self.mtls.as_ref()?;
        let table = shared.routes.load();
        let route = table.get(sni)?;
        self.control
            .evaluator
            .wants_cert(&route.service)
            .then(|| Arc::clone(mtls))
    }
}

/// The policy's answer for this request: `None` to go on, else the 403.
pub(crate) fn check(
    s: &Shared,
    c: &ConnInfo,
    route: &Route,
    method: &http::Method,
    path: &str,
) -> Option<Response> {
    let guard = s.access.load();
    let enforced = guard.as_ref()?;
    let eval = &enforced.control.evaluator;
    let revoked = c.cert.as_ref().is_some_and(|id| {
        enforced
            .control
            .client_auth
            .as_ref()
            .is_some_and(|a| a.revoked.contains(&*id.serial))
    });
    let client = Client {
        ip: c.client_ip,
        cert: c.cert.as_ref().filter(|_| !revoked).map(|id| &*id.peer),
    };
    let d = eval.decide(client, &route.service, method.as_str(), path);
    if d.allowed {
        return None;
    }
    s.counters.inc(|c| &c.access_denied);
    let msg = match d.reason {
        Reason::CertRequired if revoked => format!(
            "access denied: {} requires a client certificate, and this connection's was revoked",
            route.domain
        ),
        Reason::CertRequired => format!(
            "access denied: {} requires a client certificate issued by this site's CA",
            route.domain
        ),
        _ => format!(
            "access denied: {} has no grant for {method} {path} on {}",
            c.client_ip, route.domain
        ),
    };
    let _ = s.access_tx.send(AccessDenied {
        at: SystemTime::now(),
        client: c.client_ip,
        cert: c.cert.as_ref().map(|id| id.peer.clone()),
        service: route.service.clone(),
        domain: route.domain.clone(),
        method: method.as_str().to_owned(),
        path: path.to_owned(),
        reason: eval.explain(d, &route.service),
    });
    Some(local(StatusCode::FORBIDDEN, msg))
}

type Response = http::Response<ResponseBody>;

/// The peer a connection's client is: its certificate's, else (under a policy) the first
/// peer its address belongs to. For the access log.
pub(crate) fn peer_of(s: &Shared, c: &ConnInfo) -> Option<Box<str>> {
    if let Some(id) = &c.cert {
        return Some(id.peer.clone());
    }
    let guard = s.access.load();
    guard
        .as_ref()?
        .control
        .evaluator
        .peer_name(c.client_ip)
        .map(Into::into)
}

/// The HTTPS configuration that asks for client certificates: the same as `base` in its
/// cryptography, certificates, versions and ALPN, without session resumption (a resumed session
/// skips the certificate check, and a certificate revoked since must be refused).
pub(crate) fn mtls_config(
    base: &rustls::ServerConfig,
    certs: Arc<dyn rustls::server::ResolvesServerCert>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<rustls::ServerConfig>, crate::ProxyError> {
    let provider = Arc::clone(base.crypto_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| crate::ProxyError::Tls(Box::new(e)))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs);
    tls.alpn_protocols.clone_from(&base.alpn_protocols);
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(tls))
}
