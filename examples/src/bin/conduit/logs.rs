//! `conduit logs`: the audit log, filtered; `--follow` keeps printing what is appended.

use std::process::ExitCode;

use conduit::audit::{AuditEvent, LogFilter, LogFollower};

use crate::settings::Context;
use crate::signal::shutdown;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Only this action (service_register, health_change, cert_issue, …).
    #[arg(long)]
    action: Option<String>,
    /// Only events at or after this time (YYYY-MM-DDTHH:MM:SSZ).
    #[arg(long)]
    since: Option<String>,
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

pub(crate) async fn logs(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    let mut filter = LogFilter::default();
    filter.action = a.action;
    filter.since = a.since;
    let print = |e: &AuditEvent| {
        if a.json {
            println!("{}", e.to_line());
        } else {
            println!(
                "{} {:<20} {:<8} {:<10} {}",
                e.timestamp(),
                e.action(),
                e.status().as_str(),
                e.user(),
                e.message()
            );
        }
    };
    let path = ctx.state.audit_log();
    if !a.follow {
        filter.limit = a.limit;
        let (events, bad) = conduit::audit::read_log(&path, &filter)?;
        events.iter().for_each(print);
        if !bad.is_empty() {
            eprintln!(
                "conduit: warning: {} unreadable line(s) in the audit log (`conduit audit verify` checks the sealed chain)",
                bad.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // One reader from the first byte on: what is there now, then what is appended, each
    // line once.
    let mut follower = LogFollower::from_start(&path, filter);
    let mut first = true;
    let stop = shutdown();
    tokio::pin!(stop);
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
        batch.iter().skip(skip).for_each(print);
    }
}
