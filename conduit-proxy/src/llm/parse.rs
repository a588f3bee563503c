//! Reading what model servers say about themselves: the OpenAI model list, vLLM's
//! Prometheus metrics, Ollama's `/api/tags` and `/api/ps`. Each parser takes the body and
//! returns typed facts or a reason naming what was wrong; nothing here does I/O.

use serde::Deserialize;

/// `GET /v1/models`: `{"object":"list","data":[{"id":"…"},…]}`.
#[derive(Debug, Deserialize)]
struct ModelList {
    data: Vec<ModelId>,
}

#[derive(Debug, Deserialize)]
struct ModelId {
    id: String,
}

/// A listing a model server answered that is not what its API documents.
#[derive(Debug, thiserror::Error)]
#[error("{path} is not {what}: {source}")]
pub(crate) struct NotAList {
    path: &'static str,
    what: &'static str,
    source: serde_json::Error,
}

/// The model ids of an OpenAI-compatible model list.
pub(crate) fn openai_models(body: &[u8]) -> Result<Vec<String>, NotAList> {
    serde_json::from_slice::<ModelList>(body)
        .map(|l| l.data.into_iter().map(|m| m.id).collect())
        .map_err(|source| NotAList {
            path: "/v1/models",
            what: "an OpenAI model list",
            source,
        })
}

/// `GET /api/tags` and `GET /api/ps`: `{"models":[{"name":"…",…}]}`.
#[derive(Debug, Deserialize)]
struct OllamaList {
    #[serde(default)]
    models: Option<Vec<OllamaModel>>,
}

/// One model of an Ollama listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct OllamaModel {
    /// `llama3:8b`.
    pub(crate) name: String,
    /// Bytes of it in GPU memory (`/api/ps` only).
    #[serde(default)]
    pub(crate) size_vram: Option<u64>,
    /// When Ollama unloads it (`/api/ps` only), RFC 3339.
    #[serde(default)]
    pub(crate) expires_at: Option<String>,
}

/// The models of an Ollama listing (`/api/tags`: pulled; `/api/ps`: loaded).
pub(crate) fn ollama_models(body: &[u8], path: &'static str) -> Result<Vec<OllamaModel>, NotAList> {
    serde_json::from_slice::<OllamaList>(body)
        .map(|l| l.models.unwrap_or_default())
        .map_err(|source| NotAList {
            path,
            what: "an Ollama model list",
            source,
        })
}

/// vLLM's load as its `/metrics` reports it, summed over its label sets (one per model and
/// engine).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct VllmLoad {
    /// `vllm:num_requests_waiting`.
    pub(crate) waiting: f64,
    /// `vllm:num_requests_running`.
    pub(crate) running: f64,
    /// `vllm:kv_cache_usage_perc` (older releases: `vllm:gpu_cache_usage_perc`), 0 to 1;
    /// the highest over engines.
    pub(crate) kv_use: f64,
}

/// Reads the three gauges from Prometheus text; `None` when none is there.
pub(crate) fn vllm_metrics(text: &str) -> Option<VllmLoad> {
    let mut load = VllmLoad::default();
    let mut seen = false;
    for line in text.lines() {
        if line.starts_with('#') || !line.starts_with("vllm:") {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        // The value follows the labels (whose values may hold spaces): after the last '}'
        // when there are labels, else after the name.
        let rest = match line[name_end..].starts_with('{') {
            true => line.rfind('}').map_or("", |i| &line[i + 1..]),
            false => &line[name_end..],
        };
        let Some(value) = rest
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
        else {
            continue;
        };
        match name {
            "vllm:num_requests_waiting" => load.waiting += value,
            "vllm:num_requests_running" => load.running += value,
            "vllm:kv_cache_usage_perc" | "vllm:gpu_cache_usage_perc" => {
                load.kv_use = load.kv_use.max(value.clamp(0.0, 1.0));
            }
            _ => continue,
        }
        seen = true;
    }
    seen.then_some(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vllm_metrics() {
        let text = "# HELP vllm:num_requests_waiting Number of requests waiting.\n\
            # TYPE vllm:num_requests_waiting gauge\n\
            vllm:num_requests_waiting{engine=\"0\",model_name=\"meta-llama/Llama 3\"} 3.0\n\
            vllm:num_requests_waiting{engine=\"1\",model_name=\"x\"} 2.0\n\
            vllm:num_requests_running{engine=\"0\",model_name=\"x\"} 16.0\n\
            vllm:gpu_cache_usage_perc{engine=\"0\"} 0.25\n\
            vllm:kv_cache_usage_perc{engine=\"1\"} 0.5\n\
            vllm:num_requests_swapped 7\n\
            vllm:bad{a=\"b\"} NaN\n\
            process_cpu_seconds_total 12.5\n";
        let l = vllm_metrics(text).unwrap();
        assert_eq!((l.waiting, l.running, l.kv_use), (5.0, 16.0, 0.5));
        assert_eq!(vllm_metrics("process_cpu_seconds_total 1\n"), None);
    }

    #[test]
    fn reads_model_lists() {
        let body = br#"{"object":"list","data":[{"id":"A","object":"model","created":1,"owned_by":"vllm","max_model_len":4096}]}"#;
        assert_eq!(openai_models(body).unwrap(), ["A"]);
        let e = openai_models(b"<html>").unwrap_err().to_string();
        assert!(
            e.starts_with("/v1/models is not an OpenAI model list"),
            "{e}"
        );
        let ps = br#"{"models":[{"name":"B:latest","model":"B:latest","size":5,"size_vram":5,"expires_at":"2026-11-29T16:00:00Z","details":{}}]}"#;
        let m = ollama_models(ps, "/api/ps").unwrap();
        assert_eq!(m[0].name, "B:latest");
        assert_eq!(m[0].size_vram, Some(5));
        assert_eq!(ollama_models(br#"{"models":null}"#, "/api/ps").unwrap(), []);
    }
}
