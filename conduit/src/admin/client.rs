//! The admin API's client, over the unix socket: what the `conduit` command uses.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use crate::api::{
    ApiError, AuditTail, CertificateInfo, DnsZone, Health, MonitorSnapshot, Revocation,
    StatusReport,
};

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
    #[error("{}", error.error)]
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
            Self::Refused { error, .. } => error.retryable,
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

    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, AdminError> {
        let (status, body) = self.raw(method, path).await?;
        let protocol = |detail: String| AdminError::Protocol {
            socket: self.socket.clone(),
            detail,
        };
        if status == 200 {
            serde_json::from_slice(&body).map_err(|e| protocol(format!("{path}: {e}")))
        } else {
            let error: ApiError = serde_json::from_slice(&body)
                .map_err(|e| protocol(format!("{path}: status {status}: {e}")))?;
            Err(AdminError::Refused { status, error })
        }
    }

    /// One request; the status and the body as they came (for `/metrics`, and tests).
    ///
    /// # Errors
    /// [`AdminError::NotRunning`] or [`AdminError::Protocol`].
    pub async fn raw(&self, method: Method, path: &str) -> Result<(u16, Bytes), AdminError> {
        use http_body_util::{BodyExt as _, Empty};
        let protocol = |detail: String| AdminError::Protocol {
            socket: self.socket.clone(),
            detail,
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| AdminError::NotRunning {
                socket: self.socket.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "conduit")
            .body(Empty::<Bytes>::new())
            .map_err(|e| protocol(e.to_string()))?;
        let exchange = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| protocol(e.to_string()))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| protocol(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        // The connection is driven here, beside the exchange: no task outlives the call.
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
}
