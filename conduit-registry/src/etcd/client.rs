//! A small client of etcd's v3 JSON gateway over our own HTTP stack: unary calls
//! (range, txn) with a deadline and failover across members, and the watch stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::config::{EtcdConfig, EtcdConfigError, EtcdTls};
use super::wire::{GatewayError, WatchCreate, WatchMessage, WatchRequest, WatchResult};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// No member answered in time (connection refused, reset, timed out): the store is
    /// unreachable from here; retrying later helps.
    #[error("{0}")]
    Unreachable(String),
    /// A member answered with an error: the request itself is at fault.
    #[error("etcd refused the request: {message} (code {code})")]
    Refused {
        /// etcd's message.
        message: String,
        /// etcd's gRPC status code.
        code: u64,
    },
    /// The answer is not what etcd's v3 gateway sends.
    #[error("etcd sent an answer this gateway cannot read: {0}")]
    Malformed(String),
}

/// The members and how to reach them.
#[derive(Debug, Clone)]
pub(crate) struct EtcdClient {
    http: HttpClient<Connector, Full<Bytes>>,
    bases: Arc<[String]>,
    /// The member that answered last; calls start there.
    current: Arc<AtomicUsize>,
    timeout: Duration,
}

impl EtcdClient {
    pub(crate) fn new(config: &EtcdConfig) -> Result<Self, EtcdConfigError> {
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.request_timeout));
        let tls = client_tls(config.tls.as_ref())?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            http: HttpClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            bases: config
                .endpoints
                .iter()
                .map(|e| format!("{scheme}://{e}"))
                .collect(),
            current: Arc::new(AtomicUsize::new(0)),
            timeout: config.request_timeout,
        })
    }

    /// `POST /v3/{path}` with `body`, trying each member once, from the last that answered.
    pub(crate) async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        path: &str,
        body: &Q,
    ) -> Result<A, CallError> {
        let body =
            Bytes::from(serde_json::to_vec(body).map_err(|e| CallError::Malformed(e.to_string()))?);
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for k in 0..self.bases.len() {
            let i = (start + k) % self.bases.len();
            let call = self.post(i, path, body.clone());
            match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok((status, bytes))) => {
                    self.current.store(i, Ordering::Relaxed);
                    return decode(status, &bytes);
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("{}: no answer in {:?}", self.bases[i], self.timeout),
            }
        }
        Err(CallError::Unreachable(last))
    }

    async fn post(
        &self,
        i: usize,
        path: &str,
        body: Bytes,
    ) -> Result<(http::StatusCode, Bytes), CallError> {
        let res = self.send(i, path, body).await?;
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Unreachable(format!("{}: {e}", self.bases[i])))?
            .to_bytes();
        Ok((status, bytes))
    }

    async fn send(
        &self,
        i: usize,
        path: &str,
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, CallError> {
        let req = http::Request::post(format!("{}/v3/{path}", self.bases[i]))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| CallError::Malformed(e.to_string()))?;
        self.http.request(req).await.map_err(|e| {
            // The whole chain: "client error (Connect): tcp connect error: Connection refused".
            let mut s = format!("{}: {e}", self.bases[i]);
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                s = format!("{s}: {c}");
                src = c.source();
            }
            CallError::Unreachable(s)
        })
    }

    /// Opens a watch of `[key, range_end)` from `start_revision`; the first message (the
    /// watch's creation) has been read when this returns.
    pub(crate) async fn watch(&self, create: WatchCreate) -> Result<WatchStream, CallError> {
        let body = serde_json::to_vec(&WatchRequest {
            create_request: create,
        })
        .map_err(|e| CallError::Malformed(e.to_string()))?;
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for k in 0..self.bases.len() {
            let i = (start + k) % self.bases.len();
            let open = self.send(i, "watch", Bytes::from(body.clone()));
            match tokio::time::timeout(self.timeout, open).await {
                Ok(Ok(res)) if res.status().is_success() => {
                    self.current.store(i, Ordering::Relaxed);
                    let mut stream = WatchStream {
                        body: res.into_body(),
                        buf: BytesMut::new(),
                        first: None,
                    };
                    return match tokio::time::timeout(self.timeout, stream.next()).await {
                        Ok(Ok(first)) => {
                            // A cancellation (compacted) is the caller's to see; "created"
                            // is not.
                            stream.first = first.canceled.then_some(first);
                            Ok(stream)
                        }
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(CallError::Unreachable(format!(
                            "{}: the watch was not created in {:?}",
                            self.bases[i], self.timeout
                        ))),
                    };
                }
                Ok(Ok(res)) => last = format!("{}: HTTP {}", self.bases[i], res.status()),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("{}: no answer in {:?}", self.bases[i], self.timeout),
            }
        }
        Err(CallError::Unreachable(last))
    }
}

fn decode<A: DeserializeOwned>(status: http::StatusCode, bytes: &[u8]) -> Result<A, CallError> {
    if !status.is_success() {
        if status.is_server_error() && status != http::StatusCode::INTERNAL_SERVER_ERROR {
            // 502/503/504: the member is there but cannot serve (no leader, shutting down).
            return Err(CallError::Unreachable(format!("HTTP {status}")));
        }
        return Err(match serde_json::from_slice::<GatewayError>(bytes) {
            Ok(e) if e.code == 14 => CallError::Unreachable(e.message),
            Ok(e) => CallError::Refused {
                message: e.message,
                code: e.code,
            },
            Err(_) => CallError::Malformed(format!("HTTP {status}")),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| CallError::Malformed(e.to_string()))
}

/// The messages of one watch, as etcd streams them (one JSON object per line).
#[derive(Debug)]
pub(crate) struct WatchStream {
    body: hyper::body::Incoming,
    buf: BytesMut,
    /// A message read while opening that the caller has not seen yet (a cancellation).
    first: Option<WatchResult>,
}

impl WatchStream {
    /// The next message; an error when the stream ends or breaks.
    pub(crate) async fn next(&mut self) -> Result<WatchResult, CallError> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        loop {
            if let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(at + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let msg: WatchMessage = serde_json::from_slice(line)
                    .map_err(|e| CallError::Malformed(format!("watch message: {e}")))?;
                return match (msg.result, msg.error) {
                    (Some(r), _) => Ok(r),
                    (None, Some(e)) => Err(CallError::Unreachable(format!(
                        "the watch stream ended: {} (code {})",
                        e.message, e.code
                    ))),
                    (None, None) => Err(CallError::Malformed("an empty watch message".into())),
                };
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buf.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
                Some(Err(e)) => {
                    return Err(CallError::Unreachable(format!(
                        "the watch stream broke: {e}"
                    )));
                }
                None => return Err(CallError::Unreachable("the watch stream ended".into())),
            }
        }
    }
}

fn client_tls(tls: Option<&EtcdTls>) -> Result<rustls::ClientConfig, EtcdConfigError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EtcdConfigError::Tls {
            what: "setup",
            path: Default::default(),
            problem: e.to_string(),
        })?;
    let Some(tls) = tls else {
        return Ok(builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth());
    };
    let bad = |what: &'static str, path: &std::path::Path, problem: String| EtcdConfigError::Tls {
        what,
        path: path.to_owned(),
        problem,
    };
    let mut roots = rustls::RootCertStore::empty();
    let cas =
        CertificateDer::pem_file_iter(&tls.ca).map_err(|e| bad("ca", &tls.ca, e.to_string()))?;
    for c in cas {
        let c = c.map_err(|e| bad("ca", &tls.ca, e.to_string()))?;
        roots
            .add(c)
            .map_err(|e| bad("ca", &tls.ca, e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("ca", &tls.ca, "holds no certificate".into()));
    }
    let builder = builder.with_root_certificates(roots);
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| bad("cert", cert, e.to_string()))?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad("cert", cert, e.to_string()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(p), None) | (None, Some(p)) => Err(bad(
            "cert",
            p,
            "a client certificate needs both cert and key".into(),
        )),
    }
}
