//! What the admin API shows of a model server (an upstream of kind `openai`, `vllm` or
//! `ollama`): its readiness, models and load, and the routing's view of it.

use conduit_registry::Engine;
use serde::{Deserialize, Serialize};

/// A model server's state, from its last probe and the gateway's own counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineState {
    /// `openai`, `vllm` or `ollama`.
    pub kind: Engine,
    /// It answers and has a model ready.
    pub ready: bool,
    /// What the last probe saw (`loading: /health answered 503 …`, `1 model(s) ready, …`).
    pub reason: String,
    /// Its models.
    pub models: Vec<ModelState>,
    /// Requests waiting, as the engine last said (vLLM); `null` where it does not say.
    pub waiting: Option<f64>,
    /// Requests running, as the engine last said (vLLM).
    pub running: Option<f64>,
    /// KV-cache use, 0 to 1, as the engine last said (vLLM).
    pub kv_cache_use: Option<f64>,
    /// The load a routing decision sees now: the engine's figures plus the requests sent
    /// since it gave them (without figures: the gateway's requests in flight).
    pub load: f64,
    /// Its score in the last sampled routing decision it took part in (lowest wins).
    pub last_score: Option<f64>,
    /// Requests routed to it by model since it was added.
    pub routed: u64,
}

/// One model of a model server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelState {
    /// Its id (`meta-llama/Llama-3.1-8B-Instruct`, `llama3:8b`).
    pub id: String,
    /// In memory now; `false`: loaded on the first request (an Ollama model pulled only).
    pub loaded: bool,
    /// Bytes of it in GPU memory, where the server says (Ollama).
    pub size_vram: Option<u64>,
    /// When the server unloads it, where it says (Ollama; RFC 3339).
    pub expires_at: Option<String>,
}

impl From<&conduit_proxy::UpstreamModels> for EngineState {
    fn from(m: &conduit_proxy::UpstreamModels) -> Self {
        Self {
            kind: m.engine,
            ready: m.ready,
            reason: m.reason.clone(),
            models: m
                .models
                .iter()
                .map(|x| ModelState {
                    id: x.id.clone(),
                    loaded: x.loaded,
                    size_vram: x.size_vram,
                    expires_at: x.expires_at.clone(),
                })
                .collect(),
            waiting: m.waiting,
            running: m.running,
            kv_cache_use: m.kv_cache_use,
            load: m.load,
            last_score: m.last_score,
            routed: m.routed,
        }
    }
}
