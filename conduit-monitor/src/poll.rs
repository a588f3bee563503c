//! The poller: every source on an interval, concurrently, each with its own timeout; alerts
//! with hysteresis.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::{MetricSource, MonitorError, Sample, SampleKind};

/// Alert thresholds. A value above `*_above` raises the alert; it clears only once the
/// value is `hysteresis` below the threshold again, so a value hovering at the threshold does
/// not flap.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// GPU temperature, °C (default 85).
    pub gpu_temperature_above: f64,
    /// GPU memory used / total, 0-1 (default 0.90).
    pub vram_above: f64,
    /// Disk used share, 0-1 (default 0.90).
    pub disk_above: f64,
    /// How far below a threshold a value must fall to clear (°C for temperature, share
    /// for ratios: default 5 °C and 0.05).
    pub hysteresis_celsius: f64,
    /// See `hysteresis_celsius`.
    pub hysteresis_ratio: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            gpu_temperature_above: 85.0,
            vram_above: 0.90,
            disk_above: 0.90,
            hysteresis_celsius: 5.0,
            hysteresis_ratio: 0.05,
        }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlertKind {
    /// A GPU is hotter than the threshold.
    GpuTemperature,
    /// A GPU's memory is fuller than the threshold.
    Vram,
    /// A disk is fuller than the threshold.
    Disk,
    /// A container's health check fails.
    ContainerUnhealthy,
    /// A container restarted since the previous round (or is restarting).
    ContainerRestarting,
}

/// An alert raised or cleared (the façade audits these as `monitor_alert`).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// What it is about.
    pub kind: AlertKind,
    /// Raised (true) or cleared (false).
    pub raised: bool,
    /// The target (`local`, a server's name).
    pub target: String,
    /// The object within the target: a GPU's uuid, a mount, a container name.
    pub subject: String,
    /// The value that crossed, when numeric.
    pub value: Option<f64>,
    /// One line for people.
    pub message: String,
}

/// Alert state across rounds.
#[derive(Debug, Default)]
pub struct AlertState {
    thresholds: Thresholds,
    active: HashMap<(AlertKind, String, String), bool>,
    restarts: HashMap<(String, String), f64>,
}

impl AlertState {
    /// Alerting with these thresholds.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            ..Self::default()
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one private helper, called with literals"
    )]
    fn level(
        &mut self,
        kind: AlertKind,
        target: &str,
        subject: &str,
        value: f64,
        above: f64,
        margin: f64,
        what: &str,
        out: &mut Vec<Alert>,
    ) {
        let active = self.is_active(kind, target, subject);
        let now = if active {
            value > above - margin
        } else {
            value > above
        };
        out.extend(
            self.transition(kind, target, subject, now, Some(value), |raised| {
                if raised {
                    format!("{target} {subject}: {what} {value:.2} above {above:.2}")
                } else {
                    format!("{target} {subject}: {what} back to {value:.2}")
                }
            }),
        );
    }

    fn flag(
        &mut self,
        kind: AlertKind,
        target: &str,
        subject: &str,
        now: bool,
        what: &str,
        out: &mut Vec<Alert>,
    ) {
        out.extend(self.transition(kind, target, subject, now, None, |raised| {
            format!(
                "{target} {subject}: {}{what}",
                if raised { "" } else { "no longer " }
            )
        }));
    }

    fn is_active(&self, kind: AlertKind, target: &str, subject: &str) -> bool {
        let key = (kind, target.to_owned(), subject.to_owned());
        self.active.get(&key).copied().unwrap_or(false)
    }

    /// Records whether an alert is on now; the `Alert` when that changed.
    fn transition(
        &mut self,
        kind: AlertKind,
        target: &str,
        subject: &str,
        now: bool,
        value: Option<f64>,
        message: impl FnOnce(bool) -> String,
    ) -> Option<Alert> {
        let key = (kind, target.to_owned(), subject.to_owned());
        let active = self.active.insert(key, now).unwrap_or(false);
        (now != active).then(|| Alert {
            kind,
            raised: now,
            target: target.to_owned(),
            subject: subject.to_owned(),
            value,
            message: message(now),
        })
    }

    /// The alerts this round of samples raises or clears.
    pub fn evaluate(&mut self, samples: &[Sample]) -> Vec<Alert> {
        let t = self.thresholds.clone();
        let mut out = Vec::new();
        for s in samples {
            match s.kind {
                SampleKind::Gpu => {
                    let subject = s.text("uuid").map_or_else(
                        || format!("gpu{}", s.number("index").unwrap_or(-1.0)),
                        str::to_owned,
                    );
                    if let Some(temp) = s.number("temperature_celsius") {
                        self.level(
                            AlertKind::GpuTemperature,
                            &s.target,
                            &subject,
                            temp,
                            t.gpu_temperature_above,
                            t.hysteresis_celsius,
                            "GPU temperature °C",
                            &mut out,
                        );
                    }
                    if let (Some(used), Some(total)) = (
                        s.number("memory_used_bytes"),
                        s.number("memory_total_bytes"),
                    ) && total > 0.0
                    {
                        self.level(
                            AlertKind::Vram,
                            &s.target,
                            &subject,
                            used / total,
                            t.vram_above,
                            t.hysteresis_ratio,
                            "VRAM use",
                            &mut out,
                        );
                    }
                }
                SampleKind::Disk => {
                    if let (Some(ratio), Some(mount)) = (s.number("used_ratio"), s.text("mount")) {
                        let mount = mount.to_owned();
                        self.level(
                            AlertKind::Disk,
                            &s.target,
                            &mount,
                            ratio,
                            t.disk_above,
                            t.hysteresis_ratio,
                            "disk use",
                            &mut out,
                        );
                    }
                }
                SampleKind::Container => {
                    let Some(name) = s.text("name").map(str::to_owned) else {
                        continue;
                    };
                    let unhealthy = s.text("health") == Some("unhealthy");
                    self.flag(
                        AlertKind::ContainerUnhealthy,
                        &s.target,
                        &name,
                        unhealthy,
                        "unhealthy",
                        &mut out,
                    );
                    let count = s.number("restart_count").unwrap_or(0.0);
                    let key = (s.target.clone(), name.clone());
                    let restarted = self
                        .restarts
                        .get(&key)
                        .is_some_and(|before| count > *before);
                    self.restarts.insert(key, count);
                    let restarting = restarted || s.text("state") == Some("restarting");
                    self.flag(
                        AlertKind::ContainerRestarting,
                        &s.target,
                        &name,
                        restarting,
                        "restarting",
                        &mut out,
                    );
                }
                _ => {}
            }
        }
        out
    }
}

/// One round of the poller.
#[derive(Debug, Clone)]
pub struct Round {
    /// Every sample of every source that answered in time.
    pub samples: Vec<Sample>,
    /// Sources that failed or timed out, with why.
    pub errors: Vec<(String, String)>,
    /// Alerts raised or cleared by this round.
    pub alerts: Vec<Alert>,
}

/// Samples every source on an interval, concurrently, each under its own timeout: a slow or
/// dead source never delays the others.
#[derive(Debug)]
pub struct Poller {
    sources: Vec<Arc<dyn MetricSource>>,
    interval: Duration,
    timeout: Duration,
    alerts: AlertState,
}

impl Poller {
    /// A poller with the default interval (5 s), per-source timeout (4 s) and thresholds.
    pub fn new(sources: Vec<Arc<dyn MetricSource>>) -> Self {
        Self {
            sources,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(4),
            alerts: AlertState::new(Thresholds::default()),
        }
    }

    /// Time between rounds.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How long each source may take per round.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Alert thresholds.
    pub fn with_thresholds(mut self, thresholds: Thresholds) -> Self {
        self.alerts = AlertState::new(thresholds);
        self
    }

    /// One round now.
    pub async fn poll_once(&mut self) -> Round {
        let mut set = JoinSet::new();
        for source in &self.sources {
            let source = Arc::clone(source);
            let timeout = self.timeout;
            set.spawn(async move {
                let name = source.name().to_owned();
                let result = match tokio::time::timeout(timeout, source.sample()).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                (name, result)
            });
        }
        let mut samples = Vec::new();
        let mut errors = Vec::new();
        while let Some(done) = set.join_next().await {
            match done {
                Ok((_, Ok(s))) => samples.extend(s),
                Ok((name, Err(e))) => errors.push((name, e)),
                Err(e) => errors.push(("?".into(), e.to_string())),
            }
        }
        samples.sort_by(|a, b| (&a.target, a.kind).cmp(&(&b.target, b.kind)));
        let alerts = self.alerts.evaluate(&samples);
        Round {
            samples,
            errors,
            alerts,
        }
    }

    /// Polls until `shutdown` completes, sending each round to `rounds` (a full channel
    /// drops the round rather than delaying the next).
    pub async fn run(mut self, rounds: mpsc::Sender<Round>, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {
                    let round = self.poll_once().await;
                    for alert in &round.alerts {
                        tracing::warn!(target_name = %alert.target, subject = %alert.subject, raised = alert.raised, "{}", alert.message);
                    }
                    if rounds.try_send(round).is_err() && rounds.is_closed() {
                        return;
                    }
                }
            }
        }
    }
}

/// A remote server to monitor over SSH: `[user@]host[:port]`, with a display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTarget {
    /// Login user (default: ssh's own default).
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// SSH port (default 22).
    pub port: Option<u16>,
    /// The name samples carry as their target.
    pub name: String,
}

impl RemoteTarget {
    /// Parses `CONDUIT_REMOTE_SERVERS`: comma-separated `host:name` pairs (the original's
    /// form, `10.0.1.20:gpu-server`) or `user@host` entries (named after the host).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, MonitorError> {
        text.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(Self::parse)
            .collect()
    }

    /// One entry: `host:name`, `user@host`, `user@host:name`.
    pub fn parse(entry: &str) -> Result<Self, MonitorError> {
        let bad = |problem: &'static str| MonitorError::InvalidSetting {
            key: "monitor.ssh",
            value: entry.to_owned(),
            problem,
        };
        let (user, rest) = match entry.split_once('@') {
            Some((u, r)) => (Some(u.to_owned()), r),
            None => (None, entry),
        };
        let (host, name) = match rest.split_once(':') {
            Some((h, n)) => (h, n),
            None => (rest, rest),
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
        if user.as_deref().is_some_and(|u| !ok(u)) {
            return Err(bad("the user may hold letters, digits, '.', '-' and '_'"));
        }
        if !ok(host) || host.starts_with('-') {
            return Err(bad(
                "the host may hold letters, digits, '.', '-' and '_' and may not start with '-'",
            ));
        }
        if !ok(name) {
            return Err(bad("the name may hold letters, digits, '.', '-' and '_'"));
        }
        Ok(Self {
            user,
            host: host.to_owned(),
            port: None,
            name: name.to_owned(),
        })
    }
}
