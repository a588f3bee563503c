//! What the gateway publishes on its [`EventBus`]: every audit record appended through its
//! sink ([`PublishingSink`]), and every registry change (one event per change, not
//! coalesced: a client sees each revision).

use std::sync::Arc;

use async_trait::async_trait;
use conduit_audit::{AuditError, AuditEvent, AuditSink, Outcome, Receipt};
use conduit_registry::{ChangeKind, Registry, Revision};
use tokio_util::sync::CancellationToken;

use crate::events::{EventBus, EventKind};

/// An audit sink that publishes each record it stored as an `audit` event.
#[derive(Debug)]
pub(super) struct PublishingSink {
    inner: Arc<dyn AuditSink>,
    bus: EventBus,
    gate: AuditGate,
    /// Told of every sealed record (a checkpoint every N).
    checkpoints: Option<Arc<super::checkpoint::Checkpointer>>,
}

/// Appends (with their events) hold it shared; a reader of the log that also wants the
/// event cursor to go with what it read holds it alone, so no record is in the log and
/// not yet published, or published and not yet in the log, at that moment.
pub(super) type AuditGate = Arc<tokio::sync::RwLock<()>>;

impl PublishingSink {
    pub(super) fn new(
        inner: Arc<dyn AuditSink>,
        bus: EventBus,
        gate: AuditGate,
        checkpoints: Option<Arc<super::checkpoint::Checkpointer>>,
    ) -> Self {
        Self {
            inner,
            bus,
            gate,
            checkpoints,
        }
    }
}

#[async_trait]
impl AuditSink for PublishingSink {
    async fn append(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        let action = event.action().to_owned();
        let success = event.status() == Outcome::Success;
        let user = event.user().to_owned();
        let message = event.message().to_owned();
        let timestamp = event.timestamp().to_owned();
        let details = event.details().clone();
        let _shared = self.gate.read().await;
        let receipt = self.inner.append(event).await?;
        if let (Some(cp), Some(sealed)) = (&self.checkpoints, &receipt.sealed) {
            cp.observe(sealed);
        }
        self.bus.publish(EventKind::Audit {
            action,
            success,
            user,
            message,
            sequence: receipt.sealed.as_ref().map(|s| s.sequence),
            timestamp,
            details,
        });
        Ok(receipt)
    }

    async fn history(&self) -> Result<Option<Vec<AuditEvent>>, AuditError> {
        self.inner.history().await
    }
}

/// Publishes a `service` event for every registry change after `since`.
pub(super) async fn registry_events(
    registry: Arc<dyn Registry>,
    bus: EventBus,
    since: Revision,
    stop: CancellationToken,
) {
    let mut watch = registry.watch(since);
    loop {
        let ev = tokio::select! {
            () = stop.cancelled() => return,
            ev = watch.next() => ev,
        };
        let Some(ev) = ev else { return };
        let change = match ev.kind {
            ChangeKind::Registered => "registered",
            ChangeKind::Updated => "updated",
            _ => "deregistered",
        };
        bus.publish(EventKind::Service {
            change: change.to_owned(),
            name: ev.record.name().to_string(),
            domain: ev.record.domain().to_string(),
            revision: ev.revision.0,
        });
    }
}
