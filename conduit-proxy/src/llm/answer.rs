//! The gateway's own answers on a model service: `GET /v1/models` as the union over its
//! ready upstreams, and refusals in the OpenAI error shape (`{"error":{…}}`) that OpenAI
//! clients parse.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::response_body::ResponseBody;
use crate::routes::Route;

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelEntry<'a>>,
}

#[derive(Serialize)]
struct ModelEntry<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'static str>,
    code: &'static str,
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `GET /v1/models`: every model a ready upstream of `route` serves, once, sorted.
pub(crate) fn models(route: &Route) -> Response<ResponseBody> {
    let guards: Vec<_> = route
        .backends
        .iter()
        .filter_map(|b| Some((b, b.engine_state()?.signals.load())))
        .filter(|(b, s)| s.serving(b))
        .collect();
    let mut ids: BTreeMap<&str, &'static str> = BTreeMap::new();
    for (backend, signals) in &guards {
        for m in signals.models.iter() {
            ids.entry(&m.id).or_insert(backend.engine.as_str());
        }
    }
    let list = ModelList {
        object: "list",
        data: ids
            .into_iter()
            .map(|(id, owned_by)| ModelEntry {
                id,
                object: "model",
                created: 0,
                owned_by,
            })
            .collect(),
    };
    json(
        StatusCode::OK,
        serde_json::to_vec(&list).unwrap_or_default(),
    )
}

/// An error in OpenAI's shape.
pub(crate) fn error(
    status: StatusCode,
    message: &str,
    kind: &'static str,
    code: &'static str,
    param: Option<&'static str>,
) -> Response<ResponseBody> {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param,
            code,
        },
    };
    json(status, serde_json::to_vec(&body).unwrap_or_default())
}

/// Sets `Retry-After`.
pub(crate) fn retry_after(mut r: Response<ResponseBody>, secs: u32) -> Response<ResponseBody> {
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn errors_have_openai_shape() {
        let r = error(
            StatusCode::NOT_FOUND,
            "The model `x` does not exist",
            "invalid_request_error",
            "model_not_found",
            Some("model"),
        );
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "application/json");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            br#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#
        );
    }
}
