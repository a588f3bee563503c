//! The simulator's HTTP side: which endpoint answers what, the model lists and metrics,
//! reading a request body as it arrives, and handing inference to the engine.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::sync::mpsc;

use super::engine::Engine;
use super::output::{Output, Style};
use super::{BYTES_PER_TOKEN, Flavor, SimBody, api, body_digest};
use bytes::Bytes;

pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<SimBody> {
    let mut r = Response::new(SimBody::Full(Some(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

pub(crate) fn json(status: StatusCode, v: &impl serde::Serialize) -> Response<SimBody> {
    reply(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn error(status: StatusCode, message: &str) -> Response<SimBody> {
    json(
        status,
        &api::ErrorBody {
            error: api::ErrorDetail {
                message,
                kind: "invalid_request_error",
                code: status.as_u16(),
            },
        },
    )
}

pub(crate) async fn handle(e: &Arc<Engine>, req: Request<Incoming>) -> Response<SimBody> {
    let vllm = e.params.flavor == Flavor::Vllm;
    let path = req.uri().path().to_owned();
    if let Some(key) = &e.params.api_key
        && path.starts_with("/v1/")
        && req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            != Some(key.as_str())
    {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/health") if vllm => match e.loaded() {
            true => reply(StatusCode::OK, "text/plain", Vec::new()),
            false => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", Vec::new()),
        },
        (Method::GET, "/v1/models") => json(
            StatusCode::OK,
            &api::ModelList {
                object: "list",
                data: e
                    .params
                    .models
                    .iter()
                    .map(|m| api::ModelCard {
                        id: m,
                        object: "model",
                        created: 1_764_400_000,
                        owned_by: if vllm { "vllm" } else { "library" },
                        root: m,
                        max_model_len: 32_768,
                    })
                    .collect(),
            },
        ),
        (Method::GET, "/metrics") if vllm => metrics(e),
        (Method::GET, "/api/version") if !vllm => reply(
            StatusCode::OK,
            "application/json",
            br#"{"version":"0.12.0-sim"}"#.to_vec(),
        ),
        (Method::GET, "/api/tags") if !vllm => ollama_list(e, false),
        (Method::GET, "/api/ps") if !vllm => ollama_list(e, true),
        (Method::POST, "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings") => {
            infer(e, req, &path).await
        }
        (Method::POST, "/api/chat" | "/api/generate") if !vllm => infer(e, req, &path).await,
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn metrics(e: &Engine) -> Response<SimBody> {
    let model = e.params.models.first().map_or("", String::as_str);
    let text = format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{engine=\"0\",model_name=\"{model}\"}} {}.0\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{engine=\"0\",model_name=\"{model}\"}} {}.0\n\
         # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"{model}\"}} {}\n",
        e.running.load(Ordering::Relaxed),
        e.waiting.load(Ordering::Relaxed),
        e.kv_use(),
    );
    reply(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        text.into_bytes(),
    )
}

fn ollama_list(e: &Engine, loaded_only: bool) -> Response<SimBody> {
    let loaded = e.loaded();
    let models = e
        .params
        .models
        .iter()
        .filter(|_| loaded || !loaded_only)
        .map(|m| api::OllamaModel {
            name: m,
            model: m,
            size: 4_920_753_328,
            digest: "365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1",
            size_vram: loaded_only.then_some(4_920_753_328),
            expires_at: loaded_only.then_some("2099-01-01T00:00:00Z"),
        })
        .collect();
    json(StatusCode::OK, &api::OllamaList { models })
}

/// Reads the body as it comes (counting it, so a test sees it arrive), then parses it.
async fn read_body(e: &Engine, mut body: Incoming) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if let Some(d) = frame.data_ref() {
            e.stats
                .body_bytes
                .fetch_add(d.len() as u64, Ordering::Relaxed);
            all.extend_from_slice(d);
        }
    }
    *e.stats
        .last_body
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((all.len(), body_digest(&all)));
    Some(all)
}

async fn infer(e: &Arc<Engine>, req: Request<Incoming>, path: &str) -> Response<SimBody> {
    let Some(bytes) = read_body(e, req.into_body()).await else {
        return error(StatusCode::BAD_REQUEST, "the request body failed");
    };
    let ask: api::Inference = match serde_json::from_slice(&bytes) {
        Ok(a) => a,
        Err(err) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {err}")),
    };
    let Some(model) = ask
        .model
        .clone()
        .or_else(|| e.params.models.first().cloned())
        .filter(|m| e.params.models.contains(m))
    else {
        let msg = format!(
            "The model `{}` does not exist.",
            ask.model.as_deref().unwrap_or("")
        );
        return error(StatusCode::NOT_FOUND, &msg);
    };
    if !e.loaded() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is still loading",
        );
    }
    if ask.input.is_some() {
        e.stats.count_request(&model);
        let tokens = (bytes.len() / BYTES_PER_TOKEN) as u64;
        return json(
            StatusCode::OK,
            &api::Embeddings {
                object: "list",
                data: [api::Embedding {
                    object: "embedding",
                    index: 0,
                    embedding: [0.1, 0.2, 0.3, 0.4],
                }],
                model: &model,
                usage: api::Usage {
                    prompt_tokens: tokens,
                    completion_tokens: 0,
                    total_tokens: tokens,
                },
            },
        );
    }
    let prompt = ask.prompt_text();
    let Some(running) = e.admit(&model, &prompt).await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the engine stopped");
    };
    let ollama = path.starts_with("/api/");
    let stream = ask.stream.unwrap_or(ollama);
    let style = match path {
        "/api/chat" => Style::OllamaChat,
        "/api/generate" => Style::OllamaGenerate,
        "/v1/completions" => Style::Text,
        _ => Style::Chat,
    };
    let out = Output {
        model,
        style,
        max_tokens: ask.max_tokens(),
        prompt_tokens: prompt.len().div_ceil(BYTES_PER_TOKEN) as u64,
    };
    if !stream {
        // Every token, then the whole answer.
        tokio::time::sleep(running.token_at(out.max_tokens.saturating_sub(1))).await;
        drop(running);
        return out.whole();
    }
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(out.stream(running, tx));
    let mut r = Response::new(SimBody::Stream(rx));
    let ct = match ollama {
        true => "application/x-ndjson",
        false => "text/event-stream",
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ct));
    r
}
