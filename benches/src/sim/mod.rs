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
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::mpsc;

mod api;
mod cache;
mod engine;
mod handlers;
mod output;

pub use cache::{BLOCK_TOKENS, BYTES_PER_TOKEN};
use engine::Engine;
pub use engine::SimStats;

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
                    async move { Ok::<_, Infallible>(handlers::handle(&engine, req).await) }
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
