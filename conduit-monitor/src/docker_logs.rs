//! A service's containers and what they write, through the Docker API (podman's too): the
//! containers labelled `conduit.service=NAME` or publishing one of the service's upstream
//! ports, and their output with the engine's own timestamps (`conduit logs --service`).

use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::query_parameters::{ListContainersOptionsBuilder, LogsOptionsBuilder};
use futures_util::{Stream, StreamExt as _};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{DockerSource, MonitorError};

/// The label that ties a container to a registered service.
pub const SERVICE_LABEL: &str = "conduit.service";

/// One line a container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerLine {
    /// The container's name.
    pub container: String,
    /// When the engine received it.
    pub time: OffsetDateTime,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The line, without its end.
    pub text: String,
}

/// A container's lines as they come.
pub type ContainerLines = Pin<Box<dyn Stream<Item = Result<ContainerLine, MonitorError>> + Send>>;

impl DockerSource {
    /// The running containers of service `name`: labelled `conduit.service=NAME`, or
    /// publishing one of `ports` on the host. Names, sorted.
    ///
    /// # Errors
    /// [`MonitorError::Backend`] when the API does not answer.
    pub async fn service_containers(
        &self,
        name: &str,
        ports: &[u16],
    ) -> Result<Vec<String>, MonitorError> {
        let docker = self.client()?;
        let list = docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(false).build()))
            .await
            .map_err(|e| self.unavailable(e))?;
        let mut names: Vec<String> = list
            .into_iter()
            .filter(|c| {
                let labelled = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_LABEL))
                    .is_some_and(|v| v == name);
                let published = c
                    .ports
                    .iter()
                    .flatten()
                    .any(|p| p.public_port.is_some_and(|port| ports.contains(&port)));
                labelled || published
            })
            .filter_map(|c| {
                c.names?
                    .first()
                    .map(|n| n.trim_start_matches('/').to_owned())
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// What `container` wrote since `since` (Unix seconds; all when `None`); with `follow`
    /// the stream goes on with each new line.
    ///
    /// # Errors
    /// Each item: [`MonitorError::Backend`] when the API fails.
    pub fn container_lines(
        &self,
        container: &str,
        since: Option<i64>,
        follow: bool,
    ) -> Result<ContainerLines, MonitorError> {
        let docker = self.client()?;
        let mut options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(follow);
        if let Some(s) = since {
            options = options.since(i32::try_from(s).unwrap_or(i32::MAX));
        }
        let name = container.to_owned();
        let socket = self.socket_name();
        let stream = docker
            .logs(container, Some(options.build()))
            .filter_map(move |item| {
                let name = name.clone();
                let socket = socket.clone();
                async move {
                    match item {
                        Err(e) => Some(Err(MonitorError::Backend {
                            source_name: "docker".into(),
                            what: socket,
                            source: Box::new(e),
                        })),
                        Ok(out) => parse(&name, &out).map(Ok),
                    }
                }
            });
        Ok(Box::pin(stream))
    }
}

/// A log frame (`2026-11-29T10:00:00.123456789Z text`) as a line.
fn parse(container: &str, out: &LogOutput) -> Option<ContainerLine> {
    let (stream, bytes) = match out {
        LogOutput::StdOut { message } | LogOutput::Console { message } => ("stdout", message),
        LogOutput::StdErr { message } => ("stderr", message),
        LogOutput::StdIn { .. } => return None,
    };
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches(['\n', '\r']);
    let (stamp, rest) = text.split_once(' ').unwrap_or((text, ""));
    let time = OffsetDateTime::parse(stamp, &Rfc3339).ok()?;
    Some(ContainerLine {
        container: container.to_owned(),
        time,
        stream,
        text: rest.to_owned(),
    })
}
