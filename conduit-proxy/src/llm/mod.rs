//! Model servers behind the proxy (services of kind `openai`, `vllm`, `ollama`): ready per
//! model from the engine's own signals ([`probe`]), requests routed by the `model` their
//! body names ([`peek`], [`scan`]) to the upstream with the lowest score ([`pick`]),
//! `GET /v1/models` answered with the union ([`answer`]). Responses — token streams
//! included — pass through as for any route; only the request's first bytes are looked at.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

mod answer;
mod config;
mod metrics;
mod parse;
mod peek;
mod pick;
pub(crate) mod probe;
mod scan;
mod state;

pub use config::{ModelRouting, ModelStrategy, ScoreWeights};
pub(crate) use metrics::prometheus;
pub use pick::{RouteExplanation, UpstreamScore};
pub(crate) use scan::hash;
pub(crate) use state::{EngineState, RouteModels};
pub use state::{ModelStatus, UpstreamModels};

use crate::failure::UpstreamError;
use crate::request_body::RequestBody;
use crate::response_body::{ResponseBody, local};
use crate::routes::{Backend, Route};
use crate::shared::{ConnInfo, Shared};
use pick::{Ask, Choice};
use scan::Want;

/// The inference endpoints routed by model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `/v1/chat/completions`, `/v1/completions`: a prompt, worth affinity.
    Generate,
    /// `/v1/embeddings`.
    Embed,
    /// Ollama's `/api/chat`, `/api/generate`.
    OllamaGenerate,
    /// Ollama's `/api/embed`, `/api/embeddings`.
    OllamaEmbed,
}

fn endpoint(method: &Method, path: &str) -> Option<Endpoint> {
    if method != Method::POST {
        return None;
    }
    Some(match path {
        "/v1/chat/completions" | "/v1/completions" => Endpoint::Generate,
        "/v1/embeddings" => Endpoint::Embed,
        "/api/chat" | "/api/generate" => Endpoint::OllamaGenerate,
        "/api/embed" | "/api/embeddings" => Endpoint::OllamaEmbed,
        _ => return None,
    })
}

/// Equal bytes, compared in time that depends on the length only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request to a model service.
pub(crate) async fn serve(
    s: &Arc<Shared>,
    c: &ConnInfo,
    route: &Arc<Route>,
    req: Request<Incoming>,
) -> (Response<ResponseBody>, Option<Arc<Backend>>) {
    let cfg = &s.config.llm;
    let models = req.method() == Method::GET && req.uri().path() == "/v1/models";
    let kind = endpoint(req.method(), req.uri().path());
    if !models && kind.is_none() {
        return crate::forward::forward(s, c, route, req).await;
    }
    // Upstreams behind a key (vLLM's --api-key, given to the probes) refuse `/v1/…` without
    // it; what the gateway answers or routes by model asks for the same key, so a client
    // without it learns no model name from the gateway either.
    if req.uri().path().starts_with("/v1/")
        && let Some(key) = cfg.authorization(route.service.as_str())
        && !req
            .headers()
            .get(http::header::AUTHORIZATION)
            .is_some_and(|given| same_secret(given.as_bytes(), key.as_bytes()))
    {
        crate::request_body::drain(req.into_body());
        let r = answer::error(
            StatusCode::UNAUTHORIZED,
            "Missing or wrong API key: send the key of this service's model servers as Authorization: Bearer KEY",
            "invalid_request_error",
            "invalid_api_key",
            None,
        );
        return (r, None);
    }
    let Some(kind) = kind else {
        crate::request_body::drain(req.into_body());
        return (answer::models(route), None);
    };
    let start = tokio::time::Instant::now();
    let (parts, body) = req.into_parts();
    let body = match http_body::Body::is_end_stream(&body) {
        true => RequestBody::Empty,
        false => RequestBody::stream(body, route.body_limit, s.config.timeouts.idle),
    };
    let want = Want {
        affinity: matches!(kind, Endpoint::Generate | Endpoint::OllamaGenerate),
        prefix_bytes: cfg.prefix_bytes,
    };
    let peeked = match peek::peek(body, want, cfg.lookahead_bytes).await {
        Ok(p) => p,
        Err(e) => {
            let e = UpstreamError::from_body(e);
            s.counters.inc(|c| &c.client_errors);
            return (
                local(e.status(), e.client_message(route.domain.as_str())),
                None,
            );
        }
    };
    let found = peeked.found;
    let ask = Ask {
        model: found.model.as_deref(),
        affinity: found.affinity,
        ollama_only: matches!(kind, Endpoint::OllamaGenerate | Endpoint::OllamaEmbed),
    };
    let stats = route.models.as_deref();
    let refused = |r: Response<ResponseBody>, body: RequestBody| {
        body.discard();
        (r, None)
    };
    let choice = pick::pick(route, cfg, &ask, &[]);
    if let Some(st) = stats {
        st.decision_time.observe(start.elapsed());
    }
    match choice {
        Choice::To(backend, explanation) => {
            if let Some(st) = stats {
                st.decided(&backend, &explanation, cfg.sample_every);
            }
            tracing::debug!(service = %route.service, model = ?ask.model, upstream = %backend.label, held = peeked.held, "routed by model");
            let mut first = Some(backend);
            let (mut resp, up) = crate::forward::send(s, c, route, parts, peeked.body, |tried| {
                first
                    .take()
                    .or_else(|| match pick::pick(route, cfg, &ask, tried) {
                        Choice::To(b, _) => Some(b),
                        _ => None,
                    })
            })
            .await;
            // For the access log's record of this request.
            if s.config.access_log.is_some() {
                resp.extensions_mut().insert(Arc::new(explanation));
            }
            (resp, up)
        }
        Choice::UnknownModel => {
            if let Some(st) = stats {
                st.unknown_model.fetch_add(1, Ordering::Relaxed);
            }
            let msg = match ask.model {
                Some(m) => format!("The model `{m}` does not exist on {}", route.domain),
                None => format!("No upstream of {} serves models", route.domain),
            };
            let r = answer::error(
                StatusCode::NOT_FOUND,
                &msg,
                "invalid_request_error",
                "model_not_found",
                Some("model"),
            );
            refused(r, peeked.body)
        }
        Choice::NotReady { not_ready } => {
            if let Some(st) = stats {
                st.not_ready.fetch_add(1, Ordering::Relaxed);
            }
            s.counters.inc(|c| &c.no_healthy);
            let msg = format!(
                "No ready upstream of {} serves {}; {not_ready} upstream(s) are not ready yet (loading or down)",
                route.domain,
                ask.model
                    .map_or_else(|| "models".to_owned(), |m| format!("`{m}`")),
            );
            let r = answer::error(
                StatusCode::SERVICE_UNAVAILABLE,
                &msg,
                "server_error",
                "model_not_ready",
                None,
            );
            refused(
                answer::retry_after(r, s.config.health.retry_after_secs),
                peeked.body,
            )
        }
        Choice::Busy => {
            if let Some(st) = stats {
                st.busy.fetch_add(1, Ordering::Relaxed);
            }
            let msg = format!(
                "Every upstream of {} serving {} has {} or more requests waiting; retry later",
                route.domain,
                ask.model
                    .map_or_else(|| "models".to_owned(), |m| format!("`{m}`")),
                cfg.queue_limit
            );
            let r = answer::error(
                StatusCode::TOO_MANY_REQUESTS,
                &msg,
                "rate_limit_error",
                "overloaded",
                None,
            );
            refused(answer::retry_after(r, cfg.retry_after_secs), peeked.body)
        }
    }
}
