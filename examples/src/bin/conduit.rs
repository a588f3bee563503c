//! `conduit`: the gateway and its command line.
//!
//! ```text
//! conduit setup                         state directory, CA, empty registry; trust commands
//! conduit serve [--dns-listen A]… [--https-listen A]… [--http-listen A]… [--advertise IP]…
//!               [--forward A]… [--admin-socket PATH]
//! conduit register --name N --upstream HOST:PORT [--upstream …] [--health PATH] [--domain D]
//!                  [--no-proxy] [--no-tls]          (--host is an alias of --upstream)
//! conduit deregister --name N
//! conduit status [--json]               live from a running gateway, else from the files
//! conduit logs [--action A] [--since T] [--limit N] [--json]
//! conduit audit verify [--level structural|full|signatures] [--json]
//! conduit certs export-ca
//! conduit dns list
//! ```
//! `--flag value` and `--flag=value` both work. The state directory is `--dir`, else
//! `$CONDUIT_CONFIG_DIR`, else `~/.config/qp-conduit`. Environment: `CONDUIT_DOMAIN`
//! (zone, default `internal`), `CONDUIT_DNS_PORT` (5353), `CONDUIT_HTTPS_PORT` (8443),
//! `CONDUIT_DNS_UPSTREAM` (forwarders, comma-separated), `CONDUIT_HEALTH_INTERVAL` (the
//! default health interval of `register`, e.g. `30s`). Flags win over the environment.
//! Exit codes: 0 ok, 1 failure, 2 usage. Errors are one line.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program"
)]

#[path = "../signal.rs"]
mod signal;
use signal::shutdown;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use conduit::audit::{AuditEvent, AuditSink, CapsuleStore, Level, LogFilter, SealKey};
use conduit::audited::AuditedRegistry;
use conduit::gateway::{self, Gateway, GatewayConfig};
use conduit::registry::{
    DomainName, Endpoint, FileRegistry, HealthCheck, ListFilter, Registry, Routing, ServiceName,
    ServiceRecord, default_config_dir,
};

#[derive(Parser)]
#[command(
    name = "conduit",
    version,
    about = "Conduit: DNS, TLS, routes, health checks and an audit trail for internal services"
)]
struct Cli {
    /// The state directory [env: CONDUIT_CONFIG_DIR; default ~/.config/qp-conduit].
    #[arg(long, global = true, env = "CONDUIT_CONFIG_DIR")]
    dir: Option<PathBuf>,
    /// The DNS zone [env: CONDUIT_DOMAIN; else `domain` in conduit.toml; default: internal].
    #[arg(long, global = true, env = "CONDUIT_DOMAIN")]
    domain_zone: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the state directory (0700), the CA and an empty registry.
    Setup,
    /// Runs the gateway: DNS, HTTPS proxy, health checks, audit.
    Serve(Serve),
    /// Registers a service (takes effect in a running gateway at once).
    Register(Register),
    /// Deregisters a service.
    Deregister {
        /// The service name.
        #[arg(long)]
        name: String,
    },
    /// Services, upstream health, certificate expiry.
    Status {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// The audit log.
    Logs {
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
    },
    /// Hosts, GPUs and containers: one round, or `--watch` every 5 s.
    Monitor(MonitorArgs),
    /// The sealed audit chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// DNS.
    Dns {
        #[command(subcommand)]
        command: DnsCommand,
    },
}

#[derive(Args)]
struct Serve {
    /// DNS listener (UDP+TCP), repeatable [default 127.0.0.1:$CONDUIT_DNS_PORT or :5353].
    #[arg(long)]
    dns_listen: Vec<SocketAddr>,
    /// HTTPS listener, repeatable [default 127.0.0.1:$CONDUIT_HTTPS_PORT or :8443].
    #[arg(long)]
    https_listen: Vec<SocketAddr>,
    /// Plain-HTTP listener redirecting to HTTPS, repeatable.
    #[arg(long)]
    http_listen: Vec<SocketAddr>,
    /// The address DNS answers for proxied names, repeatable [default: 127.0.0.1].
    #[arg(long)]
    advertise: Vec<IpAddr>,
    /// A resolver for names outside the zone, repeatable [env: CONDUIT_DNS_UPSTREAM].
    #[arg(long)]
    forward: Vec<SocketAddr>,
    /// The admin API's unix socket [default: DIR/admin.sock].
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// Also serve the admin API on TCP (requires a token: `CONDUIT_ADMIN_TOKEN` or
    /// `--admin-token-file`).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// A file holding the admin API's bearer token.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
}

#[derive(Args)]
struct Register {
    /// The service name (a DNS label).
    #[arg(long)]
    name: String,
    /// An upstream, HOST:PORT or http(s)://HOST:PORT, repeatable.
    #[arg(long, alias = "host", required = true)]
    upstream: Vec<String>,
    /// The health-check path [default: /health].
    #[arg(long)]
    health: Option<String>,
    /// The domain [default: NAME.ZONE].
    #[arg(long)]
    domain: Option<String>,
    /// DNS answers the upstream itself; no proxy, no certificate (TCP services).
    #[arg(long)]
    no_proxy: bool,
    /// No certificate for this service.
    #[arg(long)]
    no_tls: bool,
}

#[derive(Args)]
struct MonitorArgs {
    /// GPUs through NVML (the gateway host's).
    #[arg(long)]
    gpu: bool,
    /// Containers through the Docker API socket [env: CONDUIT_DOCKER_SOCKET].
    #[arg(long)]
    containers: bool,
    /// A remote host over SSH, `USER@HOST[:PORT]`, repeatable (env `CONDUIT_REMOTE_SERVERS`, comma-separated).
    #[arg(long)]
    server: Vec<String>,
    /// JSON samples, one per line.
    #[arg(long)]
    json: bool,
    /// Prometheus text.
    #[arg(long)]
    prometheus: bool,
    /// Again every 5 s until interrupted.
    #[arg(long)]
    watch: bool,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verifies capsules.db like the reference verifier.
    Verify {
        /// How deep.
        #[arg(long, value_enum, default_value = "full")]
        level: VerifyLevel,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum VerifyLevel {
    Structural,
    Full,
    Signatures,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Prints the root certificate (PEM) clients must trust.
    ExportCa,
    /// The certificate expiry of each service (from the running gateway).
    List,
    /// One service's certificate, as the running gateway serves it.
    Inspect {
        /// The service name.
        name: String,
    },
    /// The commands that make the root trusted on each platform.
    Trust,
    /// A new key and certificate for a service (the running gateway serves it at once).
    Rotate {
        /// The service name.
        name: String,
    },
    /// Revokes a service's certificate (CRL) and serves a new one.
    Revoke {
        /// The service name.
        name: String,
    },
}

#[derive(Subcommand)]
enum DnsCommand {
    /// The names served and what they answer.
    List,
    /// Asks the running gateway's DNS server (A and AAAA).
    Resolve {
        /// The name.
        name: String,
        /// The DNS server [default: 127.0.0.1:$CONDUIT_DNS_PORT or :5353].
        #[arg(long)]
        server: Option<SocketAddr>,
    },
}

fn state_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    match &cli.dir {
        Some(d) => Ok(d.clone()),
        None => default_config_dir().context("set CONDUIT_CONFIG_DIR or HOME, or pass --dir"),
    }
}

fn env_port(var: &str, default: u16) -> anyhow::Result<u16> {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{var}={v:?} is not a port")),
        Err(_) => Ok(default),
    }
}

fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "conduit".to_owned())
}

/// The state directory's registry; every change audited (as the OS user).
fn audited_registry(dir: &Path) -> anyhow::Result<AuditedRegistry<FileRegistry>> {
    let log: Arc<dyn AuditSink> = Arc::new(gateway::open_audit(dir)?);
    Ok(AuditedRegistry::new(FileRegistry::open(dir)?, log, user()))
}

async fn audit_cli(
    dir: &Path,
    action: &str,
    ok: bool,
    message: String,
    details: serde_json::Value,
) -> anyhow::Result<()> {
    let log = gateway::open_audit(dir)?;
    let event = conduit::audited::event(action, ok, message, &user(), details)?;
    log.append(event).await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,conduit_proxy::access=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conduit: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("conduit: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `conduit.toml` in the state directory: the lowest layer (then environment, then flags).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    domain: Option<String>,
    dns_listen: Option<Vec<SocketAddr>>,
    https_listen: Option<Vec<SocketAddr>>,
    http_listen: Option<Vec<SocketAddr>>,
    advertise: Option<Vec<IpAddr>>,
    dns_upstream: Option<Vec<SocketAddr>>,
    admin_socket: Option<PathBuf>,
    health_interval: Option<String>,
}

fn file_config(dir: &Path) -> anyhow::Result<FileConfig> {
    let path = dir.join("conduit.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: {}", path.display(), e.to_string().replace('\n', " "))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = state_dir(&cli)?;
    let file = file_config(&dir)?;
    let zone_text = cli
        .domain_zone
        .clone()
        .or_else(|| file.domain.clone())
        .unwrap_or_else(|| "internal".to_owned());
    let zone: DomainName = zone_text.parse().with_context(|| {
        format!("domain {zone_text:?} (CONDUIT_DOMAIN, --domain-zone or conduit.toml)")
    })?;
    match cli.command {
        Command::Setup => setup(&dir, &zone).await,
        Command::Serve(s) => serve(&dir, zone, s, file).await,
        Command::Register(r) => register(&dir, &zone, r, file.health_interval.as_deref()).await,
        Command::Deregister { name } => deregister(&dir, &name).await,
        Command::Status { json } => status(&dir, json).await,
        Command::Logs {
            action,
            since,
            limit,
            json,
            follow,
        } => logs(&dir, action, since, limit, json, follow).await,
        Command::Monitor(m) => monitor(m).await,
        Command::Audit {
            command: AuditCommand::Verify { level, json },
        } => verify(&dir, level, json),
        Command::Certs {
            command: CertsCommand::ExportCa,
        } => {
            let pem = std::fs::read_to_string(gateway::paths::root_pem(&dir))
                .with_context(|| format!("no CA in {} (run `conduit setup`)", dir.display()))?;
            print!("{pem}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs {
            command: CertsCommand::Trust,
        } => {
            let root = gateway::paths::root_pem(&dir);
            for step in conduit::ca::trust_instructions(&root, "Conduit Internal CA") {
                println!("{}:", step.platform);
                for c in step.commands {
                    println!("  {c}");
                }
                if let Some(n) = step.note {
                    println!("  ({n})");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs {
            command: CertsCommand::List,
        } => certs_list(&dir).await,
        Command::Certs {
            command: CertsCommand::Rotate { name },
        } => certs_action(&dir, &name, "rotate").await,
        Command::Certs {
            command: CertsCommand::Revoke { name },
        } => certs_action(&dir, &name, "revoke").await,
        Command::Certs {
            command: CertsCommand::Inspect { name },
        } => certs_inspect(&dir, &zone, &name).await,
        Command::Dns {
            command: DnsCommand::Resolve { name, server },
        } => {
            let server = match server {
                Some(s) => s,
                None => SocketAddr::from(([127, 0, 0, 1], env_port("CONDUIT_DNS_PORT", 5353)?)),
            };
            dns_resolve(server, &name).await
        }
        Command::Dns {
            command: DnsCommand::List,
        } => {
            let reg = FileRegistry::open(&dir)?;
            for rec in reg.list(ListFilter::Active).await? {
                let answer = match rec.routing() {
                    Routing::Direct => rec
                        .endpoints()
                        .iter()
                        .map(|e| e.host().to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => "the gateway's advertised address".to_owned(),
                };
                println!("{}\t{answer}", rec.domain());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn setup(dir: &Path, zone: &DomainName) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    let ca = gateway::open_ca(dir, zone)?;
    let reg = FileRegistry::open(dir)?;
    let _ = reg.revision().await?;
    let key = SealKey::load_or_create(dir)?;
    audit_cli(
        dir,
        "setup",
        true,
        format!("Initialized {}", dir.display()),
        serde_json::json!({"zone": zone.as_str(), "seal_key": key.fingerprint()}),
    )
    .await?;
    let root = gateway::paths::root_pem(dir);
    println!("state directory: {}", dir.display());
    println!(
        "CA root: {} (valid until {})",
        root.display(),
        conduit::ca::inspect_pem(
            ca.root_pem(),
            time::OffsetDateTime::now_utc(),
            &Default::default()
        )
        .map(|i| i.not_after)
        .unwrap_or_default()
    );
    println!("\nTrust the root on each client:");
    for step in conduit::ca::trust_instructions(&root, "Conduit Internal CA") {
        println!("  {}:", step.platform);
        for c in step.commands {
            println!("    {c}");
        }
    }
    println!(
        "\nNext:\n  conduit serve                      # DNS on 127.0.0.1:5353, HTTPS on 127.0.0.1:8443"
    );
    println!("  conduit register --name grafana --upstream 10.0.1.50:3000 --health /api/health");
    println!(
        "  curl --cacert {} https://grafana.{zone}:8443/",
        root.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    dir: &Path,
    zone: DomainName,
    s: Serve,
    file: FileConfig,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        gateway::paths::root_pem(dir).exists(),
        "no CA in {} (run `conduit setup` first)",
        dir.display()
    );
    // flags, then the environment, then conduit.toml, then the defaults
    let local = |port| vec![SocketAddr::from(([127, 0, 0, 1], port))];
    let env_listen = |var: &str| -> anyhow::Result<Option<Vec<SocketAddr>>> {
        Ok(match std::env::var(var) {
            Ok(_) => Some(local(env_port(var, 0)?)),
            Err(_) => None,
        })
    };
    let mut cfg = GatewayConfig::new(dir);
    cfg.zone = zone;
    cfg.dns_listen = match s.dns_listen {
        v if !v.is_empty() => v,
        _ => env_listen("CONDUIT_DNS_PORT")?
            .or(file.dns_listen)
            .unwrap_or_else(|| local(5353)),
    };
    cfg.https_listen = match s.https_listen {
        v if !v.is_empty() => v,
        _ => env_listen("CONDUIT_HTTPS_PORT")?
            .or(file.https_listen)
            .unwrap_or_else(|| local(8443)),
    };
    cfg.http_redirect = match s.http_listen {
        v if !v.is_empty() => v,
        _ => file.http_listen.unwrap_or_default(),
    };
    if let Some(a) = (!s.advertise.is_empty())
        .then_some(s.advertise)
        .or(file.advertise)
    {
        cfg.advertise = a;
    }
    cfg.dns_forwarders = if s.forward.is_empty() {
        match std::env::var("CONDUIT_DNS_UPSTREAM") {
            Ok(v) if !v.trim().is_empty() => v
                .split(',')
                .map(|a| {
                    a.trim()
                        .parse::<SocketAddr>()
                        .with_context(|| format!("CONDUIT_DNS_UPSTREAM: {a:?}"))
                })
                .collect::<Result<_, _>>()?,
            _ => file.dns_upstream.unwrap_or_default(),
        }
    } else {
        s.forward
    };
    let admin = s.admin_socket.or(file.admin_socket);
    cfg.admin_socket = Some(admin.unwrap_or_else(|| dir.join("admin.sock")));
    if let Some(addr) = s.admin_listen {
        let token = match &s.admin_token_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("CONDUIT_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        };
        cfg.admin_tcp = Some((addr, token));
    }
    cfg.audit_user = user();
    // The monitor: this host, its GPUs when NVML is there, containers when a Docker API
    // socket is configured, remote hosts from CONDUIT_REMOTE_SERVERS.
    let nvml = conduit::monitor::NvmlSource::new();
    if nvml.is_available() {
        cfg.monitor_sources.push(Arc::new(nvml));
    }
    if std::env::var_os("CONDUIT_DOCKER_SOCKET").is_some() {
        cfg.monitor_sources
            .push(Arc::new(conduit::monitor::DockerSource::from_env()?));
    }
    if let Ok(list) = std::env::var("CONDUIT_REMOTE_SERVERS") {
        for t in conduit::monitor::RemoteTarget::parse_list(&list)? {
            cfg.monitor_sources
                .push(Arc::new(conduit::monitor::SshSource::new(t)));
        }
    }
    let gw = Gateway::start(cfg).await?;
    for a in gw.dns_addrs() {
        println!("dns {a}");
    }
    for a in gw.https_addrs() {
        println!("https {a}");
    }
    gw.run(shutdown()).await?;
    Ok(ExitCode::SUCCESS)
}

fn health_interval(file: Option<&str>) -> anyhow::Result<Option<Duration>> {
    let env = std::env::var("CONDUIT_HEALTH_INTERVAL").ok();
    match env.as_deref().or(file) {
        Some(v) if !v.trim().is_empty() => {
            let v = v.trim();
            let secs: f64 = v
                .strip_suffix("ms")
                .map(|n| n.parse::<f64>().map(|n| n / 1000.0))
                .or_else(|| v.strip_suffix('s').map(str::parse::<f64>))
                .unwrap_or_else(|| v.parse::<f64>())
                .with_context(|| format!("health interval {v:?} (e.g. 30s, 500ms)"))?;
            Ok(Some(Duration::from_secs_f64(secs)))
        }
        _ => Ok(None),
    }
}

async fn register(
    dir: &Path,
    zone: &DomainName,
    r: Register,
    file_interval: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let name = ServiceName::new(&r.name).with_context(|| format!("--name {:?}", r.name))?;
    let endpoints = r
        .upstream
        .iter()
        .map(|u| {
            u.parse::<Endpoint>()
                .with_context(|| format!("--upstream {u:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut health = HealthCheck::default();
    if let Some(p) = r.health {
        health.path = p;
    }
    if let Some(i) = health_interval(file_interval)? {
        health.interval = i;
        health.timeout = health.timeout.min(i);
    }
    health.validate().map_err(anyhow::Error::msg)?;
    let mut rec = ServiceRecord::new(name, endpoints[0].clone())
        .with_endpoints(endpoints)
        .with_health(health)
        .with_routing(if r.no_proxy {
            Routing::Direct
        } else {
            Routing::Proxied
        })
        .with_tls(!r.no_tls && !r.no_proxy);
    rec = match r.domain {
        Some(d) => rec.with_domain(d.parse().with_context(|| format!("--domain {d:?}"))?),
        None => rec.in_zone(zone)?,
    };
    let reg = audited_registry(dir)?;
    let stored = reg.register(rec).await?;
    let ups: Vec<String> = stored.endpoints().iter().map(ToString::to_string).collect();
    println!("registered {} → {}", stored.domain(), ups.join(", "));
    Ok(ExitCode::SUCCESS)
}

async fn deregister(dir: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let svc = ServiceName::new(name).with_context(|| format!("--name {name:?}"))?;
    let reg = audited_registry(dir)?;
    let rec = reg.deregister(&svc).await?;
    println!("deregistered {}", rec.domain());
    Ok(ExitCode::SUCCESS)
}

async fn status(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let socket = dir.join("admin.sock");
    let live = match conduit::admin::get(&socket, "/v1/status").await {
        Ok((200, body)) => Some(serde_json::from_str::<serde_json::Value>(&body)?),
        _ => None,
    };
    let doc = match live {
        Some(v) => serde_json::json!({"gateway": "running", "services": v["services"]}),
        None => {
            let reg = FileRegistry::open(dir)?;
            let services: Vec<serde_json::Value> = reg
                .list(ListFilter::Active)
                .await?
                .iter()
                .map(|r| serde_json::json!({
                    "name": r.name().as_str(), "domain": r.domain().as_str(), "routing": r.routing(),
                    "upstreams": r.endpoints().iter().map(|e| serde_json::json!({"endpoint": e.to_string(), "healthy": null})).collect::<Vec<_>>(),
                    "healthy": null,
                }))
                .collect();
            serde_json::json!({"gateway": "stopped", "services": services})
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("gateway: {}", doc["gateway"].as_str().unwrap_or("?"));
    let empty = Vec::new();
    for s in doc["services"].as_array().unwrap_or(&empty) {
        let health = match &s["healthy"] {
            serde_json::Value::Bool(true) => "healthy",
            serde_json::Value::Bool(false) => "UNHEALTHY",
            _ => "-",
        };
        let ups: Vec<String> = s["upstreams"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|u| u["endpoint"].as_str().unwrap_or("?").to_owned())
            .collect();
        let dns = match &s["dns"] {
            serde_json::Value::Array(a) => {
                let ips: Vec<&str> = a.iter().filter_map(|v| v.as_str()).collect();
                format!("dns {}", ips.join(","))
            }
            serde_json::Value::String(t) => format!("dns {t}"),
            _ => "dns -".to_owned(),
        };
        println!(
            "{:<16} {:<28} {:<10} {:<28} {:<20} cert until {}",
            s["name"].as_str().unwrap_or("?"),
            s["domain"].as_str().unwrap_or("?"),
            health,
            ups.join(","),
            dns,
            s["certificate_not_after"].as_str().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn logs(
    dir: &Path,
    action: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
    json: bool,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let mut filter = LogFilter::default();
    filter.action = action;
    filter.since = since;
    filter.limit = limit;
    let path = gateway::paths::audit_log(dir);
    let print = |e: &AuditEvent| {
        if json {
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
    let (events, bad) = conduit::audit::read_log(&path, &filter)?;
    events.iter().for_each(print);
    if !bad.is_empty() {
        eprintln!(
            "conduit: warning: {} unreadable line(s) in the audit log",
            bad.len()
        );
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Follow: the log is append-only; print what is appended (polled every 200 ms).
    let mut seen = conduit::audit::read_log(&path, &LogFilter::default())?
        .0
        .len();
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let (all, _) = conduit::audit::read_log(&path, &LogFilter::default())?;
        for e in all.iter().skip(seen) {
            if filter.action.as_deref().is_none_or(|a| e.action() == a) {
                print(e);
            }
        }
        seen = all.len();
    }
}

async fn monitor(m: MonitorArgs) -> anyhow::Result<ExitCode> {
    use conduit::monitor::{HostSource, MetricSource, Poller, RemoteTarget, render};
    let mut sources: Vec<Arc<dyn MetricSource>> = vec![Arc::new(HostSource::new())];
    if m.gpu {
        let nvml = conduit::monitor::NvmlSource::new();
        if let Some(why) = nvml.unavailable_reason() {
            eprintln!("conduit: note: no GPU monitoring here: {why}");
        }
        sources.push(Arc::new(nvml));
    }
    if m.containers {
        sources.push(Arc::new(conduit::monitor::DockerSource::from_env()?));
    }
    let mut servers = m.server.clone();
    if servers.is_empty()
        && let Ok(v) = std::env::var("CONDUIT_REMOTE_SERVERS")
    {
        servers = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    for s in servers {
        let target = RemoteTarget::parse(&s).with_context(|| format!("--server {s:?}"))?;
        sources.push(Arc::new(conduit::monitor::SshSource::new(target)));
    }
    let mut poller = Poller::new(sources);
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        let round = poller.poll_once().await;
        if m.json {
            for s in &round.samples {
                println!("{}", serde_json::to_string(s)?);
            }
        } else if m.prometheus {
            print!("{}", render::prometheus(&round.samples));
        } else {
            print!("{}", render::human(&round.samples));
        }
        for (source, error) in &round.errors {
            eprintln!("conduit: {source}: {error}");
        }
        for a in &round.alerts {
            eprintln!("conduit: alert: {}", a.message);
        }
        if !m.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            () = &mut stop => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

async fn live_status(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let socket = dir.join("admin.sock");
    match conduit::admin::get(&socket, "/v1/status").await {
        Ok((200, body)) => Ok(serde_json::from_str(&body)?),
        _ => bail!(
            "the gateway is not running (no answer on {})",
            socket.display()
        ),
    }
}

/// Asks the running gateway (it holds the CA and the served certificates) to act.
async fn certs_action(dir: &Path, name: &str, action: &str) -> anyhow::Result<ExitCode> {
    let socket = dir.join("admin.sock");
    let path = format!("/v1/certs/{name}/{action}");
    match conduit::admin::post(&socket, &path).await {
        Ok((200, body)) => {
            println!("{body}");
            Ok(ExitCode::SUCCESS)
        }
        Ok((_, body)) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            bail!("{}", v["error"].as_str().unwrap_or(&body))
        }
        Err(_) => bail!(
            "the gateway is not running (no answer on {}); certificates are rotated by the gateway",
            socket.display()
        ),
    }
}

async fn certs_list(dir: &Path) -> anyhow::Result<ExitCode> {
    let v = live_status(dir).await?;
    let empty = Vec::new();
    for s in v["services"].as_array().unwrap_or(&empty) {
        println!(
            "{:<16} {:<28} until {}",
            s["name"].as_str().unwrap_or("?"),
            s["domain"].as_str().unwrap_or("?"),
            s["certificate_not_after"]
                .as_str()
                .unwrap_or("- (no certificate)")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Connects to the gateway's HTTPS listener with the service's name and prints the
/// certificate it is served with.
async fn certs_inspect(dir: &Path, zone: &DomainName, name: &str) -> anyhow::Result<ExitCode> {
    let v = live_status(dir).await?;
    let domain = v["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .and_then(|s| s["domain"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{name}.{zone}"));
    let port = env_port("CONDUIT_HTTPS_PORT", 8443)?;
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", &domain, "-showcerts"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("openssl is needed for `certs inspect`")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(start) = text.find("-----BEGIN CERTIFICATE-----") else {
        bail!("no certificate served for {domain} on 127.0.0.1:{port}");
    };
    let now = time::OffsetDateTime::now_utc();
    let info = conduit::ca::inspect_pem(&text[start..], now, &Default::default())?;
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(ExitCode::SUCCESS)
}

async fn dns_resolve(server: SocketAddr, name: &str) -> anyhow::Result<ExitCode> {
    let out = tokio::process::Command::new("dig")
        .args([
            "+short",
            "+tries=1",
            "+time=2",
            "-p",
            &server.port().to_string(),
        ])
        .arg(format!("@{}", server.ip()))
        .args([name, "A", name, "AAAA"])
        .output()
        .await
        .context("dig is needed for `dns resolve`")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        bail!("{name}: no answer from {server}");
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path, level: VerifyLevel, json: bool) -> anyhow::Result<ExitCode> {
    let store = CapsuleStore::open(gateway::paths::capsules(dir))?;
    let level = match level {
        VerifyLevel::Structural => Level::Structural,
        VerifyLevel::Full => Level::Full,
        VerifyLevel::Signatures => Level::Signatures,
    };
    let key = (level == Level::Signatures)
        .then(|| SealKey::load_or_create(dir))
        .transpose()?;
    let report = store.verify(level, key.as_ref().map(SealKey::public_hex).as_deref())?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else if report.valid {
        println!(
            "valid: {} of {} capsules verified",
            report.capsules_verified, report.total_capsules
        );
    } else {
        for e in &report.errors {
            println!("invalid: {} (capsule {})", e.error, e.capsule_id);
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
