//! What the gateway puts right when it starts, so that no change goes unaudited and no audit
//! record stays unsealed, whatever crashed or was locked before:
//!
//! 1. lines of `audit.log` that never reached the sealed chain (a writer killed or a chain
//!    locked between the two writes: the log line and the seal are written side by side, so
//!    such a line can be anywhere) are sealed now, as they are, and that is itself audited
//!    as `audit_recovered` naming the lines. A line that differs from a sealed record is
//!    not "unsealed" but altered: it is never sealed, and `conduit audit verify` names it;
//! 2. every registry record whose current revision has no audit record (a writer killed
//!    between storing the change and auditing it) is audited now as `registry_recovered`.

use std::collections::HashSet;

use conduit_audit::{AuditLog, CapsuleStore, LogFilter, cross_check, read_log};
use conduit_registry::{FileRegistry, ListFilter, Registry};
use serde_json::json;

use super::GatewayError;
use crate::audited::record;
use crate::state::StateDir;

/// Seals the lines of `audit.log` that the chain lacks. Lines that differ from a sealed
/// record (altered) are left for `conduit audit verify` to name. Returns the line numbers
/// sealed.
pub(super) fn seal_backlog(state: &StateDir) -> Result<Vec<usize>, GatewayError> {
    let mut store = CapsuleStore::open(state.capsules_db())?;
    let check = cross_check(&state.audit_log(), &store)?;
    let tail = check.unsealed;
    if tail.is_empty() {
        return Ok(Vec::new());
    }
    let key = state.seal_key_or_create()?;
    let events: Vec<_> = tail.iter().map(|l| l.event.clone()).collect();
    store.append(&events, &key)?;
    Ok(tail.iter().map(|l| l.line).collect())
}

/// Audits every registry revision that has no audit record, as `registry_recovered`.
/// Returns how many.
pub(super) async fn audit_unaudited_revisions(
    state: &StateDir,
    registry: &FileRegistry,
    audit: &AuditLog,
    user: &str,
) -> Result<usize, GatewayError> {
    let path = state.audit_log();
    let (events, _) = tokio::task::spawn_blocking(move || read_log(&path, &LogFilter::default()))
        .await
        .map_err(|source| GatewayError::Task {
            what: "audit read",
            source,
        })??;
    // (name, revision) of every audited change; names audited by versions that did not
    // record the revision count as audited.
    let mut audited: HashSet<(String, u64)> = HashSet::new();
    let mut legacy: HashSet<String> = HashSet::new();
    for e in &events {
        if !matches!(
            e.action(),
            "service_register" | "service_update" | "service_deregister" | "registry_recovered"
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
        record(audit, "registry_recovered", true, msg, user, details).await;
        recovered += 1;
    }
    Ok(recovered)
}

/// Both, in order, with their own audit record for the backlog.
pub(super) async fn run(
    state: &StateDir,
    registry: &FileRegistry,
    audit: &AuditLog,
    user: &str,
) -> Result<(), GatewayError> {
    let st = state.clone();
    let sealed = tokio::task::spawn_blocking(move || seal_backlog(&st))
        .await
        .map_err(|source| GatewayError::Task {
            what: "audit backlog",
            source,
        })??;
    if !sealed.is_empty() {
        tracing::warn!(lines = ?sealed, "audit.log lines that were never sealed: sealed now");
        let msg = format!(
            "Sealed {} audit record(s) that a crash or a locked chain had left unsealed (audit.log lines {})",
            sealed.len(),
            sealed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        record(
            audit,
            "audit_recovered",
            true,
            msg,
            user,
            json!({"lines": sealed}),
        )
        .await;
    }
    audit_unaudited_revisions(state, registry, audit, user).await?;
    Ok(())
}
