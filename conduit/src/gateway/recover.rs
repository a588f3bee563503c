//! What the gateway puts right when it starts, so that no change goes unaudited and no audit
//! record stays unsealed, whatever crashed or was locked before:
//!
//! 1. lines of `audit.log` that never reached the sealed chain (a writer killed or a chain
//!    locked between the two writes: the log line and the seal are written side by side, so
//!    such a line can be anywhere) are sealed now, as they are, and sealed records that never
//!    reached `audit.log` are written back into it; both are audited as `audit_recovered`
//!    naming the lines and records. A line that differs from a sealed record is not
//!    "unsealed" but altered: it is never sealed, and `conduit audit verify` names it;
//! 2. every registry record whose current revision has no audit record (a writer killed
//!    between storing the change and auditing it) is audited now as `registry_recovered`.

use std::collections::HashSet;

use conduit_audit::{AuditSink, CapsuleStore, JsonlOptions, JsonlSink, cross_check};
use conduit_registry::{ListFilter, Registry};
use serde_json::json;

use super::GatewayError;
use crate::audited::{Action, record};
use crate::state::StateDir;

/// What [`reconcile`] put right.
#[derive(Debug, Default)]
pub(super) struct Reconciled {
    /// `audit.log` lines sealed now.
    sealed_lines: Vec<usize>,
    /// Sealed records written back into `audit.log` (their sequence numbers).
    restored: Vec<u64>,
}

/// Makes `audit.log` and the chain hold the same records again after a crash: lines the
/// chain lacks are sealed, sealed records the log lacks are appended to it (the log line
/// and the seal are written side by side, so a killed writer can leave either without the
/// other). Lines that differ from a sealed record (altered) are left for `conduit audit
/// verify` to name.
pub(super) async fn reconcile(state: &StateDir) -> Result<Reconciled, GatewayError> {
    let st = state.clone();
    let (mut done, missing) = tokio::task::spawn_blocking(move || {
        let mut store = CapsuleStore::open(st.capsules_db())?;
        let check = cross_check(&st.audit_log(), &store)?;
        let mut done = Reconciled::default();
        if !check.unsealed.is_empty() {
            let key = st.seal_key_or_create()?;
            let events: Vec<_> = check.unsealed.iter().map(|l| l.event.clone()).collect();
            store.append(&events, &key)?;
            done.sealed_lines = check.unsealed.iter().map(|l| l.line).collect();
        }
        Ok::<_, GatewayError>((done, check.missing))
    })
    .await
    .map_err(|source| GatewayError::Task {
        what: "audit reconciliation",
        source,
    })??;
    if !missing.is_empty() {
        // Written back through the log alone (they are sealed already).
        let log = JsonlSink::open(state.audit_log(), JsonlOptions::default())?;
        for r in missing {
            log.append(r.event).await?;
            done.restored.push(r.sequence);
        }
    }
    Ok(done)
}

/// Audits every registry revision that has no audit record, as `registry_recovered`.
/// Returns how many. The records are read back from the sink; a sink that cannot give
/// them back (write-only) makes this a no-op.
pub(super) async fn audit_unaudited_revisions(
    registry: &dyn Registry,
    audit: &dyn AuditSink,
    user: &str,
) -> Result<usize, GatewayError> {
    let Some(events) = audit.history().await? else {
        return Ok(0);
    };
    // (name, revision) of every audited change; names audited by versions that did not
    // record the revision count as audited.
    let mut audited: HashSet<(String, u64)> = HashSet::new();
    let mut legacy: HashSet<String> = HashSet::new();
    for e in &events {
        if !matches!(
            Action::from_name(e.action()),
            Some(
                Action::ServiceRegister
                    | Action::ServiceUpdate
                    | Action::ServiceDeregister
                    | Action::RegistryRecovered
            )
        ) || e.status() != conduit_audit::Outcome::Success
        {
            continue;
        }
        let d = e.details();
        let Some(name) = d.get("name").and_then(|v| v.as_str()) else {
            continue;
        };
        match d.get("revision").and_then(serde_json::Value::as_u64) {
            Some(rev) => {
                audited.insert((name.to_owned(), rev));
            }
            None => {
                legacy.insert(name.to_owned());
            }
        }
    }
    let mut recovered = 0;
    for rec in registry.list(ListFilter::All).await? {
        let name = rec.name().as_str();
        let rev = rec.revision().0;
        if audited.contains(&(name.to_owned(), rev)) || legacy.contains(name) {
            continue;
        }
        let state = if rec.is_active() {
            "active"
        } else {
            "deregistered"
        };
        let msg = format!(
            "Recovered the unaudited change of {} (revision {rev}, {state}): it was stored but its audit record was never written",
            rec.domain()
        );
        let details = json!({
            "name": name,
            "domain": rec.domain().as_str(),
            "revision": rev,
            "status": state,
            "upstreams": rec.endpoints().iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        tracing::warn!(service = %name, revision = rev, "registry change without an audit record: audited now");
        record(audit, Action::RegistryRecovered, true, msg, user, details).await;
        recovered += 1;
    }
    Ok(recovered)
}

/// Reconciles a state directory's log and chain, with its own audit record.
pub(super) async fn seal_and_report(
    state: &StateDir,
    audit: &dyn AuditSink,
    user: &str,
) -> Result<(), GatewayError> {
    let done = reconcile(state).await?;
    if !done.restored.is_empty() {
        tracing::warn!(records = ?done.restored, "sealed records missing from audit.log: written back");
        let msg = format!(
            "Wrote {} sealed audit record(s) back into audit.log that a crash had left out (chain records {})",
            done.restored.len(),
            listed(&done.restored)
        );
        let details = json!({"restored": done.restored});
        record(audit, Action::AuditRecovered, true, msg, user, details).await;
    }
    let sealed = done.sealed_lines;
    if !sealed.is_empty() {
        tracing::warn!(lines = ?sealed, "audit.log lines that were never sealed: sealed now");
        let msg = format!(
            "Sealed {} audit record(s) that a crash or a locked chain had left unsealed (audit.log lines {})",
            sealed.len(),
            listed(&sealed)
        );
        record(
            audit,
            Action::AuditRecovered,
            true,
            msg,
            user,
            json!({"lines": sealed}),
        )
        .await;
    }
    Ok(())
}

/// `1, 4, 9`.
fn listed(items: &[impl ToString]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
