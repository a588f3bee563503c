//! `conduit events`: the running gateway's live event stream.

use std::process::ExitCode;

use conduit::events::{Event, EventKind};

use crate::settings::Context;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// One JSON object per line (the API's events).
    #[arg(long)]
    json: bool,
    /// Only these types, comma-separated (service, health, certificate, monitor, audit,
    /// alert, access).
    #[arg(long, value_delimiter = ',')]
    types: Vec<String>,
    /// Resume after this event id (what a previous run printed last).
    #[arg(long)]
    after: Option<String>,
}

fn line(e: &Event) -> String {
    let what = match &e.kind {
        EventKind::Service {
            change,
            domain,
            revision,
            ..
        } => format!("{domain} {change} (revision {revision})"),
        EventKind::Health {
            service,
            upstream,
            healthy,
            reason,
        } => format!(
            "{service} upstream {upstream} is {}: {reason}",
            if *healthy { "up" } else { "down" }
        ),
        EventKind::Certificate {
            change, message, ..
        } => format!("{change}: {message}"),
        EventKind::Monitor { message, .. } => message.clone(),
        EventKind::Audit {
            action,
            success,
            user,
            message,
            ..
        } => format!(
            "{action} {} by {user}: {message}",
            if *success { "ok" } else { "FAILED" }
        ),
        EventKind::Alert { message, .. } | EventKind::Access { message, .. } => message.clone(),
        EventKind::Resync { reason } => format!("re-read the state: {reason}"),
        EventKind::Dropped { reason } => format!("disconnected: {reason}"),
        _ => String::new(),
    };
    format!("{} {:<11} {what}", e.at, e.type_name())
}

pub(crate) async fn events(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    ctx.admin()
        .events(&a.types, a.after.as_deref(), |e| {
            if a.json {
                println!("{}", serde_json::to_string(&e).unwrap_or_default());
            } else {
                println!("{}", line(&e));
            }
            !matches!(e.kind, EventKind::Dropped { .. })
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}
