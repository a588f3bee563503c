//! [`UpstreamError`]: why a request got no usable answer from an upstream, typed so that the
//! retry and passive-health logic match on it (never on strings): whose fault it was
//! ([`FailureSide`]), the status the client gets, and whether another upstream may take the
//! request.

use std::time::Duration;

use http::StatusCode;

use crate::request_body::{BodyTooLarge, BoxError, ClientBodyError, IdleTimeout};

/// Whose fault a failed request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureSide {
    /// The client's (its body was cut short, too large or idle): never counted against the
    /// upstream's health; retrying it elsewhere would fail the same way.
    Client,
    /// The upstream's (it refused, reset, timed out or answered nothing): counted by passive
    /// health.
    Upstream,
    /// The gateway's own limits (every connection it allows to the upstream was busy): not
    /// the upstream's failure.
    Gateway,
}

/// Why a request got no usable answer from an upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No connection could be opened (refused, unreachable, TLS, the SSRF guard).
    #[error("cannot connect: {source}")]
    Connect {
        /// The connector's error.
        #[source]
        source: BoxError,
    },
    /// No connection within the connect timeout.
    #[error("cannot connect: no answer within {after:?}")]
    ConnectTimeout {
        /// The timeout.
        after: Duration,
    },
    /// A new connection closed before the request could be sent.
    #[error("the new connection closed before the request was sent: {source}")]
    ClosedBeforeSend {
        /// The HTTP library's error.
        #[source]
        source: BoxError,
    },
    /// The exchange failed after the request (or part of it) was sent.
    #[error("the upstream failed to answer: {source}")]
    Failed {
        /// The HTTP library's error.
        #[source]
        source: BoxError,
    },
    /// No response head within the first-byte timeout.
    #[error("no response within {after:?}")]
    NoResponse {
        /// The timeout.
        after: Duration,
    },
    /// Every connection the gateway allows to this upstream stayed busy for as long as a
    /// response may take to start.
    #[error("every connection to the upstream stayed busy")]
    Busy,
    /// The client's request body failed (aborted, malformed chunking, reset).
    #[error("the client's request body failed: {source}")]
    ClientBody {
        /// What the body reported.
        #[source]
        source: BoxError,
    },
    /// The client's request body was larger than the route allows.
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// The client's request body sent nothing for the idle timeout.
    #[error("request body: no data for {after:?} (idle timeout)")]
    BodyIdle {
        /// The timeout.
        after: Duration,
    },
}

impl UpstreamError {
    /// A failure of an exchange that had started (the request left, in part or whole):
    /// the body's own errors are the client's, anything else the upstream's.
    pub(crate) fn after_send(e: hyper::Error) -> Self {
        Self::from_body(Box::new(e))
    }

    /// A request body's failure (or an exchange's that may hold one): the body's own
    /// errors are the client's, anything else the upstream's.
    pub(crate) fn from_body(e: BoxError) -> Self {
        if let Some(big) = find_cause::<BodyTooLarge>(e.as_ref()) {
            return Self::BodyTooLarge { limit: big.0 };
        }
        if let Some(idle) = find_cause::<IdleTimeout>(e.as_ref()) {
            return Self::BodyIdle { after: idle.0 };
        }
        if find_cause::<ClientBodyError>(e.as_ref()).is_some() {
            return Self::ClientBody { source: e };
        }
        Self::Failed { source: e }
    }

    /// Whose fault it was.
    pub fn side(&self) -> FailureSide {
        match self {
            Self::ClientBody { .. } | Self::BodyTooLarge { .. } | Self::BodyIdle { .. } => {
                FailureSide::Client
            }
            Self::Busy => FailureSide::Gateway,
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::ClosedBeforeSend { .. }
            | Self::Failed { .. }
            | Self::NoResponse { .. } => FailureSide::Upstream,
        }
    }

    /// Whether the request never left, so another upstream may take it unchanged (given
    /// the retry policy allows its method).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::ConnectTimeout { .. }
                | Self::ClosedBeforeSend { .. }
                | Self::Busy
        )
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::ClosedBeforeSend { .. }
            | Self::Failed { .. } => StatusCode::BAD_GATEWAY,
            Self::NoResponse { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::ClientBody { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyIdle { .. } => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// What the client is told (the upstream's address and the library's error go to the
    /// log, not to the client).
    pub(crate) fn client_message(&self, domain: &str) -> String {
        match self {
            Self::Connect { .. } | Self::ConnectTimeout { .. } | Self::ClosedBeforeSend { .. } => {
                format!("{domain}: the upstream could not be reached")
            }
            Self::Failed { .. } => format!("{domain}: the upstream failed to answer"),
            Self::NoResponse { after } => {
                format!("{domain}: the upstream sent no response within {after:?}")
            }
            Self::Busy => format!("{domain}: the upstream is busy"),
            Self::ClientBody { .. } => {
                format!("{domain}: the request body was cut short or malformed")
            }
            Self::BodyTooLarge { .. } | Self::BodyIdle { .. } => self.to_string(),
        }
    }

    /// The error and its causes on one line, for logs and health events.
    pub(crate) fn chain(&self) -> String {
        error_chain(self)
    }
}

/// Walks an error's sources.
fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whose_fault_status_and_retry() {
        let connect = UpstreamError::Connect {
            source: "refused".into(),
        };
        assert_eq!(connect.side(), FailureSide::Upstream);
        assert!(connect.is_retryable());
        assert_eq!(connect.status(), StatusCode::BAD_GATEWAY);
        let failed = UpstreamError::Failed {
            source: "reset".into(),
        };
        assert!(!failed.is_retryable(), "the request left: never sent twice");
        let busy = UpstreamError::Busy;
        assert_eq!(busy.side(), FailureSide::Gateway);
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        let client = UpstreamError::ClientBody {
            source: "cut short".into(),
        };
        assert_eq!(client.side(), FailureSide::Client);
        assert_eq!(client.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            UpstreamError::NoResponse {
                after: Duration::from_secs(1)
            }
            .status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert!(
            connect.chain().contains("refused"),
            "the cause is on the line"
        );
    }
}
