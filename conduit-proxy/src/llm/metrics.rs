//! The model services' part of `/metrics`: per upstream its readiness, models, load and
//! routed requests, the last sampled decision's scores, and per service the decisions and
//! refusals.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::state::Load;
use crate::routes::Route;

/// A label value, escaped as Prometheus' text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the model services' metrics for `routes` to `out`.
pub(crate) fn prometheus(routes: &[&Arc<Route>], out: &mut String) {
    let model_routes: Vec<_> = routes.iter().filter(|r| r.models.is_some()).collect();
    if model_routes.is_empty() {
        return;
    }
    let mut upstream = String::new();
    let mut models = String::new();
    let mut scores = String::new();
    let mut service = String::new();
    for r in model_routes {
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
            let _ = writeln!(
                upstream,
                "conduit_llm_upstream_ready{{{at},kind=\"{}\"}} {}\n\
                 conduit_llm_upstream_load{{{at}}} {}\n\
                 conduit_llm_upstream_kv_cache_use{{{at}}} {}\n\
                 conduit_llm_routed_total{{{at}}} {}",
                b.engine,
                u8::from(s.ready && b.is_healthy()),
                load.total,
                load.kv_use,
                e.routed.load(Ordering::Relaxed),
            );
            for m in s.models.iter() {
                let _ = writeln!(
                    models,
                    "conduit_llm_model_ready{{{at},model=\"{}\"}} {}",
                    label(&m.id),
                    u8::from(m.loaded && s.ready && b.is_healthy())
                );
            }
            if let Some(score) = last
                .as_ref()
                .and_then(|l| l.scores.iter().find(|u| u.upstream == b.label))
            {
                let _ = writeln!(scores, "conduit_llm_score{{{at}}} {}", score.score);
            }
        }
        let _ = writeln!(
            service,
            "conduit_llm_decisions_total{{service=\"{svc}\"}} {}\n\
             conduit_llm_affinity_hits_total{{service=\"{svc}\"}} {}\n\
             conduit_llm_refused_total{{service=\"{svc}\",reason=\"unknown_model\"}} {}\n\
             conduit_llm_refused_total{{service=\"{svc}\",reason=\"not_ready\"}} {}\n\
             conduit_llm_refused_total{{service=\"{svc}\",reason=\"busy\"}} {}",
            st.decisions.load(Ordering::Relaxed),
            st.affinity_hits.load(Ordering::Relaxed),
            st.unknown_model.load(Ordering::Relaxed),
            st.not_ready.load(Ordering::Relaxed),
            st.busy.load(Ordering::Relaxed),
        );
    }
    let _ = write!(
        out,
        "# HELP conduit_llm_upstream_ready Whether a model server is ready (answers, a model loaded).\n\
         # TYPE conduit_llm_upstream_ready gauge\n\
         # HELP conduit_llm_upstream_load Requests waiting and running on a model server as routing sees them.\n\
         # TYPE conduit_llm_upstream_load gauge\n\
         # HELP conduit_llm_upstream_kv_cache_use KV-cache use (0-1) as the engine last reported it.\n\
         # TYPE conduit_llm_upstream_kv_cache_use gauge\n\
         # HELP conduit_llm_routed_total Requests routed to a model server by model.\n\
         # TYPE conduit_llm_routed_total counter\n\
         {upstream}\
         # HELP conduit_llm_model_ready Whether a model server serves a model now (loaded and ready).\n\
         # TYPE conduit_llm_model_ready gauge\n\
         {models}\
         # HELP conduit_llm_score An upstream's score in the last sampled routing decision (lowest wins).\n\
         # TYPE conduit_llm_score gauge\n\
         {scores}\
         # HELP conduit_llm_decisions_total Requests routed by model.\n\
         # TYPE conduit_llm_decisions_total counter\n\
         # HELP conduit_llm_affinity_hits_total Requests sent to their prompt prefix's upstream.\n\
         # TYPE conduit_llm_affinity_hits_total counter\n\
         # HELP conduit_llm_refused_total Requests for a model answered by the gateway: 404, 503 or 429.\n\
         # TYPE conduit_llm_refused_total counter\n\
         {service}"
    );
}
