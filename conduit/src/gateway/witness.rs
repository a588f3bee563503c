//! Sending checkpoints to witnesses, in the manner of Certificate Transparency's: each
//! checkpoint goes to other gateways (`[audit] witnesses`), which keep the last one seen from
//! each sealing key and refuse one that does not extend it (the witness's side is in
//! `witnessed`).

use std::sync::Arc;
use std::time::Duration;

use conduit_audit::Checkpoint;
use http::StatusCode;

use super::GatewayError;
use super::checkpoint::Checkpointer;
use super::http_out::{InvalidUrl, Target};
use crate::api::{Anchor, ApiError, WitnessOutcome, WitnessReply, WitnessRequest, WitnessStatus};
use crate::config::Secret;
use crate::events::{EventBus, EventKind};

/// How long one exchange with a witness may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A witness's URL: `https://HOST:PORT/PATH`, or `http://` on loopback (the token would
/// otherwise cross the network in clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessUrl(Target);

impl WitnessUrl {
    /// Parses and checks a witness URL.
    ///
    /// # Errors
    /// [`InvalidUrl`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, InvalidUrl> {
        let t = Target::parse(text)?;
        if !t.https && !t.is_loopback() {
            return Err(InvalidUrl::new(
                text,
                "plain http:// off loopback would send the witness token in clear: use https://",
            ));
        }
        Ok(Self(t))
    }
}

impl std::fmt::Display for WitnessUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why one exchange with a witness failed.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// The witness refused the checkpoint (a fork or a rollback, in its eyes).
    #[error("refused: {0}")]
    Refused(String),
    /// It could not be reached or did not answer as it should (tried again next round).
    #[error("{0}")]
    Failed(String),
}

struct Witness {
    url: WitnessUrl,
    /// The last checkpoint it accepted from us.
    accepted: Option<Anchor>,
}

/// What the admin API shows of the witnesses: one entry per witness, in order.
pub(super) type WitnessBoard = Arc<std::sync::Mutex<Vec<WitnessStatus>>>;

/// The witnesses this gateway sends its checkpoints to.
pub(super) struct Witnesses {
    list: Vec<Witness>,
    board: WitnessBoard,
    token: Option<Secret>,
    tls: Arc<rustls::ClientConfig>,
    bus: EventBus,
}

impl Witnesses {
    /// The configured witnesses, trusting `roots` (PEM: this gateway's root, and
    /// `witness_ca`) for their TLS certificates.
    pub(super) fn new(
        urls: &[String],
        token: Option<Secret>,
        roots: &[u8],
        bus: EventBus,
        board: WitnessBoard,
    ) -> Result<Self, GatewayError> {
        let tls = super::http_out::tls_client(roots).map_err(|source| GatewayError::TlsClient {
            what: "witnesses",
            source,
        })?;
        let mut list = Vec::new();
        for u in urls {
            let url = WitnessUrl::parse(u).map_err(|e| {
                GatewayError::Config(crate::config::ConfigError::invalid(
                    "the configuration",
                    "audit.witnesses",
                    e.to_string(),
                ))
            })?;
            board
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(WitnessStatus {
                    url: url.to_string(),
                    accepted: None,
                    last_attempt: None,
                    last_error: None,
                    refused: false,
                });
            list.push(Witness {
                url,
                accepted: None,
            });
        }
        Ok(Self {
            list,
            board,
            token,
            tls,
            bus,
        })
    }

    /// Sends `c` to every witness that has not accepted it yet, with the anchor it asks for.
    pub(super) async fn send(&mut self, cp: &Checkpointer, c: &Checkpoint) {
        for i in 0..self.list.len() {
            if self.list[i]
                .accepted
                .as_ref()
                .is_some_and(|a| a.sequence == c.sequence && a.head_hash == c.head_hash)
            {
                continue;
            }
            let outcome = self.offer(i, cp, c).await;
            self.show(i, c, &outcome);
            let w = &mut self.list[i];
            match outcome {
                Ok(()) => {
                    w.accepted = Some(Anchor {
                        sequence: c.sequence,
                        head_hash: c.head_hash.clone(),
                    });
                }
                Err(SendError::Refused(why)) => {
                    let message =
                        format!("Witness {} refused checkpoint {}: {why}", w.url, c.sequence);
                    tracing::error!("{message}");
                    self.bus.publish(EventKind::Certificate {
                        change: "witness_refused".to_owned(),
                        name: w.url.to_string(),
                        message,
                    });
                    // Offered again only with the next checkpoint.
                    w.accepted = Some(Anchor {
                        sequence: c.sequence,
                        head_hash: c.head_hash.clone(),
                    });
                }
                Err(SendError::Failed(why)) => {
                    tracing::warn!(witness = %w.url, %why, "checkpoint not delivered; trying again next round");
                }
            }
        }
    }

    /// Puts witness `i`'s answer to `c` on the board.
    fn show(&self, i: usize, c: &Checkpoint, outcome: &Result<(), SendError>) {
        let mut board = self
            .board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(b) = board.get_mut(i) else { return };
        b.last_attempt = Some(super::ca::rfc3339(time::OffsetDateTime::now_utc()));
        b.refused = matches!(outcome, Err(SendError::Refused(_)));
        b.last_error = outcome.as_ref().err().map(ToString::to_string);
        if outcome.is_ok() {
            b.accepted = Some(c.sequence);
        }
    }

    /// One checkpoint to witness `i`: with the anchor of what it accepted last, and once
    /// more with the anchor it asks for.
    async fn offer(&self, i: usize, cp: &Checkpointer, c: &Checkpoint) -> Result<(), SendError> {
        let w = &self.list[i];
        let mut req = WitnessRequest {
            checkpoint: c.clone(),
            anchor: w.accepted.clone(),
        };
        for _ in 0..2 {
            let reply = self.post(&w.url, &req).await?;
            match reply.outcome {
                WitnessOutcome::Accepted => return Ok(()),
                WitnessOutcome::NeedAnchor => {
                    let hash = cp
                        .hash_at(reply.sequence)
                        .await
                        .map_err(|e| SendError::Failed(e.to_string()))?;
                    // A record we no longer have: the witness will say so.
                    req.anchor = Some(Anchor {
                        sequence: reply.sequence,
                        head_hash: hash.unwrap_or_default(),
                    });
                }
            }
        }
        Err(SendError::Failed(
            "the witness asked for another anchor twice".to_owned(),
        ))
    }

    async fn post(
        &self,
        url: &WitnessUrl,
        body: &WitnessRequest,
    ) -> Result<WitnessReply, SendError> {
        let failed = |e: &dyn std::fmt::Display| SendError::Failed(e.to_string());
        let json = serde_json::to_vec(body).map_err(|e| failed(&e))?;
        let (status, bytes) = url
            .0
            .post_json(&self.tls, self.token.as_ref(), json, EXCHANGE_TIMEOUT)
            .await
            .map_err(|e| failed(&e))?;
        if status == StatusCode::OK {
            return serde_json::from_slice(&bytes).map_err(|e| failed(&e));
        }
        let message = serde_json::from_slice::<ApiError>(&bytes)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        if status == StatusCode::CONFLICT {
            Err(SendError::Refused(message))
        } else {
            Err(SendError::Failed(format!("{status}: {message}")))
        }
    }
}
