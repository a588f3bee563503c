//! The model services' part of `/metrics`: per upstream its readiness, models, load and
//! routed requests, the last sampled decision's scores, and per service the decisions,
//! refusals and decision times. Each family's samples are written together.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::state::{DECISION_BUCKETS, Load};
use crate::routes::Route;

/// A label value, escaped as Prometheus' text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The families, in the order written: name, type, help.
const FAMILIES: [(&str, &str, &str); 10] = [
    (
        "conduit_llm_upstream_ready",
        "gauge",
        "Whether a model server is ready (answers, a model loaded).",
    ),
    (
        "conduit_llm_upstream_load",
        "gauge",
        "Requests waiting and running on a model server as routing sees them.",
    ),
    (
        "conduit_llm_upstream_kv_cache_use",
        "gauge",
        "KV-cache use (0-1) as the engine last reported it.",
    ),
    (
        "conduit_llm_routed_total",
        "counter",
        "Requests routed to a model server by model.",
    ),
    (
        "conduit_llm_model_ready",
        "gauge",
        "Whether a model server serves a model now (loaded and ready).",
    ),
    (
        "conduit_llm_score",
        "gauge",
        "An upstream's score in the last sampled routing decision (lowest wins).",
    ),
    (
        "conduit_llm_decisions_total",
        "counter",
        "Requests routed by model.",
    ),
    (
        "conduit_llm_affinity_hits_total",
        "counter",
        "Requests sent to their prompt prefix's upstream.",
    ),
    (
        "conduit_llm_refused_total",
        "counter",
        "Requests for a model answered by the gateway: 404, 503 or 429.",
    ),
    (
        "conduit_llm_decision_seconds",
        "histogram",
        "From a request to its routing decision (look-ahead and scoring).",
    ),
];

/// Appends the model services' metrics for `routes` to `out`.
pub(crate) fn prometheus(routes: &[&Arc<Route>], out: &mut String) {
    let mut f: [String; 10] = Default::default();
    for r in routes {
        let Some(st) = r.models.as_deref() else {
            continue;
        };
        let svc = &r.service;
        let last = st.last.load_full();
        for b in r.backends.iter() {
            let Some(e) = b.engine_state() else { continue };
            let s = e.signals.load();
            let at = format!("service=\"{svc}\",upstream=\"{}\"", b.endpoint);
            let load = Load::estimate(&s, b.outstanding());
            let ready = s.serving(b);
            let _ = writeln!(
                f[0],
                "conduit_llm_upstream_ready{{{at},kind=\"{}\"}} {}",
                b.engine,
                u8::from(ready)
            );
            let _ = writeln!(f[1], "conduit_llm_upstream_load{{{at}}} {}", load.total);
            let _ = writeln!(
                f[2],
                "conduit_llm_upstream_kv_cache_use{{{at}}} {}",
                load.kv_use
            );
            let routed = e.routed.load(Ordering::Relaxed);
            let _ = writeln!(f[3], "conduit_llm_routed_total{{{at}}} {routed}");
            for m in s.models.iter() {
                let _ = writeln!(
                    f[4],
                    "conduit_llm_model_ready{{{at},model=\"{}\"}} {}",
                    label(&m.id),
                    u8::from(m.loaded && ready)
                );
            }
            if let Some(score) = last
                .as_ref()
                .and_then(|l| l.scores.iter().find(|u| u.upstream == b.label))
            {
                let _ = writeln!(f[5], "conduit_llm_score{{{at}}} {}", score.score);
            }
        }
        let s = format!("service=\"{svc}\"");
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            f[6],
            "conduit_llm_decisions_total{{{s}}} {}",
            n(&st.decisions)
        );
        let _ = writeln!(
            f[7],
            "conduit_llm_affinity_hits_total{{{s}}} {}",
            n(&st.affinity_hits)
        );
        for (reason, count) in [
            ("unknown_model", &st.unknown_model),
            ("not_ready", &st.not_ready),
            ("busy", &st.busy),
        ] {
            let _ = writeln!(
                f[8],
                "conduit_llm_refused_total{{{s},reason=\"{reason}\"}} {}",
                n(count)
            );
        }
        let mut cumulative = 0;
        for (i, c) in st.decision_time.counts.iter().enumerate() {
            cumulative += n(c);
            let le = DECISION_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            let _ = writeln!(
                f[9],
                "conduit_llm_decision_seconds_bucket{{{s},le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            f[9],
            "conduit_llm_decision_seconds_sum{{{s}}} {}\nconduit_llm_decision_seconds_count{{{s}}} {cumulative}",
            n(&st.decision_time.sum_ns) as f64 / 1e9,
        );
    }
    for ((name, kind, help), samples) in FAMILIES.iter().zip(&f) {
        if !samples.is_empty() {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{samples}");
        }
    }
}
