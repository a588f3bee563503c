//! The wire shapes the simulator reads and writes: OpenAI's chat and text completions
//! (SSE when streamed), vLLM's model list and metrics, Ollama's `/api/chat`,
//! `/api/generate` (NDJSON when streamed, the default), `/api/tags` and `/api/ps`.

use serde::{Deserialize, Serialize};

/// What the simulator reads from any inference request.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Inference {
    pub(crate) model: Option<String>,
    pub(crate) messages: Option<Vec<Message>>,
    pub(crate) prompt: Option<String>,
    /// `/v1/embeddings` (its size is all that matters).
    pub(crate) input: Option<serde::de::IgnoredAny>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) stream: Option<bool>,
    pub(crate) options: Option<OllamaOptions>,
}

/// One chat message.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub(crate) struct Message {
    pub(crate) role: String,
    pub(crate) content: String,
}

/// Ollama's `options`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OllamaOptions {
    pub(crate) num_predict: Option<u32>,
}

impl Inference {
    /// The prompt's text: the messages as `role: content` lines, or the prompt.
    pub(crate) fn prompt_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(ms) = &self.messages {
            for m in ms {
                out.extend_from_slice(m.role.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(m.content.as_bytes());
                out.push(b'\n');
            }
        }
        if let Some(p) = &self.prompt {
            out.extend_from_slice(p.as_bytes());
        }
        out
    }

    pub(crate) fn max_tokens(&self) -> u32 {
        self.max_tokens
            .or(self.options.as_ref().and_then(|o| o.num_predict))
            .unwrap_or(16)
    }
}

/// `GET /v1/models`.
#[derive(Serialize)]
pub(crate) struct ModelList<'a> {
    pub(crate) object: &'static str,
    pub(crate) data: Vec<ModelCard<'a>>,
}

#[derive(Serialize)]
pub(crate) struct ModelCard<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) owned_by: &'static str,
    pub(crate) root: &'a str,
    pub(crate) max_model_len: u32,
}

/// `GET /api/tags` and `GET /api/ps`.
#[derive(Serialize)]
pub(crate) struct OllamaList<'a> {
    pub(crate) models: Vec<OllamaModel<'a>>,
}

#[derive(Serialize)]
pub(crate) struct OllamaModel<'a> {
    pub(crate) name: &'a str,
    pub(crate) model: &'a str,
    pub(crate) size: u64,
    pub(crate) digest: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) size_vram: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<&'static str>,
}

/// A streamed OpenAI chunk (`chat.completion.chunk` or `text_completion`).
#[derive(Serialize)]
pub(crate) struct Chunk<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: [Choice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Usage>,
}

#[derive(Serialize)]
pub(crate) struct Choice<'a> {
    pub(crate) index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delta: Option<Delta<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<Delta<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<&'a str>,
    pub(crate) finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
pub(crate) struct Delta<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
}

/// One line of an Ollama stream.
#[derive(Serialize)]
pub(crate) struct OllamaLine<'a> {
    pub(crate) model: &'a str,
    pub(crate) created_at: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<Delta<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response: Option<&'a str>,
    pub(crate) done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) done_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_eval_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) eval_count: Option<u64>,
}

/// `POST /v1/embeddings`.
#[derive(Serialize)]
pub(crate) struct Embeddings<'a> {
    pub(crate) object: &'static str,
    pub(crate) data: [Embedding; 1],
    pub(crate) model: &'a str,
    pub(crate) usage: Usage,
}

#[derive(Serialize)]
pub(crate) struct Embedding {
    pub(crate) object: &'static str,
    pub(crate) index: u32,
    pub(crate) embedding: [f32; 4],
}

/// An error in OpenAI's shape.
#[derive(Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub(crate) error: ErrorDetail<'a>,
}

#[derive(Serialize)]
pub(crate) struct ErrorDetail<'a> {
    pub(crate) message: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) code: u16,
}
