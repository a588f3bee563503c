//! `conduit logs`: the audit log, filtered; `--follow` keeps printing what is appended.
//!
//! With the gateway running, `--follow` reads the last records through its admin API and
//! then streams each new one from its `audit` events (no polling, and no need to read the
//! state directory: a member of the admin socket's group can follow). It survives the
//! gateway restarting, catching up on what it missed. Without the gateway it follows the
//! file.

use std::process::ExitCode;
use std::time::Duration;

use conduit::admin::{AdminClient, AdminError};
use conduit::api::AuditEntry;
use conduit::audit::{LogFilter, LogFollower, Outcome};
use conduit::events::EventKind;

use crate::settings::Context;
use crate::signal::shutdown;

/// The most records the gateway gives at once (`GET /v1/audit?limit=`).
const API_TAIL: usize = 10_000;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Only this action (service_register, health_change, cert_issue, …).
    #[arg(long)]
    action: Option<String>,
    /// Only events at or after this time (YYYY-MM-DDTHH:MM:SSZ), or this long ago (`1h`,
    /// `30m`).
    #[arg(long)]
    since: Option<String>,
    /// One service's requests (the proxy's access log) and audit records, in time order.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["action", "limit"])]
    service: Option<String>,
    /// At most this many, the most recent.
    #[arg(long)]
    limit: Option<usize>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Keep printing new records as they are written.
    #[arg(long)]
    follow: bool,
}

/// Prints records as `logs` does.
struct Printer {
    json: bool,
    filter: LogFilter,
}

impl Printer {
    /// Prints `e` if it passes the filter.
    fn print(&self, e: &AuditEntry) {
        if self.filter.admits(&e.action, &e.timestamp) {
            self.show(e);
        }
    }

    fn show(&self, e: &AuditEntry) {
        if self.json {
            // The same six fields, in the same order, as the log line.
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!(
                "{} {:<20} {:<8} {:<10} {}",
                e.timestamp,
                e.action,
                e.status.as_str(),
                e.user,
                e.message
            );
        }
    }

    /// Prints the last `limit` of `entries` that pass the filter.
    fn print_last(&self, entries: &[AuditEntry], limit: Option<usize>) {
        let admitted: Vec<&AuditEntry> = entries
            .iter()
            .filter(|e| self.filter.admits(&e.action, &e.timestamp))
            .collect();
        let skip = limit.map_or(0, |n| admitted.len().saturating_sub(n));
        admitted.into_iter().skip(skip).for_each(|e| self.show(e));
    }
}

pub(crate) async fn logs(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    if let Some(name) = &a.service {
        return crate::service_logs::service_logs(ctx, name, a.since.as_deref(), a.json, a.follow)
            .await;
    }
    let mut filter = LogFilter::default();
    filter.action = a.action;
    // A duration (`1h`) means that long ago.
    filter.since = match a.since {
        Some(s)
            if time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                .is_err() =>
        {
            let t = crate::service_logs::parse_since(&s)?;
            Some(
                t.replace_nanosecond(0)
                    .unwrap_or(t)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            )
        }
        other => other,
    };
    let printer = Printer {
        json: a.json,
        filter: filter.clone(),
    };
    let path = ctx.state.audit_log();
    if !a.follow {
        filter.limit = a.limit;
        let (events, bad) = conduit::audit::read_log(&path, &filter)?;
        events
            .iter()
            .for_each(|e| printer.print(&AuditEntry::from(e)));
        if !bad.is_empty() {
            eprintln!(
                "conduit: warning: {} unreadable line(s) in the audit log (`conduit audit verify` checks the sealed chain)",
                bad.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let stop = shutdown();
    tokio::pin!(stop);
    match follow_gateway(&ctx.admin(), &printer, a.limit, &mut stop).await {
        Err(AdminError::NotRunning { .. }) => {}
        Ok(()) => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    }
    // No gateway: one reader from the first byte on, what is there now, then what is
    // appended, each line once.
    let mut follower = LogFollower::from_start(&path, filter);
    let mut first = true;
    loop {
        let batch = tokio::select! {
            () = &mut stop => return Ok(ExitCode::SUCCESS),
            b = follower.next_batch() => b?,
        };
        let skip = match (first, a.limit) {
            (true, Some(n)) => batch.len().saturating_sub(n),
            _ => 0,
        };
        first = false;
        batch
            .iter()
            .skip(skip)
            .for_each(|e| printer.print(&AuditEntry::from(e)));
    }
}

/// Follows the running gateway's audit records until `stop`: the last ones, then each new
/// one as its event arrives. When the stream ends (the gateway stopped or restarted, or
/// this client fell behind) it waits for the gateway and catches up from the log.
/// `NotRunning` only when no gateway answered at the start.
async fn follow_gateway(
    admin: &AdminClient,
    printer: &Printer,
    limit: Option<usize>,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<(), AdminError> {
    let tail = admin.audit(API_TAIL).await?;
    printer.print_last(&tail.events, limit);
    // Records in the log that this client has seen (printed or filtered out): the log only
    // grows, and every record appended is streamed, so after a reconnect the newest
    // `total - seen` are the ones it missed.
    let mut seen = tail.total;
    let mut cursor = Some(tail.cursor);
    loop {
        if let Some(from) = cursor.take() {
            let types = ["audit".to_owned()];
            let streamed = admin.events(&types, Some(&from), |e| match e.kind {
                EventKind::Audit {
                    action,
                    success,
                    user,
                    message,
                    timestamp,
                    details,
                    ..
                } => {
                    seen += 1;
                    printer.print(&AuditEntry {
                        timestamp,
                        action,
                        status: if success {
                            Outcome::Success
                        } else {
                            Outcome::Failure
                        },
                        message,
                        user,
                        details,
                    });
                    true
                }
                // Restarted, or this client fell behind: catch up from the log.
                EventKind::Resync { .. } | EventKind::Dropped { .. } => false,
                _ => true,
            });
            tokio::select! {
                () = stop.as_mut() => return Ok(()),
                r = streamed => match r {
                    Ok(()) => {}
                    Err(e) if e.is_retryable() => {}
                    Err(e) => return Err(e),
                },
            }
        }
        // Wait for the gateway, then print what was appended since.
        let mut said = false;
        let tail = loop {
            match admin.audit(API_TAIL).await {
                Ok(t) => break t,
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e),
            }
            if !said {
                eprintln!("conduit: the gateway is not answering; waiting for it (Ctrl-C to stop)");
                said = true;
            }
            tokio::select! {
                () = stop.as_mut() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
        let missed = usize::try_from(tail.total.saturating_sub(seen)).unwrap_or(usize::MAX);
        if missed > tail.events.len() {
            eprintln!(
                "conduit: warning: {} record(s) were appended while following, more than the gateway gives at once; `conduit logs --since` reads them all",
                missed
            );
        }
        let start = tail.events.len().saturating_sub(missed);
        tail.events[start..].iter().for_each(|e| printer.print(e));
        seen = tail.total;
        cursor = Some(tail.cursor);
    }
}
