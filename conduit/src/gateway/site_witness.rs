//! The gateways of one site witness each other through the shared store: each publishes
//! its latest audit checkpoint under the prefix (`P/checkpoints/SEAL_KEY`), with the anchor
//! of the one it published before; each takes the others' through the same witness check
//! as a checkpoint posted to `/v1/audit/witness` (kept when it extends the last one seen
//! from that key; a fork, a rollback or a rewritten chain is refused with an audited
//! alarm).

use conduit_audit::Checkpoint;
use conduit_registry::etcd::EtcdRegistry;
use tokio_util::sync::CancellationToken;

use super::GatewayHandle;
use super::checkpoint::Checkpointer;
use crate::api::{Anchor, WitnessOutcome, WitnessRequest};

/// Publishes `c`, anchored at the checkpoint this gateway published before (read back from
/// the store, so a restart keeps the chain of anchors).
pub(super) async fn publish(reg: &EtcdRegistry, cp: &Checkpointer, c: &Checkpoint) {
    let previous = reg
        .checkpoints()
        .borrow()
        .get(&c.public_key)
        .and_then(|b| serde_json::from_slice::<WitnessRequest>(b).ok())
        .map(|r| r.checkpoint);
    let anchor = match previous {
        Some(p) if p.sequence == c.sequence && p.head_hash == c.head_hash => return,
        Some(p) if p.sequence < c.sequence => match cp.hash_at(p.sequence).await {
            Ok(Some(head_hash)) => Some(Anchor {
                sequence: p.sequence,
                head_hash,
            }),
            _ => None,
        },
        _ => None,
    };
    let req = WitnessRequest {
        checkpoint: c.clone(),
        anchor,
    };
    let Ok(json) = serde_json::to_vec(&req) else {
        return;
    };
    if let Err(error) = reg.publish_checkpoint(&c.public_key, &json).await {
        tracing::warn!(%error, sequence = c.sequence, "checkpoint not published to the registry store; the next one will be");
    }
}

/// Witnesses every other gateway's checkpoint as it is published.
/// `own`: this gateway's seal key (hex), whose checkpoints are not its own to witness.
pub(super) async fn witness(
    reg: EtcdRegistry,
    handle: GatewayHandle,
    own: Option<String>,
    token: CancellationToken,
) {
    let mut published = reg.checkpoints();
    let mut seen: std::collections::HashMap<String, std::sync::Arc<[u8]>> = Default::default();
    loop {
        let now = published.borrow_and_update().clone();
        for (signer, bytes) in now.iter() {
            if own.as_deref() == Some(signer.as_str())
                || seen.get(signer).is_some_and(|b| b == bytes)
            {
                continue;
            }
            seen.insert(signer.clone(), bytes.clone());
            let Ok(req) = serde_json::from_slice::<WitnessRequest>(bytes) else {
                tracing::warn!(%signer, "an unreadable checkpoint in the registry store; ignored");
                continue;
            };
            if req.checkpoint.public_key != *signer {
                tracing::warn!(%signer, "a checkpoint published under another key than its own; ignored");
                continue;
            }
            match handle.witness(req, "registry store").await {
                Ok(r) if r.outcome == WitnessOutcome::NeedAnchor => tracing::info!(
                    %signer,
                    last_seen = r.sequence,
                    "a site checkpoint skips past the last one seen from its gateway; kept at the next that anchors to it"
                ),
                Ok(_) => {}
                // Refusals are audited by the witness check itself.
                Err(error) => tracing::debug!(%signer, %error, "site checkpoint not accepted"),
            }
        }
        tokio::select! {
            () = token.cancelled() => return,
            r = published.changed() => if r.is_err() { return },
        }
    }
}
