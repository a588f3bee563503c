//! **An LLM engine simulator, written for the tests and the routing benchmark** (no real
//! engine runs on these machines: no GPU, no weights). It speaks the vLLM and Ollama HTTP
//! APIs as the engines do — endpoints, JSON shapes, Prometheus metric names, SSE and NDJSON
//! token streams — with fixed, documented parameters ([`SimParams::new`]):
//!
//! | parameter | value |
//! | --- | --- |
//! | load time (`/health` answers 503, requests 503) | 2 s |
//! | prefill | 4,000 tokens/s, one prompt at a time, only tokens not in the prefix cache |
//! | decode | 40 tokens/s per sequence |
//! | batch | at most 16 sequences; a FIFO queue behind it |
//! | prefix cache | 65,536 tokens, blocks of 16 tokens, LRU eviction |
//! | tokenizer | 4 bytes of prompt text (chat: `role: content` lines) per token |
//!
//! vLLM: `GET /health`, `/v1/models`, `/metrics` (`vllm:num_requests_waiting`,
//! `vllm:num_requests_running`, `vllm:kv_cache_usage_perc`), `POST /v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`. Ollama: `GET /api/tags`, `/api/ps`, `/api/version`,
//! `POST /api/chat`, `/api/generate` and its OpenAI-compatible `/v1/…`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::sync::mpsc;

mod api;
mod cache;
mod engine;

pub use cache::{BLOCK_TOKENS, BYTES_PER_TOKEN};
pub use engine::SimStats;
use engine::{Engine, Running};

/// Which engine's API the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// vLLM's OpenAI-compatible server.
    Vllm,
    /// Ollama.
    Ollama,
}

/// A simulated engine's fixed parameters (see the module's table for the defaults).
#[derive(Debug, Clone)]
pub struct SimParams {
    /// The API spoken.
    pub flavor: Flavor,
    /// The models served.
    pub models: Vec<String>,
    /// From start until the models are loaded.
    pub load_time: Duration,
    /// Prefill speed, tokens per second.
    pub prefill_tokens_per_s: f64,
    /// Decode speed per sequence, tokens per second.
    pub decode_tokens_per_s: f64,
    /// Most sequences in the batch.
    pub max_batch: usize,
    /// Prefix (KV) cache capacity, tokens.
    pub prefix_cache_tokens: usize,
    /// vLLM's `--api-key`: `/v1/…` answers 401 without `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
}

impl SimParams {
    /// The documented parameters, serving `models` with `flavor`'s API.
    pub fn new(flavor: Flavor, models: &[&str]) -> Self {
        Self {
            flavor,
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            load_time: Duration::from_secs(2),
            prefill_tokens_per_s: 4000.0,
            decode_tokens_per_s: 40.0,
            max_batch: 16,
            prefix_cache_tokens: 65_536,
            api_key: None,
        }
    }
}

/// A running simulated engine.
#[derive(Debug)]
pub struct Sim {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it has done.
    pub stats: Arc<SimStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A digest of a request body, as [`SimStats::last_body`] keeps it.
pub fn body_digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Starts an engine on `addr` (port 0: any) on the current runtime; it stops when dropped.
///
/// # Errors
/// When the address cannot be bound.
pub async fn start(params: SimParams, addr: SocketAddr) -> std::io::Result<Sim> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(SimStats::default());
    let engine = Arc::new(Engine::new(params, Arc::clone(&stats)));
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let engine = Arc::clone(&engine);
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let engine = Arc::clone(&engine);
                    async move { Ok::<_, Infallible>(handle(&engine, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
            while conns.try_join_next().is_some() {}
        }
    });
    Ok(Sim { addr, stats, task })
}

/// A response body: one whole buffer, or chunks from a channel.
#[derive(Debug)]
pub enum SimBody {
    /// All at once.
    Full(Option<Bytes>),
    /// Streamed.
    Stream(mpsc::Receiver<Bytes>),
}

impl http_body::Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<SimBody> {
    let mut r = Response::new(SimBody::Full(Some(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response<SimBody> {
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

async fn handle(e: &Arc<Engine>, req: Request<Incoming>) -> Response<SimBody> {
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Chat,
    Text,
    OllamaChat,
    OllamaGenerate,
}

struct Output {
    model: String,
    style: Style,
    max_tokens: u32,
    prompt_tokens: u64,
}

fn token(i: u32) -> String {
    format!("w{i} ")
}

impl Output {
    fn usage(&self) -> api::Usage {
        api::Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: u64::from(self.max_tokens),
            total_tokens: self.prompt_tokens + u64::from(self.max_tokens),
        }
    }

    /// Token `i`'s bytes on the wire (`None`: the closing line).
    fn piece(&self, text: Option<&str>) -> Vec<u8> {
        let done = text.is_none();
        let content = text.unwrap_or("");
        match self.style {
            Style::OllamaChat | Style::OllamaGenerate => {
                let chat = self.style == Style::OllamaChat;
                let line = api::OllamaLine {
                    model: &self.model,
                    created_at: "2026-11-29T00:00:00Z",
                    message: chat.then_some(api::Delta {
                        role: "assistant",
                        content,
                    }),
                    response: (!chat).then_some(content),
                    done,
                    done_reason: done.then_some("length"),
                    prompt_eval_count: done.then_some(self.prompt_tokens),
                    eval_count: done.then_some(u64::from(self.max_tokens)),
                };
                let mut v = serde_json::to_vec(&line).unwrap_or_default();
                v.push(b'\n');
                v
            }
            Style::Chat | Style::Text => {
                let chat = self.style == Style::Chat;
                let chunk = api::Chunk {
                    id: "cmpl-sim",
                    object: if chat {
                        "chat.completion.chunk"
                    } else {
                        "text_completion"
                    },
                    created: 1_764_400_000,
                    model: &self.model,
                    choices: [api::Choice {
                        index: 0,
                        delta: chat.then_some(api::Delta {
                            role: "assistant",
                            content,
                        }),
                        message: None,
                        text: (!chat).then_some(content),
                        finish_reason: done.then_some("length"),
                    }],
                    usage: done.then(|| self.usage()),
                };
                let mut v = b"data: ".to_vec();
                v.extend(serde_json::to_vec(&chunk).unwrap_or_default());
                v.extend_from_slice(b"\n\n");
                if done {
                    v.extend_from_slice(b"data: [DONE]\n\n");
                }
                v
            }
        }
    }

    async fn stream(self, running: Running, tx: mpsc::Sender<Bytes>) {
        let first = tokio::time::Instant::now();
        for i in 1..=self.max_tokens {
            tokio::time::sleep_until(first + running.token_at(i - 1)).await;
            if tx
                .send(Bytes::from(self.piece(Some(&token(i)))))
                .await
                .is_err()
            {
                return; // the client went away: the sequence ends
            }
        }
        let _ = tx.send(Bytes::from(self.piece(None))).await;
    }

    fn whole(&self) -> Response<SimBody> {
        let text: String = (1..=self.max_tokens).map(token).collect();
        match self.style {
            Style::OllamaChat | Style::OllamaGenerate => {
                let mut r = reply(StatusCode::OK, "application/json", Vec::new());
                let mut body = self.piece(None);
                // The closing line carries the text when not streamed.
                let chat = self.style == Style::OllamaChat;
                let line = api::OllamaLine {
                    model: &self.model,
                    created_at: "2026-11-29T00:00:00Z",
                    message: chat.then_some(api::Delta {
                        role: "assistant",
                        content: &text,
                    }),
                    response: (!chat).then_some(&text),
                    done: true,
                    done_reason: Some("length"),
                    prompt_eval_count: Some(self.prompt_tokens),
                    eval_count: Some(u64::from(self.max_tokens)),
                };
                body = serde_json::to_vec(&line).unwrap_or(body);
                *r.body_mut() = SimBody::Full(Some(Bytes::from(body)));
                r
            }
            Style::Chat | Style::Text => {
                let chat = self.style == Style::Chat;
                json(
                    StatusCode::OK,
                    &api::Chunk {
                        id: "cmpl-sim",
                        object: if chat {
                            "chat.completion"
                        } else {
                            "text_completion"
                        },
                        created: 1_764_400_000,
                        model: &self.model,
                        choices: [api::Choice {
                            index: 0,
                            delta: None,
                            message: chat.then_some(api::Delta {
                                role: "assistant",
                                content: &text,
                            }),
                            text: (!chat).then_some(&text),
                            finish_reason: Some("length"),
                        }],
                        usage: Some(self.usage()),
                    },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn loads_then_answers() {
        let mut p = SimParams::new(Flavor::Vllm, &["A"]);
        p.load_time = Duration::from_millis(300);
        let sim = start(p, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert!(get(sim.addr, "/health").await.starts_with("HTTP/1.1 503"));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let h = get(sim.addr, "/health").await;
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        let m = get(sim.addr, "/metrics").await;
        assert!(m.contains("vllm:num_requests_waiting{"), "{m}");
    }
}
