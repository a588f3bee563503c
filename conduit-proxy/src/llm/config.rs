//! [`ModelRouting`]: what an operator tunes about routing to model servers.

use std::collections::HashMap;

use http::HeaderValue;

/// How a request for a model picks among the upstreams serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ModelStrategy {
    /// The lowest [score](ScoreWeights) (the default).
    #[default]
    #[serde(rename = "score")]
    Score,
    /// Power of two choices on the same load estimate, ignoring KV-cache use and prefix
    /// affinity (the baseline the benchmark compares with).
    #[serde(rename = "p2c")]
    PowerOfTwo,
}

/// The weights of an upstream's score; the lowest score gets the request:
///
/// `score = queue × load + kv_cache × kv_use + cold × not_loaded − prefix × affinity`
///
/// * `load`: requests waiting and running on it as its engine last reported them, plus those
///   this gateway sent since (for engines without metrics, this gateway's requests in flight);
/// * `kv_use`: the engine's KV-cache use, 0 to 1 (vLLM; 0 where unknown);
/// * `not_loaded`: 1 when the model must be loaded first (an Ollama that has the model but
///   not in memory), else 0;
/// * `affinity`: 1 for the upstream the request's prompt prefix hashes to, unless it carries
///   more than `prefix_load_factor` times the mean load (then the next one in the hash's
///   order), else 0.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ScoreWeights {
    /// Per request waiting or running (default 1).
    pub queue: f64,
    /// For a full KV cache (default 4).
    pub kv_cache: f64,
    /// For a model not loaded (default 16).
    pub cold: f64,
    /// For holding the prompt's prefix (default 8).
    pub prefix: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            queue: 1.0,
            kv_cache: 4.0,
            cold: 16.0,
            prefix: 8.0,
        }
    }
}

/// Routing to model servers (services of kind `openai`, `vllm` or `ollama`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelRouting {
    /// Score or power of two choices.
    pub strategy: ModelStrategy,
    /// The score's weights.
    pub weights: ScoreWeights,
    /// An upstream with this many requests waiting (beyond those running) takes no more;
    /// when every one serving the model is there, the request gets 429 (default 32).
    pub queue_limit: u32,
    /// `Retry-After` seconds of that 429 (default 1).
    pub retry_after_secs: u32,
    /// The affinity target is passed over while its load is above this multiple of the
    /// mean (plus one request) (default 1.25).
    pub prefix_load_factor: f64,
    /// Bytes of a `prompt` string hashed for affinity (default 2,048); for `messages`, the
    /// conversation up to and including its first user message is hashed.
    pub prefix_bytes: usize,
    /// Most request body bytes held while looking for `model` (default 64 KiB); past it
    /// the request is routed on what was found.
    pub lookahead_bytes: usize,
    /// One decision in this many is kept for `/metrics` (default 16).
    pub sample_every: u32,
    /// How often a model server is probed (default 2 s, or the service's health interval
    /// when shorter): its readiness, models and load change by the second.
    pub probe_interval: std::time::Duration,
    /// `Authorization` sent with every probe of a model server (vLLM `--api-key`).
    pub probe_authorization: Option<HeaderValue>,
    /// `Authorization` for one service's probes, by service name (overrides the above).
    pub service_authorization: HashMap<String, HeaderValue>,
}

impl Default for ModelRouting {
    fn default() -> Self {
        Self {
            strategy: ModelStrategy::Score,
            weights: ScoreWeights::default(),
            queue_limit: 32,
            retry_after_secs: 1,
            prefix_load_factor: 1.25,
            prefix_bytes: 2048,
            lookahead_bytes: 64 * 1024,
            sample_every: 16,
            probe_interval: std::time::Duration::from_secs(2),
            probe_authorization: None,
            service_authorization: HashMap::new(),
        }
    }
}

impl ModelRouting {
    /// The `Authorization` of `service`'s probes.
    pub(crate) fn authorization(&self, service: &str) -> Option<&HeaderValue> {
        self.service_authorization
            .get(service)
            .or(self.probe_authorization.as_ref())
    }

    /// Checks the values that can be wrong.
    pub(crate) fn validate(&self) -> Result<(), crate::ProxyError> {
        let bad = |key: &'static str, problem: &'static str| {
            Err(crate::ProxyError::InvalidSetting { key, problem })
        };
        let w = &self.weights;
        for (key, v) in [
            ("llm.weights.queue", w.queue),
            ("llm.weights.kv_cache", w.kv_cache),
            ("llm.weights.cold", w.cold),
            ("llm.weights.prefix", w.prefix),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(key, "must be a number of at least 0");
            }
        }
        if !self.prefix_load_factor.is_finite() || self.prefix_load_factor < 1.0 {
            return bad("llm.prefix_load_factor", "must be at least 1");
        }
        if self.queue_limit == 0 {
            return bad("llm.queue_limit", "must be positive");
        }
        if self.lookahead_bytes < 1024 || self.lookahead_bytes > 16 << 20 {
            return bad("llm.lookahead_bytes", "must be between 1 KiB and 16 MiB");
        }
        if self.prefix_bytes == 0 {
            return bad("llm.prefix_bytes", "must be positive");
        }
        if self.probe_interval.is_zero() {
            return bad("llm.probe_interval", "must be positive");
        }
        if self.sample_every == 0 {
            return bad("llm.sample_every", "must be positive");
        }
        Ok(())
    }
}
