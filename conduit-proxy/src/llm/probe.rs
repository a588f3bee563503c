//! Probing a model server the way its engine tells readiness: vLLM by `/health` (503 while
//! a model loads), `/v1/models` and its `vllm:` gauges on `/metrics`; an OpenAI-compatible
//! server by `/v1/models` and `/health` where it has one; Ollama by `/api/tags` (the models
//! it has) and `/api/ps` (those in memory). A model list alone never makes an upstream
//! ready when its `/health` says otherwise.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conduit_registry::Engine;
use http::header::{self, HeaderValue};
use http::{StatusCode, Uri};

use super::parse::{self, VllmLoad};
use super::state::{EngineLoad, Model, Signals};
use crate::routes::{Backend, Route};
use crate::shared::Shared;

/// Largest probe answer read (vLLM's `/metrics` runs to a few hundred KiB).
const MAX_BODY: usize = 4 << 20;

/// What one GET got.
enum Got {
    Answer(StatusCode, Bytes),
    /// No answer: why.
    Failed(String),
}

/// One probe's requests: the route's host, the configured `Authorization`, the timeout.
struct Prober<'a> {
    shared: &'a Shared,
    backend: &'a Arc<Backend>,
    host: Option<HeaderValue>,
    auth: Option<HeaderValue>,
    timeout: Duration,
}

impl Prober<'_> {
    async fn get(&self, path: &'static str) -> Got {
        let mut req = crate::health::check_request(Uri::from_static(path), self.host.clone());
        if let Some(v) = &self.auth {
            req.headers_mut().insert(header::AUTHORIZATION, v.clone());
        }
        let exchange = async {
            let (resp, _lease) = match crate::pool::send(self.shared, self.backend, req).await {
                Ok(sent) => sent,
                Err(e) => return Got::Failed(format!("{path}: {}", e.error.chain())),
            };
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY);
            match http_body_util::BodyExt::collect(body).await {
                Ok(b) => Got::Answer(status, b.to_bytes()),
                Err(e) => Got::Failed(format!("{path}: reading the answer failed: {e}")),
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Got::Failed(format!("{path}: no answer within {:?}", self.timeout)))
    }
}

/// Probes `backend` (a model server), stores what it found, and returns whether it is
/// ready and why.
pub(crate) async fn probe(
    shared: &Shared,
    route: &Route,
    backend: &Arc<Backend>,
    host: Option<HeaderValue>,
) -> (bool, String) {
    let Some(state) = backend.engine_state() else {
        return (false, "not a model server".to_owned());
    };
    let p = Prober {
        shared,
        backend,
        host,
        auth: shared
            .config
            .llm
            .authorization(route.service.as_str())
            .cloned(),
        timeout: route.health.timeout,
    };
    let signals = match backend.engine {
        Engine::Vllm => vllm(&p, true).await,
        Engine::Ollama => ollama(&p).await,
        _ => vllm(&p, false).await,
    };
    let outcome = (signals.ready, signals.reason.clone());
    state.signals.store(Arc::new(signals));
    outcome
}

/// Not ready, with the reason.
fn down(reason: String) -> Signals {
    Signals {
        reason,
        ..Signals::default()
    }
}

/// vLLM (`/health` required, the gauges read) or any OpenAI-compatible server (`/health`
/// where it exists, no gauges).
async fn vllm(p: &Prober<'_>, is_vllm: bool) -> Signals {
    let (health, models, metrics) = tokio::join!(p.get("/health"), p.get("/v1/models"), async {
        match is_vllm {
            true => Some(p.get("/metrics").await),
            false => None,
        }
    });
    let ours_then = p.backend.outstanding();
    match health {
        Got::Answer(s, _) if s.is_success() => {}
        // Not every OpenAI-compatible server has /health.
        Got::Answer(StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED, _) if !is_vllm => {}
        Got::Answer(StatusCode::SERVICE_UNAVAILABLE, _) => {
            return down("loading: /health answered 503 Service Unavailable".to_owned());
        }
        Got::Answer(s, _) => return down(format!("/health answered {s}")),
        Got::Failed(why) => return down(why),
    }
    let ids = match models {
        Got::Answer(s, body) if s.is_success() => match parse::openai_models(&body) {
            Ok(ids) => ids,
            Err(e) => return down(e.to_string()),
        },
        Got::Answer(s, _) => return down(format!("/v1/models answered {s}")),
        Got::Failed(why) => return down(why),
    };
    let mut models: Vec<Model> = ids
        .into_iter()
        .map(|id| Model {
            id: id.into(),
            loaded: true,
            size_vram: None,
            expires_at: None,
        })
        .collect();
    sort(&mut models);
    let (load, note) = match metrics {
        Some(Got::Answer(s, body)) if s.is_success() => {
            match parse::vllm_metrics(&String::from_utf8_lossy(&body)) {
                Some(VllmLoad {
                    waiting,
                    running,
                    kv_use,
                }) => (
                    Some(EngineLoad {
                        waiting,
                        running,
                        kv_use,
                        ours_then,
                    }),
                    format!(", {waiting} waiting, {running} running, KV cache {kv_use:.2}"),
                ),
                None => (None, ", /metrics has no vllm: gauges".to_owned()),
            }
        }
        Some(Got::Answer(s, _)) => (None, format!(", /metrics answered {s}")),
        Some(Got::Failed(why)) => (None, format!(", {why}")),
        None => (None, String::new()),
    };
    let ready = !models.is_empty();
    let reason = match ready {
        true => format!("{} model(s) ready{note}", models.len()),
        false => "/v1/models lists no model".to_owned(),
    };
    Signals {
        ready,
        models: models.into(),
        load,
        reason,
    }
}

/// Ollama: ready when it answers `/api/tags` with a model; a model in `/api/ps` is loaded.
async fn ollama(p: &Prober<'_>) -> Signals {
    let (tags, ps) = tokio::join!(p.get("/api/tags"), p.get("/api/ps"));
    let pulled = match tags {
        Got::Answer(s, body) if s.is_success() => match parse::ollama_models(&body, "/api/tags") {
            Ok(m) => m,
            Err(e) => return down(e.to_string()),
        },
        Got::Answer(s, _) => return down(format!("/api/tags answered {s}")),
        Got::Failed(why) => return down(why),
    };
    let loaded = match ps {
        Got::Answer(s, body) if s.is_success() => {
            parse::ollama_models(&body, "/api/ps").unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let mut models: Vec<Model> = pulled
        .into_iter()
        .map(|m| {
            let running = loaded.iter().find(|l| l.name == m.name);
            Model {
                id: m.name.into(),
                loaded: running.is_some(),
                size_vram: running.and_then(|l| l.size_vram),
                expires_at: running.and_then(|l| l.expires_at.clone()),
            }
        })
        .collect();
    sort(&mut models);
    let in_memory = models.iter().filter(|m| m.loaded).count();
    let ready = !models.is_empty();
    let reason = match ready {
        true => format!("{} model(s), {in_memory} loaded", models.len()),
        false => "/api/tags lists no model".to_owned(),
    };
    Signals {
        ready,
        models: models.into(),
        load: None,
        reason,
    }
}

fn sort(models: &mut Vec<Model>) {
    models.sort_by(|a, b| a.id.cmp(&b.id));
    models.dedup_by(|a, b| a.id == b.id);
}
