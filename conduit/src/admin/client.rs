//! The admin API's client, over the unix socket: what the `conduit` command uses.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use crate::api::{
    ApiError, AuditTail, CertificateInfo, DnsZone, Health, IntermediateInstall,
    IntermediateInstalled, MonitorSnapshot, Revocation, ServiceList, ServiceView, StatusReport,
};
use crate::spec::ServiceSpec;

/// Why a call to the admin API did not give its answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Nothing answers on the socket: the gateway is not running, or it is configured with
    /// another socket.
    #[error("the gateway is not running (no answer on {}); start it with `conduit serve`, or check `[admin] socket` and --config", socket.display())]
    NotRunning {
        /// The socket.
        socket: PathBuf,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The gateway refused the request; its reason.
    #[error("{}", error.error.message)]
    Refused {
        /// The HTTP status.
        status: u16,
        /// What the gateway said.
        error: ApiError,
    },
    /// The exchange failed half-way or the answer was not what the API promises.
    #[error("bad answer from the gateway on {}: {detail}", socket.display())]
    Protocol {
        /// The socket.
        socket: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

impl AdminError {
    /// Whether trying again later may help (the gateway may be starting, or was busy).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NotRunning { .. } | Self::Protocol { .. } => true,
            Self::Refused { error, .. } => error.error.retryable,
        }
    }
}

/// The admin API from the client's side, over the unix socket.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), conduit::admin::AdminError> {
/// let admin = conduit::admin::AdminClient::new("/var/lib/conduit/admin.sock");
/// for s in admin.status().await?.services {
///     println!("{} {:?}", s.domain, s.healthy);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    /// A client for the gateway listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/health`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn health(&self) -> Result<Health, AdminError> {
        self.call(Method::GET, "/v1/health").await
    }

    /// `GET /v1/status`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn status(&self) -> Result<StatusReport, AdminError> {
        self.call(Method::GET, "/v1/status").await
    }

    /// `GET /v1/dns`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn dns(&self) -> Result<DnsZone, AdminError> {
        self.call(Method::GET, "/v1/dns").await
    }

    /// `GET /v1/monitor`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn monitor(&self) -> Result<MonitorSnapshot, AdminError> {
        self.call(Method::GET, "/v1/monitor").await
    }

    /// `GET /v1/audit?limit=N`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn audit(&self, limit: usize) -> Result<AuditTail, AdminError> {
        self.call(Method::GET, &format!("/v1/audit?limit={limit}"))
            .await
    }

    /// `POST /v1/certs/{name}/rotate`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn rotate(&self, name: &str) -> Result<CertificateInfo, AdminError> {
        self.call(Method::POST, &format!("/v1/certs/{name}/rotate"))
            .await
    }

    /// `POST /v1/certs/{name}/revoke`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn revoke(&self, name: &str) -> Result<Revocation, AdminError> {
        self.call(Method::POST, &format!("/v1/certs/{name}/revoke"))
            .await
    }

    /// `POST /v1/ca/intermediate`: installs an intermediate signed by the offline root.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 409 when it does not fit the pending request).
    pub async fn install_intermediate(
        &self,
        pem: &str,
    ) -> Result<IntermediateInstalled, AdminError> {
        let body = IntermediateInstall {
            pem: pem.to_owned(),
        };
        self.call_with(Method::POST, "/v1/ca/intermediate", Some(&body), None)
            .await
    }

    /// `GET /v1/tokens`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn tokens(&self) -> Result<crate::api::TokenList, AdminError> {
        self.call(Method::GET, "/v1/tokens").await
    }

    /// `POST /v1/tokens`: adds a token, audited as this process's user; the answer holds
    /// its secret.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 409 when the name is taken, 400 for a bad name).
    pub async fn add_token(
        &self,
        name: &str,
        scope: crate::tokens::Scope,
    ) -> Result<crate::api::TokenCreated, AdminError> {
        let body = crate::api::TokenAdd {
            name: name.to_owned(),
            scope,
        };
        self.call_with(Method::POST, "/v1/tokens", Some(&body), None)
            .await
    }

    /// `DELETE /v1/tokens/{name}`: revokes a token; the tokens left.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 404 for no such token).
    pub async fn revoke_token(&self, name: &str) -> Result<crate::api::TokenList, AdminError> {
        self.call(Method::DELETE, &format!("/v1/tokens/{name}"))
            .await
    }

    /// `POST /v1/audit/checkpoint`: a signed checkpoint of the chain's head now.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 404 when the chain is empty).
    pub async fn checkpoint(&self) -> Result<conduit_audit::Checkpoint, AdminError> {
        self.call(Method::POST, "/v1/audit/checkpoint").await
    }

    /// `GET /v1/services`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn services(&self) -> Result<ServiceList, AdminError> {
        self.call(Method::GET, "/v1/services").await
    }

    /// `GET /v1/services/{name}`.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with status 404 when there is no such service).
    pub async fn service(&self, name: &str) -> Result<ServiceView, AdminError> {
        self.call(Method::GET, &format!("/v1/services/{name}"))
            .await
    }

    /// `POST /v1/services`: registers `spec`, audited as this process's user.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with the gateway's reason: 400, 409, 422).
    pub async fn register(&self, spec: &ServiceSpec) -> Result<ServiceView, AdminError> {
        self.call_with(Method::POST, "/v1/services", Some(spec), None)
            .await
    }

    /// `PUT /v1/services/{name}`: replaces the service in place, only if it is still at
    /// `revision` when one is given.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 412 when the revision moved on).
    pub async fn update(
        &self,
        name: &str,
        spec: &ServiceSpec,
        revision: Option<u64>,
    ) -> Result<ServiceView, AdminError> {
        let if_match = revision.map(|r| format!("\"{r}\""));
        self.call_with(
            Method::PUT,
            &format!("/v1/services/{name}"),
            Some(spec),
            if_match.as_deref(),
        )
        .await
    }

    /// `DELETE /v1/services/{name}`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn deregister(&self, name: &str) -> Result<ServiceView, AdminError> {
        self.call(Method::DELETE, &format!("/v1/services/{name}"))
            .await
    }

    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, AdminError> {
        self.call_with::<T, ()>(method, path, None, None).await
    }

    pub(super) async fn call_with<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        if_match: Option<&str>,
    ) -> Result<T, AdminError> {
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| AdminError::Protocol {
                socket: self.socket.clone(),
                detail: format!("{path}: cannot encode the request: {e}"),
            })?),
            None => None,
        };
        let (status, body) = self.send(method, path, body, if_match).await?;
        let protocol = |detail: String| AdminError::Protocol {
            socket: self.socket.clone(),
            detail,
        };
        if (200..300).contains(&status) {
            serde_json::from_slice(&body).map_err(|e| protocol(format!("{path}: {e}")))
        } else {
            let error: ApiError = serde_json::from_slice(&body)
                .map_err(|e| protocol(format!("{path}: status {status}: {e}")))?;
            Err(AdminError::Refused { status, error })
        }
    }

    /// `GET /v1/events`: calls `on_event` with each event as it comes (after those
    /// missed since `last_event_id`, or a `resync`), until `on_event` returns `false` or the
    /// gateway closes the stream. Only `types` when not empty.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn events(
        &self,
        types: &[String],
        last_event_id: Option<&str>,
        mut on_event: impl FnMut(crate::events::Event) -> bool,
    ) -> Result<(), AdminError> {
        use http_body_util::{BodyExt as _, Full};
        let protocol = |detail: String| AdminError::Protocol {
            socket: self.socket.clone(),
            detail,
        };
        let (mut sender, conn) = self.connect().await?;
        let path = if types.is_empty() {
            "/v1/events".to_owned()
        } else {
            format!("/v1/events?types={}", types.join(","))
        };
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(&path)
            .header(header::HOST, "conduit");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| protocol(e.to_string()))?;
        let exchange = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| protocol(e.to_string()))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            if status != 200 {
                let bytes = body
                    .collect()
                    .await
                    .map_err(|e| protocol(e.to_string()))?
                    .to_bytes();
                let error: ApiError = serde_json::from_slice(&bytes)
                    .map_err(|e| protocol(format!("{path}: status {status}: {e}")))?;
                return Err(AdminError::Refused { status, error });
            }
            let mut pending = String::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| protocol(e.to_string()))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                pending.push_str(&String::from_utf8_lossy(&data));
                while let Some(end) = pending.find("\n\n") {
                    let block: String = pending.drain(..end + 2).collect();
                    let Some(json) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue; // a comment (keep-alive)
                    };
                    let event: crate::events::Event =
                        serde_json::from_str(json).map_err(|e| protocol(format!("{path}: {e}")))?;
                    if !on_event(event) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        };
        tokio::pin!(conn);
        tokio::pin!(exchange);
        tokio::select! {
            r = &mut exchange => r,
            c = &mut conn => {
                c.map_err(|e| protocol(e.to_string()))?;
                exchange.await
            }
        }
    }

    /// One request; the status and the body as they came (for `/metrics`, and tests).
    ///
    /// # Errors
    /// [`AdminError::NotRunning`] or [`AdminError::Protocol`].
    pub async fn raw(&self, method: Method, path: &str) -> Result<(u16, Bytes), AdminError> {
        self.send(method, path, None, None).await
    }

    /// A connection to the socket; nothing answering is [`AdminError::NotRunning`].
    async fn open(&self) -> Result<tokio::net::UnixStream, AdminError> {
        tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| AdminError::NotRunning {
                socket: self.socket.clone(),
                source,
            })
    }

    /// A connection to the socket, after the HTTP/1.1 handshake; the caller drives it.
    async fn connect(
        &self,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
            hyper::client::conn::http1::Connection<
                TokioIo<tokio::net::UnixStream>,
                http_body_util::Full<Bytes>,
            >,
        ),
        AdminError,
    > {
        let stream = self.open().await?;
        hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| AdminError::Protocol {
                socket: self.socket.clone(),
                detail: e.to_string(),
            })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> Result<(u16, Bytes), AdminError> {
        use http_body_util::Full;
        let protocol = |detail: String| AdminError::Protocol {
            socket: self.socket.clone(),
            detail,
        };
        let stream = self.open().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "conduit");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(m) = if_match {
            req = req.header(header::IF_MATCH, m);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| protocol(e.to_string()))?;
        let (status, body) = super::exchange(TokioIo::new(stream), req)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        Ok((status.as_u16(), body))
    }
}
