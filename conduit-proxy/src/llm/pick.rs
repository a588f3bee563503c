//! Choosing the upstream for a request to a model: among the ready upstreams that serve the
//! model and are not beyond the queue limit, the lowest [score](super::ScoreWeights), with
//! the prompt prefix's affinity target found by rendezvous hashing with bounded load. Every
//! decision comes with its [`RouteExplanation`].

use std::sync::Arc;

use arc_swap::Guard;
use conduit_registry::Engine;

use super::config::{ModelRouting, ModelStrategy};
use super::state::{Load, Signals};
use crate::routes::{Backend, Route, splitmix, two_of};

/// Why a request went where it went: the access log's `llm` and, sampled, `/metrics`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct RouteExplanation {
    /// The model asked for, when the body named one.
    #[serde(serialize_with = "some_text")]
    pub model: Option<Arc<str>>,
    /// The upstream the prompt's prefix hashes to (when not overloaded), if any.
    #[serde(serialize_with = "some_text")]
    pub affinity: Option<Arc<str>>,
    /// Every upstream that could take the request, with its score (lowest wins).
    pub scores: Vec<UpstreamScore>,
}

/// One candidate of a decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct UpstreamScore {
    /// The upstream.
    #[serde(serialize_with = "text")]
    pub upstream: Arc<str>,
    /// Its score.
    pub score: f64,
    /// Its estimated requests waiting and running.
    pub load: f64,
}

/// The outcome of a decision.
pub(crate) enum Choice {
    /// Send it there.
    To(Arc<Backend>, RouteExplanation),
    /// No ready upstream serves the model, and every upstream is ready: nobody does.
    UnknownModel,
    /// No ready upstream serves it now; `not_ready` upstreams might once ready.
    NotReady { not_ready: usize },
    /// Every upstream serving it has `queue_limit` requests waiting.
    Busy,
}

fn text<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

fn some_text<S: serde::Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(v),
        None => s.serialize_none(),
    }
}

/// What a request asks for.
pub(crate) struct Ask<'a> {
    pub(crate) model: Option<&'a str>,
    pub(crate) affinity: Option<u64>,
    /// Only Ollama speaks `/api/chat` and `/api/generate`.
    pub(crate) ollama_only: bool,
}

struct Candidate<'a> {
    backend: &'a Arc<Backend>,
    load: Load,
    cold: bool,
}

/// Picks for `ask` among `route`'s upstreams, skipping those in `skip` (tried already).
pub(crate) fn pick(route: &Route, cfg: &ModelRouting, ask: &Ask<'_>, skip: &[usize]) -> Choice {
    let mut not_ready = 0;
    let mut all = 0;
    let guards: Vec<(&Arc<Backend>, Guard<Arc<Signals>>)> = route
        .backends
        .iter()
        .filter_map(|b| b.engine_state().map(|s| (b, s.signals.load())))
        .collect();
    let mut cands: Vec<Candidate<'_>> = Vec::with_capacity(guards.len());
    for (b, signals) in &guards {
        if ask.ollama_only && b.engine != Engine::Ollama {
            continue;
        }
        all += 1;
        if !signals.serving(b) {
            not_ready += 1;
            continue;
        }
        if skip.contains(&(Arc::as_ptr(b) as usize)) {
            continue;
        }
        let cold = match ask.model {
            Some(m) => match signals.model(m) {
                Some(model) => !model.loaded,
                None => continue,
            },
            None => false,
        };
        cands.push(Candidate {
            backend: b,
            load: Load::estimate(signals, b.outstanding()),
            cold,
        });
    }
    if cands.is_empty() {
        return match not_ready {
            0 if all > 0 => Choice::UnknownModel,
            n => Choice::NotReady { not_ready: n },
        };
    }
    let limit = f64::from(cfg.queue_limit);
    cands.retain(|c| c.load.waiting < limit);
    if cands.is_empty() {
        return Choice::Busy;
    }
    let tick = route.tick();
    let chosen = match cfg.strategy {
        ModelStrategy::PowerOfTwo => Some(power_of_two(&cands, tick)),
        ModelStrategy::Score => None,
    };
    let target = match (cfg.strategy, ask.affinity) {
        (ModelStrategy::Score, Some(key)) => affinity_target(&cands, key, cfg.prefix_load_factor),
        _ => None,
    };
    let w = &cfg.weights;
    let score = |i: usize, c: &Candidate<'_>| {
        w.queue * c.load.total + w.kv_cache * c.load.kv_use + w.cold * f64::from(u8::from(c.cold))
            - w.prefix * f64::from(u8::from(target == Some(i)))
    };
    let scores: Vec<f64> = cands.iter().enumerate().map(|(i, c)| score(i, c)).collect();
    let chosen = chosen.unwrap_or_else(|| {
        // The lowest score; ties go to the lower load, then round the candidates in turn.
        let n = cands.len();
        let start = (tick % n as u64) as usize;
        (0..n)
            .map(|k| (start + k) % n)
            .min_by(|&a, &b| {
                scores[a]
                    .total_cmp(&scores[b])
                    .then(cands[a].load.total.total_cmp(&cands[b].load.total))
            })
            .unwrap_or(0)
    });
    let explanation = RouteExplanation {
        model: ask.model.map(Arc::from),
        affinity: target.map(|i| Arc::clone(&cands[i].backend.label)),
        scores: cands
            .iter()
            .zip(&scores)
            .map(|(c, &score)| UpstreamScore {
                upstream: Arc::clone(&c.backend.label),
                score,
                load: c.load.total,
            })
            .collect(),
    };
    Choice::To(Arc::clone(cands[chosen].backend), explanation)
}

/// Two candidates at random, the one with the lower load.
fn power_of_two(cands: &[Candidate<'_>], tick: u64) -> usize {
    if cands.len() == 1 {
        return 0;
    }
    let (a, b) = two_of(cands.len(), splitmix(tick));
    if cands[b].load.total < cands[a].load.total {
        b
    } else {
        a
    }
}

/// The affinity target: the first candidate in the key's rendezvous order whose load, with
/// this request, stays within `factor` times the mean (plus one request).
fn affinity_target(cands: &[Candidate<'_>], key: u64, factor: f64) -> Option<usize> {
    let total: f64 = cands.iter().map(|c| c.load.total).sum();
    let bound = factor * (total + 1.0) / cands.len() as f64 + 1.0;
    let mut order: Vec<(u64, usize)> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| (splitmix(key ^ c.backend.label_hash), i))
        .collect();
    order.sort_unstable_by_key(|o| std::cmp::Reverse(o.0));
    order
        .into_iter()
        .map(|(_, i)| i)
        .find(|&i| cands[i].load.total + 1.0 <= bound)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use conduit_registry::{Engine, EngineOverride, ServiceRecord};

    use super::*;
    use crate::llm::state::{EngineLoad, Model, Signals};
    use crate::routes::{CheckSource, NewBackend, RouteTable};

    /// A route of `n` vLLM upstreams (the last one Ollama when `ollama`), all ready with
    /// model `A` (Ollama: `B`).
    fn route(n: u16, ollama: bool) -> Arc<Route> {
        let eps: Vec<_> = (0..n)
            .map(|i| {
                format!("10.0.0.{}:8000", i + 1)
                    .parse::<conduit_registry::Endpoint>()
                    .unwrap()
            })
            .collect();
        let mut overrides = Vec::new();
        if ollama {
            overrides.push(EngineOverride {
                endpoint: eps[usize::from(n) - 1].clone(),
                kind: Engine::Ollama,
            });
        }
        let rec = ServiceRecord::new("llm".parse().unwrap(), eps[0].clone())
            .with_endpoints(eps)
            .with_kind(Engine::Vllm, overrides);
        let table = RouteTable::build(
            &RouteTable::default(),
            &[Arc::new(rec)],
            NewBackend::healthy(true),
            |_| None,
            |_, _| true,
        );
        let route = Arc::clone(table.routes().next().unwrap());
        for b in route.backends.iter() {
            let model = if b.engine == Engine::Ollama { "B" } else { "A" };
            set(b, model, 0.0, 0.0);
            b.record(true, &route.health, CheckSource::Active);
        }
        route
    }

    fn set(b: &Backend, model: &str, waiting: f64, running: f64) {
        let state = b.engine_state().unwrap();
        state.signals.store(Arc::new(Signals {
            ready: true,
            models: vec![Model {
                id: model.into(),
                loaded: true,
                size_vram: None,
                expires_at: None,
            }]
            .into(),
            load: (b.engine == Engine::Vllm).then_some(EngineLoad {
                waiting,
                running,
                kv_use: 0.0,
                ours_then: 0,
            }),
            reason: String::new(),
        }));
    }

    fn ask(model: &str, affinity: Option<u64>) -> Ask<'_> {
        Ask {
            model: Some(model),
            affinity,
            ollama_only: false,
        }
    }

    fn to(c: Choice) -> (Arc<Backend>, RouteExplanation) {
        match c {
            Choice::To(b, e) => (b, e),
            _ => panic!("no upstream chosen"),
        }
    }

    #[test]
    fn the_model_decides_the_candidates() {
        let r = route(3, true);
        let cfg = ModelRouting::default();
        for i in 0..20 {
            let (b, e) = to(pick(&r, &cfg, &ask("A", Some(i)), &[]));
            assert_eq!(b.engine, Engine::Vllm);
            assert_eq!(e.scores.len(), 2);
            let (b, _) = to(pick(&r, &cfg, &ask("B", Some(i)), &[]));
            assert_eq!(b.engine, Engine::Ollama);
        }
        assert!(matches!(
            pick(&r, &cfg, &ask("C", None), &[]),
            Choice::UnknownModel
        ));
        let only = Ask {
            ollama_only: true,
            ..ask("A", None)
        };
        assert!(matches!(pick(&r, &cfg, &only, &[]), Choice::UnknownModel));
        // A replica not ready: its models are unknown, so the answer is "not ready".
        r.backends[2]
            .engine_state()
            .unwrap()
            .signals
            .store(Arc::default());
        assert!(matches!(
            pick(&r, &cfg, &ask("B", None), &[]),
            Choice::NotReady { not_ready: 1 }
        ));
    }

    #[test]
    fn a_conversation_stays_on_its_replica_until_it_is_overloaded() {
        let r = route(4, false);
        let cfg = ModelRouting::default();
        let (first, e) = to(pick(&r, &cfg, &ask("A", Some(42)), &[]));
        assert_eq!(e.affinity.as_deref(), Some(&*first.label));
        for _ in 0..10 {
            let (b, _) = to(pick(&r, &cfg, &ask("A", Some(42)), &[]));
            assert!(Arc::ptr_eq(&b, &first));
        }
        // Other conversations spread over the replicas.
        let mut seen = std::collections::HashSet::new();
        for key in 0..64 {
            seen.insert(
                to(pick(&r, &cfg, &ask("A", Some(key)), &[]))
                    .0
                    .label
                    .clone(),
            );
        }
        assert_eq!(seen.len(), 4);
        // Its replica far busier than the others: the load bound passes it over.
        set(&first, "A", 0.0, 12.0);
        let (b, e) = to(pick(&r, &cfg, &ask("A", Some(42)), &[]));
        assert!(!Arc::ptr_eq(&b, &first));
        assert_ne!(e.affinity.as_deref(), Some(&*first.label));
    }

    #[test]
    fn the_queue_limit_refuses_and_p2c_ignores_affinity() {
        let r = route(2, false);
        let mut cfg = ModelRouting::default();
        for b in r.backends.iter() {
            set(b, "A", 32.0, 16.0);
        }
        assert!(matches!(
            pick(&r, &cfg, &ask("A", Some(1)), &[]),
            Choice::Busy
        ));
        set(&r.backends[1], "A", 0.0, 16.0);
        let (b, _) = to(pick(&r, &cfg, &ask("A", Some(1)), &[]));
        assert!(Arc::ptr_eq(&b, &r.backends[1]));
        cfg.strategy = ModelStrategy::PowerOfTwo;
        set(&r.backends[0], "A", 0.0, 3.0);
        set(&r.backends[1], "A", 0.0, 1.0);
        for key in 0..10 {
            let (b, e) = to(pick(&r, &cfg, &ask("A", Some(key)), &[]));
            assert!(Arc::ptr_eq(&b, &r.backends[1]), "the lower load wins");
            assert_eq!(e.affinity, None);
        }
        // A retry skips the upstream tried.
        let tried = [Arc::as_ptr(&r.backends[1]) as usize];
        let (b, _) = to(pick(&r, &cfg, &ask("A", None), &tried));
        assert!(Arc::ptr_eq(&b, &r.backends[0]));
    }
}
