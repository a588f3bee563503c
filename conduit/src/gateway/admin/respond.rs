//! Answers: JSON bodies, the one error shape with honest statuses, ETags and If-Match,
//! request bodies read within a limit.

use std::convert::Infallible;

use bytes::Bytes;
use conduit_registry::Revision;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use serde::Serialize;

use super::super::{Expect, GatewayError};
use crate::api::{ApiError, ServiceView};

/// Every answer's body: a whole JSON document, or an event stream.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The error code of an HTTP status (see [`ApiErrorBody::code`](crate::api::ApiErrorBody)).
pub(crate) fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PRECONDITION_FAILED | StatusCode::PRECONDITION_REQUIRED => "stale",
        StatusCode::UNPROCESSABLE_ENTITY => "refused",
        StatusCode::SERVICE_UNAVAILABLE => "not_ready",
        _ => "internal",
    }
}

pub(crate) fn error(
    status: StatusCode,
    message: impl Into<String>,
    retryable: bool,
) -> Response<Body> {
    json(status, &ApiError::new(code_of(status), message, retryable))
}

/// The status that tells whose fault a failed action was.
pub(crate) fn status_of(e: &GatewayError) -> StatusCode {
    use crate::audited::PolicyChangeError;
    use conduit_registry::RegistryError as R;
    match e {
        GatewayError::Spec(s) if s.is_refused_by_policy() => StatusCode::UNPROCESSABLE_ENTITY,
        GatewayError::Spec(_) => StatusCode::BAD_REQUEST,
        GatewayError::Registry(R::NotFound { .. }) => StatusCode::NOT_FOUND,
        GatewayError::Registry(R::Conflict { .. }) => StatusCode::PRECONDITION_FAILED,
        GatewayError::Registry(R::AlreadyExists { .. } | R::DomainTaken { .. }) => {
            StatusCode::CONFLICT
        }
        GatewayError::Registry(R::InvalidRecord { .. }) => StatusCode::BAD_REQUEST,
        GatewayError::Ca(conduit_ca::CaError::Unknown { .. }) => StatusCode::NOT_FOUND,
        GatewayError::Ca(_) => StatusCode::CONFLICT,
        GatewayError::Witness(w) => w.status(),
        GatewayError::BadRequest { .. }
        | GatewayError::Policy(PolicyChangeError::Registry(R::InvalidPolicy(_))) => {
            StatusCode::BAD_REQUEST
        }
        GatewayError::Policy(PolicyChangeError::NoPeer(_) | PolicyChangeError::NoGrant { .. }) => {
            StatusCode::NOT_FOUND
        }
        GatewayError::Policy(PolicyChangeError::PeerInUse { .. }) => StatusCode::CONFLICT,
        GatewayError::Unavailable { .. } => StatusCode::CONFLICT,
        GatewayError::Tokens(crate::tokens::TokenError::Unknown(_)) => StatusCode::NOT_FOUND,
        GatewayError::Tokens(crate::tokens::TokenError::Exists(_)) => StatusCode::CONFLICT,
        GatewayError::Tokens(crate::tokens::TokenError::BadName(_)) => StatusCode::BAD_REQUEST,
        e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(crate) fn failed(e: &GatewayError) -> Response<Body> {
    error(status_of(e), e.to_string(), e.is_retryable())
}

/// A stored service, with its revision as the `ETag`.
pub(crate) fn service(status: StatusCode, view: &ServiceView) -> Response<Body> {
    let mut r = json(status, view);
    if let Ok(v) = header::HeaderValue::from_str(&format!("\"{}\"", view.revision)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// The revision an `If-Match` asks for: `"7"` or `7`; `*` (or no header) is any.
pub(crate) fn expect(req: &Request<Incoming>) -> Result<Expect, Box<Response<Body>>> {
    let Some(v) = req.headers().get(header::IF_MATCH) else {
        return Ok(Expect::Any);
    };
    let text = v.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(Expect::Any);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u64>()
        .map(|r| Expect::Revision(Revision(r)))
        .map_err(|_| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("If-Match {text:?}: expected a revision as given in ETag"),
                false,
            ))
        })
}

/// The value of `key` in a query string (as sent, not decoded).
pub(crate) fn query_value<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// A query or form value: `+` is a space, `%XX` escapes decoded.
pub(crate) fn unescape(s: &str) -> String {
    conduit_registry::access::percent_decode(&s.replace('+', " "))
}

/// The largest request body the admin API reads.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// Reads a JSON body of type `T`.
pub(crate) async fn body<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Box<Response<Body>>> {
    use http_body_util::BodyExt as _;
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
                false,
            )));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("the request body is not what this endpoint takes: {e}"),
            false,
        ))
    })
}
