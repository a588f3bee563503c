//! [`Engine`]: what kind of server an upstream is, and so how the proxy decides it is ready
//! and routes to it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What kind of server an upstream is. Plain HTTP upstreams are checked on the service's
/// health path and balanced by requests in flight; model servers are ready per model, from
/// the engine's own signals, and requests go to one serving the model they ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Engine {
    /// Any HTTP server (the default).
    #[default]
    Http,
    /// An OpenAI-compatible server: `/v1/models`, and `/health` where it has one.
    #[serde(rename = "openai")]
    OpenAi,
    /// vLLM: `/health`, `/v1/models` and the `vllm:` metrics on `/metrics`.
    Vllm,
    /// Ollama: `/api/tags` (the models it has) and `/api/ps` (those loaded).
    Ollama,
}

impl Engine {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [Self; 4] = [Self::Http, Self::OpenAi, Self::Vllm, Self::Ollama];

    /// `"http"`, `"openai"`, `"vllm"` or `"ollama"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::OpenAi => "openai",
            Self::Vllm => "vllm",
            Self::Ollama => "ollama",
        }
    }

    /// Whether it serves models (every kind but [`Engine::Http`]).
    pub fn is_model_server(self) -> bool {
        self != Self::Http
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An engine kind that is not one of `http`, `openai`, `vllm`, `ollama`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind {input:?}: expected http, openai, vllm or ollama")]
pub struct EngineError {
    /// What was given.
    pub input: String,
}

impl FromStr for Engine {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| EngineError {
                input: s.to_owned(),
            })
    }
}

/// One upstream whose kind differs from its service's (`--upstream ollama=HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineOverride {
    /// The upstream, as listed in the record's endpoints.
    pub endpoint: crate::Endpoint,
    /// Its kind.
    pub kind: Engine,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for e in Engine::ALL {
            assert_eq!(e.as_str().parse::<Engine>().unwrap(), e);
            assert_eq!(
                serde_json::to_string(&e).unwrap(),
                format!("\"{}\"", e.as_str())
            );
        }
        assert_eq!("VLLM".parse::<Engine>().unwrap(), Engine::Vllm);
        let err = "tgi".parse::<Engine>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown kind \"tgi\": expected http, openai, vllm or ollama"
        );
    }
}
