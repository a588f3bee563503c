//! What the simulated engine writes back: OpenAI chunks over SSE (or one whole answer),
//! Ollama's NDJSON lines, one token at a time at the decode speed.

use bytes::Bytes;
use http::{Response, StatusCode};
use tokio::sync::mpsc;

use super::SimBody;
use super::api;
use super::engine::Running;
use super::handlers::{json, reply};

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

    /// Token `i`'s bytes on the wire (`None`: the closing line).
    fn piece(&self, text: Option<&str>) -> Vec<u8> {
        let done = text.is_none();
        let content = text.unwrap_or("");
        match self.style {
            Style::OllamaChat | Style::OllamaGenerate => {
                let chat = self.style == Style::OllamaChat;
                let line = api::OllamaLine {
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
                };
                let mut v = serde_json::to_vec(&line).unwrap_or_default();
                v.push(b'\n');
                v
            }
            Style::Chat | Style::Text => {
                let chat = self.style == Style::Chat;
                let chunk = api::Chunk {
                    id: "cmpl-sim",
                    object: if chat {
                        "chat.completion.chunk"
                    } else {
                        "text_completion"
                    },
                    created: 1_764_400_000,
                    model: &self.model,
                    choices: [api::Choice {
                        index: 0,
                        delta: chat.then_some(api::Delta {
                            role: "assistant",
                            content,
                        }),
                        message: None,
                        text: (!chat).then_some(content),
                        finish_reason: done.then_some("length"),
                    }],
                    usage: done.then(|| self.usage()),
                };
                let mut v = b"data: ".to_vec();
                v.extend(serde_json::to_vec(&chunk).unwrap_or_default());
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

    pub(crate) fn whole(&self) -> Response<SimBody> {
        let text: String = (1..=self.max_tokens).map(token).collect();
        match self.style {
            Style::OllamaChat | Style::OllamaGenerate => {
                let mut r = reply(StatusCode::OK, "application/json", Vec::new());
                let mut body = self.piece(None);
                // The closing line carries the text when not streamed.
                let chat = self.style == Style::OllamaChat;
                let line = api::OllamaLine {
                    model: &self.model,
                    created_at: "2026-11-29T00:00:00Z",
                    message: chat.then_some(api::Delta {
                        role: "assistant",
                        content: &text,
                    }),
                    response: (!chat).then_some(&text),
                    done: true,
                    done_reason: Some("length"),
                    prompt_eval_count: Some(self.prompt_tokens),
                    eval_count: Some(u64::from(self.max_tokens)),
                };
                body = serde_json::to_vec(&line).unwrap_or(body);
                *r.body_mut() = SimBody::Full(Some(Bytes::from(body)));
                r
            }
            Style::Chat | Style::Text => {
                let chat = self.style == Style::Chat;
                json(
                    StatusCode::OK,
                    &api::Chunk {
                        id: "cmpl-sim",
                        object: if chat {
                            "chat.completion"
                        } else {
                            "text_completion"
                        },
                        created: 1_764_400_000,
                        model: &self.model,
                        choices: [api::Choice {
                            index: 0,
                            delta: None,
                            message: chat.then_some(api::Delta {
                                role: "assistant",
                                content: &text,
                            }),
                            text: (!chat).then_some(&text),
                            finish_reason: Some("length"),
                        }],
                        usage: Some(self.usage()),
                    },
                )
            }
        }
    }
}
