//! What the model-routing suite needs besides curl: an HTTP/1.1 client over TLS (trusting
//! the site's root) that sends a body in parts and reads a response frame by frame, with
//! the time each frame came.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conduit_benches::sim::SimBody;
use http_body_util::BodyExt as _;
use tokio::sync::mpsc;

/// The vLLM replicas' API key (clients send it; the gateway's probes send it from the
/// configuration).
pub(crate) const KEY: &str = "sk-sim-0123456789";

/// A connection to `host` on the gateway's HTTPS port.
pub(crate) async fn connect(
    root: &Path,
    port: u16,
    host: &str,
) -> hyper::client::conn::http1::SendRequest<SimBody> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// A JSON POST to `host` with the replicas' API key.
fn json_post(host: &str, path: &str) -> http::request::Builder {
    http::Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
}

/// A POST whose body the caller sends through the returned sender (`len` bytes in all).
pub(crate) fn post(
    host: &str,
    path: &str,
    len: usize,
) -> (http::Request<SimBody>, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel(64);
    let req = json_post(host, path)
        .header("content-length", len)
        .body(SimBody::Stream(rx))
        .unwrap();
    (req, tx)
}

/// A whole POST body.
pub(crate) fn post_json(host: &str, path: &str, body: &str) -> http::Request<SimBody> {
    json_post(host, path)
        .body(SimBody::Full(Some(Bytes::from(body.to_owned()))))
        .unwrap()
}

/// Reads a response's body frame by frame: each frame's bytes and when it came (from
/// `start`).
pub(crate) async fn frames(
    resp: http::Response<hyper::body::Incoming>,
    start: Instant,
) -> Vec<(Duration, Bytes)> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            out.push((start.elapsed(), d));
        }
    }
    out
}

/// `GET /v1/models` as OpenAI clients read it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ModelList {
    pub(crate) object: String,
    pub(crate) data: Vec<ModelCard>,
}

/// One model of a [`ModelList`].
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ModelCard {
    pub(crate) id: String,
}

/// An error in OpenAI's shape.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct OpenAiError {
    pub(crate) error: ErrorDetail,
}

/// What an [`OpenAiError`] says.
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct ErrorDetail {
    pub(crate) message: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) param: Option<String>,
    pub(crate) code: String,
}

/// The part of an access-log line a model decision adds to.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct AccessLine {
    pub(crate) upstream: Option<String>,
    pub(crate) llm: Option<Decision>,
}

/// The access log's `llm`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Decision {
    pub(crate) model: Option<String>,
    pub(crate) affinity: Option<String>,
    pub(crate) scores: Vec<Score>,
}

/// One candidate of a [`Decision`].
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Score {
    pub(crate) upstream: String,
    pub(crate) score: f64,
    pub(crate) load: f64,
}
