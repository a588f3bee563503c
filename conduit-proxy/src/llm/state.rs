//! What the gateway knows about one model server ([`Signals`], replaced whole after each
//! probe) and the load estimate every decision starts from ([`Load`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use conduit_registry::Engine;

use super::pick::RouteExplanation;
use crate::routes::Backend;

/// One model an upstream has.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Model {
    pub(crate) id: Arc<str>,
    /// In memory and answering now; `false`: the server has it and loads it on the first
    /// request (an Ollama model pulled but not loaded).
    pub(crate) loaded: bool,
    /// Bytes of it in GPU memory, where the server says (Ollama).
    pub(crate) size_vram: Option<u64>,
    /// When the server unloads it, where it says (Ollama), RFC 3339.
    pub(crate) expires_at: Option<String>,
}

/// The engine's own figures at the last probe.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct EngineLoad {
    pub(crate) waiting: f64,
    pub(crate) running: f64,
    /// KV-cache use, 0 to 1.
    pub(crate) kv_use: f64,
    /// This gateway's requests in flight to it when the figures were read.
    pub(crate) ours_then: usize,
}

/// What the last probe of one upstream found.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Signals {
    /// The server answers and has at least one model ready.
    pub(crate) ready: bool,
    /// Its models, sorted by id.
    pub(crate) models: Box<[Model]>,
    /// Its load figures, for engines that publish them (vLLM).
    pub(crate) load: Option<EngineLoad>,
    /// What the probe saw, for the operator (`loading: /health answered 503`).
    pub(crate) reason: String,
}

impl Signals {
    /// Whether the upstream these are of takes requests: its probe says ready and no failure
    /// (active or on real traffic) took it out.
    pub(crate) fn serving(&self, backend: &Backend) -> bool {
        self.ready && backend.is_healthy()
    }

    /// The model `id`, if this upstream has it. A name without a tag also finds its
    /// `:latest` (Ollama lists `llama3:latest` and serves it as `llama3`).
    pub(crate) fn model(&self, id: &str) -> Option<&Model> {
        let find = |id: &str| {
            self.models
                .binary_search_by(|m| (*m.id).cmp(id))
                .ok()
                .map(|i| &self.models[i])
        };
        find(id).or_else(|| {
            (!id.contains(':'))
                .then(|| find(&format!("{id}:latest")))
                .flatten()
        })
    }
}

/// A model server's state: swapped whole by its probe, read without a lock per request.
#[derive(Debug, Default)]
pub(crate) struct EngineState {
    pub(crate) signals: ArcSwap<Signals>,
    /// Requests routed to it by model.
    pub(crate) routed: AtomicU64,
}

/// A model service's decisions: counted, and one in `sample_every` kept for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct RouteModels {
    pub(crate) decisions: AtomicU64,
    /// Went to the prompt prefix's affinity target.
    pub(crate) affinity_hits: AtomicU64,
    pub(crate) unknown_model: AtomicU64,
    pub(crate) not_ready: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) last: ArcSwapOption<RouteExplanation>,
    /// From the request to the decision (the look-ahead and the scoring).
    pub(crate) decision_time: DecisionTimes,
}

/// Upper bounds of the decision-time histogram, seconds.
pub(crate) const DECISION_BUCKETS: [f64; 10] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.01, 0.1,
];

/// A histogram of decision times.
#[derive(Debug, Default)]
pub(crate) struct DecisionTimes {
    /// Per bucket of [`DECISION_BUCKETS`], then one for anything longer.
    pub(crate) counts: [AtomicU64; 11],
    pub(crate) sum_ns: AtomicU64,
}

impl DecisionTimes {
    pub(crate) fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = DECISION_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(DECISION_BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

impl RouteModels {
    /// Counts a decision for `backend`, keeping one in `every`.
    pub(crate) fn decided(&self, backend: &Backend, why: &RouteExplanation, every: u32) {
        let n = self.decisions.fetch_add(1, Ordering::Relaxed);
        if why.affinity.as_ref() == Some(&backend.label) {
            self.affinity_hits.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(e) = backend.engine_state() {
            e.routed.fetch_add(1, Ordering::Relaxed);
        }
        if n.is_multiple_of(u64::from(every)) {
            self.last.store(Some(Arc::new(why.clone())));
        }
    }
}

/// One model of an upstream, as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelStatus {
    /// Its id (`meta-llama/Llama-3.1-8B-Instruct`, `llama3:8b`).
    pub id: String,
    /// In memory now; `false`: the server loads it on the first request (Ollama).
    pub loaded: bool,
    /// Bytes of it in GPU memory, where the server says.
    pub size_vram: Option<u64>,
    /// When the server unloads it, where it says (RFC 3339).
    pub expires_at: Option<String>,
}

/// A model server's state: what its last probe found and what the gateway sent it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpstreamModels {
    /// What kind of server it is.
    pub engine: Engine,
    /// It answers and has a model ready.
    pub ready: bool,
    /// What the last probe saw (`loading: /health answered 503 …`, `2 model(s) ready`).
    pub reason: String,
    /// Its models.
    pub models: Vec<ModelStatus>,
    /// Requests waiting, as the engine last said (vLLM).
    pub waiting: Option<f64>,
    /// Requests running, as the engine last said (vLLM).
    pub running: Option<f64>,
    /// KV-cache use, 0 to 1, as the engine last said (vLLM).
    pub kv_cache_use: Option<f64>,
    /// The load a decision would see now (the engine's figures plus what was sent since).
    pub load: f64,
    /// Its score in the last sampled decision it took part in.
    pub last_score: Option<f64>,
    /// Requests routed to it by model.
    pub routed: u64,
}

impl UpstreamModels {
    pub(crate) fn of(
        backend: &Backend,
        state: &EngineState,
        last: Option<&RouteExplanation>,
    ) -> Self {
        let s = state.signals.load();
        Self {
            engine: backend.engine,
            ready: s.ready,
            reason: s.reason.clone(),
            models: s
                .models
                .iter()
                .map(|m| ModelStatus {
                    id: m.id.to_string(),
                    loaded: m.loaded,
                    size_vram: m.size_vram,
                    expires_at: m.expires_at.clone(),
                })
                .collect(),
            waiting: s.load.map(|l| l.waiting),
            running: s.load.map(|l| l.running),
            kv_cache_use: s.load.map(|l| l.kv_use),
            load: Load::estimate(&s, backend.outstanding()).total,
            last_score: last.and_then(|e| {
                e.scores
                    .iter()
                    .find(|u| u.upstream == backend.label)
                    .map(|u| u.score)
            }),
            routed: state.routed.load(Ordering::Relaxed),
        }
    }
}

/// An upstream's load as a decision sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Load {
    /// Requests waiting and running.
    pub(crate) total: f64,
    /// Requests waiting (not yet in a batch).
    pub(crate) waiting: f64,
    /// KV-cache use, 0 to 1 (0 where unknown).
    pub(crate) kv_use: f64,
}

impl Load {
    /// The engine's figures plus what this gateway sent since it read them; without
    /// figures, this gateway's requests in flight (all counted as waiting beyond the first).
    pub(crate) fn estimate(signals: &Signals, ours_now: usize) -> Self {
        match signals.load {
            Some(e) => {
                let since = ours_now.saturating_sub(e.ours_then) as f64;
                Self {
                    total: e.waiting + e.running + since,
                    waiting: e.waiting + since,
                    kv_use: e.kv_use,
                }
            }
            None => Self {
                total: ours_now as f64,
                waiting: ours_now.saturating_sub(1) as f64,
                kv_use: 0.0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_without_a_tag_finds_its_latest() {
        let model = |id: &str| Model {
            id: id.into(),
            loaded: true,
            size_vram: None,
            expires_at: None,
        };
        let s = Signals {
            models: vec![model("llama3:8b"), model("llama3:latest"), model("qwen")].into(),
            ..Signals::default()
        };
        assert_eq!(s.model("llama3").map(|m| &*m.id), Some("llama3:latest"));
        assert_eq!(s.model("llama3:8b").map(|m| &*m.id), Some("llama3:8b"));
        assert_eq!(s.model("qwen").map(|m| &*m.id), Some("qwen"));
        assert_eq!(s.model("qwen:latest"), None);
        assert_eq!(s.model("mistral"), None);
    }

    #[test]
    fn estimate_adds_what_was_sent_since_the_scrape() {
        let mut s = Signals::default();
        assert_eq!(Load::estimate(&s, 3).total, 3.0);
        assert_eq!(Load::estimate(&s, 3).waiting, 2.0);
        s.load = Some(EngineLoad {
            waiting: 2.0,
            running: 16.0,
            kv_use: 0.5,
            ours_then: 10,
        });
        let l = Load::estimate(&s, 13);
        assert_eq!((l.total, l.waiting, l.kv_use), (21.0, 5.0, 0.5));
        // Requests that ended since are already out of the engine's next figures.
        assert_eq!(Load::estimate(&s, 4).total, 18.0);
    }
}
