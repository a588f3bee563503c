//! `conduit logs --service NAME`: one service's story in time order: its requests from the
//! proxy's access log (`access.log` and its rotated files), its audit records (registration,
//! health, certificates) and, when the service runs in containers (labelled
//! `conduit.service=NAME`, or publishing one of its upstream ports) and `[monitor]` watches
//! Docker, what those containers write; `--follow` keeps printing all of them.

use std::collections::HashMap;
use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use conduit::api::AuditEntry;
use conduit::registry::Registry as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::settings::Context;
use crate::signal::shutdown;

/// One access-log line, as the proxy writes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct Access {
    time: String,
    client: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    host: String,
    upstream: Option<String>,
    method: String,
    path: String,
    status: u16,
    bytes: u64,
    ttfb_us: u64,
    duration_us: u64,
}

/// A line of the merged view.
enum Line {
    Access(Access),
    Audit(AuditEntry),
    Container(conduit::monitor::ContainerLine),
}

impl Line {
    fn time(&self) -> OffsetDateTime {
        let t = match self {
            Self::Access(a) => &a.time,
            Self::Audit(e) => &e.timestamp,
            Self::Container(c) => return c.time,
        };
        OffsetDateTime::parse(t, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn print(&self, json: bool) {
        match (self, json) {
            (Self::Access(a), true) => {
                println!("{}", serde_json::json!({"source": "access", "record": a}))
            }
            (Self::Audit(e), true) => {
                println!("{}", serde_json::json!({"source": "audit", "record": e}))
            }
            (Self::Container(c), true) => println!(
                "{}",
                serde_json::json!({"source": "container", "record": {
                    "time": c.time.format(&Rfc3339).unwrap_or_default(),
                    "container": c.container,
                    "stream": c.stream,
                    "text": c.text,
                }})
            ),
            (Self::Container(c), false) => println!(
                "{} {} {}: {}",
                c.time.format(&Rfc3339).unwrap_or_default(),
                c.container,
                c.stream,
                c.text
            ),
            (Self::Access(a), false) => println!(
                "{} access  {} {} {} {} bytes, first byte {:.1} ms, {:.1} ms, from {}{}{}",
                a.time,
                a.method,
                a.path,
                a.status,
                a.bytes,
                a.ttfb_us as f64 / 1e3,
                a.duration_us as f64 / 1e3,
                a.client,
                a.peer
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default(),
                a.upstream
                    .as_deref()
                    .map(|u| format!(" via {u}"))
                    .unwrap_or_default()
            ),
            (Self::Audit(e), false) => println!(
                "{} audit   {} {} {}: {}",
                e.timestamp,
                e.action,
                e.status.as_str(),
                e.user,
                e.message
            ),
        }
    }
}

/// `--since`: a duration back from now (`1h`, `30m`) or an RFC 3339 time.
pub(crate) fn parse_since(text: &str) -> anyhow::Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let back = humantime::parse_duration(text).with_context(|| {
        format!("--since {text:?}: give a duration (1h, 30m) or a time (2026-11-29T10:00:00Z)")
    })?;
    Ok(OffsetDateTime::now_utc() - back)
}

/// What `--service` selects: the access lines for its domain, the audit records naming it.
struct Selector {
    name: String,
    domain: String,
    since: Option<OffsetDateTime>,
}

impl Selector {
    fn access(&self, line: &str) -> Option<Line> {
        let a: Access = serde_json::from_str(line).ok()?;
        (a.host.eq_ignore_ascii_case(&self.domain)).then_some(Line::Access(a))
    }

    fn audit(&self, e: AuditEntry) -> Option<Line> {
        let named = |k: &str| e.details.get(k).and_then(|v| v.as_str());
        let ours = named("name") == Some(self.name.as_str())
            || named("service") == Some(self.name.as_str())
            || named("domain") == Some(self.domain.as_str());
        ours.then_some(Line::Audit(e))
    }

    fn admits(&self, l: &Line) -> bool {
        self.since.is_none_or(|s| l.time() >= s)
    }
}

/// The access log's files, oldest first: `access.log.N` … `access.log.1`, `access.log`.
fn access_files(state: &Path) -> Vec<PathBuf> {
    let current = state.join("access.log");
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(state)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix("access.log.")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    rotated
        .into_iter()
        .map(|(_, p)| p)
        .chain(std::iter::once(current))
        .collect()
}

/// Reads what was appended to `path` since `offsets[path]` (from the start when the file
/// shrank: it was rotated), whole lines only.
fn read_new(path: &Path, offsets: &mut HashMap<PathBuf, u64>) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let at = offsets.entry(path.to_owned()).or_insert(0);
    if len < *at {
        *at = 0;
    }
    if f.seek(std::io::SeekFrom::Start(*at)).is_err() {
        return Vec::new();
    }
    let mut text = String::new();
    if f.read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    *at += complete as u64;
    text[..complete].lines().map(str::to_owned).collect()
}

pub(crate) async fn service_logs(
    ctx: &Context,
    name: &str,
    since: Option<&str>,
    json: bool,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let registry = crate::register::registry(ctx).await?;
    let service: conduit::registry::ServiceName = name
        .parse()
        .with_context(|| format!("{name:?} is not a service name"))?;
    let record = registry.get(&service).await?;
    let domain = match &record {
        Some(r) => r.domain().as_str().to_owned(),
        None => format!("{name}.{}", ctx.config.zone),
    };
    let ports: Vec<u16> = record
        .iter()
        .flat_map(|r| r.endpoints().iter().map(conduit::registry::Endpoint::port))
        .collect();
    let sel = Selector {
        name: name.to_owned(),
        domain,
        since: since.map(parse_since).transpose()?,
    };
    let state = ctx.state.path();
    let audit_path = ctx.state.audit_log();
    let mut offsets = HashMap::new();
    let mut lines: Vec<Line> = Vec::new();
    for f in access_files(state) {
        lines.extend(
            read_new(&f, &mut offsets)
                .iter()
                .filter_map(|l| sel.access(l)),
        );
    }
    lines.extend(
        read_new(&audit_path, &mut offsets)
            .iter()
            .filter_map(|l| serde_json::from_str::<AuditEntry>(l).ok())
            .filter_map(|e| sel.audit(e)),
    );
    let containers = Containers::find(ctx, name, &ports).await;
    lines.extend(containers.history(sel.since).await);
    lines.retain(|l| sel.admits(l));
    lines.sort_by_key(Line::time);
    lines.iter().for_each(|l| l.print(json));
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let stop = shutdown();
    tokio::pin!(stop);
    let access = state.join("access.log");
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let _streams = containers.follow(tx);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(ExitCode::SUCCESS),
            Some(line) = rx.recv() => {
                Line::Container(line).print(json);
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let mut batch: Vec<Line> = read_new(&access, &mut offsets)
            .iter()
            .filter_map(|l| sel.access(l))
            .collect();
        batch.extend(
            read_new(&audit_path, &mut offsets)
                .iter()
                .filter_map(|l| serde_json::from_str::<AuditEntry>(l).ok())
                .filter_map(|e| sel.audit(e)),
        );
        batch.sort_by_key(Line::time);
        batch.iter().for_each(|l| l.print(json));
        // A pipe buffers otherwise.
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
}

/// The service's containers, when `[monitor]` watches Docker (or `docker_socket` is set).
struct Containers {
    docker: Option<conduit::monitor::DockerSource>,
    names: Vec<String>,
}

impl Containers {
    async fn find(ctx: &Context, name: &str, ports: &[u16]) -> Self {
        use conduit::config::MonitorSource;
        let m = &ctx.config.monitor;
        if !m.sources.contains(&MonitorSource::Docker) && m.docker_socket.is_none() {
            return Self {
                docker: None,
                names: Vec::new(),
            };
        }
        let docker = match &m.docker_socket {
            Some(p) => conduit::monitor::DockerSource::new(&p.to_string_lossy()),
            None => conduit::monitor::DockerSource::from_env(),
        };
        let Ok(docker) = docker else {
            return Self {
                docker: None,
                names: Vec::new(),
            };
        };
        let names = match docker.service_containers(name, ports).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!(
                    "conduit: warning: containers not read ({e}); showing the gateway's logs only"
                );
                Vec::new()
            }
        };
        Self {
            docker: Some(docker),
            names,
        }
    }

    /// What they wrote (since `since`).
    async fn history(&self, since: Option<OffsetDateTime>) -> Vec<Line> {
        use futures_util::StreamExt as _;
        let mut out = Vec::new();
        let Some(docker) = &self.docker else {
            return out;
        };
        for n in &self.names {
            let Ok(mut lines) =
                docker.container_lines(n, since.map(OffsetDateTime::unix_timestamp), false)
            else {
                continue;
            };
            while let Some(l) = lines.next().await {
                match l {
                    Ok(l) => out.push(Line::Container(l)),
                    Err(e) => {
                        eprintln!("conduit: warning: output of {n} not read: {e}");
                        break;
                    }
                }
            }
        }
        out
    }

    /// Streams what they write from now on into `tx`; the tasks end with the returned set.
    fn follow(
        &self,
        tx: tokio::sync::mpsc::Sender<conduit::monitor::ContainerLine>,
    ) -> tokio::task::JoinSet<()> {
        use futures_util::StreamExt as _;
        let mut set = tokio::task::JoinSet::new();
        let Some(docker) = &self.docker else {
            return set;
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        for n in &self.names {
            let Ok(mut lines) = docker.container_lines(n, Some(now), true) else {
                continue;
            };
            let tx = tx.clone();
            set.spawn(async move {
                while let Some(Ok(l)) = lines.next().await {
                    if tx.send(l).await.is_err() {
                        return;
                    }
                }
            });
        }
        set
    }
}
