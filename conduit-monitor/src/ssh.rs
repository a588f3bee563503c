//! A remote server over one multiplexed SSH connection (the system `ssh`, ControlMaster).

use std::path::PathBuf;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};
use tokio::sync::Mutex;

use crate::host::{disk_sample, host_sample};
use crate::proc::{
    CpuTracker, parse_df, parse_loadavg, parse_meminfo, parse_net_dev, parse_stat, parse_uptime,
};
use crate::{MetricSource, MonitorError, RemoteTarget, Sample, smi};

/// What runs on the remote side: /proc files, `df`, and `nvidia-smi` when present, each
/// after a marker line. One round trip per sample on the shared connection.
fn script() -> String {
    format!(
        "for f in stat loadavg meminfo uptime net/dev; do echo \"==> $f\"; cat /proc/$f 2>/dev/null; done; \
         echo '==> df'; df -P -B1 -x tmpfs -x devtmpfs -x overlay -x squashfs 2>/dev/null; \
         echo '==> gpu'; if command -v nvidia-smi >/dev/null 2>&1; then {} 2>/dev/null; fi; true",
        smi::query_command()
    )
}

/// Splits the script's output into (section, text).
fn sections(output: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("==> ") {
            out.push((name, String::new()));
        } else if let Some((_, text)) = out.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// The same host metrics as [`crate::HostSource`], and GPUs through `nvidia-smi` when the
/// server has one, from a remote server over SSH: `BatchMode` (never a prompt), a 5 s connect
/// timeout, host keys checked strictly (an unknown or changed key is an error, never trusted
/// silently). The connection is kept open and reopened when it drops.
#[derive(Debug)]
pub struct SshSource {
    target: RemoteTarget,
    name: String,
    keyfile: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    connect_timeout: Duration,
    session: Mutex<Option<Session>>,
    previous: CpuTracker,
}

impl SshSource {
    /// A source for `target`, with ssh's own configuration (keys, known_hosts).
    pub fn new(target: RemoteTarget) -> Self {
        Self {
            name: format!("ssh:{}", target.name),
            target,
            keyfile: None,
            known_hosts: None,
            connect_timeout: Duration::from_secs(5),
            session: Mutex::new(None),
            previous: CpuTracker::default(),
        }
    }

    /// Uses this private key.
    pub fn with_keyfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.keyfile = Some(path.into());
        self
    }

    /// Checks host keys against this known_hosts file (instead of ~/.ssh/known_hosts).
    pub fn with_known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.known_hosts = Some(path.into());
        self
    }

    /// The SSH port (default 22).
    pub fn with_port(mut self, port: u16) -> Self {
        self.target.port = Some(port);
        self
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> MonitorError {
        MonitorError::Unavailable {
            source_name: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    async fn connect(&self) -> Result<Session, MonitorError> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Strict)
            .connect_timeout(self.connect_timeout);
        if let Some(user) = &self.target.user {
            b.user(user.clone());
        }
        if let Some(port) = self.target.port {
            b.port(port);
        }
        if let Some(key) = &self.keyfile {
            b.keyfile(key);
        }
        if let Some(known) = &self.known_hosts {
            b.user_known_hosts_file(known);
        }
        b.connect(&self.target.host)
            .await
            .map_err(|e| self.unavailable(e))
    }

    async fn run(&self) -> Result<String, MonitorError> {
        let mut guard = self.session.lock().await;
        if let Some(session) = guard.as_ref()
            && session.check().await.is_err()
        {
            *guard = None;
        }
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        let Some(session) = guard.as_ref() else {
            return Err(self.unavailable("no session"));
        };
        let output = session
            .raw_command(script())
            .output()
            .await
            .map_err(|e| self.unavailable(e))?;
        if !output.status.success() {
            return Err(self.unavailable(format!(
                "remote script failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Samples from the remote script's output (public for tests of the parsing).
    #[doc(hidden)]
    pub fn parse_output(&self, output: &str) -> Vec<Sample> {
        let target = self.target.name.as_str();
        let mut stat = None;
        let (mut load, mut memory, mut uptime, mut net) = (None, Default::default(), None, None);
        let mut disks = Vec::new();
        let mut gpus = Vec::new();
        for (section, text) in sections(output) {
            match section {
                "stat" => stat = parse_stat(&text),
                "loadavg" => load = parse_loadavg(&text),
                "meminfo" => memory = parse_meminfo(&text),
                "uptime" => uptime = parse_uptime(&text),
                "net/dev" => net = parse_net_dev(&text),
                "df" => disks = parse_df(&text),
                "gpu" => gpus = smi::parse_gpu_csv(target, &text),
                _ => {}
            }
        }
        let (usage, cores) = match stat {
            Some((times, cores)) => (self.previous.usage(times), cores),
            None => (None, 0),
        };
        let mut out = vec![host_sample(
            target, usage, cores, load, &memory, uptime, net,
        )];
        out.extend(disks.iter().map(|d| disk_sample(target, d)));
        out.extend(gpus);
        out
    }
}

#[async_trait::async_trait]
impl MetricSource for SshSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn sample(&self) -> Result<Vec<Sample>, MonitorError> {
        let output = self.run().await?;
        Ok(self.parse_output(&output))
    }
}
