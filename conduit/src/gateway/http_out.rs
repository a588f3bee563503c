//! The gateway's outgoing HTTP: a JSON `POST` to a URL (a witness, an Alertmanager), over
//! TCP or TLS, with a deadline, and the whole answer back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::config::Secret;

/// Where to `POST`: `http(s)://HOST[:PORT]/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub(super) https: bool,
    pub(super) host: String,
    port: u16,
    path: String,
    text: String,
}

/// Why a URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?}: {problem}")]
pub struct InvalidUrl {
    url: String,
    problem: &'static str,
}

impl InvalidUrl {
    pub(super) fn new(url: &str, problem: &'static str) -> Self {
        Self {
            url: url.to_owned(),
            problem,
        }
    }
}

impl Target {
    /// Parses an `http://` or `https://` URL.
    ///
    /// # Errors
    /// [`InvalidUrl`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, InvalidUrl> {
        let bad = |problem| InvalidUrl::new(text, problem);
        let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("not an http:// or https:// URL"));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
                Ok(p) => (h, p),
                Err(_) => return Err(bad("the port is not a number")),
            },
            _ => (authority, if https { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Self {
            https,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            text: text.to_owned(),
        })
    }

    /// Whether the host is this machine (a loopback address or `localhost`).
    pub(super) fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The same host with another path.
    pub(super) fn with_path(&self, path: &str) -> Self {
        let mut t = self.clone();
        t.text = format!(
            "{}://{}:{}{path}",
            if self.https { "https" } else { "http" },
            self.host,
            self.port
        );
        t.path = path.to_owned();
        t
    }

    /// `POST`s `json` (with `token` as a bearer token) and returns the status and body,
    /// within `deadline`.
    ///
    /// # Errors
    /// [`PostError`]: the connection, TLS, the exchange, or the deadline.
    pub(super) async fn post_json(
        &self,
        tls: &Arc<rustls::ClientConfig>,
        token: Option<&Secret>,
        json: Vec<u8>,
        deadline: Duration,
    ) -> Result<(StatusCode, Bytes), PostError> {
        let failed = |e: &dyn std::fmt::Display| PostError(format!("{self}: {e}"));
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&self.path)
            .header(header::HOST, format!("{}:{}", self.host, self.port))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", t.expose()));
        }
        let req = req
            .body(Full::new(Bytes::from(json)))
            .map_err(|e| failed(&e))?;
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| failed(&e))?;
            if self.https {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| failed(&e))?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| failed(&e))?;
                crate::admin::exchange(TokioIo::new(stream), req)
                    .await
                    .map_err(|e| failed(&e))
            } else {
                crate::admin::exchange(TokioIo::new(tcp), req)
                    .await
                    .map_err(|e| failed(&e))
            }
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| failed(&format!("no answer within {deadline:?}")))?
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a `POST` did not get an answer (tried again later by its caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct PostError(String);

/// A TLS client trusting the roots in `pem` (this gateway's root, a configured CA).
///
/// # Errors
/// The provider offers no protocol version (never with aws-lc-rs).
pub(super) fn tls_client(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem).flatten() {
        let _ = store.add(cert);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(store)
            .with_no_client_auth(),
    ))
}

/// The roots a peer's TLS certificate (a witness, an Alertmanager) may chain to: this
/// gateway's root and `extra` (PEM, read at start; an unreadable one is logged and left
/// out).
pub(super) fn trusted_roots(
    config: &super::GatewayConfig,
    extra: Option<&std::path::PathBuf>,
) -> Vec<u8> {
    let mut roots = Vec::new();
    let files = config
        .state
        .as_ref()
        .map(crate::state::StateDir::root_pem)
        .into_iter()
        .chain(extra.cloned());
    for f in files {
        match std::fs::read(&f) {
            Ok(b) => roots.extend(b),
            Err(error) => tracing::warn!(file = %f.display(), %error, "witness CA not read"),
        }
    }
    roots
}
