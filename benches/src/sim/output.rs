//! What the simulated engine writes back: OpenAI chunks over SSE (or one whole answer),
//! Ollama's NDJSON lines, one token at a time at the decode speed.

use bytes::Bytes;
use http::{Response, StatusCode};
use tokio::sync::mpsc;

use super::SimBody;
use super::api;
use super::engine::Running;
use super::handlers::json;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Chat,
    Text,
    OllamaChat,
    OllamaGenerate,
}

pub(crate) struct Output {
    pub(crate) model: String,
    pub(crate) style: Style,
    pub(crate) max_tokens: u32,
    pub(crate) prompt_tokens: u64,
}

fn token(i: u32) -> String {
    format!("w{i} ")
}

impl Output {
    fn usage(&self) -> api::Usage {
        api::Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: u64::from(self.max_tokens),
            total_tokens: self.prompt_tokens + u64::from(self.max_tokens),
        }
    }

    /// An Ollama line: a token (`done` false), or the closing line with the counts.
    fn ollama_line<'a>(&'a self, content: &'a str, done: bool) -> api::OllamaLine<'a> {
        let chat = self.style == Style::OllamaChat;
        api::OllamaLine {
            model: &self.model,
            created_at: "2026-11-29T00:00:00Z",
            message: chat.then_some(api::Delta {
                role: "assistant",
                content,
            }),
            response: (!chat).then_some(content),
            done,
            done_reason: done.then_some("length"),
            prompt_eval_count: done.then_some(self.prompt_tokens),
            eval_count: done.then_some(u64::from(self.max_tokens)),
        }
    }

    /// An OpenAI object: a streamed chunk (`delta`) or the whole answer (`message`), with the
    /// usage once done.
    fn openai<'a>(&'a self, content: &'a str, done: bool, streamed: bool) -> api::Chunk<'a> {
        let chat = self.style == Style::Chat;
        let delta = chat.then_some(api::Delta {
            role: "assistant",
            content,
        });
        let (delta, message) = match streamed {
            true => (delta, None),
            false => (None, delta),
        };
        api::Chunk {
            id: "cmpl-sim",
            object: match (chat, streamed) {
                (true, true) => "chat.completion.chunk",
                (true, false) => "chat.completion",
                (false, _) => "text_completion",
            },
            created: 1_764_400_000,
            model: &self.model,
            choices: [api::Choice {
                index: 0,
                delta,
                message,
                text: (!chat).then_some(content),
                finish_reason: done.then_some("length"),
            }],
            usage: done.then(|| self.usage()),
        }
    }

    /// A streamed token's bytes on the wire (`None`: the closing line).
    fn piece(&self, text: Option<&str>) -> Vec<u8> {
        let done = text.is_none();
        let content = text.unwrap_or("");
        match self.style {
            Style::OllamaChat | Style::OllamaGenerate => {
                let mut v =
                    serde_json::to_vec(&self.ollama_line(content, done)).unwrap_or_default();
                v.push(b'\n');
                v
            }
            Style::Chat | Style::Text => {
                let mut v = b"data: ".to_vec();
                v.extend(serde_json::to_vec(&self.openai(content, done, true)).unwrap_or_default());
                v.extend_from_slice(b"\n\n");
                if done {
                    v.extend_from_slice(b"data: [DONE]\n\n");
                }
                v
            }
        }
    }

    pub(crate) async fn stream(self, running: Running, tx: mpsc::Sender<Bytes>) {
        let first = tokio::time::Instant::now();
        for i in 1..=self.max_tokens {
            tokio::time::sleep_until(first + running.token_at(i - 1)).await;
            if tx
                .send(Bytes::from(self.piece(Some(&token(i)))))
                .await
                .is_err()
            {
                return; // the client went away: the sequence ends
            }
        }
        let _ = tx.send(Bytes::from(self.piece(None))).await;
    }

    /// The whole answer at once (not streamed): every token in one object.
    pub(crate) fn whole(&self) -> Response<SimBody> {
        let text: String = (1..=self.max_tokens).map(token).collect();
        match self.style {
            Style::OllamaChat | Style::OllamaGenerate => {
                json(StatusCode::OK, &self.ollama_line(&text, true))
            }
            Style::Chat | Style::Text => json(StatusCode::OK, &self.openai(&text, true, false)),
        }
    }
}
