//! `[llm]`: routing to model servers (services registered with `--kind openai|vllm|ollama`).

use std::collections::BTreeMap;
use std::time::Duration;

use conduit_proxy::{ModelRouting, ModelStrategy};
use http::HeaderValue;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// `[llm]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LlmSettings {
    /// `score` (default: queue depth, KV-cache use and prefix affinity, see `[llm.weights]`)
    /// or `p2c` (power of two choices on the load alone).
    pub strategy: ModelStrategy,
    /// An upstream with this many requests waiting takes no more; when every one serving a
    /// model is there, the request gets 429 with `Retry-After` (default 32).
    pub queue_limit: u32,
    /// The `Retry-After` of that 429 (default 1 s).
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// The prompt prefix's upstream is passed over while its load is above this multiple of
    /// the mean (default 1.25).
    pub prefix_load_factor: f64,
    /// Bytes of a `prompt` hashed for affinity (default 2048).
    pub prefix_bytes: usize,
    /// Most request body bytes held while looking for `model` (default 65536).
    pub lookahead_bytes: usize,
    /// How often each model server is probed (default 2 s).
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// `Authorization` sent with every probe (`Bearer …`, vLLM's `--api-key`).
    pub probe_authorization: Option<Secret>,
    /// `Authorization` for one service's probes, by service name.
    pub service_authorization: BTreeMap<String, Secret>,
    /// `[llm.weights]`: the score's weights.
    pub weights: LlmWeights,
}

/// `[llm.weights]`: `score = queue × load + kv_cache × kv_use + cold × not_loaded −
/// prefix × affinity`, lowest wins.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LlmWeights {
    /// Per request waiting or running (default 1).
    pub queue: f64,
    /// For a full KV cache (default 4).
    pub kv_cache: f64,
    /// For a model that must be loaded first (default 16).
    pub cold: f64,
    /// For the upstream holding the prompt's prefix (default 8).
    pub prefix: f64,
}

impl Default for LlmWeights {
    fn default() -> Self {
        let w = conduit_proxy::ScoreWeights::default();
        Self {
            queue: w.queue,
            kv_cache: w.kv_cache,
            cold: w.cold,
            prefix: w.prefix,
        }
    }
}

impl Default for LlmSettings {
    fn default() -> Self {
        let d = ModelRouting::default();
        Self {
            strategy: d.strategy,
            queue_limit: d.queue_limit,
            retry_after: Duration::from_secs(u64::from(d.retry_after_secs)),
            prefix_load_factor: d.prefix_load_factor,
            prefix_bytes: d.prefix_bytes,
            lookahead_bytes: d.lookahead_bytes,
            probe_interval: d.probe_interval,
            probe_authorization: None,
            service_authorization: BTreeMap::new(),
            weights: LlmWeights::default(),
        }
    }
}

impl LlmSettings {
    /// The proxy's model routing.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a header value that cannot be sent.
    pub fn model_routing(&self, origin: &str) -> Result<ModelRouting, ConfigError> {
        let header = |key: &str, s: &Secret| {
            HeaderValue::from_str(s.expose())
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
                .map_err(|_| {
                    ConfigError::invalid(
                        origin,
                        key,
                        "is not a valid header value (printable ASCII, such as \"Bearer TOKEN\")",
                    )
                })
        };
        let mut r = ModelRouting::default();
        r.strategy = self.strategy;
        r.queue_limit = self.queue_limit;
        r.retry_after_secs = u32::try_from(self.retry_after.as_secs().max(1)).unwrap_or(u32::MAX);
        r.prefix_load_factor = self.prefix_load_factor;
        r.prefix_bytes = self.prefix_bytes;
        r.lookahead_bytes = self.lookahead_bytes;
        r.probe_interval = self.probe_interval;
        r.weights.queue = self.weights.queue;
        r.weights.kv_cache = self.weights.kv_cache;
        r.weights.cold = self.weights.cold;
        r.weights.prefix = self.weights.prefix;
        r.probe_authorization = self
            .probe_authorization
            .as_ref()
            .map(|s| header("llm.probe_authorization", s))
            .transpose()?;
        for (service, s) in &self.service_authorization {
            let key = format!("llm.service_authorization.{service}");
            r.service_authorization
                .insert(service.to_ascii_lowercase(), header(&key, s)?);
        }
        Ok(r)
    }
}
